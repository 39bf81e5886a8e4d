/**
 * Message bodies: streaming a Content-Length, chunked or close-delimited body
 * from a {@link Reader} to a socket, chunk by chunk, without holding it. The
 * reader meters what it reads (upstream side), so a body is metered simply by
 * being copied.
 *
 * @module
 */
import { type Reader, type Stream, writeAll } from "./_io.ts";
import { giveBuffer, SMALL, takeBuffer } from "./_buffers.ts";
import { type Framing, isTchar } from "./http_head.ts";
import type { Watch } from "./_watchdog.ts";

/** A body that broke its own framing or ended early. */
export class BodyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BodyError";
  }
}

/** A request body larger than the proxy accepts (413). */
export class BodyTooLarge extends BodyError {
  constructor(readonly limit: number) {
    super(`the body is larger than the ${limit} bytes this proxy accepts`);
    this.name = "BodyTooLarge";
  }
}

const enum S {
  /** The chunk size's hex digits. */
  Size,
  /** Whitespace after the size or an extension value: only `;` may follow. */
  ExtBws,
  /** After `;`: whitespace, then an extension's name. */
  ExtNameStart,
  ExtName,
  /** Whitespace after an extension's name: `=` or `;` may follow. */
  ExtNameBws,
  /** After `=`: whitespace, then a token or a quoted string. */
  ExtValueStart,
  ExtValue,
  ExtQuoted,
  /** After a backslash in a quoted string. */
  ExtQuotedPair,
  /** After a quoted string's closing quote. */
  ExtQuotedEnd,
  /** The CR of a chunk size line seen: LF must follow. */
  SizeLf,
  Data,
  /** Chunk data done: CR must follow, then LF. */
  DataCr,
  DataLf,
  /** After the last chunk, or a trailer field line: a field or the final CRLF. */
  LineStart,
  TrailerName,
  TrailerValue,
  TrailerLf,
  EndLf,
  Done,
}

const MAX_SIZE_LINE = 4096;
/** Largest chunk size: 16 hex digits at most, and no more than 2^53 - 1. */
const MAX_SIZE_DIGITS = 16;
const CR = 13;
const LF = 10;
const SP = 32;
const HTAB = 9;
const SEMI = 59;
const EQUALS = 61;
const DQUOTE = 34;
const BACKSLASH = 92;
const COLON = 58;

/** qdtext and quoted-pair's characters (RFC 9110 §5.6.4), `"` and `\` aside. */
function isQuotedText(c: number): boolean {
  return c === HTAB || (c >= SP && c !== 127);
}

/** A field value's characters (RFC 9110 §5.5): HTAB, SP, VCHAR, obs-text. */
function isValueChar(c: number): boolean {
  return c === HTAB || (c >= SP && c !== 127);
}

/**
 * Follows chunked framing over byte ranges (a state machine, so a chunk
 * boundary may fall anywhere between reads). It validates the framing and
 * finds where the message ends; the bytes themselves pass unchanged, or only
 * the data ranges when de-chunking for an HTTP/1.0 client.
 *
 * The grammar is RFC 9112 §7.1, strictly, since the next hop may read a
 * lax body otherwise: the size is 1 to 16 hex digits (no sign, `0x`,
 * leading whitespace, or value over 2^53 - 1); an extension is
 * `BWS ";" BWS token [BWS "=" BWS (token / quoted-string)]`, with no bare
 * CR or control character; every line ends in CRLF (a bare LF or CR is
 * refused); the data is followed by CRLF exactly; trailer fields are
 * `token ":" value` with a field value's characters only. A request body
 * is checked as it streams up, after the request was dialled (only the
 * chunks that came with its head are checked before: connection.ts).
 */
export class ChunkedScanner {
  #s = S.Size;
  #size = 0;
  #digits = 0;
  #lineLen = 0;
  #trailerBytes = 0;
  /** Data ranges [from, to, from, to, ...] found by the last {@link scan}. */
  readonly data: number[] = [];

