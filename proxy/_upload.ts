/**
 * A forwarded request's body on its way up, sent while the answer is read
 * (an origin may answer early, 401 or 413, and a client that sent
 * `Expect: 100-continue` may wait for the origin's 100 before it sends its
 * body), and the deadlines that go with it:
 *
 *   body going up:            the client is awaited (readTimeout, then 408)
 *   body not started, after
 *   `Expect: 100-continue`:   the upstream is awaited (responseTimeout, then 504)
 *   body up, or none:         the upstream is awaited (responseTimeout, then 504)
 *   answer head arrived:      the answer's deadlines rule (see forward.ts)
 *
 * @module
 */
import { closeQuietly, MeterStop, type Reader, type Stream } from "./_io.ts";
import { copyBody } from "./body.ts";
import {
  type Framing,
  hasToken,
  requestFraming,
  type RequestHead,
} from "./http_head.ts";
import { type Client, READING_BODY, WAITING_FOR_UPSTREAM } from "./_context.ts";
import type { ProxyConfig } from "./config.ts";
import { GO_ON, type Meter, STOP } from "./policy.ts";
import { sleep } from "./timers.ts";

/** What an upload needs of its exchange (a forwarded request's job is one). */
export interface UploadJob {
  ctx: { config: ProxyConfig };
  client: Client;
  req: RequestHead;
  /** The policy's decision: its `upMeter` counts the body going up. */
  decision?: { upMeter?: Meter };
}

/**
 * The upstream connection as the body sees it, asking the up-meter about
 * every write once it is written (what went up is what counts, partial
 * writes included). One per metered upload; nothing per chunk.
 */
class MeteredUpstream implements Stream {
  constructor(readonly conn: Stream, readonly meter: Meter) {}

  get localAddr(): Deno.Addr | undefined {
    return this.conn.localAddr;
  }

  async write(p: Uint8Array): Promise<number> {
    const n = await this.conn.write(p);
    const answer = this.meter.chunk(n);
    if (answer !== GO_ON) {
      if (answer === STOP) throw new MeterStop(this.meter.stopReason);
      // Throttled: the body waits, and so the client, by TCP's own flow.
      if (answer > 0) await sleep(answer);
    }
    return n;
  }

  read(p: Uint8Array): Promise<number | null> {
    return this.conn.read(p);
  }

  closeWrite(): Promise<void> {
    return this.conn.closeWrite();
  }

  close(): void {
    this.conn.close();
  }
}

/**
 * One request body, from the client's reader to the upstream connection.
 * Made before the request head goes up (it arms the client's watch for
 * the first phase); {@link Upload.send} starts the body once the head is up.
 */
export class Upload {
  /** How the body is framed; `none` for a request without one. */
  readonly framing: Framing;
  /** True once the whole body is up; at once for a request without one. */
  done: boolean;
  /**
   * Why the body could not go up (BodyError, BodyTooLarge, MeterStop, a
   * socket error).
   */
  error: unknown = undefined;
  /** The sending, while it runs; it never rejects (see {@link Upload.error}). */
  sending: Promise<void> | undefined = undefined;
  readonly #client: Client;
  readonly #upstream: Reader;
  readonly #config: ProxyConfig;
  /** Where the body goes: the upstream, through the up-meter when there is one. */
  readonly #sink: Stream;
  /** The answer's head arrived: its deadlines are no longer ours to set. */
  #answered = false;
  /** The client sent `Expect: 100-continue` and no body byte yet. */
  #awaitingContinue: boolean;

  constructor(job: UploadJob, upstream: Reader) {
    const { client, req } = job;
    const config = job.ctx.config;
    this.#client = client;
    this.#upstream = upstream;
    this.#config = config;
    const upMeter = job.decision?.upMeter;
    this.#sink = upMeter
      ? new MeteredUpstream(upstream.conn, upMeter)
      : upstream.conn;
    this.framing = requestFraming(req);
    this.done = this.framing.kind === "none";
    this.#awaitingContinue = !this.done && client.reader.buffered === 0 &&
      hasToken(req.fields, "expect", "100-continue");
    client.reader.watch = client.watch;
    client.reader.idleMs = config.readTimeoutMs;
    // While the body goes up, the client is the one awaited: the upstream's
    // pending read must not set the deadline meanwhile, or a stalled body
    // would wait for responseTimeout and be blamed on upstream. An upstream
    // that answers early is watched again from its head on.
    //
    // But a client that sent `Expect: 100-continue` and no body yet waits
    // for the origin's word: until its body starts or a 100 is passed on,
    // the upstream is the one awaited.
    if (this.done || this.#awaitingContinue) {
      upstream.watch = client.watch;
      client.watch.arm(config.responseTimeoutMs, WAITING_FOR_UPSTREAM);
    } else {
      upstream.watch = undefined;
      client.watch.arm(config.readTimeoutMs, READING_BODY);
    }
  }

  /** The request's head is up: send its body, if it has one. */
  send(): void {
    if (!this.done) this.sending = this.#run();
  }

  /** The upstream passed a 100 Continue on: the client is expected to send. */
  continued(): void {
    if (this.#awaitingContinue) this.#awaitBody();
  }

  /** The answer's head arrived: from now on its deadlines rule. */
  answered(): void {
    this.#answered = true;
  }

  async #run(): Promise<void> {
    const client = this.#client;
    const watch = client.watch;
    try {
      if (this.#awaitingContinue) {
        // The first body bytes, whenever the client sends them (curl does
        // after a second without a 100): from then on the client is
        // awaited. At end of stream copyBody below reports the short body.
        // Meanwhile the client's silence is no timeout of its own.
        client.reader.watch = undefined;
        try {
          await client.reader.fill();
        } finally {
          client.reader.watch = watch;
        }
        if (this.#awaitingContinue) this.#awaitBody();
      }
      await copyBody(client.reader, this.#sink, this.framing, {
        watch,
        writeMs: this.#config.writeTimeoutMs,
        maxBytes: this.#config.maxRequestBody,
      });
    } catch (e) {
      this.error = e;
      // The request cannot be completed: give up the upstream at once
      // rather than let it wait for the rest of the body.
      closeQuietly(this.#upstream.conn);
      return;
    }
    this.done = true;
    // The body is up: from now on only the upstream is awaited.
    if (!this.#answered) {
      this.#upstream.watch = watch;
      watch.arm(this.#config.responseTimeoutMs, WAITING_FOR_UPSTREAM);
    }
  }

  /** The client is the one awaited now (its body), unless that is over. */
  #awaitBody(): void {
    this.#awaitingContinue = false;
    if (this.done || this.#answered) return;
    this.#upstream.watch = undefined;
    this.#client.watch.arm(this.#config.readTimeoutMs, READING_BODY);
  }
}
