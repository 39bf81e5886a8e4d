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
 * ```
 *
 * The command line's `--state URL` wins over it.
 *
 * @module
 */
import { isAbsolute, join } from "node:path";
import { ConfigError } from "../types.ts";
import { nearestKey } from "../config/toml_file.ts";
import { DEFAULT_SYNC_INTERVAL_MS } from "../config/loader.ts";
import { parseDuration } from "../values/units.ts";
import { redactUrl } from "./_redis_url.ts";

/** `[state]`, read. */
export interface StateConfig {
  /** The store's location, when the file names one (paths made absolute). */
  url?: string;
  /** `syncInterval` in ms (default 1 s). */
  syncIntervalMs: number;
}

/** Where `[state]` stands, for error messages. */
export interface StateConfigSite {
  file: string;
  /** Relative file paths are taken from here. */
  configDir: string;
  lineOf?: (path: string[]) => number | undefined;
}

const STATE_KEYS = ["url", "syncInterval"];

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
  if (table === undefined) return { syncIntervalMs: DEFAULT_SYNC_INTERVAL_MS };
  if (typeof table !== "object" || table === null || Array.isArray(table)) {
    return fail([], `[state] must be a table with url = "…"`);
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
  if (t.url === undefined) return { syncIntervalMs };
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
    return { url, syncIntervalMs };
  }
  return {
    url: isAbsolute(url) ? url : join(site.configDir, url),
    syncIntervalMs,
  };
}
