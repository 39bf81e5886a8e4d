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
import {
  type Compiled,
  compileRule,
  evaluate,
  printRule,
  ruleNames,
} from "../rule/mod.ts";
import {
  BadCredentials,
  type Caller,
  CommandError,
  type DiscoverResult,
  type EvalContext,
  type ExplainQuery,
  type Explanation,
  type Gateway,
  type Grant,
  type LiveFigures,
  type Manager,
  type ManagerSummary,
  type ProxyFigures,
  TooManyAttempts,
  type UsageQuery,
  type UsageReport,
  type UserDb,
  type UserInfo,
  type UsersPage,
  type UsersQuery,
} from "./types.ts";
import { formatSize } from "./values/units.ts";
import type { LoadedManagers } from "./config/loader.ts";
import type { StateChange, StateStore } from "./state/store.ts";
import { WritePace } from "./state/pace.ts";
import { type Session, SessionIpm } from "./sessions/session_ipm.ts";
import { DwnConsR, type QuotaStatus } from "./quotas/dwn_cons_r.ts";
import { CombinedMeter } from "./resources/combined_meter.ts";
import { RequestContext } from "./request_context.ts";
import { normalizeIp } from "./values/ip.ts";
import { every, type Timer } from "../proxy/timers.ts";
import {
  type GatewaySnapshot,
  type GatewayStats,
  newGatewayStats,
} from "./stats.ts";

const DIRECT: Route = Object.freeze({ kind: "direct" });

// The console's questions and `explain` are an administrator's, and a
// gateway may run for weeks without one: they load at the first
// (tests/start_graph_test.ts).
const consoleModule = () => import("./console.ts");
const explainModule = () => import("./explain.ts");

/** What the compiled rule's names see of the request being decided. */
interface Deciding {
  ctx: RequestContext;
  grant: Grant;
  /** The managers that answered false, for the refusal page. */
  falses: Manager[] | undefined;
}

/**
 * The rule of `loaded` compiled for {@link GatewayRuntime.decideSync}: each
 * name bound to its manager once, here, rather than looked up at every
 * request; evaluation order and short-circuit as `evaluate`'s.
 */
function compileDecision(loaded: LoadedManagers): Compiled<Deciding> {
  return compileRule<Deciding>(loaded.rule, (name) => {
    const m = loaded.managers.get(name)!;
    return (d) => {
      const value = m.evaluate(d.ctx, d.grant);
      if (!value) (d.falses ??= []).push(m);
      return value;
    };
  });
}

/** The meters as one (each once), for the decision's `upMeter`. */
function oneMeter(meters: Meter[]): Meter {
  const each = meters.length > 1 ? [...new Set(meters)] : meters;
  return each.length === 1 ? each[0] : new CombinedMeter(each);
}

/** Runs every hook, telling (not throwing) the failures. */
async function runAll(hooks: (() => Promise<void>)[]): Promise<void> {
  for (const hook of hooks) {
    try {
      await hook();
    } catch (e) {
      console.error(`pmproxy: stopping a manager: ${e}`);
    }
  }
}

/** Options of {@link GatewayRuntime}. */
export interface RuntimeOptions {
  persistIntervalMs: number;
  loginUrl?: string;
  clock?: () => Date;
  /**
   * Reads and loads `managers.toml` again, for {@link GatewayRuntime.reload}
   * (its managers are not started).
   */
  load?: () => Promise<LoadedManagers>;
}

/** What a live reload did. */
export interface ReloadResult {
  /** The new configuration's warnings (`file:line: what`). */
  warnings: string[];
}

