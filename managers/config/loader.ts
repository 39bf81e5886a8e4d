/**
 * The loader of `managers.toml`: the rule, the user databases and the
 * managers, built through the kinds registry (`kinds.ts`). Every error is a
 * {@link ConfigError} at `file:line`; unknown keys are warnings naming the
 * nearest known key, never dropped silently.
 *
 * Top-level keys besides the kinds' tables:
 *
 * ```toml
 * rule = "sessions and down"     # or "rules"; the rule (required)
 * admins = ["admin"]             # users with administrator rights
 * jwtExpiration = "24h"          # how long a login's secret lasts
 * allowOpenProxy = false         # true: a rule that identifies nobody may run
 *                                # on every interface (see open_rule.ts)
 * # The access log, one line per request (standard output without these):
 * accessLog = "/var/log/pmproxy/access.log"  # a file (relative: to this file's
 *                                # directory), reopened on SIGUSR1 for logrotate
 * syslogAddr = "127.0.0.1:514"   # syslog over UDP; "tcp://host:514" over TCP
 * syslogFormat = "rfc3164"       # or "rfc5424"
 * accessLogFormat = "squid"      # Squid's native lines, or "json" (JSON lines)
 * ```
 *
 * `accessLog` and `syslogAddr` may both be set: each line goes to both.
 *
 * A rule that lets a request through without any manager that identifies
 * the client (`open_rule.ts`) is warned about, naming the path through the
 * rule; when the proxy listens on every interface it is refused unless
 * `allowOpenProxy = true`.
 *
 * @module
 */
import { dirname, inDir } from "./paths.ts";
import {
  parseRule,
  printRule,
  type Rule,
  RuleError,
  ruleNames,
} from "../../rule/mod.ts";
import { ConfigError, type Manager, type UserDb } from "../types.ts";
import { parseDuration, parseSize } from "../values/units.ts";
import { keyPath, nearestKey, type TomlFile } from "./toml_file.ts";
import { needUserDbName } from "./table_fields.ts";
import type { KindContext, Table } from "./kind_context.ts";
import type { HistoryRetention, StateStore } from "../state/store.ts";
import { MANAGER_KINDS, USER_DB_KINDS } from "./kinds.ts";
import {
  findOpenPath,
  judgeOpenRule,
  type ListenAddress,
  type OpenPath,
} from "./open_rule.ts";

/** Top-level keys of `managers.toml` besides the kinds. */
const TOP_KEYS = [
  "rule",
  "rules",
  "jwtExpiration",
  "admins",
  "syslogAddr",
  "allowOpenProxy",
  "syslogFormat",
  "accessLog",
  "accessLogFormat",
];

/** The values of `accessLogFormat`. */
export const ACCESS_LOG_FORMATS = ["squid", "json"] as const;
/** The values of `syslogFormat`. */
export const SYSLOG_FORMATS = ["rfc3164", "rfc5424"] as const;

/**
 * `host:port`, `[v6]:port` or a host alone, optionally after `udp://` or
 * `tcp://` (proxy/log_sinks.ts parses it when it opens the log).
 */
const SYSLOG_ADDR =
  /^(?:(?:udp|tcp):\/\/)?(?:\[[0-9A-Fa-f:.]+\]|[^:/\s[\]]+)(?::(\d{1,5}))?$/i;

/** Default of {@link LoadOptions.syncIntervalMs}. */
export const DEFAULT_SYNC_INTERVAL_MS = 1000;

/** Default validity of a session secret. */
export const DEFAULT_JWT_EXPIRATION = "24h";

/** Hooks the kinds registered, run by the gateway. */
export interface Hooks {
  start: ((store: StateStore) => Promise<void>)[];
  flush: (() => Promise<void>)[];
  close: (() => Promise<void>)[];
}

/** `managers.toml`, loaded. */
export interface LoadedManagers {
  file: string;
  rule: Rule;
  /** The rule as written. */
  ruleText: string;
  /** Managers by name, in the order of the file's kinds. */
  managers: Map<string, Manager>;
  userDbs: Map<string, UserDb>;
  admins: string[];
  jwtExpirationMs: number;
  /**
   * The access log's syslog server: `host:port` (UDP), `udp://host:port`
   * or `tcp://host:port`.
   */
  syslogAddr?: string;
  /** `allowOpenProxy` (default false). */
  allowOpenProxy: boolean;
  /**
   * How the rule lets a request through with nobody identified; undefined
   * when it cannot (see `open_rule.ts`).
   */
  openPath?: OpenPath;
  /** Its message format (default `rfc3164`). */
  syslogFormat: (typeof SYSLOG_FORMATS)[number];
  /** The access log's file, absolute. */
  accessLog?: string;
  /** How its lines are written (default `squid`). */
  accessLogFormat: (typeof ACCESS_LOG_FORMATS)[number];
  /** `file:line: what` sentences to show at start. */
  warnings: string[];
  hooks: Hooks;
}

