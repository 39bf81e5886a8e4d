/**
 * Printing a rule back to text with as few parentheses as the grammar
 * allows, so that parsing the text gives the same tree again.
 *
 * @module
 */
import type { BinaryOp, BinaryRule, Rule } from "./syntax.ts";

/** Options of {@link printRule}. */
export interface PrintOptions {
  /** Spell operators `and or not => <= == !=` instead of their signs (rule/mod.ts). */
  ascii?: boolean;
}

const UNICODE: Readonly<Record<BinaryOp, string>> = {
  and: "\u2227",
  or: "\u2228",
  implies: "\u21d2",
  follows: "\u21d0",
  equiv: "\u2261",
  differs: "\u2262",
};

const ASCII: Readonly<Record<BinaryOp, string>> = {
  and: "and",
  or: "or",
  implies: "=>",
  follows: "<=",
  equiv: "==",
  differs: "!=",
};

/** Binding strength: 1 for `== !=`, 2 for `=> <=`, 3 for `and or`, 4 for factors. */
function level(rule: Rule): number {
  if (rule.kind !== "binary") return 4;
  switch (rule.op) {
    case "equiv":
    case "differs":
      return 1;
    case "implies":
    case "follows":
      return 2;
    case "and":
    case "or":
      return 3;
  }
}

/**
 * Prints `rule` in Unicode (or ASCII with `{ ascii: true }`), with the
 * fewest parentheses such that `parseRule(printRule(rule))` has the same
 * structure as `rule`.
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseRule } from "./parser.ts";
 * import { printRule } from "./print.ts";
 *
 * const rule = parseRule("((a and b) or (not c))");
 * assert.equal(printRule(rule), "(a \u2227 b) \u2228 ¬c");
 * assert.equal(printRule(rule, { ascii: true }), "(a and b) or not c");
 * ```
 */
export function printRule(rule: Rule, options?: PrintOptions): string {
  return print(rule, options?.ascii === true);
}

function print(rule: Rule, ascii: boolean): string {
  switch (rule.kind) {
    case "const":
      return rule.value ? "true" : "false";
    case "name":
      return rule.name;
    case "not": {
      const operand = rule.operand.kind === "binary"
        ? `(${print(rule.operand, ascii)})`
        : print(rule.operand, ascii);
      return ascii ? `not ${operand}` : `¬${operand}`;
    }
    case "binary": {
      const op = ascii ? ASCII[rule.op] : UNICODE[rule.op];
      const left = wrap(rule.left, leftNeedsParens(rule), ascii);
      const right = wrap(rule.right, rightNeedsParens(rule), ascii);
      return `${left} ${op} ${right}`;
    }
  }
}

function wrap(rule: Rule, parens: boolean, ascii: boolean): string {
  const text = print(rule, ascii);
  return parens ? `(${text})` : text;
}

/**
 * The left operand of a left-associative chain may be the same operator
 * bare; of `=>` (right-associative) it never may be at its own level.
 */
function leftNeedsParens(parent: BinaryRule): boolean {
  const child = parent.left;
  const p = level(parent);
  const c = level(child);
  if (c !== p) return c < p;
  if (parent.op === "implies") return true;
  // Same level: only a chain of the very same operator (== and != mix freely).
  return p !== 1 && (child as BinaryRule).op !== parent.op;
}

/**
 * The right operand may be bare at its own level only in a `=>` chain
 * (right-associative) continued by another `=>`.
 */
function rightNeedsParens(parent: BinaryRule): boolean {
  const child = parent.right;
  const p = level(parent);
  const c = level(child);
  if (c !== p) return c < p;
  return !(parent.op === "implies" && (child as BinaryRule).op === "implies");
}
