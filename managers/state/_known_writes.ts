/**
 * What one store object knows of the writes counters it shares with other
 * writers (the Redis store's `…:writes` keys). Every write of the data a
 * counter guards adds 1 to it in the same atomic step and answers the new
 * count. A read of all that data, made together with the counter, tells
 * the count the data is as of; from then on, each write of this store's
 * own that answers exactly one past what it knew keeps it in step. While in
 * step, a counter still at the known count means nobody else wrote: what
 * this store read and wrote since is what is stored. Any other answer (a
 * gap: someone wrote in between; no counter: lost or never written) puts it
 * out of step until the next whole read.
 *
 * A count is known within a scope (the quota cycle whose counters were
 * read): asked in another scope, it is not known. Nor is it once
 * `maxAgeMs` (5 minutes) passed since the whole read it came from: a writer
 * that does not count (an older gateway, during a rolling upgrade; a hand
 * at redis-cli) is then seen within that time, at the next whole read.
 *
 * ```ts
 * const known = new KnownWrites();
 * known.read("k", 7, "cycle 1000");   // read all, with the counter at 7
 * known.wrote("k", 8);                // our own write, in step
 * known.at("k", "cycle 1000");        // 8
 * known.wrote("k", 10);               // someone else wrote: out of step
 * known.at("k", "cycle 1000");        // undefined
 * ```
 *
 * @module
 */

/** See the module documentation. */
export class KnownWrites {
  readonly #known = new Map<
    string,
    { count: number; scope: string; readAt: number }
  >();
  readonly #maxAgeMs: number;
  readonly #now: () => number;

  constructor(
    options: { maxAgeMs?: number; now?: () => number } = {},
  ) {
    this.#maxAgeMs = options.maxAgeMs ?? 5 * 60_000;
    this.#now = options.now ?? Date.now;
  }

  /** The data was read whole, with the counter at `count` (null: none). */
  read(key: string, count: string | number | null, scope = ""): void {
    const n = count === null ? NaN : Number(count);
    if (Number.isSafeInteger(n)) {
      this.#known.set(key, { count: n, scope, readAt: this.#now() });
    } else this.#known.delete(key);
  }

  /** One of this store's own writes answered the counter after its INCR. */
  wrote(key: string, after: unknown): void {
    const k = this.#known.get(key);
    if (k !== undefined && Number(after) === k.count + 1) k.count++;
    else this.#known.delete(key);
  }

  /** The count this store is in step with, in `scope`; else undefined. */
  at(key: string, scope = ""): number | undefined {
    const k = this.#known.get(key);
    if (k === undefined || k.scope !== scope) return undefined;
    return this.#now() - k.readAt < this.#maxAgeMs ? k.count : undefined;
  }
}
