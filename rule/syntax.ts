/**
 * The syntax tree of a rule, as {@link parseRule} builds it and
 * {@link evaluate} walks it.
 *
 * @module
 */

/** The binary operators, by name: `∧ ∨ ⇒ ⇐ ≡ ≢`. */
export type BinaryOp =
  | "and"
  | "or"
  | "implies"
  | "follows"
  | "equiv"
  | "differs";

/** `true` or `false` written in the rule. */
export interface ConstRule {
  readonly kind: "const";
  readonly value: boolean;
}

/** A manager's name; `column` is 1-based, counted in Unicode code points. */
export interface NameRule {
  readonly kind: "name";
  readonly name: string;
  readonly column: number;
}

/** `¬ operand`. */
export interface NotRule {
  readonly kind: "not";
  readonly operand: Rule;
}

/** `left op right`. */
export interface BinaryRule {
  readonly kind: "binary";
  readonly op: BinaryOp;
  readonly left: Rule;
  readonly right: Rule;
}

/** A parsed rule: a tree of constants, names, negations and binary operators. */
export type Rule = ConstRule | NameRule | NotRule | BinaryRule;
