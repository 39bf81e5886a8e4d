/**
 * The client side of `CONNECT` to an HTTP parent proxy: ask for a tunnel to
 * `host:port`, read the parent's answer, and hand back the connection with
 * any bytes that came after the answer's head still to be read.
 *
 * @module
 */
import { DialError } from "./_dial_error.ts";
import { type Stream, writeAll } from "./_io.ts";
import { authority } from "./_target.ts";

/** Longest response head accepted from a parent (a real one is ~100 bytes). */
const MAX_HEAD = 16 * 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Options of {@link httpConnect}. */
export interface HttpConnectOptions {
  /** The `Proxy-Authorization` value, when the parent's URL has credentials. */
  authorization?: string;
  /** `host:port` of the parent, for messages. */
  parent: string;
}

/** `Basic base64(user:pass)` for `Proxy-Authorization` (UTF-8 before base64). */
export function basicAuthorization(user: string, pass: string): string {
  const bytes = encoder.encode(`${user}:${pass}`);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return `Basic ${btoa(bin)}`;
}

/**
 * Sends `CONNECT target` on `conn` and reads the answer. Resolves with the
 * connection to use from now on (a wrapper when the parent sent bytes past
 * its head). Throws {@link DialError} for a non-2xx answer or a malformed one;
 * I/O errors propagate as they are.
 */
export async function httpConnect(
  conn: Stream,
  target: { host: string; port: number },
  options: HttpConnectOptions,
): Promise<Stream> {
  const { parent } = options;
  const where = authority(target.host, target.port);
  const lines = [`CONNECT ${where} HTTP/1.1`, `Host: ${where}`];
  if (options.authorization) {
    lines.push(`Proxy-Authorization: ${options.authorization}`);
  }
  const request = encoder.encode(lines.join("\r\n") + "\r\n\r\n");
  await writeAll(conn, request);

  const buf = new Uint8Array(MAX_HEAD);
  let end = 0;
  let headEnd = -1;
  while (headEnd < 0) {
    if (end === buf.length) {
      throw new DialError(
        `parent proxy ${parent} answered CONNECT to ${where} with a head over ${MAX_HEAD} bytes`,
        false,
      );
    }
    const n = await conn.read(buf.subarray(end));
    if (n === null) {
      throw new DialError(
        `parent proxy ${parent} closed the connection without answering CONNECT to ${where}; is it an HTTP proxy?`,
        false,
      );
    }
    const from = Math.max(0, end - 3);
    end += n;
    headEnd = findHeadEnd(buf, from, end);
  }

  const head = decoder.decode(buf.subarray(0, headEnd));
  const status = /^HTTP\/1\.[01] (\d{3})(?: ([^\r\n]*))?/.exec(head);
  if (!status) {
    throw new DialError(
      `parent proxy ${parent} answered CONNECT to ${where} with something that is not HTTP; is it an HTTP proxy?`,
      false,
    );
  }
  const code = Number(status[1]);
  if (code < 200 || code > 299) {
    const reason = status[2] ? ` ${status[2].trim()}` : "";
    throw new DialError(
      `parent proxy ${parent} refused CONNECT to ${where}: ${code}${reason}`,
      false,
    );
  }
  if (headEnd === end) return conn;
  // The target spoke first and its bytes came with the parent's answer.
  return new PrefixedConn(conn, buf.slice(headEnd, end));
}

/** Index just past the first CRLFCRLF in buf[from, end), or -1. */
function findHeadEnd(buf: Uint8Array, from: number, end: number): number {
  for (let i = from; i + 3 < end; i++) {
    if (
      buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 &&
      buf[i + 3] === 10
    ) return i + 4;
  }
  return -1;
}

/** A connection whose first reads return bytes already read from it. */
export class PrefixedConn implements Stream {
  #conn: Stream;
  #prefix: Uint8Array | undefined;

  /** `prefix`: bytes already read from `conn`, returned first. */
  constructor(conn: Stream, prefix: Uint8Array) {
    this.#conn = conn;
    this.#prefix = prefix.length > 0 ? prefix : undefined;
  }

  /** Our end's address, as the wrapped connection knows it. */
  get localAddr(): Deno.Addr | undefined {
    return this.#conn.localAddr;
  }

  /** The kept bytes first, then reads from the connection. */
  read(p: Uint8Array): Promise<number | null> {
    const prefix = this.#prefix;
    if (prefix === undefined) return this.#conn.read(p);
    const n = Math.min(p.length, prefix.length);
    p.set(prefix.subarray(0, n));
    this.#prefix = n === prefix.length ? undefined : prefix.subarray(n);
    return Promise.resolve(n);
  }

  /** Writes to the connection. */
  write(p: Uint8Array): Promise<number> {
    return this.#conn.write(p);
  }

  /** Half-closes the connection. */
  closeWrite(): Promise<void> {
    return this.#conn.closeWrite();
  }

  /** Closes the connection. */
  close(): void {
    this.#prefix = undefined;
    this.#conn.close();
  }
}
