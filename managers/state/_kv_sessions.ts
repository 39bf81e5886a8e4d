/**
 * The sessions on Deno KV: their keys, the store's view of what is stored
 * (the versionstamp of each session it read or wrote, and of the sessions'
 * `writes` key), and their reads and writes. Private to this folder
 * (kv_store.ts wraps these calls in its health).
 *
 * Keys:
 *
 * - `["sessionIPM", manager, "session", ip]`: a {@link StoredSession};
 * - `["sessionIPM", manager, "lastUsePacks", pack]`: the sessions' last
 *   uses written since their login or their last whole write, 256 packs of
 *   IPs; see _kv_last_uses.ts;
 * - `["sessionIPM", manager, "writes"]`: a `Deno.KvU64` that every write of
 *   that manager's sessions adds 1 to, in the same atomic operation: while
 *   it is as this store last knew it, nobody else wrote a session since,
 *   and a flush need not list them all again
 *   ({@link KvSessions.unchanged}).
 *
 * A session's last use alone (a flush writes it once it moved 5 minutes)
 * goes to the packs of last uses: a flush of 10,000 writes 256 values, not
 * 10,000 sessions. A session written whole (its groups changed, or never
 * written) is written with a check of the versionstamp the store remembers
 * of it, 40 at a time, with no read first. A batch whose check fails
 * (another gateway wrote meanwhile) is written as before: read 10 at a
 * time, compared, each only over its own copy.
 *
 * @module
 */
import type { SessionAt, SessionIdentity, StoredSession } from "./store.ts";
import { storedSession } from "./store.ts";
import type { WritePace } from "./pace.ts";
import { GET_BATCH, LIST_BATCH, write } from "./_kv_write.ts";
import {
  KvLastUses,
  lastUseIn,
  lastUseKey,
  type LastUseWrite,
} from "./_kv_last_uses.ts";

/** Stored sessions read and written at a time (Deno KV's getMany takes 10). */
const SESSION_BATCH = GET_BATCH;
/**
 * Sessions whose last use is written in one atomic operation (Deno KV takes
 * 100 checks, one of them would be the `writes` key's): 40, because the
 * main thread serializes them all in one go (about 5 µs each), and
 * requests wait meanwhile.
 */
const CHECKED_BATCH = 40;
/** Bytes of session values written in one atomic operation, at most (Deno KV takes 800 KiB). */
const CHECKED_BYTES = 400_000;

function sessionKey(manager: string, ip: string): Deno.KvKey {
  return ["sessionIPM", manager, "session", ip];
}

function sessionWritesKey(manager: string): Deno.KvKey {
  return ["sessionIPM", manager, "writes"];
}

/** A stored session as this store last read or wrote it. */
interface SeenSession {
  versionstamp: string;
  user: string;
  opened: number;
  lastUsed: number | undefined;
}

/** About the bytes a stored session takes (its names and groups). */
function sessionBytes(s: SessionAt): number {
  let n = 200 + 2 * (s.user.length + s.record.name.length);
  for (const g of s.record.groups) n += 2 * g.length + 8;
  for (const db in s.groups) {
    for (const g of s.groups[db]) n += 2 * g.length + 8;
  }
  return n;
}

/** The sessions of a {@link KvStateStore}'s database (see the module doc). */
export class KvSessions {
  /** Sessions by manager and IP, as last read or written here. */
  readonly #seen = new Map<string, Map<string, SeenSession>>();
  /**
   * The versionstamp of each sessionIPM's `writes` key as of the last list
   * here and this store's writes since; undefined when another's write
   * came in between.
   */
  readonly #sessionWrites = new Map<string, string | null | undefined>();
  /** The sessions' last uses (see _kv_last_uses.ts). */
  readonly #lastUses: KvLastUses;

  /** `pace` answers the store's pace of the moment (set after it opened). */
  constructor(
    readonly kv: Deno.Kv,
    readonly pace: () => WritePace | undefined,
  ) {
    this.#lastUses = new KvLastUses(kv, pace);
  }

