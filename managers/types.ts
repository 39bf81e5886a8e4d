/**
 * The shapes shared inside `managers/` and offered to `api/`: a manager as
 * the rule sees it, the grant a request collects while the rule is
 * evaluated, user databases, configuration errors, and the {@link Gateway}
 * the API drives.
 *
 * @module
 */
import type { Meter, RequestFacts, Route } from "../proxy/policy.ts";

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
   * Checks the password and answers the user's record. Throws a
   * {@link CommandError} with the original's body on a wrong password or an
   * unknown user (`{"message":"Incorrect password"}`, `{"User":..,"DB":..}`).
   */
  authenticate(user: string, pass: string): Promise<UserRecord>;
  /** The user's record without a password, or undefined when unknown. */
  lookup(user: string): Promise<UserRecord | undefined>;
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
}

/** What the reached resource managers attach to one request. */
export interface Grant {
  /** Set by `parentProxy` / `netIface`; the last one reached wins. */
  route?: Route;
  /** Every meter attached (quota, bandwidth); the proxy gets one combining them. */
  meters: Meter[];
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
  /** The configuration shown by the API's `show`. */
  show(): unknown;
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

/** The original's `UserInfo`. */
export interface UserInfo {
  quota: string;
  groups: string[];
  name: string;
  userName: string;
  consumption: string;
  bytesQuota: number;
  bytesCons: number;
  isAdmin: boolean;
}

/** The answer of `discover`. */
export interface DiscoverResult {
  matchMng: Record<string, { match: boolean; type: string }>;
  result: boolean;
}

/**
 * Everything the API asks of the policy. Methods throw {@link CommandError}
 * for the original's error answers.
 */
export interface Gateway {
  /** The managers the rule reaches for this client now (optionally for a URL). */
  discover(clientIp: string, url?: string): DiscoverResult;
  /** The kind of a manager, or undefined when there is none of that name. */
  kindOf(manager: string): string | undefined;
  /** Opens a session at `clientIp` through a sessionIPM; answers the secret (JWT). */
  open(
    manager: string,
    clientIp: string,
    user: string,
    pass: string,
  ): Promise<string>;
  close(manager: string, clientIp: string, secret: string): Promise<void>;
  /** Open sessions of that manager: IP → user name. */
  loggedUsers(
    manager: string,
    clientIp: string,
    secret: string,
  ): Promise<Record<string, string>>;
  /** A new secret for the user logged at `clientIp`, given their (possibly expired) secret. */
  renew(manager: string, clientIp: string, secret: string): Promise<string>;
  /** The user name of a valid secret of the session at `clientIp`. */
  check(manager: string, clientIp: string, secret: string): Promise<string>;
  /** UserInfo of the caller under a dwnConsR, or of `other` (admins only). */
  userInfo(
    manager: string,
    clientIp: string,
    secret: string,
    other?: string,
  ): Promise<UserInfo>;
  /** Sets a user's consumption under a dwnConsR (admins only). */
  setConsumption(
    manager: string,
    clientIp: string,
    secret: string,
    user: string,
    bytes: number,
  ): Promise<void>;
  /** The manager's configuration (or the rule's, for `rules`). */
  show(manager: string): unknown;
}
