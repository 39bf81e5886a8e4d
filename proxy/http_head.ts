/**
 * HTTP/1.1 message heads: reading them incrementally from a {@link Reader}
 * with limits, parsing request and response heads, the smuggling guards, and
 * writing heads back out. Heads are handled as latin1 strings so that every
 * byte survives a parse and re-serialisation unchanged.
 *
 * Framing is strict (RFC 9110, RFC 9112), because a proxy that reads a
 * message one way while the next hop reads it another lets requests be
 * smuggled past it. A request head is refused (400, before anything is
 * dialled) for:
 *
 * - a request line that is not `method SP target SP HTTP/1.x` exactly: one
 *   SP between the parts, a token method, a case-sensitive version
 *   (`HTTP/1.2` and later minor versions are read as HTTP/1.1, RFC 9110
 *   §2.5; another major version is 505);
 * - a line ending in a bare LF, a bare CR anywhere, a control character
 *   other than HTAB in a field value, whitespace before the first field
 *   line, obs-fold, a field name that is not a token (a space before the
 *   colon, no colon, an empty name);
 * - no Host in an HTTP/1.1 request, more than one Host, or a Host that is
 *   not `host[:port]` (an absolute target wins over Host, see forward.ts);
 * - a Content-Length that is not `1*DIGIT` (a sign, hex, a space inside,
 *   empty, more than 2^53 - 1) or a list or repetition of different values
 *   (a list of one value repeated, `5, 5`, is read as `5`, RFC 9110 §8.6);
 * - a Transfer-Encoding whose codings are not tokens, with chunked twice or
 *   not last, in an HTTP/1.0 request, or beside Content-Length; a coding
 *   other than chunked before it is 501 (we decode none);
 * - a field named like a framing field with `_` for `-`
 *   (`Transfer_Encoding`), which servers that map both to one variable
 *   would take for it.
 *
 * The Content-Length and Transfer-Encoding that pass are forwarded in one
 * normal form (`5`, `chunked`), never as they came. A response head from
 * upstream is held to the same rules (502), except that obs-fold is
 * replaced by one SP (RFC 9112 §5.2), other control characters than NUL,
 * CR and LF are kept (RFC 9110 §5.5), an HTTP/1.0 response with
 * Transfer-Encoding is refused (RFC 9112 §6.1: its framing is faulty), and
 * Content-Length beside chunked is dropped (see _response_plan.ts).
 * Chunked bodies are checked as they stream (body.ts).
 *
 * @module
 */
import type { Reader } from "./_io.ts";
import { parseAuthority } from "./_target.ts";

