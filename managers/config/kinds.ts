/**
 * The registry of manager kinds and user-database kinds: the configuration
 * key of `managers.toml` (`[[rangeIPM]]`, `[mapDB]`, ...) -> the keys its
 * table may hold and the factory that builds it. The loader (`loader.ts`)
 * walks this registry; adding a kind is adding one entry.
 *
 * Every factory has one shape, `xxxFromTable(table, ctx)`, with the
 * {@link KindContext} of `kind_context.ts`: errors at a key (with file and
 * line), durations and sizes, user databases by name, the clock, and hooks
 * to run at start (with the state store), on flush and on close.
 *
 * @module
 */
import type { ManagerKind, UserDbKind } from "./kind_context.ts";
import { bwConsRFromTable } from "../resources/bw_cons_r.ts";
import { sessionIpmFromTable } from "../sessions/session_ipm.ts";
import { dwnConsRFromTable } from "../quotas/dwn_cons_r.ts";
import { mapDbFromTable } from "../users/map_db.ts";
import { AD_DB_KEYS } from "../users/ad_db_keys.ts";

// The kinds that the default configuration does not hold are loaded when a
// table of theirs is first met, not at start: V8 keeps the text of every
// loaded module, and a gateway that has no LDAP, no time span and no
// parent proxy holds about 0.5 MiB less (`deno task profile heap start`).
// The specifiers are static, so that `deno compile` and `deno bundle`
// include the modules.

/** Manager kinds by configuration key, in the order they are loaded. */
export const MANAGER_KINDS: Record<string, ManagerKind> = {
  sessionIPM: {
    keys: ["auth", "idleTimeout", "proxyAuth", "realm"],
    build: sessionIpmFromTable,
  },
  dwnConsR: {
    keys: [
      "userDBN",
      "resetCycle",
      "timezone",
      "groupQuota",
      "GroupQuota",
      "userQuota",
      "resetDay",
      "resetWeekday",
      "resetTime",
      "overQuotaRate",
      "warnAt",
      "countUploads",
    ],
    build: dwnConsRFromTable,
  },
  rangeIPM: {
    keys: ["cidr"],
    build: async (table, ctx) =>
      (await import("../matchers/range_ipm.ts")).rangeIpmFromTable(table, ctx),
  },
  timeSpan: {
    keys: ["span", "Span", "timezone", "days", "from", "to"],
    build: async (table, ctx) =>
      (await import("../matchers/time_span.ts")).timeSpanFromTable(table, ctx),
  },
  groupIPM: {
    keys: ["group", "userDBN"],
    build: async (table, ctx) =>
      (await import("../matchers/group_ipm.ts")).groupIpmFromTable(table, ctx),
  },
  hostMatcher: {
    keys: ["pattern", "matchPort", "ignoreCase"],
    build: async (table, ctx) =>
      (await import("../matchers/host_matcher.ts")).hostMatcherFromTable(
        table,
        ctx,
      ),
  },
  parentProxy: {
    keys: ["proxyURL"],
    build: async (table, ctx) =>
      (await import("../resources/parent_proxy.ts")).parentProxyFromTable(
        table,
        ctx,
      ),
  },
  netIface: {
    keys: ["iface", "addr"],
    build: async (table, ctx) =>
      (await import("../resources/net_iface.ts")).netIfaceFromTable(table, ctx),
  },
  bwConsR: {
    keys: ["rate", "burst", "userDBN"],
    build: (table, ctx) => bwConsRFromTable(table, ctx),
  },
};

/** User-database kinds by configuration key (a table or an array of tables). */
export const USER_DB_KINDS: Record<string, UserDbKind> = {
  mapDB: {
    keys: ["userPass", "userGroups", "userGroup"],
    build: mapDbFromTable,
  },
  adDB: {
    keys: AD_DB_KEYS,
    build: async (table, ctx) =>
      (await import("../users/ad_db.ts")).adDbFromTable(table, ctx),
  },
};
