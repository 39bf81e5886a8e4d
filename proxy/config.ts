/**
 * The `[proxy]` table of server.toml: the original's keys (`dialTimeout`,
 * `[proxy.server]` `readTimeout`, `writeTimeout`, `addr`, `fastOrStd`) and our
 * limits, each with a safe default.
 *
 * ```toml
 * [proxy]
 *   dialTimeout = "10s"
 *   responseTimeout = "5m"          # an upstream silent this long: 504, or the transfer ends
 *   connectPorts = [443, 8443]      # or "*" for every port
 *   maxTunnelsPerClient = 500
 *   poolMaxIdlePerOrigin = 256      # idle upstream connections kept per origin (see below)
 *   poolIdleTimeout = "30s"
 *   shutdownTimeout = "10s"         # on SIGTERM, transfers and tunnels get this long to end
 *   memoryTrim = true               # give memory back once a burst is over (memory_trim.ts)
 *   [proxy.server]
 *     addr = ":8080"                # all interfaces, port 8080
 *     readTimeout = "30s"           # a client silent this long mid-request is dropped
 *     writeTimeout = "20s"          # a write to a side that takes this long ends it
 *     headerTimeout = "30s"         # a request head must arrive within this
 *     idleTimeout = "60s"           # kept-alive client connections idle this long are closed
 *     maxConnections = 10000
 *     maxHeaderBytes = "64 KiB"
 *     maxRequestBody = "0"          # largest request body (413 beyond); "0": no limit
 *     maxHeaders = 100
 *     fastOrStd = false             # accepted and ignored
 * ```
 *
 * @module
 */
import { durationMs, nearest, sizeBytes } from "./_config_values.ts";

/** Everything the data path needs to know, with defaults filled in. */
export interface ProxyConfig {
  /** Address to listen on; `0.0.0.0`/`::` for all interfaces. */
  hostname: string;
  /** Port to listen on (0 picks a free one). */
  port: number;
  /** True when `addr` named no host: listen on every interface. */
  allInterfaces: boolean;
  /** Give up dialling upstream after this long. */
  dialTimeoutMs: number;
  /** No bytes from the client for this long ends the exchange (not tunnels). */
  readTimeoutMs: number;
  /** No bytes from upstream for this long: 504, or the transfer ends (not tunnels). */
  responseTimeoutMs: number;
  /** A write that does not complete in this long ends the exchange. */
  writeTimeoutMs: number;
  /** A request head must be complete this long after its first byte. */
  headerTimeoutMs: number;
  /** A kept-alive client connection idle this long is closed. */
  idleTimeoutMs: number;
  /** Largest request head accepted (431 beyond). */
  maxHeaderBytes: number;
  /** Most header fields accepted in one head (431 beyond). */
  maxHeaders: number;
  /** Largest request body accepted (413 beyond); 0 for no limit. */
  maxRequestBody: number;
  /** Most client connections at once; beyond it the proxy answers 503. */
  maxConnections: number;
  /** Ports CONNECT may reach, or `"*"` for every port. */
  connectPorts: number[] | "*";
  /** Most tunnels (CONNECT, upgrades) open at once per client address. */
  maxTunnelsPerClient: number;
  /** Idle keep-alive upstream connections kept per origin and route. */
  poolMaxIdlePerOrigin: number;
  /** An idle pooled upstream connection is closed after this long. */
  poolIdleTimeoutMs: number;
  /**
   * On a graceful stop (SIGTERM), how long open transfers and tunnels may
   * go on before they are closed; 0: closed at once.
   */
  shutdownTimeoutMs: number;
  /**
   * Once a burst is over and the proxy is quiet, one full garbage
   * collection gives back what the burst grew (see memory_trim.ts).
   */
  memoryTrim: boolean;
}

/** The defaults: what an empty `[proxy]` table gives. */
export const DEFAULT_PROXY_CONFIG: Readonly<ProxyConfig> = Object.freeze({
  hostname: "0.0.0.0",
  port: 8080,
  allInterfaces: true,
  dialTimeoutMs: 10_000,
  readTimeoutMs: 30_000,
  responseTimeoutMs: 300_000,
  writeTimeoutMs: 20_000,
  headerTimeoutMs: 30_000,
  idleTimeoutMs: 60_000,
  maxHeaderBytes: 64 * 1024,
  maxHeaders: 100,
  maxRequestBody: 0,
  maxConnections: 10_000,
  connectPorts: [443],
  maxTunnelsPerClient: 1000,
  // More than a busy origin has requests in flight: past it, every answer
  // closes a connection and a later request dials again (64 in flight to
  // one origin with 32 kept spent 14 % of the main thread connecting and
  // closing in the scale bench's profile).
  poolMaxIdlePerOrigin: 256,
  poolIdleTimeoutMs: 30_000,
  shutdownTimeoutMs: 10_000,
  memoryTrim: true,
});

