/**
 * Gives memory back to the system once a burst is over. A burst of
 * connections (the morning's logins, thousands of tunnels opened at once)
 * grows V8's heap: its young generation to its largest size, its old
 * generation by pages of what the burst left behind. A process that then
 * sits quiet allocates almost nothing, so V8 never collects again and keeps
 * all of it, tens of MiB for a few thousand tunnels. When the proxy has
 * been quiet for a whole tick and the heap has grown well past what it
 * held after the last trim, one full collection runs, which shrinks the
 * heap to what is live.
 *
 * It never runs under load (a full collection pauses every connection, for
 * tens of milliseconds and more the more is live), and once it has trimmed
 * it waits until the heap grows again: a heap that is big because it holds
 * that much live data is left alone. `[proxy] memoryTrim = false` turns it
 * off.
 *
 * ```ts
 * const trim = startMemoryTrim({ activity: () => stats.connectionsAccepted, enabled: () => true });
 * trim.stop();
 * ```
 *
 * @module
 */
import { every } from "./timers.ts";

/** How often the proxy's activity and heap are looked at. */
const TICK_MS = 2_000;
/** Quiet: fewer new connections and requests than this per second. */
const QUIET_PER_SECOND = 20;
/** A trim is worth its pause when the heap grew by this much. */
const GROWTH_BYTES = 16 * 1024 * 1024;

/** A running trimmer (see the module documentation). */
export interface MemoryTrim {
  /** Full collections it ran so far. */
  readonly trims: number;
  stop(): void;
}

/** Options of {@link startMemoryTrim}. */
export interface MemoryTrimOptions {
  /** A counter that grows with the proxy's work (connections, requests). */
  activity: () => number;
  /** Asked on every tick (a reload may turn trimming off or on). */
  enabled: () => boolean;
  /** The heap's size and use now (tests give their own). */
  heap?: () => { total: number; used: number };
  /** Runs a full collection; by default V8's, made reachable on first use. */
  collect?: () => Promise<boolean>;
  /** Told after each trim: the heap before and after, and the pause. */
  onTrim?: (
    trim: { beforeBytes: number; afterBytes: number; ms: number },
  ) => void;
  tickMs?: number;
}

/** Starts looking every two seconds; see the module documentation. */
export function startMemoryTrim(options: MemoryTrimOptions): MemoryTrim {
  const tickMs = options.tickMs ?? TICK_MS;
  const heap = options.heap ?? heapNow;
  const collect = options.collect ?? collectGarbage;
  let floor = heap().total;
  let last = options.activity();
  let trims = 0;
  let busy = false;
  const timer = every(tickMs, () => {
    const now = options.activity();
    const quiet = now - last < QUIET_PER_SECOND * tickMs / 1000;
    last = now;
    if (busy) return;
    const { total, used } = heap();
    // A heap that shrank by itself lowers the mark.
    floor = Math.min(floor, total);
    if (
      !quiet || !options.enabled() || total - floor < GROWTH_BYTES ||
      total - used < GROWTH_BYTES / 2
    ) return;
    busy = true;
    const started = performance.now();
    collect().then((done) => {
      const ms = performance.now() - started;
      // Whatever it could give back, the heap as it is now is the mark:
      // what is left is live, and trimming again waits for new growth.
      floor = heap().total;
      if (!done) return;
      trims++;
      options.onTrim?.({ beforeBytes: total, afterBytes: floor, ms });
    }, () => {}).finally(() => busy = false);
  });
  return {
    get trims() {
      return trims;
    },
    stop: () => timer.cancel(),
  };
}

function heapNow(): { total: number; used: number } {
  const m = Deno.memoryUsage();
  return { total: m.heapTotal, used: m.heapUsed };
}

let gc: (() => void) | null | undefined;

/**
 * One full collection through V8's `gc`, which a context made after the
 * flag is set has; false when this runtime does not give it. It is a
 * memory-reducing one, which also shrinks the young generation (its option
 * forms, a young collection only, are ignored by this runtime): its pause
 * grows with what is live, some 100 ms with 5,000 tunnels held on the
 * bench's machine, once after a burst.
 */
async function collectGarbage(): Promise<boolean> {
  if (gc === undefined) {
    try {
      const { setFlagsFromString } = await import("node:v8");
      const { runInNewContext } = await import("node:vm");
      setFlagsFromString("--expose-gc");
      const found = runInNewContext("typeof gc === 'function' ? gc : null");
      gc = typeof found === "function" ? found : null;
    } catch {
      gc = null;
    }
  }
  if (!gc) return false;
  gc();
  return true;
}
