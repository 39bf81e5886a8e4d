/**
 * The shapes shared inside `managers/` and offered to `api/`: a manager as
 * the rule sees it, the grant a request collects while the rule is
 * evaluated, user databases, configuration errors, and the {@link Gateway}
 * the API drives.
 *
 * @module
 */
import type {
  GO_ON as SEAM_GO_ON,
  Meter,
  RequestFacts,
  Route,
  STOP as SEAM_STOP,
} from "../proxy/policy.ts";

/**
 * `Meter.chunk`'s answers, the seam's own values: `managers/` may import
 * only types from `proxy/`, so they are declared here once, typed as the
 * seam's constants (a different value would not compile).
 */
export const GO_ON: typeof SEAM_GO_ON = 0;
/** See {@link GO_ON}: stop, the transfer is cut (quota reached). */
export const STOP: typeof SEAM_STOP = -1;

/**
 * A meter that counts against a quota. When several meters are on one
 * request, each quota is asked first whether it would stop the next chunk,
 * and takes back a chunk it counted that another meter then stopped, so a
 * stopped chunk is counted by none (`resources/combined_meter.ts`).
 */
export interface QuotaMeter extends Meter {
  /** True when `chunk` would stop now. */
  wouldStop(): boolean;
  /** Takes back a chunk `chunk` counted, when another meter stopped it. */
  refund(bytes: number): void;
}

/** True when the meter counts against a quota ({@link QuotaMeter}). */
export function isQuotaMeter(meter: Meter): meter is QuotaMeter {
  return typeof (meter as Partial<QuotaMeter>).wouldStop === "function" &&
    typeof (meter as Partial<QuotaMeter>).refund === "function";
}

/** Where a configuration value stands, for error messages. */
export interface ConfigSite {
  file: string;
  /** 1-based line, when known. */
  line?: number;
  /** 1-based column, when known. */
  column?: number;
}

/**
 * A configuration error a person can act on. Its message reads
 * `file:line:column: what is wrong; what to do`.
 */
export class ConfigError extends Error {
  constructor(readonly site: ConfigSite, readonly problem: string) {
    const where = [site.file, site.line, site.column].filter((p) =>
      p !== undefined
    ).join(":");
    super(`${where}: ${problem}`);
    this.name = "ConfigError";
  }
}

/** A user as a user database knows them. */
export interface UserRecord {
  userName: string;
  /** Full name (the user name when the database has none). */
  name: string;
  groups: string[];
}

/** A user database (`mapDB`, `adDB`). */
export interface UserDb {
  readonly name: string;
  readonly kind: string;
  /**
   * How sessions restored after a restart get their user's groups from this
   * database again: `"at-start"` when it is cheap to ask (in memory, such as
   * a mapDB), `"in-background"` when each lookup may be slow (a directory),
   * `"never"` when it cannot be asked reliably (a directory without a
   * service account, whose anonymous search may see no users).
   */
  readonly refresh: "at-start" | "in-background" | "never";
  /**
   * Checks the password and answers the user's record. Throws
   * {@link BadCredentials} on a wrong password or an unknown user (the same
   * for both, after the same work), another {@link CommandError} when the
   * database cannot answer.
   */
  authenticate(user: string, pass: string): Promise<UserRecord>;
  /** The user's record without a password, or undefined when unknown. */
  lookup(user: string): Promise<UserRecord | undefined>;
  /**
   * Every user's record, for the console's users table; only where that
   * is cheap (a mapDB, in memory). A directory (adDB) has none: the table
   * then lists the users with consumption or a session.
   */
  listUsers?(): Promise<UserRecord[]>;
  /** The configuration shown by `show` (never passwords). */
  show(): unknown;
}

/** What a manager may ask about the request being decided. */
export interface EvalContext {
  readonly facts: RequestFacts;
  /**
   * The user of this request: the one logged in at the client IP, or the one
   * authenticated by `Proxy-Authorization`. Undefined when nobody.
   */
  user(): string | undefined;
  /** The groups of `user()` according to the named user database (cached). */
  groups(userDb: string): string[];
  /**
   * Set when the rule is evaluated to explain it (`explain`), not for a
   * request: nothing is marked as used, and `user()` may be a user the
   * administrator assumes logged in at the client IP.
   */
  readonly explaining?: { assumedUser?: string };
}

/** What the reached resource managers attach to one request. */
export interface Grant {
  /** Set by `parentProxy` / `netIface`; the last one reached wins. */
  route?: Route;
  /** Every meter attached (quota, bandwidth); the proxy gets one combining them. */
  meters: Meter[];
  /**
   * Meters of the bytes sent upstream (quotas with `countUploads`); the
   * proxy gets one combining them as the decision's `upMeter`.
   */
  upMeters?: Meter[];
  /** For the access log: how the request goes (`slowed`, past a quota). */
  note?: string;
  /** A refusal found while attaching (quota reached). */
  refusal?: { status: 403 | 407; reason: string };
}

