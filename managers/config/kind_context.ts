/**
 * What a kind's factory gets besides its table: the {@link KindContext}
 * (errors at a key with file and line, durations and sizes, user databases
 * by name, the clock, and hooks to run at start, on flush and on close),
 * and the shapes of a kind in the registry (`kinds.ts`). Every factory,
 * whatever its folder, has the one shape `xxxFromTable(table, ctx)` and
 * imports this file only as types: the registry imports the factories,
 * never the other way round.
 *
 * @module
 */
import type { Manager, UserDb } from "../types.ts";
import type { Fail, Table } from "./table_fields.ts";
import type { HistoryRetention, StateStore } from "../state/store.ts";

export type { Fail, Table };

/** What a factory may use while building one manager or user database. */
export interface KindContext {
  /** The configuration file (for messages). */
  readonly file: string;
  /** The configuration key of this kind (`dwnConsR`). */
  readonly kind: string;
  /** The `name` of the table being built. */
  readonly name: string;
  /**
   * Throws a ConfigError at `key` of this table (a dotted path inside it,
   * such as `"resetCycle"` or `"groupQuota.group0"`), with the file and the
   * line of that key.
   */
  readonly fail: Fail;
  /** Adds a warning at `key` of this table (shown at start, never fatal). */
  warn(key: string, message: string): void;
  /**
   * The duration at `key` in milliseconds (`"24h"`, `"1h30m"`); fails with
   * the key's line when it is not one. Undefined when absent and no
   * `fallback` is given.
   */
  duration(key: string, fallback?: string): number | undefined;
  /** A size in bytes (`"1 GB"`, base 1024) of `value`, reported at `key`. */
  size(key: string, value: unknown): number;
  /** The user database of that name; fails at `key` when there is none. */
  userDb(key: string, name: string): UserDb;
  /** The names of the configured user databases. */
  readonly userDbNames: string[];
  /** The time now (tests inject a clock). */
  readonly clock: () => Date;
  /** How often accounting is written to the store (ms). */
  readonly persistIntervalMs: number;
  /**
   * How often a quota's users near their quota are written to and read
   * back from the store (ms; 0: only with the flush), so gateways sharing
   * a store stop a user soon after their total reaches the quota.
   */
  readonly syncIntervalMs: number;
  /** How long a session secret is valid (top-level `jwtExpiration`, ms). */
  readonly jwtExpirationMs: number;
  /**
   * How long the usage history is kept (`[state] historyHours`,
   * `historyDays`); absent: the defaults (48 hours, 400 days).
   */
  readonly history?: HistoryRetention;
  /**
   * Runs `hook` when the gateway starts, with the state store (restore
   * state). Not run by `checkManagersFile`.
   */
  onStart(hook: (store: StateStore) => Promise<void>): void;
  /** Runs `hook` on every flush (every persist interval, and on close). */
  onFlush(hook: () => Promise<void>): void;
  /** Runs `hook` on close, after the last flush, before the store closes. */
  onClose(hook: () => Promise<void>): void;
}

/** A manager kind: the keys of its table and how to build it. */
export interface ManagerKind {
  /**
   * The keys its table may hold besides `name` (every accepted spelling);
   * any other key is warned about with the nearest of these.
   */
  keys: string[];
  build(table: Table, ctx: KindContext): Manager | Promise<Manager>;
}

/** A user-database kind (`mapDB`, `adDB`). */
export interface UserDbKind {
  /** The keys its table may hold besides `name`. */
  keys: string[];
  build(table: Table, ctx: KindContext): UserDb | Promise<UserDb>;
}