/** Options of {@link loadManagers}. */
export interface LoadOptions {
  clock?: () => Date;
  persistIntervalMs?: number;
  /** How often users near their quota are synced with the store (ms; 0: never). */
  syncIntervalMs?: number;
  /** How long the usage history is kept (default 48 hours, 400 days). */
  history?: HistoryRetention;
  /**
   * Where the proxy listens (`[proxy.server] addr` of server.toml). With
   * it, an open rule is a warning, or a ConfigError on every interface
   * without `allowOpenProxy = true`; without it (tools, tests) only
   * {@link LoadedManagers.openPath} tells.
   */
  proxyListen?: ListenAddress;
}

function isTable(value: unknown): value is Table {
  return typeof value === "object" && value !== null &&
    !Array.isArray(value) && !(value instanceof Date);
}

/** The tables of a kind: `[kind]` gives one, `[[kind]]` several. */
function tablesOf(
  toml: TomlFile,
  kind: string,
): { table: Table; path: string[] }[] {
  const value = toml.data[kind];
  if (value === undefined) return [];
  if (isTable(value)) return [{ table: value, path: [kind] }];
  if (Array.isArray(value) && value.every(isTable)) {
    return value.map((table, i) => ({ table, path: [kind, String(i)] }));
  }
  throw new ConfigError(
    { file: toml.file, line: toml.lineOf([kind]) },
    `"${kind}" must be a table ([${kind}] or [[${kind}]] with name = "..."), not a plain value`,
  );
}

/**
 * Loads a parsed `managers.toml`: builds the user databases, then the
 * managers, then reads the rule and checks that every name in it has a
 * manager. Hooks are collected, not run.
 */