/** A named manager as the rule sees it. */
export interface Manager {
  readonly name: string;
  /** The original's kind name: `sessionIPM`, `dwnConsR`, `rangeIPM`, ... */
  readonly kind: string;
  /**
   * The value of this name in the rule for this request. A matcher answers
   * true/false; a resource attaches itself to `grant` and answers true.
   */
  evaluate(ctx: EvalContext, grant: Grant): boolean;
  /**
   * Optional: why `evaluate` was false for this request, for the refusal
   * page (`sessions: not logged in at 10.0.0.5`).
   */
  whyFalse?(ctx: EvalContext): string;
  /**
   * Optional: why `evaluate` gave `value` for this request, for `explain`
   * (`10.0.0.5 is in 10.0.0.0/8`; `1.2 GB of 1 GB used, resets ...`).
   * Without it, `whyFalse` or a plain sentence is shown.
   */
  explain?(ctx: EvalContext, value: boolean): string;
  /** The configuration shown by the API's `show`. */
  show(): unknown;
  /**
   * Optional, for a live reload: takes over the state of the manager of the
   * same name and kind in the configuration being replaced (counters that
   * open transfers still count into, token buckets), before `onStart`
   * hooks run. Managers without it start afresh from the state store.
   */
  adopt?(previous: Manager): void;
}

/**
 * An error of an API command, carrying the JSON body the original answered
 * with (e.g. `{"message":"Incorrect password"}`, `{"Mng":"x","Cmd":"y"}`).
 */
export class CommandError extends Error {
  constructor(readonly body: Record<string, unknown>) {
    super(
      typeof body.message === "string" ? body.message : JSON.stringify(body),
    );
    this.name = "CommandError";
  }
}

/** The one answer to every failed login, whatever was wrong. */
export const LOGIN_FAILED = "incorrect user name or password";

/**
 * A user database's verdict that the user name or the password is wrong.
 * Its body is the same whichever it was, so that nobody can find out which
 * accounts exist.
 */
export class BadCredentials extends CommandError {
  constructor() {
    super({ message: LOGIN_FAILED });
    this.name = "BadCredentials";
  }
}

/**
 * Too many failed logins: the next try must wait `retryAfterSeconds`
 * (answered 429 with `Retry-After`).
 */
export class TooManyAttempts extends CommandError {
  constructor(readonly retryAfterSeconds: number) {
    super({
      message: `too many failed logins; try again in ${retryAfterSeconds} s`,
      retryAfter: retryAfterSeconds,
    });
    this.name = "TooManyAttempts";
  }
}

/**
 * The original's `UserInfo`, and what pmproxy adds (optional here, always
 * sent by the gateway; the original's clients ignore fields they do not
 * know). `quota` and `bytesQuota` are the quota in force: the user's own
 * or their groups' plus this cycle's grants.
 */
export interface UserInfo {
  quota: string;
  groups: string[];
  name: string;
  userName: string;
  consumption: string;
  bytesQuota: number;
  bytesCons: number;
  isAdmin: boolean;
  // ---------------------------------------------- added by pmproxy (issue 11)
  /** Bytes granted for this cycle (top-ups, in `bytesQuota`); 0 for none. */
  bytesGranted?: number;
  /** {@link bytesGranted} as a size (`500 MB`). */
  granted?: string;
  /** The manager's `warnAt` as a percentage of the quota (80), if any. */
  warnAt?: number;
  /** True when consumption is at or past `warnAt` of `bytesQuota` (false without `warnAt`). */
  warning?: boolean;
  /**
   * At or over the quota: `"slowed"` (to `overQuotaRate` until the reset)
   * or `"refused"` (new requests refused until the reset). Absent below it.
   */
  overQuota?: "slowed" | "refused";
  /** The manager's `overQuotaRate` (`64 KB/s`), if any. */
  overQuotaRate?: string;
  /** The same in bytes per second. */
  bytesOverQuotaRate?: number;
  /**
   * When consumption returns to 0 next, as an ISO 8601 time in the quota
   * manager's time zone (`2026-05-04T00:00:00-04:00`); absent without a
   * `resetCycle`.
   */
  nextReset?: string;
}

/** The answer of `discover`. */
export interface DiscoverResult {
  matchMng: Record<string, { match: boolean; type: string }>;
  result: boolean;
}

/** The question of `explain` (`explain.ts`). */
export interface ExplainQuery {
  /** The URL (`http://host/path`, or `host:port` for a tunnel). */
  url: string;
  /** The client's address (default: the caller's). */
  ip?: string;
  /** A user taken as logged in at `ip`, whatever the sessions say. */
  user?: string;
  /** When (default: now). */
  at?: Date;
}