/** Where the table came from, for error messages. */
export interface ConfigSite {
  /** The configuration file's path, as shown in messages. */
  file: string;
  /** The line of a key path such as `["proxy", "server", "addr"]`, when known. */
  lineOf?: (path: string[]) => number | undefined;
}

const PROXY_KEYS = [
  "dialTimeout",
  "responseTimeout",
  "server",
  "connectPorts",
  "maxTunnelsPerClient",
  "poolMaxIdlePerOrigin",
  "poolIdleTimeout",
  "shutdownTimeout",
  "memoryTrim",
];
const SERVER_KEYS = [
  "readTimeout",
  "writeTimeout",
  "addr",
  "fastOrStd",
  "headerTimeout",
  "idleTimeout",
  "maxConnections",
  "maxHeaderBytes",
  "maxHeaders",
  "maxRequestBody",
];

/**
 * Reads the `[proxy]` table (already parsed from TOML). Throws an Error whose
 * message says file:line, the key and what to write instead.
 *
 * ```ts
 * const config = proxyConfigFrom({ dialTimeout: "5s" }, { file: "server.toml" });
 * config.dialTimeoutMs; // 5000
 * ```
 */
export function proxyConfigFrom(
  table: unknown,
  site: ConfigSite,
): ProxyConfig {
  const config: ProxyConfig = { ...DEFAULT_PROXY_CONFIG };
  const proxy = asTable(table, ["proxy"], site);
  const server = asTable(proxy.server ?? {}, ["proxy", "server"], site);
  checkKeys(proxy, PROXY_KEYS, ["proxy"], site);
  checkKeys(server, SERVER_KEYS, ["proxy", "server"], site);

  const where = (section: string[], key: string) => {
    const line = site.lineOf?.([...section, key]) ??
      site.lineOf?.(section) ?? "?";
    return `${site.file}:${line}: [${section.join(".")}] ${key}`;
  };
  const duration = (t: Record<string, unknown>, s: string[], key: string) => {
    const v = t[key];
    if (v === undefined) return undefined;
    const ms = typeof v === "string"
      ? durationMs(v)
      : `${
        JSON.stringify(v)
      } is not a duration: write it like "30s" or "1h30m"`;
    if (typeof ms === "string") throw new Error(`${where(s, key)}: ${ms}`);
    return ms;
  };
  const count = (
    t: Record<string, unknown>,
    s: string[],
    key: string,
    min: number,
  ) => {
    const v = t[key];
    if (v === undefined) return undefined;
    if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
      throw new Error(
        `${where(s, key)}: ${
          JSON.stringify(v)
        } is not a whole number \u2265 ${min}: write e.g. ${key} = ${
          Math.max(min, 100)
        }`,
      );
    }
    return v;
  };
  const P = ["proxy"];
  const S = ["proxy", "server"];
  config.dialTimeoutMs = duration(proxy, P, "dialTimeout") ??
    config.dialTimeoutMs;
  config.responseTimeoutMs = duration(proxy, P, "responseTimeout") ??
    config.responseTimeoutMs;
  config.poolIdleTimeoutMs = duration(proxy, P, "poolIdleTimeout") ??
    config.poolIdleTimeoutMs;
  config.shutdownTimeoutMs = duration(proxy, P, "shutdownTimeout") ??
    config.shutdownTimeoutMs;
  config.maxTunnelsPerClient = count(proxy, P, "maxTunnelsPerClient", 1) ??
    config.maxTunnelsPerClient;
  config.poolMaxIdlePerOrigin = count(proxy, P, "poolMaxIdlePerOrigin", 0) ??
    config.poolMaxIdlePerOrigin;
  config.readTimeoutMs = duration(server, S, "readTimeout") ??
    config.readTimeoutMs;
  config.writeTimeoutMs = duration(server, S, "writeTimeout") ??
    config.writeTimeoutMs;
  config.headerTimeoutMs = duration(server, S, "headerTimeout") ??
    config.headerTimeoutMs;
  config.idleTimeoutMs = duration(server, S, "idleTimeout") ??
    config.idleTimeoutMs;
  config.maxConnections = count(server, S, "maxConnections", 1) ??
    config.maxConnections;
  config.maxHeaders = count(server, S, "maxHeaders", 1) ?? config.maxHeaders;
  if (server.maxHeaderBytes !== undefined) {
    const n = sizeBytes(server.maxHeaderBytes);
    if (typeof n === "string") {
      throw new Error(`${where(S, "maxHeaderBytes")}: ${n}`);
    }
    if (n < 1024) {
      throw new Error(
        `${
          where(S, "maxHeaderBytes")
        }: ${n} bytes is too small for real browsers: write at least "8 KiB"`,
      );
    }
    config.maxHeaderBytes = n;
  }
  if (server.maxRequestBody !== undefined) {
    const n = sizeBytes(server.maxRequestBody);
    if (typeof n === "string") {
      throw new Error(`${where(S, "maxRequestBody")}: ${n}`);
    }
    config.maxRequestBody = n;
  }
  if (proxy.connectPorts !== undefined) {
    config.connectPorts = connectPorts(
      proxy.connectPorts,
      where(P, "connectPorts"),
    );
  }
  if (server.addr !== undefined) {
    Object.assign(config, listenAddr(server.addr, where(S, "addr")));
  }
  if (proxy.memoryTrim !== undefined) {
    if (typeof proxy.memoryTrim !== "boolean") {
      throw new Error(
        `${where(P, "memoryTrim")}: ${
          JSON.stringify(proxy.memoryTrim)
        } is not true or false: write memoryTrim = false to turn trimming off`,
      );
    }
    config.memoryTrim = proxy.memoryTrim;
  }
  if (
    server.fastOrStd !== undefined && typeof server.fastOrStd !== "boolean"
  ) {
    throw new Error(
      `${where(S, "fastOrStd")}: ${
        JSON.stringify(server.fastOrStd)
      } is not true or false (the key is accepted and ignored)`,
    );
  }
  return config;
}

