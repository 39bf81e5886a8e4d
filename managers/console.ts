/**
 * The administration console's questions, answered from what the gateway
 * holds in memory: one page of a quota's users joined with their
 * consumption and sessions, the managers with their kinds, and the live
 * figures. The gateway (`gateway.ts`) checks that the caller is an
 * administrator and hands over its parts.
 *
 * The users of a quota are those of its `userDBN` when that database can
 * list them (a mapDB), else (an adDB: a directory cannot be listed
 * cheaply) the users with consumption in this cycle or a session. The
 * whole list is built and sorted in memory (5,000 users take a few
 * milliseconds) and only the page asked for is answered, so the console
 * never receives every user at once. Quotas need the users' groups: a
 * mapDB gives them, a session holds them from the login, and the rows of
 * the page still without them are looked up in the database (a page is at
 * most {@link USERS_PAGE_MAX} rows).
 *
 * @module
 */
import { ruleNames } from "../rule/mod.ts";
import {
  type LiveFigures,
  type ManagerSummary,
  type ProxyFigures,
  type UserDb,
  type UserRow,
  USERS_PAGE_MAX,
  type UsersPage,
  type UsersQuery,
  type UsersSort,
} from "./types.ts";
import type { LoadedManagers } from "./config/loader.ts";
import type { DwnConsR } from "./quotas/dwn_cons_r.ts";
import type { SessionIpm } from "./sessions/session_ipm.ts";

/** The rows of a page when the query names no limit. */
export const USERS_PAGE_DEFAULT = 50;

const SORTS: readonly UsersSort[] = [
  "user",
  "consumption",
  "quota",
  "percent",
  "lastSeen",
];

/** True for a sort the users table knows. */
export function isUsersSort(value: unknown): value is UsersSort {
  return SORTS.includes(value as UsersSort);
}

/** A row while the list is built: groups undefined until known. */
interface Draft {
  userName: string;
  name: string;
  groups?: string[];
  session?: UserRow["session"];
}

/** What {@link usersPage} reads. */
export interface UsersSource {
  quota: DwnConsR;
  /** The quota's user database (`userDBN`). */
  db: UserDb;
  sessions: readonly SessionIpm[];
  now: number;
}

/** The value a row is sorted by; unknown ones sort as the smallest. */
function sortValue(row: UserRow, sort: UsersSort): number | string {
  switch (sort) {
    case "user":
      return row.userName;
    case "consumption":
      return row.bytesCons;
    case "quota":
      return row.bytesQuota;
    case "percent":
      return row.percent ?? -1;
    case "lastSeen":
      return row.lastSeen ?? -1;
  }
}

