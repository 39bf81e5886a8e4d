/**
 * The consumption counters and grants on Deno KV: their keys, the flush's
 * writes of deltas, an administrator's set, the reads, the copy that spares
 * a lone gateway reading them back, and the deletion of other cycles.
 * Private to this folder (kv_store.ts holds the store's other keys and
 * wraps these calls in its health).
 *
 * Keys of a quota manager's counters (cycle: its last reset, in ms):
 *
 * - `["dwnConsR", manager, "consPacks", cycle, pack]`: a `Map` of user to
 *   bytes for the users of one pack (`packOf` in _kv_packs.ts). A flush
 *   reads the packs its users fall in (a flush of many, every pack of the
 *   cycle as one list), adds its deltas and writes them back, each with a
 *   check that it is still as read; another gateway's write in between
 *   makes the check fail, and the packs are read again and the deltas
 *   added again. A flush of 10,000 users writes 256 values, not 10,000.
 * - `["dwnConsR", manager, "cons", cycle, user]`: a `Deno.KvU64` added to
 *   with atomic `sum`. pmproxy before 2026-12-04 wrote every user's deltas
 *   here; now only users whose pack is full, and an administrator's set
 *   (which takes the user out of their pack in the same write). Both are
 *   read: a user's bytes are the sum of the two.
 * - `["dwnConsR", manager, "grant", cycle, user]`: a `Deno.KvU64` of the
 *   bytes granted to that user in that cycle (atomic `sum`).
 * - `["dwnConsR", manager, "writes"]`: a `Deno.KvU64` that every write of
 *   that manager's counters adds 1 to, in the same atomic operation.
 *
 * The copy: {@link KvCounters} keeps each manager's counters of the current
 * cycle as of its last read of them all, with the versionstamp the `writes`
 * key had then. Its own writes carry a check of that versionstamp: when it
 * passes, nobody else wrote in between, so the copy plus its deltas is what
 * is stored, and the copy stays good. A read first gets the `writes` key
 * alone; while its versionstamp is the copy's, the counters are answered
 * from the copy, else read again. With the copy go the packs as its writes
 * left them (a `PackCache` of _kv_packs.ts): while it is good, a flush
 * merges into those and reads none.
 *
 * Gateways sharing a file must all run this version or a later one: an
 * older one reads none of the packs, so it would not see the bytes the
 * others counted since.
 *
 * @module
 */
import type { WritePace } from "./pace.ts";
import { GET_BATCH, kvBatches, LIST_BATCH, write } from "./_kv_write.ts";
import {
  byPack,
  type Grouped,
  keepWritten,
  merge,
  PACK_TRIES,
  type PackCache,
  packOf,
  readPacks,
  readPacksInto,
  takeCached,
  unwrittenError,
  writePacks,
} from "./_kv_packs.ts";

/**
 * Deltas of users whose pack is full added in one atomic operation: far
 * fewer than the 1,000 mutations Deno KV takes, because the main thread
 * makes the operation in one go (about 5 us each), and requests wait
 * meanwhile: 250 is about 1 ms.
 */
const COUNTER_BATCH = 250;
/** Past this many users, their counters are read as one read of all. */
const LIST_OVER = 200;

function consKey(manager: string, cycle: number, user: string): Deno.KvKey {
  return ["dwnConsR", manager, "cons", cycle, user];
}

function packsPrefix(manager: string, cycle: number): Deno.KvKey {
  return ["dwnConsR", manager, "consPacks", cycle];
}

function grantKey(manager: string, cycle: number, user: string): Deno.KvKey {
  return ["dwnConsR", manager, "grant", cycle, user];
}

function writesKey(manager: string): Deno.KvKey {
  return ["dwnConsR", manager, "writes"];
}

/**
 * A manager's counters of one cycle as last read here, plus this store's
 * deltas since; good while `writes` is the versionstamp of the `writes`
 * key (undefined: not good, read again).
 */
interface CounterCopy {
  cycle: number;
  writes: string | null | undefined;
  values: Map<string, number>;
  /** The packs as this copy's writes left them (emptied when it spoils). */
  packs: PackCache;
}

/** The counters of `users` in `values` (all of them: a copy). */
function subset(
  values: ReadonlyMap<string, number>,
  users: readonly string[] | undefined,
): Map<string, number> {
  if (users === undefined) return new Map(values);
  const out = new Map<string, number>();
  for (const u of users) {
    const v = values.get(u);
    if (v !== undefined) out.set(u, v);
  }
  return out;
}

/** Adds `bytes` to `user`'s count in `out`. */
function addTo(out: Map<string, number>, user: string, bytes: number): void {
  out.set(user, (out.get(user) ?? 0) + bytes);
}

