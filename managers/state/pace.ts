/**
 * The pace of the periodic flush: a flush of thousands of counters is many
 * batches, and run back to back they hold the main thread, which the data
 * path shares, for the whole flush (a flush of 10,000 counters to Redis
 * doubled the p99 of the requests made meanwhile). Paced, the store waits
 * before each batch in proportion to the time the batches before it took,
 * so that the flush takes about {@link WritePace.share} of the time it
 * runs, and the requests the rest.
 *
 * Only the periodic flush is paced. A flush someone waits for (shutdown,
 * an administrator's reset, a resync) calls {@link WritePace.stop}: a
 * paced flush under way then finishes at once too. And a paced flush
 * stops pacing once it has run {@link WritePace.maxMs}, so that it always
 * ends well within the persist interval.
 *
 * ```ts
 * import { WritePace } from "./pace.ts";
 * const pace = new WritePace({ share: 0.2, maxMs: 10_000 });
 * pace.start();
 * for (const batch of [[1], [2], [3]]) {
 *   await pace.between(); // waits about 4× what the last batch took
 *   console.log(batch);
 * }
 * pace.stop();
 * ```
 *
 * @module
 */
import { after } from "../../proxy/timers.ts";

/** How a paced flush spends its time. */
export interface PaceOptions {
  /**
   * The part of its running time a paced flush takes (0 < share <= 1;
   * default 0.1: the scale bench's p99 during a flush of 10,000 counters
   * to Redis was 2.0-2.3× outside it unpaced, 1.17-1.50× at 0.2, and
   * 1.10-1.34× at 0.1 with the cheaper script calls).
   */
  share?: number;
  /** A paced flush runs unpaced after this long (ms). */
  maxMs?: number;
  /** The longest wait before one batch (ms). */
  maxPauseMs?: number;
  /** The time now in ms (tests give their own clock). */
  now?: () => number;
  /** Waits `ms`, or less when woken (tests give their own). */
  sleep?: (ms: number) => Sleep;
}

/** A wait under way. */
export interface Sleep {
  /** Settles when the time is up or {@link wake} was called. */
  done: Promise<void>;
  wake(): void;
}

/** A wait on a timer. */
function sleepOnTimer(ms: number): Sleep {
  let wake!: () => void;
  const done = new Promise<void>((resolve) => {
    const timer = after(ms, resolve);
    wake = () => {
      timer.cancel();
      resolve();
    };
  });
  return { done, wake };
}

/** See the module documentation. */
export class WritePace {
  readonly share: number;
  readonly maxMs: number;
  readonly maxPauseMs: number;
  /** When the paced flush stops pacing; undefined while not pacing. */
  #until: number | undefined;
  /** When the last wait ended (the batch since began then). */
  #since = 0;
  readonly #waiting = new Set<Sleep>();
  readonly #now: () => number;
  readonly #sleep: (ms: number) => Sleep;
  /** Time waited by paced flushes, in all (ms). */
  waitedMs = 0;

  constructor(options: PaceOptions = {}) {
    this.share = options.share ?? 0.1;
    this.maxMs = options.maxMs ?? 10_000;
    this.maxPauseMs = options.maxPauseMs ?? 50;
    this.#now = options.now ?? (() => performance.now());
    this.#sleep = options.sleep ?? sleepOnTimer;
    if (!(this.share > 0 && this.share <= 1)) {
      throw new RangeError(`share must be in (0, 1], not ${this.share}`);
    }
  }

  /** True while a paced flush runs. */
  get pacing(): boolean {
    return this.#until !== undefined;
  }

  /** A paced flush begins, paced for at most `maxMs`. */
  start(maxMs: number = this.maxMs): void {
    const now = this.#now();
    this.#until = now + maxMs;
    this.#since = now;
  }

  /**
   * Pacing ends (the paced flush is over, or someone waits for the state):
   * the waits under way end now, and later ones are not made.
   */
  stop(): void {
    this.#until = undefined;
    for (const sleep of this.#waiting) sleep.wake();
  }

  /**
   * Called by a store before each batch of a long write: waits while a
   * paced flush runs, else answers at once.
   */
  async between(): Promise<void> {
    if (this.#until === undefined) return;
    const now = this.#now();
    if (now >= this.#until) {
      this.#until = undefined;
      return;
    }
    const worked = now - this.#since;
    const ms = Math.min(
      this.maxPauseMs,
      this.#until - now,
      worked * (1 / this.share - 1),
    );
    if (ms >= 1) {
      const sleep = this.#sleep(ms);
      this.#waiting.add(sleep);
      await sleep.done;
      this.#waiting.delete(sleep);
      this.waitedMs += this.#now() - now;
    }
    this.#since = this.#now();
  }
}
