/**
 * The lexer: turns a rule's text into tokens, each with its 1-based column
 * counted in Unicode code points. Every operator has a Unicode and one or
 * more ASCII spellings.
 *
 * @module
 */
import { RuleError } from "./error.ts";

/** What a token is. */
export type TokenKind =
  | "name"
  | "true"
  | "false"
  | "not"
  | "and"
  | "or"
  | "implies"
  | "follows"
  | "equiv"
  | "differs"
  | "open"
  | "close"
  | "end";

/** One token: its kind, the text as written, and its column. */
export interface Token {
  readonly kind: TokenKind;
  readonly text: string;
  readonly column: number;
}

/** Symbol spellings, longest first so that `=>` wins over a lone `=`. */
const SYMBOLS: ReadonlyArray<readonly [string, TokenKind]> = [
  ["&&", "and"],
  ["||", "or"],
  ["=>", "implies"],
  ["<=", "follows"],
  ["==", "equiv"],
  ["!=", "differs"],
  ["¬", "not"],
  ["!", "not"],
  ["~", "not"],
  ["\u2227", "and"],
  ["&", "and"],
  ["\u2228", "or"],
  ["|", "or"],
  ["\u21d2", "implies"],
  ["\u21d0", "follows"],
  ["\u2261", "equiv"],
  ["\u2262", "differs"],
  ["(", "open"],
  [")", "close"],
];

/** Words that are not names. */
const WORDS: ReadonlyMap<string, TokenKind> = new Map([
  ["and", "and"],
  ["or", "or"],
  ["not", "not"],
  ["true", "true"],
  ["false", "false"],
]);

const SPACE = /\s/u;
const NAME_START = /[\p{L}_]/u;
const NAME_PART = /[\p{L}\p{N}_.\-]/u;

/** Hints for characters that start no token but resemble one. */
const HINTS: ReadonlyMap<string, string> = new Map([
  ["=", 'write "==" for \u2261 or "=>" for \u21d2'],
  ["<", 'write "<=" for \u21d0'],
  [">", 'write "=>" for \u21d2'],
]);

const ALPHABET =
  "a rule is made of names, true, false, parentheses and the operators ¬ \u2227 \u2228 \u21d2 \u21d0 \u2261 \u2262 (or not and or => <= == !=)";

/**
 * Splits a rule into tokens, ending with one of kind `"end"`.
 * Throws {@link RuleError} on a character that starts no token.
 */
export function tokenize(source: string): Token[] {
  const chars = Array.from(source);
  const tokens: Token[] = [];
  let i = 0;
  while (i < chars.length) {
    const c = chars[i];
    if (SPACE.test(c)) {
      i++;
      continue;
    }
    const column = i + 1;
    if (NAME_START.test(c)) {
      let j = i + 1;
      while (j < chars.length && NAME_PART.test(chars[j])) j++;
      const text = chars.slice(i, j).join("");
      tokens.push({ kind: WORDS.get(text) ?? "name", text, column });
      i = j;
      continue;
    }
    const symbol = SYMBOLS.find(([s]) => startsAt(chars, i, s));
    if (symbol) {
      tokens.push({ kind: symbol[1], text: symbol[0], column });
      i += Array.from(symbol[0]).length;
      continue;
    }
    if (/\p{N}/u.test(c) || c === "." || c === "-") {
      throw new RuleError(
        column,
        `a name starts with a letter or "_" but found "${c}"`,
      );
    }
    const hint = HINTS.get(c) ?? ALPHABET;
    throw new RuleError(column, `unknown character "${c}": ${hint}`);
  }
  tokens.push({ kind: "end", text: "", column: chars.length + 1 });
  return tokens;
}

function startsAt(chars: string[], at: number, symbol: string): boolean {
  let k = at;
  for (const s of symbol) {
    if (chars[k] !== s) return false;
    k++;
  }
  return true;
}
