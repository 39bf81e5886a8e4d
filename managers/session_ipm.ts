/**
 * `sessionIPM`: true when the client's IP address has an open session made
 * through this manager. People open a session with the API's `open` (user
 * and password checked by the user database named by `auth`) and get a
 * secret (a JWT) for the other commands.
 *
 * ```toml
 * [[sessionIPM]]
 *   name = "sessions"
 *   auth = "map"            # a mapDB or adDB
 *   # idleTimeout = "2h"    # a session unused that long is closed
 *   # proxyAuth = true      # also accept Proxy-Authorization: Basic credentials
 *   # realm = "pmproxy"     # the realm of the 407 answer asking for them
 * ```
 *
 * With `proxyAuth = true` a request that carries `Proxy-Authorization:
 * Basic` credentials of a user of `auth` is that user's, without opening a
 * session at its IP (clients behind one address, scripts). Checked
 * credentials are remembered for five minutes (as a SHA-256 digest), so the
 * database is asked once, not at every request. When the rule needs this
 * manager and a request has neither a session nor credentials, the answer
 * is 407 with the realm, so browsers ask for them.
 *
 * One IP per user: a login from another IP ends the user's old session, and
 * a login at an IP ends the session of whoever was there. Sessions are kept
 * in Deno KV and survive a restart. The secret is signed with a key made on
 * first start and kept in KV; its claims are `user`, `ip` and `exp`.
 *
 * A session's last use is kept in memory at each request and written to KV
 * with the periodic flush (`persistInterval`) and at shutdown, for the
 * sessions used since the last flush: no KV write per request. A session
 * restored after a restart that has been idle for `idleTimeout` since that
 * last use is closed (a stored session without one, written by an older
 * version, counts as used at the restart).
 *
 * Restored sessions get their user's groups as the user databases hold them
 * now: a mapDB's at once (it is in `managers.toml`), a directory's (adDB) in
 * the background after the start, at most {@link REFRESH_CONCURRENCY}
 * lookups at a time, each within {@link REFRESH_TIMEOUT_MS} (and the adDB's
 * own `timeout`). A session whose user the `auth` database no longer has is
 * closed. When the directory cannot be asked, the sessions keep the groups
 * they had at login, and a warning says so once. An adDB without a service
 * account (`user`/`pass`) is not asked: its anonymous search may be refused
 * or see no users, which would look like users that are gone.
 *
 * @module
 */
import {
  CommandError,
  type EvalContext,
  type Grant,
  type Manager,
  type UserDb,
  type UserRecord,
} from "./types.ts";
import type { KindContext, Table } from "./kinds.ts";
import { optBool, optString } from "./_kind_table.ts";
import { type SessionClaims, signJwt, verifyJwt } from "./_jwt.ts";
import { AdDb } from "./ad_db.ts";
import { createHash, timingSafeEqual } from "node:crypto";
import type { ProxyCredentials } from "../proxy/policy.ts";

/** How long checked proxy credentials are trusted without asking the database again. */
const PROXY_AUTH_TTL_MS = 5 * 60_000;
/** At most this many users' proxy credentials are remembered. */
const PROXY_AUTH_MAX = 10_000;
/**
 * Wrong proxy credentials are remembered this long, so a client retrying
 * them (or guessing) does not reach the user database at every request.
 */
const PROXY_REFUSED_TTL_MS = 30_000;

function digestOf(creds: ProxyCredentials): Uint8Array {
  return new Uint8Array(
    createHash("sha256").update(`${creds.user}\u0000${creds.pass}`).digest(),
  );
}

interface CheckedCredentials {
  digest: Uint8Array;
  session: Session;
  until: number;
}

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

/** KV key of the installation's secret-signing key. */
export const JWT_KEY: Deno.KvKey = ["sessionIPM", "jwtKey"];

/** Loads the signing key from KV, making it on first start. */
export async function loadJwtKey(kv: Deno.Kv): Promise<Uint8Array> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const entry = await kv.get<Uint8Array>(JWT_KEY);
    if (entry.value instanceof Uint8Array) return entry.value;
    const key = crypto.getRandomValues(new Uint8Array(32));
    const res = await kv.atomic().check(entry).set(JWT_KEY, key).commit();
    if (res.ok) return key;
  }
  throw new Error("cannot store the session signing key in the state store");
}

/**
 * One spelling per address: an IPv4-mapped IPv6 address (`::ffff:10.0.0.5`,
 * as a dual-stack socket shows an IPv4 client) is its IPv4 address, so a
 * login through one listener counts at the other.
 */
