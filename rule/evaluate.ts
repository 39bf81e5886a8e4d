/**
 * Evaluation of a rule, left to right with short-circuit. The caller learns
 * which names were reached from the calls to `valueOf`.
 *
 * @module
 */
import type { Rule } from "./syntax.ts";

/**
 * Evaluates `rule`, asking `valueOf` for each name occurrence evaluation
 * reaches, exactly once per occurrence and in source order. Short-circuit:
 * `and` stops at the first false operand, `or` at the first true one; `a => b`
 * does not look at `b` when `a` is false, `a <= b` not when `a` is true;
 * `==` and `!=` look at both sides.
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { evaluate } from "./evaluate.ts";
 * import { parseRule } from "./parser.ts";
 *
 * const rule = parseRule("(night and down0) or (day and down1)");
 * const reached: string[] = [];
 * const allowed = evaluate(rule, (name) => {
 *   reached.push(name);
 *   return name !== "night";
 * });
 * assert.equal(allowed, true);
 * assert.deepEqual(reached, ["night", "day", "down1"]);
 * ```
 */
export function evaluate(
  rule: Rule,
  valueOf: (name: string) => boolean,
): boolean {
  switch (rule.kind) {
    case "const":
      return rule.value;
    case "name":
      return valueOf(rule.name);
    case "not":
      return !evaluate(rule.operand, valueOf);
    case "binary":
      switch (rule.op) {
        case "and":
          return evaluate(rule.left, valueOf) && evaluate(rule.right, valueOf);
        case "or":
          return evaluate(rule.left, valueOf) || evaluate(rule.right, valueOf);
        case "implies":
          return !evaluate(rule.left, valueOf) || evaluate(rule.right, valueOf);
        case "follows":
          return evaluate(rule.left, valueOf) || !evaluate(rule.right, valueOf);
        case "equiv":
          return evaluate(rule.left, valueOf) === evaluate(rule.right, valueOf);
        case "differs":
          return evaluate(rule.left, valueOf) !== evaluate(rule.right, valueOf);
      }
  }
}
