/**
 * Deadlines without a timer per read: one interval walks the watched
 * exchanges; the hot path only stores a number (`deadline`). A watch whose
 * deadline passes is removed and its `onExpire` runs (it closes sockets, which
 * makes the pending reads fail).
 *
 * @module
 */

/** One watched deadline (milliseconds since the epoch; Infinity = none). */
export class Watch {
  deadline = Infinity;
  /** What ran out, for the log and error pages. */
  expired = "";
  constructor(readonly onExpire: (what: string) => void) {}
  /** Sets the deadline `ms` from now for `what`; ms ≤ 0 means none. */
  arm(ms: number, what: string): void {
    this.deadline = ms > 0 ? Date.now() + ms : Infinity;
    this.what = what;
  }
  what = "";
}

const watched = new Set<Watch>();
let timer: ReturnType<typeof setInterval> | undefined;
const TICK_MS = 100;

function tick() {
  const now = Date.now();
  for (const w of watched) {
    if (w.deadline <= now) {
      watched.delete(w);
      w.expired = w.what;
      try {
        w.onExpire(w.what);
      } catch {
        // closing an already closed socket: nothing left to do
      }
    }
  }
  if (watched.size === 0 && timer !== undefined) {
    clearInterval(timer);
    timer = undefined;
  }
}

/** Starts watching `w`. */
export function watch(w: Watch): void {
  watched.add(w);
  if (timer === undefined) {
    const t = setInterval(tick, TICK_MS);
    // A proxy being shut down should not be kept alive by its watchdog.
    Deno.unrefTimer(t);
    timer = t;
  }
}

/** Stops watching `w`. */
export function unwatch(w: Watch): void {
  watched.delete(w);
  if (watched.size === 0 && timer !== undefined) {
    clearInterval(timer);
    timer = undefined;
  }
}
