/**
 * The state-store seam: what pmproxy keeps beyond one process's memory, so
 * that it survives a restart and so that several gateways sharing one
 * store agree on who is logged in and how much each user has used.
 *
 * Decisions never wait on the store: managers keep what they need in
 * memory, write it here in batches (every `persistInterval`, on shutdown,
 * and sooner for users near their quota) and read it back on a schedule
 * and when another gateway announces a change ({@link StateChange}).
 *
 * Two backends implement it:
 *
 * - `kv_store.ts`: Deno KV, a file in the configuration directory (the
 *   default; one machine, one or more processes on that file), or a KV
 *   Connect URL (one writer);
 * - `redis_store.ts`: Redis (or Valkey), for several gateways on several
 *   machines, with changes announced over pub/sub.
 *
 * Every method may throw when the store cannot be reached; callers keep
 * what they could not write and try again later ({@link StoreWriteError}
 * says what was not written).
 *
 * @module
 */
import type { UserRecord } from "../types.ts";
import type { WritePace } from "./pace.ts";

/** A session as stored (its manager and IP are its key). */
export interface StoredSession {
  user: string;
  /** The user's record in the database that authenticated them. */
  record: UserRecord;
  /** The user's groups in every configured user database, by its name. */
  groups: Record<string, string[]>;
  /** When it was opened (ms since the epoch). */
  opened: number;
  /** When it was last used (ms); absent in sessions of old versions. */
  lastUsed?: number;
}

/** Which stored session a conditional delete may remove. */
export interface SessionIdentity {
  user: string;
  opened: number;
  /** Only when the stored last use is at or before this (ms). */
  unusedSince?: number;
}

/**
 * What is stored of `s` (without its IP), with `lastUsed` as its last use
 * (absent: none). Both backends store sessions so.
 */
export function storedSession(
  s: SessionAt,
  lastUsed = s.lastUsed,
): StoredSession {
  const out: StoredSession = {
    user: s.user,
    record: s.record,
    groups: s.groups,
    opened: s.opened,
  };
  if (lastUsed !== undefined) out.lastUsed = lastUsed;
  return out;
}

/** A stored session with the IP it is kept under. */
export interface SessionAt extends StoredSession {
  ip: string;
}

/**
 * A change one gateway made that the others sharing the store should see
 * at once rather than at their next reconcile.
 */
export type StateChange =
  /** A session was opened or closed at that IP (login, logout, expiry). */
  | { kind: "session"; manager: string; ip: string }
  /** An administrator set a user's consumption (a reset). */
  | { kind: "consumption"; manager: string; user: string }
  /** An administrator granted a user more quota for this cycle. */
  | { kind: "grant"; manager: string; user: string }
  /**
   * Changes may have been missed (the store's connection was lost and is
   * back): write what is pending and read everything again.
   */
  | { kind: "resync" };

/** Failed logins counted under one key (an address or a user name). */
export interface LoginFailures {
  count: number;
  /** When the last one was (ms since the epoch). */
  last: number;
}

/** How the store is doing, for health checks and metrics. */
export interface StoreStatus {
  ok: boolean;
  /** What went wrong last, while not ok. */
  problem?: string;
}

/** What a store holds beside counters, for moving it to another store. */
export interface StoreInventory {
  /** The signing key, when one was made. */
  signingKey?: Uint8Array;
  /** The `sessionIPM`s that have stored sessions. */
  sessionManagers: string[];
  /** The `dwnConsR`s that have a stored last reset, and that last reset. */
  lastResets: Map<string, number>;
}

/**
 * The grains of the usage history: bytes per user per hour, rolled up per
 * day (months are summed from days when read).
 */
export type UsageGrain = "hour" | "day";

/**
 * Where one write of consumption deltas goes in the usage history: the
 * buckets of the hour and of the day they are attributed to, and how long
 * each kind of bucket is kept.
 */
export interface UsageBuckets {
  /** The start of the hour (ms since the epoch). */
  hour: number;
  /** The start of the day (midnight in the quota manager's zone, ms). */
  day: number;
  /**
   * How long an hour's bucket is kept after its start (ms). 0: hours are
   * not written.
   */
  keepHourMs: number;
  /** How long a day's bucket is kept after its start (ms). 0: not written. */
  keepDayMs: number;
}

/**
 * How long the usage history keeps its buckets (`[state] historyHours`,
 * `historyDays` of server.toml): hourly buckets for `hours` hours, daily
 * ones for `days` days. 0 keeps none of that grain.
 */
export interface HistoryRetention {
  hours: number;
  days: number;
}

