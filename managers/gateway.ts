/**
 * The running policy: the loaded rule and managers, the Deno KV store and
 * the persist timer. It decides every request for the proxy
 * ({@link Policy}) and answers the API ({@link Gateway}).
 *
 * @module
 */
import type {
  Decision,
  Meter,
  Policy,
  RequestFacts,
  Route,
} from "../proxy/policy.ts";
import { evaluate, printRule } from "../rule/mod.ts";
import {
  CommandError,
  type DiscoverResult,
  type EvalContext,
  type Gateway,
  type Grant,
  type Manager,
  type UserDb,
  type UserInfo,
} from "./types.ts";
import { formatSize } from "./units.ts";
import type { LoadedManagers } from "./config.ts";
import { type Session, SessionIpm } from "./session_ipm.ts";
import { Account, DwnConsR } from "./dwn_cons_r.ts";

const STOP = -1;
const DIRECT: Route = Object.freeze({ kind: "direct" });

/**
 * Several meters as one: STOP from any stops, else the longest wait. A
 * stopped chunk is counted by none: every quota is asked first whether it
 * would stop the chunk, and only then does each meter count it; should a
 * meter that cannot be asked beforehand stop it, the quotas that counted
 * it take it back. No allocation per chunk.
 */
export class CombinedMeter implements Meter {
  stopReason?: string;
  constructor(readonly meters: Meter[]) {}
  chunk(bytes: number): number {
    const meters = this.meters;
    for (let i = 0; i < meters.length; i++) {
      const m = meters[i];
      if (m instanceof Account && m.wouldStop()) {
        this.stopReason = m.stopReason;
        return STOP;
      }
    }
    let wait = 0;
    for (let i = 0; i < meters.length; i++) {
      const m = meters[i];
      const r = m.chunk(bytes);
      if (r === STOP) {
        for (let j = 0; j < i; j++) {
          const counted = meters[j];
          if (counted instanceof Account) counted.refund(bytes);
        }
        this.stopReason = m.stopReason;
        return STOP;
      }
      if (r > wait) wait = r;
    }
    return wait;
  }
}

/** The EvalContext of one request; the user is found at first use. */
class RequestContext implements EvalContext {
  #resolved = false;
  #session?: Session;
  constructor(
    readonly facts: RequestFacts,
    readonly sessions: SessionIpm[],
  ) {}
  #resolve(): Session | undefined {
    if (!this.#resolved) {
      this.#resolved = true;
      const now = this.facts.time.getTime();
      const creds = this.facts.proxyAuth;
      if (creds) {
        for (const s of this.sessions) {
          const found = s.proxySession(creds, now);
          if (found) {
            this.#session = found;
            return found;
          }
        }
      }
      for (const s of this.sessions) {
        const found = s.sessionAt(this.facts.clientIp, now);
        if (found) {
          this.#session = found;
          break;
        }
      }
    }
    return this.#session;
  }
  user(): string | undefined {
    return this.#resolve()?.user;
  }
  groups(userDb: string): string[] {
    return this.#resolve()?.groups[userDb] ?? [];
  }
}

/** Options of {@link GatewayRuntime}. */
export interface RuntimeOptions {
  persistIntervalMs: number;
  loginUrl?: string;
  clock?: () => Date;
}

/** The policy at work; made by `openGateway`. */
export class GatewayRuntime implements Policy, Gateway {
  readonly warnings: string[];
  readonly #loaded: LoadedManagers;
  readonly #kv: Deno.Kv;
  readonly #sessions: SessionIpm[];
  readonly #quotas: DwnConsR[];
  readonly #clock: () => Date;
  readonly #loginUrl?: string;
  #timer?: ReturnType<typeof setInterval>;
  #closed = false;

