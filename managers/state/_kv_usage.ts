/**
 * The usage history on Deno KV: the keys it is kept under, the flush's
 * writes to it, its reads and the deletion of buckets past their retention.
 * Private to this folder (kv_store.ts holds the store's other keys).
 *
 * Keys (grain `"hour"` or `"day"`, start: the bucket's start in ms):
 *
 * - `["usage", manager, grain + "Packs", start, pack]`: a `Map` of user to
 *   bytes, for the users of one pack (`packOf` in _kv_packs.ts: a hash of
 *   the name, 0 to 255) in that bucket. A write reads the packs its users
 *   fall in (a flush of many, every pack of the bucket as one list), adds its
 *   deltas, and writes them back in atomic operations of up to 48 that
 *   check each pack is still as read; when a check fails (another gateway
 *   wrote one of them meanwhile), it reads those packs again and tries
 *   again. Deno KV takes 3 to 5 µs of the main thread
 *   per mutation whatever its size, so a flush of 10,000 users writes at
 *   most 512 values (256 packs, 2 grains), not 20,000 counters.
 * - `["usage", manager, grain, start, user]`: a `Deno.KvU64` per user and
 *   bucket that deltas are added to with `sum`. pmproxy before 2026-12-03
 *   wrote every delta here; now only a user whose pack is full (about
 *   `PACK_BYTES`: a pack holds about 1,300 names of 20 characters, a
 *   bucket some 330,000 users) is written here. Both are
 *   read, and a user's bytes in a bucket are the sum of the two.
 * - `["usage", manager, grain + "Starts", start]`: the start of each bucket
 *   of that grain, set once per bucket with its first deltas, so one user's
 *   history is read as one short list (a bucket per hour or day kept) and
 *   reads of that user's pack (and counter) in each bucket.
 * - `["usage", manager, grain + "ByUser", user, start]`: every delta a
 *   second time, as pmproxy before 2026-12-02 wrote it: still read for the
 *   buckets it names, deleted with its bucket, never written.
 * - `["usage", manager, "writes"]`: a `Deno.KvU64` that every write of that
 *   manager's packs adds 1 to. While it is as this store's last write left
 *   it, nobody else wrote a pack since, and the packs that write left
 *   (kept here: a `PackCache` of _kv_packs.ts per grain, for the bucket
 *   written last) stand in for reading them: a flush then reads none.
 * - None of these keys is set to expire: a `sum` drops the expiry a key was
 *   set with (measured on Deno 2.9.6), so the buckets past their retention
 *   are deleted by the first write of a new bucket, and readers skip those
 *   not deleted yet.
 *
 * Gateways sharing a file must run this version or later: an older one
 * reads none of the packs.
 *
 * @module
 */
import type {
  UsageBuckets,
  UsageEntry,
  UsageGrain,
  UsageRange,
} from "./store.ts";
import { compareUsage } from "./store.ts";
import type { WritePace } from "./pace.ts";
import { GET_BATCH, kvBatches, LIST_BATCH, write } from "./_kv_write.ts";
import {
  byPack as usersByPack,
  type Grouped,
  keepWritten,
  merge,
  type Pack,
  PACK_TRIES,
  type PackCache,
  packOf,
  readPacks,
  takeCached,
  unwrittenError,
  writePacks,
} from "./_kv_packs.ts";

/** Users of full packs whose counters are added in one operation (2 sums each). */
const COUNTER_BATCH = 120;

function packKey(
  manager: string,
  grain: UsageGrain,
  start: number,
  pack: number,
): Deno.KvKey {
  return ["usage", manager, `${grain}Packs`, start, pack];
}

function counterKey(
  manager: string,
  grain: UsageGrain,
  start: number,
  user: string,
): Deno.KvKey {
  return ["usage", manager, grain, start, user];
}

function byUserKey(
  manager: string,
  grain: UsageGrain,
  user: string,
  start: number,
): Deno.KvKey {
  return ["usage", manager, `${grain}ByUser`, user, start];
}

function writesKey(manager: string): Deno.KvKey {
  return ["usage", manager, "writes"];
}

function startKey(
  manager: string,
  grain: UsageGrain,
  start: number,
): Deno.KvKey {
  return ["usage", manager, `${grain}Starts`, start];
}

