/**
 * Sessions restored from the store after a restart take their user's
 * groups as the user databases hold them now, not as they were at login:
 * a mapDB's at once ({@link refreshAtStart}, it is in `managers.toml`),
 * a directory's (adDB) in the background after the start
 * ({@link refreshRestored}), at most {@link REFRESH_CONCURRENCY} lookups at
 * a time, each within {@link REFRESH_TIMEOUT_MS} (and the adDB's own
 * `timeout`), so that a slow or unreachable directory delays neither the
 * start nor the requests. A session whose user the `auth` database no
 * longer has is closed. When a directory cannot be asked, the sessions keep
 * the groups they had at login, and a warning says so once. An adDB
 * without a service account (`user`/`pass`) is not asked: its anonymous
 * search may be refused or see no users, which would look like users that
 * are gone. Private to this folder.
 *
 * @module
 */
import type { UserDb, UserRecord } from "../types.ts";
import type { Session } from "./_store.ts";
import { after, type Timer } from "../../proxy/timers.ts";

/** Restored sessions' users looked up at the same time, at most. */
export const REFRESH_CONCURRENCY = 4;
/** The longest one lookup of a restored session's user may take (ms). */
export const REFRESH_TIMEOUT_MS = 10_000;
/**
 * After this many failed lookups in a row a user database is not asked
 * again in this refresh (it is down: each would wait for its timeout).
 */
const REFRESH_GIVE_UP = 3;

/** The user databases of a `sessionIPM`. */
export interface SessionDbs {
  /** The database that checks passwords: a user it lacks is gone. */
  readonly auth: UserDb;
  /** Every configured user database (for the session's groups). */
  readonly userDbs: readonly UserDb[];
}

/**
 * Gives a restored session its user's record and groups as the databases
 * that are cheap to ask (`refresh: "at-start"`, the mapDBs) hold them now.
 * False when `auth` is such a database and no longer has the user (the
 * session must close). A directory (adDB) is not asked here.
 */
export async function refreshAtStart(
  session: Session,
  dbs: SessionDbs,
): Promise<boolean> {
  for (const db of dbs.userDbs) {
    if (db.refresh !== "at-start") continue;
    const found = await db.lookup(session.user);
    if (db === dbs.auth) {
      if (!found) return false;
      session.record = found;
    }
    if (found) session.groups[db.name] = found.groups;
    else delete session.groups[db.name];
  }
  return true;
}

/** What {@link refreshRestored} needs of the manager besides its databases. */
export interface RefreshOptions extends SessionDbs {
  /** True once the manager stops: no more lookups start. */
  stopped(): boolean;
  /** Closes a session whose user `auth` no longer has. */
  close(s: Session): void;
  /** A session's record or groups changed: to be written to the store. */
  changed(s: Session): void;
  /** Tells a person something went wrong. */
  warn(message: string): void;
}

function sameList(a: readonly string[] | undefined, b: readonly string[]) {
  return a !== undefined && a.length === b.length &&
    a.every((x, i) => x === b[i]);
}

/** `db.lookup(user)`, or a rejection after `ms`. */
async function lookupWithin(
  db: UserDb,
  user: string,
  ms: number,
): Promise<UserRecord | undefined> {
  let timer: Timer | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = after(
      ms,
      () => reject(new Error(`no answer within ${ms / 1000} s`)),
    );
  });
  try {
    return await Promise.race([db.lookup(user), late]);
  } finally {
    timer?.cancel();
  }
}

/**
 * Looks up the user of every open session (by IP; restored at start) in
 * each user database asked `"in-background"` (those asked `"at-start"`
 * were read by {@link refreshAtStart}), a few at a time. Found: the session takes the
 * user's name and groups. Not found in `auth`: the session is closed. A
 * failure keeps the stored groups; the first one of each database is told.
 * A session closed meanwhile (no longer in `open`) is skipped.
 */
export async function refreshRestored(
  open: ReadonlyMap<string, Session>,
  options: RefreshOptions,
): Promise<void> {
  const dbs = options.userDbs.filter((db) => db.refresh === "in-background");
  if (dbs.length === 0 || open.size === 0) return;
  const jobs: [Session, UserDb][] = [];
  for (const s of open.values()) {
    for (const db of dbs) jobs.push([s, db]);
  }
  const failures = new Map<UserDb, number>();
  let next = 0;
  const work = async () => {
    while (!options.stopped() && next < jobs.length) {
      const [s, db] = jobs[next++];
      if (open.get(s.ip) !== s) continue; // closed meanwhile
      if ((failures.get(db) ?? 0) >= REFRESH_GIVE_UP) continue;
      let found: UserRecord | undefined;
      try {
        found = await lookupWithin(db, s.user, REFRESH_TIMEOUT_MS);
      } catch (e) {
        const failed = (failures.get(db) ?? 0) + 1;
        failures.set(db, failed);
        if (failed === 1) {
          options.warn(
            `cannot refresh the groups of the sessions restored at start from ${db.kind} "${db.name}" (${
              e instanceof Error ? e.message : e
            }); they keep the groups they had at login until their users log in again`,
          );
        }
        continue;
      }
      failures.set(db, 0);
      if (open.get(s.ip) !== s) continue;
      refreshed(s, db, found, options);
    }
  };
  const workers: Promise<void>[] = [];
  for (let i = 0; i < Math.min(REFRESH_CONCURRENCY, jobs.length); i++) {
    workers.push(work());
  }
  await Promise.all(workers);
}

/** Applies one database's answer about a restored session's user. */
function refreshed(
  s: Session,
  db: UserDb,
  found: UserRecord | undefined,
  options: RefreshOptions,
): void {
  if (!found) {
    if (db === options.auth) {
      options.close(s);
      return;
    }
    if (!(db.name in s.groups)) return;
    delete s.groups[db.name];
  } else {
    const sameName = db !== options.auth || s.record.name === found.name;
    if (sameName && sameList(s.groups[db.name], found.groups)) return;
    if (db === options.auth) s.record = found;
    s.groups[db.name] = found.groups;
  }
  options.changed(s);
}
