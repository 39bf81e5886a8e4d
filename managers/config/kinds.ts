/**
 * The registry of manager kinds and user-database kinds: the configuration
 * key of `managers.toml` (`[[rangeIPM]]`, `[mapDB]`, ...) → the keys its
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
import { rangeIpmFromTable } from "../matchers/range_ipm.ts";
import { timeSpanFromTable } from "../matchers/time_span.ts";
import { groupIpmFromTable } from "../matchers/group_ipm.ts";
import { hostMatcherFromTable } from "../matchers/host_matcher.ts";
import { parentProxyFromTable } from "../resources/parent_proxy.ts";
import { netIfaceFromTable } from "../resources/net_iface.ts";
import { bwConsRFromTable } from "../resources/bw_cons_r.ts";
import { sessionIpmFromTable } from "../sessions/session_ipm.ts";
import { dwnConsRFromTable } from "../quotas/dwn_cons_r.ts";
import { mapDbFromTable } from "../users/map_db.ts";
import { AD_DB_KEYS, adDbFromTable } from "../users/ad_db.ts";

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
  rangeIPM: { keys: ["cidr"], build: rangeIpmFromTable },
  timeSpan: {
    keys: ["span", "Span", "timezone", "days", "from", "to"],
    build: timeSpanFromTable,
  },
  groupIPM: { keys: ["group", "userDBN"], build: groupIpmFromTable },
  hostMatcher: {
    keys: ["pattern", "matchPort", "ignoreCase"],
    build: hostMatcherFromTable,
  },
  parentProxy: { keys: ["proxyURL"], build: parentProxyFromTable },
  netIface: {
    keys: ["iface", "addr"],
    build: (table, ctx) => netIfaceFromTable(table, ctx),
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
  adDB: { keys: AD_DB_KEYS, build: adDbFromTable },
};
