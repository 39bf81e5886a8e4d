/**
 * Timers that do not load the runtime's Node layer. On Deno 2.9 the global
 * `setTimeout` and `setInterval` are the Node-compatible ones, and the first
 * call loads the part of the Node layer they are written in: about 2 MiB
 * resident in a gateway (a probe on Deno 2.9.6; ARCHITECTURE.md, What
 * loads at start). These run on the runtime's own timer instead, the one
 * `AbortSignal.timeout` arms. That timer cannot be cancelled, so one
 * scheduler here keeps every deadline in a binary heap and arms the
 * runtime's timer for the earliest only, never for more than
 * {@link LONGEST_WAIT_MS}: a timer cancelled (or a process meant to end)
 * leaves at most that wait behind.
 *
 * Like `setTimeout` without `unref`, a timer keeps the process alive while
 * it is armed: its owner cancels it when it stops (pmproxy's server ends
 * with `Deno.exit` in any case). A callback that throws does not keep the
 * others from running; its error is thrown after them, as an uncaught one.
 *
 * ```ts
 * import { after, every, sleep } from "./timers.ts";
 * const once = after(1000, () => console.log("a second"));
 * once.cancel();
 * const tick = every(100, () => {});
 * await sleep(250);
 * tick.cancel();
 * ```
 *
 * The proxy owns this file; the other parts may import it too
 * (scripts/check_imports.ts, LAYOUT).
 *
 * @module
 */

/** A timer of {@link after} or {@link every}. */
export interface Timer {
  /** Stops it: its callback does not run again (or at all). */
  cancel(): void;
}

/** The longest single wait on the runtime's timer (ms). */
export const LONGEST_WAIT_MS = 1000;

/** One deadline: a timer of {@link after} or {@link every}. */
export class Deadline implements Timer {
  /** Its place in its heap; -1 while out of one. */
  index = -1;
  constructor(
    /** When it is due (`performance.now()` ms). */
    public at: number,
    /** Made after every deadline with a smaller one: ties go in that order. */
    readonly seq: number,
    readonly run: () => void,
    /** The period of a repeating timer (ms); 0 for a one-shot. */
    readonly period: number,
  ) {}
  /** Takes it out of the scheduler's heap (not of another one). */
  cancel(): void {
    if (this.index >= 0) timers.remove(this);
  }
}

/**
 * Deadlines in a binary heap, the earliest first (ties: the one made
 * first). Each knows its place, so a cancelled one leaves at once, not
 * when it would have been due: a dial's timeout is cancelled when the
 * dial ends, thousands of times a second.
 */
export class DeadlineHeap {
  readonly #items: Deadline[] = [];

  get size(): number {
    return this.#items.length;
  }

  /** The earliest, undefined when empty. */
  peek(): Deadline | undefined {
    return this.#items[0];
  }

  push(d: Deadline): void {
    this.#place(d, this.#items.length);
    this.#up(d.index);
  }

  /** Takes `d` out (it must be in this heap). */
  remove(d: Deadline): void {
    const items = this.#items;
    const i = d.index;
    const last = items.pop()!;
    d.index = -1;
    if (last === d) return;
    this.#place(last, i);
    this.#up(i);
    this.#down(last.index);
  }

  #place(d: Deadline, i: number): void {
    this.#items[i] = d;
    d.index = i;
  }

  #up(i: number): void {
    const items = this.#items;
    const d = items[i];
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(d, items[parent])) break;
      this.#place(items[parent], i);
      i = parent;
    }
    this.#place(d, i);
  }

  #down(i: number): void {
    const items = this.#items;
    const d = items[i];
    for (;;) {
      const left = 2 * i + 1;
      if (left >= items.length) break;
      const right = left + 1;
      const child = right < items.length && before(items[right], items[left])
        ? right
        : left;
      if (!before(items[child], d)) break;
      this.#place(items[child], i);
      i = child;
    }
    this.#place(d, i);
  }
}

function before(a: Deadline, b: Deadline): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

const timers = new DeadlineHeap();
let nextSeq = 0;
/** When the runtime's timer armed last fires (Infinity: none armed). */
let armedAt = Infinity;

/** Runs `fn` once, `ms` from now (at the earliest). */
export function after(ms: number, fn: () => void): Timer {
  return add(ms, fn, 0);
}

/** Runs `fn` every `ms` (at least 1) until cancelled; the first time `ms` from now. */
export function every(ms: number, fn: () => void): Timer {
  return add(ms, fn, Math.max(1, ms));
}

/** Settles `ms` from now. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => add(ms, resolve, 0));
}

/** Timers waiting (for tests). */
export function pendingTimers(): number {
  return timers.size;
}

function add(ms: number, fn: () => void, period: number): Deadline {
  const delay = Number.isFinite(ms) && ms > 0 ? ms : 0;
  const d = new Deadline(performance.now() + delay, nextSeq++, fn, period);
  timers.push(d);
  arm();
  return d;
}

/** Arms the runtime's timer for the earliest deadline, unless armed sooner. */
function arm(): void {
  const first = timers.peek();
  if (first === undefined) return;
  const now = performance.now();
  const wait = Math.min(LONGEST_WAIT_MS, Math.max(0, first.at - now));
  const at = now + wait;
  // A wake already due sooner (or within a millisecond) serves this one.
  if (at >= armedAt - 1) return;
  armedAt = at;
  AbortSignal.timeout(Math.ceil(wait)).onabort = () => wake(at);
}

/** The runtime's timer armed for `armedFor` fired. */
function wake(armedFor: number): void {
  const now = performance.now();
  // A wake armed before, for a later time, may still come: it finds what
  // is due then, if anything.
  if (armedFor === armedAt) armedAt = Infinity;
  let failure: { error: unknown } | undefined;
  // Due within a millisecond counts as due: the runtime's timer counts
  // whole milliseconds. A repeating timer that fell behind runs once now,
  // and next a period after its last due time or in a millisecond.
  for (let d = timers.peek(); d !== undefined && d.at < now + 1;) {
    timers.remove(d);
    if (d.period > 0) {
      d.at = Math.max(d.at + d.period, now + 1);
      timers.push(d);
    }
    try {
      d.run();
    } catch (error) {
      failure ??= { error };
    }
    d = timers.peek();
  }
  arm();
  if (failure) throw failure.error;
}