/** A head that cannot be accepted; `status` is what to answer. */
export class HeadError extends Error {
  constructor(
    readonly status: 400 | 414 | 431 | 501 | 502 | 505,
    message: string,
  ) {
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
  const scan: HeadScan = { scanned: 0, lineStart: 0 };
  return scanHead(r, maxBytes, strict, scan) ??
    await readRestOfHead(r, maxBytes, strict, scan);
}

/**
 * The head, as {@link readHead} reads it, when it is whole in the buffer
 * already; undefined when more must be read (then call readHead). A
 * client's head almost always is (its first bytes were awaited before), and
 * the response's once its first bytes came: this way a request costs no
 * async frame for either. Throws HeadError as readHead rejects.
 */
export function bufferedHead(
  r: Reader,
  maxBytes: number,
  strict: boolean,
): Uint8Array | undefined {
  return scanHead(r, maxBytes, strict, { scanned: 0, lineStart: 0 });
}

/** How far {@link scanHead} got: offsets from `r.start`. */
interface HeadScan {
  /** Bytes already searched for a line end. */
  scanned: number;
  /** Where the line being read starts. */
  lineStart: number;
}

/** Reads on until {@link scanHead} finds the head's end. */
async function readRestOfHead(
  r: Reader,
  maxBytes: number,
  strict: boolean,
  scan: HeadScan,
): Promise<Uint8Array | null> {
  for (;;) {
    if (!(await r.fill())) {
      if (r.end === r.start) return null;
      throw new HeadError(400, "the connection closed in the middle of a head");
    }
    const head = scanHead(r, maxBytes, strict, scan);
    if (head !== undefined) return head;
  }
}

/**
 * Searches the buffered bytes for the empty line that ends a head: the
 * head's bytes (consumed from `r`), or undefined when more must be read.
 * Throws HeadError for a head that breaks a limit or a rule.
 */
function scanHead(
  r: Reader,
  maxBytes: number,
  strict: boolean,
  scan: HeadScan,
): Uint8Array | undefined {
  let { scanned, lineStart } = scan;
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
  scan.scanned = scanned;
  scan.lineStart = lineStart;
  return undefined;
}

const utf8Decoder = new TextDecoder();

/**
 * Bytes to a string, one char per byte (latin1), so nothing is altered.
 *
 * A head is ASCII almost always, and then UTF-8 decodes it to the same
 * string, with the runtime's fast decoder: ten times faster than
 * `String.fromCharCode` over the bytes, and as fast as node:buffer's
 * latin1, which would load the runtime's Node layer (about 4 MiB at
 * start). A byte of 0x80 or more either joins others into one char (the
 * string comes out shorter) or becomes U+FFFD; then the bytes are read
 * one by one.
 */
export function latin1(bytes: Uint8Array): string {
  const s = utf8Decoder.decode(bytes);
  if (s.length === bytes.length && !s.includes("\uFFFD")) return s;
  let out = "";
  for (let i = 0; i < bytes.length; i += 4096) {
    out += String.fromCharCode(...bytes.subarray(i, i + 4096));
  }
  return out;
}

/** A latin1 string to bytes (inverse of {@link latin1}). */
export function latin1Bytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  putLatin1(s, out);
  return out;
}

const utf8 = new TextEncoder();

/**
 * Writes the latin1 string `s` into `buf` from its start, one byte per
 * char; answers the byte count, or -1 when it does not fit. An ASCII
 * string (almost every head) is copied by the runtime's encoder, whose
 * UTF-8 is the same bytes; any other is written char by char.
 */
export function putLatin1(s: string, buf: Uint8Array): number {
  if (s.length > buf.length) return -1;
  const r = utf8.encodeInto(s, buf);
  if (r.read !== s.length || r.written !== s.length) {
    for (let i = 0; i < s.length; i++) buf[i] = s.charCodeAt(i);
  }
  return s.length;
}

// RFC 9110 token characters, as a table: checked for every header name.
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 48; c <= 57; c++) TCHAR[c] = 1;
for (let c = 65; c <= 90; c++) TCHAR[c] = TCHAR[c + 32] = 1;

/** True for a byte that may appear in an RFC 9110 token (tchar). */
export function isTchar(c: number): boolean {
  return c < 128 && TCHAR[c] === 1;
}

function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || TCHAR[c] === 0) return false;
  }
  return true;
}

/**
 * `s` without the optional whitespace (SP, HTAB) at its ends. Not
 * `String.prototype.trim`, which also strips VT, FF and NBSP (0xA0): a
 * value `\xa0chunked` must not become `chunked` here while the next hop
 * reads it otherwise.
 */
export function trimOws(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && isOws(s.charCodeAt(a))) a++;
  while (b > a && isOws(s.charCodeAt(b - 1))) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

function isOws(c: number): boolean {
  return c === 32 || c === 9;
}

/** A byte for a message, as `0x0b`. */
function hexByte(c: number): string {
  return "0x" + c.toString(16).padStart(2, "0");
}

function splitLines(text: string): string[] {
  // The head ends with an empty line; its lines are those before it, each
  // without its line end (LF, or CRLF). One slice per line.
  const lines: string[] = [];
  let start = 0;
  for (;;) {
    const lf = text.indexOf("\n", start);
    if (lf < 0) break;
    const end = lf > start && text.charCodeAt(lf - 1) === 13 ? lf - 1 : lf;
    if (end === start && lf + 1 >= text.length) break; // the empty line
    lines.push(text.slice(start, end));
    start = lf + 1;
  }
  return lines;
}

