/**
 * The rule language: a boolean predicate over manager names, in the style of
 * EWD1300, that decides each request.
 *
 * ```text
 * predicate = term {('=='|'!=') term}
 * term      = junction ({'=>' junction} | {'<=' junction})
 * junction  = factor ({'or' factor} | {'and' factor})
 * factor    = ['¬'] ('true' | 'false' | name | '(' predicate ')')
 * ```
 *
 * The operators are written here in ASCII; each has a sign as well (`and`
 * U+2227, `or` U+2228, `¬` U+00AC, `=>` U+21D2, `<=` U+21D0, `==` U+2261,
 * `!=` U+2262), which `printRule` prints, and other spellings: `and && &`,
 * `or || |`, `not ! ~`. (The modules a gateway loads at start keep to
 * Latin-1: ARCHITECTURE.md, "What loads at start".)
 * Mixing `and` with `or` (or `=>` with `<=`) at one level needs parentheses.
 * Evaluation goes left to right with short-circuit; the names `valueOf` is
 * asked about are the managers the request reached.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { evaluate, parseRule, printRule, ruleNames } from "./mod.ts";
 *
 * const rule = parseRule("(night and down0) or (day and down1)");
 * assert.deepEqual(ruleNames(rule).map((n) => n.name), [
 *   "night",
 *   "down0",
 *   "day",
 *   "down1",
 * ]);
 * assert.equal(
 *   printRule(rule, { ascii: true }),
 *   "(night and down0) or (day and down1)",
 * );
 *
 * // By day: the matcher night is false, resource managers answer true.
 * const reached: string[] = [];
 * const allowed = evaluate(rule, (name) => {
 *   reached.push(name);
 *   return name !== "night";
 * });
 * assert.equal(allowed, true);
 * assert.deepEqual(reached, ["night", "day", "down1"]); // down1 is attached
 * ```
 *
 * @module
 */
export type {
  BinaryOp,
  BinaryRule,
  ConstRule,
  NameRule,
  NotRule,
  Rule,
} from "./syntax.ts";
export { RuleError } from "./error.ts";
export { parseRule } from "./parser.ts";
export { evaluate } from "./evaluate.ts";
export { type Compiled, compileRule } from "./compile.ts";
export { type NameOccurrence, ruleNames } from "./names.ts";
export { type PrintOptions, printRule } from "./print.ts";