/** One manager reached, in the order the rule reached it. */
export interface ExplainStep {
  name: string;
  kind: string;
  /** Its value in the rule. */
  value: boolean;
  /** False when it refuses although true in the rule (a quota reached). */
  ok: boolean;
  /** Why, in words. */
  why: string;
}

/** The answer to {@link ExplainQuery}. */
export interface Explanation {
  /** The facts evaluated. */
  facts: {
    ip: string;
    user?: string;
    time: string;
    method: string;
    host: string;
    port: number;
  };
  allowed: boolean;
  /** For a refusal: why. */
  reason?: string;
  steps: ExplainStep[];
  /** The resource managers reached, which a request would get. */
  resources: { name: string; kind: string; why: string }[];
  /** Where a request would be dialled. */
  route: Route;
}

/**
 * Who calls the API: the client's address (as the API sees it, or as the
 * proxy that tunnelled it there knows it) and, once logged in, the secret
 * `open` gave them.
 */
export interface Caller {
  ip: string;
  secret?: string;
}

// ----------------------------------------------- history and the console

/** How a usage report groups the bytes: by hour, day or month. */
export type UsageBy = "hour" | "day" | "month";

/** The question of {@link Gateway.usage}. */
export interface UsageQuery {
  /** Whose usage: default the caller; another user's is for admins. */
  user?: string;
  /** Every user's (admins only); `user` is then ignored. */
  all?: boolean;
  /**
   * From when (default: as far back as the history keeps that grain): an
   * instant, or a text: `2026-05-01` (midnight) or `2026-05-01T10:00`
   * (wall-clock) in the quota manager's zone, an ISO time with its
   * offset, `today` (local midnight) or `cycle` (the current cycle's
   * start). The period that holds it is the first.
   */
  since?: Date | string;
  /**
   * Until when, the same way (default: the end of the current period);
   * `today` is the end of today, `cycle` the next reset.
   */
  until?: Date | string;
  /** Default `"day"`. */
  by?: UsageBy;
}

/** The answer of {@link Gateway.usage}. */
export interface UsageReport {
  manager: string;
  /** Whose usage; absent for every user's. */
  user?: string;
  by: UsageBy;
  /** The quota manager's time zone, in which hours, days and months are. */
  zone: string;
  /** The report covers `[from, to)` (ms since the epoch). */
  from: number;
  to: number;
  /** The start of every period in `[from, to)`, with or without bytes. */
  periods: number[];
  /** Bytes by period and user, ordered by start then user; no zeros. */
  entries: { start: number; user: string; bytes: number }[];
}

/** What the users table can be sorted by. */
export type UsersSort =
  | "user"
  | "consumption"
  | "quota"
  | "percent"
  | "lastSeen";

/** The question of {@link Gateway.usersTable}: one page of it. */
export interface UsersQuery {
  /** Rows skipped (default 0). */
  offset?: number;
  /** Rows answered (default 50, at most {@link USERS_PAGE_MAX}). */
  limit?: number;
  /** Default `"user"`. */
  sort?: UsersSort;
  /** Default `"asc"` for `user`, `"desc"` for the others. */
  order?: "asc" | "desc";
  /** Only users whose name, full name or address holds this (any case). */
  filter?: string;
}

/** The most rows one page of the users table has. */
export const USERS_PAGE_MAX = 500;

/** One user in the users table. */
export interface UserRow {
  userName: string;
  /** Full name, when the user database gives one. */
  name: string;
  /** Consumption in this cycle. */
  bytesCons: number;
  bytesQuota: number;
  /** `bytesCons` as a share of the quota (0-100+), null without a quota. */
  percent: number | null;
  /** False when the user's groups could not be learned (quota 0 then). */
  quotaKnown: boolean;
  /** Where the user is logged in, if anywhere. */
  session?: { manager: string; ip: string; lastUsed: number };
  /**
   * When the user was last seen (ms): the session's last use, or the last
   * write of their bytes by this gateway since it started.
   */
  lastSeen?: number;
}

/** The answer of {@link Gateway.usersTable}. */
export interface UsersPage {
  manager: string;
  /** Users that match the filter, on every page. */
  total: number;
  offset: number;
  limit: number;
  sort: UsersSort;
  order: "asc" | "desc";
  rows: UserRow[];
  /**
   * Where the users come from: `"database"` (the user database lists its
   * users, e.g. a mapDB), or `"active"` (it cannot list them cheaply, e.g.
   * a directory: the users with consumption in this cycle or a session).
   */
  listed: "database" | "active";
  /** The current cycle's start (ms). */
  lastReset: number;
  /** The next reset (ms), absent without a cycle. */
  nextReset?: number;
}

