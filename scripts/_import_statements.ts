/**
 * Whether an import brings types only, read from the importing file's
 * statements: `deno info --json` lists `import type` and `export type …
 * from` as type dependencies, but `import { type A }` as a code one, so
 * scripts/check_imports.ts asks here for those. The same reading gives the
 * names a source's code uses ({@link codeWords}), for checks that must not
 * count a name in a comment or a string.
 *
 * @module
 */

/**
 * Whether every static import and re-export of `specifier` in `source`
 * brings types only: `import type …`, `export type … from`, or braces whose
 * names are all marked `type` (`import { type A, type B }`). A side-effect
 * import, a dynamic `import()` and a statement not found count as values,
 * so that a doubt fails the check instead of passing it.
 */
export function isTypeOnlyImport(source: string, specifier: string): boolean {
  const statements = importStatements(source)
    .filter((s) => s.specifier === specifier);
  return statements.length > 0 && statements.every((s) => s.typeOnly);
}

/**
 * The words of `source`'s code, in order: identifiers and keywords, with
 * nothing from its comments, strings, templates or regular expressions.
 */
export function codeWords(source: string): string[] {
  return tokenize(source).filter((t) => t.kind === "word").map((t) => t.text);
}

interface Token {
  kind: "word" | "string" | "punct" | "regex" | "template";
  text: string;
}

/** A `/` after these words starts a regular expression, not a division. */
const BEFORE_REGEX = new Set([
  "return",
  "typeof",
  "instanceof",
  "in",
  "of",
  "new",
  "delete",
  "void",
  "throw",
  "case",
  "do",
  "else",
  "yield",
  "await",
]);
const WORD = /[\p{ID_Continue}$\u200c\u200d]+/uy;

/**
 * The tokens of `source` without comments and spaces: just enough of
 * JavaScript's lexical grammar to find import statements without being
 * fooled by a comment, a string or a template that looks like one.
 */
function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  // What each open `{` is: a block, or the `${` of a template.
  const braces: ("block" | "template")[] = [];
  let i = source.startsWith("#!") ? source.indexOf("\n") : 0;
  if (i < 0) i = source.length;
  while (i < source.length) {
    const c = source[i];
    if (/\s/.test(c)) {
      i += 1;
    } else if (source.startsWith("//", i)) {
      const end = source.indexOf("\n", i);
      i = end < 0 ? source.length : end;
    } else if (source.startsWith("/*", i)) {
      const end = source.indexOf("*/", i + 2);
      i = end < 0 ? source.length : end + 2;
    } else if (c === '"' || c === "'") {
      const end = quotedEnd(source, i);
      tokens.push({ kind: "string", text: source.slice(i + 1, end - 1) });
      i = end;
    } else if (c === "`" || (c === "}" && braces.at(-1) === "template")) {
      if (c === "}") braces.pop();
      i = templateEnd(source, i + 1, braces);
      tokens.push({ kind: "template", text: "" });
    } else if (c === "/" && regexMayStart(tokens.at(-1))) {
      i = regexEnd(source, i + 1);
      tokens.push({ kind: "regex", text: "" });
    } else {
      WORD.lastIndex = i;
      const word = WORD.exec(source);
      if (word) {
        tokens.push({ kind: "word", text: word[0] });
        i += word[0].length;
        continue;
      }
      if (c === "{") braces.push("block");
      if (c === "}") braces.pop();
      tokens.push({ kind: "punct", text: c });
      i += 1;
    }
  }
  return tokens;
}

/** Index after the closing quote of the string opening at `start`. */
function quotedEnd(source: string, start: number): number {
  let i = start + 1;
  while (i < source.length) {
    if (source[i] === "\\") i += 2;
    else if (source[i] === source[start]) return i + 1;
    else if (source[i] === "\n") return i;
    else i += 1;
  }
  return source.length;
}

/** Index after a template's closing backtick, or after its next `${`. */
function templateEnd(
  source: string,
  start: number,
  braces: ("block" | "template")[],
): number {
  let i = start;
  while (i < source.length) {
    if (source[i] === "\\") {
      i += 2;
    } else if (source[i] === "`") {
      return i + 1;
    } else if (source.startsWith("${", i)) {
      braces.push("template");
      return i + 2;
    } else {
      i += 1;
    }
  }
  return source.length;
}