/** The retention when server.toml says nothing: 48 hours, 400 days. */
export const DEFAULT_HISTORY_RETENTION: Readonly<HistoryRetention> = Object
  .freeze({ hours: 48, days: 400 });

/** What {@link StateStore.readUsage} reads. */
export interface UsageRange {
  grain: UsageGrain;
  /** Buckets that start at or after this (ms since the epoch)... */
  from: number;
  /** ...and before this (ms). */
  to: number;
  /** Only this user's buckets (default: every user's). */
  user?: string;
}

/** One user's bytes in one bucket of the usage history. */
export interface UsageEntry {
  /** The bucket's start (ms since the epoch). */
  start: number;
  user: string;
  bytes: number;
}

/** Orders usage entries by start, then user (as `readUsage` answers them). */
export function compareUsage(a: UsageEntry, b: UsageEntry): number {
  if (a.start !== b.start) return a.start - b.start;
  return a.user < b.user ? -1 : a.user > b.user ? 1 : 0;
}

/**
 * A write that failed part-way: `unwritten` holds what was not written
 * (the rest was), so the caller keeps exactly that for the next attempt.
 */
export class StoreWriteError<T> extends Error {
  constructor(message: string, readonly unwritten: T, options?: ErrorOptions) {
    super(message, options);
    this.name = "StoreWriteError";
  }
}

/** The state store; see the module documentation. */
export interface StateStore {
  /** What and where it is, for messages (`Deno KV file /etc/.../state.kv`). */
  readonly description: string;
  /**
   * True when changes made by other gateways are announced
   * ({@link subscribe}); false when they are seen only by reading again.
   */
  readonly announcesChanges: boolean;
  /**
   * The pace of the periodic flush, set by the gateway: a store awaits its
   * `between()` before each batch of a write of many users (managers/state/pace.ts).
   */
  pace?: WritePace;

  /** How the last operations went (never throws). */
  status(): StoreStatus;

  // ----------------------------------------------------------- secrets

  /**
   * The installation's 32-byte key for signing session secrets, made and
   * stored on first use; every gateway sharing the store gets the same.
   * With `options.initial`, that key is the one stored when there is none
   * yet (a migration); the answer is the stored key either way.
   */
  signingKey(options?: { initial?: Uint8Array }): Promise<Uint8Array>;

  /**
   * What the store holds beside the counters (read only: no key is made),
   * for `pmproxy state export` and for telling whether a store is empty.
   */
  inventory(): Promise<StoreInventory>;

  // ---------------------------------------------------------- sessions

  /** Every stored session of a `sessionIPM`. */
  listSessions(manager: string): Promise<SessionAt[]>;

  /**
   * True when this store object can tell that nobody else wrote a session
   * of `manager` since it last listed them: the sessions it listed then,
   * with its own writes since, are the stored ones, so the caller need not
   * list them again. False when it cannot tell (or somebody did).
   */
  sessionsUnchanged(manager: string): Promise<boolean>;

  /** The stored session at that IP, if any. */
  getSession(manager: string, ip: string): Promise<StoredSession | undefined>;

  /**
   * Stores a session just opened at `session.ip`, and in the same atomic
   * write deletes the stored session at `options.deleteIp` (the same user's
   * old address) when given.
   */
  saveSession(
    manager: string,
    session: SessionAt,
    options?: { deleteIp?: string },
  ): Promise<void>;

  /**
   * Deletes the stored session at `ip`; with `only`, only when it is that
   * session (same user and login time), so a later login at the same IP,
   * here or through another gateway, stays; with `only.unusedSince`, only
   * when its stored last use is not later (an idle session another gateway
   * used meanwhile stays). True when one was deleted (false when there
   * was none, or another session).
   */
  deleteSession(
    manager: string,
    ip: string,
    options?: { only?: SessionIdentity },
  ): Promise<boolean>;

  /**
   * Writes sessions that changed (last use, groups), each only over its
   * own stored copy (same user and login time) and keeping the later last
   * use when another gateway wrote one meanwhile. Answers, by IP, the last
   * use now stored for those written; one absent was not written (gone,
   * replaced, or changed meanwhile: try again at the next flush).
   */
  updateSessions(
    manager: string,
    sessions: readonly SessionAt[],
  ): Promise<Map<string, number>>;

  /**
   * As {@link updateSessions}, for sessions of which only the last use
   * moved since this store last read or wrote them: a store may write just
   * that (Deno KV packs them, a value per 40 sessions or so, not each
   * session whole). Answers as updateSessions does, but may answer one as
   * written that another gateway had ended or replaced meanwhile: a last
   * use so written is never read for any other session.
   */
  updateLastUses(
    manager: string,
    sessions: readonly SessionAt[],
  ): Promise<Map<string, number>>;

