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
 * A session's last use is kept in memory at each request and written to
 * the store with the periodic flush (`persistInterval`) once it moved by
 * 5 minutes (or a tenth of `idleTimeout`, when that is less) since it was
 * last written, and exactly at shutdown: no store write per request, and
 * not every session at every flush. So after a restart, or on another
 * gateway sharing the store, a session counts as idle at most that step
 * (and a persist interval) earlier than it is. A session restored after a
 * restart that has been idle for `idleTimeout` since that
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
  BadCredentials,
  CommandError,
  type EvalContext,
  type Grant,
  type Manager,
  TooManyAttempts,
  type UserDb,
  type UserRecord,
} from "../types.ts";
import type { KindContext, Table } from "../config/kind_context.ts";
import { normalizeIp } from "../values/ip.ts";
import { optBool, optString } from "../config/table_fields.ts";
import { type SessionClaims, signJwt, verifyJwt } from "./_jwt.ts";
import type { ProxyCredentials } from "../../proxy/policy.ts";
import { ProxyAuthCache } from "./_proxy_auth_cache.ts";
import { fromStored, type Session, SessionStore } from "./_store.ts";
import { LoginThrottle } from "./_login_throttle.ts";
import type { StateStore } from "../state/store.ts";
import {
  refreshAtStart,
  refreshRestored,
  type SessionDbs,
} from "./_refresh.ts";

export type { Session } from "./_store.ts";
export { REFRESH_CONCURRENCY, REFRESH_TIMEOUT_MS } from "./_refresh.ts";

/**
 * One line per failed or throttled login on standard error, with the
 * address first so fail2ban can match it (the README has the filter):
 * `pmproxy: login failed: address=10.0.0.5 user="alice" via=api`.
 */
function logLogin(
  what: "failed" | "throttled",
  at: { ip: string; user: string; via: "api" | "proxy"; wait?: number },
): void {
  const retry = at.wait === undefined
    ? ""
    : ` retry_in=${Math.ceil(at.wait / 1000)}s`;
  console.warn(
    `pmproxy: login ${what}: address=${at.ip} user=${
      JSON.stringify(at.user)
    } via=${at.via}${retry}`,
  );
}

/**
 * How far a session's last use moves before a periodic flush writes it:
 * {@link LAST_USE_STEP_MS}, or a tenth of `idleTimeout` when that is less,
 * so that an idle timeout is decided within a tenth of itself across a
 * restart and between gateways.
 */
export function lastUseStepMs(idleTimeoutMs: number | undefined): number {
  return idleTimeoutMs === undefined
    ? LAST_USE_STEP_MS
    : Math.min(LAST_USE_STEP_MS, idleTimeoutMs / 10);
}

/**
 * A session's last use is written again by a periodic flush once it moved
 * this far (5 minutes) since it was written, not at every flush: with
 * 10,000 users logged in, writing every session's last use at every flush
 * was most of the flush's work.
 */
export const LAST_USE_STEP_MS = 5 * 60_000;

