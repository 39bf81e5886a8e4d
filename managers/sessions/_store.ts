/**
 * The sessions of a `sessionIPM` in the state store (`../state/`), so that
 * they survive a restart and gateways sharing one store see each other's
 * logins: one stored session per IP, written at login and deleted at
 * logout. A session's last use changes at each request but is written only
 * with the periodic flush, for the sessions whose last use moved by at
 * least {@link SessionStore.stepMs} since it was written, and exactly at
 * shutdown: no store write per request, and a site of 10,000 users does not
 * rewrite 10,000 sessions at every flush. Sessions closed in memory
 * (idle, or their user gone) are deleted from the store at the next flush,
 * each only over its own stored copy. Private to this folder.
 *
 * @module
 */
import type { UserRecord } from "../types.ts";
import type { SessionAt, StateStore, StoredSession } from "../state/store.ts";

/** Sessions whose last use is handed to the store at a time. */
const WRITE_PART = 500;

/** One open session. */
export interface Session {
  user: string;
  ip: string;
  /** The user's record in the database that authenticated them. */
  record: UserRecord;
  /** The user's groups in every configured user database, by its name. */
  groups: Record<string, string[]>;
  /** When it was opened (ms since the epoch). */
  opened: number;
  /**
   * When a request last used it (ms since the epoch). Written to the store
   * with the next flush, not at each request.
   */
  lastUsed: number;
}

function toStored(s: Session, lastUsed: number): SessionAt {
  return {
    ip: s.ip,
    user: s.user,
    record: s.record,
    groups: s.groups,
    opened: s.opened,
    lastUsed,
  };
}

/**
 * A stored session as a session in memory (one stored without a last use,
 * by an older version, counts as used `now`).
 */
export function fromStored(
  ip: string,
  s: StoredSession,
  now: number,
): Session {
  return {
    user: s.user,
    record: s.record,
    groups: { ...s.groups },
    opened: s.opened,
    ip,
    lastUsed: s.lastUsed ?? now,
  };
}

/** The stored sessions of one `sessionIPM`, by its name. */
export class SessionStore {
  #store?: StateStore;
  /**
   * Sessions closed in memory, deleted from the store on the next flush;
   * `idle` ones only when no other gateway used them since.
   */
  #closed: { s: Session; idle: boolean }[] = [];
  /**
   * The `lastUsed` each session has in the store as far as this gateway
   * knows; a session whose `lastUsed` differs is written at the next flush.
   */
  #savedLastUsed = new WeakMap<Session, number>();

  /**
   * @param name The sessionIPM's name.
   * @param stepMs How far a session's last use must have moved since it
   *   was written for a periodic flush to write it again (0: every move).
   */
  constructor(readonly name: string, readonly stepMs = 0) {}

  /** Starts using `store`; before, nothing is read or written. */
  open(store: StateStore): void {
    this.#store = store;
  }

  /** True once `open` was called. */
  get opened(): boolean {
    return this.#store !== undefined;
  }

  /**
   * `s` was closed in memory: its stored copy goes at the next flush. An
   * `idle` one stays when another gateway sharing the store used it since.
   */
  deleteLater(s: Session, idle = false): void {
    this.#closed.push({ s, idle });
  }

  /** `s` changed (groups, record): written at the next flush. */
  changed(s: Session): void {
    this.#savedLastUsed.set(s, -1);
  }

  /** `s` is as stored (read from the store just now). */
  saved(s: Session): void {
    this.#savedLastUsed.set(s, s.lastUsed);
  }

  /**
   * Stores a session just opened, deleting the stored one of its user at
   * `oldIp` (a login from another IP) in the same write, and tells the
   * other gateways.
   */
  async save(session: Session, oldIp?: string): Promise<void> {
    const store = this.#store;
    if (!store) return;
    // As stored: a request during the write may use it again.
    const lastUsed = session.lastUsed;
    await store.saveSession(this.name, toStored(session, lastUsed), {
      deleteIp: oldIp,
    });
    this.#savedLastUsed.set(session, lastUsed);
    await this.#announce(session.ip);
    if (oldIp !== undefined && oldIp !== session.ip) {
      await this.#announce(oldIp);
    }
  }

  /** Deletes the stored session at `ip` (a logout) and tells the others. */
  async delete(ip: string): Promise<void> {
    const store = this.#store;
    if (!store) return;
    await store.deleteSession(this.name, ip);
    await this.#announce(ip);
  }

  /**
   * True when the store can tell that nobody else wrote a session of this
   * manager since it last listed them (see StateStore.sessionsUnchanged).
   */
  async unchanged(): Promise<boolean> {
    return await this.#store?.sessionsUnchanged(this.name) ?? false;
  }

  /** The stored session at `ip`, if any. */
  async get(ip: string): Promise<StoredSession | undefined> {
    return await this.#store?.getSession(this.name, ip);
  }

