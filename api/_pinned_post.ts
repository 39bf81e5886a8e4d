/**
 * One HTTPS POST to the API over a connection that trusts only a pinned
 * certificate. `fetch` cannot do this: `Deno.createHttpClient({ caCerts })`
 * adds to the default roots, so any certificate a public (or system) CA
 * issued for the host would pass. Here `node:tls` gets the pin as its only
 * root, and the certificate shown is compared with the pin before a byte
 * of the request (which may carry a password or a secret) is written.
 *
 * @module
 */
import { connect } from "node:tls";
import { Buffer } from "node:buffer";
import { fingerprint } from "./_peer_certificate.ts";

/** The certificate a connection must show. */
export interface Pin {
  /** Trusted as the only root (a self-signed certificate or a CA). */
  pem: string;
  /** When set, the server's certificate must have this SHA-256 too. */
  sha256?: string;
}

/** An HTTP answer, read to its end. */
export interface PostAnswer {
  status: number;
  text: string;
}

/** The body of a chunked message (RFC 9112 §7.1), trailers dropped. */
function dechunk(bytes: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  let at = 0;
  for (;;) {
    const end = bytes.indexOf(0x0a, at);
    if (end < 0) throw new Error("a chunked answer ended early");
    const size = parseInt(
      new TextDecoder().decode(bytes.subarray(at, end)),
      16,
    );
    if (!Number.isFinite(size)) throw new Error("a malformed chunked answer");
    if (size === 0) break;
    parts.push(bytes.subarray(end + 1, end + 1 + size));
    at = end + 1 + size + 2;
  }
  return Buffer.concat(parts);
}

/** Splits a whole HTTP/1.1 answer into status and body text. */
function parseAnswer(bytes: Uint8Array): PostAnswer {
  const sep = Buffer.from(bytes).indexOf("\r\n\r\n");
  if (sep < 0) throw new Error("the server closed the connection early");
  const head = new TextDecoder().decode(bytes.subarray(0, sep)).split("\r\n");
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(head[0])?.[1];
  if (!status) throw new Error(`not an HTTP answer: ${head[0]}`);
  const chunked = head.some((h) => /^transfer-encoding:.*chunked/i.test(h));
  let body = bytes.subarray(sep + 4);
  const length = head.find((h) => /^content-length:/i.test(h));
  if (chunked) body = dechunk(body);
  else if (length) body = body.subarray(0, Number(length.split(":")[1]));
  return { status: Number(status), text: new TextDecoder().decode(body) };
}

/**
 * POSTs `body` (JSON) to `url` and reads the whole answer. Rejects when
 * the server's certificate does not chain to `pin.pem` or, with
 * `pin.sha256`, is not that very certificate; nothing is sent then.
 */
export function postPinned(
  url: URL,
  pin: Pin,
  body: string,
  options: { signal?: AbortSignal } = {},
): Promise<PostAnswer> {
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const isIp = /^[\d.]+$/.test(host) || host.includes(":");
  return new Promise<PostAnswer>((resolve, reject) => {
    const socket = connect({
      host,
      port: Number(url.port || 443),
      servername: isIp ? undefined : host,
      ca: [pin.pem],
      rejectUnauthorized: true,
    });
    const signal = options.signal;
    // A listener keeps a timeout signal's timer alive: removed once settled,
    // or a finished command would wait out the timeout before exiting.
    const onAbort = () => fail(signal?.reason);
    const settle = () => signal?.removeEventListener("abort", onAbort);
    const fail = (e: unknown) => {
      settle();
      socket.destroy();
      reject(e);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    // `on`, not `once`: a second error with no listener would be thrown.
    socket.on("error", fail);
    socket.once("secureConnect", async () => {
      const raw = socket.getPeerCertificate(false)?.raw;
      const shown = raw ? await fingerprint(new Uint8Array(raw)) : undefined;
      if (pin.sha256 !== undefined && shown !== pin.sha256) {
        fail(new Error(`the server showed certificate SHA-256 ${shown}`));
        return;
      }
      const chunks: Uint8Array[] = [];
      socket.on("data", (d: Uint8Array) => chunks.push(d));
      socket.once("end", () => {
        settle();
        try {
          resolve(parseAnswer(Buffer.concat(chunks)));
        } catch (e) {
          reject(e);
        }
      });
      const payload = Buffer.from(body);
      socket.write(
        `POST ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\n` +
          `Content-Type: application/json\r\nContent-Length: ${payload.length}\r\n` +
          `Connection: close\r\n\r\n`,
      );
      socket.write(payload);
    });
  });
}
