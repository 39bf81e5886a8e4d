/**
 * A rule compiled into nested functions, for the one caller that evaluates
 * it for every request: the same answer and the same names reached, in the
 * same order, as {@link evaluate}, without walking the tree or looking a
 * name up at each request. Chains of one operator (`a and b and c ...`) become
 * one loop, so a long rule costs no deep recursion.
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { compileRule } from "./compile.ts";
 * import { parseRule } from "./parser.ts";
 *
 * const reached: string[] = [];
 * const decide = compileRule(
 *   parseRule("(night and down0) or (day and down1)"),
 *   (name) => () => {
 *     reached.push(name);
 *     return name !== "night";
 *   },
 * );
 * assert.equal(decide(undefined), true);
 * assert.deepEqual(reached, ["night", "day", "down1"]);
 * ```
 *
 * @module
 */
import type { BinaryOp, Rule } from "./syntax.ts";

/** A compiled rule, or one of its parts: its value for the argument. */
export type Compiled<T> = (arg: T) => boolean;

/** The operands of a chain of `op` (`a op b op c`), left to right. */
function chain(rule: Rule, op: BinaryOp, out: Rule[]): Rule[] {
  if (rule.kind === "binary" && rule.op === op) {
    chain(rule.left, op, out);
    chain(rule.right, op, out);
  } else out.push(rule);
  return out;
}

/**
 * Compiles `rule`; `leaf(name)` is called once per name occurrence, now,
 * and answers the function that gives that occurrence's value for an
 * argument (it runs only when evaluation reaches the occurrence).
 */
export function compileRule<T>(
  rule: Rule,
  leaf: (name: string) => Compiled<T>,
): Compiled<T> {
  switch (rule.kind) {
    case "const":
      return rule.value ? () => true : () => false;
    case "name":
      return leaf(rule.name);
    case "not": {
      const operand = compileRule(rule.operand, leaf);
      return (arg) => !operand(arg);
    }
    case "binary": {
      if (rule.op === "and" || rule.op === "or") {
        const parts = chain(rule, rule.op, []).map((r) => compileRule(r, leaf));
        const stopAt = rule.op === "or";
        return (arg) => {
          for (let i = 0; i < parts.length; i++) {
            if (parts[i](arg) === stopAt) return stopAt;
          }
          return !stopAt;
        };
      }
      const left = compileRule(rule.left, leaf);
      const right = compileRule(rule.right, leaf);
      switch (rule.op) {
        case "implies":
          return (arg) => !left(arg) || right(arg);
        case "follows":
          return (arg) => left(arg) || !right(arg);
        case "equiv":
          return (arg) => left(arg) === right(arg);
        case "differs":
          return (arg) => left(arg) !== right(arg);
      }
    }
  }
}