/** A manager or user database, for the console's list. */
export interface ManagerSummary {
  name: string;
  /** Its kind (`dwnConsR`, `mapDB`, ...). */
  kind: string;
  /** True for a user database (not named in the rule). */
  userDb: boolean;
  /** True when the rule names it. */
  inRule: boolean;
}

/**
 * The proxy's live counters the console shows (the fields of the proxy's
 * counters object that `/metrics` also reads).
 */
export interface ProxyFigures {
  /** Client connections open now. */
  clientConnections: number;
  /** Tunnels (CONNECT, upgrades) open now. */
  tunnels: number;
  /** Requests finished since the start, whatever their outcome. */
  requests: number;
}

/** The answer of {@link Gateway.live}. */
export interface LiveFigures {
  /** When they were read (ms). */
  at: number;
  /** Open sessions by sessionIPM. */
  sessions: Record<string, number>;
  /** Users with consumption and their bytes, this cycle, by dwnConsR. */
  quotas: Record<string, { users: number; bytes: number }>;
  /** The proxy's counters; absent while this build does not count them. */
  proxy?: ProxyFigures;
}

/**
 * Everything the API asks of the policy, for a {@link Caller}. Methods
 * throw {@link CommandError} for the original's error answers.
 */
export interface Gateway {
  /** The managers the rule reaches for this caller now (optionally for a URL). */
  discover(caller: Caller, url?: string): DiscoverResult;
  /**
   * The user name of the caller when they are a logged-in administrator;
   * throws the refusal (`{message}`) otherwise. `what` names what they
   * asked for, for the message.
   */
  admin(caller: Caller, what: string): Promise<string>;
  /**
   * Evaluates the rule for the facts of `query` without a request and says
   * why (administrators only).
   */
  explain(caller: Caller, query: ExplainQuery): Promise<Explanation>;
  /** The kind of a manager, or undefined when there is none of that name. */
  kindOf(manager: string): string | undefined;
  /**
   * What the login page needs and anyone may know: the names of the
   * session managers and of the quota managers, in the rule's order.
   */
  portal(): { sessionIPM: string[]; dwnConsR: string[] };
  /** Opens a session at the caller's IP through a sessionIPM; answers the secret (JWT). */
  open(
    manager: string,
    caller: Caller,
    cred: { user: string; pass: string },
  ): Promise<string>;
  /** Closes the caller's session (the original's `close` command). */
  logout(manager: string, caller: Caller): Promise<void>;
  /** Open sessions of that manager: IP -> user name (administrators only). */
  loggedUsers(
    manager: string,
    caller: Caller,
  ): Promise<Record<string, string>>;
  /** A new secret for the user logged at the caller's IP, given their (possibly expired) secret. */
  renew(manager: string, caller: Caller): Promise<string>;
  /** The user name of the caller's valid secret. */
  check(manager: string, caller: Caller): Promise<string>;
  /** UserInfo of the caller under a dwnConsR, or of `options.user` (admins only). */
  userInfo(
    manager: string,
    caller: Caller,
    options?: { user?: string },
  ): Promise<UserInfo>;
  /** Sets a user's consumption under a dwnConsR (admins only). */
  setConsumption(
    manager: string,
    caller: Caller,
    change: { user: string; bytes: number },
  ): Promise<void>;
  /**
   * Adds `bytes` to a user's quota under a dwnConsR for the current cycle
   * only (admins only); several grants add up, they end at the next reset.
   * Answers the user's info afterwards.
   */
  grant(
    manager: string,
    caller: Caller,
    change: { user: string; bytes: number },
  ): Promise<UserInfo>;
  /**
   * The manager's configuration (or the rule's, for `rules`), for logged-in
   * callers; a user database's for administrators only.
   */
  show(manager: string, caller: Caller): Promise<unknown>;

  // ----------------------------------------- history and the console

  /**
   * The usage history under a dwnConsR: the caller's, another user's or
   * every user's (`query.user`, `query.all`: admins only).
   */
  usage(
    manager: string,
    caller: Caller,
    query: UsageQuery,
  ): Promise<UsageReport>;
  /** One page of the users table of a dwnConsR (admins only). */
  usersTable(
    manager: string,
    caller: Caller,
    query: UsersQuery,
  ): Promise<UsersPage>;
  /**
   * Ends another user's session in a sessionIPM (admins only); answers the
   * address it was at.
   */
  endSession(
    manager: string,
    caller: Caller,
    target: { user: string },
  ): Promise<{ ip: string }>;
  /** Every manager and user database with its kind (admins only). */
  managers(caller: Caller): Promise<ManagerSummary[]>;
  /** The live figures of the console (admins only). */
  live(caller: Caller): Promise<LiveFigures>;
}
