/**
 * Helpers of the framing tests (proxy_framing_request_test.ts,
 * proxy_framing_response_test.ts): send raw bytes to a proxy and read one
 * answer, and an origin that records what reached it.
 *
 * @module
 */
import { latin1Bytes } from "../../proxy/http_head.ts";
import {
  type FakePolicy,
  fakePolicy,
  RawClient,
  type RawOrigin,
  startRawOrigin,
  startTestProxy,
} from "./proxy_kit.ts";

/** One answer read from the proxy. */
export interface Answer {
  status: number;
  /** The head, up to and including its empty line. */
  head: string;
  body: string;
  /** The proxy closed the connection after it. */
  closed: boolean;
  /** Everything read, the answer and what followed. */
  text: string;
}

/**
 * Where an answer in `text` ends: after its Content-Length body, after the
 * last chunk of a chunked one, or -1 while it is incomplete (or ends at
 * the close).
 */
function answerEnd(text: string): number {
  const headEnd = text.indexOf("\r\n\r\n");
  if (headEnd < 0) return -1;
  const head = text.slice(0, headEnd + 4);
  if (/^HTTP\/1\.1 1\d\d /.test(head) && !head.startsWith("HTTP/1.1 101")) {
    // An interim answer: the one after it counts.
    const next = answerEnd(text.slice(headEnd + 4));
    return next < 0 ? -1 : headEnd + 4 + next;
  }
  const cl = /\r\ncontent-length: *(\d+)\r\n/i.exec(head);
  if (cl) {
    const end = headEnd + 4 + Number(cl[1]);
    return text.length >= end ? end : -1;
  }
  if (/\r\ntransfer-encoding: *chunked\r\n/i.test(head)) {
    const last = /(?:^|\r\n)0\r\n(?:[^\r\n]*\r\n)*?\r\n/.exec(
      text.slice(headEnd + 4),
    );
    return last ? headEnd + 4 + last.index + last[0].length : -1;
  }
  return -1;
}

/**
 * Sends `request` (a latin1 string: one char per byte, so any byte can be
 * sent) on a new connection to `port` and reads one answer, and whether
 * the connection was closed after it (waiting `closeMs` for that).
 */
export async function ask(
  port: number,
  request: string | (string | number)[],
  closeMs = 300,
): Promise<Answer> {
  const c = await RawClient.open(port);
  try {
    const parts = typeof request === "string" ? [request] : request;
    for (const p of parts) {
      if (typeof p === "number") {
        await new Promise((r) => setTimeout(r, p));
      } else await c.send(latin1Bytes(p)).catch(() => {});
    }
    await c.readUntil((t) => answerEnd(t) >= 0, 5000);
    const end = answerEnd(c.text);
    if (!c.closed) await c.readUntil((t) => t.length > end, closeMs);
    const headEnd = c.text.indexOf("\r\n\r\n") + 4;
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(c.text);
    return {
      status: m ? Number(m[1]) : 0,
      head: c.text.slice(0, headEnd),
      body: c.text.slice(headEnd, end < 0 ? undefined : end),
      closed: c.closed,
      text: c.text,
    };
  } finally {
    c.close();
  }
}

/** What one request brought to the {@link RecordingOrigin}. */
export interface Received {
  head: string;
  body: string;
  /** The origin's connection was closed by the proxy before a whole request came. */
  cut: boolean;
}

/** An origin that records each request and answers it with `answer`. */
export interface RecordingOrigin extends RawOrigin {
  received: Received[];
  /** Resolves once `n` requests (whole or cut) have come in. */
  seen(n: number): Promise<void>;
}

const dec = new TextDecoder("latin1");

/** The request body in `rest` is whole (by its head's framing). */
function bodyDone(head: string, rest: string): boolean {
  const cl = /\r\ncontent-length: *(\d+)\r\n/i.exec(head);
  if (cl) return rest.length >= Number(cl[1]);
  if (/\r\ntransfer-encoding:/i.test(head)) {
    return /(?:^|\r\n)0+(?:;[^\r\n]*)?\r\n(?:[^\r\n]+\r\n)*\r\n$/.test(rest);
  }
  return true;
}

/**
 * Starts an origin that reads each request whole (its head, then its body
 * by Content-Length or up to the last chunk) and writes `answer` (by
 * default a 200 with `ok`), one request per connection.
 */
export function recordingOrigin(
  answer: string | ((index: number) => string | (string | number)[]) =
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
): RecordingOrigin {
  const received: Received[] = [];
  const waiters: (() => void)[] = [];
  const note = (r: Received) => {
    received.push(r);
    for (const w of waiters.splice(0)) w();
  };
  const origin = startRawOrigin(async (conn, index) => {
    const buf = new Uint8Array(16 * 1024);
    let text = "";
    let headEnd = -1;
    for (;;) {
      headEnd = text.indexOf("\r\n\r\n");
      if (
        headEnd >= 0 &&
        bodyDone(text.slice(0, headEnd + 4), text.slice(headEnd + 4))
      ) {
        break;
      }
      const n = await conn.read(buf).catch(() => null);
      if (n === null) {
        note({
          head: headEnd >= 0 ? text.slice(0, headEnd + 4) : text,
          body: headEnd >= 0 ? text.slice(headEnd + 4) : "",
          cut: true,
        });
        return;
      }
      text += dec.decode(buf.subarray(0, n));
    }
    note({
      head: text.slice(0, headEnd + 4),
      body: text.slice(headEnd + 4),
      cut: false,
    });
    const a = typeof answer === "string" ? [answer] : answer(index);
    for (const part of typeof a === "string" ? [a] : a) {
      if (typeof part === "number") {
        await new Promise((r) => setTimeout(r, part));
      } else {
        const b = latin1Bytes(part);
        let at = 0;
        while (at < b.length) at += await conn.write(b.subarray(at));
      }
    }
  });
  return Object.assign(origin, {
    received,
    seen(n: number): Promise<void> {
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(
              new Error(`the origin saw ${received.length} of ${n} requests`),
            ),
          5000,
        );
        const check = () => {
          if (received.length >= n) {
            clearTimeout(timer);
            resolve();
          } else waiters.push(check);
        };
        check();
      });
    },
  });
}

/** A proxy with a fake policy in front of a recording origin. */
export interface FramingBench {
  origin: RecordingOrigin;
  policy: FakePolicy;
  port: number;
  /** `http://127.0.0.1:<origin port>` */
  base: string;
  close(): Promise<void>;
}

/** Starts a {@link FramingBench}; `answer` as in {@link recordingOrigin}. */
export async function framingBench(
  answer?: Parameters<typeof recordingOrigin>[0],
): Promise<FramingBench> {
  const origin = recordingOrigin(answer);
  const policy = fakePolicy();
  const proxy = await startTestProxy(policy);
  return {
    origin,
    policy,
    port: proxy.addr.port,
    base: `http://127.0.0.1:${origin.port}`,
    async close() {
      await proxy.close();
      await origin.close();
    },
  };
}