export async function loadManagers(
  toml: TomlFile,
  options: LoadOptions = {},
): Promise<LoadedManagers> {
  const file = toml.file;
  const data = toml.data;
  const clock = options.clock ?? (() => new Date());
  const warnings: string[] = [];
  const hooks: Hooks = { start: [], flush: [], close: [] };
  const at = (path: string[]) => {
    for (let n = path.length; n > 0; n--) {
      const line = toml.lineOf(path.slice(0, n));
      if (line !== undefined) return line;
    }
    return undefined;
  };
  const warnAt = (path: string[], message: string) => {
    const line = at(path);
    warnings.push(`${file}${line !== undefined ? `:${line}` : ""}: ${message}`);
  };

  // Top-level keys.
  const kindKeys = [
    ...Object.keys(USER_DB_KINDS),
    ...Object.keys(MANAGER_KINDS),
  ];
  for (const key of Object.keys(data)) {
    if (TOP_KEYS.includes(key) || kindKeys.includes(key)) continue;
    const near = nearestKey(key, [...TOP_KEYS, ...kindKeys]);
    warnAt(
      [key],
      `unknown key "${key}"${
        near ? ` (did you mean "${near}"?)` : ""
      }; it is ignored`,
    );
  }

  const jwtText = data.jwtExpiration ?? DEFAULT_JWT_EXPIRATION;
  const jwtMs = typeof jwtText === "string"
    ? parseDuration(jwtText)
    : `jwtExpiration must be a duration in quotes like "24h"`;
  if (typeof jwtMs === "string" || jwtMs <= 0) {
    throw new ConfigError(
      { file, line: at(["jwtExpiration"]) },
      `jwtExpiration: ${
        typeof jwtMs === "string" ? jwtMs : `it must be more than 0`
      }; it is how long a login secret stays valid, e.g. "24h"`,
    );
  }

  let admins: string[] = [];
  if (data.admins !== undefined) {
    if (
      !Array.isArray(data.admins) ||
      data.admins.some((a) => typeof a !== "string")
    ) {
      throw new ConfigError(
        { file, line: at(["admins"]) },
        `admins must be a list of user names like admins = ["admin"]`,
      );
    }
    admins = data.admins as string[];
  }
  const log = accessLogKeys(data, {
    file,
    at,
    dir: dirname(file),
  });
  const allowOpenProxy = data.allowOpenProxy ?? false;
  if (typeof allowOpenProxy !== "boolean") {
    throw new ConfigError(
      { file, line: at(["allowOpenProxy"]) },
      `allowOpenProxy must be true or false, without quotes (true lets a rule that identifies nobody run on every interface)`,
    );
  }

  const userDbs = new Map<string, UserDb>();
  const managers = new Map<string, Manager>();
  const persistIntervalMs = options.persistIntervalMs ?? 60_000;
  const syncIntervalMs = options.syncIntervalMs ?? DEFAULT_SYNC_INTERVAL_MS;

  const contextFor = (
    kind: string,
    path: string[],
    table: Table,
    known: string[],
  ): KindContext => {
    const nameValue = table.name;
    const fail = (key: string, problem: string): never => {
      throw new ConfigError(
        { file, line: at([...path, ...keyPath(key)]) },
        problem.startsWith(`${kind} "`) || typeof nameValue !== "string"
          ? problem
          : `${kind} "${nameValue}": ${problem}`,
      );
    };
    if (typeof nameValue !== "string" || nameValue.trim() === "") {
      throw new ConfigError(
        { file, line: at(path) },
        `a ${
          path.length === 1 ? `[${kind}]` : `[[${kind}]]`
        } table needs a name: add name = "..." (${
          kind in USER_DB_KINDS
            ? "managers refer to a user database by that name"
            : "the rule refers to it by that name"
        })`,
      );
    }
    for (const key of Object.keys(table)) {
      if (key === "name" || known.includes(key)) continue;
      const near = nearestKey(key, ["name", ...known]);
      warnAt(
        [...path, key],
        `unknown key "${key}" in ${kind} "${nameValue}"${
          near ? ` (did you mean "${near}"?)` : ""
        }; it is ignored. Known keys: name, ${known.join(", ")}`,
      );
    }
    return {
      file,
      kind,
      name: nameValue,
      fail,
      warn: (key, message) => warnAt([...path, ...keyPath(key)], message),
      duration(key, fallback) {
        const value = table[key] ?? fallback;
        if (value === undefined) return undefined;
        if (typeof value !== "string") {
          return fail(
            key,
            `"${key}" must be a duration in quotes like "24h" or "30m"`,
          );
        }
        const ms = parseDuration(value);
        if (typeof ms === "string") return fail(key, `"${key}": ${ms}`);
        return ms;
      },
      size(key, value) {
        const v = typeof value === "bigint" ? Number(value) : value;
        const bytes = typeof v === "string" || typeof v === "number"
          ? parseSize(v)
          : `${JSON.stringify(value)} is not a size: write it like "1 GB"`;
        if (typeof bytes === "string") return fail(key, `${key}: ${bytes}`);
        return bytes;
      },
      userDb(key, name) {
        needUserDbName(key, name, [...userDbs.keys()], fail);
        return userDbs.get(name)!;
      },
      get userDbNames() {
        return [...userDbs.keys()];
      },
      clock,
      persistIntervalMs,
      syncIntervalMs,
      jwtExpirationMs: jwtMs,
      history: options.history,
      onStart: (hook) => hooks.start.push(hook),
      onFlush: (hook) => hooks.flush.push(hook),
      onClose: (hook) => hooks.close.push(hook),
    };
  };

  for (const [kind, spec] of Object.entries(USER_DB_KINDS)) {
    for (const { table, path } of tablesOf(toml, kind)) {
      const ctx = contextFor(kind, path, table, spec.keys);
      if (userDbs.has(ctx.name)) {
        ctx.fail(
          "name",
          `a second user database is named "${ctx.name}"; give each one its own name`,
        );
      }
      userDbs.set(ctx.name, await spec.build(table, ctx));
    }
  }
  const kindOfName = new Map<string, string>();
  const pathOfName = new Map<string, string[]>();
  for (const [kind, spec] of Object.entries(MANAGER_KINDS)) {
    for (const { table, path } of tablesOf(toml, kind)) {
      const ctx = contextFor(kind, path, table, spec.keys);
      const other = kindOfName.get(ctx.name);
      if (other !== undefined) {
        ctx.fail(
          "name",
          `the name "${ctx.name}" is used twice (also by a ${other}); every manager needs its own name, since the rule refers to them by name`,
        );
      }
      if (ctx.name === "rules") {
        ctx.fail(
          "name",
          `"rules" names the rule itself in the API (discover, show), so no command could reach this manager; give it another name`,
        );
      }
      if (userDbs.has(ctx.name)) {
        ctx.fail(
          "name",
          `the name "${ctx.name}" is also the name of a user database; give each its own name (show could not tell them apart)`,
        );
      }
      if (ctx.name === "true" || ctx.name === "false") {
        ctx.fail(
          "name",
          `"${ctx.name}" is a constant of the rule and cannot name a manager`,
        );
      }
      kindOfName.set(ctx.name, kind);
      pathOfName.set(ctx.name, path);
      managers.set(ctx.name, await spec.build(table, ctx));
    }
  }

  // The rule.
  if (data.rule !== undefined && data.rules !== undefined) {
    throw new ConfigError(
      { file, line: at(["rules"]) },
      `both "rule" and "rules" are set; keep one of them (they are two spellings of the same key)`,
    );
  }
  const ruleKey = data.rule !== undefined ? "rule" : "rules";
  const ruleValue = data[ruleKey];
  if (ruleValue === undefined) {
    // The rule belongs on the first line: the error points there.
    throw new ConfigError(
      { file, line: 1 },
      `there is no rule: add a first line like rule = "sessions \u2227 down". Without a rule nothing would be allowed (the original then let everybody through)`,
    );
  }
  // The rule's line only for an error: looking a line up builds the
  // file's index of lines (managers/config/toml_file.ts).
  const ruleLine = () => at([ruleKey]);
  if (typeof ruleValue !== "string") {
    throw new ConfigError(
      { file, line: ruleLine() },
      `${ruleKey} must be a string in quotes, like rule = "sessions \u2227 down"`,
    );
  }
  let rule: Rule;
  try {
    rule = parseRule(ruleValue);
  } catch (e) {
    if (e instanceof RuleError) {
      throw new ConfigError(
        { file, line: ruleLine() },
        `${ruleKey}: ${e.message} (in ${JSON.stringify(ruleValue)})`,
      );
    }
    throw e;
  }
  const known = [...managers.keys()];
  for (const { name, column } of ruleNames(rule)) {
    if (managers.has(name)) continue;
    const near = nearestKey(name, known);
    throw new ConfigError(
      { file, line: ruleLine() },
      `${ruleKey}: "${name}" at column ${column} has no manager; known: ${
        known.length ? known.join(", ") : "none (define managers below)"
      }${near ? ` (did you mean "${near}"?)` : ""}`,
    );
  }
  const used = new Set(ruleNames(rule).map((n) => n.name));
  for (const [name, m] of managers) {
    if (used.has(name)) continue;
    warnAt(
      pathOfName.get(name)!,
      `${m.kind} "${name}" is not in the rule (${
        printRule(rule)
      }); it has no effect`,
    );
  }

  // An open proxy is never an accident: say how the rule lets strangers
  // through, and refuse it where anyone could reach the proxy.
  const openPath = findOpenPath(rule, (name) => managers.get(name)?.kind);
  if (openPath !== undefined && options.proxyListen !== undefined) {
    const verdict = judgeOpenRule(ruleValue, openPath, {
      listen: options.proxyListen,
      allowOpenProxy,
    });
    if (verdict.fatal) {
      throw new ConfigError({ file, line: ruleLine() }, verdict.message);
    }
    warnAt([ruleKey], verdict.message);
  }

  return {
    file,
    rule,
    ruleText: ruleValue,
    managers,
    userDbs,
    admins,
    jwtExpirationMs: jwtMs,
    allowOpenProxy,
    openPath,
    ...log,
    warnings,
    hooks,
  };
}

