/**
 * Deadlines without a timer per read: one interval walks the watched
 * exchanges; the hot path only stores a number (`deadline`). A watch whose
 * deadline passes is removed and its `onExpire` runs (it closes sockets, which
 * makes the pending reads fail).
 *
 * The walk is skipped until the earliest deadline it may find is due: each
 * walk notes the soonest deadline it saw, and a deadline set sooner than
 * that (or a watch that joins with one) lowers the note. A gateway's
 * thousands of kept-alive connections then cost a walk every few seconds,
 * when one may have run out, not ten walks a second (at 10,000 connections
 * each walk took about a millisecond in a CPU profile of the scale bench).
 *
 * @module
 */
import { every, type Timer } from "./timers.ts";

/**
 * No watched deadline is sooner than this (a lower bound: the soonest the
 * last walk saw, or one set since).
 */
let soonest = Infinity;

/** One watched deadline (milliseconds since the epoch; Infinity = none). */
export class Watch {
  #deadline = Infinity;
  /** What ran out, for the log and error pages. */
  expired = "";
  what = "";
  /** Links in the list of watched deadlines (see {@link watch}). */
  prev: Watch | undefined = undefined;
  next: Watch | undefined = undefined;
  linked = false;
  constructor(readonly onExpire: (what: string) => void) {}

  /** When it runs out (ms since the epoch; Infinity: never). */
  get deadline(): number {
    return this.#deadline;
  }

  set deadline(at: number) {
    this.#deadline = at;
    if (at < soonest) soonest = at;
  }

  /** Sets the deadline `ms` from now for `what`; ms <= 0 means none. */
  arm(ms: number, what: string): void {
    this.deadline = ms > 0 ? Date.now() + ms : Infinity;
    this.what = what;
  }
}

// The watched deadlines are a doubly linked list through the watches
// themselves rather than a Set: watches come and go with every pooled
// connection, and a long-lived Set reallocates its table in the old
// generation as entries churn, which brings full garbage collections
// under load.
let first: Watch | undefined = undefined;
let size = 0;
let timer: Timer | undefined;
const TICK_MS = 100;

function unlink(w: Watch): void {
  if (w.prev) w.prev.next = w.next;
  else first = w.next;
  if (w.next) w.next.prev = w.prev;
  w.prev = w.next = undefined;
  w.linked = false;
  size--;
}

function tick() {
  const now = Date.now();
  if (now < soonest) return;
  // This walk finds the soonest deadline anew; one set meanwhile (by an
  // onExpire) lowers it too.
  soonest = Infinity;
  for (let w = first; w !== undefined;) {
    const next = w.next;
    const deadline = w.deadline;
    if (deadline > now) {
      if (deadline < soonest) soonest = deadline;
    } else {
      unlink(w);
      w.expired = w.what;
      try {
        w.onExpire(w.what);
      } catch {
        // closing an already closed socket: nothing left to do
      }
    }
    // An onExpire may have unwatched the next one: start over then (the
    // expired ones are out of the list, so this ends).
    w = next !== undefined && !next.linked ? first : next;
  }
  stopWhenEmpty();
}

function stopWhenEmpty() {
  if (size === 0 && timer !== undefined) {
    timer.cancel();
    timer = undefined;
  }
}

/** Starts watching `w` (again watching a watched one changes nothing). */
export function watch(w: Watch): void {
  if (!w.linked) {
    // Its deadline may have been set while it was not watched.
    if (w.deadline < soonest) soonest = w.deadline;
    w.linked = true;
    w.prev = undefined;
    w.next = first;
    if (first) first.prev = w;
    first = w;
    size++;
  }
  // It stops when nothing is watched, so that it keeps no process alive.
  timer ??= every(TICK_MS, tick);
}

/** Stops watching `w`. */
export function unwatch(w: Watch): void {
  if (w.linked) unlink(w);
  stopWhenEmpty();
}

/** How many deadlines are watched (for tests). */
export function watchedCount(): number {
  return size;
}
