/**
 * A buffered reader over a socket, with metering and a progress watch, and
 * `writeAll`. Everything read from upstream goes through `fill()`, which is
 * where the meter is asked, so head and body bytes are counted alike.
 *
 * @module
 */
import { GO_ON, type Meter, STOP } from "./policy.ts";
import {
  BIG,
  dropBuffer,
  giveBuffer,
  SMALL,
  takeBuffer,
  TINY,
} from "./_buffers.ts";
import type { Watch } from "./_watchdog.ts";
import { sleep } from "./timers.ts";

/**
 * A byte stream as the data path uses it, to a client or upstream: a
 * `Deno.Conn` is one, and so are the dialers' own (a node socket bound to a
 * source address, a parent's connection with bytes read past its answer).
 */
export interface Stream {
  /** Reads into `p`; resolves with the byte count, or null at end of stream. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes some of `p` (maybe not all); resolves with the byte count. */
  write(p: Uint8Array): Promise<number>;
  /** Sends FIN; reading goes on (half-close). */
  closeWrite(): Promise<void>;
  /** Closes both directions. */
  close(): void;
  /** Our end's address, when the stream knows it (a `Deno.Conn` does). */
  readonly localAddr?: Deno.Addr;
}

/** Thrown by {@link Reader.fill} when the meter answered STOP. */
export class MeterStop extends Error {
  constructor(reason: string | undefined) {
    super(reason ?? "quota reached");
    this.name = "MeterStop";
  }
}

/** Buffered reading from one socket. */
export class Reader {
  buf: Uint8Array;
  start = 0;
  end = 0;
  /** Asked for every chunk read; set per exchange (upstream side only). */
  meter: Meter | undefined = undefined;
  /** Bumped on every read: no progress for `idleMs` ends the exchange. */
  watch: Watch | undefined = undefined;
  idleMs = 0;
  /** Total bytes read from the socket. */
  bytesRead = 0;
  #grow = false;
  #waiting = false;
  #released = false;
  #probe: Promise<number | null> | undefined = undefined;

  constructor(readonly conn: Stream) {
    this.buf = takeBuffer(SMALL);
  }

  /**
   * True while a read from the socket is pending: the peer is the one
   * awaited (a timeout then is the peer's silence, not a stuck write).
   */
  get waiting(): boolean {
    return this.#waiting;
  }

  /** Bytes read but not consumed yet. */
  get buffered(): number {
    return this.end - this.start;
  }