/** The policy at work; made by `openGateway`. */
export class GatewayRuntime implements Policy, Gateway {
  /** Its counters (see stats.ts); {@link snapshot} reads them with the rest. */
  readonly stats: GatewayStats = newGatewayStats();
  #loaded: LoadedManagers;
  readonly #store: StateStore;
  #unsubscribe: () => void;
  #sessions: SessionIpm[] = [];
  #quotas: DwnConsR[] = [];
  /** The loaded rule, compiled (see compileDecision). */
  #rule!: Compiled<Deciding>;
  readonly #load?: () => Promise<LoadedManagers>;
  /** A reload under way: a second one waits for it. */
  #reloading: Promise<unknown> = Promise.resolve();
  readonly #clock: () => Date;
  readonly #loginUrl?: string;
  #timer?: Timer;
  /** The pace of the periodic flush (managers/state/pace.ts). */
  readonly #pace = new WritePace();
  /** The periodic flush under way: the next tick leaves it be. */
  #periodic?: Promise<void>;
  #closed = false;
  /** Reads the proxy's counters for the console (see useProxyFigures). */
  #proxyFigures: () => ProxyFigures | undefined = () => undefined;

  constructor(
    loaded: LoadedManagers,
    store: StateStore,
    options: RuntimeOptions,
  ) {
    this.#loaded = loaded;
    this.#store = store;
    store.pace = this.#pace;
    // Changes other gateways sharing the store announce, seen at once
    // rather than at the next flush.
    this.#unsubscribe = store.subscribe((change) => {
      this.#applyChange(change).catch((e) =>
        this.#failed("applying a change from another gateway", e)
      );
    });
    this.#clock = options.clock ?? (() => new Date());
    this.#loginUrl = options.loginUrl;
    this.#load = options.load;
    this.#use(loaded);
    this.setPersistInterval(options.persistIntervalMs);
  }

  /**
   * How often the gateway writes to the state store (ms; 0: only on flush
   * and close). A live reload of `[api] persistInterval` calls it.
   */
  setPersistInterval(ms: number): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    if (ms <= 0 || this.#closed) return;
    this.#timer = every(ms, () => {
      // A flush that outlasts the interval is not doubled: what is counted
      // meanwhile waits for the next.
      if (this.#periodic) return;
      // Paced, so that the requests served meanwhile keep most of the main
      // thread; it stops pacing after half an interval (at most 10 s).
      this.#pace.start(Math.min(10_000, ms / 2));
      this.#periodic = this.#flushAll()
        .catch((e) => this.#failed("saving consumption", e))
        .finally(() => {
          this.#pace.stop();
          this.#periodic = undefined;
        });
    });
  }

  /** The loaded configuration (rule, managers, user databases). */
  get config(): LoadedManagers {
    return this.#loaded;
  }

  /** The configuration's warnings (`file:line: what`), shown at start. */
  get warnings(): string[] {
    return this.#loaded.warnings;
  }

  /**
   * Logs a background failure, unless the store is down: its health has
   * told that once, and a line at every flush until it is back would bury
   * the log.
   */
  #failed(what: string, e: unknown): void {
    if (!this.#store.status().ok) return;
    console.error(`pmproxy: ${what} failed: ${e}`);
  }

  /** Decides with `loaded` from now on. */
  #use(loaded: LoadedManagers): void {
    this.#loaded = loaded;
    this.#rule = compileDecision(loaded);
    this.#sessions = [...loaded.managers.values()].filter((m) =>
      m instanceof SessionIpm
    ) as SessionIpm[];
    this.#quotas = [...loaded.managers.values()].filter((m) =>
      m instanceof DwnConsR
    ) as DwnConsR[];
  }

  /**
   * A live reload of `managers.toml`: loads it again (a file that does not
   * load throws its ConfigError and changes nothing), writes what the
   * running managers hold, lets the new managers take over the state of
   * those of the same name and kind (quota counters that open transfers
   * still count into, token buckets) and start from the store (sessions,
   * counters), then decides every request after that with the new rule and
   * managers. Requests decided before, and their open transfers and
   * tunnels, carry on untouched.
   */
  reload(): Promise<ReloadResult> {
    const run = this.#reloading.then(() => this.#reload());
    this.#reloading = run.catch(() => {});
    return run;
  }

  async #reload(): Promise<ReloadResult> {
    if (!this.#load) {
      throw new Error("this gateway was not opened from a file to reload");
    }
    const next = await this.#load();
    const previous = this.#loaded;
    // What the running managers hold goes to the store first, so the new
    // ones read it back (sessions' last use, closed sessions, deltas).
    await this.flush();
    for (const [name, m] of next.managers) {
      const old = previous.managers.get(name);
      if (old && old.kind === m.kind) m.adopt?.(old);
    }
    try {
      for (const hook of next.hooks.start) await hook(this.#store);
    } catch (e) {
      // The store could not be read: the running configuration stays.
      await runAll(next.hooks.close);
      throw e;
    }
    this.#use(next);
    // The replaced managers only stop: what they held is the new ones'.
    await runAll(previous.hooks.close);
    return { warnings: next.warnings };
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
          (checks ??= []).push(
            s.checkProxyCredentials(creds, facts.clientIp).catch((e) => {
              this.#countRefusal(e, "proxy");
            }),
          );
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
    const deciding: Deciding = { ctx, grant, falses: undefined };
    const allowed = this.#rule(deciding);
    const falses = deciding.falses;
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
        cause: "quota",
      };
    }
    // A name twice in the rule attaches its meter twice: count once.
    const meters = grant.meters.length > 1
      ? [...new Set(grant.meters)]
      : grant.meters;
    const decision: Decision = {
      allowed: true,
      route: grant.route ?? DIRECT,
      meter: meters.length === 0
        ? undefined
        : meters.length === 1
        ? meters[0]
        : new CombinedMeter(meters),
      user: ctx.user(),
    };
    if (grant.upMeters) decision.upMeter = oneMeter(grant.upMeters);
    if (grant.note !== undefined) decision.note = grant.note;
    return decision;
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

  discover(caller: Caller, url?: string): DiscoverResult {
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
      clientIp: caller.ip,
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

  async admin(caller: Caller, what: string): Promise<string> {
    const who = await this.#session(caller);
    this.#needAdmin(who.user, what);
    return who.user;
  }

  async explain(caller: Caller, query: ExplainQuery): Promise<Explanation> {
    const who = await this.#session(caller);
    this.#needAdmin(who.user, "explain");
    let assumedGroups: Record<string, string[]> | undefined;
    if (query.user !== undefined) {
      assumedGroups = {};
      let known = false;
      for (const [name, db] of this.#loaded.userDbs) {
        const record = await db.lookup(query.user);
        if (record) {
          known = true;
          assumedGroups[name] = record.groups;
        }
      }
      if (!known) {
        throw new CommandError({
          message: `no user database knows "${query.user}"`,
        });
      }
    }
    return (await explainModule()).explainRule(
      { loaded: this.#loaded, sessions: this.#sessions, assumedGroups },
      { ...query, ip: normalizeIp(query.ip ?? caller.ip) },
    );
  }

  portal(): { sessionIPM: string[]; dwnConsR: string[] } {
    const out = { sessionIPM: [] as string[], dwnConsR: [] as string[] };
    for (const { name } of ruleNames(this.#loaded.rule)) {
      const kind = this.#loaded.managers.get(name)?.kind;
      if (kind !== "sessionIPM" && kind !== "dwnConsR") continue;
      if (!out[kind].includes(name)) out[kind].push(name);
    }
    return out;
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

  /** Counts a refused login for the metrics: wrong credentials or too soon. */
  #countRefusal(e: unknown, via: "api" | "proxy"): void {
    if (e instanceof TooManyAttempts) this.stats.loginThrottles++;
    else if (e instanceof BadCredentials) {
      if (via === "api") this.stats.loginFailures++;
      else this.stats.proxyAuthFailures++;
    }
  }

  open(
    manager: string,
    caller: Caller,
    cred: { user: string; pass: string },
  ): Promise<string> {
    try {
      return this.#sessionIpm(manager, "open").open(
        caller.ip,
        cred.user,
        cred.pass,
      ).catch((e) => {
        this.#countRefusal(e, "api");
        throw e;
      });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  logout(manager: string, caller: Caller): Promise<void> {
    try {
      return this.#sessionIpm(manager, "close").close(
        caller.ip,
        caller.secret ?? "",
      );
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Every open session of that manager: administrators only. */
  async loggedUsers(
    manager: string,
    caller: Caller,
  ): Promise<Record<string, string>> {
    const sessions = this.#sessionIpm(manager, "get");
    const who = await this.#session(caller);
    this.#needAdmin(who.user, "the list of logged users");
    return await sessions.loggedUsers(caller.ip, caller.secret ?? "");
  }

  async renew(manager: string, caller: Caller): Promise<string> {
    return await this.#sessionIpm(manager, "renew").renew(
      caller.ip,
      caller.secret ?? "",
    );
  }

  async check(manager: string, caller: Caller): Promise<string> {
    return await this.#sessionIpm(manager, "check").check(
      caller.ip,
      caller.secret ?? "",
    );
  }

  /** The session of the caller: a valid secret of the session at its IP. */
  async #session(caller: Caller): Promise<Session> {
    const secret = caller.secret ?? "";
    if (this.#sessions.length === 0) {
      throw new CommandError({
        message:
          "this gateway has no sessionIPM, so nobody can log in; add one to managers.toml",
      });
    }
    if (secret === "") throw new CommandError({ message: "empty JWT" });
    const now = this.#clock().getTime();
    const at = this.#sessions.find((s) => s.sessionAt(caller.ip, now)) ??
      this.#sessions[0];
    return await at.verify(caller.ip, secret);
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
    who: Caller,
    options: { user?: string } = {},
  ): Promise<UserInfo> {
    const other = options.user;
    const dwn = this.#dwnConsR(
      manager,
      other === undefined ? "get" : "getOther",
    );
    const caller = await this.#session(who);
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
    const state = dwn.status(target, groups, this.#clock().getTime());
    return {
      quota: formatSize(state.limit),
      groups,
      name,
      userName: target,
      consumption: formatSize(state.cons),
      bytesQuota: state.limit,
      bytesCons: state.cons,
      isAdmin: this.#isAdmin(target),
      ...sitesInfo(dwn, state),
      ...this.#nextResetOf(dwn),
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
    who: Caller,
    change: { user: string; bytes: number },
  ): Promise<void> {
    const { user, bytes } = change;
    const dwn = this.#dwnConsR(manager, "set");
    const caller = await this.#session(who);
    if (!this.#isAdmin(caller.user)) {
      throw new CommandError({ User: caller.user });
    }
    const db = this.#userDb(dwn.userDBN);
    if (!this.#sessionOf(user) && !(await db.lookup(user))) {
      throw new CommandError({ User: user, DB: db.name });
    }
    await dwn.setConsumption(user, bytes);
  }

  async grant(
    manager: string,
    who: Caller,
    change: { user: string; bytes: number },
  ): Promise<UserInfo> {
    const { user, bytes } = change;
    const dwn = this.#dwnConsR(manager, "grant");
    const caller = await this.#session(who);
    if (!this.#isAdmin(caller.user)) {
      throw new CommandError({ User: caller.user });
    }
    if (!Number.isSafeInteger(bytes) || bytes <= 0) {
      throw new CommandError({
        message: `a grant must be more than 0 bytes, not ${bytes}`,
      });
    }
    const db = this.#userDb(dwn.userDBN);
    if (!this.#sessionOf(user) && !(await db.lookup(user))) {
      throw new CommandError({ User: user, DB: db.name });
    }
    await dwn.grant(user, bytes);
    return await this.userInfo(manager, who, { user });
  }

  /**
   * A manager's configuration (or the rule's, for `rules`): for logged-in
   * users; a user database's (its users and groups) for administrators
   * only. Nothing shown holds a password, a hash or a directory's
   * credentials.
   */
  async show(manager: string, caller: Caller): Promise<unknown> {
    const who = await this.#session(caller);
    if (this.#loaded.userDbs.has(manager)) {
      this.#needAdmin(who.user, `show of the user database "${manager}"`);
    }
    return this.describe(manager);
  }

  /**
   * A manager's (or user database's, or the rule's) configuration, with no
   * question asked of a caller: for the gateway's own use and tests; the
   * API's `show` is {@link show}.
   */
  describe(manager: string): unknown {
    if (manager === "rules") {
      return { rule: printRule(this.#loaded.rule) };
    }
    const m = this.#loaded.managers.get(manager) ??
      this.#loaded.userDbs.get(manager);
    if (!m) throw new CommandError({ Mng: manager, Cmd: "show" });
    return m.show();
  }

  /** Refuses, in the original's `{message}` shape, a caller not an admin. */
  #needAdmin(user: string, what: string): void {
    if (this.#isAdmin(user)) return;
    throw new CommandError({
      message: `${what} is for administrators; ${user} is not one`,
    });
  }

  // ------------------------------------------ history and the console

  /** `nextReset` of UserInfo, when the quota has a cycle. */
  #nextResetOf(dwn: DwnConsR): { nextReset?: string } {
    return Number.isFinite(dwn.nextReset)
      ? { nextReset: dwn.isoLocal(dwn.nextReset) }
      : {};
  }

  /** The caller's session, when its user is an administrator. */
  async #admin(who: Caller): Promise<Session> {
    const caller = await this.#session(who);
    if (!this.#isAdmin(caller.user)) {
      throw new CommandError({ User: caller.user });
    }
    return caller;
  }

  async usage(
    manager: string,
    who: Caller,
    query: UsageQuery,
  ): Promise<UsageReport> {
    const dwn = this.#dwnConsR(manager, "usage");
    const caller = await this.#session(who);
    const user = query.all ? undefined : query.user ?? caller.user;
    if (user !== caller.user && !this.#isAdmin(caller.user)) {
      throw new CommandError({ User: caller.user });
    }
    try {
      const time = (t: Date | string | undefined) =>
        t instanceof Date ? t.getTime() : t;
      return await dwn.usage({
        user,
        since: time(query.since),
        until: time(query.until),
        by: query.by ?? "day",
      });
    } catch (e) {
      if (e instanceof CommandError) throw e;
      throw new CommandError({
        message: `the usage history cannot be read now: ${
          e instanceof Error ? e.message : e
        }`,
      });
    }
  }

  async usersTable(
    manager: string,
    who: Caller,
    query: UsersQuery,
  ): Promise<UsersPage> {
    const dwn = this.#dwnConsR(manager, "users");
    await this.#admin(who);
    return await (await consoleModule()).usersPage({
      quota: dwn,
      db: this.#userDb(dwn.userDBN),
      sessions: this.#sessions,
      now: this.#clock().getTime(),
    }, query);
  }

  async endSession(
    manager: string,
    who: Caller,
    target: { user: string },
  ): Promise<{ ip: string }> {
    const sessions = this.#sessionIpm(manager, "close");
    await this.#admin(who);
    const ip = await sessions.endSessionOf(target.user);
    if (ip === undefined) {
      throw new CommandError({
        message: `${target.user} has no session in ${manager}`,
      });
    }
    return { ip };
  }

  async managers(who: Caller): Promise<ManagerSummary[]> {
    await this.#admin(who);
    return (await consoleModule()).managerList(this.#loaded);
  }

  /**
   * Where {@link live} reads the proxy's counters (main.ts hands over the
   * running proxy's). Until then the live figures have no `proxy`.
   */
  useProxyFigures(read: () => ProxyFigures | undefined): void {
    this.#proxyFigures = read;
  }

  async live(who: Caller): Promise<LiveFigures> {
    await this.#admin(who);
    return (await consoleModule()).liveFigures({
      sessions: this.#sessions,
      quotas: this.#quotas,
      proxy: this.#proxyFigures(),
      now: this.#clock().getTime(),
    });
  }

  // ------------------------------------------------------------ lifecycle

  /** The state store, e.g. for health checks. */
  get store(): StateStore {
    return this.#store;
  }

  /** Takes a change another gateway announced. */
  async #applyChange(change: StateChange): Promise<void> {
    if (this.#closed) return;
    if (change.kind === "resync") {
      // Announcements may have been missed: write and read everything.
      await this.flush();
      return;
    }
    const m = this.#loaded.managers.get(change.manager);
    if (change.kind === "session" && m instanceof SessionIpm) {
      await m.sessionChanged(change.ip);
    } else if (change.kind === "consumption" && m instanceof DwnConsR) {
      await m.consumptionChanged(change.user);
    } else if (change.kind === "grant" && m instanceof DwnConsR) {
      await m.grantChanged(change.user);
    }
  }

  /**
   * Writes consumption deltas (and other pending state) now, unpaced: a
   * periodic flush under way stops pacing too.
   */
  flush(): Promise<void> {
    this.#pace.stop();
    return this.#flushAll();
  }

  async #flushAll(): Promise<void> {
    // Every hook runs: a failing one (the sessions' reload, say) must not
    // keep the quotas after it from being written, at shutdown above all.
    let failure: { error: unknown } | undefined;
    const start = performance.now();
    for (const hook of this.#loaded.hooks.flush) {
      try {
        await hook();
      } catch (error) {
        failure ??= { error };
      }
    }
    this.stats.flushSeconds.observe((performance.now() - start) / 1000);
    if (failure) {
      this.stats.flushErrors++;
      throw failure.error;
    }
  }

  /** Its counters, open sessions, consumption per quota and the store's health, now. */
  snapshot(): GatewaySnapshot {
    const now = this.#clock().getTime();
    return {
      stats: this.stats,
      sessions: this.#sessions.map((s) => ({
        manager: s.name,
        open: s.openCount,
      })),
      quotas: this.#quotas.map((q) => ({
        manager: q.name,
        bytes: q.consumedBytes(now),
      })),
      store: this.#store.status(),
    };
  }

  /** Stops the gateway: {@link shutdown}. */
  close(): Promise<void> {
    return this.shutdown();
  }

  /** Stops the timer, flushes, runs the close hooks and closes the store. */
  async shutdown(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#timer?.cancel();
    try {
      // A periodic flush under way ends unpaced, then everything is written.
      this.#pace.stop();
      await this.#periodic;
      await this.flush();
      for (const hook of this.#loaded.hooks.close) await hook();
    } finally {
      this.#unsubscribe();
      await this.#store.close();
    }
  }
}

/** What pmproxy adds to the original's UserInfo (issue 11). */
function sitesInfo(dwn: DwnConsR, state: QuotaStatus): Partial<UserInfo> {
  const out: Partial<UserInfo> = {
    bytesGranted: state.granted,
    granted: formatSize(state.granted),
    warning: state.warning,
  };
  const warnAt = dwn.warnAt;
  if (warnAt !== undefined) out.warnAt = Math.round(warnAt * 1000) / 10;
  if (state.overQuota) out.overQuota = state.overQuota;
  const rate = dwn.overQuotaRate;
  if (rate !== undefined) {
    out.overQuotaRate = `${formatSize(rate)}/s`;
    out.bytesOverQuotaRate = rate;
  }
  if (Number.isFinite(state.nextReset)) {
    out.nextReset = new Date(state.nextReset).toISOString();
  }
  return out;
}
