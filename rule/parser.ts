/**
 * The parser (EWD1300 grammar, lowest precedence first; the operators in
 * ASCII, their signs and other spellings in mod.ts):
 *
 * ```text
 * predicate = term {('=='|'!=') term}
 * term      = junction ({'=>' junction} | {'<=' junction})
 * junction  = factor ({'or' factor} | {'and' factor})
 * factor    = {'¬'} ('true' | 'false' | name | '(' predicate ')')
 * ```
 *
 * `== !=` and `<=` chains associate to the left, `=>` chains to the right;
 * `and` and `or` chains to the left. Mixing `and` with `or`, or `=>` with
 * `<=`, at one level is an error: the reader should not have to know a
 * precedence.
 *
 * @module
 */
import { RuleError } from "./error.ts";
import type { BinaryOp, Rule } from "./syntax.ts";
import { type Token, tokenize } from "./tokens.ts";

const FACTOR_START = 'a name, "¬" or "("';

/**
 * Parses a rule. Throws {@link RuleError} with the column of the problem
 * when the text is not a rule.
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseRule } from "./parser.ts";
 *
 * const rule = parseRule("a and ¬b");
 * assert.deepEqual(rule, {
 *   kind: "binary",
 *   op: "and",
 *   left: { kind: "name", name: "a", column: 1 },
 *   right: { kind: "not", operand: { kind: "name", name: "b", column: 8 } },
 * });
 * assert.throws(() => parseRule("a and b or c"), /at column 9: mixing/);
 * ```
 */
export function parseRule(source: string): Rule {
  const tokens = tokenize(source);
  if (tokens[0].kind === "end") {
    throw new RuleError(
      1,
      'the rule is empty: write a predicate such as "true" or "sessions \u2227 down0"',
      FACTOR_START,
    );
  }
  const parser = new Parser(tokens);
  const rule = parser.predicate();
  const next = parser.peek();
  if (next.kind === "close") {
    throw new RuleError(
      next.column,
      `")" has no matching "(": remove it or add "(" before it`,
    );
  }
  if (next.kind !== "end") {
    throw unexpected(next, "an operator or the end of the rule");
  }
  return rule;
}

class Parser {
  #tokens: Token[];
  #at = 0;

  constructor(tokens: Token[]) {
    this.#tokens = tokens;
  }

  peek(): Token {
    return this.#tokens[this.#at];
  }

  #take(): Token {
    const token = this.#tokens[this.#at];
    if (token.kind !== "end") this.#at++;
    return token;
  }

  predicate(): Rule {
    let left = this.#term();
    for (;;) {
      const kind = this.peek().kind;
      if (kind !== "equiv" && kind !== "differs") return left;
      this.#take();
      left = binary(kind, left, this.#term());
    }
  }

  #term(): Rule {
    const first = this.#junction();
    const op = this.peek().kind;
    if (op === "implies") {
      // a => b => c = a => (b => c): collect the chain, then fold from the right.
      const operands = [first];
      while (this.peek().kind === "implies") {
        this.#take();
        operands.push(this.#junction());
      }
      this.#refuseMix("follows");
      let rule = operands[operands.length - 1];
      for (let k = operands.length - 2; k >= 0; k--) {
        rule = binary("implies", operands[k], rule);
      }
      return rule;
    }
    if (op === "follows") {
      let rule = first;
      while (this.peek().kind === "follows") {
        this.#take();
        rule = binary("follows", rule, this.#junction());
      }
      this.#refuseMix("implies");
      return rule;
    }
    return first;
  }

  #junction(): Rule {
    let rule = this.#factor();
    const op = this.peek().kind;
    if (op !== "and" && op !== "or") return rule;
    while (this.peek().kind === op) {
      this.#take();
      rule = binary(op, rule, this.#factor());
    }
    this.#refuseMix(op === "and" ? "or" : "and");
    return rule;
  }

  #factor(): Rule {
    const token = this.#take();
    switch (token.kind) {
      case "not":
        return { kind: "not", operand: this.#factor() };
      case "true":
        return { kind: "const", value: true };
      case "false":
        return { kind: "const", value: false };
      case "name":
        return { kind: "name", name: token.text, column: token.column };
      case "open": {
        const inner = this.predicate();
        const close = this.peek();
        if (close.kind !== "close") {
          throw unexpected(
            close,
            `an operator or ")" to close "(" at column ${token.column}`,
          );
        }
        this.#take();
        return inner;
      }
      default:
        throw unexpected(token, FACTOR_START);
    }
  }

  /** Throws when the next token is `other`, the operator one may not mix in. */
  #refuseMix(other: "and" | "or" | "implies" | "follows"): void {
    const next = this.peek();
    if (next.kind !== other) return;
    const message = other === "and" || other === "or"
      ? "mixing \u2227 and \u2228 at one level needs parentheses: write (a \u2227 b) \u2228 c or a \u2227 (b \u2228 c)"
      : "mixing \u21d2 and \u21d0 at one level needs parentheses: write (a \u21d2 b) \u21d0 c or a \u21d2 (b \u21d0 c)";
    throw new RuleError(next.column, message);
  }
}

function binary(op: BinaryOp, left: Rule, right: Rule): Rule {
  return { kind: "binary", op, left, right };
}

function unexpected(token: Token, expected: string): RuleError {
  const found = token.kind === "end"
    ? "the end of the rule"
    : `"${token.text}"`;
  return new RuleError(
    token.column,
    `expected ${expected} but found ${found}`,
    expected,
  );
}
