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
 * // or openFileLog("/var/log/pmproxy/access.log"), openSyslog("tcp://logs:514")
 * const accessLog = openStdoutLog();
 * const proxy = await startProxy(config, {
 *   decide: () => ({ allowed: true, route: { kind: "direct" } }),
 * }, { accessLog });
 * console.log(`proxy on ${proxy.addr.hostname}:${proxy.addr.port}`);
 * proxy.stats.requestsAllowed; // counters, for /metrics
 * await proxy.shutdown(); // graceful: open transfers get shutdownTimeout
 * await accessLog.close();
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
  type ProxyChange,
  type RunningProxy,
  type StartOptions,
  startProxy,
} from "./listener.ts";
export {
  type FileLogOptions,
  type LogSink,
  openFileLog,
  openStdoutLog,
  openSyslog,
  teeLogs,
} from "./log_sinks.ts";
export type { SyslogFormat, SyslogOptions, SyslogTarget } from "./syslog.ts";
export {
  type MemoryTrim,
  type MemoryTrimOptions,
  startMemoryTrim,
} from "./memory_trim.ts";
export type { AccessLogFormat } from "./access_log.ts";
export type { DialFailureKind, Outcome, ProxyStats } from "./stats.ts";
export { finishedRequests } from "./stats.ts";
export type * from "./policy.ts";
export { GO_ON, STOP } from "./policy.ts";
