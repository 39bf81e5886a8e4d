/**
 * The state store on Deno KV: a file in the configuration directory (the
 * default; several processes on one machine may share the file), or a KV
 * Connect URL (a denokv server: one writer, so not a way to scale out).
 *
 * Keys (the ones pmproxy always wrote, so an upgrade reads its old state):
 *
 * - `["sessionIPM", "jwtKey"]`: the signing key (32 bytes);
 * - `["sessionIPM", manager, "session", ip]`: a {@link StoredSession};
 * - `["sessionIPM", manager, "lastUsePacks", pack]`: the sessions' last
 *   uses written since their login or their last whole write, 256 packs of
 *   IPs; see _kv_last_uses.ts;
 * - `["dwnConsR", manager, "lastReset"]`: the last reset (ms);
 * - `["dwnConsR", manager, "consPacks" | "cons" | "grant", lastReset, ...]`:
 *   the counters of a cycle, in packs of users (and a `Deno.KvU64` per user
 *   where an older version wrote one or a pack is full), and the grants;
 *   see _kv_counters.ts. A new cycle uses new keys, so a reset needs no
 *   rewrite of counters others add to.
 * - `["sessionIPM", manager, "writes"]`: a `Deno.KvU64` that every write of
 *   that manager's sessions adds 1 to, in the same atomic operation (see
 *   below);
 * - `["dwnConsR", manager, "writes"]`: a `Deno.KvU64` that every write of
 *   that manager's counters (a flush's deltas, an administrator's set)
 *   adds 1 to in the same atomic operation, so a gateway can tell that
 *   nobody else wrote since it last read (see _kv_counters.ts);
 * - `["loginFailures", key]`: {@link LoginFailures}, set to expire.
 * - `["usage", manager, ...]`: the usage history, by bucket (an hour, a
 *   day), its users' bytes in 256 packs a bucket, with an index of the
 *   buckets' starts; see _kv_usage.ts.
 *
 * Deno KV tells no other process of a change, so changes are not announced
 * ({@link StateStore.announcesChanges} is false): gateways sharing a file
 * see each other's logins and consumption when they read the store again,
 * at every flush.
 *
 * ## Reading and writing many at once
 *
 * A site of 10,000 users flushes 10,000 counters and sessions' last use
 * every persist interval, and reads back the counters of the users it
 * carries every second (the near-quota sync): what that costs the main
 * thread is kept small three ways.
 *
 * - Lists are read 1,000 entries at a time (Deno KV's most), not 100.
 * - A session's last use alone (a flush writes it once it moved 5 minutes)
 *   goes to 256 packs of IPs (_kv_last_uses.ts): a flush of 10,000 writes
 *   256 values, not 10,000 sessions. A session written whole (its groups
 *   changed, or never written) is written with a check of the versionstamp
 *   the store remembers of each session it read or wrote, 40 at a time,
 *   with no read first. A batch whose check fails (another gateway wrote
 *   meanwhile) is written as before: read 10 at a time, compared, each only
 *   over its own copy.
 * - The counters are kept in 256 packs a cycle, so a flush of 10,000 users
 *   writes 256 values, not 10,000; and the store keeps a copy of them as of
 *   its last read, good while nobody else wrote (see _kv_counters.ts).
 *   The sessions' `writes` key keeps such a copy good the same way for
 *   {@link KvStateStore.sessionsUnchanged}: while nobody else wrote a
 *   session, the flush need not list them all again. Gateways sharing a
 *   file must run versions that add to `writes` (this one and later): an
 *   older one's writes would not be seen until a restart.
 *
 * @module
 */
import type {
  LoginFailures,
  SessionAt,
  SessionIdentity,
  StateChange,
  StateStore,
  StoredSession,
  StoreInventory,
  StoreStatus,
  UsageBuckets,
  UsageEntry,
  UsageRange,
} from "./store.ts";
import { StoreHealth } from "./_health.ts";
import type { WritePace } from "./pace.ts";
import { GET_BATCH, LIST_BATCH, write } from "./_kv_write.ts";
import type { KvUsageHistory } from "./_kv_usage.ts";
import { KvCounters } from "./_kv_counters.ts";
import {
  KvLastUses,
  lastUseIn,
  lastUseKey,
  type LastUseWrite,
} from "./_kv_last_uses.ts";