  // ------------------------------------------------------------ quotas

  /**
   * The last reset of a quota manager's cycle: the stored one, or `value`
   * stored now when there is none yet (the first gateway to start sets it
   * for the site).
   */
  initLastReset(manager: string, value: number): Promise<number>;

  /**
   * Moves the last reset forward to `value` unless the stored one is
   * already at or after it (another gateway rolled the cycle over first).
   * Answers the stored last reset afterwards. Atomic: a cycle rolls over
   * once for the whole site.
   */
  advanceLastReset(manager: string, value: number): Promise<number>;

  /**
   * Adds consumption deltas (bytes by user) to the counters of the cycle
   * that began at `cycle`, with atomic increments. On failure throws a
   * {@link StoreWriteError} whose `unwritten` holds the deltas not added.
   */
  addConsumption(
    manager: string,
    cycle: number,
    deltas: ReadonlyMap<string, number>,
  ): Promise<void>;

  /**
   * True when this store object can tell that nobody else wrote a counter
   * of `manager` since it last read that cycle's counters: those counters,
   * with its own writes since, are the stored ones, so the caller, which
   * knows both, need not read them back. False when it cannot tell (or
   * somebody did).
   */
  countersUnchanged(manager: string, cycle: number): Promise<boolean>;

  /**
   * The counters of that cycle by user (every user, or only `users`).
   * Users without a counter are absent.
   */
  readConsumption(
    manager: string,
    cycle: number,
    users?: readonly string[],
  ): Promise<Map<string, number>>;

  /** Sets one user's counter of that cycle (an administrator's `set`). */
  setConsumption(
    manager: string,
    cycle: number,
    user: string,
    bytes: number,
  ): Promise<void>;

  /**
   * Deletes the counters and the grants of every cycle of that manager
   * but `keep`.
   */
  deleteOtherCycles(manager: string, keep: number): Promise<void>;

  // ------------------------------------------------------------ grants

  /**
   * Adds `bytes` to a user's grants (top-ups of their quota) of the cycle
   * that began at `cycle`, with an atomic increment, so grants made through
   * several gateways at once all count. Answers the user's grants of that
   * cycle afterwards. A new cycle has no grants: they end at the reset.
   */
  addGrant(
    manager: string,
    cycle: number,
    user: string,
    bytes: number,
  ): Promise<number>;

  /**
   * The grants of that cycle by user (every user, or only `users`). Users
   * without a grant are absent.
   */
  readGrants(
    manager: string,
    cycle: number,
    users?: readonly string[],
  ): Promise<Map<string, number>>;
  // ------------------------------------------------------------ history

  /**
   * Adds consumption deltas (bytes by user) to the usage history: to each
   * user's bucket of `at.hour` and of `at.day`, with atomic increments, so
   * that gateways sharing the store add up. Buckets older than their
   * retention are forgotten (Redis expires them; Deno KV deletes them when
   * a write reaches a new bucket). On failure throws a
   * {@link StoreWriteError} whose `unwritten` holds the deltas not added.
   */
  addUsage(
    manager: string,
    deltas: ReadonlyMap<string, number>,
    at: UsageBuckets,
  ): Promise<void>;

  /**
   * The usage history's buckets of one grain that start in
   * `[range.from, range.to)`, of every user or of `range.user`, ordered by
   * start, then user. A bucket past its retention may still be answered
   * (expiry is lazy): callers that must not show it start `from` later.
   */
  readUsage(manager: string, range: UsageRange): Promise<UsageEntry[]>;

  // ------------------------------------------------------------ logins

  /** The failed logins counted under `key`, unless forgotten. */
  loginFailures(key: string): Promise<LoginFailures | undefined>;

  /**
   * Counts one more failed login under `key` at `now` (atomic, so gateways
   * sharing the store count together); the count is forgotten `forgetMs`
   * after its last failure. Answers the count now.
   */
  recordLoginFailure(
    key: string,
    options: { now: number; forgetMs: number },
  ): Promise<LoginFailures>;

  /** Forgets the failed logins under `key` (a correct login). */
  clearLoginFailures(key: string): Promise<void>;

  // ----------------------------------------------------------- changes

  /** Tells the other gateways of a change (nothing when not announced). */
  publish(change: StateChange): Promise<void>;

  /**
   * Calls `listener` for each change another gateway announces (never for
   * this store object's own), and with `{ kind: "resync" }` when changes
   * may have been missed (after a reconnect); answers the function that
   * stops listening.
   */
  subscribe(listener: (change: StateChange) => void): () => void;

  /** Closes the connection or file. */
  close(): Promise<void>;
}