  constructor(readonly maxTrailerBytes = 64 * 1024) {}

  /** True once the last chunk and trailers have been seen. */
  get done(): boolean {
    return this.#s === S.Done;
  }

  /** Scans buf[from, to); returns the index just past the message end, or -1. */
  scan(buf: Uint8Array, from: number, to: number): number {
    this.data.length = 0;
    let i = from;
    while (i < to) {
      const c = buf[i];
      const s = this.#s;
      if (s === S.Data) {
        const k = Math.min(this.#size, to - i);
        this.data.push(i, i + k);
        this.#size -= k;
        i += k;
        if (this.#size === 0) this.#s = S.DataCr;
        continue;
      }
      if (s < S.Data && ++this.#lineLen > MAX_SIZE_LINE) {
        throw new BodyError("a chunk size line is too long");
      }
      i++;
      switch (s) {
        case S.Size: {
          const v = hex(c);
          if (v >= 0) {
            if (
              ++this.#digits > MAX_SIZE_DIGITS ||
              this.#size > (Number.MAX_SAFE_INTEGER - v) / 16
            ) {
              throw new BodyError("a chunk size is too large");
            }
            this.#size = this.#size * 16 + v;
          } else if (this.#digits === 0) {
            throw new BodyError(
              "a chunk size line does not start with hex digits",
            );
          } else if (c === CR) this.#s = S.SizeLf;
          else if (c === SEMI) this.#s = S.ExtNameStart;
          else if (c === SP || c === HTAB) this.#s = S.ExtBws;
          else this.#malformed(c);
          break;
        }
        case S.ExtBws:
          if (c === SEMI) this.#s = S.ExtNameStart;
          else if (c !== SP && c !== HTAB) this.#malformed(c);
          break;
        case S.ExtNameStart:
          if (isTchar(c)) this.#s = S.ExtName;
          else if (c !== SP && c !== HTAB) this.#malformed(c);
          break;
        case S.ExtName:
          if (c === CR) this.#s = S.SizeLf;
          else if (c === SEMI) this.#s = S.ExtNameStart;
          else if (c === EQUALS) this.#s = S.ExtValueStart;
          else if (c === SP || c === HTAB) this.#s = S.ExtNameBws;
          else if (!isTchar(c)) this.#malformed(c);
          break;
        case S.ExtNameBws:
          if (c === SEMI) this.#s = S.ExtNameStart;
          else if (c === EQUALS) this.#s = S.ExtValueStart;
          else if (c !== SP && c !== HTAB) this.#malformed(c);
          break;
        case S.ExtValueStart:
          if (c === DQUOTE) this.#s = S.ExtQuoted;
          else if (isTchar(c)) this.#s = S.ExtValue;
          else if (c !== SP && c !== HTAB) this.#malformed(c);
          break;
        case S.ExtValue:
          if (c === CR) this.#s = S.SizeLf;
          else if (c === SEMI) this.#s = S.ExtNameStart;
          else if (c === SP || c === HTAB) this.#s = S.ExtBws;
          else if (!isTchar(c)) this.#malformed(c);
          break;
        case S.ExtQuoted:
          if (c === DQUOTE) this.#s = S.ExtQuotedEnd;
          else if (c === BACKSLASH) this.#s = S.ExtQuotedPair;
          else if (!isQuotedText(c)) this.#malformed(c);
          break;
        case S.ExtQuotedPair:
          if (!isQuotedText(c)) this.#malformed(c);
          this.#s = S.ExtQuoted;
          break;
        case S.ExtQuotedEnd:
          if (c === CR) this.#s = S.SizeLf;
          else if (c === SEMI) this.#s = S.ExtNameStart;
          else if (c === SP || c === HTAB) this.#s = S.ExtBws;
          else this.#malformed(c);
          break;
        case S.SizeLf:
          if (c !== LF) throw new BodyError("a chunk size line has a bare CR");
          this.#s = this.#size === 0 ? S.LineStart : S.Data;
          break;
        case S.DataCr:
          if (c !== CR) {
            throw new BodyError(
              c === LF
                ? "chunk data ends in a bare LF, not CRLF"
                : "chunk data is longer than its size",
            );
          }
          this.#s = S.DataLf;
          break;
        case S.DataLf:
          if (c !== LF) throw new BodyError("chunk data ends in a bare CR");
          this.#s = S.Size;
          this.#size = 0;
          this.#digits = 0;
          this.#lineLen = 0;
          break;
        case S.LineStart:
          this.#countTrailer();
          if (c === CR) this.#s = S.EndLf;
          else if (isTchar(c)) this.#s = S.TrailerName;
          else this.#badTrailer(c);
          break;
        case S.TrailerName:
          this.#countTrailer();
          if (c === COLON) this.#s = S.TrailerValue;
          else if (!isTchar(c)) this.#badTrailer(c);
          break;
        case S.TrailerValue:
          this.#countTrailer();
          if (c === CR) this.#s = S.TrailerLf;
          else if (!isValueChar(c)) this.#badTrailer(c);
          break;
        case S.TrailerLf:
          this.#countTrailer();
          if (c !== LF) throw new BodyError("a trailer field has a bare CR");
          this.#s = S.LineStart;
          break;
        case S.EndLf:
          if (c !== LF) {
            throw new BodyError("the trailer section has a bare CR");
          }
          this.#s = S.Done;
          return i;
        case S.Done:
          return i - 1;
      }
    }
    return -1;
  }

  #malformed(c: number): never {
    throw new BodyError(
      c === LF
        ? "a chunk size line ends in a bare LF, not CRLF"
        : `a chunk size line is malformed (${hexByte(c)} where it cannot be)`,
    );
  }

  #badTrailer(c: number): never {
    throw new BodyError(
      c === LF
        ? "a trailer line ends in a bare LF, not CRLF"
        : `a trailer field is malformed (${hexByte(c)} where it cannot be)`,
    );
  }

