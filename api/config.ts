/**
 * The `[api]` table of `server.toml`: where the HTTPS API listens, its
 * certificate, the static web files, and how often consumption is saved.
 *
 * ```toml
 * [api]
 *   excludedRoutes = ["/about"]
 *   httpsCert = "cert.pem"
 *   httpsKey = "key.pem"
 *   webStaticFilesDir = "staticFiles"
 *   persistInterval = "5m"
 *   publicUrl = "https://gateway.example.org:4443/"
 *   pacDirect = ["intranet.example.org", "*.example.org", "10.0.0.0/8"]
 *   metricsAllow = ["10.0.0.0/24"]  # who may GET /metrics besides this machine
 *   [api.server]
 *     readTimeout = "30s"
 *     writeTimeout = "20s"
 *     addr = ":4443"
 *     fastOrStd = false
 * ```
 *
 * @module
 */
import {
  type Cidr,
  ConfigError,
  inDir,
  nearestKey,
  parseCidr,
  parseDuration,
} from "../managers/mod.ts";
import { type PacDirect, parsePacDirect } from "./pac_direct.ts";

/** The API's configuration, with paths made absolute and durations in ms. */
export interface ApiConfig {
  /** Paths the web app handles itself: answered with its index page. */
  excludedRoutes: string[];
  /** The certificate (PEM); generated when missing. */
  httpsCert: string;
  /** The private key (PEM, PKCS#8); generated when missing. */
  httpsKey: string;
  /** Files served before the embedded web pages, when the directory exists. */
  webStaticFilesDir?: string;
  /** How often download consumption is written to the store. */
  persistIntervalMs: number;
  /** Accepted for compatibility; Deno.serve has no such timeouts. */
  readTimeoutMs?: number;
  /** Accepted for compatibility; Deno.serve has no such timeouts. */
  writeTimeoutMs?: number;
  /** The listen address as written (`":4443"`, `"127.0.0.1:0"`, `"[::1]:4443"`). */
  addr: string;
  /** The host to listen on (`"::"` for every address). */
  hostname: string;
  /** The port to listen on (0: any free port). */
  port: number;
  /** True when `addr` names no host: the API listens on every address. */
  wildcard: boolean;
  /** The URL users are told to log in at. */
  publicUrl: string;
  /**
   * True when server.toml sets `publicUrl`: its host is then the one
   * clients reach the gateway at (the PAC file names it for the proxy).
   */
  publicUrlSet: boolean;
  /** What the PAC file sends DIRECT besides the gateway itself (`pacDirect`). */
  pacDirect: PacDirect[];
  /** Who may read `/metrics` besides this machine (loopback). */
  metricsAllow: Cidr[];
}

/** Where the `[api]` table stands, for error messages and relative paths. */
export interface ApiConfigSite {
  /** The file (`server.toml`) for messages. */
  file: string;
  /** Relative paths (certificate, key, static files) start here. */
  configDir: string;
  /** The 1-based line of a key path, when known. */
  lineOf?: (path: string[]) => number | undefined;
}

const API_KEYS = [
  "excludedRoutes",
  "httpsCert",
  "httpsKey",
  "webStaticFilesDir",
  "persistInterval",
  "publicUrl",
  "pacDirect",
  "metricsAllow",
  "server",
];
const SERVER_KEYS = ["readTimeout", "writeTimeout", "addr", "fastOrStd"];

function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) &&
    !(v instanceof Date);
}

/** Splits `":4443"`, `"host:port"`, `"[::1]:port"` into host and port. */
function splitAddr(
  addr: string,
): { hostname: string; port: number; wildcard: boolean } | undefined {
  const m = /^(?:\[([^\]]*)\]|([^:]*)):(\d{1,5})$/.exec(addr.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  const host = m[1] ?? m[2] ?? "";
  if (host === "" || host === "0.0.0.0" || host === "::") {
    return {
      hostname: host === "0.0.0.0" ? "0.0.0.0" : "::",
      port,
      wildcard: true,
    };
  }
  return { hostname: host, port, wildcard: false };
}

function machineHostname(): string {
  try {
    return Deno.hostname();
  } catch {
    return "localhost";
  }
}

/**
 * Reads the `[api]` table of `server.toml`. Throws {@link ConfigError} with
 * file, line and what to do for an unknown key or a wrong value.
 *
 * ```ts
 * const config = apiConfigFrom({ server: { addr: "127.0.0.1:0" } }, {
 *   file: "server.toml",
 *   configDir: "/etc/pmproxy",
 * });
 * ```
 */