/** The buckets one write goes to, and which of them the index lacks. */
interface Target {
  manager: string;
  grains: [UsageGrain, number][];
  /** Grains whose bucket start is not yet in the index (from this store). */
  unindexed: [UsageGrain, number][];
  cache: HistoryCache;
}

/**
 * A manager's packs as this store's writes left them, for the bucket of
 * each grain written last; good while the manager's `writes` key has the
 * versionstamp `writes` (undefined: not known, and none kept).
 */
interface HistoryCache {
  writes: string | null | undefined;
  buckets: Map<UsageGrain, { start: number; packs: PackCache }>;
}

/** The usage history of a {@link KvStateStore}'s database. */
export class KvUsageHistory {
  /**
   * The bucket start up to which old usage buckets were deleted, by
   * manager and grain: the deletion runs once per new bucket.
   */
  readonly #pruned = new Map<string, number>();
  /**
   * The bucket whose start this store last wrote to the buckets' index, by
   * manager and grain: written once per bucket.
   */
  readonly #indexed = new Map<string, number>();
  /** Each manager's {@link HistoryCache}. */
  readonly #caches = new Map<string, HistoryCache>();

  /** `pace` answers the store's pace of the moment (set after it opened). */
  constructor(
    readonly kv: Deno.Kv,
    readonly pace: () => WritePace | undefined,
  ) {}

  /** See {@link StateStore.addUsage}. */
  async add(
    manager: string,
    deltas: ReadonlyMap<string, number>,
    at: UsageBuckets,
  ): Promise<void> {
    const grains: [UsageGrain, number][] = [];
    if (at.keepHourMs > 0) grains.push(["hour", at.hour]);
    if (at.keepDayMs > 0) grains.push(["day", at.day]);
    if (grains.length === 0) return;
    const byPack = usersByPack(deltas.keys());
    const packs = [...byPack.keys()].sort((a, b) => a - b);
    const failed = (e: unknown, unwritten: Iterable<string>) =>
      unwrittenError("adding to the usage history", e, unwritten, deltas);
    let target: Target;
    let read: Map<number, Deno.KvEntryMaybe<unknown>[]>;
    try {
      target = {
        manager,
        grains,
        unindexed: grains.filter(([grain, bucket]) =>
          this.#indexed.get(`${manager}\u0000${grain}`) !== bucket
        ),
        cache: await this.#cacheOf(manager, grains),
      };
      read = await this.#readPacks(target, packs);
    } catch (e) {
      throw failed(e, deltas.keys());
    }
    // Users whose pack is full, written as counters once the packs are.
    const full = await writePacks({
      packs,
      users: byPack,
      merge: (pack) => merge(read.get(pack)!, byPack.get(pack)!, deltas),
      values: (merged) => merged.values ? grains.length : 0,
      commit: (group) => this.#commitPacks(target, group, byPack, deltas),
      failed,
      between: () => this.pace()?.between(),
    });
    for (let start = 0; start < full.length; start += COUNTER_BATCH) {
      await this.pace()?.between();
      const op = this.kv.atomic();
      this.#index(target, op);
      for (const user of full.slice(start, start + COUNTER_BATCH)) {
        const bytes = BigInt(deltas.get(user)!);
        for (const [grain, bucket] of grains) {
          op.sum(counterKey(manager, grain, bucket, user), bytes);
        }
      }
      try {
        await write(() => op.commit());
      } catch (e) {
        throw failed(e, full.slice(start));
      }
      this.#markIndexed(target);
    }
    await this.#prune(manager, "hour", at.hour, at.keepHourMs);
    await this.#prune(manager, "day", at.day, at.keepDayMs);
  }