/** A `sessionIPM` manager. */
export class SessionIpm implements Manager {
  readonly kind = "sessionIPM";
  readonly #byIp = new Map<string, Session>();
  readonly #ipOfUser = new Map<string, string>();
  /** The sessions in the state store. */
  readonly #store: SessionStore;
  #key?: Uint8Array;
  /** Counts logins and logouts, so a reload does not undo one. */
  #generation = 0;
  /** The background refresh of the sessions restored at start. */
  #refreshing: Promise<void> = Promise.resolve();
  #stopped = false;
  /** Proxy credentials checked recently, and the sessions they give. */
  readonly #proxyAuth = new ProxyAuthCache<Session>();
  /** `auth` and every user database, as the refresh wants them. */
  readonly #dbs: SessionDbs;
  /** Failed logins slow the next tries (API and proxy credentials). */
  readonly #throttle: LoginThrottle;

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
  ) {
    this.#store = new SessionStore(name, lastUseStepMs(options.idleTimeoutMs));
    this.#throttle = new LoginThrottle(options.clock);
    this.#dbs = { auth, userDbs: options.userDbs };
  }

  /**
   * Loads the signing key and the open sessions from the state store, and
   * starts refreshing their users' groups from the directories in the
   * background ({@link whenRefreshed}).
   */
  async start(store: StateStore): Promise<void> {
    this.#store.open(store);
    this.#throttle.use(store);
    this.#key = await store.signingKey();
    await this.#reload();
    this.#refreshing = refreshRestored(this.#byIp, {
      ...this.#dbs,
      stopped: () => this.#stopped,
      close: (s) => this.#close(s),
      changed: (s) => this.#store.changed(s),
      warn: (message) => this.#warn(message),
    }).catch((e) => this.#warn(`cannot refresh the restored sessions: ${e}`));
  }

  /** Settles when the background refresh begun by `start` has finished. */
  whenRefreshed(): Promise<void> {
    return this.#refreshing;
  }

  /** Starts no more lookups and waits for those under way (bounded). */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#refreshing;
    // The gateway's last flush wrote the last uses that moved a step; the
    // others, exactly, now, so a restart continues from them.
    if (!this.#store.opened) return;
    try {
      await this.#store.flush(this.#byIp, { exact: true });
    } catch (e) {
      this.#warn(`cannot write the sessions' last use: ${e}`);
    }
  }

  #warn(message: string): void {
    console.warn(`pmproxy: warning: sessionIPM "${this.name}": ${message}`);
  }

  /**
   * Replaces the sessions in memory with the store's, so that gateways
   * sharing one store see each other's logins and logouts (within one
   * persist interval). Skipped when a login or logout here ran meanwhile.
   * A session restored from the store closes when it has been idle for
   * `idleTimeout` since its stored last use, or when `auth` is a mapDB
   * that no longer has its user; the mapDBs give it its groups as
   * configured now (a directory is asked later, in the background).
   */
  async #reload(): Promise<void> {
    const generation = this.#generation;
    const now = this.options.clock().getTime();
    const idle = this.options.idleTimeoutMs;
    const byIp = await this.#store.read(this.#byIp, {
      now,
      stillOpen: async (s) => {
        if (idle !== undefined && now - s.lastUsed >= idle) return false;
        return await refreshAtStart(s, this.#dbs);
      },
    });
    if (generation !== this.#generation) return;
    this.#byIp.clear();
    this.#ipOfUser.clear();
    for (const [ip, s] of byIp) {
      this.#byIp.set(ip, s);
      this.#ipOfUser.set(s.user, ip);
    }
  }

  /**
   * Writes pending deletions of closed sessions and the last use of the
   * sessions used since the last flush, then reads the sessions back from
   * the store, unless the store can tell that nobody else wrote one since
   * it last did (then what is in memory is what is stored).
   */
  async flush(): Promise<void> {
    if (!this.#store.opened) return;
    await this.#store.flush(this.#byIp);
    if (await this.#store.unchanged()) return;
    await this.#reload();
  }

  /**
   * Another gateway sharing the store opened or closed a session at `ip`:
   * take the stored one (replacing whatever this gateway had at that IP
   * and any other session of that user), or forget the one here when the
   * store has none. A session already known here is left as it is.
   */
  async sessionChanged(ip: string): Promise<void> {
    const stored = await this.#store.get(ip);
    const here = this.#byIp.get(ip);
    if (
      stored && here && here.user === stored.user &&
      here.opened === stored.opened
    ) return;
    // A reload under way read the store before this change.
    this.#generation++;
    if (here) this.#forget(here);
    if (!stored) return;
    const now = this.options.clock().getTime();
    const session = fromStored(ip, stored, now);
    if (!(await refreshAtStart(session, this.#dbs))) return;
    const oldIp = this.#ipOfUser.get(session.user);
    if (oldIp !== undefined) this.#forget(this.#byIp.get(oldIp)!);
    const there = this.#byIp.get(ip);
    if (there) this.#forget(there);
    this.#store.saved(session);
    this.#byIp.set(ip, session);
    this.#ipOfUser.set(session.user, ip);
  }

  /** The open session at that IP (closing it first when idle too long). */
  sessionAt(address: string, now?: number): Session | undefined {
    const ip = normalizeIp(address);
    const s = this.#byIp.get(ip);
    if (!s) return undefined;
    const idle = this.options.idleTimeoutMs;
    if (idle !== undefined) {
      const t = now ?? this.options.clock().getTime();
      if (t - s.lastUsed >= idle) {
        this.#close(s, true);
        return undefined;
      }
    }
    return s;
  }

  /**
   * How many sessions are open (an idle one counts until it is closed, at
   * its next use or the next flush).
   */
  get openCount(): number {
    return this.#byIp.size;
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

  /**
   * Closes a session here (idle, or its user gone); its stored copy is
   * deleted at the next flush (an idle one only when no other gateway
   * sharing the store used it since).
   */
  #close(s: Session, idle = false): void {
    this.#forget(s);
    this.#store.deleteLater(s, idle);
  }

  evaluate(ctx: EvalContext, _grant: Grant): boolean {
    const now = ctx.facts.time.getTime();
    if (ctx.explaining) {
      // An assumed user is logged in, for the question asked.
      if (ctx.explaining.assumedUser !== undefined) return true;
      return this.sessionAt(ctx.facts.clientIp, now) !== undefined;
    }
    const s = this.sessionAt(ctx.facts.clientIp, now);
    if (s) {
      s.lastUsed = now;
      return true;
    }
    const creds = ctx.facts.proxyAuth;
    return creds !== undefined && this.proxySession(creds, now) !== undefined;
  }

  explain(ctx: EvalContext, value: boolean): string {
    if (!value) return this.whyFalse(ctx);
    const assumed = ctx.explaining?.assumedUser;
    if (assumed !== undefined) {
      return `${assumed} is taken as logged in at ${ctx.facts.clientIp}`;
    }
    const s = this.sessionAt(ctx.facts.clientIp);
    return s
      ? `${s.user} is logged in at ${ctx.facts.clientIp} since ${
        new Date(s.opened).toISOString()
      }`
      : `proxy credentials of ${ctx.facts.proxyAuth?.user}`;
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
    const session = this.#proxyAuth.accepted(creds, now);
    if (session) session.lastUsed = now;
    return session;
  }

  /** True when these credentials must be checked by the database first. */
  needsProxyCheck(creds: ProxyCredentials, now: number): boolean {
    return this.options.proxyAuth === true &&
      this.proxySession(creds, now) === undefined &&
      !this.#proxyAuth.refusedRecently(creds, now);
  }

  /**
   * Checks proxy credentials with the user database and remembers them for
   * a few minutes. Wrong ones are not remembered (and throw).
   */
  async checkProxyCredentials(
    creds: ProxyCredentials,
    clientIp: string,
  ): Promise<void> {
    const ip = normalizeIp(clientIp);
    await this.#proxyAuth.ready();
    const wait = await this.#throttle.retryAfterMs(ip, creds.user);
    if (wait > 0) {
      logLogin("throttled", { ip, user: creds.user, via: "proxy", wait });
      throw new TooManyAttempts(Math.ceil(wait / 1000));
    }
    let record: UserRecord;
    try {
      record = await this.auth.authenticate(creds.user, creds.pass);
    } catch (e) {
      // Remember a wrong password or an unknown user, not a directory that
      // could not be reached (that is no verdict on the credentials).
      if (e instanceof BadCredentials) {
        this.#proxyAuth.refuse(creds, this.options.clock().getTime());
        logLogin("failed", { ip, user: creds.user, via: "proxy" });
        await this.#throttle.failed(ip, creds.user);
      }
      throw e;
    }
    await this.#throttle.succeeded(ip, creds.user);
    const groups = await this.#groupsOf(record.userName, record);
    const now = this.options.clock().getTime();
    this.#proxyAuth.accept(creds, {
      user: record.userName,
      ip: "",
      record,
      groups,
      opened: now,
      lastUsed: now,
    }, now);
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

  #sign(user: string, ip: string): Promise<string> {
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
    const ip = normalizeIp(address);
    const wait = await this.#throttle.retryAfterMs(ip, typed);
    if (wait > 0) {
      logLogin("throttled", { ip, user: typed, via: "api", wait });
      throw new TooManyAttempts(Math.ceil(wait / 1000));
    }
    let record: UserRecord;
    try {
      record = await this.auth.authenticate(typed, pass);
    } catch (e) {
      if (e instanceof BadCredentials) {
        logLogin("failed", { ip, user: typed, via: "api" });
        await this.#throttle.failed(ip, typed);
      }
      throw e;
    }
    await this.#throttle.succeeded(ip, typed);
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
    // Stored first: a login that other gateways sharing the store could
    // not see, and that a restart would lose, is refused, not half-made.
    const oldIp = this.#ipOfUser.get(user);
    try {
      await this.#store.save(session, oldIp);
    } catch (e) {
      throw new CommandError({
        message: `the login cannot be saved now (${
          e instanceof Error ? e.message : e
        }); try again in a moment`,
      });
    }
    const old = oldIp === undefined ? undefined : this.#byIp.get(oldIp);
    if (old) this.#forget(old);
    const there = this.#byIp.get(ip);
    if (there) this.#forget(there);
    this.#generation++;
    this.#byIp.set(ip, session);
    this.#ipOfUser.set(user, ip);
    return await this.#sign(user, ip);
  }

  /** The claims of a correctly signed secret; expired ones too. */
  async #claims(secret: string): Promise<SessionClaims> {
    if (secret === "") throw new CommandError({ message: "empty JWT" });
    const claims = await verifyJwt(this.#needKey(), secret);
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
  async verify(ip: string, secret: string): Promise<Session> {
    const claims = await this.#claims(secret);
    if (claims.exp * 1000 <= this.options.clock().getTime()) {
      throw new CommandError({ message: "expired token" });
    }
    return this.#loggedMismatch(ip, claims);
  }

  /** The user name of a valid secret of the session at `ip`. */
  async check(ip: string, secret: string): Promise<string> {
    return (await this.verify(ip, secret)).user;
  }

  /** Closes the session at `ip`. */
  async close(ip: string, secret: string): Promise<void> {
    const s = await this.verify(ip, secret);
    this.#forget(s);
    await this.#store.delete(s.ip);
  }

  /** IP -> user of the open sessions; any logged user may ask. */
  async loggedUsers(
    ip: string,
    secret: string,
  ): Promise<Record<string, string>> {
    await this.verify(ip, secret);
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
  async renew(ip: string, secret: string): Promise<string> {
    const claims = await this.#claims(secret);
    const s = this.#loggedMismatch(ip, claims);
    return await this.#sign(s.user, s.ip);
  }

  /** Number of open sessions (idle ones included until looked at). */
  get size(): number {
    return this.#byIp.size;
  }

  // ------------------------------------------------ the admin console

  /** The open sessions now (idle ones are closed as they are looked at). */
  openSessions(now?: number): Session[] {
    const t = now ?? this.options.clock().getTime();
    const out: Session[] = [];
    for (const ip of [...this.#byIp.keys()]) {
      const s = this.sessionAt(ip, t);
      if (s) out.push(s);
    }
    return out;
  }

  /**
   * Ends `user`'s session, as their own logout would (an administrator's
   * `close` with `info.userName`): deleted from the store at once and
   * announced to the other gateways sharing it. Answers the address it was
   * at, or undefined when the user has no session here. Proxy credentials
   * (`proxyAuth`) are not a session: a client sending them goes on.
   */
  async endSessionOf(user: string): Promise<string | undefined> {
    const s = this.sessionOfUser(user);
    if (!s) return undefined;
    this.#forget(s);
    await this.#store.delete(s.ip);
    return s.ip;
  }
}

/** Builds a `sessionIPM` from its table. */
export function sessionIpmFromTable(
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
  ctx.onStart((store) => manager.start(store));
  ctx.onFlush(() => manager.flush());
  ctx.onClose(() => manager.stop());
  return manager;
}