  #countTrailer() {
    if (++this.#trailerBytes > this.maxTrailerBytes) {
      throw new BodyError("the trailer section is too large");
    }
  }
}

function hexByte(c: number): string {
  return "0x" + c.toString(16).padStart(2, "0");
}

function hex(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** Options of {@link copyBody}. */
export interface CopyOptions {
  /** Write only the data of a chunked body (for an HTTP/1.0 client). */
  dechunk?: boolean;
  /**
   * Send a close-delimited body chunked (for an HTTP/1.1 client whose
   * connection stays open: its end is then the last chunk, not a close).
   */
  chunk?: boolean;
  /** Called with each written byte count (for the access log). */
  onWrite?: (n: number) => void;
  /** A message head to send before (and, when small, with) the body. */
  prefix?: Uint8Array;
  /** Each write must finish within `writeMs`, or the watch ends the exchange. */
  watch?: Watch;
  writeMs?: number;
  /**
   * A chunked body longer than this (as sent, framing included) is refused
   * with {@link BodyTooLarge}; 0 or absent: no limit. (A Content-Length is
   * checked before the body is read at all.)
   */
  maxBytes?: number;
}

/**
 * Copies one body from `src` to `dst` as framed by `framing`. Resolves when
 * the body is complete; rejects with {@link BodyError} when the sender broke
 * the framing or closed early, or with the reader's MeterStop.
 */
export async function copyBody(
  src: Reader,
  dst: Stream,
  framing: Framing,
  options: CopyOptions = {},
): Promise<void> {
  const onWrite = options.onWrite;
  const watch = options.watch;
  const writeMs = options.writeMs ?? 0;
  let prefix = options.prefix;
  const put = (p: Uint8Array) => {
    if (watch !== undefined) watch.deadline = Date.now() + writeMs;
    if (prefix !== undefined) {
      // The head goes out with the first body bytes in one write: for small
      // messages that halves the system calls.
      const head = prefix;
      prefix = undefined;
      if (p.length <= 16 * 1024) {
        const both = new Uint8Array(head.length + p.length);
        both.set(head);
        both.set(p, head.length);
        onWrite?.(head.length);
        return writeAll(dst, both);
      }
      onWrite?.(head.length);
      return writeAll(dst, head).then(() => writeAll(dst, p));
    }
    return writeAll(dst, p);
  };
  if (
    prefix !== undefined &&
    (framing.kind === "none" || options.dechunk || src.buffered === 0)
  ) {
    // Nothing to join the head with yet: send it alone, now.
    await put(new Uint8Array(0));
  }
  switch (framing.kind) {
    case "none":
      return;
    case "length": {
      let left = framing.length;
      while (left > 0) {
        if (src.buffered === 0 && !(await src.fill())) {
          throw new BodyError(
            `the body ended ${left} bytes before its Content-Length`,
          );
        }
        const part = src.take(left);
        left -= part.length;
        await put(part);
        onWrite?.(part.length);
      }
      return;
    }
    case "close":
      if (options.chunk) return await chunkUntilClose(src, put, onWrite);
      for (;;) {
        if (src.buffered === 0 && !(await src.fill())) return;
        const part = src.take(src.buffered);
        await put(part);
        onWrite?.(part.length);
      }
    case "chunked": {
      const scanner = new ChunkedScanner();
      const max = options.maxBytes ?? 0;
      let total = 0;
      for (;;) {
        if (src.buffered === 0 && !(await src.fill())) {
          throw new BodyError("the chunked body ended before its last chunk");
        }
        const from = src.start;
        const end = scanner.scan(src.buf, from, src.end);
        const to = end < 0 ? src.end : end;
        total += to - from;
        if (max > 0 && total > max) throw new BodyTooLarge(max);
        if (options.dechunk) {
          const d = scanner.data;
          const buf = src.buf;
          for (let k = 0; k < d.length; k += 2) {
            await put(buf.subarray(d[k], d[k + 1]));
            onWrite?.(d[k + 1] - d[k]);
          }
          src.start = to;
        } else {
          const part = src.take(to - from);
          await put(part);
          onWrite?.(part.length);
        }
        if (end >= 0) return;
      }
    }
  }
}

const HEX = new TextEncoder().encode("0123456789abcdef");

/** Writes `n` in hex at `buf[at]`; returns the index after it. */
function putHex(buf: Uint8Array, at: number, n: number): number {
  let digits = 1;
  for (let v = n >>> 4; v > 0; v >>>= 4) digits++;
  for (let i = at + digits - 1; i >= at; i--, n >>>= 4) buf[i] = HEX[n & 15];
  return at + digits;
}

/**
 * Copies a body that ends when `src` closes as chunks of what each read
 * gave, then the last chunk. Each chunk's size line goes out with the CRLF
 * ending the chunk before it, from one pooled buffer; a small chunk is
 * copied in behind it so that it takes one write.
 */
async function chunkUntilClose(
  src: Reader,
  put: (p: Uint8Array) => Promise<void>,
  onWrite: ((n: number) => void) | undefined,
): Promise<void> {
  const line = takeBuffer(SMALL);
  try {
    let at = 0; // bytes of `line` waiting to go out before the next data
    for (;;) {
      if (src.buffered === 0 && !(await src.fill())) break;
      const part = src.take(src.buffered);
      at = putHex(line, at, part.length);
      line[at++] = CR;
      line[at++] = LF;
      if (part.length <= line.length - at) {
        line.set(part, at);
        at += part.length;
        await put(line.subarray(0, at));
      } else {
        await put(line.subarray(0, at));
        await put(part);
        at += part.length;
      }
      onWrite?.(at);
      line[0] = CR;
      line[1] = LF;
      at = 2;
    }
    // The CRLF after the last data, if any, then the last chunk.
    line[at++] = 48; // "0"
    line[at++] = CR;
    line[at++] = LF;
    line[at++] = CR;
    line[at++] = LF;
    await put(line.subarray(0, at));
    onWrite?.(at);
  } finally {
    giveBuffer(line);
  }
}
