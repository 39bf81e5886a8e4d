/**
 * Packs on Deno KV: many users' byte counts kept as a few values instead of
 * a key each. The users of a set (a quota's cycle, a history bucket) are
 * hashed into {@link PACKS} packs; a pack is a `Map` of user to bytes, one
 * Deno KV value. Deno KV costs the main thread 3 to 5 us per mutation
 * whatever its size, and its SQLite thread about 5 us per key written, so a
 * flush of 10,000 users that writes 256 packs costs a tenth of one that
 * writes 10,000 counters (measured on Deno 2.9.6).
 *
 * A write reads the packs its users fall in, adds its deltas and writes
 * them back with a check that each is still as read (another gateway may
 * write it meanwhile; then it is read again). A user whose pack is full
 * ({@link PACK_BYTES}) gets a key of their own, added to with atomic `sum`.
 * The packs a write left are kept ({@link PackCache}), and while nobody
 * else writes they stand in for reading them back at the next write.
 * Private to this folder: the consumption counters (_kv_counters.ts) and
 * the usage history (_kv_usage.ts) are kept in packs.
 *
 * @module
 */
import { StoreWriteError } from "./store.ts";
import { GET_BATCH } from "./_kv_write.ts";

/** How many packs a set's users are hashed into. */
export const PACKS = 256;
/**
 * The most bytes a pack is let grow to, as V8 serializes it (Deno KV takes
 * values of 64 KiB); past it, new users of that pack get a key each. A pack
 * holds about 1,300 names of 20 characters, a set some 330,000 users.
 */
export const PACK_BYTES = 48_000;
/**
 * Pack values written in one atomic operation, at most (each with a check;
 * Deno KV takes 100 checks): an operation costs the main thread about
 * 170 us whatever it holds, and a pack 20 to 30 us more (measured on Deno
 * 2.9.6), so few large operations.
 */
const OP_VALUES = 48;
/** Bytes of pack values in one atomic operation, at most (Deno KV takes 800 KiB). */
const OP_BYTES = 600_000;
/**
 * Past this many packs to read, a set's are read as one list of its packs
 * (32 a round trip), not 10 at a time by key: a getMany costs the main
 * thread about 100 us whatever it reads, and a list of all 256 about 8 of
 * them and every pack's deserialization. More than the packs of one
 * operation ({@link OP_VALUES}): a group read again after another
 * gateway's write reads only its own packs.
 */
const LIST_PACKS_OVER = 64;
/** Packs read per round trip of that list. */
const LIST_PACKS_BATCH = 32;
/** Tries of one round of packs while other gateways keep writing them. */
export const PACK_TRIES = 20;

/** The pack a user's bytes go to: FNV-1a of the name's UTF-16 units. */
export function packOf(user: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < user.length; i++) {
    h ^= user.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % PACKS;
}

/** A pack: bytes by user (or, of the sessions' last uses, another value by IP). */
export type Pack<V = number> = Map<string, V>;

/**
 * About the bytes one entry of a pack takes as V8 serializes it (a little
 * more): the name at one byte a character, or two when one is past Latin-1,
 * and `valueBytes` for its value (a number: 16).
 */
export function entryBytes(user: string, valueBytes = 16): number {
  for (let i = 0; i < user.length; i++) {
    if (user.charCodeAt(i) > 0xff) return 2 * user.length + valueBytes;
  }
  return user.length + valueBytes;
}

/**
 * The error of a write of `deltas` that failed with `e` (`what`: "adding
 * consumption"), leaving the deltas of `users` unwritten.
 */
export function unwrittenError(
  what: string,
  e: unknown,
  users: Iterable<string>,
  deltas: ReadonlyMap<string, number>,
): StoreWriteError<Map<string, number>> {
  const left = new Map<string, number>();
  for (const u of users) left.set(u, deltas.get(u)!);
  return new StoreWriteError(
    `${what} failed: ${e instanceof Error ? e.message : e}`,
    left,
    { cause: e },
  );
}

/** The users of `users` by their pack. */
export function byPack(users: Iterable<string>): Map<number, string[]> {
  const out = new Map<number, string[]>();
  for (const user of users) {
    const pack = packOf(user);
    const list = out.get(pack);
    if (list) list.push(user);
    else out.set(pack, [user]);
  }
  return out;
}

/** A pack as read in each of its sets, what to write back, who is left out. */
export interface Merged<V = number> {
  entries: Deno.KvEntryMaybe<unknown>[];
  /** The new value of each set's pack; undefined: nothing to write. */
  values?: Pack<V>[];
  /** Users left out because a pack of theirs is full. */
  left: string[];
  /** About the bytes of the values. */
  bytes: number;
}