  /** The sessions of `manager` as last read or written here, by IP. */
  #seenOf(manager: string): Map<string, SeenSession> {
    let m = this.#seen.get(manager);
    if (!m) this.#seen.set(manager, m = new Map());
    return m;
  }

  #saw(
    manager: string,
    ip: string,
    v: StoredSession | null | undefined,
    versionstamp: string | null,
  ): void {
    const m = this.#seenOf(manager);
    if (!v || versionstamp === null) m.delete(ip);
    else {
      m.set(ip, {
        versionstamp,
        user: v.user,
        opened: v.opened,
        lastUsed: v.lastUsed,
      });
    }
  }

  async unchanged(manager: string): Promise<boolean> {
    const known = this.#sessionWrites.get(manager);
    if (known === undefined) return false;
    const now = await this.kv.get(sessionWritesKey(manager));
    return now.versionstamp === known;
  }

  /**
   * One atomic write of `manager`'s sessions (`build` adds what it does to
   * `op`) with 1 added to its `writes` key, checking that key against what
   * this store last knew of it when it knows, so that afterwards it still
   * knows; when that check fails, the write is made again without it.
   * Answers the commit's result (the write's own checks' verdict).
   */
  async #writeSessions(
    manager: string,
    build: (op: Deno.AtomicOperation) => void,
  ): Promise<Deno.KvCommitResult | Deno.KvCommitError> {
    const key = sessionWritesKey(manager);
    const known = this.#sessionWrites.get(manager);
    if (known !== undefined) {
      const op = this.kv.atomic().check({ key, versionstamp: known });
      build(op);
      const res = await write(() => op.sum(key, 1n).commit());
      if (res.ok) {
        this.#sessionWrites.set(manager, res.versionstamp);
        return res;
      }
      this.#sessionWrites.set(manager, undefined);
    }
    const op = this.kv.atomic();
    build(op);
    return await write(() => op.sum(key, 1n).commit());
  }

  async list(manager: string): Promise<SessionAt[]> {
    const out: SessionAt[] = [];
    const seen = new Map<string, SeenSession>();
    // Read first: a write meanwhile makes it stale, never the list.
    const writes = (await this.kv.get(sessionWritesKey(manager)))
      .versionstamp;
    for await (
      const entry of this.kv.list<StoredSession>({
        prefix: ["sessionIPM", manager, "session"],
      }, { batchSize: LIST_BATCH })
    ) {
      // The value is a fresh object of the list's: it becomes the answer.
      const v = entry.value as SessionAt;
      const ip = entry.key[3] as string;
      v.ip = ip;
      out.push(v);
      seen.set(ip, {
        versionstamp: entry.versionstamp,
        user: v.user,
        opened: v.opened,
        lastUsed: v.lastUsed,
      });
    }
    // The last uses written since each one's login or whole write.
    const packed = await this.#lastUses.readAll(manager);
    for (const v of packed.size > 0 ? out : []) {
      const lastUsed = lastUseIn(packed, v.ip, v.opened);
      if (lastUsed !== undefined && lastUsed > (v.lastUsed ?? 0)) {
        v.lastUsed = lastUsed;
        seen.get(v.ip)!.lastUsed = lastUsed;
      }
    }
    this.#seen.set(manager, seen);
    this.#sessionWrites.set(manager, writes);
    return out;
  }

  async get(
    manager: string,
    ip: string,
  ): Promise<StoredSession | undefined> {
    const [entry, pack] = await this.kv.getMany<[StoredSession, unknown]>([
      sessionKey(manager, ip),
      lastUseKey(manager, ip),
    ]);
    const v = entry.value;
    const lastUsed = v ? lastUseIn(pack.value, ip, v.opened) : undefined;
    if (v && lastUsed !== undefined && lastUsed > (v.lastUsed ?? 0)) {
      v.lastUsed = lastUsed;
    }
    this.#saw(manager, ip, v, entry.versionstamp);
    return v ?? undefined;
  }

  async save(
    manager: string,
    session: SessionAt,
    options: { deleteIp?: string } = {},
  ): Promise<void> {
    const old = options.deleteIp;
    const value = storedSession(session);
    const res = await this.#writeSessions(manager, (op) => {
      if (old !== undefined && old !== session.ip) {
        op.delete(sessionKey(manager, old));
      }
      op.set(sessionKey(manager, session.ip), value);
    });
    if (old !== undefined && old !== session.ip) {
      this.#saw(manager, old, undefined, null);
    }
    // An atomic operation without checks always commits.
    this.#saw(manager, session.ip, value, res.ok ? res.versionstamp : null);
  }

  async delete(
    manager: string,
    ip: string,
    options: { only?: SessionIdentity } = {},
  ): Promise<boolean> {
    const key = sessionKey(manager, ip);
    const only = options.only;
    if (!only) {
      // Read first only to answer whether there was one.
      const entry = await this.kv.get(key);
      if (entry.versionstamp === null) return false;
      await this.#writeSessions(manager, (op) => op.delete(key));
      this.#saw(manager, ip, undefined, null);
      return true;
    }
    const [entry, pack] = await this.kv.getMany<[StoredSession, unknown]>([
      key,
      lastUseKey(manager, ip),
    ]);
    const v = entry.value;
    if (v?.user !== only.user || v.opened !== only.opened) return false;
    const idle = only.unusedSince;
    if (idle !== undefined) {
      const packed = lastUseIn(pack.value, ip, v.opened) ?? 0;
      if (Math.max(v.lastUsed ?? 0, packed) > idle) return false;
    }
    // An idle one: also unless another gateway packed a last use since.
    const res = await this.#writeSessions(manager, (op) => {
      op.check(entry).delete(key);
      if (idle !== undefined) op.check(pack);
    });
    if (res.ok) this.#saw(manager, ip, undefined, null);
    return res.ok;
  }

  /**
   * Those stored as this store last saw them (same user, same login time)
   * go to the packs of last uses; the others, and those a pack could not
   * take, are written whole ({@link update}).
   */
  async updateLastUses(
    manager: string,
    sessions: readonly SessionAt[],
  ): Promise<Map<string, number>> {
    const seen = this.#seenOf(manager);
    const packed: LastUseWrite[] = [];
    let whole: SessionAt[] = [];
    for (const s of sessions) {
      const was = seen.get(s.ip);
      if (
        was?.user === s.user && was.opened === s.opened &&
        s.lastUsed !== undefined
      ) packed.push(s);
      else whole.push(s);
    }
    const out = new Map<string, number>();
    if (packed.length > 0) {
      const { written, left } = await this.#lastUses.write(
        manager,
        packed,
        (build) => this.#writeSessions(manager, build),
      );
      for (const [ip, lastUsed] of written) {
        out.set(ip, lastUsed);
        const was = seen.get(ip)!;
        if (lastUsed > (was.lastUsed ?? 0)) was.lastUsed = lastUsed;
      }
      if (left.length > 0) {
        const again = new Set(left);
        whole = whole.concat(sessions.filter((s) => again.has(s.ip)));
      }
    }
    if (whole.length > 0) {
      for (const [ip, lastUsed] of await this.update(manager, whole)) {
        out.set(ip, lastUsed);
      }
    }
    return out;
  }

  /** See {@link StateStore.updateSessions}. */
  async update(
    manager: string,
    sessions: readonly SessionAt[],
  ): Promise<Map<string, number>> {
    const written = new Map<string, number>();
    const seen = this.#seenOf(manager);
    // Those stored as this store last saw them: written with a check of
    // that versionstamp, 100 at a time, nothing read first.
    const unsure: SessionAt[] = [];
    let batch: [SessionAt, SeenSession][] = [];
    let bytes = 0;
    const flushBatch = async () => {
      if (batch.length === 0) return;
      await this.pace()?.between();
      const lastUses: number[] = [];
      const values: StoredSession[] = [];
      for (const [s, was] of batch) {
        const lastUsed = Math.max(was.lastUsed ?? 0, s.lastUsed ?? 0);
        values.push(storedSession(s, lastUsed));
        lastUses.push(lastUsed);
      }
      const res = await this.#writeSessions(manager, (op) => {
        for (let i = 0; i < batch.length; i++) {
          const [s, was] = batch[i];
          const key = sessionKey(manager, s.ip);
          op.check({ key, versionstamp: was.versionstamp }).set(
            key,
            values[i],
          );
        }
      });
      if (res.ok) {
        for (let i = 0; i < batch.length; i++) {
          const [s, was] = batch[i];
          was.versionstamp = res.versionstamp;
          was.lastUsed = lastUses[i];
          written.set(s.ip, lastUses[i]);
        }
      } else {
        // One of them changed meanwhile: each is read and compared below.
        for (const [s] of batch) unsure.push(s);
      }
      batch = [];
      bytes = 0;
    };
    for (const s of sessions) {
      const was = seen.get(s.ip);
      if (
        was === undefined || was.user !== s.user || was.opened !== s.opened
      ) {
        unsure.push(s);
        continue;
      }
      const size = sessionBytes(s);
      if (batch.length === CHECKED_BATCH || bytes + size > CHECKED_BYTES) {
        await flushBatch();
      }
      batch.push([s, was]);
      bytes += size;
    }
    await flushBatch();
    for (let start = 0; start < unsure.length; start += SESSION_BATCH) {
      await this.pace()?.between();
      const batch = unsure.slice(start, start + SESSION_BATCH);
      const entries = await this.kv.getMany<StoredSession[]>(
        batch.map((s) => sessionKey(manager, s.ip)),
      );
      const writes: [Deno.KvEntryMaybe<StoredSession>, StoredSession][] = [];
      const done: [string, number][] = [];
      for (let i = 0; i < batch.length; i++) {
        const s = batch[i];
        const entry = entries[i];
        const v = entry.value;
        if (v?.user !== s.user || v.opened !== s.opened) continue;
        const lastUsed = Math.max(v.lastUsed ?? 0, s.lastUsed ?? 0);
        writes.push([entry, storedSession(s, lastUsed)]);
        done.push([s.ip, lastUsed]);
      }
      if (done.length === 0) continue;
      const res = await this.#writeSessions(manager, (op) => {
        for (const [entry, value] of writes) {
          op.check(entry).set(entry.key, value);
        }
      });
      if (!res.ok) continue; // changed meanwhile: the next flush tries again
      for (const [ip, lastUsed] of done) {
        written.set(ip, lastUsed);
        const s = batch.find((b) => b.ip === ip)!;
        this.#saw(manager, ip, storedSession(s, lastUsed), res.versionstamp);
      }
    }
    return written;
  }
}