export function apiConfigFrom(table: unknown, site: ApiConfigSite): ApiConfig {
  const fail = (path: string[], problem: string): never => {
    throw new ConfigError(
      { file: site.file, line: site.lineOf?.(["api", ...path]) },
      problem,
    );
  };
  if (table === undefined) table = {};
  if (!isTable(table)) fail([], "[api] must be a table");
  const api = table as Record<string, unknown>;
  const server = api.server ?? {};
  if (!isTable(server)) {
    fail(["server"], "[api.server] must be a table (addr, readTimeout, ...)");
  }
  const serverTable = server as Record<string, unknown>;

  const unknownKey = (path: string[], key: string, known: string[]) => {
    const near = nearestKey(key, known);
    fail(
      [...path, key],
      `unknown key "${key}" in [${["api", ...path].join(".")}]` +
        (near ? `; did you mean "${near}"?` : "") +
        ` (known keys: ${known.join(", ")})`,
    );
  };
  for (const key of Object.keys(api)) {
    if (!API_KEYS.includes(key)) unknownKey([], key, API_KEYS);
  }
  for (const key of Object.keys(serverTable)) {
    if (!SERVER_KEYS.includes(key)) unknownKey(["server"], key, SERVER_KEYS);
  }

  const str = (
    path: string[],
    value: unknown,
    fallback: string,
  ): string => {
    if (value === undefined) return fallback;
    if (typeof value !== "string") {
      fail(path, `${path.join(".")} must be a string, e.g. "${fallback}"`);
    }
    return value as string;
  };
  const duration = (
    path: string[],
    value: unknown,
    fallback?: string,
  ): number | undefined => {
    if (value === undefined && fallback === undefined) return undefined;
    if (value !== undefined && typeof value !== "string") {
      fail(path, `${path.join(".")} must be a duration string, e.g. "30s"`);
    }
    const text = str(path, value, fallback ?? "");
    const ms = parseDuration(text);
    if (typeof ms === "string") fail(path, `${path.join(".")}: ${ms}`);
    return ms as number;
  };
  const resolve = (p: string) => inDir(site.configDir, p);

  let excludedRoutes: string[] = [];
  if (api.excludedRoutes !== undefined) {
    const routes = api.excludedRoutes;
    if (
      !Array.isArray(routes) ||
      !routes.every((r) => typeof r === "string" && r.startsWith("/"))
    ) {
      fail(
        ["excludedRoutes"],
        `excludedRoutes must be a list of paths, e.g. ["/about"]`,
      );
    }
    excludedRoutes = routes as string[];
  }
  const httpsCert = resolve(str(["httpsCert"], api.httpsCert, "cert.pem"));
  const httpsKey = resolve(str(["httpsKey"], api.httpsKey, "key.pem"));
  const staticDir = str(["webStaticFilesDir"], api.webStaticFilesDir, "");
  const persistIntervalMs = duration(
    ["persistInterval"],
    api.persistInterval,
    "5m",
  )!;
  if (persistIntervalMs <= 0) {
    fail(
      ["persistInterval"],
      `persistInterval must be longer than 0, e.g. "5m"`,
    );
  }
  const readTimeoutMs = duration(
    ["server", "readTimeout"],
    serverTable.readTimeout,
  );
  const writeTimeoutMs = duration(
    ["server", "writeTimeout"],
    serverTable.writeTimeout,
  );
  if (
    serverTable.fastOrStd !== undefined &&
    typeof serverTable.fastOrStd !== "boolean"
  ) {
    fail(
      ["server", "fastOrStd"],
      "fastOrStd must be true or false (it is ignored)",
    );
  }
  const addr = str(["server", "addr"], serverTable.addr, ":4443");
  const split = splitAddr(addr);
  if (!split) {
    fail(
      ["server", "addr"],
      `addr "${addr}" is not an address: write ":4443", "0.0.0.0:4443", "192.168.1.1:4443" or "[::1]:4443"`,
    );
  }
  const { hostname, port, wildcard } = split!;
  let publicUrl: string;
  if (api.publicUrl === undefined) {
    const host = wildcard ? machineHostname() : hostname;
    const shown = host.includes(":") ? `[${host}]` : host;
    publicUrl = `https://${shown}:${port}/`;
  } else {
    publicUrl = str(["publicUrl"], api.publicUrl, "https://gateway:4443/");
    let ok = false;
    try {
      ok = new URL(publicUrl).protocol === "https:";
    } catch {
      ok = false;
    }
    if (!ok) {
      fail(
        ["publicUrl"],
        `publicUrl "${publicUrl}" is not an https URL, e.g. "https://gateway.example.org:4443/"`,
      );
    }
  }
  const pacDirect: PacDirect[] = [];
  if (api.pacDirect !== undefined) {
    const list = api.pacDirect;
    if (!Array.isArray(list) || !list.every((e) => typeof e === "string")) {
      fail(
        ["pacDirect"],
        `pacDirect must be a list of host names, domain suffixes and address ranges, e.g. ["intranet.example.org", "*.example.org", "10.0.0.0/8"]`,
      );
    }
    for (const entry of list as string[]) {
      const parsed = parsePacDirect(entry);
      if (typeof parsed === "string") fail(["pacDirect"], parsed);
      pacDirect.push(parsed as PacDirect);
    }
  }
  const metricsAllow: Cidr[] = [];
  if (api.metricsAllow !== undefined) {
    const list = api.metricsAllow;
    if (!Array.isArray(list)) {
      fail(
        ["metricsAllow"],
        `metricsAllow must be a list of address ranges, e.g. ["10.0.0.0/24", "192.168.1.5"]`,
      );
    }
    for (const item of list as unknown[]) {
      const cidr = typeof item === "string"
        ? parseCidr(item)
        : `${
          JSON.stringify(item)
        } is not an address range in quotes, like "10.0.0.0/24"`;
      if (typeof cidr === "string") {
        fail(["metricsAllow"], `metricsAllow: ${cidr}`);
      }
      metricsAllow.push(cidr as Cidr);
    }
  }
  return {
    excludedRoutes,
    httpsCert,
    httpsKey,
    webStaticFilesDir: staticDir === "" ? undefined : resolve(staticDir),
    persistIntervalMs,
    readTimeoutMs,
    writeTimeoutMs,
    addr,
    hostname,
    port,
    wildcard,
    publicUrl,
    publicUrlSet: api.publicUrl !== undefined,
    pacDirect,
    metricsAllow,
  };
}