/**
 * How {@link merge} puts a value in a pack: by default a delta added to
 * what it had; the sessions' last uses keep the later one.
 */
export interface Combine<V> {
  /** The pack's new value of that user, from what it had and `v`. */
  combine(had: V | undefined, v: V): V;
  /** About the bytes a value takes as V8 serializes it. */
  valueBytes: number;
}

/**
 * The bytes of each pack {@link merge} last merged into (a pack kept in a
 * {@link PackCache} is merged into again at the next write, and its size
 * is not counted again: at 100,000 users that was 400,000 names a flush).
 */
const sizesOf = new WeakMap<Map<string, unknown>, number>();

const ADD: Combine<number> = {
  combine: (had, v) => (had ?? 0) + v,
  valueBytes: 16,
};

/**
 * Adds the deltas of `users` to their pack as read in each set (one entry
 * per set: the history writes an hour's and a day's at once; the read
 * values are changed): a user goes in when every set's pack has them or
 * room for them, else is left out. `how` puts in values other than byte
 * counts (by default, deltas added).
 */
export function merge<V = number>(
  entries: Deno.KvEntryMaybe<unknown>[],
  users: readonly string[],
  deltas: ReadonlyMap<string, V>,
  how: Combine<V> = ADD as unknown as Combine<V>,
): Merged<V> {
  // A value that is not a pack (written by hand) is replaced.
  const packs = entries.map((e) =>
    e.value instanceof Map ? e.value as Pack<V> : new Map<string, V>()
  );
  const sizes = packs.map((pack) => {
    const known = sizesOf.get(pack);
    if (known !== undefined) return known;
    let n = 16;
    for (const user of pack.keys()) n += entryBytes(user, how.valueBytes);
    return n;
  });
  const left: string[] = [];
  let changed = false;
  for (const user of users) {
    const size = entryBytes(user, how.valueBytes);
    const fits = packs.every((pack, g) =>
      pack.has(user) || sizes[g] + size <= PACK_BYTES
    );
    if (!fits) {
      left.push(user);
      continue;
    }
    const v = deltas.get(user)!;
    for (let g = 0; g < packs.length; g++) {
      const had = packs[g].get(user);
      if (had === undefined) sizes[g] += size;
      packs[g].set(user, how.combine(had, v));
    }
    changed = true;
  }
  for (let g = 0; g < packs.length; g++) sizesOf.set(packs[g], sizes[g]);
  if (!changed) return { entries, left, bytes: 0 };
  return {
    entries,
    values: packs,
    left,
    bytes: sizes.reduce((a, b) => a + b, 0),
  };
}

/**
 * Reads the packs `packs` of one set under `prefix` (a pack's key is
 * `[...prefix, pack]`; undefined: all) and hands each to `found`: as one
 * list of the set's packs when many are asked (then the others stored come
 * too), else 10 at a time by key (then one not stored comes with a null
 * value). `between` runs between round trips (the flush's pace).
 */
export async function readPacks(
  kv: Deno.Kv,
  prefix: Deno.KvKey,
  packs: readonly number[] | undefined,
  found: (pack: number, entry: Deno.KvEntryMaybe<unknown>) => void,
  between: () => Promise<void> | undefined,
): Promise<void> {
  if (packs === undefined || packs.length > LIST_PACKS_OVER) {
    let n = 0;
    for await (
      const entry of kv.list({ prefix }, { batchSize: LIST_PACKS_BATCH })
    ) {
      found(entry.key[prefix.length] as number, entry);
      if (++n % LIST_PACKS_BATCH === 0) await between();
    }
    return;
  }
  for (let i = 0; i < packs.length; i += GET_BATCH) {
    if (i > 0) await between();
    const part = packs.slice(i, i + GET_BATCH);
    const entries = await kv.getMany<unknown[]>(
      part.map((pack) => [...prefix, pack]),
    );
    for (let p = 0; p < part.length; p++) found(part[p], entries[p]);
  }
}

/**
 * Packs as this store last wrote them, by pack: each entry holds the value
 * written and the versionstamp that write gave it (or the entry as read,
 * when the write left that pack as it was). While nobody else writes,
 * they stand in for reading the packs back: a flush of a lone gateway
 * then reads no pack (their reading and deserialization were a third of
 * its main-thread time). Each is still written with a check of its
 * versionstamp, so a pack another gateway wrote meanwhile fails the check
 * and is read again. A pack is taken out of the cache for a write and put
 * back only when that write passed: a write that failed or threw leaves
 * its packs to be read again, and a merge into a pack taken out changes
 * no cached value.
 */
