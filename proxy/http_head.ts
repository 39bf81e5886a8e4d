/**
 * HTTP/1.1 message heads: reading them incrementally from a {@link Reader}
 * with limits, parsing request and response heads, the smuggling guards, and
 * writing heads back out. Heads are handled as latin1 strings so that every
 * byte survives a parse and re-serialisation unchanged.
 *
 * @module
 */
import type { Reader } from "./_io.ts";

/** A head that cannot be accepted; `status` is what to answer. */
export class HeadError extends Error {
  constructor(readonly status: 400 | 414 | 431 | 501 | 502, message: string) {
    super(message);
    this.name = "HeadError";
  }
}

/** One header field; `lower` is the lower-cased name for lookups. */
export interface Field {
  name: string;
  lower: string;
  value: string;
}

/** A parsed request head. */
export interface RequestHead {
  method: string;
  target: string;
  /** 10 for HTTP/1.0, 11 for HTTP/1.1. */
  version: 10 | 11;
  fields: Field[];
}

/** A parsed response head. */
export interface ResponseHead {
  version: 10 | 11;
  status: number;
  reason: string;
  fields: Field[];
}

/** Longest request line accepted (414 beyond). */
export const MAX_REQUEST_LINE = 8 * 1024;

/**
 * Reads one head (up to and including the empty line) and returns a view of
 * its bytes, or null when the stream ended before its first byte. With
 * `strict` (client side) a bare LF is refused at once; upstream heads may use
 * bare LF line ends. Leading empty lines are skipped (RFC 9112 §2.2).
 */
export async function readHead(
  r: Reader,
  maxBytes: number,
  strict: boolean,
): Promise<Uint8Array | null> {
  let scanned = 0; // offset from r.start already scanned
  let lineStart = 0;
  for (;;) {
    // Search only the filled part: the rest of a big buffer holds stale bytes
    // and would cost a scan of up to 256 KiB per call.
    const buf = r.buf;
    const filled = buf.subarray(0, r.end);
    for (;;) {
      const i = filled.indexOf(10, r.start + scanned);
      if (i < 0) {
        scanned = r.end - r.start;
        break;
      }
      const lf = i - r.start;
      const cr = lf > 0 && buf[i - 1] === 13;
      if (strict && !cr) {
        throw new HeadError(
          400,
          "a line of the request head ends in a bare LF",
        );
      }
      const len = lf - lineStart - (cr ? 1 : 0);
      if (len === 0) {
        if (lineStart === 0) {
          // An empty line before the request line: skip it.
          r.start += lf + 1;
          scanned = 0;
          continue;
        }
        if (i + 1 - r.start > maxBytes) {
          throw new HeadError(431, `the head is larger than ${maxBytes} bytes`);
        }
        const head = buf.subarray(r.start, i + 1);
        r.start = i + 1;
        return head;
      }
      if (lineStart === 0 && len > MAX_REQUEST_LINE && strict) {
        throw new HeadError(
          414,
          `the request line is longer than ${MAX_REQUEST_LINE} bytes`,
        );
      }
      lineStart = lf + 1;
      scanned = lf + 1;
    }
    if (r.end - r.start >= maxBytes) {
      if (strict && lineStart === 0) {
        throw new HeadError(
          414,
          `the request line is longer than ${MAX_REQUEST_LINE} bytes`,
        );
      }
      throw new HeadError(431, `the head is larger than ${maxBytes} bytes`);
    }
    if (!(await r.fill())) {
      if (r.end === r.start) return null;
      throw new HeadError(400, "the connection closed in the middle of a head");
    }
  }
}

/** Bytes to a string, one char per byte (latin1), so nothing is altered. */
export function latin1(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode.apply(
      null,
      bytes.subarray(i, i + 8192) as unknown as number[],
    );
  }
  return s;
}

/** A latin1 string to bytes (inverse of {@link latin1}). */
export function latin1Bytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

