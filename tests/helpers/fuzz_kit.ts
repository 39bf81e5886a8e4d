/**
 * What the property-based tests (tests/fuzz_test.ts) share: the seed and
 * the number of runs (scaled by `PMPROXY_FUZZ_SCALE`, which `deno task
 * fuzz` sets to 50), text mutations, latin1 conversions, in-memory
 * streams for the proxy's Reader, and a reference chunked decoder written
 * straight from RFC 9112 §7.1's grammar to compare the proxy's with.
 *
 * @module
 */
import fc from "fast-check";
import type { Stream } from "../../proxy/_io.ts";

/** The seed of every property (`PMPROXY_FUZZ_SEED` overrides it). */
export const SEED = Number(Deno.env.get("PMPROXY_FUZZ_SEED") ?? "9112");

/** How many times more runs than the test suite's (`deno task fuzz`: 50). */
export const SCALE = Number(Deno.env.get("PMPROXY_FUZZ_SCALE") ?? "1");

/** fast-check parameters: the seed, and `runs` times the scale. */
export function params(runs: number): fc.Parameters<unknown> {
  return { seed: SEED, numRuns: Math.max(1, Math.round(runs * SCALE)) };
}

/** Bytes to a string, one char per byte. */
export function latin1(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return s;
}

/** A string of chars below 256 to bytes, one per char. */
export function bytesOf(s: string): Uint8Array {
  return Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff);
}

/** One edit of a text: where, and what. */
type Edit =
  | { op: "insert"; at: number; text: string }
  | { op: "delete"; at: number; length: number }
  | { op: "replace"; at: number; text: string }
  | { op: "duplicateLine"; at: number }
  | { op: "deleteLine"; at: number }
  | { op: "swapLines"; at: number; with: number }
  | { op: "case"; at: number };

/**
 * Edits that `mutate` applies to a text: positions are taken modulo its
 * length (so they fit any text; not fractions, which fast-check draws
 * mostly near 0), inserted text is drawn from `pieces`
 * (the characters and fragments that matter to the parser at hand) or
 * is any short string of chars below `maxChar`.
 */
export function edits(
  pieces: string[],
  maxChar = 0xff,
): fc.Arbitrary<Edit[]> {
  const at = fc.nat();
  const piece = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...pieces) },
    {
      weight: 1,
      arbitrary: fc.string({
        unit: fc.integer({ min: 0, max: maxChar }).map((c) =>
          String.fromCharCode(c)
        ),
        maxLength: 4,
      }),
    },
  );
  const edit: fc.Arbitrary<Edit> = fc.oneof(
    fc.record({ op: fc.constant("insert" as const), at, text: piece }),
    fc.record({
      op: fc.constant("delete" as const),
      at,
      length: fc.integer({ min: 1, max: 4 }),
    }),
    fc.record({ op: fc.constant("replace" as const), at, text: piece }),
    fc.record({ op: fc.constant("duplicateLine" as const), at }),
    fc.record({ op: fc.constant("deleteLine" as const), at }),
    fc.record({ op: fc.constant("swapLines" as const), at, with: at }),
    fc.record({ op: fc.constant("case" as const), at }),
  );
  return fc.array(edit, { minLength: 1, maxLength: 4 });
}

/** `text` with `list` applied, in order. */
export function mutate(text: string, list: Edit[]): string {
  let t = text;
  for (const e of list) {
    const i = e.at % (t.length + 1);
    switch (e.op) {
      case "insert":
        t = t.slice(0, i) + e.text + t.slice(i);
        break;
      case "delete":
        t = t.slice(0, i) + t.slice(i + e.length);
        break;
      case "replace":
        t = t.slice(0, i) + e.text + t.slice(i + e.text.length);
        break;
      case "case": {
        // ASCII letters only: "ÿ".toUpperCase() is "Ÿ", beyond one byte.
        const c = t.charCodeAt(i);
        const letter = (c | 32) >= 97 && (c | 32) <= 122;
        if (letter) {
          t = t.slice(0, i) + String.fromCharCode(c ^ 32) + t.slice(i + 1);
        }
        break;
      }
      default: {
        const lines = t.split("\n");
        const a = e.at % lines.length;
        if (e.op === "duplicateLine") lines.splice(a, 0, lines[a]);
        else if (e.op === "deleteLine") lines.splice(a, 1);
        else {
          const b = e.with % lines.length;
          [lines[a], lines[b]] = [lines[b], lines[a]];
        }
        t = lines.join("\n");
      }
    }
  }
  return t;
}

/**
 * A stream that reads `parts` one read each (a part longer than the read
 * buffer over several), then ends; what is written to it is kept.
 */