/**
 * The first control character of `line` that it may not hold, or -1. A
 * request's field line may hold none but HTAB: CR, LF and NUL are
 * dangerous, the others invalid (RFC 9110 §5.5). An upstream's may keep
 * the others (RFC 9110 §5.5 lets a recipient retain them for robustness),
 * never NUL or CR (LF ends the line).
 */
function forbiddenControl(line: string, strict: boolean): number {
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (c >= 32 && c !== 127) continue;
    if (strict ? c !== 9 : c === 0 || c === 13) return c;
  }
  return -1;
}

function parseFields(
  lines: string[],
  maxFields: number,
  side: "request" | "response",
): Field[] {
  const request = side === "request";
  const status = request ? 400 : 502;
  if (lines.length - 1 > maxFields) {
    throw new HeadError(
      request ? 431 : 502,
      `the ${side} head has more than ${maxFields} header fields`,
    );
  }
  const fields: Field[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    // One pass over the line: the first control character it may not hold
    // (anywhere), the colon, whether the name is a token and has upper
    // case, and where the value's optional whitespace ends.
    const n = line.length;
    let control = -1;
    let colon = -1;
    let token = true;
    let upper = false;
    let from = n;
    let to = n;
    for (let k = 0; k < n; k++) {
      const c = line.charCodeAt(k);
      if ((c < 32 || c === 127) && (request ? c !== 9 : c === 0 || c === 13)) {
        control = c;
        break;
      }
      if (colon < 0) {
        if (c === 58 /* : */) colon = k;
        else if (c >= 128 || TCHAR[c] === 0) token = false;
        else if (c <= 90 && c >= 65) upper = true;
      } else if (!isOws(c)) {
        if (from === n) from = k;
        to = k + 1;
      }
    }
    if (control >= 0) {
      throw new HeadError(
        status,
        control === 13
          ? `a bare CR in the ${side} head`
          : `a control character (${
            hexByte(control)
          }) in a header field of the ${side} head`,
      );
    }
    const c0 = line.charCodeAt(0);
    if (isOws(c0)) {
      // RFC 9112 §2.2: a line that starts with whitespace right after the
      // start line belongs to no field; one after a field is obs-fold.
      if (i === 1) {
        throw new HeadError(
          status,
          `whitespace before the first header field of the ${side} head`,
        );
      }
      if (request) {
        throw new HeadError(400, "obsolete line folding in the request head");
      }
      // RFC 9112 §5.2: a proxy may replace an upstream's obs-fold by SP
      // before it reads the value; the client gets the value on one line.
      const prev = fields[fields.length - 1];
      prev.value = trimOws(prev.value + " " + trimOws(line));
      continue;
    }
    if (colon <= 0 || !token) {
      throw new HeadError(
        status,
        `a malformed header line in the ${side} head (not "Name: value")`,
      );
    }
    const name = line.slice(0, colon);
    fields.push({
      name,
      lower: upper ? name.toLowerCase() : name,
      value: from < to ? line.slice(from, to) : "",
    });
  }
  return fields;
}

/**
 * The digits of `HTTP/d.d` at `text[0, 8)` as `major * 10 + minor`, or -1
 * when it is not that (without a regular expression: every head has one).
 */
function protocolDigits(text: string): number {
  if (!text.startsWith("HTTP/") || text.charCodeAt(6) !== 46 /* . */) {
    return -1;
  }
  const major = text.charCodeAt(5) - 48;
  const minor = text.charCodeAt(7) - 48;
  if (major < 0 || major > 9 || minor < 0 || minor > 9) return -1;
  return major * 10 + minor;
}

/**
 * The version of a request line: HTTP/1.0, or HTTP/1.1 for any later
 * minor version (RFC 9110 §2.5: read as the highest minor version we
 * speak). Another major version is 505; anything else is no version (400).
 */