function compare(a: number | string, b: number | string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A whole number from `value`, within `[min, max]`, else `fallback`. */
function clampInt(
  value: unknown,
  min: number,
  max: number,
  fallback: number,
): number {
  if (typeof value !== "number" || !Number.isFinite(value)) return fallback;
  return Math.min(max, Math.max(min, Math.floor(value)));
}

/** One page of the users of `source.quota`; see the module documentation. */
export async function usersPage(
  source: UsersSource,
  query: UsersQuery,
): Promise<UsersPage> {
  const { quota, db, now } = source;
  const drafts = new Map<string, Draft>();
  const draft = (user: string): Draft => {
    let d = drafts.get(user);
    if (!d) {
      d = { userName: user, name: user };
      drafts.set(user, d);
    }
    return d;
  };
  const listed = db.listUsers ? "database" : "active";
  if (db.listUsers) {
    for (const record of await db.listUsers()) {
      const d = draft(record.userName);
      d.name = record.name || record.userName;
      d.groups = record.groups;
    }
  }
  const consumption = new Map(quota.accounts());
  for (const user of consumption.keys()) draft(user);
  for (const manager of source.sessions) {
    for (const s of manager.openSessions(now)) {
      const d = draft(s.user);
      d.session ??= { manager: manager.name, ip: s.ip, lastUsed: s.lastUsed };
      d.groups ??= s.groups[db.name];
      if (d.name === d.userName && s.record.name) d.name = s.record.name;
    }
  }

  const own = quota.options.userQuota;
  const rowOf = (d: Draft): UserRow => {
    const ownQuota = own !== undefined && Object.hasOwn(own, d.userName);
    const bytesQuota = d.groups || ownQuota
      ? quota.quotaOf(d.userName, d.groups ?? [])
      : 0;
    const bytesCons = consumption.get(d.userName) ?? 0;
    const written = quota.lastWrittenOf(d.userName);
    const seen = Math.max(d.session?.lastUsed ?? -1, written ?? -1);
    const row: UserRow = {
      userName: d.userName,
      name: d.name,
      bytesCons,
      bytesQuota,
      percent: bytesQuota > 0 ? (bytesCons * 100) / bytesQuota : null,
      quotaKnown: d.groups !== undefined || ownQuota,
    };
    if (d.session) row.session = d.session;
    if (seen >= 0) row.lastSeen = seen;
    return row;
  };

  const filter = (query.filter ?? "").trim().toLowerCase();
  let rows = [...drafts.values()].map(rowOf);
  if (filter !== "") {
    rows = rows.filter((r) =>
      r.userName.toLowerCase().includes(filter) ||
      r.name.toLowerCase().includes(filter) ||
      (r.session?.ip.includes(filter) ?? false)
    );
  }
  const sort = isUsersSort(query.sort) ? query.sort : "user";
  const order = query.order === "asc" || query.order === "desc"
    ? query.order
    : sort === "user"
    ? "asc"
    : "desc";
  const sign = order === "asc" ? 1 : -1;
  rows.sort((a, b) =>
    sign * compare(sortValue(a, sort), sortValue(b, sort)) ||
    compare(a.userName, b.userName)
  );

  const limit = clampInt(query.limit, 1, USERS_PAGE_MAX, USERS_PAGE_DEFAULT);
  const offset = clampInt(query.offset, 0, Number.MAX_SAFE_INTEGER, 0);
  const page = rows.slice(offset, offset + limit);
  // Groups the list could not give (a directory's users without a
  // session): looked up for this page's rows only.
  for (let i = 0; i < page.length; i++) {
    if (page[i].quotaKnown) continue;
    try {
      const record = await db.lookup(page[i].userName);
      if (!record) continue;
      const d = drafts.get(page[i].userName)!;
      d.groups = record.groups;
      if (record.name) d.name = record.name;
      page[i] = rowOf(d);
    } catch {
      // The directory cannot answer now: the row says its quota is unknown.
    }
  }
  const out: UsersPage = {
    manager: quota.name,
    total: rows.length,
    offset,
    limit,
    sort,
    order,
    rows: page,
    listed,
    lastReset: quota.lastReset,
  };
  if (Number.isFinite(quota.nextReset)) out.nextReset = quota.nextReset;
  return out;
}

/** Every manager and user database of `loaded`, with its kind. */
export function managerList(loaded: LoadedManagers): ManagerSummary[] {
  const named = new Set(ruleNames(loaded.rule).map((n) => n.name));
  const out: ManagerSummary[] = [];
  for (const [name, m] of loaded.managers) {
    out.push({ name, kind: m.kind, userDb: false, inRule: named.has(name) });
  }
  for (const [name, db] of loaded.userDbs) {
    out.push({ name, kind: db.kind, userDb: true, inRule: false });
  }
  return out;
}

/** The live figures from the managers' memory and the proxy's counters. */
export function liveFigures(
  parts: {
    sessions: readonly SessionIpm[];
    quotas: readonly DwnConsR[];
    proxy?: ProxyFigures;
    now: number;
  },
): LiveFigures {
  const sessions: LiveFigures["sessions"] = {};
  for (const s of parts.sessions) {
    sessions[s.name] = s.openSessions(parts.now).length;
  }
  const quotas: LiveFigures["quotas"] = {};
  for (const q of parts.quotas) {
    let users = 0;
    let bytes = 0;
    for (const [, cons] of q.accounts()) {
      if (cons <= 0) continue;
      users++;
      bytes += cons;
    }
    quotas[q.name] = { users, bytes };
  }
  const out: LiveFigures = { at: parts.now, sessions, quotas };
  if (parts.proxy) out.proxy = { ...parts.proxy };
  return out;
}