/**
 * The `Deno.KvU64` values under `prefix` (a manager's counters or grants
 * of one cycle), by their last key part, the user: all of them, or those
 * of `users`, added to `out`. `between` runs between round trips.
 */
async function readU64s(
  kv: Deno.Kv,
  prefix: Deno.KvKey,
  users: readonly string[] | undefined,
  between: () => Promise<void> | undefined,
  out = new Map<string, number>(),
): Promise<Map<string, number>> {
  if (users) {
    for (let start = 0; start < users.length; start += GET_BATCH) {
      await between();
      const part = users.slice(start, start + GET_BATCH);
      const entries = await kv.getMany<Deno.KvU64[]>(
        part.map((u) => [...prefix, u]),
      );
      for (let i = 0; i < part.length; i++) {
        const v = entries[i].value;
        if (v instanceof Deno.KvU64) addTo(out, part[i], Number(v.value));
      }
    }
    return out;
  }
  for await (
    const entry of kv.list<Deno.KvU64>({ prefix }, { batchSize: LIST_BATCH })
  ) {
    if (!(entry.value instanceof Deno.KvU64)) continue;
    addTo(out, entry.key[prefix.length] as string, Number(entry.value.value));
  }
  return out;
}

/** The counters of a {@link KvStateStore}'s database (see the module doc). */
export class KvCounters {
  /** Each quota manager's counters of its current cycle. */
  readonly #copies = new Map<string, CounterCopy>();

  /** `pace` answers the store's pace of the moment (set after it opened). */
  constructor(
    readonly kv: Deno.Kv,
    readonly pace: () => WritePace | undefined,
  ) {}