function requestVersion(proto: string): 10 | 11 {
  const v = proto.length === 8 ? protocolDigits(proto) : -1;
  if (v < 0) {
    throw new HeadError(
      400,
      `unsupported protocol version "${proto.slice(0, 20)}"`,
    );
  }
  const major = Math.floor(v / 10);
  if (major !== 1) {
    throw new HeadError(
      505,
      `HTTP/${major}.${v % 10} is not spoken here; this proxy speaks HTTP/1.1`,
    );
  }
  return v === 10 ? 10 : 11;
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
  const version = requestVersion(proto);
  const fields = parseFields(lines, maxFields, "request");
  checkHost(fields, version);
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

/**
 * RFC 9112 §3.2: an HTTP/1.1 request has one Host, a request never more,
 * and its value is `host[:port]` or empty. Its value is not used (the
 * absolute target says where the request goes), but a next hop that reads
 * Host would see another request than ours.
 */
function checkHost(fields: Field[], version: 10 | 11): void {
  let host: Field | undefined;
  for (const f of fields) {
    if (f.lower !== "host") continue;
    if (host !== undefined) {
      throw new HeadError(400, "the request has more than one Host field");
    }
    host = f;
  }
  if (host === undefined) {
    if (version === 11) {
      throw new HeadError(400, "an HTTP/1.1 request needs a Host field");
    }
    return;
  }
  if (host.value !== "") {
    const hp = parseAuthority(host.value, 80);
    if (typeof hp === "string") {
      throw new HeadError(400, `the Host field is not host[:port]: ${hp}`);
    }
  }
}

/**
 * `HTTP/d.d SP 3DIGIT [SP reason]` read by hand (one per response): the
 * version digits, the status and the reason, or undefined for anything
 * else. The reason is the rest of the line, whatever it holds (checked by
 * the caller).
 */
function statusLine(
  line: string,
): { version: number; status: number; reason: string } | undefined {
  const version = protocolDigits(line);
  if (version < 0 || line.charCodeAt(8) !== 32 /* SP */) return undefined;
  let status = 0;
  for (let i = 9; i < 12; i++) {
    const d = line.charCodeAt(i) - 48;
    if (!(d >= 0 && d <= 9)) return undefined;
    status = status * 10 + d;
  }
  if (line.length === 12) return { version, status, reason: "" };
  if (line.charCodeAt(12) !== 32) return undefined;
  return { version, status, reason: line.slice(13) };
}

/** Parses a response head from upstream. Throws {@link HeadError} (502). */
export function parseResponseHead(bytes: Uint8Array): ResponseHead {
  const lines = splitLines(latin1(bytes));
  const m = statusLine(lines[0] ?? "");
  // A reason phrase is HTAB, SP, VCHAR and obs-text; a status below 100 is
  // no status (and would be taken for an interim one). 600 to 999 are
  // invalid but passed on: a client reads them as 5xx (RFC 9110 §15).
  if (
    !m || Math.floor(m.version / 10) !== 1 || m.status < 100 ||
    forbiddenControl(m.reason, true) >= 0
  ) {
    throw new HeadError(
      502,
      "the upstream answered something that is not an HTTP/1.x response",
    );
  }
  const fields = parseFields(lines, 1000, "response");
  const version = m.version === 10 ? 10 : 11;
  checkFraming(fields, version, "response");
  return { version, status: m.status, reason: m.reason, fields };
}

/** `1*DIGIT`, at most 16 of them (then also checked against 2^53 - 1). */
const DIGITS = /^\d{1,16}$/;

/** Framing fields that only a CGI-style next hop would take for framing. */
const FRAMING_ALIASES = new Set(["content_length", "transfer_encoding"]);

/**
 * Smuggling guards: a message must have one unambiguous length (see the
 * module doc for the rules). The framing fields that pass are left in
 * normal form: one Content-Length of the decimal value, one
 * Transfer-Encoding `chunked`.
 */
function checkFraming(
  fields: Field[],
  version: 10 | 11,
  side: "request" | "response",
): void {
  const request = side === "request";
  const status = request ? 400 : 502;
  let length: string | undefined;
  let lengthField: Field | undefined;
  let lengthFields = 0;
  let codings: string[] | undefined;
  let codingField: Field | undefined;
  for (const f of fields) {
    if (f.lower === "content-length") {
      for (const part of f.value.split(",")) {
        const v = trimOws(part);
        if (!DIGITS.test(v) || Number(v) > Number.MAX_SAFE_INTEGER) {
          throw new HeadError(
            status,
            `the ${side} has an invalid Content-Length "${
              f.value.slice(0, 20)
            }" (digits only, at most ${Number.MAX_SAFE_INTEGER})`,
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
      lengthField ??= f;
      lengthFields++;
    } else if (f.lower === "transfer-encoding") {
      codings ??= [];
      codingField = f;
      for (const part of f.value.split(",")) {
        const coding = trimOws(part).toLowerCase();
        if (!isToken(coding)) {
          throw new HeadError(
            status,
            `the ${side} has a malformed Transfer-Encoding "${
              f.value.slice(0, 30)
            }"`,
          );
        }
        codings.push(coding);
      }
    } else if (request && FRAMING_ALIASES.has(f.lower)) {
      throw new HeadError(
        400,
        `the request has a "${f.name}" field, which a server may take for ${
          f.lower.replace("_", "-")
        }`,
      );
    }
  }
  if (codings !== undefined) {
    checkCodings(codings, version, side, length !== undefined);
    codingField!.value = "chunked";
  }
  if (lengthField !== undefined) {
    // One field, one value, no leading zeros: the next hop reads what we read.
    lengthField.value = String(Number(length));
    if (lengthFields > 1) {
      for (let i = fields.length - 1; i >= 0; i--) {
        const f = fields[i];
        if (f.lower === "content-length" && f !== lengthField) {
          fields.splice(i, 1);
        }
      }
    }
  }
}

/**
 * The transfer codings of a message, in order: chunked once and last (else
 * the length cannot be known: RFC 9112 §6.3), no other coding (we decode
 * none: 501 for a request), and never in an HTTP/1.0 message or beside
 * Content-Length in a request.
 */
function checkCodings(
  codings: string[],
  version: 10 | 11,
  side: "request" | "response",
  withLength: boolean,
): void {
  const request = side === "request";
  const status = request ? 400 : 502;
  const chunked = codings.indexOf("chunked");
  if (chunked !== codings.lastIndexOf("chunked")) {
    throw new HeadError(
      status,
      `the ${side}'s Transfer-Encoding names chunked more than once`,
    );
  }
  if (chunked !== codings.length - 1) {
    throw new HeadError(
      status,
      `the ${side}'s last transfer coding is not chunked: its length cannot be known`,
    );
  }
  if (version === 10) {
    throw new HeadError(
      status,
      request
        ? "an HTTP/1.0 request cannot use Transfer-Encoding"
        : "an HTTP/1.0 response with Transfer-Encoding has faulty framing",
    );
  }
  // A response with both is answered as chunked (RFC 9112 §6.3) and its
  // connection is not reused; a request with both is refused (smuggling).
  if (withLength && request) {
    throw new HeadError(
      400,
      "the request has both Content-Length and Transfer-Encoding",
    );
  }
  if (codings.length > 1) {
    throw new HeadError(
      request ? 501 : 502,
      `the ${side} uses a transfer coding other than "chunked" (${
        codings.slice(0, -1).join(", ").slice(0, 40)
      })`,
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
      const v = trimOws(t).toLowerCase();
      if (v) out.push(v);
    }
  }
  return out;
}

/**
 * True when `value[start, end)`, OWS trimmed, is `token` (lower case,
 * ASCII) ignoring ASCII case. The tokens asked about are ASCII, and no
 * other char lower-cases to an ASCII one, so this answers as comparing
 * `toLowerCase()` would, without making a string.
 */
function tokenIs(
  value: string,
  start: number,
  end: number,
  token: string,
): boolean {
  while (start < end && isOws(value.charCodeAt(start))) start++;
  while (end > start && isOws(value.charCodeAt(end - 1))) end--;
  if (end - start !== token.length) return false;
  for (let i = 0; i < token.length; i++) {
    let c = value.charCodeAt(start + i);
    if (c >= 65 && c <= 90) c += 32;
    if (c !== token.charCodeAt(i)) return false;
  }
  return true;
}

/** True when `value`'s comma-separated list holds `token` (see tokenIs). */
function listHas(value: string, token: string): boolean {
  let start = 0;
  for (;;) {
    const comma = value.indexOf(",", start);
    const end = comma < 0 ? value.length : comma;
    if (tokenIs(value, start, end, token)) return true;
    if (comma < 0) return false;
    start = comma + 1;
  }
}

/**
 * True when a field named `lower` has `token` among its comma-separated
 * tokens (`token` in lower case): what `fieldTokens(fields,
 * lower).includes(token)` answers, with nothing allocated.
 */
export function hasToken(
  fields: Field[],
  lower: string,
  token: string,
): boolean {
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i];
    if (f.lower === lower && listHas(f.value, token)) return true;
  }
  return false;
}

/**
 * True when a Connection field names a token other than `keep-alive`: only
 * then can Connection name a field to drop that the fixed list of
 * hop-by-hop fields does not (keep-alive is on it).
 */
function connectionNamesFields(fields: Field[]): boolean {
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i];
    if (f.lower !== "connection") continue;
    const v = f.value;
    let start = 0;
    for (;;) {
      const comma = v.indexOf(",", start);
      const end = comma < 0 ? v.length : comma;
      let a = start;
      let b = end;
      while (a < b && isOws(v.charCodeAt(a))) a++;
      while (b > a && isOws(v.charCodeAt(b - 1))) b--;
      if (b > a && !tokenIs(v, a, b, "keep-alive")) return true;
      if (comma < 0) break;
      start = comma + 1;
    }
  }
  return false;
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
  // checkFraming left one decimal value.
  const n = Number(cl);
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

/** True when `f` is hop-by-hop: on the fixed list, or named by Connection. */
function hopByHop(fields: Field[], f: Field, named: boolean): boolean {
  return HOP_BY_HOP.has(f.lower) ||
    (named && hasToken(fields, "connection", f.lower));
}

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
  const named = connectionNamesFields(fields);
  const out: Field[] = [];
  for (const f of fields) {
    if (keep.includes(f.lower) || !hopByHop(fields, f, named)) out.push(f);
  }
  return out;
}