export type PackCache = Map<number, Deno.KvEntryMaybe<unknown>>;

/**
 * Takes the packs of `packs` that `cache` holds out of it: answers them,
 * by pack, and the packs still to be read.
 */
export function takeCached(
  cache: PackCache | undefined,
  packs: readonly number[],
): { cached: Map<number, Deno.KvEntryMaybe<unknown>>; missing: number[] } {
  const cached = new Map<number, Deno.KvEntryMaybe<unknown>>();
  if (cache === undefined || cache.size === 0) {
    return { cached, missing: [...packs] };
  }
  const missing: number[] = [];
  for (const pack of packs) {
    const entry = cache.get(pack);
    if (entry === undefined) {
      missing.push(pack);
      continue;
    }
    cache.delete(pack);
    cached.set(pack, entry);
  }
  return { cached, missing };
}

/**
 * Puts the packs of `group` in `cache` as a write that passed with
 * `versionstamp` left them (`g`: which of each pack's sets).
 */
export function keepWritten<V>(
  cache: PackCache,
  group: readonly Grouped<V>[],
  g: number,
  versionstamp: string,
): void {
  for (const { pack, merged } of group) {
    const entry = merged.entries[g];
    cache.set(
      pack,
      merged.values
        ? { key: entry.key, value: merged.values[g], versionstamp }
        : entry,
    );
  }
}

/**
 * Reads the packs `packs` of one set under `prefix` into `out` by pack,
 * a null value where none is stored (see {@link readPacks}); answers `out`.
 */
export async function readPacksInto(
  kv: Deno.Kv,
  prefix: Deno.KvKey,
  packs: readonly number[],
  between: () => Promise<void> | undefined,
  out = new Map<number, Deno.KvEntryMaybe<unknown>>(),
): Promise<Map<number, Deno.KvEntryMaybe<unknown>>> {
  const wanted = new Set(packs);
  for (const pack of packs) {
    out.set(pack, { key: [...prefix, pack], value: null, versionstamp: null });
  }
  await readPacks(kv, prefix, packs, (pack, entry) => {
    if (wanted.has(pack)) out.set(pack, entry);
  }, between);
  return out;
}

/** A pack of a write, as merged last. */
export interface Grouped<V = number> {
  pack: number;
  merged: Merged<V>;
}

/** What {@link writePacks} is given. */
export interface PackWrite<V = number> {
  /** The packs to write, in order, and the users of each. */
  packs: readonly number[];
  users: ReadonlyMap<number, string[]>;
  /** Merges that pack's users' deltas into it as read. */
  merge(pack: number): Merged<V>;
  /** The values a merged pack writes (one per set; 0 when unchanged). */
  values(merged: Merged<V>): number;
  /**
   * Writes one group of packs in one atomic operation (merging again and
   * trying again while another gateway's write gets in between); answers
   * the users left out because a pack of theirs is full.
   */
  commit(group: Grouped<V>[]): Promise<string[]>;
  /** The error of a failed write, with the users it leaves unwritten. */
  failed(e: unknown, unwritten: string[]): Error;
  /** Runs before each operation (the flush's pace). */
  between(): Promise<void> | undefined;
}

/**
 * Writes merged packs in atomic operations of at most {@link OP_VALUES}
 * values and {@link OP_BYTES} bytes; answers the users left out because a
 * pack of theirs is full (for the caller to give a key of their own). A
 * failed operation throws `failed(e, unwritten)`: the users of that
 * operation and the ones after it, and those left out so far.
 */
export async function writePacks<V = number>(
  w: PackWrite<V>,
): Promise<string[]> {
  const full: string[] = [];
  let group: Grouped<V>[] = [];
  let from = 0;
  let values = 0;
  let bytes = 0;
  const commit = async () => {
    await w.between();
    try {
      full.push(...await w.commit(group));
    } catch (e) {
      throw w.failed(e, [
        ...full,
        ...w.packs.slice(from).flatMap((p) => w.users.get(p)!),
      ]);
    }
    from += group.length;
    group = [];
    values = 0;
    bytes = 0;
  };
  for (const pack of w.packs) {
    const merged = w.merge(pack);
    const n = w.values(merged);
    if (
      group.length > 0 &&
      (values + n > OP_VALUES || bytes + merged.bytes > OP_BYTES)
    ) await commit();
    group.push({ pack, merged });
    values += n;
    bytes += merged.bytes;
  }
  if (group.length > 0) await commit();
  return full;
}
