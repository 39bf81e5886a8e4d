/**
 * The policy of pmproxy: `managers.toml` (the rule and its managers), user
 * databases, sessions, download quotas, and their state (Deno KV or Redis). The
 * proxy asks it about every request ({@link GatewayRuntime.decide}); the API
 * drives it through the {@link Gateway} methods.
 *
 * @example
 * ```ts
 * import { openGateway } from "./mod.ts";
 *
 * const gateway = await openGateway("managers.toml", {
 *   state: "state.kv",
 *   persistIntervalMs: 60_000,
 *   loginUrl: "https://gateway:4443",
 * });
 * for (const w of gateway.warnings) console.warn(w);
 * const decision = gateway.decide({
 *   clientIp: "10.0.0.5",
 *   time: new Date(),
 *   method: "GET",
 *   url: "http://example.org/",
 *   host: "example.org",
 *   port: 80,
 * });
 * // decision.allowed === false until 10.0.0.5 logs in:
 * await gateway.open("sessions", "10.0.0.5", "user0", "pass0");
 * await gateway.close(); // saves consumption, closes the store
 * ```
 *
 * @module
 */
import { readTomlFile } from "./config/toml_file.ts";
import { loadManagers } from "./config/loader.ts";
import type { ListenAddress } from "./config/open_rule.ts";
import { GatewayRuntime } from "./gateway.ts";
import type { HistoryRetention, StateStore } from "./state/store.ts";
import { openStateStore } from "./state/open_store.ts";

export { nearestKey, readTomlFile, type TomlFile } from "./config/toml_file.ts";
export { hashPassword, verifyPassword } from "./users/password.ts";
export { GatewayRuntime, type ReloadResult } from "./gateway.ts";
export {
  type CaptivePortalOptions,
  withCaptivePortal,
} from "./captive_portal.ts";
export { CombinedMeter } from "./resources/combined_meter.ts";
export type { LoadedManagers } from "./config/loader.ts";
export type { ListenAddress } from "./config/open_rule.ts";
export {
  BadCredentials,
  type Caller,
  CommandError,
  ConfigError,
  type ConfigSite,
  type DiscoverResult,
  type Gateway,
  LOGIN_FAILED,
  TooManyAttempts,
  type UserInfo,
} from "./types.ts";
export { formatSize, parseDuration, parseSize } from "./values/units.ts";
export {
  type Cidr,
  cidrContains,
  formatCidr,
  normalizeIp,
  parseCidr,
  parseIp,
} from "./values/ip.ts";
export {
  FLUSH_SECONDS,
  type GatewaySnapshot,
  type GatewayStats,
  Histogram,
} from "./stats.ts";
export { zoneFormatter } from "./values/zone.ts";
export { basename, dirname, inDir, join } from "./config/paths.ts";
export type { ExplainQuery, ExplainStep, Explanation } from "./types.ts";
export {
  type LiveFigures,
  type ManagerSummary,
  type ProxyFigures,
  type UsageBy,
  type UsageQuery,
  type UsageReport,
  type UserRow,
  USERS_PAGE_MAX,
  type UsersPage,
  type UsersQuery,
  type UsersSort,
} from "./types.ts";
export { type HistoryRetention } from "./state/store.ts";
export type { StateStore, StoreStatus } from "./state/store.ts";
export { openStateStore } from "./state/open_store.ts";
export type { ImportSummary, StateLine } from "./state/migrate.ts";
/**
 * The moving of state between stores (`pmproxy state export|import`):
 * `exportState`, `importState` and `textLines`, loaded when asked for, since
 * `serve` never needs them (V8 keeps the text of every loaded module).
 */
export const loadStateMigration = (): Promise<
  typeof import("./state/migrate.ts")
> => import("./state/migrate.ts");
export { type StateConfig, stateConfigFrom } from "./state/config.ts";

/** Options of {@link openGateway}. */
export interface OpenGatewayOptions {
  /**
   * Where sessions and consumption are kept: a Deno KV file path, a KV
   * Connect URL, `redis://`/`rediss://` (several gateways on one Redis), or
   * an opened {@link StateStore} (closed with the gateway).
   */
  state: string | StateStore;
  /** How often consumption is written to the store (ms; 0: only on flush). */
  persistIntervalMs: number;
  /**
   * How often users near their quota are synced with the store (ms; 0:
   * only with the flush; default 1 s).
   */
  syncIntervalMs?: number;
  /** The web page where people log in, shown when a request is refused. */
  loginUrl?: string;
  /**
   * How long the usage history is kept (`[state] historyHours`,
   * `historyDays`; default 48 hours, 400 days).
   */
  history?: HistoryRetention;
  /** The time now (tests inject a clock). */
  clock?: () => Date;
  /**
   * Where the proxy listens: an open rule (one that identifies nobody) is
   * then warned about, and refused on every interface unless
   * `allowOpenProxy = true`.
   */
  proxyListen?: ListenAddress;
}

/**
 * Loads `managers.toml`, opens the store, restores sessions and consumption,
 * and starts the persist timer. Throws a ConfigError for a broken file.
 */
export async function openGateway(
  managersFile: string,
  options: OpenGatewayOptions,
): Promise<GatewayRuntime> {
  const load = async () =>
    await loadManagers(await readTomlFile(managersFile), {
      clock: options.clock,
      persistIntervalMs: options.persistIntervalMs,
      syncIntervalMs: options.syncIntervalMs,
      proxyListen: options.proxyListen,
      history: options.history,
    });
  const loaded = await load();
  const store = typeof options.state === "string"
    ? await openStateStore(options.state)
    : options.state;
  try {
    for (const hook of loaded.hooks.start) await hook(store);
  } catch (e) {
    await store.close();
    throw e;
  }
  return new GatewayRuntime(loaded, store, { ...options, load });
}

/**
 * Writes the default `managers.toml` at `path` (failing if it exists) and
 * answers the administrator's user name and password, to be shown once.
 * Its module (config/default_file.ts) is loaded here: only a first start
 * writes one.
 */
export async function writeDefaultManagersFile(
  path: string,
): Promise<{ user: string; password: string }> {
  const file = await import("./config/default_file.ts");
  return await file.writeDefaultManagersFile(path);
}

/** Options of {@link checkManagersFile}. */
export interface CheckOptions {
  /** Where the proxy listens (see {@link OpenGatewayOptions.proxyListen}). */
  proxyListen?: ListenAddress;
}

/**
 * Checks `managers.toml` without opening the store (for `pmproxy
 * check-config`). Throws a ConfigError; answers the warnings.
 */
export async function checkManagersFile(
  path: string,
  options: CheckOptions = {},
): Promise<{ warnings: string[] }> {
  const loaded = await loadManagers(await readTomlFile(path), {
    proxyListen: options.proxyListen,
  });
  return { warnings: loaded.warnings };
}
