/**
 * Idle keep-alive connections to origins, kept per route + host + port, so a
 * page's many requests do not each pay a TCP (and parent proxy) handshake.
 * A connection is only ever reused for the very same route: a request whose
 * route changed (another parent, another source address) dials anew.
 *
 * @module
 */
import type { Route } from "./policy.ts";
import type { Dialed } from "./dial.ts";
import { closeQuietly, type Reader } from "./_io.ts";
import { unwatch, Watch, watch } from "./_watchdog.ts";

/** An upstream connection with its reader (which keeps any buffered bytes). */
export interface PooledUpstream {
  dialed: Dialed;
  reader: Reader;
  key: string;
  /**
   * Its entry in the pool, made the first time it is put there and reused
   * each time after: a kept-alive connection goes back after every answer.
   */
  idle?: Idle;
}

interface Idle {
  up: PooledUpstream;
  watch: Watch;
  /** Takes it out and closes it (idle too long, or closed by the origin). */
  gone: () => void;
}

/** The pool's key for a route and origin. */
export function poolKey(route: Route, host: string, port: number): string {
  const r = route.kind === "direct"
    ? `d|${route.localAddress ?? ""}`
    : `p|${route.proxyUrl}|${route.localAddress ?? ""}`;
  return `${r}|${host}|${port}`;
}

/** A per-origin pool of idle upstream connections. */
export class UpstreamPool {
  #idle = new Map<string, Idle[]>();
  #closed = false;

  constructor(
    readonly maxIdlePerOrigin: number,
    readonly idleTimeoutMs: number,
  ) {}

  /** An idle connection for `key`, most recently used first, or undefined. */
  take(key: string): PooledUpstream | undefined {
    const list = this.#idle.get(key);
    const idle = list?.pop();
    if (!idle) return undefined;
    if (list!.length === 0) this.#idle.delete(key);
    unwatch(idle.watch);
    return idle.up;
  }

  /**
   * Keeps `up` for reuse, or closes it when the pool for its origin is full.
   * Only call this for a connection whose last response was read completely.
   */
  put(up: PooledUpstream): void {
    let list = this.#idle.get(up.key);
    if (this.#closed || (list?.length ?? 0) >= this.maxIdlePerOrigin) {
      this.#discard(up);
      return;
    }
    if (!list) this.#idle.set(up.key, list = []);
    up.reader.meter = undefined;
    up.reader.watch = undefined;
    // Idle, it needs no 256 KiB buffer; swapped before the probe below
    // starts a read into it.
    up.reader.shrink();
    const idle = up.idle ?? this.#idleEntry(up);
    const w = idle.watch;
    w.expired = "";
    w.arm(this.idleTimeoutMs, "pool idle timeout");
    watch(w);
    list.push(idle);
    // Origins close idle connections (some after 5 s): a pending read sees
    // it at once, so the socket is freed and never handed out dead. Data
    // arriving unasked also disqualifies it. (When the connection is taken
    // before, that read's result is its next answer's first bytes, and
    // `gone` finds nothing to remove: it runs before the exchange reads.)
    up.reader.probe().then(idle.gone, idle.gone);
  }

  /** The pool entry of `up`, made once. */
  #idleEntry(up: PooledUpstream): Idle {
    const idle: Idle = {
      up,
      watch: new Watch(() => {
        if (this.#remove(idle)) this.#discard(up);
      }),
      gone: () => {
        if (this.#remove(idle)) {
          unwatch(idle.watch);
          this.#discard(up);
        }
      },
    };
    up.idle = idle;
    return idle;
  }

  /** Idle connections kept for `key` (for tests and stats). */
  idleCount(key?: string): number {
    if (key !== undefined) return this.#idle.get(key)?.length ?? 0;
    let n = 0;
    for (const l of this.#idle.values()) n += l.length;
    return n;
  }

  /** Closes every idle connection; later `put`s close theirs. */
  close(): void {
    this.#closed = true;
    for (const list of this.#idle.values()) {
      for (const idle of list) {
        unwatch(idle.watch);
        this.#discard(idle.up);
      }
    }
    this.#idle.clear();
  }

  /** Takes `idle` out of its list; false when it was no longer there. */
  #remove(idle: Idle): boolean {
    const l = this.#idle.get(idle.up.key);
    const i = l?.indexOf(idle) ?? -1;
    if (i < 0) return false;
    l!.splice(i, 1);
    if (l!.length === 0) this.#idle.delete(idle.up.key);
    return true;
  }

  #discard(up: PooledUpstream) {
    closeQuietly(up.dialed.conn);
    up.reader.release();
  }
}
