/**
 * pmproxy's data path: an HTTP/1.1 forward proxy (absolute-form requests,
 * CONNECT tunnels, upgrades) that asks a {@link Policy} about every request,
 * dials the route it answers, meters what comes back and logs each exchange.
 *
 * ```ts
 * import { openStdoutLog, proxyConfigFrom, startProxy } from "./proxy/mod.ts";
 *
 * const config = proxyConfigFrom(
 *   { server: { addr: "127.0.0.1:0" } },
 *   { file: "server.toml" },
 * );
 * const accessLog = openStdoutLog(); // or openSyslog("127.0.0.1:514")
 * const proxy = await startProxy(config, {
 *   decide: () => ({ allowed: true, route: { kind: "direct" } }),
 * }, { accessLog });
 * console.log(`proxy on ${proxy.addr.hostname}:${proxy.addr.port}`);
 * await proxy.close();
 * accessLog.close();
 * ```
 *
 * @module
 */
export {
  type ConfigSite,
  DEFAULT_PROXY_CONFIG,
  type ProxyConfig,
  proxyConfigFrom,
} from "./config.ts";
export {
  type RunningProxy,
  type StartOptions,
  startProxy,
} from "./listener.ts";
export { type LogSink, openStdoutLog, openSyslog } from "./log_sinks.ts";
export type * from "./policy.ts";
export { GO_ON, STOP } from "./policy.ts";