  /**
   * `manager`'s cache, for the buckets of `grains`: emptied when another
   * gateway wrote a pack since this store's last write (one read of the
   * `writes` key), and a grain's packs when its bucket is not the one kept.
   */
  async #cacheOf(
    manager: string,
    grains: readonly [UsageGrain, number][],
  ): Promise<HistoryCache> {
    let cache = this.#caches.get(manager);
    if (!cache) {
      cache = { writes: undefined, buckets: new Map() };
      this.#caches.set(manager, cache);
    }
    const now = (await this.kv.get(writesKey(manager))).versionstamp;
    if (now !== cache.writes) {
      cache.buckets.clear();
      cache.writes = now;
    }
    for (const [grain, start] of grains) {
      if (cache.buckets.get(grain)?.start !== start) {
        cache.buckets.set(grain, { start, packs: new Map() });
      }
    }
    return cache;
  }

  /** Adds the bucket starts the index lacks to `op`. */
  #index(target: Target, op: Deno.AtomicOperation): void {
    for (const [grain, bucket] of target.unindexed) {
      op.set(startKey(target.manager, grain, bucket), bucket);
    }
  }

  /** The operation {@link #index} added to was committed. */
  #markIndexed(target: Target): void {
    for (const [grain, bucket] of target.unindexed) {
      this.#indexed.set(`${target.manager}\u0000${grain}`, bucket);
    }
    target.unindexed = [];
  }

  /**
   * The packs `packs` of `target`'s buckets, by pack, an entry per grain
   * (with a null value where none is stored yet): those its cache keeps,
   * taken out of it, and the others read.
   */
  async #readPacks(
    target: Target,
    packs: number[],
  ): Promise<Map<number, Deno.KvEntryMaybe<unknown>[]>> {
    const { manager, grains } = target;
    const out = new Map<number, Deno.KvEntryMaybe<unknown>[]>();
    for (const pack of packs) {
      out.set(
        pack,
        grains.map(([grain, bucket]) => ({
          key: packKey(manager, grain, bucket, pack),
          value: null,
          versionstamp: null,
        })),
      );
    }
    for (let g = 0; g < grains.length; g++) {
      const [grain, bucket] = grains[g];
      const { cached, missing } = takeCached(
        target.cache.buckets.get(grain)?.packs,
        packs,
      );
      for (const [pack, entry] of cached) out.get(pack)![g] = entry;
      if (missing.length === 0) continue;
      const wanted = new Set(missing);
      await readPacks(
        this.kv,
        ["usage", manager, `${grain}Packs`, bucket],
        missing,
        (pack, entry) => {
          if (wanted.has(pack)) out.get(pack)![g] = entry;
        },
        () => this.pace()?.between(),
      );
    }
    return out;
  }

  /**
   * Writes `group`'s merged packs in one atomic operation that checks each
   * is as read; when one is not (another gateway wrote it meanwhile), reads
   * them again, merges again and tries again. Answers the users left out
   * because a pack of theirs is full.
   */
  async #commitPacks(
    target: Target,
    group: Grouped[],
    byPack: ReadonlyMap<number, string[]>,
    deltas: ReadonlyMap<string, number>,
  ): Promise<string[]> {
    const { cache } = target;
    for (let attempt = 1;; attempt++) {
      const op = this.kv.atomic();
      this.#index(target, op);
      // While the cache is good, nobody else may have written since.
      const checked = cache.writes;
      const key = writesKey(target.manager);
      if (checked !== undefined) op.check({ key, versionstamp: checked });
      op.sum(key, 1n);
      for (const { merged } of group) {
        if (!merged.values) continue;
        for (let g = 0; g < merged.values.length; g++) {
          const entry = merged.entries[g];
          op.check(entry).set(entry.key, merged.values[g]);
        }
      }
      const res = await write(() => op.commit());
      if (res.ok) {
        this.#markIndexed(target);
        if (checked !== undefined && cache.writes === checked) {
          cache.writes = res.versionstamp;
          target.grains.forEach(([grain], g) => {
            const packs = cache.buckets.get(grain)?.packs;
            if (packs) keepWritten(packs, group, g, res.versionstamp);
          });
        }
        return group.flatMap((x) => x.merged.left);
      }
      // Another gateway wrote: nothing kept is good any more.
      cache.writes = undefined;
      for (const { packs } of cache.buckets.values()) packs.clear();
      if (attempt >= PACK_TRIES) {
        throw new Error("its packs keep changing (other gateways write them)");
      }
      const fresh = await this.#readPacks(target, group.map((x) => x.pack));
      for (const x of group) {
        x.merged = merge(fresh.get(x.pack)!, byPack.get(x.pack)!, deltas);
      }
    }
  }

  /**
   * Deletes the buckets of that grain that start `keepMs` or more before
   * `current`, once per new `current` (another process on the file may
   * have deleted them already: deleting again is harmless).
   */
  async #prune(
    manager: string,
    grain: UsageGrain,
    current: number,
    keepMs: number,
  ): Promise<void> {
    if (keepMs <= 0) return;
    const mark = `${manager}\u0000${grain}`;
    if (this.#pruned.get(mark) === current) return;
    const before = current - keepMs + 1;
    const old: Deno.KvKey[] = [];
    for await (
      const entry of this.kv.list({
        start: ["usage", manager, grain],
        end: ["usage", manager, grain, before],
      }, { batchSize: LIST_BATCH })
    ) {
      const [, , , start, user] = entry.key as [
        string,
        string,
        string,
        number,
        string,
      ];
      old.push(entry.key, byUserKey(manager, grain, user, start));
    }
    for (const kind of ["Packs", "Starts"]) {
      for await (
        const entry of this.kv.list({
          start: ["usage", manager, grain + kind],
          end: ["usage", manager, grain + kind, before],
        })
      ) old.push(entry.key);
    }
    for (const [start, end] of kvBatches(old)) {
      const op = this.kv.atomic();
      for (let i = start; i < end; i++) op.delete(old[i]);
      await write(() => op.commit());
    }
    this.#pruned.set(mark, current);
  }

  /** See {@link StateStore.readUsage}. */
  async read(manager: string, range: UsageRange): Promise<UsageEntry[]> {
    if (range.to <= range.from) return [];
    const { grain, user } = range;
    if (user !== undefined) return await this.#readUser(manager, range, user);
    // Every user's: the packs of the range, and the counters.
    const sums = new Map<number, Map<string, number>>();
    const add = (start: number, u: string, bytes: number) => {
      let users = sums.get(start);
      if (!users) sums.set(start, users = new Map());
      users.set(u, (users.get(u) ?? 0) + bytes);
    };
    for await (
      const entry of this.kv.list<unknown>({
        start: ["usage", manager, `${grain}Packs`, range.from],
        end: ["usage", manager, `${grain}Packs`, range.to],
      })
    ) {
      if (!(entry.value instanceof Map)) continue;
      for (const [u, bytes] of entry.value as Pack) {
        add(entry.key[3] as number, u, bytes);
      }
    }
    for await (
      const entry of this.kv.list<Deno.KvU64>({
        start: ["usage", manager, grain, range.from],
        end: ["usage", manager, grain, range.to],
      }, { batchSize: LIST_BATCH })
    ) {
      add(
        entry.key[3] as number,
        entry.key[4] as string,
        Number(entry.value.value),
      );
    }
    const out: UsageEntry[] = [];
    for (const [start, users] of sums) {
      for (const [u, bytes] of users) out.push({ start, user: u, bytes });
    }
    return out.sort(compareUsage);
  }

  /**
   * One user's: the buckets of the range, from the index and from the keys
   * by user an older pmproxy wrote; then that user's pack and counter in
   * each.
   */
  async #readUser(
    manager: string,
    range: UsageRange,
    user: string,
  ): Promise<UsageEntry[]> {
    const { grain } = range;
    const starts = new Set<number>();
    for await (
      const entry of this.kv.list({
        start: startKey(manager, grain, range.from),
        end: startKey(manager, grain, range.to),
      })
    ) starts.add(entry.key[3] as number);
    for await (
      const entry of this.kv.list({
        start: byUserKey(manager, grain, user, range.from),
        end: byUserKey(manager, grain, user, range.to),
      })
    ) starts.add(entry.key[4] as number);
    const sorted = [...starts].sort((a, b) => a - b);
    const pack = packOf(user);
    const out: UsageEntry[] = [];
    const each = GET_BATCH / 2;
    for (let i = 0; i < sorted.length; i += each) {
      const part = sorted.slice(i, i + each);
      const entries = await this.kv.getMany<unknown[]>(
        part.flatMap((start) => [
          packKey(manager, grain, start, pack),
          counterKey(manager, grain, start, user),
        ]),
      );
      for (let j = 0; j < part.length; j++) {
        const packed = entries[2 * j].value;
        const counter = entries[2 * j + 1].value;
        let bytes: number | undefined;
        if (packed instanceof Map && packed.has(user)) {
          bytes = packed.get(user) as number;
        }
        if (counter instanceof Deno.KvU64) {
          bytes = (bytes ?? 0) + Number(counter.value);
        }
        if (bytes !== undefined) out.push({ start: part[j], user, bytes });
      }
    }
    return out;
  }
}