export function sessionIp(ip: string): string {
  if (ip.length > 7 && ip.charCodeAt(0) === 58 /* ":" */) {
    const lower = ip.toLowerCase();
    if (lower.startsWith("::ffff:") && ip.includes(".")) return ip.slice(7);
  }
  return ip;
}

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

/** Restored sessions' users looked up at the same time, at most. */
export const REFRESH_CONCURRENCY = 4;
/** The longest one lookup of a restored session's user may take (ms). */
export const REFRESH_TIMEOUT_MS = 10_000;
/**
 * After this many failed lookups in a row a user database is not asked
 * again in this refresh (it is down: each would wait for its timeout).
 */
const REFRESH_GIVE_UP = 3;

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
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no answer within ${ms / 1000} s`)),
      ms,
    );
  });
  try {
    return await Promise.race([db.lookup(user), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A `sessionIPM` manager. */
export class SessionIpm implements Manager {
  readonly kind = "sessionIPM";
  readonly #byIp = new Map<string, Session>();
  readonly #ipOfUser = new Map<string, string>();
  #kv?: Deno.Kv;
  #key?: Uint8Array;
  /** Counts logins and logouts, so a reload does not undo one. */
  #generation = 0;
  /**
   * Sessions closed here (idle, or their user is gone), deleted from KV on
   * the next flush.
   */
  #idleClosed: Session[] = [];
  /**
   * The `lastUsed` each session has in KV as far as this gateway knows; a
   * session whose `lastUsed` differs is written at the next flush.
   */
  #savedLastUsed = new WeakMap<Session, number>();
  /** The background refresh of the sessions restored at start. */
  #refreshing: Promise<void> = Promise.resolve();
  #stopped = false;
  /** Proxy credentials checked recently, by user name. */
  readonly #proxyChecked = new Map<string, CheckedCredentials>();
  /** User name → digest and expiry of credentials the database refused. */
  readonly #proxyRefused = new Map<
    string,
    { digest: Uint8Array; until: number }
  >();

  constructor(
    readonly name: string,
    /** The user database that checks passwords. */
    readonly auth: UserDb,
    readonly options: {
      /** How long a secret is valid (ms). */
      jwtExpirationMs: number;
      clock: () => Date;
      /** Every configured user database (for the session's groups). */
      userDbs: UserDb[];
      /** A session unused this long (ms) closes. */
      idleTimeoutMs?: number;
      /** Accept `Proxy-Authorization: Basic` credentials. */
      proxyAuth?: boolean;
      /** The realm of a 407 answer. */
      realm?: string;
    },
  ) {}

  /**
   * Loads the signing key and the open sessions from KV, and starts
   * refreshing their users' groups from the directories in the background
   * ({@link whenRefreshed}).
   */
  async start(kv: Deno.Kv, key?: Uint8Array): Promise<void> {
    this.#kv = kv;
    this.#key = key ?? await loadJwtKey(kv);
    await this.#reload();
    this.#refreshing = this.#refreshRestored().catch((e) =>
      this.#warn(`cannot refresh the restored sessions: ${e}`)
    );
  }

  /** Settles when the background refresh begun by `start` has finished. */
  whenRefreshed(): Promise<void> {
    return this.#refreshing;
  }

  /** Starts no more lookups and waits for those under way (bounded). */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#refreshing;
  }

  #warn(message: string): void {
    console.warn(`pmproxy: warning: sessionIPM "${this.name}": ${message}`);
  }

  /**
   * Looks up the user of every session restored at start in each user
   * database that is not a mapDB (those were read in `#restored`), a few at
   * a time. Found: the session takes the user's name and groups (written
   * to KV at the next flush). Not found in `auth`: the session is closed.
   * A failure keeps the stored groups; the first one of each database is
   * told.
   */
  async #refreshRestored(): Promise<void> {
    const dbs = this.options.userDbs.filter((db) =>
      db.kind !== "mapDB" && !(db instanceof AdDb && !db.hasServiceAccount)
    );
    if (dbs.length === 0 || this.#byIp.size === 0) return;
    const jobs: [Session, UserDb][] = [];
    for (const s of this.#byIp.values()) {
      for (const db of dbs) jobs.push([s, db]);
    }
    const failures = new Map<UserDb, number>();
    let next = 0;
    const work = async () => {
      while (!this.#stopped && next < jobs.length) {
        const [s, db] = jobs[next++];
        if (this.#byIp.get(s.ip) !== s) continue; // closed meanwhile
        if ((failures.get(db) ?? 0) >= REFRESH_GIVE_UP) continue;
        let found: UserRecord | undefined;
        try {
          found = await lookupWithin(db, s.user, REFRESH_TIMEOUT_MS);
        } catch (e) {
          const failed = (failures.get(db) ?? 0) + 1;
          failures.set(db, failed);
          if (failed === 1) {
            this.#warn(
              `cannot refresh the groups of the sessions restored at start from ${db.kind} "${db.name}" (${
                e instanceof Error ? e.message : e
              }); they keep the groups they had at login until their users log in again`,
            );
          }
          continue;
        }
        failures.set(db, 0);
        if (this.#byIp.get(s.ip) !== s) continue;
        this.#refreshed(s, db, found);
      }
    };
    const workers: Promise<void>[] = [];
    for (let i = 0; i < Math.min(REFRESH_CONCURRENCY, jobs.length); i++) {
      workers.push(work());
    }
    await Promise.all(workers);
  }

  /** Applies one database's answer about a restored session's user. */
  #refreshed(s: Session, db: UserDb, found: UserRecord | undefined): void {
    if (!found) {
      if (db === this.auth) {
        this.#forget(s);
        this.#idleClosed.push(s);
        return;
      }
      if (!(db.name in s.groups)) return;
      delete s.groups[db.name];
    } else {
      const sameName = db !== this.auth || s.record.name === found.name;
      if (sameName && sameList(s.groups[db.name], found.groups)) return;
      if (db === this.auth) s.record = found;
      s.groups[db.name] = found.groups;
    }
    // Changed: written with the next flush.
    this.#savedLastUsed.set(s, -1);
  }

  /**
   * Replaces the sessions in memory with the store's, so that gateways
   * sharing one store see each other's logins and logouts (within one
   * persist interval). Skipped when a login or logout here ran meanwhile.
   */
  async #reload(): Promise<void> {
    const kv = this.#kv!;
    const generation = this.#generation;
    const now = this.options.clock().getTime();
    const byIp = new Map<string, Session>();
    for await (
      const entry of kv.list<StoredSession>({
        prefix: ["sessionIPM", this.name, "session"],
      })
    ) {
      const ip = entry.key[3] as string;
      const s = entry.value;
      const known = this.#byIp.get(ip);
      if (known && known.user === s.user && known.opened === s.opened) {
        // Used through another gateway sharing the store more recently.
        if (s.lastUsed !== undefined && s.lastUsed > known.lastUsed) {
          known.lastUsed = s.lastUsed;
          this.#savedLastUsed.set(known, s.lastUsed);
        }
        byIp.set(ip, known);
        continue;
      }
      const restored = await this.#restored(ip, s, now);
      if (restored) byIp.set(ip, restored);
    }
    if (generation !== this.#generation) return;
    this.#byIp.clear();
    this.#ipOfUser.clear();
    for (const [ip, s] of byIp) {
      this.#byIp.set(ip, s);
      this.#ipOfUser.set(s.user, ip);
    }
  }

  /**
   * A stored session as the user databases held in memory (mapDB) see its
   * user now: undefined when `auth` has no such user any more or when it
   * has been idle for `idleTimeout` since its stored last use (its stored
   * copy is deleted at the next flush), with their groups as configured
   * now. A directory (adDB) is not asked here; its groups stay as at login.
   */
  async #restored(
    ip: string,
    stored: StoredSession,
    now: number,
  ): Promise<Session | undefined> {
    const session: Session = {
      user: stored.user,
      record: stored.record,
      groups: { ...stored.groups },
      opened: stored.opened,
      ip,
      lastUsed: stored.lastUsed ?? now,
    };
    // Unknown when stored without it: written at the next flush.
    this.#savedLastUsed.set(session, stored.lastUsed ?? -1);
    const idle = this.options.idleTimeoutMs;
    if (idle !== undefined && now - session.lastUsed >= idle) {
      this.#idleClosed.push(session);
      return undefined;
    }
    for (const db of this.options.userDbs) {
      if (db.kind !== "mapDB") continue;
      const found = await db.lookup(stored.user);
      if (db === this.auth) {
        if (!found) {
          this.#idleClosed.push(session);
          return undefined;
        }
        session.record = found;
      }
      if (found) session.groups[db.name] = found.groups;
      else delete session.groups[db.name];
    }
    return session;
  }

  /**
   * Writes pending deletions of idle sessions and the last use of the
   * sessions used since the last flush, then reads the sessions back from
   * the store.
   */
  async flush(): Promise<void> {
    const kv = this.#kv;
    if (!kv) return;
    const idle = this.#idleClosed;
    this.#idleClosed = [];
    for (const s of idle) {
      // Only that session's stored copy: a login at the same IP since
      // (here or on another gateway sharing the store) must stay.
      const key = this.#kvKey(s.ip);
      const entry = await kv.get<StoredSession>(key);
      if (entry.value?.user !== s.user || entry.value.opened !== s.opened) {
        continue;
      }
      await kv.atomic().check(entry).delete(key).commit();
    }
    await this.#writeLastUsed(kv);
    await this.#reload();
  }

  /**
   * Writes the sessions whose last use changed since they were written.
   * Each is written only over its own stored copy (same user, same login
   * time), keeping the later last use when another gateway sharing the
   * store wrote one meanwhile; one not written is tried at the next flush.
   */
  async #writeLastUsed(kv: Deno.Kv): Promise<void> {
    const touched: Session[] = [];
    for (const s of this.#byIp.values()) {
      if (this.#savedLastUsed.get(s) !== s.lastUsed) touched.push(s);
    }
    for (let start = 0; start < touched.length; start += WRITE_BATCH) {
      const batch = touched.slice(start, start + WRITE_BATCH);
      const entries = await kv.getMany<StoredSession[]>(
        batch.map((s) => this.#kvKey(s.ip)),
      );
      const op = kv.atomic();
      const written: [Session, number][] = [];
      for (let i = 0; i < batch.length; i++) {
        const s = batch[i];
        const entry = entries[i];
        const v = entry.value;
        if (v?.user !== s.user || v.opened !== s.opened) continue;
        const lastUsed = Math.max(v.lastUsed ?? 0, s.lastUsed);
        const stored: StoredSession = {
          user: s.user,
          record: s.record,
          groups: s.groups,
          opened: s.opened,
          lastUsed,
        };
        op.check(entry).set(entry.key, stored);
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

  #kvKey(ip: string): Deno.KvKey {
    return ["sessionIPM", this.name, "session", ip];
  }

  /** The open session at that IP (closing it first when idle too long). */
  sessionAt(address: string, now?: number): Session | undefined {
    const ip = sessionIp(address);
    const s = this.#byIp.get(ip);
    if (!s) return undefined;
    const idle = this.options.idleTimeoutMs;
    if (idle !== undefined) {
      const t = now ?? this.options.clock().getTime();
      if (t - s.lastUsed >= idle) {
        this.#forget(s);
        this.#idleClosed.push(s);
        return undefined;
      }
    }
    return s;
  }

  /** The open session of that user, if any. */
  sessionOfUser(user: string): Session | undefined {
    const ip = this.#ipOfUser.get(user);
    return ip === undefined ? undefined : this.sessionAt(ip);
  }

  #forget(s: Session): void {
    this.#generation++;
    this.#byIp.delete(s.ip);
    if (this.#ipOfUser.get(s.user) === s.ip) this.#ipOfUser.delete(s.user);
  }

  evaluate(ctx: EvalContext, _grant: Grant): boolean {
    const now = ctx.facts.time.getTime();
    const s = this.sessionAt(ctx.facts.clientIp, now);
    if (s) {
      s.lastUsed = now;
      return true;
    }
    const creds = ctx.facts.proxyAuth;
    return creds !== undefined && this.proxySession(creds, now) !== undefined;
  }

  /** Why `evaluate` was false, for the refusal page. */
  whyFalse(ctx: EvalContext): string {
    const creds = ctx.facts.proxyAuth;
    if (this.options.proxyAuth && creds) {
      return `${this.name}: the proxy credentials of "${creds.user}" are wrong`;
    }
    return `${this.name}: not logged in at ${ctx.facts.clientIp}${
      this.options.proxyAuth ? " and no proxy credentials were sent" : ""
    }`;
  }

  /**
   * With `proxyAuth = true`: the session of credentials checked recently
   * (synchronous: no database access). Undefined otherwise.
   */
  proxySession(creds: ProxyCredentials, now: number): Session | undefined {
    if (!this.options.proxyAuth) return undefined;
    const checked = this.#proxyChecked.get(creds.user);
    if (!checked || checked.until <= now) return undefined;
    const digest = digestOf(creds);
    if (!timingSafeEqual(digest, checked.digest)) return undefined;
    checked.session.lastUsed = now;
    return checked.session;
  }

  /** True when these credentials must be checked by the database first. */
  needsProxyCheck(creds: ProxyCredentials, now: number): boolean {
    return this.options.proxyAuth === true &&
      this.proxySession(creds, now) === undefined &&
      !this.#refusedRecently(creds, now);
  }

  #refusedRecently(creds: ProxyCredentials, now: number): boolean {
    const refused = this.#proxyRefused.get(creds.user);
    if (!refused) return false;
    if (refused.until <= now) {
      this.#proxyRefused.delete(creds.user);
      return false;
    }
    return timingSafeEqual(digestOf(creds), refused.digest);
  }

  /**
   * Checks proxy credentials with the user database and remembers them for
   * a few minutes. Wrong ones are not remembered (and throw).
   */
  async checkProxyCredentials(creds: ProxyCredentials): Promise<void> {
    let record: UserRecord;
    try {
      record = await this.auth.authenticate(creds.user, creds.pass);
    } catch (e) {
      // Remember a wrong password or an unknown user, not a directory that
      // could not be reached (that is no verdict on the credentials).
      const body = e instanceof CommandError ? e.body : undefined;
      if (body && (body.message === "Incorrect password" || "User" in body)) {
        if (this.#proxyRefused.size >= PROXY_AUTH_MAX) {
          this.#proxyRefused.clear();
        }
        this.#proxyRefused.set(creds.user, {
          digest: digestOf(creds),
          until: this.options.clock().getTime() + PROXY_REFUSED_TTL_MS,
        });
      }
      throw e;
    }
    const groups = await this.#groupsOf(record.userName, record);
    const now = this.options.clock().getTime();
    if (this.#proxyChecked.size >= PROXY_AUTH_MAX) {
      for (const [user, c] of this.#proxyChecked) {
        if (c.until <= now) this.#proxyChecked.delete(user);
      }
      if (this.#proxyChecked.size >= PROXY_AUTH_MAX) this.#proxyChecked.clear();
    }
    this.#proxyChecked.set(creds.user, {
      digest: digestOf(creds),
      until: now + PROXY_AUTH_TTL_MS,
      session: {
        user: record.userName,
        ip: "",
        record,
        groups,
        opened: now,
        lastUsed: now,
      },
    });
  }

  /** The realm of a 407 answer, when this manager takes proxy credentials. */
  get realm(): string | undefined {
    return this.options.proxyAuth
      ? (this.options.realm ?? "pmproxy")
      : undefined;
  }

  async #groupsOf(
    user: string,
    record: UserRecord,
  ): Promise<Record<string, string[]>> {
    const groups: Record<string, string[]> = {
      [this.auth.name]: record.groups,
    };
    for (const db of this.options.userDbs) {
      if (db === this.auth) continue;
      try {
        const other = await db.lookup(user);
        if (other) groups[db.name] = other.groups;
      } catch {
        // Another database being down must not prevent the login.
      }
    }
    return groups;
  }

  show(): unknown {
    const out: Record<string, unknown> = {
      name: this.name,
      auth: this.auth.name,
    };
    if (this.options.idleTimeoutMs !== undefined) {
      out.idleTimeoutMs = this.options.idleTimeoutMs;
    }
    if (this.options.proxyAuth) out.proxyAuth = true;
    return out;
  }

  #sign(user: string, ip: string): string {
    const exp = Math.floor(
      (this.options.clock().getTime() + this.options.jwtExpirationMs) / 1000,
    );
    return signJwt(this.#needKey(), { user, ip, exp });
  }

  #needKey(): Uint8Array {
    if (!this.#key) {
      throw new Error(`sessionIPM "${this.name}" is not started`);
    }
    return this.#key;
  }

  /**
   * Checks the password, opens the session at `ip` (ending the user's
   * session at another IP and anybody else's at this one) and answers the
   * secret.
   */
  async open(address: string, typed: string, pass: string): Promise<string> {
    const ip = sessionIp(address);
    const record = await this.auth.authenticate(typed, pass);
    // The database's spelling of the name: a directory that matches names
    // ignoring case must not give "ALICE" and "alice" two sessions and quotas.
    const user = record.userName;
    const groups = await this.#groupsOf(user, record);
    const now = this.options.clock().getTime();
    const session: Session = {
      user,
      ip,
      record,
      groups,
      opened: now,
      lastUsed: now,
    };
    const oldIp = this.#ipOfUser.get(user);
    const there = this.#byIp.get(ip);
    if (oldIp !== undefined) this.#forget(this.#byIp.get(oldIp)!);
    if (there) this.#forget(there);
    this.#generation++;
    this.#byIp.set(ip, session);
    this.#ipOfUser.set(user, ip);
    if (this.#kv) {
      const op = this.#kv.atomic();
      if (oldIp !== undefined && oldIp !== ip) op.delete(this.#kvKey(oldIp));
      const stored: StoredSession = {
        user,
        record,
        groups,
        opened: now,
        lastUsed: now,
      };
      op.set(this.#kvKey(ip), stored);
      await op.commit();
      this.#savedLastUsed.set(session, now);
    }
    return this.#sign(user, ip);
  }

  /** The claims of a correctly signed secret; expired ones too. */
  #claims(secret: string): SessionClaims {
    if (secret === "") throw new CommandError({ message: "empty JWT" });
    const claims = verifyJwt(this.#needKey(), secret);
    if (!claims) {
      throw new CommandError({
        message:
          "invalid secret: it was not made by this gateway; log in again",
      });
    }
    return claims;
  }

  #loggedMismatch(ip: string, claims: SessionClaims): Session {
    const s = this.sessionAt(ip);
    if (!s || s.user !== claims.user) {
      throw new CommandError({ Logged: s?.user ?? "", Decrypted: claims.user });
    }
    return s;
  }

  /**
   * The session at `ip` when `secret` is a valid, unexpired secret of its
   * user. Throws the original's error bodies otherwise.
   */
  verify(ip: string, secret: string): Session {
    const claims = this.#claims(secret);
    if (claims.exp * 1000 <= this.options.clock().getTime()) {
      throw new CommandError({ message: "expired token" });
    }
    return this.#loggedMismatch(ip, claims);
  }

  /** The user name of a valid secret of the session at `ip`. */
  check(ip: string, secret: string): string {
    return this.verify(ip, secret).user;
  }

  /** Closes the session at `ip`. */
  async close(ip: string, secret: string): Promise<void> {
    const s = this.verify(ip, secret);
    this.#forget(s);
    await this.#kv?.delete(this.#kvKey(s.ip));
  }

  /** IP → user of the open sessions; any logged user may ask. */
  loggedUsers(ip: string, secret: string): Record<string, string> {
    this.verify(ip, secret);
    const out: Record<string, string> = {};
    const now = this.options.clock().getTime();
    for (const addr of [...this.#byIp.keys()]) {
      const s = this.sessionAt(addr, now);
      if (s) out[addr] = s.user;
    }
    return out;
  }

  /**
   * A new secret for the user logged at `ip`, given one of their secrets
   * (expired or not) signed by this gateway.
   */
  renew(ip: string, secret: string): string {
    const claims = this.#claims(secret);
    const s = this.#loggedMismatch(ip, claims);
    return this.#sign(s.user, s.ip);
  }

  /** Number of open sessions (idle ones included until looked at). */
  get size(): number {
    return this.#byIp.size;
  }
}

/** Builds a `sessionIPM` from its table. */
export function sessionIpmFromFields(
  table: Table,
  ctx: KindContext,
): SessionIpm {
  const authName = optString(table, "auth", ctx.fail, `auth = "map"`);
  if (authName === undefined) {
    return ctx.fail(
      "auth",
      `sessionIPM "${ctx.name}" needs "auth", the user database that checks passwords; for example auth = "${
        ctx.userDbNames[0] ?? "map"
      }"`,
    );
  }
  const auth = ctx.userDb("auth", authName);
  const idleTimeoutMs = ctx.duration("idleTimeout");
  if (idleTimeoutMs !== undefined && idleTimeoutMs <= 0) {
    ctx.fail("idleTimeout", `"idleTimeout" must be more than 0, like "2h"`);
  }
  const proxyAuth = optBool(table, "proxyAuth", ctx.fail);
  const realm = optString(table, "realm", ctx.fail, `realm = "pmproxy"`);
  const manager = new SessionIpm(ctx.name, auth, {
    jwtExpirationMs: ctx.jwtExpirationMs,
    clock: ctx.clock,
    userDbs: ctx.userDbNames.map((n) => ctx.userDb("auth", n)),
    idleTimeoutMs,
    proxyAuth,
    realm,
  });
  ctx.onStart((kv) => manager.start(kv));
  ctx.onFlush(() => manager.flush());
  ctx.onClose(() => manager.stop());
  return manager;
}