/** Stored sessions read and written at a time (Deno KV's getMany takes 10). */
const SESSION_BATCH = GET_BATCH;
/**
 * Sessions whose last use is written in one atomic operation (Deno KV takes
 * 100 checks, one of them would be the `writes` key's): 40, because the
 * main thread serializes them all in one go (about 5 µs each), and
 * requests wait meanwhile.
 */
const CHECKED_BATCH = 40;
/** Bytes of session values written in one atomic operation, at most (Deno KV takes 800 KiB). */
const CHECKED_BYTES = 400_000;

/** The key of the installation's secret-signing key. */
export const JWT_KEY: Deno.KvKey = ["sessionIPM", "jwtKey"];

/** Failed logins as kept: with when they are forgotten (ms). */
interface StoredFailures extends LoginFailures {
  until: number;
}

function sessionKey(manager: string, ip: string): Deno.KvKey {
  return ["sessionIPM", manager, "session", ip];
}

function lastResetKey(manager: string): Deno.KvKey {
  return ["dwnConsR", manager, "lastReset"];
}

function sessionWritesKey(manager: string): Deno.KvKey {
  return ["sessionIPM", manager, "writes"];
}

/** A stored session as this store last read or wrote it. */
interface SeenSession {
  versionstamp: string;
  user: string;
  opened: number;
  lastUsed: number | undefined;
}

/** About the bytes a stored session takes (its names and groups). */
function sessionBytes(s: SessionAt): number {
  let n = 200 + 2 * (s.user.length + s.record.name.length);
  for (const g of s.record.groups) n += 2 * g.length + 8;
  for (const db in s.groups) {
    for (const g of s.groups[db]) n += 2 * g.length + 8;
  }
  return n;
}

function stored(s: SessionAt, lastUsed = s.lastUsed): StoredSession {
  const out: StoredSession = {
    user: s.user,
    record: s.record,
    groups: s.groups,
    opened: s.opened,
  };
  if (lastUsed !== undefined) out.lastUsed = lastUsed;
  return out;
}

/** The state store on an open Deno KV database. */
export class KvStateStore implements StateStore {
  readonly announcesChanges = false;
  pace?: WritePace;
  readonly #health: StoreHealth;
  /**
   * The usage history, loaded at its first write or read: a gateway just
   * started has nothing to add to it yet (see ARCHITECTURE.md, What loads
   * at start).
   */
  #usage: Promise<KvUsageHistory> | undefined;

  /** Sessions by manager and IP, as last read or written here. */
  readonly #seen = new Map<string, Map<string, SeenSession>>();
  /**
   * The versionstamp of each sessionIPM's `writes` key as of the last list
   * here and this store's writes since; undefined when another's write
   * came in between.
   */
  readonly #sessionWrites = new Map<string, string | null | undefined>();
  /** The quota managers' counters and grants (see _kv_counters.ts). */
  readonly #counters: KvCounters;
  /** The sessions' last uses (see _kv_last_uses.ts). */
  readonly #lastUses: KvLastUses;

  constructor(readonly kv: Deno.Kv, readonly description: string) {
    this.#health = new StoreHealth(description);
    this.#counters = new KvCounters(kv, () => this.pace);
    this.#lastUses = new KvLastUses(kv, () => this.pace);
  }

  /** Opens the file or KV Connect URL at `path`. */
  static async open(path: string): Promise<KvStateStore> {
    const kv = await Deno.openKv(path);
    const what = /^https?:\/\//.test(path)
      ? `Deno KV at ${path}`
      : `Deno KV file ${path}`;
    return new KvStateStore(kv, what);
  }

  status(): StoreStatus {
    return this.#health.status();
  }