  constructor(loaded: LoadedManagers, kv: Deno.Kv, options: RuntimeOptions) {
    this.#loaded = loaded;
    this.#kv = kv;
    this.warnings = loaded.warnings;
    this.#clock = options.clock ?? (() => new Date());
    this.#loginUrl = options.loginUrl;
    this.#sessions = [...loaded.managers.values()].filter((m) =>
      m instanceof SessionIpm
    ) as SessionIpm[];
    this.#quotas = [...loaded.managers.values()].filter((m) =>
      m instanceof DwnConsR
    ) as DwnConsR[];
    if (options.persistIntervalMs > 0) {
      this.#timer = setInterval(() => {
        this.flush().catch((e) =>
          console.error(`pmproxy: saving consumption failed: ${e}`)
        );
      }, options.persistIntervalMs);
      Deno.unrefTimer(this.#timer);
    }
  }

  /** The loaded configuration (rule, managers, user databases). */
  get config(): LoadedManagers {
    return this.#loaded;
  }

  // ------------------------------------------------------------ the proxy

  /**
   * Decides a request. Synchronous, except the first time proxy
   * credentials are seen by a sessionIPM with `proxyAuth = true` (they are
   * checked with the user database, then remembered).
   */
  decide(facts: RequestFacts): Decision | Promise<Decision> {
    const creds = facts.proxyAuth;
    if (creds) {
      // No array unless credentials must go to a user database.
      const now = facts.time.getTime();
      let checks: Promise<void>[] | undefined;
      for (let i = 0; i < this.#sessions.length; i++) {
        const s = this.#sessions[i];
        if (s.needsProxyCheck(creds, now)) {
          (checks ??= []).push(s.checkProxyCredentials(creds).catch(() => {}));
        }
      }
      if (checks) return Promise.all(checks).then(() => this.decideSync(facts));
    }
    return this.decideSync(facts);
  }

  /**
   * Decides a request with what is in memory: no store, no database, no
   * awaiting (proxy credentials not checked yet count as wrong).
   */
  decideSync(facts: RequestFacts): Decision {
    // Reset cycles are checked at every request (one comparison each), so
    // open transfers see a reset even when this request does not reach
    // the quota; the persist timer checks them too.
    const now = facts.time.getTime();
    for (let i = 0; i < this.#quotas.length; i++) {
      this.#quotas[i].checkCycle(now);
    }
    const ctx = new RequestContext(facts, this.#sessions);
    const grant: Grant = { meters: [] };
    const managers = this.#loaded.managers;
    let falses: Manager[] | undefined;
    const allowed = evaluate(this.#loaded.rule, (name) => {
      const m = managers.get(name)!;
      const value = m.evaluate(ctx, grant);
      if (!value) (falses ??= []).push(m);
      return value;
    });
    if (!allowed) {
      // A false sessionIPM that takes proxy credentials: ask for them.
      const asking = falses?.find((m) =>
        m instanceof SessionIpm && m.realm !== undefined
      ) as SessionIpm | undefined;
      if (asking) {
        return {
          allowed: false,
          status: 407,
          reason: `${
            this.#forbidden(ctx, falses)
          } Or send proxy credentials (Proxy-Authorization: Basic) of a user of "${asking.auth.name}".`,
          loginUrl: this.#loginUrl,
          realm: asking.realm,
        };
      }
      return {
        allowed: false,
        status: 403,
        reason: this.#forbidden(ctx, falses),
        loginUrl: this.#loginUrl,
      };
    }
    if (grant.refusal) {
      return {
        allowed: false,
        status: grant.refusal.status,
        reason: grant.refusal.reason,
        loginUrl: this.#loginUrl,
      };
    }
    // A name twice in the rule attaches its meter twice: count once.
    const meters = grant.meters.length > 1
      ? [...new Set(grant.meters)]
      : grant.meters;
    return {
      allowed: true,
      route: grant.route ?? DIRECT,
      meter: meters.length === 0
        ? undefined
        : meters.length === 1
        ? meters[0]
        : new CombinedMeter(meters),
      user: ctx.user(),
    };
  }

  /** Why a request is refused; the refusal page adds the login link itself. */
  #forbidden(ctx: EvalContext, falses: Manager[] | undefined): string {
    if (!falses) {
      return `Forbidden by the rule ${
        printRule(this.#loaded.rule)
      }: it is false for this request.`;
    }
    const why = falses.map((m) =>
      m.whyFalse?.(ctx) ?? `${m.name} (${m.kind}) is false for this request`
    );
    return `Forbidden by the rule: ${[...new Set(why)].join("; ")}.`;
  }

  // -------------------------------------------------------------- the API

  discover(clientIp: string, url?: string): DiscoverResult {
    let host = "";
    let port = 0;
    if (url) {
      try {
        const u = new URL(url.includes("://") ? url : `http://${url}`);
        host = u.hostname.replace(/^\[|\]$/g, "");
        port = u.port ? Number(u.port) : u.protocol === "https:" ? 443 : 80;
      } catch {
        host = url;
      }
    }
    const facts: RequestFacts = {
      clientIp,
      time: this.#clock(),
      method: "GET",
      url: url ?? "",
      host,
      port,
    };
    const ctx = new RequestContext(facts, this.#sessions);
    const grant: Grant = { meters: [] };
    const matchMng: DiscoverResult["matchMng"] = {};
    const result = evaluate(this.#loaded.rule, (name) => {
      const m = this.#loaded.managers.get(name)!;
      const match = m.evaluate(ctx, grant);
      matchMng[name] = { match, type: m.kind };
      return match;
    });
    return { matchMng, result };
  }

  kindOf(manager: string): string | undefined {
    return this.#loaded.managers.get(manager)?.kind ??
      this.#loaded.userDbs.get(manager)?.kind;
  }

  #sessionIpm(manager: string, cmd: string): SessionIpm {
    const m = this.#loaded.managers.get(manager);
    if (m instanceof SessionIpm) return m;
    throw new CommandError({ Mng: manager, Cmd: cmd });
  }

  #dwnConsR(manager: string, cmd: string): DwnConsR {
    const m = this.#loaded.managers.get(manager);
    if (m instanceof DwnConsR) return m;
    throw new CommandError({ Mng: manager, Cmd: cmd });
  }

  open(
    manager: string,
    clientIp: string,
    user: string,
    pass: string,
  ): Promise<string> {
    try {
      return this.#sessionIpm(manager, "open").open(clientIp, user, pass);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Without arguments: stops the gateway (flush, close hooks, close the
   * store). With them: the API's `close` of a session.
   */
  close(): Promise<void>;
  close(manager: string, clientIp: string, secret: string): Promise<void>;
  close(manager?: string, clientIp?: string, secret?: string): Promise<void> {
    if (manager === undefined) return this.shutdown();
    try {
      return this.#sessionIpm(manager, "close").close(
        clientIp ?? "",
        secret ?? "",
      );
    } catch (e) {
      return Promise.reject(e);
    }
  }

  loggedUsers(
    manager: string,
    clientIp: string,
    secret: string,
  ): Record<string, string> {
    return this.#sessionIpm(manager, "get").loggedUsers(clientIp, secret);
  }

  renew(manager: string, clientIp: string, secret: string): Promise<string> {
    try {
      return Promise.resolve(
        this.#sessionIpm(manager, "renew").renew(clientIp, secret),
      );
    } catch (e) {
      return Promise.reject(e);
    }
  }

  check(manager: string, clientIp: string, secret: string): string {
    return this.#sessionIpm(manager, "check").check(clientIp, secret);
  }

  /** The session of the caller: a valid secret of the session at its IP. */
  #caller(clientIp: string, secret: string): Session {
    if (this.#sessions.length === 0) {
      throw new CommandError({
        message:
          "this gateway has no sessionIPM, so nobody can log in; add one to managers.toml",
      });
    }
    if (secret === "") throw new CommandError({ message: "empty JWT" });
    const now = this.#clock().getTime();
    const at = this.#sessions.find((s) => s.sessionAt(clientIp, now)) ??
      this.#sessions[0];
    return at.verify(clientIp, secret);
  }

  #isAdmin(user: string): boolean {
    return this.#loaded.admins.includes(user);
  }

  #userDb(name: string): UserDb {
    const db = this.#loaded.userDbs.get(name);
    if (!db) throw new Error(`user database "${name}" is not configured`);
    return db;
  }

  async userInfo(
    manager: string,
    clientIp: string,
    secret: string,
    other?: string,
  ): Promise<UserInfo> {
    const dwn = this.#dwnConsR(
      manager,
      other === undefined ? "get" : "getOther",
    );
    const caller = this.#caller(clientIp, secret);
    const target = other ?? caller.user;
    if (target !== caller.user && !this.#isAdmin(caller.user)) {
      throw new CommandError({ User: caller.user });
    }
    const db = this.#userDb(dwn.userDBN);
    let name = target;
    let groups: string[];
    const session = target === caller.user ? caller : this.#sessionOf(target);
    try {
      const record = await db.lookup(target);
      if (!record) throw new CommandError({ User: target, DB: db.name });
      name = record.name;
      groups = record.groups;
    } catch (e) {
      // The database is unreachable: what the login cached will do.
      if (e instanceof CommandError || !session) throw e;
      name = session.record.name;
      groups = session.groups[db.name] ?? [];
    }
    const quota = dwn.quotaOf(target, groups);
    const cons = dwn.consumptionOf(target, this.#clock().getTime());
    return {
      quota: formatSize(quota),
      groups,
      name,
      userName: target,
      consumption: formatSize(cons),
      bytesQuota: quota,
      bytesCons: cons,
      isAdmin: this.#isAdmin(target),
    };
  }

  #sessionOf(user: string): Session | undefined {
    for (const s of this.#sessions) {
      const found = s.sessionOfUser(user);
      if (found) return found;
    }
    return undefined;
  }

  async setConsumption(
    manager: string,
    clientIp: string,
    secret: string,
    user: string,
    bytes: number,
  ): Promise<void> {
    const dwn = this.#dwnConsR(manager, "set");
    const caller = this.#caller(clientIp, secret);
    if (!this.#isAdmin(caller.user)) {
      throw new CommandError({ User: caller.user });
    }
    const db = this.#userDb(dwn.userDBN);
    if (!this.#sessionOf(user) && !(await db.lookup(user))) {
      throw new CommandError({ User: user, DB: db.name });
    }
    await dwn.setConsumption(user, bytes);
  }

  show(manager: string): unknown {
    if (manager === "rules") {
      return { rule: printRule(this.#loaded.rule) };
    }
    const m = this.#loaded.managers.get(manager) ??
      this.#loaded.userDbs.get(manager);
    if (!m) throw new CommandError({ Mng: manager, Cmd: "show" });
    return m.show();
  }

  // ------------------------------------------------------------ lifecycle

  /** Writes consumption deltas (and other pending state) now. */
  async flush(): Promise<void> {
    // Every hook runs: a failing one (the sessions' reload, say) must not
    // keep the quotas after it from being written, at shutdown above all.
    let failure: { error: unknown } | undefined;
    for (const hook of this.#loaded.hooks.flush) {
      try {
        await hook();
      } catch (error) {
        failure ??= { error };
      }
    }
    if (failure) throw failure.error;
  }

  /** Stops the timer, flushes, runs the close hooks and closes the store. */
  async shutdown(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    try {
      await this.flush();
      for (const hook of this.#loaded.hooks.close) await hook();
    } finally {
      this.#kv.close();
    }
  }
}
