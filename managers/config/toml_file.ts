/**
 * Reading a TOML configuration file with the positions of its keys, so that
 * every error and warning can say `file:line`.
 *
 * ```ts
 * const file = await readTomlFile("managers.toml");
 * file.lineOf(["dwnConsR", "0", "resetCycle"]); // e.g. 9
 * ```
 *
 * @module
 */
import { parse, TomlError } from "smol-toml";
import { ConfigError } from "../types.ts";

/** A parsed TOML file. */
export interface TomlFile {
  /** The path as given. */
  file: string;
  data: Record<string, unknown>;
  /**
   * The 1-based line of a key or table, best effort: a path such as
   * `["proxy", "server", "addr"]`, with the index of an array of tables as a
   * string: `["dwnConsR", "0", "resetCycle"]`.
   */
  lineOf(path: string[]): number | undefined;
}

/**
 * Reads and parses a TOML file. A syntax error throws a ConfigError with
 * the file, line, column and the parser's reason; a missing file throws a
 * ConfigError saying so.
 */
export async function readTomlFile(path: string): Promise<TomlFile> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new ConfigError(
        { file: path },
        "the file does not exist; create it (pmproxy serve writes a default one)",
      );
    }
    throw new ConfigError(
      { file: path },
      `cannot be read: ${e instanceof Error ? e.message : e}`,
    );
  }
  return parseTomlText(path, text);
}

/** Parses TOML text as {@link readTomlFile} does (for tests and checks). */
export function parseTomlText(file: string, text: string): TomlFile {
  let data: Record<string, unknown>;
  try {
    data = parse(text) as Record<string, unknown>;
  } catch (e) {
    if (e instanceof TomlError) {
      const reason = e.message.split("\n")[0].replace(
        /^Invalid TOML document: /,
        "",
      );
      throw new ConfigError(
        { file, line: e.line, column: e.column },
        `TOML syntax error: ${reason}; fix the syntax at that place`,
      );
    }
    throw e;
  }
  // The index of lines is made on first use: only an error or a warning
  // asks for a line, and on a mapDB of 100,000 users making it took a
  // fifth of the start (measured with --cpu-prof).
  let lines: Map<string, number> | undefined;
  return {
    file,
    data,
    lineOf: (path) => (lines ??= indexLines(text)).get(path.join("\u0000")),
  };
}

/**
 * A key inside a sub-table as one dotted string, quoting the key when it
 * is not a bare TOML key: `dottedKey("userPass", "john.doe")` is
 * `userPass."john.doe"`. {@link keyPath} splits it back.
 */
export function dottedKey(table: string, key: string): string {
  return `${table}.${/^[A-Za-z0-9_-]+$/.test(key) ? key : JSON.stringify(key)}`;
}

/** The parts of a dotted key made by {@link dottedKey} (or plain `a.b`). */
export function keyPath(key: string): string[] {
  return splitDotted(key) ?? key.split(".");
}

/** Splits a dotted key (`a."b.c".d`) into its parts. */
function splitDotted(text: string): string[] | undefined {
  const parts: string[] = [];
  const re = /\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*(\.|$)/y;
  let at = 0;
  while (at < text.length) {
    re.lastIndex = at;
    const m = re.exec(text);
    if (!m) return undefined;
    parts.push(m[1] ?? m[2] ?? m[3]);
    at = re.lastIndex;
    if (m[4] === "") break;
  }
  return parts.length ? parts : undefined;
}

/**
 * Maps each table header and key to its line. Arrays of tables get their
 * index. Lines inside multi-line strings are skipped.
 */
function indexLines(text: string): Map<string, number> {
  const out = new Map<string, number>();
  const counts = new Map<string, number>();
  const arrays = new Set<string>();
  let table: string[] = [];
  let inMultiline: string | undefined;
  const put = (path: string[], line: number) => {
    const key = path.join("\u0000");
    if (!out.has(key)) out.set(key, line);
  };
  // A header path with the current index of every array of tables in it.
  const resolve = (parts: string[]): string[] => {
    const path: string[] = [];
    for (const part of parts) {
      path.push(part);
      const key = path.join("\u0000");
      if (arrays.has(key)) path.push(String(counts.get(key)! - 1));
    }
    return path;
  };
  // `[a.b]` defines the table `a` too when nothing did before: the tables
  // on its path get its line (so that an error about `a` has a line).
  const putPrefixes = (parts: string[], line: number) => {
    for (let k = 1; k <= parts.length; k++) {
      put(resolve(parts.slice(0, k)), line);
    }
  };
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const n = i + 1;
    if (inMultiline) {
      if (line.includes(inMultiline)) inMultiline = undefined;
      continue;
    }
    const arrayHeader = /^\s*\[\[([^\]]+)\]\]/.exec(line);
    if (arrayHeader) {
      const parts = splitDotted(arrayHeader[1]);
      if (!parts) continue;
      putPrefixes(parts.slice(0, -1), n);
      const parent = resolve(parts.slice(0, -1));
      const base = [...parent, parts[parts.length - 1]];
      const key = base.join("\u0000");
      arrays.add(key);
      counts.set(key, (counts.get(key) ?? 0) + 1);
      put(base, n);
      table = [...base, String(counts.get(key)! - 1)];
      put(table, n);
      continue;
    }
    const header = /^\s*\[([^\]]+)\]/.exec(line);
    if (header) {
      const parts = splitDotted(header[1]);
      if (!parts) continue;
      putPrefixes(parts, n);
      table = resolve(parts);
      put(table, n);
      continue;
    }
    const keyLine = /^\s*((?:"(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_.\s-])+?)\s*=/
      .exec(line);
    if (keyLine) {
      const parts = splitDotted(keyLine[1]);
      if (parts) {
        for (let k = 1; k <= parts.length; k++) {
          put([...table, ...parts.slice(0, k)], n);
        }
      }
      const rest = line.slice(keyLine[0].length);
      for (const quote of ['"""', "'''"]) {
        const first = rest.indexOf(quote);
        if (first >= 0 && rest.indexOf(quote, first + 3) < 0) {
          inMultiline = quote;
        }
      }
    }
  }
  return out;
}

function editDistance(a: string, b: string): number {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  let prev = Array.from({ length: y.length + 1 }, (_, i) => i);
  for (let i = 1; i <= x.length; i++) {
    const cur = [i];
    for (let j = 1; j <= y.length; j++) {
      cur[j] = Math.min(
        prev[j] + 1,
        cur[j - 1] + 1,
        prev[j - 1] + (x[i - 1] === y[j - 1] ? 0 : 1),
      );
    }
    prev = cur;
  }
  return prev[y.length];
}

/**
 * The known key nearest to `key` by edit distance (case-insensitive), or
 * undefined when none is close enough to be a likely misspelling.
 */
export function nearestKey(key: string, known: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = editDistance(key, k);
    if (d < bestD) {
      best = k;
      bestD = d;
    }
  }
  return bestD <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}
