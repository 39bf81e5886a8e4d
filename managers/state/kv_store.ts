/**
 * The state store on Deno KV: a file in the configuration directory (the
 * default; several processes on one machine may share the file), or a KV
 * Connect URL (a denokv server: one writer, so not a way to scale out).
 *
 * Keys (the ones pmproxy always wrote, so an upgrade reads its old state):
 *
 * - `["sessionIPM", "jwtKey"]`: the signing key (32 bytes);
 * - `["sessionIPM", manager, "session" | "lastUsePacks" | "writes", ...]`:
 *   the sessions, their last uses in packs of IPs, and the count of their
 *   writes; see _kv_sessions.ts;
 * - `["dwnConsR", manager, "lastReset"]`: the last reset (ms);
 * - `["dwnConsR", manager, "consPacks" | "cons" | "grant", lastReset, ...]`:
 *   the counters of a cycle, in packs of users (and a `Deno.KvU64` per user
 *   where an older version wrote one or a pack is full), and the grants;
 *   see _kv_counters.ts. A new cycle uses new keys, so a reset needs no
 *   rewrite of counters others add to.
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
 * - A session's last use alone goes to 256 packs of IPs: a flush of 10,000
 *   writes 256 values, not 10,000 sessions (see _kv_sessions.ts).
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
import { LIST_BATCH, write } from "./_kv_write.ts";
import type { KvUsageHistory } from "./_kv_usage.ts";
import { KvCounters } from "./_kv_counters.ts";
import { KvSessions } from "./_kv_sessions.ts";

/** The key of the installation's secret-signing key. */
export const JWT_KEY: Deno.KvKey = ["sessionIPM", "jwtKey"];

/** Failed logins as kept: with when they are forgotten (ms). */
interface StoredFailures extends LoginFailures {
  until: number;
}

function lastResetKey(manager: string): Deno.KvKey {
  return ["dwnConsR", manager, "lastReset"];
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

  /** The sessions (see _kv_sessions.ts). */
  readonly #sessions: KvSessions;
  /** The quota managers' counters and grants (see _kv_counters.ts). */
  readonly #counters: KvCounters;

  constructor(readonly kv: Deno.Kv, readonly description: string) {
    this.#health = new StoreHealth(description);
    this.#counters = new KvCounters(kv, () => this.pace);
    this.#sessions = new KvSessions(kv, () => this.pace);
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

  sessionsUnchanged(manager: string): Promise<boolean> {
    return this.#health.run(
      "reading the sessions",
      () => this.#sessions.unchanged(manager),
    );
  }

  listSessions(manager: string): Promise<SessionAt[]> {
    return this.#health.run(
      "reading the sessions",
      () => this.#sessions.list(manager),
    );
  }

  getSession(
    manager: string,
    ip: string,
  ): Promise<StoredSession | undefined> {
    return this.#health.run(
      "reading a session",
      () => this.#sessions.get(manager, ip),
    );
  }

  saveSession(
    manager: string,
    session: SessionAt,
    options: { deleteIp?: string } = {},
  ): Promise<void> {
    return this.#health.run(
      "saving a session",
      () => this.#sessions.save(manager, session, options),
    );
  }

  deleteSession(
    manager: string,
    ip: string,
    options: { only?: SessionIdentity } = {},
  ): Promise<boolean> {
    return this.#health.run(
      "deleting a session",
      () => this.#sessions.delete(manager, ip, options),
    );
  }

  updateSessions(
    manager: string,
    sessions: readonly SessionAt[],
  ): Promise<Map<string, number>> {
    return this.#health.run(
      "writing the sessions' last use",
      () => this.#sessions.update(manager, sessions),
    );
  }

  updateLastUses(
    manager: string,
    sessions: readonly SessionAt[],
  ): Promise<Map<string, number>> {
    return this.#health.run(
      "writing the sessions' last use",
      () => this.#sessions.updateLastUses(manager, sessions),
    );
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