// RFC 9110 token characters, as a table: checked for every header name.
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 48; c <= 57; c++) TCHAR[c] = 1;
for (let c = 65; c <= 90; c++) TCHAR[c] = TCHAR[c + 32] = 1;

function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || TCHAR[c] === 0) return false;
  }
  return true;
}

function splitLines(text: string): string[] {
  // The head ends with an empty line; drop it and the final line end.
  const lines = text.split("\n");
  lines.length -= 2;
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i];
    if (l.charCodeAt(l.length - 1) === 13) lines[i] = l.slice(0, -1);
  }
  return lines;
}

function parseFields(
  lines: string[],
  maxFields: number,
  side: "request" | "response",
): Field[] {
  const status = side === "request" ? 400 : 502;
  if (lines.length - 1 > maxFields) {
    throw new HeadError(
      side === "request" ? 431 : 502,
      `the ${side} head has more than ${maxFields} header fields`,
    );
  }
  const fields: Field[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const c0 = line.charCodeAt(0);
    if (c0 === 32 || c0 === 9) {
      throw new HeadError(status, `obsolete line folding in the ${side} head`);
    }
    if (line.includes("\r") || line.includes("\0")) {
      throw new HeadError(status, `a bare CR or NUL in the ${side} head`);
    }
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon) : "";
    if (!isToken(name)) {
      throw new HeadError(
        status,
        `a malformed header line in the ${side} head`,
      );
    }
    fields.push({
      name,
      lower: name.toLowerCase(),
      value: line.slice(colon + 1).trim(),
    });
  }
  return fields;
}

/** Parses a request head (bytes from {@link readHead}). Throws {@link HeadError}. */
export function parseRequestHead(
  bytes: Uint8Array,
  maxFields: number,
): RequestHead {
  const lines = splitLines(latin1(bytes));
  const line = lines[0];
  const sp1 = line.indexOf(" ");
  const sp2 = line.indexOf(" ", sp1 + 1);
  if (sp1 <= 0 || sp2 < 0 || line.indexOf(" ", sp2 + 1) >= 0) {
    throw new HeadError(400, "the request line is not METHOD TARGET HTTP/1.1");
  }
  const method = line.slice(0, sp1);
  const target = line.slice(sp1 + 1, sp2);
  const proto = line.slice(sp2 + 1);
  if (!isToken(method) || target.length === 0 || hasControl(target)) {
    throw new HeadError(400, "the request line is not METHOD TARGET HTTP/1.1");
  }
  let version: 10 | 11;
  if (proto === "HTTP/1.1") version = 11;
  else if (proto === "HTTP/1.0") version = 10;
  else {throw new HeadError(
      400,
      `unsupported protocol version "${proto.slice(0, 20)}"`,
    );}
  const fields = parseFields(lines, maxFields, "request");
  checkFraming(fields, version, "request");
  return { method, target, version, fields };
}

function hasControl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c <= 32 || c === 127) return true;
  }
  return false;
}

/** Parses a response head from upstream. Throws {@link HeadError} (502). */
export function parseResponseHead(bytes: Uint8Array): ResponseHead {
  const lines = splitLines(latin1(bytes));
  const m = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/.exec(lines[0]);
  if (!m) {
    throw new HeadError(
      502,
      "the upstream answered something that is not an HTTP/1.x response",
    );
  }
  const fields = parseFields(lines, 1000, "response");
  const version = m[1] === "1" ? 11 : 10;
  checkFraming(fields, version, "response");
  return { version, status: Number(m[2]), reason: m[3] ?? "", fields };
}

/**
 * Smuggling guards: a message must have one unambiguous length. Both
 * Content-Length and Transfer-Encoding, differing Content-Lengths, a
 * non-numeric length or a coding other than chunked are refused.
 */