  #between(): Promise<void> | undefined {
    return this.pace()?.between();
  }

  /** The copy of `manager`'s counters when it is of `cycle` and good. */
  #goodCopy(manager: string, cycle: number): CounterCopy | undefined {
    const copy = this.#copies.get(manager);
    return copy !== undefined && copy.cycle === cycle &&
        copy.writes !== undefined
      ? copy
      : undefined;
  }

  /**
   * A write of `manager`'s counters of `cycle`: an atomic operation that
   * adds 1 to its `writes` key and, while the copy is good, checks that
   * `writes` is still as the copy saw it. `done` takes what the commit
   * answered: after a write that passed, `update` brings the copy along
   * and the copy stays good; a check that failed means another gateway
   * wrote, and the copy is no longer good (the next write checks nothing
   * of it). True when the write passed.
   */
  #counterWrite(manager: string, cycle: number): {
    op: Deno.AtomicOperation;
    /** The copy the write checks (undefined: none was good). */
    copy: CounterCopy | undefined;
    done(
      res: Deno.KvCommitResult | Deno.KvCommitError,
      update: (values: Map<string, number>) => void,
    ): boolean;
  } {
    const copy = this.#goodCopy(manager, cycle);
    const op = this.kv.atomic();
    if (copy) op.check({ key: writesKey(manager), versionstamp: copy.writes! });
    op.sum(writesKey(manager), 1n);
    return {
      op,
      copy,
      done: (res, update) => {
        if (res.ok) {
          if (copy) {
            update(copy.values);
            copy.writes = res.versionstamp;
          }
          return true;
        }
        this.#spoil(manager);
        return false;
      },
    };
  }

  /** The copy of `manager`'s counters is no longer good (another wrote). */
  #spoil(manager: string): void {
    const stale = this.#copies.get(manager);
    if (!stale) return;
    stale.writes = undefined;
    stale.packs.clear();
  }

  /** See {@link StateStore.addConsumption}. */
  async add(
    manager: string,
    cycle: number,
    deltas: ReadonlyMap<string, number>,
  ): Promise<void> {
    const users = byPack(deltas.keys());
    const packs = [...users.keys()].sort((a, b) => a - b);
    const failed = (e: unknown, unwritten: Iterable<string>) =>
      unwrittenError("adding consumption", e, unwritten, deltas);
    let read: Map<number, Deno.KvEntryMaybe<unknown>>;
    try {
      // Packs kept from this store's last write are good only while nobody
      // else wrote since: one read of `writes` tells, before relying on
      // them (a write of stale packs would fail their checks after making
      // its values).
      const copy = this.#goodCopy(manager, cycle);
      if (
        copy && copy.packs.size > 0 && !await this.unchanged(manager, cycle)
      ) {
        this.#spoil(manager);
      }
      read = await this.#readPacks(manager, cycle, packs);
    } catch (e) {
      throw failed(e, deltas.keys());
    }
    // Users whose pack is full: a counter each, once the packs are written.
    const full = await writePacks({
      packs,
      users,
      merge: (pack) => merge([read.get(pack)!], users.get(pack)!, deltas),
      values: (merged) => merged.values ? 1 : 0,
      commit: (group) =>
        this.#commitPacks(manager, cycle, group, users, deltas),
      failed,
      between: () => this.#between(),
    });
    if (full.length > 0) await this.#addToKeys(manager, cycle, full, deltas);
  }

  /**
   * The packs `packs` of that cycle (a null value where none is stored):
   * those the good copy keeps, taken out of it, and the others read.
   */
  async #readPacks(
    manager: string,
    cycle: number,
    packs: readonly number[],
  ): Promise<Map<number, Deno.KvEntryMaybe<unknown>>> {
    const prefix = packsPrefix(manager, cycle);
    const { cached: out, missing } = takeCached(
      this.#goodCopy(manager, cycle)?.packs,
      packs,
    );
    if (missing.length === 0) return out;
    return await readPacksInto(
      this.kv,
      prefix,
      missing,
      () => this.#between(),
      out,
    );
  }

  /**
   * Writes `group`'s merged packs in one atomic operation that checks each
   * is as read (and the copy's `writes` while it is good), with 1 added to
   * `writes`; when a check fails (another gateway wrote), the copy is no
   * longer good, and the packs are read again, merged again and written
   * again. Answers the users left out because their pack is full.
   */
  async #commitPacks(
    manager: string,
    cycle: number,
    group: Grouped[],
    users: ReadonlyMap<number, string[]>,
    deltas: ReadonlyMap<string, number>,
  ): Promise<string[]> {
    for (let attempt = 1;; attempt++) {
      const left = group.flatMap((x) => x.merged.left);
      if (!group.some((x) => x.merged.values)) return left;
      const w = this.#counterWrite(manager, cycle);
      for (const { merged } of group) {
        if (!merged.values) continue;
        const entry = merged.entries[0];
        w.op.check(entry).set(entry.key, merged.values[0]);
      }
      const res = await write(() => w.op.commit());
      const written = w.done(res, (values) => {
        const leftOut = new Set(left);
        for (const { pack } of group) {
          for (const u of users.get(pack)!) {
            if (!leftOut.has(u)) addTo(values, u, deltas.get(u)!);
          }
        }
      });
      if (written) {
        if (res.ok && w.copy) {
          keepWritten(w.copy.packs, group, 0, res.versionstamp);
        }
        return left;
      }
      if (attempt >= PACK_TRIES) {
        throw new Error("its packs keep changing (other gateways write them)");
      }
      const fresh = await this.#readPacks(
        manager,
        cycle,
        group.map((x) => x.pack),
      );
      for (const x of group) {
        x.merged = merge([fresh.get(x.pack)!], users.get(x.pack)!, deltas);
      }
    }
  }

  /** Adds the deltas of `users` to a counter each (their packs are full). */
  async #addToKeys(
    manager: string,
    cycle: number,
    users: string[],
    deltas: ReadonlyMap<string, number>,
  ): Promise<void> {
    const keys = users.map((u) => consKey(manager, cycle, u));
    for (const [start, end] of kvBatches(keys, COUNTER_BATCH)) {
      await this.#between();
      try {
        await this.#writeKeys(manager, cycle, (op) => {
          for (let i = start; i < end; i++) {
            op.sum(keys[i], BigInt(deltas.get(users[i])!));
          }
        }, (values) => {
          for (let i = start; i < end; i++) {
            addTo(values, users[i], deltas.get(users[i])!);
          }
        });
      } catch (e) {
        throw unwrittenError(
          "adding consumption",
          e,
          users.slice(start),
          deltas,
        );
      }
    }
  }

  /**
   * One atomic write of `manager`'s counters of `cycle` (`mutate` adds
   * them to `op`) with 1 added to its `writes` key. While the copy is
   * good, the write checks that `writes` is still as the copy saw it, and
   * `update` brings the copy along; when the check fails (another gateway
   * wrote), the copy is no longer good and the write is done again without
   * the check. `mutate` must not depend on what is stored.
   */
  async #writeKeys(
    manager: string,
    cycle: number,
    mutate: (op: Deno.AtomicOperation) => void,
    update: (values: Map<string, number>) => void,
  ): Promise<void> {
    const w = this.#counterWrite(manager, cycle);
    mutate(w.op);
    if (w.done(await write(() => w.op.commit()), update)) return;
    // Only a checked write can fail: the copy missed another's write, and
    // the write again checks nothing of it.
    const again = this.#counterWrite(manager, cycle);
    mutate(again.op);
    await write(() => again.op.commit());
  }

  /** See {@link StateStore.setConsumption}. */
  async set(
    manager: string,
    cycle: number,
    user: string,
    bytes: number,
  ): Promise<void> {
    const key: Deno.KvKey = [...packsPrefix(manager, cycle), packOf(user)];
    // This write changes the pack: the next flush reads it.
    this.#copies.get(manager)?.packs.delete(packOf(user));
    for (let attempt = 1; attempt <= PACK_TRIES; attempt++) {
      const entry = await this.kv.get<unknown>(key);
      const w = this.#counterWrite(manager, cycle);
      // Out of the pack, into a counter of its own. The pack is checked
      // even when the user is not in it: a flush adding them to it
      // meanwhile must come before the set or be read again after it.
      w.op.check(entry);
      if (entry.value instanceof Map && entry.value.has(user)) {
        const rest = new Map(entry.value as Map<string, number>);
        rest.delete(user);
        if (rest.size > 0) w.op.set(key, rest);
        else w.op.delete(key);
      }
      w.op.set(consKey(manager, cycle, user), new Deno.KvU64(BigInt(bytes)));
      const res = await write(() => w.op.commit());
      if (w.done(res, (values) => values.set(user, bytes))) return;
    }
    throw new Error(`the counter of ${user} keeps changing; try again`);
  }

  /** See {@link StateStore.readConsumption}. */
  async read(
    manager: string,
    cycle: number,
    users?: readonly string[],
  ): Promise<Map<string, number>> {
    if (await this.unchanged(manager, cycle)) {
      return subset(this.#copies.get(manager)!.values, users);
    }
    if (users !== undefined && users.length <= LIST_OVER) {
      return await this.#readUsers(manager, cycle, users);
    }
    // Many asked: read them all and keep the copy.
    const writes = (await this.kv.get(writesKey(manager))).versionstamp;
    const values = await this.#readUsers(manager, cycle, undefined);
    this.#copies.set(manager, { cycle, writes, values, packs: new Map() });
    return subset(values, users);
  }

  /** The counters of `users` (or all): their packs and their own keys. */
  async #readUsers(
    manager: string,
    cycle: number,
    users: readonly string[] | undefined,
  ): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const wanted = users && new Set(users);
    const packs = users && [...byPack(users).keys()];
    if (packs === undefined || packs.length > 0) {
      await readPacks(
        this.kv,
        packsPrefix(manager, cycle),
        packs,
        (_, entry) => {
          if (!(entry.value instanceof Map)) return;
          for (const [u, bytes] of entry.value as Map<string, number>) {
            if (wanted === undefined || wanted.has(u)) addTo(out, u, bytes);
          }
        },
        () => this.#between(),
      );
    }
    return await readU64s(
      this.kv,
      ["dwnConsR", manager, "cons", cycle],
      users,
      () => this.#between(),
      out,
    );
  }

  /** See {@link StateStore.countersUnchanged}. */
  async unchanged(manager: string, cycle: number): Promise<boolean> {
    const copy = this.#goodCopy(manager, cycle);
    if (!copy) return false;
    const now = await this.kv.get(writesKey(manager));
    return now.versionstamp === copy.writes;
  }

  /** See {@link StateStore.addGrant}. */
  async addGrant(
    manager: string,
    cycle: number,
    user: string,
    bytes: number,
  ): Promise<number> {
    const key = grantKey(manager, cycle, user);
    await write(() => this.kv.atomic().sum(key, BigInt(bytes)).commit());
    const entry = await this.kv.get<Deno.KvU64>(key);
    return entry.value ? Number(entry.value.value) : bytes;
  }

  /** See {@link StateStore.readGrants}. */
  readGrants(
    manager: string,
    cycle: number,
    users?: readonly string[],
  ): Promise<Map<string, number>> {
    return readU64s(
      this.kv,
      ["dwnConsR", manager, "grant", cycle],
      users,
      () => this.#between(),
    );
  }

  /** See {@link StateStore.deleteOtherCycles}. */
  async deleteOtherCycles(manager: string, keep: number): Promise<void> {
    const copy = this.#copies.get(manager);
    if (copy && copy.cycle !== keep) this.#copies.delete(manager);
    const old: Deno.KvKey[] = [];
    // The cycles before `keep` and after it, not the counters of `keep`
    // (a site's every user): a cycle is a whole number of ms, so those
    // after it begin at keep + 1.
    for (const what of ["cons", "consPacks", "grant"]) {
      const prefix = ["dwnConsR", manager, what];
      for (
        const selector of [
          { prefix, end: [...prefix, keep] },
          { prefix, start: [...prefix, keep + 1] },
        ]
      ) {
        for await (
          const entry of this.kv.list(selector, { batchSize: LIST_BATCH })
        ) {
          if (entry.key[3] !== keep) old.push(entry.key);
        }
      }
    }
    for (const [start, end] of kvBatches(old)) {
      const op = this.kv.atomic();
      for (let i = start; i < end; i++) op.delete(old[i]);
      await write(() => op.commit());
    }
  }
}
