/**
 * The sessions of a `sessionIPM` in Deno KV, so that they survive a
 * restart and gateways sharing one store see each other's logins: one
 * entry per IP under `["sessionIPM", name, "session", ip]`, written at
 * login and deleted at logout. A session's last use changes at each
 * request but is written only with the periodic flush (and at shutdown),
 * for the sessions used since the last one, a few at a time: no KV write
 * per request. Sessions closed in memory (idle, or their user gone) are
 * deleted from KV at the next flush, each only over its own stored copy.
 * Private to this folder.
 *
 * @module
 */
import type { UserRecord } from "../types.ts";

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
   * When a request last used it (ms since the epoch). Written to KV with
   * the next flush, not at each request.
   */
  lastUsed: number;
}

/** A session as stored in KV (its IP is the last part of the key). */
interface StoredSession {
  user: string;
  record: UserRecord;
  groups: Record<string, string[]>;
  opened: number;
  /** Absent in sessions stored by versions that did not keep it. */
  lastUsed?: number;
}

/** At most this many stored sessions are read (and written) at a time. */
const WRITE_BATCH = 10;

function toStored(s: Session, lastUsed: number): StoredSession {
  return {
    user: s.user,
    record: s.record,
    groups: s.groups,
    opened: s.opened,
    lastUsed,
  };
}

/** The stored sessions of one `sessionIPM`, by its name. */
export class SessionStore {
  #kv?: Deno.Kv;
  /** Sessions closed in memory, deleted from KV on the next flush. */
  #closed: Session[] = [];
  /**
   * The `lastUsed` each session has in KV as far as this gateway knows; a
   * session whose `lastUsed` differs is written at the next flush.
   */
  #savedLastUsed = new WeakMap<Session, number>();

  constructor(readonly name: string) {}

  /** Starts using `kv`; before, nothing is read or written. */
  open(kv: Deno.Kv): void {
    this.#kv = kv;
  }

  /** True once `open` was called. */
  get opened(): boolean {
    return this.#kv !== undefined;
  }

  /** `s` was closed in memory: its stored copy goes at the next flush. */
  deleteLater(s: Session): void {
    this.#closed.push(s);
  }

  /** `s` changed (groups, record): written at the next flush. */
  changed(s: Session): void {
    this.#savedLastUsed.set(s, -1);
  }

  /**
   * Stores a session just opened, deleting the stored one of its user at
   * `oldIp` (a login from another IP) in the same commit.
   */
  async save(session: Session, oldIp?: string): Promise<void> {
    const kv = this.#kv;
    if (!kv) return;
    // As stored: a request during the commit may use it again.
    const lastUsed = session.lastUsed;
    const op = kv.atomic();
    if (oldIp !== undefined && oldIp !== session.ip) {
      op.delete(this.#key(oldIp));
    }
    op.set(this.#key(session.ip), toStored(session, lastUsed));
    await op.commit();
    this.#savedLastUsed.set(session, lastUsed);
  }

  /** Deletes the stored session at `ip` (a logout). */
  async delete(ip: string): Promise<void> {
    await this.#kv?.delete(this.#key(ip));
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
    const kv = this.#kv!;
    const byIp = new Map<string, Session>();
    for await (
      const entry of kv.list<StoredSession>({
        prefix: ["sessionIPM", this.name, "session"],
      })
    ) {
      const ip = entry.key[3] as string;
      const s = entry.value;
      const same = known.get(ip);
      if (same && same.user === s.user && same.opened === s.opened) {
        // Used through another gateway sharing the store more recently.
        if (s.lastUsed !== undefined && s.lastUsed > same.lastUsed) {
          same.lastUsed = s.lastUsed;
          this.#savedLastUsed.set(same, s.lastUsed);
        }
        byIp.set(ip, same);
        continue;
      }
      const session: Session = {
        user: s.user,
        record: s.record,
        groups: { ...s.groups },
        opened: s.opened,
        ip,
        lastUsed: s.lastUsed ?? options.now,
      };
      // Unknown when stored without it: written at the next flush.
      this.#savedLastUsed.set(session, s.lastUsed ?? -1);
      if (await options.stillOpen(session)) byIp.set(ip, session);
      else this.#closed.push(session);
    }
    return byIp;
  }

  /**
   * Deletes the stored copies of the sessions closed in memory since the
   * last flush and writes the last use of the `open` sessions used since.
   */
  async flush(open: ReadonlyMap<string, Session>): Promise<void> {
    const kv = this.#kv;
    if (!kv) return;
    const closed = this.#closed;
    this.#closed = [];
    for (const s of closed) {
      // Only that session's stored copy: a login at the same IP since
      // (here or on another gateway sharing the store) must stay.
      const key = this.#key(s.ip);
      const entry = await kv.get<StoredSession>(key);
      if (entry.value?.user !== s.user || entry.value.opened !== s.opened) {
        continue;
      }
      await kv.atomic().check(entry).delete(key).commit();
    }
    await this.#writeLastUsed(kv, open);
  }

  /**
   * Writes the sessions whose last use changed since they were written.
   * Each is written only over its own stored copy (same user, same login
   * time), keeping the later last use when another gateway sharing the
   * store wrote one meanwhile; one not written is tried at the next flush.
   */
  async #writeLastUsed(
    kv: Deno.Kv,
    open: ReadonlyMap<string, Session>,
  ): Promise<void> {
    const touched: Session[] = [];
    for (const s of open.values()) {
      if (this.#savedLastUsed.get(s) !== s.lastUsed) touched.push(s);
    }
    for (let start = 0; start < touched.length; start += WRITE_BATCH) {
      const batch = touched.slice(start, start + WRITE_BATCH);
      const entries = await kv.getMany<StoredSession[]>(
        batch.map((s) => this.#key(s.ip)),
      );
      const op = kv.atomic();
      const written: [Session, number][] = [];
      for (let i = 0; i < batch.length; i++) {
        const s = batch[i];
        const entry = entries[i];
        const v = entry.value;
        if (v?.user !== s.user || v.opened !== s.opened) continue;
        const lastUsed = Math.max(v.lastUsed ?? 0, s.lastUsed);
        op.check(entry).set(entry.key, toStored(s, lastUsed));
        written.push([s, lastUsed]);
      }
      if (written.length === 0) continue;
      const res = await op.commit();
      if (!res.ok) continue; // changed meanwhile: the next flush tries again
      for (const [s, lastUsed] of written) {
        this.#savedLastUsed.set(s, lastUsed);
        if (lastUsed > s.lastUsed) s.lastUsed = lastUsed;
      }
    }
  }

  #key(ip: string): Deno.KvKey {
    return ["sessionIPM", this.name, "session", ip];
  }
}