  /**
   * Reads more from the socket into the buffer. False at end of stream.
   * Throws {@link MeterStop} when the meter says stop; sleeps when it says
   * to wait (throttling), before the bytes are handed on.
   */
  fill(): Promise<boolean> {
    // Not an async function: a read's then costs less than an async frame
    // (two fills per forwarded request).
    const probe = this.#probe;
    if (probe !== undefined) {
      // A read started while the connection sat idle in the pool: its
      // result is the first chunk of this exchange.
      if (this.watch) this.watch.deadline = Date.now() + this.idleMs;
      this.#probe = undefined;
      return probe.then((n) => this.#took(n, this.buf.length));
    }
    const view = this.readView()!;
    this.#waiting = true;
    return this.conn.read(view).then((n) => {
      this.#waiting = false;
      return this.#took(n, view.length);
    }, (e) => {
      this.#waiting = false;
      throw e;
    });
  }

  /**
   * The view the next socket read goes into, for a loop that reads the
   * socket itself and hands the result to {@link took} (the relay: a held
   * tunnel then waits with one async frame less per direction). Undefined
   * while a probe's read is pending: use {@link fill} then. Such a read
   * does not set {@link waiting}, which only the watched phases of an
   * exchange ask (a tunnel is not watched).
   */
  readView(): Uint8Array | undefined {
    if (this.#probe !== undefined) return undefined;
    let buf = this.buf;
    // The wait for this read is what `idleMs` limits: a write deadline set
    // meanwhile (copyBody) must not cut a peer that merely pauses.
    if (this.watch) this.watch.deadline = Date.now() + this.idleMs;
    if (this.start === this.end) {
      this.start = this.end = 0;
      if (this.#grow && (buf.length === SMALL || buf.length === TINY)) {
        // The last read filled the whole buffer: more data, move up.
        giveBuffer(buf);
        buf = this.buf = takeBuffer(buf.length === TINY ? SMALL : BIG);
      }
    } else if (this.end === buf.length) {
      if (this.start > 0) {
        buf.copyWithin(0, this.start, this.end);
        this.end -= this.start;
        this.start = 0;
      } else {
        // A head or chunk line longer than the buffer: grow (limits are
        // checked by the callers, so this is bounded).
        const bigger = new Uint8Array(buf.length * 2);
        bigger.set(buf);
        giveBuffer(buf);
        buf = this.buf = bigger;
      }
    }
    return this.end === 0 ? buf : buf.subarray(this.end);
  }

  /**
   * Accounts a read made into {@link readView}'s `view`: false at end of
   * stream; throws {@link MeterStop} when the meter says stop; a promise
   * only when it says to wait (throttling).
   */
  took(n: number | null, view: Uint8Array): boolean | Promise<boolean> {
    return this.#took(n, view.length);
  }

  /**
   * Gives a big (or grown) buffer back for a small one when nothing is
   * buffered: a connection that waits idle, in the pool or between a
   * client's requests, should not hold 256 KiB. A bulk transfer on it
   * grows it again.
   */
  shrink(to: typeof TINY | typeof SMALL = SMALL): void {
    if (
      this.buf.length === to || this.start !== this.end ||
      this.#probe !== undefined || this.#waiting || this.#released
    ) return;
    giveBuffer(this.buf);
    this.buf = takeBuffer(to);
    this.start = this.end = 0;
    this.#grow = false;
  }

  /**
   * Starts a read on an idle connection (empty buffer), so that a close by
   * the peer is noticed while it waits in the pool. The next {@link fill}
   * takes its result.
   */
  probe(): Promise<number | null> {
    this.start = this.end = 0;
    const p = this.conn.read(this.buf);
    this.#probe = p;
    return p;
  }

  /** Accounts a read; a promise only when the meter asked to wait. */
  #took(n: number | null, free: number): boolean | Promise<boolean> {
    if (n === null) return false;
    this.#grow = n === free;
    this.end += n;
    this.bytesRead += n;
    if (this.watch) this.watch.deadline = Date.now() + this.idleMs;
    const meter = this.meter;
    if (meter !== undefined) {
      const answer = meter.chunk(n);
      if (answer !== GO_ON) {
        if (answer === STOP) throw new MeterStop(meter.stopReason);
        if (answer > 0) return sleep(answer).then(() => true);
      }
    }
    return true;
  }

  /** Consumes and returns up to `n` buffered bytes (a view: write it before the next fill). */
  take(n: number): Uint8Array {
    const k = Math.min(n, this.end - this.start);
    const out = this.buf.subarray(this.start, this.start + k);
    this.start += k;
    return out;
  }

  /** Returns the buffer to the pool. The reader must not be used after. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    // A read may still be pending into the buffer: never share it then.
    if (this.#probe === undefined) giveBuffer(this.buf);
    else dropBuffer(this.buf);
    this.#probe?.catch(() => {});
    this.buf = new Uint8Array(0);
    this.start = this.end = 0;
  }
}

/**
 * Writes all of `p` (a socket write may be partial). Not an async function:
 * a write is almost always whole, and then costs one `then`, not an async
 * frame besides (two writes per forwarded request).
 */
export function writeAll(conn: Stream, p: Uint8Array): Promise<void> {
  if (p.length === 0) return Promise.resolve();
  return conn.write(p).then((n) =>
    n >= p.length ? undefined : writeRest(conn, p, n)
  );
}

/** The rest of a partial write, from `at` on. */
async function writeRest(
  conn: Stream,
  p: Uint8Array,
  at: number,
): Promise<void> {
  while (at < p.length) at += await conn.write(p.subarray(at));
}

/** Closes a socket, ignoring "already closed". */
export function closeQuietly(conn: { close(): void } | undefined): void {
  try {
    conn?.close();
  } catch {
    // already closed: the goal is reached
  }
}