  /** A change is announced after the write: losing it only delays it. */
  async #announce(ip: string): Promise<void> {
    try {
      await this.#store!.publish({ kind: "session", manager: this.name, ip });
    } catch {
      // The others see it at their next reconcile.
    }
  }

  /**
   * The stored sessions by IP. One `known` already holds (same user, same
   * login time) is kept, with the later last use when another gateway
   * sharing the store used it more recently. Any other is restored as it
   * was stored (a session without a last use counts as used `now`) and
   * kept when `stillOpen` says so; else its stored copy is deleted at the
   * next flush.
   */
  async read(
    known: ReadonlyMap<string, Session>,
    options: { now: number; stillOpen: (s: Session) => Promise<boolean> },
  ): Promise<Map<string, Session>> {
    const byIp = new Map<string, Session>();
    for (const s of await this.#store!.listSessions(this.name)) {
      const same = known.get(s.ip);
      if (same && same.user === s.user && same.opened === s.opened) {
        // Used through another gateway sharing the store more recently.
        if (s.lastUsed !== undefined && s.lastUsed > same.lastUsed) {
          same.lastUsed = s.lastUsed;
          this.#savedLastUsed.set(same, s.lastUsed);
        }
        byIp.set(s.ip, same);
        continue;
      }
      const session = fromStored(s.ip, s, options.now);
      // Unknown when stored without it: written at the next flush.
      this.#savedLastUsed.set(session, s.lastUsed ?? -1);
      if (await options.stillOpen(session)) byIp.set(s.ip, session);
      else this.#closed.push({ s: session, idle: false });
    }
    return byIp;
  }

  /**
   * Deletes the stored copies of the sessions closed in memory since the
   * last flush and writes the last use of the `open` sessions used since.
   * What could not be written is kept for the next flush.
   */
  async flush(
    open: ReadonlyMap<string, Session>,
    options: { exact?: boolean } = {},
  ): Promise<void> {
    const store = this.#store;
    if (!store) return;
    const closed = this.#closed;
    this.#closed = [];
    for (let i = 0; i < closed.length; i++) {
      const { s, idle } = closed[i];
      try {
        // Only that session's stored copy: a login at the same IP since
        // (here or on another gateway sharing the store) must stay, and so
        // must an idle one that another gateway has used since.
        const gone = await store.deleteSession(this.name, s.ip, {
          only: {
            user: s.user,
            opened: s.opened,
            unusedSince: idle ? s.lastUsed : undefined,
          },
        });
        if (gone) await this.#announce(s.ip);
      } catch (e) {
        this.#closed.push(...closed.slice(i));
        throw e;
      }
    }
    await this.#writeLastUsed(store, open, options.exact ? 0 : this.stepMs);
  }

  /**
   * Writes the sessions whose last use moved by `stepMs` or more since it
   * was written (and those changed otherwise, or never written).
   * Each is written only over its own stored copy (same user, same login
   * time), keeping the later last use when another gateway sharing the
   * store wrote one meanwhile; one not written is tried at the next flush.
   */
  async #writeLastUsed(
    store: StateStore,
    open: ReadonlyMap<string, Session>,
    stepMs: number,
  ): Promise<void> {
    const changed: Session[] = [];
    const moved: Session[] = [];
    for (const s of open.values()) {
      const saved = this.#savedLastUsed.get(s);
      // Changed (-1) or never written: at once, whole; else once its last
      // use moved a step, that alone.
      if (saved === undefined || saved < 0) changed.push(s);
      else if (s.lastUsed !== saved && s.lastUsed - saved >= stepMs) {
        moved.push(s);
      }
    }
    // Whole sessions a few hundred at a time: what the main thread does for
    // each part (copies, then the store's writes) stays short, and
    // requests go on in between.
    for (let start = 0; start < changed.length; start += WRITE_PART) {
      const part = changed.slice(start, start + WRITE_PART);
      this.#wrote(
        part,
        await store.updateSessions(
          this.name,
          part.map((s) => toStored(s, s.lastUsed)),
        ),
      );
    }
    // Last uses all at once: the store packs them (and paces itself).
    if (moved.length > 0) {
      this.#wrote(
        moved,
        await store.updateLastUses(
          this.name,
          moved.map((s) => toStored(s, s.lastUsed)),
        ),
      );
    }
  }

  /** What the store answered it wrote of `sessions` (last use by IP). */
  #wrote(sessions: readonly Session[], written: Map<string, number>): void {
    for (const s of sessions) {
      const lastUsed = written.get(s.ip);
      if (lastUsed === undefined) continue;
      this.#savedLastUsed.set(s, lastUsed);
      if (lastUsed > s.lastUsed) s.lastUsed = lastUsed;
    }
  }
}