function regexMayStart(previous: Token | undefined): boolean {
  if (previous === undefined) return true;
  if (previous.kind === "word") return BEFORE_REGEX.has(previous.text);
  if (previous.kind === "punct") return !")]}".includes(previous.text);
  return false;
}

/** Index after the regular expression whose body starts at `start`. */
function regexEnd(source: string, start: number): number {
  let i = start;
  let inClass = false;
  while (i < source.length && source[i] !== "\n") {
    const c = source[i];
    if (c === "\\") {
      i += 2;
      continue;
    }
    if (c === "[") inClass = true;
    if (c === "]") inClass = false;
    i += 1;
    if (c === "/" && !inClass) {
      while (i < source.length && /[a-z]/i.test(source[i])) i += 1;
      return i;
    }
  }
  return i;
}

const isPunct = (t: Token | undefined, text: string) =>
  t?.kind === "punct" && t.text === text;
const isWord = (t: Token | undefined, text: string) =>
  t?.kind === "word" && t.text === text;

/** Every import, re-export and dynamic import of `source`, with its specifier. */
function importStatements(
  source: string,
): { specifier: string; typeOnly: boolean }[] {
  const t = tokenize(source);
  const found: { specifier: string; typeOnly: boolean }[] = [];
  for (let i = 0; i < t.length; i++) {
    if (isPunct(t[i - 1], ".")) continue; // a property named import
    if (isWord(t[i], "import")) {
      if (isPunct(t[i + 1], "(")) {
        // `typeof import("x")` is a type; any other import("x") a value.
        if (t[i + 2]?.kind === "string") {
          const typeOnly = isWord(t[i - 1], "typeof");
          found.push({ specifier: t[i + 2].text, typeOnly });
        }
      } else if (t[i + 1]?.kind === "string") {
        found.push({ specifier: t[i + 1].text, typeOnly: false });
      } else if (!isPunct(t[i + 1], ".")) {
        const from = fromIndex(t, i + 1);
        if (from >= 0) {
          const typeOnly = importIsTypeOnly(t.slice(i + 1, from));
          found.push({ specifier: t[from + 1].text, typeOnly });
        }
      }
    } else if (isWord(t[i], "export")) {
      const reExport = isPunct(t[i + 1], "{") || isPunct(t[i + 1], "*") ||
        (isWord(t[i + 1], "type") &&
          (isPunct(t[i + 2], "{") || isPunct(t[i + 2], "*")));
      const from = reExport ? fromIndex(t, i + 1) : -1;
      if (from >= 0) {
        const typeOnly = exportIsTypeOnly(t.slice(i + 1, from));
        found.push({ specifier: t[from + 1].text, typeOnly });
      }
    }
  }
  return found;
}

/** Index of the `from` that ends the statement starting at `start`, or -1. */
function fromIndex(t: Token[], start: number): number {
  for (let i = start; i < t.length; i++) {
    if (isPunct(t[i], ";") || isPunct(t[i], "=")) return -1;
    if (i > start && (isWord(t[i], "import") || isWord(t[i], "export"))) {
      return -1;
    }
    if (i > start && isWord(t[i], "from") && t[i + 1]?.kind === "string") {
      return i;
    }
  }
  return -1;
}

/** `type X`, `type { … }`, `type * as ns`, or braces of types only. */
function importIsTypeOnly(clause: Token[]): boolean {
  // `import type from "x"` and `import type, { a }` import a value named type.
  if (isWord(clause[0], "type") && clause.length >= 2) {
    return !isPunct(clause[1], ",");
  }
  return bracesOfTypes(clause);
}

/** `type { … }`, `type *`, or braces of types only. */
function exportIsTypeOnly(clause: Token[]): boolean {
  if (isWord(clause[0], "type")) return true;
  return bracesOfTypes(clause);
}

/** `{ type A, type B as C }`: braces, not empty, every name marked type. */
function bracesOfTypes(clause: Token[]): boolean {
  if (!isPunct(clause[0], "{") || !isPunct(clause.at(-1), "}")) return false;
  const names: Token[][] = [[]];
  for (const token of clause.slice(1, -1)) {
    if (isPunct(token, ",")) names.push([]);
    else names.at(-1)!.push(token);
  }
  const listed = names.filter((name) => name.length > 0);
  // `type A` or `type A as B`; `type as B` renames a value named type.
  return listed.length > 0 &&
    listed.every((name) =>
      isWord(name[0], "type") && (name.length === 2 || name.length === 4)
    );
}