/** Where the access log goes and how: the top-level keys that say it. */
function accessLogKeys(
  data: Record<string, unknown>,
  site: {
    file: string;
    at: (path: string[]) => number | undefined;
    dir: string;
  },
): Pick<
  LoadedManagers,
  "syslogAddr" | "syslogFormat" | "accessLog" | "accessLogFormat"
> {
  const fail = (key: string, problem: string): never => {
    throw new ConfigError({ file: site.file, line: site.at([key]) }, problem);
  };
  const oneOf = <T extends string>(
    key: string,
    values: readonly T[],
  ): T | undefined => {
    const v = data[key];
    if (v === undefined) return undefined;
    if (typeof v !== "string" || !values.includes(v as T)) {
      return fail(
        key,
        `${key} = ${JSON.stringify(v)} is not one of ${
          values.map((x) => `"${x}"`).join(", ")
        }`,
      );
    }
    return v as T;
  };
  let syslogAddr: string | undefined;
  if (data.syslogAddr !== undefined) {
    const v = data.syslogAddr;
    const m = typeof v === "string" ? SYSLOG_ADDR.exec(v) : null;
    const port = Number(m?.[1] ?? 514);
    if (!m || port < 1 || port > 65535) {
      fail(
        "syslogAddr",
        `syslogAddr = ${
          JSON.stringify(v)
        } is not a syslog server: write "host:port" (UDP), "udp://host:port" or "tcp://host:port", e.g. "127.0.0.1:514"`,
      );
    }
    syslogAddr = v as string;
  }
  let accessLog: string | undefined;
  if (data.accessLog !== undefined) {
    const v = data.accessLog;
    if (typeof v !== "string" || v.trim() === "") {
      fail(
        "accessLog",
        `accessLog must be a file path in quotes, e.g. accessLog = "/var/log/pmproxy/access.log"`,
      );
    }
    accessLog = inDir(site.dir, v as string);
  }
  return {
    syslogAddr,
    syslogFormat: oneOf("syslogFormat", SYSLOG_FORMATS) ?? "rfc3164",
    accessLog,
    accessLogFormat: oneOf("accessLogFormat", ACCESS_LOG_FORMATS) ?? "squid",
  };
}
