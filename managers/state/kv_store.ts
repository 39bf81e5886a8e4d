/**
 * The state store on Deno KV: a file in the configuration directory (the
 * default; several processes on one machine may share the file), or a KV
 * Connect URL (a denokv server: one writer, so not a way to scale out).
 *
 * Keys (the ones pmproxy always wrote, so an upgrade reads its old state):
 *
 * - `["sessionIPM", "jwtKey"]`: the signing key (32 bytes);
 * - `["sessionIPM", manager, "session", ip]`: a {@link StoredSession};
 * - `["dwnConsR", manager, "lastReset"]`: the last reset (ms);
 * - `["dwnConsR", manager, "cons", lastReset, user]`: a `Deno.KvU64` that
 *   every gateway adds its deltas to with atomic `sum`. A new cycle uses
 *   new keys, so a reset needs no rewrite of counters others add to.
 * - `["dwnConsR", manager, "grant", lastReset, user]`: a `Deno.KvU64` of
 *   the bytes granted to that user in that cycle (atomic `sum`), gone with
 *   the cycle's counters;
 * - `["loginFailures", key]`: {@link LoginFailures}, set to expire.
 * - `["usage", manager, grain, start, user]` and
 *   `["usage", manager, grain + "ByUser", user, start]` (grain `"hour"` or
 *   `"day"`): the usage history, each bucket twice as a `Deno.KvU64` that
 *   deltas are added to with `sum`: ordered by time (every user's buckets
 *   of a period, and the ones to forget, are one range) and by user (one
 *   user's history is one range). Not set to expire: a `sum` drops the
 *   expiry a key was set with (measured on Deno 2.9.6), so the buckets
 *   past their retention are deleted by the first write of a new bucket,
 *   and readers skip those not deleted yet.
 *
 * Deno KV tells no other process of a change, so changes are not announced
 * ({@link StateStore.announcesChanges} is false): gateways sharing a file
 * see each other's logins and consumption when they read the store again,
 * at every flush.
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
  UsageGrain,
  UsageRange,
} from "./store.ts";
import { compareUsage, StoreWriteError } from "./store.ts";
import { StoreHealth } from "./_health.ts";

/** At most this many mutations per atomic operation (Deno KV allows 1000). */
const BATCH = 1000;
/** At most this many bytes of keys per atomic operation (Deno KV allows 81920). */
const BATCH_KEY_BYTES = 80_000;
/** Stored sessions read and written at a time. */
const SESSION_BATCH = 10;

/** The key of the installation's secret-signing key. */
export const JWT_KEY: Deno.KvKey = ["sessionIPM", "jwtKey"];

const utf8 = new TextEncoder();

/** About the size of a key as Deno KV encodes it (a little more). */
function keyBytes(key: Deno.KvKey): number {
  let n = 0;
  for (const part of key) {
    n += typeof part === "string" ? utf8.encode(part).length + 2 : 10;
  }
  return n;
}

/**
 * Splits keys into runs `[start, end)` that one atomic operation accepts:
 * at most {@link BATCH} of them, and at most {@link BATCH_KEY_BYTES} bytes.
 */
export function kvBatches(keys: readonly Deno.KvKey[]): [number, number][] {
  const out: [number, number][] = [];
  let start = 0;
  let bytes = 0;
  for (let i = 0; i < keys.length; i++) {
    const size = keyBytes(keys[i]);
    if (i > start && (i - start === BATCH || bytes + size > BATCH_KEY_BYTES)) {
      out.push([start, i]);
      start = i;
      bytes = 0;
    }
    bytes += size;
  }
  if (start < keys.length) out.push([start, keys.length]);
  return out;
}

/** Failed logins as kept: with when they are forgotten (ms). */
interface StoredFailures extends LoginFailures {
  until: number;
}

/** Tries of a write that SQLite answers with "database is locked". */
const LOCKED_TRIES = 20;

/**
 * Runs one write, again when SQLite answers "database is locked": another
 * process (or another Deno.Kv on the same file) held the write lock longer
 * than SQLite waits. A locked write did nothing, so trying it again after
 * a short random pause is safe, and gateways sharing the file do not
 * fail a flush or a login for it.
 */
