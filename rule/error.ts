/**
 * The error a rule that cannot be read throws, with where it stands.
 *
 * @module
 */

/**
 * A rule that cannot be read. `column` is 1-based and counted in Unicode
 * code points; `expected` says what the parser would have accepted there,
 * when that is one thing to say. The message reads
 * `at column 9: expected a name, "¬" or "(" but found "or"`.
 */
export class RuleError extends Error {
  /** 1-based column (Unicode code points) where the problem is. */
  readonly column: number;
  /** What would have been accepted at `column`, when known. */
  readonly expected?: string;

  constructor(column: number, problem: string, expected?: string) {
    super(`at column ${column}: ${problem}`);
    this.name = "RuleError";
    this.column = column;
    if (expected !== undefined) this.expected = expected;
  }
}