  signingKey(options: { initial?: Uint8Array } = {}): Promise<Uint8Array> {
    return this.#health.run("reading the signing key", async () => {
      for (let attempt = 0; attempt < 5; attempt++) {
        const entry = await this.kv.get<Uint8Array>(JWT_KEY);
        if (entry.value instanceof Uint8Array) return entry.value;
        const key = options.initial ??
          crypto.getRandomValues(new Uint8Array(32));
        const res = await write(() =>
          this.kv.atomic().check(entry).set(JWT_KEY, key).commit()
        );
        if (res.ok) return key;
      }
      throw new Error("cannot store the session signing key");
    });
  }

  inventory(): Promise<StoreInventory> {
    return this.#health.run("reading what is stored", async () => {
      const key = (await this.kv.get<Uint8Array>(JWT_KEY)).value;
      const sessionManagers = new Set<string>();
      for await (
        const entry of this.kv.list({ prefix: ["sessionIPM"] }, {
          batchSize: LIST_BATCH,
        })
      ) {
        const k = entry.key;
        if (k.length === 4 && k[2] === "session" && typeof k[1] === "string") {
          sessionManagers.add(k[1]);
        }
      }
      const lastResets = new Map<string, number>();
      for await (
        const entry of this.kv.list({ prefix: ["dwnConsR"] }, {
          batchSize: LIST_BATCH,
        })
      ) {
        const k = entry.key;
        if (
          k.length === 3 && k[2] === "lastReset" && typeof k[1] === "string" &&
          typeof entry.value === "number"
        ) lastResets.set(k[1], entry.value);
      }
      const out: StoreInventory = {
        sessionManagers: [...sessionManagers],
        lastResets,
      };
      if (key instanceof Uint8Array) out.signingKey = key;
      return out;
    });
  }

  /** The sessions of `manager` as last read or written here, by IP. */
  #seenOf(manager: string): Map<string, SeenSession> {
    let m = this.#seen.get(manager);
    if (!m) this.#seen.set(manager, m = new Map());
    return m;
  }

  #saw(
    manager: string,
    ip: string,
    v: StoredSession | null | undefined,
    versionstamp: string | null,
  ): void {
    const m = this.#seenOf(manager);
    if (!v || versionstamp === null) m.delete(ip);
    else {
      m.set(ip, {
        versionstamp,
        user: v.user,
        opened: v.opened,
        lastUsed: v.lastUsed,
      });
    }
  }

  sessionsUnchanged(manager: string): Promise<boolean> {
    return this.#health.run("reading the sessions", async () => {
      const known = this.#sessionWrites.get(manager);
      if (known === undefined) return false;
      const now = await this.kv.get(sessionWritesKey(manager));
      return now.versionstamp === known;
    });
  }

  /**
   * One atomic write of `manager`'s sessions (`build` adds what it does to
   * `op`) with 1 added to its `writes` key, checking that key against what
   * this store last knew of it when it knows, so that afterwards it still
   * knows; when that check fails, the write is made again without it.
   * Answers the commit's result (the write's own checks' verdict).
   */
  async #writeSessions(
    manager: string,
    build: (op: Deno.AtomicOperation) => void,
  ): Promise<Deno.KvCommitResult | Deno.KvCommitError> {
    const key = sessionWritesKey(manager);
    const known = this.#sessionWrites.get(manager);
    if (known !== undefined) {
      const op = this.kv.atomic().check({ key, versionstamp: known });
      build(op);
      const res = await write(() => op.sum(key, 1n).commit());
      if (res.ok) {
        this.#sessionWrites.set(manager, res.versionstamp);
        return res;
      }
      this.#sessionWrites.set(manager, undefined);
    }
    const op = this.kv.atomic();
    build(op);
    return await write(() => op.sum(key, 1n).commit());
  }

  listSessions(manager: string): Promise<SessionAt[]> {
    return this.#health.run("reading the sessions", async () => {
      const out: SessionAt[] = [];
      const seen = new Map<string, SeenSession>();
      // Read first: a write meanwhile makes it stale, never the list.
      const writes = (await this.kv.get(sessionWritesKey(manager)))
        .versionstamp;
      for await (
        const entry of this.kv.list<StoredSession>({
          prefix: ["sessionIPM", manager, "session"],
        }, { batchSize: LIST_BATCH })
      ) {
        // The value is a fresh object of the list's: it becomes the answer.
        const v = entry.value as SessionAt;
        const ip = entry.key[3] as string;
        v.ip = ip;
        out.push(v);
        seen.set(ip, {
          versionstamp: entry.versionstamp,
          user: v.user,
          opened: v.opened,
          lastUsed: v.lastUsed,
        });
      }
      // The last uses written since each one's login or whole write.
      const packed = await this.#lastUses.readAll(manager);
      for (const v of packed.size > 0 ? out : []) {
        const lastUsed = lastUseIn(packed, v.ip, v.opened);
        if (lastUsed !== undefined && lastUsed > (v.lastUsed ?? 0)) {
          v.lastUsed = lastUsed;
          seen.get(v.ip)!.lastUsed = lastUsed;
        }
      }
      this.#seen.set(manager, seen);
      this.#sessionWrites.set(manager, writes);
      return out;
    });
  }

  getSession(
    manager: string,
    ip: string,
  ): Promise<StoredSession | undefined> {
    return this.#health.run("reading a session", async () => {
      const [entry, pack] = await this.kv.getMany<[StoredSession, unknown]>([
        sessionKey(manager, ip),
        lastUseKey(manager, ip),
      ]);
      const v = entry.value;
      const lastUsed = v ? lastUseIn(pack.value, ip, v.opened) : undefined;
      if (v && lastUsed !== undefined && lastUsed > (v.lastUsed ?? 0)) {
        v.lastUsed = lastUsed;
      }
      this.#saw(manager, ip, v, entry.versionstamp);
      return v ?? undefined;
    });
  }

  saveSession(
    manager: string,
    session: SessionAt,
    options: { deleteIp?: string } = {},
  ): Promise<void> {
    return this.#health.run("saving a session", async () => {
      const old = options.deleteIp;
      const value = stored(session);
      const res = await this.#writeSessions(manager, (op) => {
        if (old !== undefined && old !== session.ip) {
          op.delete(sessionKey(manager, old));
        }
        op.set(sessionKey(manager, session.ip), value);
      });
      if (old !== undefined && old !== session.ip) {
        this.#saw(manager, old, undefined, null);
      }
      // An atomic operation without checks always commits.
      this.#saw(manager, session.ip, value, res.ok ? res.versionstamp : null);
    });
  }

  deleteSession(
    manager: string,
    ip: string,
    options: { only?: SessionIdentity } = {},
  ): Promise<boolean> {
    return this.#health.run("deleting a session", async () => {
      const key = sessionKey(manager, ip);
      const only = options.only;
      if (!only) {
        // Read first only to answer whether there was one.
        const entry = await this.kv.get(key);
        if (entry.versionstamp === null) return false;
        await this.#writeSessions(manager, (op) => op.delete(key));
        this.#saw(manager, ip, undefined, null);
        return true;
      }
      const [entry, pack] = await this.kv.getMany<[StoredSession, unknown]>([
        key,
        lastUseKey(manager, ip),
      ]);
      const v = entry.value;
      if (v?.user !== only.user || v.opened !== only.opened) return false;
      const idle = only.unusedSince;
      if (idle !== undefined) {
        const packed = lastUseIn(pack.value, ip, v.opened) ?? 0;
        if (Math.max(v.lastUsed ?? 0, packed) > idle) return false;
      }
      // An idle one: also unless another gateway packed a last use since.
      const res = await this.#writeSessions(manager, (op) => {
        op.check(entry).delete(key);
        if (idle !== undefined) op.check(pack);
      });
      if (res.ok) this.#saw(manager, ip, undefined, null);
      return res.ok;
    });
  }

  updateSessions(
    manager: string,
    sessions: readonly SessionAt[],
  ): Promise<Map<string, number>> {
    return this.#health.run(
      "writing the sessions' last use",
      () => this.#updateWhole(manager, sessions),
    );
  }

  /**
   * Those stored as this store last saw them (same user, same login time)
   * go to the packs of last uses; the others, and those a pack could not
   * take, are written whole ({@link updateSessions}).
   */
  updateLastUses(
    manager: string,
    sessions: readonly SessionAt[],
  ): Promise<Map<string, number>> {
    return this.#health.run("writing the sessions' last use", async () => {
      const seen = this.#seenOf(manager);
      const packed: LastUseWrite[] = [];
      let whole: SessionAt[] = [];
      for (const s of sessions) {
        const was = seen.get(s.ip);
        if (
          was?.user === s.user && was.opened === s.opened &&
          s.lastUsed !== undefined
        ) packed.push(s);
        else whole.push(s);
      }
      const out = new Map<string, number>();
      if (packed.length > 0) {
        const { written, left } = await this.#lastUses.write(
          manager,
          packed,
          (build) => this.#writeSessions(manager, build),
        );
        for (const [ip, lastUsed] of written) {
          out.set(ip, lastUsed);
          const was = seen.get(ip)!;
          if (lastUsed > (was.lastUsed ?? 0)) was.lastUsed = lastUsed;
        }
        if (left.length > 0) {
          const again = new Set(left);
          whole = whole.concat(sessions.filter((s) => again.has(s.ip)));
        }
      }
      if (whole.length > 0) {
        for (const [ip, lastUsed] of await this.#updateWhole(manager, whole)) {
          out.set(ip, lastUsed);
        }
      }
      return out;
    });
  }

  /** See {@link updateSessions}. */
  async #updateWhole(
    manager: string,
    sessions: readonly SessionAt[],
  ): Promise<Map<string, number>> {
    const written = new Map<string, number>();
    const seen = this.#seenOf(manager);
    // Those stored as this store last saw them: written with a check of
    // that versionstamp, 100 at a time, nothing read first.
    const unsure: SessionAt[] = [];
    let batch: [SessionAt, SeenSession][] = [];
    let bytes = 0;
    const flushBatch = async () => {
      if (batch.length === 0) return;
      await this.pace?.between();
      const lastUses: number[] = [];
      const values: StoredSession[] = [];
      for (const [s, was] of batch) {
        const lastUsed = Math.max(was.lastUsed ?? 0, s.lastUsed ?? 0);
        values.push(stored(s, lastUsed));
        lastUses.push(lastUsed);
      }
      const res = await this.#writeSessions(manager, (op) => {
        for (let i = 0; i < batch.length; i++) {
          const [s, was] = batch[i];
          const key = sessionKey(manager, s.ip);
          op.check({ key, versionstamp: was.versionstamp }).set(
            key,
            values[i],
          );
        }
      });
      if (res.ok) {
        for (let i = 0; i < batch.length; i++) {
          const [s, was] = batch[i];
          was.versionstamp = res.versionstamp;
          was.lastUsed = lastUses[i];
          written.set(s.ip, lastUses[i]);
        }
      } else {
        // One of them changed meanwhile: each is read and compared below.
        for (const [s] of batch) unsure.push(s);
      }
      batch = [];
      bytes = 0;
    };
    for (const s of sessions) {
      const was = seen.get(s.ip);
      if (
        was === undefined || was.user !== s.user || was.opened !== s.opened
      ) {
        unsure.push(s);
        continue;
      }
      const size = sessionBytes(s);
      if (batch.length === CHECKED_BATCH || bytes + size > CHECKED_BYTES) {
        await flushBatch();
      }
      batch.push([s, was]);
      bytes += size;
    }
    await flushBatch();
    for (let start = 0; start < unsure.length; start += SESSION_BATCH) {
      await this.pace?.between();
      const batch = unsure.slice(start, start + SESSION_BATCH);
      const entries = await this.kv.getMany<StoredSession[]>(
        batch.map((s) => sessionKey(manager, s.ip)),
      );
      const writes: [Deno.KvEntryMaybe<StoredSession>, StoredSession][] = [];
      const done: [string, number][] = [];
      for (let i = 0; i < batch.length; i++) {
        const s = batch[i];
        const entry = entries[i];
        const v = entry.value;
        if (v?.user !== s.user || v.opened !== s.opened) continue;
        const lastUsed = Math.max(v.lastUsed ?? 0, s.lastUsed ?? 0);
        writes.push([entry, stored(s, lastUsed)]);
        done.push([s.ip, lastUsed]);
      }
      if (done.length === 0) continue;
      const res = await this.#writeSessions(manager, (op) => {
        for (const [entry, value] of writes) {
          op.check(entry).set(entry.key, value);
        }
      });
      if (!res.ok) continue; // changed meanwhile: the next flush tries again
      for (const [ip, lastUsed] of done) {
        written.set(ip, lastUsed);
        const s = batch.find((b) => b.ip === ip)!;
        this.#saw(manager, ip, stored(s, lastUsed), res.versionstamp);
      }
    }
    return written;
  }

  initLastReset(manager: string, value: number): Promise<number> {
    return this.#health.run("reading the last reset", async () => {
      const key = lastResetKey(manager);
      const entry = await this.kv.get<number>(key);
      if (typeof entry.value === "number") return entry.value;
      await write(() => this.kv.atomic().check(entry).set(key, value).commit());
      // Another gateway sharing the store may have written its own first.
      const again = await this.kv.get<number>(key);
      return typeof again.value === "number" ? again.value : value;
    });
  }

  advanceLastReset(manager: string, value: number): Promise<number> {
    return this.#health.run("writing a reset", async () => {
      const key = lastResetKey(manager);
      for (let attempt = 0; attempt < 10; attempt++) {
        const entry = await this.kv.get<number>(key);
        if (typeof entry.value === "number" && entry.value >= value) {
          return entry.value;
        }
        const res = await write(() =>
          this.kv.atomic().check(entry).set(key, value).commit()
        );
        if (res.ok) return value;
      }
      throw new Error("the last reset keeps changing; try again");
    });
  }

  addConsumption(
    manager: string,
    cycle: number,
    deltas: ReadonlyMap<string, number>,
  ): Promise<void> {
    return this.#health.run(
      "adding consumption",
      () => this.#counters.add(manager, cycle, deltas),
    );
  }

  readConsumption(
    manager: string,
    cycle: number,
    users?: readonly string[],
  ): Promise<Map<string, number>> {
    return this.#health.run(
      "reading consumption",
      () => this.#counters.read(manager, cycle, users),
    );
  }

  countersUnchanged(manager: string, cycle: number): Promise<boolean> {
    return this.#health.run(
      "reading consumption",
      () => this.#counters.unchanged(manager, cycle),
    );
  }

  setConsumption(
    manager: string,
    cycle: number,
    user: string,
    bytes: number,
  ): Promise<void> {
    return this.#health.run(
      "setting consumption",
      () => this.#counters.set(manager, cycle, user, bytes),
    );
  }

  deleteOtherCycles(manager: string, keep: number): Promise<void> {
    return this.#health.run(
      "deleting old cycles",
      () => this.#counters.deleteOtherCycles(manager, keep),
    );
  }

  // ------------------------------------------------------------ grants

  addGrant(
    manager: string,
    cycle: number,
    user: string,
    bytes: number,
  ): Promise<number> {
    return this.#health.run(
      "adding a grant",
      () => this.#counters.addGrant(manager, cycle, user, bytes),
    );
  }

  readGrants(
    manager: string,
    cycle: number,
    users?: readonly string[],
  ): Promise<Map<string, number>> {
    return this.#health.run(
      "reading grants",
      () => this.#counters.readGrants(manager, cycle, users),
    );
  }

  // ----------------------------------------------------------- history

  #history(): Promise<KvUsageHistory> {
    return this.#usage ??= import("./_kv_usage.ts").then(
      ({ KvUsageHistory }) => new KvUsageHistory(this.kv, () => this.pace),
    );
  }

  addUsage(
    manager: string,
    deltas: ReadonlyMap<string, number>,
    at: UsageBuckets,
  ): Promise<void> {
    return this.#health.run(
      "adding to the usage history",
      async () => (await this.#history()).add(manager, deltas, at),
    );
  }

  readUsage(manager: string, range: UsageRange): Promise<UsageEntry[]> {
    return this.#health.run(
      "reading the usage history",
      async () => (await this.#history()).read(manager, range),
    );
  }

  // ------------------------------------------------------------ logins

  loginFailures(key: string): Promise<LoginFailures | undefined> {
    return this.#health.run("reading failed logins", async () => {
      const entry = await this.kv.get<StoredFailures>(["loginFailures", key]);
      const v = entry.value;
      // Deno KV deletes expired keys some time later, not at once.
      if (!v || v.until <= Date.now()) return undefined;
      return { count: v.count, last: v.last };
    });
  }

  recordLoginFailure(
    key: string,
    options: { now: number; forgetMs: number },
  ): Promise<LoginFailures> {
    return this.#health.run("counting a failed login", async () => {
      const k: Deno.KvKey = ["loginFailures", key];
      for (let attempt = 0; attempt < 10; attempt++) {
        const entry = await this.kv.get<StoredFailures>(k);
        const old = entry.value && entry.value.until > Date.now()
          ? entry.value.count
          : 0;
        const next: StoredFailures = {
          count: old + 1,
          last: options.now,
          until: Date.now() + options.forgetMs,
        };
        const res = await write(() =>
          this.kv.atomic().check(entry).set(k, next, {
            expireIn: options.forgetMs,
          }).commit()
        );
        if (res.ok) return { count: next.count, last: next.last };
      }
      throw new Error("the failed logins of one key keep changing");
    });
  }

  clearLoginFailures(key: string): Promise<void> {
    return this.#health.run("forgetting failed logins", async () => {
      await write(() => this.kv.delete(["loginFailures", key]));
    });
  }

  publish(_change: StateChange): Promise<void> {
    return Promise.resolve();
  }

  subscribe(_listener: (change: StateChange) => void): () => void {
    return () => {};
  }

  close(): Promise<void> {
    this.kv.close();
    return Promise.resolve();
  }
}