function checkFraming(fields: Field[], version: number, side: string) {
  const status = side === "request" ? 400 : 502;
  let length: string | undefined;
  let te = false;
  for (const f of fields) {
    if (f.lower === "content-length") {
      for (const part of f.value.split(",")) {
        const v = part.trim();
        if (!/^\d{1,15}$/.test(v)) {
          throw new HeadError(
            status,
            `the ${side} has an invalid Content-Length`,
          );
        }
        if (length !== undefined && length !== v) {
          throw new HeadError(
            status,
            `the ${side} has differing Content-Length values`,
          );
        }
        length = v;
      }
    } else if (f.lower === "transfer-encoding") {
      if (te || f.value.toLowerCase() !== "chunked") {
        throw new HeadError(
          side === "request" ? 501 : 502,
          `the ${side} uses a transfer coding other than "chunked"`,
        );
      }
      te = true;
    }
  }
  // A response with both is answered as chunked (RFC 9112 §6.3) and its
  // connection is not reused; a request with both is refused (smuggling).
  if (te && length !== undefined && side === "request") {
    throw new HeadError(
      status,
      `the ${side} has both Content-Length and Transfer-Encoding`,
    );
  }
  if (te && version === 10 && side === "request") {
    throw new HeadError(
      400,
      "an HTTP/1.0 request cannot use Transfer-Encoding",
    );
  }
}

/** The value of the first field named `lower`, if any. */
export function fieldValue(fields: Field[], lower: string): string | undefined {
  for (const f of fields) if (f.lower === lower) return f.value;
  return undefined;
}

/** The comma-separated tokens of every field named `lower`, lower-cased. */
export function fieldTokens(fields: Field[], lower: string): string[] {
  const out: string[] = [];
  for (const f of fields) {
    if (f.lower !== lower) continue;
    for (const t of f.value.split(",")) {
      const v = t.trim().toLowerCase();
      if (v) out.push(v);
    }
  }
  return out;
}

/** How a message body is delimited. */
export type Framing =
  | { kind: "none" }
  | { kind: "length"; length: number }
  | { kind: "chunked" }
  | { kind: "close" };

/** The body framing of a request (no length means no body). */
export function requestFraming(head: RequestHead): Framing {
  return messageFraming(head.fields) ?? { kind: "none" };
}

/** The body framing of a response to `method`. */
export function responseFraming(method: string, head: ResponseHead): Framing {
  const s = head.status;
  if (method === "HEAD" || s < 200 || s === 204 || s === 304) {
    return { kind: "none" };
  }
  return messageFraming(head.fields) ?? { kind: "close" };
}

function messageFraming(fields: Field[]): Framing | undefined {
  for (const f of fields) {
    if (f.lower === "transfer-encoding") return { kind: "chunked" };
  }
  const cl = fieldValue(fields, "content-length");
  if (cl === undefined) return undefined;
  const n = Number(cl.split(",")[0].trim());
  return n === 0 ? { kind: "none" } : { kind: "length", length: n };
}

const HOP_BY_HOP = new Set([
  "connection",
  "proxy-connection",
  "keep-alive",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "proxy-authorization",
  "proxy-authenticate",
]);

/**
 * The end-to-end fields of a message: hop-by-hop fields (the fixed list and
 * those named by Connection) removed. `keep` names hop-by-hop fields to keep
 * anyway (transfer-encoding when the body is passed through unchanged,
 * upgrade for an upgrade request).
 */
export function endToEnd(
  fields: Field[],
  keep: readonly string[] = [],
): Field[] {
  const named = fieldTokens(fields, "connection");
  const out: Field[] = [];
  for (const f of fields) {
    if (keep.includes(f.lower)) {
      out.push(f);
      continue;
    }
    if (HOP_BY_HOP.has(f.lower) || named.includes(f.lower)) continue;
    out.push(f);
  }
  return out;
}

/** Writes a head: start line, fields, extra lines ("Name: value"), empty line. */
export function serializeHead(
  startLine: string,
  fields: Field[],
  extra: readonly string[] = [],
): Uint8Array {
  let s = startLine + "\r\n";
  for (const f of fields) s += f.name + ": " + f.value + "\r\n";
  for (const e of extra) s += e + "\r\n";
  return latin1Bytes(s + "\r\n");
}