async function write<T>(op: () => Promise<T>): Promise<T> {
  for (let attempt = 1;; attempt++) {
    try {
      return await op();
    } catch (e) {
      const locked = e instanceof Error && /database is locked/.test(e.message);
      if (!locked || attempt >= LOCKED_TRIES) throw e;
      await new Promise((r) => setTimeout(r, 2 + Math.random() * 10 * attempt));
    }
  }
}

function sessionKey(manager: string, ip: string): Deno.KvKey {
  return ["sessionIPM", manager, "session", ip];
}

function lastResetKey(manager: string): Deno.KvKey {
  return ["dwnConsR", manager, "lastReset"];
}

function consKey(manager: string, cycle: number, user: string): Deno.KvKey {
  return ["dwnConsR", manager, "cons", cycle, user];
}

function grantKey(manager: string, cycle: number, user: string): Deno.KvKey {
  return ["dwnConsR", manager, "grant", cycle, user];
}

function usageKey(
  manager: string,
  grain: UsageGrain,
  start: number,
  user: string,
): Deno.KvKey {
  return ["usage", manager, grain, start, user];
}

function usageByUserKey(
  manager: string,
  grain: UsageGrain,
  user: string,
  start: number,
): Deno.KvKey {
  return ["usage", manager, `${grain}ByUser`, user, start];
}

