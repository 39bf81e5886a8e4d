/**
 * A `node:net` socket seen as a {@link Stream}: the one way to pick the
 * source address of a connection (`Deno.connect` has no such option).
 *
 * @module
 */
import { connect, isIP, type Socket } from "node:net";
import type { Buffer } from "node:buffer";
import type { Stream } from "./_io.ts";

/** Above this many queued bytes the socket is paused until the reader catches up. */
const HIGH_WATER = 1024 * 1024;

/** Where to connect, and from which source address. */
export interface NodeConnectOptions {
  /** Name or address of the peer, without brackets. */
  host: string;
  /** Port of the peer. */
  port: number;
  /** Source address to bind (`127.0.0.2`, `::1`, an interface's address). */
  localAddress: string;
  /** Aborting destroys the socket and rejects with the signal's reason. */
  signal: AbortSignal;
}

/**
 * Connects with `node:net`, bound to `localAddress`. Rejects with the
 * socket's error (it carries a `code` such as `ECONNREFUSED`, `EADDRNOTAVAIL`).
 */
export function connectFrom(options: NodeConnectOptions): Promise<NodeConn> {
  const { host, port, localAddress, signal } = options;
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    // The name must resolve to the family of the source address, or the
    // kernel refuses the bind/connect pair (EINVAL, EAFNOSUPPORT).
    const family = isIP(localAddress) === 6 ? 6 : 4;
    // allowHalfOpen: the peer's FIN must not end our side, as with Deno.Conn.
    const socket = connect({
      host,
      port,
      localAddress,
      family,
      allowHalfOpen: true,
    });
    const done = () => {
      socket.off("connect", onConnect);
      socket.off("error", onError);
      signal.removeEventListener("abort", onAbort);
    };
    const onConnect = () => {
      done();
      socket.setNoDelay(true);
      resolve(new NodeConn(socket));
    };
    const onError = (e: Error) => {
      done();
      socket.destroy();
      reject(e);
    };
    const onAbort = () => {
      done();
      socket.destroy();
      reject(signal.reason);
    };
    socket.once("connect", onConnect);
    socket.once("error", onError);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * A connected node socket with the `Deno.Conn`-like calls the proxy uses.
 * Received data is queued as the socket delivers it; reading copies out of
 * the queue. One read at a time, one write at a time.
 */
export class NodeConn implements Stream {
  /** The peer's address, without brackets. */
  readonly remoteAddress: string;
  #socket: Socket;
  #queue: Buffer[] = [];
  /** Offset already consumed in `#queue[0]`. */
  #head = 0;
  #queued = 0;
  #paused = false;
  #ended = false;
  #closed = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;

  /** Wraps a connected socket; from now on this object consumes its events. */
  constructor(socket: Socket) {
    this.#socket = socket;
    this.remoteAddress = socket.remoteAddress ?? "";
    socket.on("data", (chunk: Buffer) => {
      this.#queue.push(chunk);
      this.#queued += chunk.length;
      if (this.#queued > HIGH_WATER && !this.#paused) {
        // The reader is slower than the network: let TCP flow control push
        // back on the sender instead of queueing without bound.
        this.#paused = true;
        socket.pause();
      }
      this.#notify();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#notify();
    });
    socket.on("error", (e: Error) => {
      this.#error = e;
      this.#notify();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#notify();
    });
  }

  #notify() {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Copies queued bytes into `p`; waits when none are queued; null at end of stream. */
  async read(p: Uint8Array): Promise<number | null> {
    while (this.#queued === 0) {
      if (this.#closed) return null;
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    if (p.length === 0) return 0;
    let n = 0;
    while (n < p.length && this.#queue.length > 0) {
      const first = this.#queue[0];
      const k = Math.min(p.length - n, first.length - this.#head);
      p.set(first.subarray(this.#head, this.#head + k), n);
      n += k;
      this.#head += k;
      if (this.#head === first.length) {
        this.#queue.shift();
        this.#head = 0;
      }
    }
    this.#queued -= n;
    // Resume at half the mark, so that pause/resume does not flip every read.
    if (this.#paused && this.#queued <= HIGH_WATER / 2) {
      this.#paused = false;
      this.#socket.resume();
    }
    return n;
  }

  /**
   * Writes all of `p`; resolves once the socket handed it to the kernel, so
   * the caller may reuse `p` and a slow peer slows the writer down.
   */
  write(p: Uint8Array): Promise<number> {
    if (this.#closed || this.#socket.destroyed) {
      return Promise.reject(new Error("the connection is closed"));
    }
    return new Promise((resolve, reject) => {
      this.#socket.write(p, (e?: Error | null) => {
        if (e) reject(e);
        else resolve(p.length);
      });
    });
  }

  /** Sends FIN; reading goes on (half-close). */
  closeWrite(): Promise<void> {
    if (this.#closed || this.#socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => this.#socket.end(() => resolve()));
  }

  /** Destroys the socket; a pending read resolves with null. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = [];
    this.#queued = 0;
    this.#socket.destroy();
    this.#notify();
  }
}