export function memoryStream(
  parts: Uint8Array[],
): Stream & { written: () => Uint8Array } {
  const queue = parts.filter((p) => p.length > 0);
  let i = 0;
  let off = 0;
  const out: Uint8Array[] = [];
  return {
    read(p: Uint8Array) {
      if (i >= queue.length) return Promise.resolve(null);
      const part = queue[i];
      const n = Math.min(p.length, part.length - off);
      p.set(part.subarray(off, off + n));
      off += n;
      if (off === part.length) {
        i++;
        off = 0;
      }
      return Promise.resolve(n);
    },
    write(p: Uint8Array) {
      out.push(p.slice());
      return Promise.resolve(p.length);
    },
    closeWrite: () => Promise.resolve(),
    close() {},
    written() {
      let size = 0;
      for (const o of out) size += o.length;
      const all = new Uint8Array(size);
      let at = 0;
      for (const o of out) {
        all.set(o, at);
        at += o.length;
      }
      return all;
    },
  };
}

/** `bytes` cut at the given offsets (sorted, deduplicated) into reads. */
export function splitAt(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => Math.min(c, bytes.length)))]
    .sort((a, b) => a - b);
  const parts: Uint8Array[] = [];
  let from = 0;
  for (const p of points) {
    parts.push(bytes.subarray(from, p));
    from = p;
  }
  parts.push(bytes.subarray(from));
  return parts;
}

// RFC 9112 §7.1 and RFC 9110 §5.6, as regular expressions over latin1.
const TOKEN = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]+";
const QUOTED =
  '"(?:[\\t \\x21\\x23-\\x5b\\x5d-\\x7e\\x80-\\xff]|\\\\[\\t \\x21-\\x7e\\x80-\\xff])*"';
const EXT =
  `(?:[ \\t]*;[ \\t]*${TOKEN}(?:[ \\t]*=[ \\t]*(?:${TOKEN}|${QUOTED}))?)*`;
const SIZE_LINE = new RegExp(`([0-9A-Fa-f]{1,16})${EXT}\\r\\n`, "y");
const TRAILER_LINE = new RegExp(
  `${TOKEN}:[\\t \\x20-\\x7e\\x80-\\xff]*\\r\\n`,
  "y",
);

/**
 * A chunked body decoded by the grammar alone: its data and the offset
 * just past its end, or null when `s` holds no complete, well-formed one.
 * Independent of proxy/body.ts, to compare it with.
 */
export function referenceDechunk(
  s: string,
): { data: string; end: number } | null {
  let at = 0;
  let data = "";
  for (;;) {
    SIZE_LINE.lastIndex = at;
    const m = SIZE_LINE.exec(s);
    if (!m) return null;
    const size = parseInt(m[1], 16);
    if (size > Number.MAX_SAFE_INTEGER) return null;
    at += m[0].length;
    if (size === 0) break;
    if (s.length < at + size + 2) return null;
    data += s.slice(at, at + size);
    at += size;
    if (s.slice(at, at + 2) !== "\r\n") return null;
    at += 2;
  }
  for (;;) {
    if (s.slice(at, at + 2) === "\r\n") return { data, end: at + 2 };
    TRAILER_LINE.lastIndex = at;
    const m = TRAILER_LINE.exec(s);
    if (!m) return null;
    at += m[0].length;
  }
}

/** RFC 9110 token characters. */
export const TCHARS =
  "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/** A token of 1 to `max` tchars. */
export function token(max = 8): fc.Arbitrary<string> {
  return fc.string({
    unit: fc.constantFrom(...TCHARS),
    minLength: 1,
    maxLength: max,
  });
}

/** A valid chunked body: its chunks (with extensions), the last chunk, trailers. */
export function chunkedBody(): fc.Arbitrary<{ text: string; data: string }> {
  const ext = fc.array(
    fc.tuple(
      fc.constantFrom("", " ", "\t "),
      token(5),
      fc.option(
        fc.oneof(
          token(5),
          fc.string({
            unit: fc.constantFrom("a", " ", "\t", '\\"', "\\\\", "\xe9", "="),
            maxLength: 5,
          }).map((q) => `"${q}"`),
        ),
        { nil: undefined },
      ),
    ).map(([bws, name, value]) =>
      `${bws};${name}${value === undefined ? "" : `=${value}`}`
    ),
    { maxLength: 2 },
  ).map((list) => list.join(""));
  const chunk = fc.tuple(
    fc.string({
      unit: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)),
      minLength: 1,
      maxLength: 24,
    }),
    fc.constantFrom("x", "X", "0x"),
    ext,
  ).map(([data, hexCase, e]) => {
    const size = data.length.toString(16);
    const written = hexCase === "X"
      ? size.toUpperCase()
      : hexCase === "0x"
      ? "0" + size
      : size;
    return { text: `${written}${e}\r\n${data}\r\n`, data };
  });
  const trailer = fc.tuple(
    token(8),
    fc.string({
      unit: fc.constantFrom("a", "1", " ", "\t", "\xff"),
      maxLength: 6,
    }),
  ).map(([name, value]) => `${name}:${value}\r\n`);
  return fc.tuple(
    fc.array(chunk, { maxLength: 4 }),
    fc.constantFrom("0", "000"),
    ext,
    fc.array(trailer, { maxLength: 2 }),
  ).map(([chunks, last, e, trailers]) => ({
    text: chunks.map((c) => c.text).join("") + `${last}${e}\r\n` +
      trailers.join("") + "\r\n",
    data: chunks.map((c) => c.data).join(""),
  }));
}