/** Users' usage deltas written in one atomic operation (4 sums each). */
const USAGE_BATCH = 200;

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
  readonly #health: StoreHealth;
  /**
   * The bucket start up to which old usage buckets were deleted, by
   * manager and grain: the deletion runs once per new bucket.
   */
  readonly #usagePruned = new Map<string, number>();

  constructor(readonly kv: Deno.Kv, readonly description: string) {
    this.#health = new StoreHealth(description);
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
      for await (const entry of this.kv.list({ prefix: ["sessionIPM"] })) {
        const k = entry.key;
        if (k.length === 4 && k[2] === "session" && typeof k[1] === "string") {
          sessionManagers.add(k[1]);
        }
      }
      const lastResets = new Map<string, number>();
      for await (const entry of this.kv.list({ prefix: ["dwnConsR"] })) {
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

  listSessions(manager: string): Promise<SessionAt[]> {
    return this.#health.run("reading the sessions", async () => {
      const out: SessionAt[] = [];
      for await (
        const entry of this.kv.list<StoredSession>({
          prefix: ["sessionIPM", manager, "session"],
        })
      ) {
        out.push({ ...entry.value, ip: entry.key[3] as string });
      }
      return out;
    });
  }

  getSession(
    manager: string,
    ip: string,
  ): Promise<StoredSession | undefined> {
    return this.#health.run("reading a session", async () => {
      const entry = await this.kv.get<StoredSession>(sessionKey(manager, ip));
      return entry.value ?? undefined;
    });
  }

  saveSession(
    manager: string,
    session: SessionAt,
    options: { deleteIp?: string } = {},
  ): Promise<void> {
    return this.#health.run("saving a session", async () => {
      const op = this.kv.atomic();
      const old = options.deleteIp;
      if (old !== undefined && old !== session.ip) {
        op.delete(sessionKey(manager, old));
      }
      op.set(sessionKey(manager, session.ip), stored(session));
      await write(() => op.commit());
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
        await write(() => this.kv.delete(key));
        return true;
      }
      const entry = await this.kv.get<StoredSession>(key);
      const v = entry.value;
      if (v?.user !== only.user || v.opened !== only.opened) return false;
      if (
        only.unusedSince !== undefined &&
        (v.lastUsed ?? 0) > only.unusedSince
      ) return false;
      const res = await write(() =>
        this.kv.atomic().check(entry).delete(key).commit()
      );
      return res.ok;
    });
  }

  updateSessions(
    manager: string,
    sessions: readonly SessionAt[],
  ): Promise<Map<string, number>> {
    return this.#health.run("writing the sessions' last use", async () => {
      const written = new Map<string, number>();
      for (let start = 0; start < sessions.length; start += SESSION_BATCH) {
        const batch = sessions.slice(start, start + SESSION_BATCH);
        const entries = await this.kv.getMany<StoredSession[]>(
          batch.map((s) => sessionKey(manager, s.ip)),
        );
        const op = this.kv.atomic();
        const done: [string, number][] = [];
        for (let i = 0; i < batch.length; i++) {
          const s = batch[i];
          const entry = entries[i];
          const v = entry.value;
          if (v?.user !== s.user || v.opened !== s.opened) continue;
          const lastUsed = Math.max(v.lastUsed ?? 0, s.lastUsed ?? 0);
          op.check(entry).set(entry.key, stored(s, lastUsed));
          done.push([s.ip, lastUsed]);
        }
        if (done.length === 0) continue;
        const res = await write(() => op.commit());
        if (!res.ok) continue; // changed meanwhile: the next flush tries again
        for (const [ip, lastUsed] of done) written.set(ip, lastUsed);
      }
      return written;
    });
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
    return this.#health.run("adding consumption", async () => {
      const users = [...deltas.keys()];
      const keys = users.map((u) => consKey(manager, cycle, u));
      for (const [start, end] of kvBatches(keys)) {
        const op = this.kv.atomic();
        for (let i = start; i < end; i++) {
          op.sum(keys[i], BigInt(deltas.get(users[i])!));
        }
        try {
          await write(() => op.commit());
        } catch (e) {
          const unwritten = new Map<string, number>();
          for (const u of users.slice(start)) unwritten.set(u, deltas.get(u)!);
          throw new StoreWriteError(
            `adding consumption failed: ${e instanceof Error ? e.message : e}`,
            unwritten,
            { cause: e },
          );
        }
      }
    });
  }

  readConsumption(
    manager: string,
    cycle: number,
    users?: readonly string[],
  ): Promise<Map<string, number>> {
    return this.#health.run(
      "reading consumption",
      () => this.#readCounters(["dwnConsR", manager, "cons", cycle], users),
    );
  }

  setConsumption(
    manager: string,
    cycle: number,
    user: string,
    bytes: number,
  ): Promise<void> {
    return this.#health.run("setting consumption", async () => {
      await write(() =>
        this.kv.set(
          consKey(manager, cycle, user),
          new Deno.KvU64(BigInt(bytes)),
        )
      );
    });
  }

  deleteOtherCycles(manager: string, keep: number): Promise<void> {
    return this.#health.run("deleting old cycles", async () => {
      const old: Deno.KvKey[] = [];
      for await (
        const entry of this.kv.list({ prefix: ["dwnConsR", manager, "cons"] })
      ) {
        if (entry.key[3] !== keep) old.push(entry.key);
      }
      for await (
        const entry of this.kv.list({ prefix: ["dwnConsR", manager, "grant"] })
      ) {
        if (entry.key[3] !== keep) old.push(entry.key);
      }
      for (const [start, end] of kvBatches(old)) {
        const op = this.kv.atomic();
        for (let i = start; i < end; i++) op.delete(old[i]);
        await write(() => op.commit());
      }
    });
  }

  // ------------------------------------------------------------ grants

  addGrant(
    manager: string,
    cycle: number,
    user: string,
    bytes: number,
  ): Promise<number> {
    return this.#health.run("adding a grant", async () => {
      const key = grantKey(manager, cycle, user);
      await write(() => this.kv.atomic().sum(key, BigInt(bytes)).commit());
      const entry = await this.kv.get<Deno.KvU64>(key);
      return entry.value ? Number(entry.value.value) : bytes;
    });
  }

  readGrants(
    manager: string,
    cycle: number,
    users?: readonly string[],
  ): Promise<Map<string, number>> {
    return this.#health.run(
      "reading grants",
      () => this.#readCounters(["dwnConsR", manager, "grant", cycle], users),
    );
  }

  // ----------------------------------------------------------- history

  addUsage(
    manager: string,
    deltas: ReadonlyMap<string, number>,
    at: UsageBuckets,
  ): Promise<void> {
    return this.#health.run("adding to the usage history", async () => {
      const grains: [UsageGrain, number][] = [];
      if (at.keepHourMs > 0) grains.push(["hour", at.hour]);
      if (at.keepDayMs > 0) grains.push(["day", at.day]);
      if (grains.length === 0) return;
      const users = [...deltas.keys()];
      for (let start = 0; start < users.length; start += USAGE_BATCH) {
        const op = this.kv.atomic();
        for (const user of users.slice(start, start + USAGE_BATCH)) {
          const bytes = BigInt(deltas.get(user)!);
          for (const [grain, bucket] of grains) {
            op.sum(usageKey(manager, grain, bucket, user), bytes);
            op.sum(usageByUserKey(manager, grain, user, bucket), bytes);
          }
        }
        try {
          await write(() => op.commit());
        } catch (e) {
          const unwritten = new Map<string, number>();
          for (const u of users.slice(start)) unwritten.set(u, deltas.get(u)!);
          throw new StoreWriteError(
            `adding to the usage history failed: ${
              e instanceof Error ? e.message : e
            }`,
            unwritten,
            { cause: e },
          );
        }
      }
      await this.#pruneUsage(manager, "hour", at.hour, at.keepHourMs);
      await this.#pruneUsage(manager, "day", at.day, at.keepDayMs);
    });
  }

  /**
   * Deletes the buckets of that grain that start `keepMs` or more before
   * `current`, once per new `current` (another process on the file may
   * have deleted them already: deleting again is harmless).
   */
  async #pruneUsage(
    manager: string,
    grain: UsageGrain,
    current: number,
    keepMs: number,
  ): Promise<void> {
    if (keepMs <= 0) return;
    const mark = `${manager}\u0000${grain}`;
    if (this.#usagePruned.get(mark) === current) return;
    const old: Deno.KvKey[] = [];
    for await (
      const entry of this.kv.list({
        start: ["usage", manager, grain],
        end: ["usage", manager, grain, current - keepMs + 1],
      })
    ) {
      const [, , , start, user] = entry.key as [
        string,
        string,
        string,
        number,
        string,
      ];
      old.push(entry.key, usageByUserKey(manager, grain, user, start));
    }
    for (const [start, end] of kvBatches(old)) {
      const op = this.kv.atomic();
      for (let i = start; i < end; i++) op.delete(old[i]);
      await write(() => op.commit());
    }
    this.#usagePruned.set(mark, current);
  }

  readUsage(manager: string, range: UsageRange): Promise<UsageEntry[]> {
    return this.#health.run("reading the usage history", async () => {
      const out: UsageEntry[] = [];
      if (range.to <= range.from) return out;
      const { grain, user } = range;
      if (user !== undefined) {
        for await (
          const entry of this.kv.list<Deno.KvU64>({
            start: usageByUserKey(manager, grain, user, range.from),
            end: usageByUserKey(manager, grain, user, range.to),
          })
        ) {
          const start = entry.key[4] as number;
          out.push({ start, user, bytes: Number(entry.value.value) });
        }
        return out;
      }
      for await (
        const entry of this.kv.list<Deno.KvU64>({
          start: ["usage", manager, grain, range.from],
          end: ["usage", manager, grain, range.to],
        })
      ) {
        out.push({
          start: entry.key[3] as number,
          user: entry.key[4] as string,
          bytes: Number(entry.value.value),
        });
      }
      return out.sort(compareUsage);
    });
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

  /**
   * The `Deno.KvU64` counters under `prefix` (a manager's counters of one
   * cycle), by their last key part, the user: all of them, or `users`.
   */
  async #readCounters(
    prefix: Deno.KvKey,
    users?: readonly string[],
  ): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    if (users) {
      for (let start = 0; start < users.length; start += SESSION_BATCH) {
        const part = users.slice(start, start + SESSION_BATCH);
        const entries = await this.kv.getMany<Deno.KvU64[]>(
          part.map((u) => [...prefix, u]),
        );
        for (let i = 0; i < part.length; i++) {
          const v = entries[i].value;
          if (v) out.set(part[i], Number(v.value));
        }
      }
      return out;
    }
    for await (const entry of this.kv.list<Deno.KvU64>({ prefix })) {
      out.set(entry.key[prefix.length] as string, Number(entry.value.value));
    }
    return out;
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
