/**
 * The `[state]` section of `server.toml`: where the state store is.
 *
 * ```toml
 * [state]
 *   # A Deno KV file (default: state.kv in the configuration directory),
 *   # or redis://[user:pass@]host:port/db (rediss:// for TLS) to share one
 *   # state between several gateways.
 *   url = "redis://10.0.0.9:6379/0"
 *   # How often each gateway writes and reads back the counters of users
 *   # near their quota (80 % or more), besides every persistInterval.
 *   syncInterval = "1s"
 *   # How long the usage history keeps bytes per user per hour, and per
 *   # day (whole numbers; 0 keeps none).
 *   historyHours = 48
 *   historyDays = 400
 * ```
 *
 * The command line's `--state URL` wins over it.
 *
 * @module
 */
import { inDir } from "../config/paths.ts";
import { ConfigError } from "../types.ts";
import { nearestKey } from "../config/toml_file.ts";
import { DEFAULT_SYNC_INTERVAL_MS } from "../config/loader.ts";
import { parseDuration } from "../values/units.ts";
import { redactUrl } from "./_redis_url.ts";
import { DEFAULT_HISTORY_RETENTION, type HistoryRetention } from "./store.ts";

/** `[state]`, read. */
export interface StateConfig {
  /** The store's location, when the file names one (paths made absolute). */
  url?: string;
  /** `syncInterval` in ms (default 1 s). */
  syncIntervalMs: number;
  /** `historyHours` and `historyDays` (default 48 and 400). */
  history: HistoryRetention;
}

/** Where `[state]` stands, for error messages. */
export interface StateConfigSite {
  file: string;
  /** Relative file paths are taken from here. */
  configDir: string;
  lineOf?: (path: string[]) => number | undefined;
}

const STATE_KEYS = ["url", "syncInterval", "historyHours", "historyDays"];

/** The most each history key accepts (ten years of hours or days). */
const HISTORY_MAX = { historyHours: 24 * 3660, historyDays: 3660 };

/** `historyHours` / `historyDays`: a whole number from 0, or a problem. */
function historyCount(
  key: "historyHours" | "historyDays",
  value: unknown,
  fallback: number,
): number | string {
  if (value === undefined) return fallback;
  const n = typeof value === "bigint" ? Number(value) : value;
  if (
    typeof n !== "number" || !Number.isInteger(n) || n < 0 ||
    n > HISTORY_MAX[key]
  ) {
    return `${key} must be a whole number from 0 to ${
      HISTORY_MAX[key]
    } without quotes, like ${key} = ${fallback} (0 keeps no history of that grain)`;
  }
  return n;
}

/** Reads `[state]`; throws a ConfigError at the key that is wrong. */
export function stateConfigFrom(
  table: unknown,
  site: StateConfigSite,
): StateConfig {
  const fail = (path: string[], problem: string): never => {
    throw new ConfigError(
      { file: site.file, line: site.lineOf?.(["state", ...path]) },
      problem,
    );
  };
  if (table === undefined) {
    return {
      syncIntervalMs: DEFAULT_SYNC_INTERVAL_MS,
      history: { ...DEFAULT_HISTORY_RETENTION },
    };
  }
  if (typeof table !== "object" || table === null || Array.isArray(table)) {
    return fail([], `[state] must be a table with url = "\u2026"`);
  }
  const t = table as Record<string, unknown>;
  for (const key of Object.keys(t)) {
    if (STATE_KEYS.includes(key)) continue;
    const near = nearestKey(key, STATE_KEYS);
    fail(
      [key],
      `unknown key "${key}" in [state]${
        near ? `; did you mean "${near}"?` : ""
      } (known keys: ${STATE_KEYS.join(", ")})`,
    );
  }
  let syncIntervalMs = DEFAULT_SYNC_INTERVAL_MS;
  if (t.syncInterval !== undefined) {
    const ms = typeof t.syncInterval === "string"
      ? parseDuration(t.syncInterval)
      : `it must be a duration in quotes like "1s"`;
    if (typeof ms === "string") fail(["syncInterval"], `syncInterval: ${ms}`);
    syncIntervalMs = ms as number;
  }
  const hours = historyCount(
    "historyHours",
    t.historyHours,
    DEFAULT_HISTORY_RETENTION.hours,
  );
  if (typeof hours === "string") fail(["historyHours"], hours);
  const days = historyCount(
    "historyDays",
    t.historyDays,
    DEFAULT_HISTORY_RETENTION.days,
  );
  if (typeof days === "string") fail(["historyDays"], days);
  const history = { hours: hours as number, days: days as number };
  if (t.url === undefined) return { syncIntervalMs, history };
  if (typeof t.url !== "string" || t.url.trim() === "") {
    return fail(
      ["url"],
      `[state] url must be a string: a Deno KV file path or redis://host:6379/0`,
    );
  }
  const url = t.url.trim();
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
    const scheme = url.slice(0, url.indexOf(":")).toLowerCase();
    if (!["redis", "rediss", "http", "https"].includes(scheme)) {
      fail(
        ["url"],
        `[state] url "${
          redactUrl(url)
        }": the scheme ${scheme}: is not a state store; use a Deno KV file path, redis://, rediss:// or a KV Connect https:// URL`,
      );
    }
    return { url, syncIntervalMs, history };
  }
  return {
    url: inDir(site.configDir, url),
    syncIntervalMs,
    history,
  };
}