/** What {@link passedHeadText} writes besides the start line and fields. */
export interface PassedHeadOptions {
  /** Hop-by-hop fields to pass on anyway (see {@link endToEnd}). */
  keep?: readonly string[];
  /** A field (lower-case name) not to pass on, end-to-end or not. */
  skip?: string;
  /** A line of ours before the fields ("Name: value"). */
  first?: string;
  /** Lines of ours after them. */
  extra?: readonly string[];
}

/**
 * The text of a head passed on to the next hop: `startLine`, then
 * `options.first`, the end-to-end fields of `fields` as {@link endToEnd}
 * picks them (but `options.skip`), `options.extra`, and the empty line;
 * what `serializeHead(startLine, [first, ...endToEnd(fields, keep)],
 * extra)` writes, built as one string, with no array on the way, since
 * every forwarded request and answer needs one.
 */
export function passedHeadText(
  startLine: string,
  fields: Field[],
  options: PassedHeadOptions = {},
): string {
  const keep = options.keep;
  const skip = options.skip;
  const named = connectionNamesFields(fields);
  let s = startLine + "\r\n";
  if (options.first !== undefined) s += options.first + "\r\n";
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i];
    if (f.lower === skip) continue;
    if (
      (keep === undefined || !keep.includes(f.lower)) &&
      hopByHop(fields, f, named)
    ) continue;
    s += f.name + ": " + f.value + "\r\n";
  }
  const extra = options.extra;
  if (extra !== undefined) {
    for (let i = 0; i < extra.length; i++) s += extra[i] + "\r\n";
  }
  return s + "\r\n";
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