function asTable(
  value: unknown,
  path: string[],
  site: ConfigSite,
): Record<string, unknown> {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    return value as Record<string, unknown>;
  }
  throw new Error(
    `${site.file}:${site.lineOf?.(path) ?? "?"}: [${
      path.join(".")
    }] must be a table, not ${JSON.stringify(value)}`,
  );
}

function checkKeys(
  table: Record<string, unknown>,
  known: string[],
  section: string[],
  site: ConfigSite,
) {
  for (const key of Object.keys(table)) {
    if (known.includes(key)) continue;
    const near = nearest(key, known);
    throw new Error(
      `${site.file}:${site.lineOf?.([...section, key]) ?? "?"}: [${
        section.join(".")
      }] unknown key "${key}"${
        near ? ` (did you mean "${near}"?)` : ` (known: ${known.join(", ")})`
      }`,
    );
  }
}

function connectPorts(value: unknown, where: string): number[] | "*" {
  if (value === "*") return "*";
  if (
    Array.isArray(value) &&
    value.every((p) => Number.isInteger(p) && p >= 1 && p <= 65535)
  ) {
    return [...value] as number[];
  }
  throw new Error(
    `${where}: ${
      JSON.stringify(value)
    } is not a list of ports: write e.g. [443, 8443], or "*" to allow every port`,
  );
}

function listenAddr(
  value: unknown,
  where: string,
): Pick<ProxyConfig, "hostname" | "port" | "allInterfaces"> {
  const bad = () =>
    new Error(
      `${where}: ${
        JSON.stringify(value)
      } is not a listen address: write ":8080" (every interface) or "127.0.0.1:8080"`,
    );
  if (typeof value !== "string") throw bad();
  const colon = value.lastIndexOf(":");
  if (colon < 0) throw bad();
  let host = value.slice(0, colon);
  const portText = value.slice(colon + 1);
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw bad();
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  if (host.includes(" ")) throw bad();
  return {
    hostname: host === "" ? "0.0.0.0" : host,
    port: Number(portText),
    allInterfaces: host === "",
  };
}
