/**
 * The registry of manager kinds and user-database kinds: the configuration
 * key of `managers.toml` (`[[rangeIPM]]`, `[mapDB]`, ...) → the keys its
 * table may hold and the factory that builds it. The loader
 * (`config.ts`) walks this registry; adding a kind is adding one entry.
 *
 * A factory gets its table and a {@link KindContext}: errors at a key (with
 * file and line), durations and sizes, user databases by name, the clock,
 * and hooks to run at start (with the Deno KV store), on flush and on close.
 *
 * @module
 */
import type { Manager, UserDb } from "../types.ts";
import type { Fail, Table } from "./table_fields.ts";
import { rangeIpmFromFields } from "../matchers/range_ipm.ts";
import { timeSpanFromFields } from "../matchers/time_span.ts";
import { groupIpmFromFields } from "../matchers/group_ipm.ts";
import { hostMatcherFromFields } from "../matchers/host_matcher.ts";
import { parentProxyFromFields } from "../resources/parent_proxy.ts";
import { netIfaceFromFields } from "../resources/net_iface.ts";
import { bwConsRFromFields } from "../resources/bw_cons_r.ts";
import { sessionIpmFromFields } from "../sessions/session_ipm.ts";
import { dwnConsRFromFields } from "../quotas/dwn_cons_r.ts";
import { mapDbFromFields } from "../users/map_db.ts";
import { AD_DB_KEYS, adDbFromTable } from "../users/ad_db.ts";

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
  /** How long a session secret is valid (top-level `jwtExpiration`, ms). */
  readonly jwtExpirationMs: number;
  /**
   * Runs `hook` when the gateway starts, with the Deno KV store (restore
   * state). Not run by `checkManagersFile`.
   */
  onStart(hook: (kv: Deno.Kv) => Promise<void>): void;
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
  build(table: Table, ctx: KindContext): Manager;
}

/** A user-database kind (`mapDB`, `adDB`). */
export interface UserDbKind {
  /** The keys its table may hold besides `name`. */
  keys: string[];
  build(table: Table, ctx: KindContext): UserDb | Promise<UserDb>;
}

/** Manager kinds by configuration key, in the order they are loaded. */
export const MANAGER_KINDS: Record<string, ManagerKind> = {
  sessionIPM: {
    keys: ["auth", "idleTimeout", "proxyAuth", "realm"],
    build: (t, ctx) => sessionIpmFromFields(t, ctx),
  },
  dwnConsR: {
    keys: [
      "userDBN",
      "resetCycle",
      "timezone",
      "groupQuota",
      "GroupQuota",
      "userQuota",
    ],
    build: (t, ctx) => dwnConsRFromFields(t, ctx),
  },
  rangeIPM: {
    keys: ["cidr"],
    build: (t, ctx) => rangeIpmFromFields(ctx.name, t, ctx.fail),
  },
  timeSpan: {
    keys: ["span", "Span", "timezone", "days", "from", "to"],
    build: (t, ctx) => timeSpanFromFields(ctx.name, t, ctx.fail),
  },
  groupIPM: {
    keys: ["group", "userDBN"],
    build: (t, ctx) =>
      groupIpmFromFields(ctx.name, t, ctx.fail, { userDbs: ctx.userDbNames }),
  },
  hostMatcher: {
    keys: ["pattern", "matchPort", "ignoreCase"],
    build: (t, ctx) => hostMatcherFromFields(ctx.name, t, ctx.fail),
  },
  parentProxy: {
    keys: ["proxyURL"],
    build: (t, ctx) => parentProxyFromFields(ctx.name, t, ctx.fail),
  },
  netIface: {
    keys: ["iface", "addr"],
    build: (t, ctx) => netIfaceFromFields(ctx.name, t, ctx.fail),
  },
  bwConsR: {
    keys: ["rate", "burst", "userDBN"],
    build: (t, ctx) =>
      bwConsRFromFields(ctx.name, t, ctx.fail, { userDbs: ctx.userDbNames }),
  },
};

/** User-database kinds by configuration key (a table or an array of tables). */
export const USER_DB_KINDS: Record<string, UserDbKind> = {
  mapDB: {
    keys: ["userPass", "userGroups", "userGroup"],
    build: (t, ctx) => mapDbFromFields(t, ctx),
  },
  adDB: { keys: AD_DB_KEYS, build: (t, ctx) => adDbFromTable(t, ctx) },
};
