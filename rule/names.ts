/**
 * The names a rule mentions, for checking each has a manager behind it.
 *
 * @module
 */
import type { Rule } from "./syntax.ts";

/** One occurrence of a name in a rule; `column` is 1-based, in code points. */
export interface NameOccurrence {
  name: string;
  column: number;
}

/**
 * Every name occurrence in `rule`, in the order they appear in the text
 * (repeats included), e.g. to report "name x at column 7 has no manager".
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { ruleNames } from "./names.ts";
 * import { parseRule } from "./parser.ts";
 *
 * assert.deepEqual(ruleNames(parseRule("a and ¬b")), [
 *   { name: "a", column: 1 },
 *   { name: "b", column: 8 },
 * ]);
 * ```
 */
export function ruleNames(rule: Rule): NameOccurrence[] {
  const found: NameOccurrence[] = [];
  collect(rule, found);
  return found;
}

function collect(rule: Rule, found: NameOccurrence[]): void {
  switch (rule.kind) {
    case "const":
      return;
    case "name":
      found.push({ name: rule.name, column: rule.column });
      return;
    case "not":
      collect(rule.operand, found);
      return;
    case "binary":
      collect(rule.left, found);
      collect(rule.right, found);
      return;
  }
}
