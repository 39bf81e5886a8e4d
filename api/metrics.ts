/**
 * `GET /metrics`: the counters of the proxy and of the gateway, in the
 * Prometheus text exposition format (version 0.0.4). The data path and
 * the policy only increment plain number fields (proxy/stats.ts,
 * managers/stats.ts); the names, the labels and the text are made here,
 * when a scraper asks.
 *
 * ```ts
 * const metrics = new MetricsRegistry(buildInfo);
 * metrics.gateway = gateway;        // its snapshot() is read at each scrape
 * metrics.proxy = proxy.stats;      // read as it is
 * metrics.countReload("ok");        // a reload of the configuration
 * metrics.countLoginThrottle();     // a login refused for coming too often
 * metrics.render();                 // "# HELP pmproxy_build_info ..."
 * ```
 *
 * The families:
 *
 * | name | type | labels |
 * | ---- | ---- | ------ |
 * | `pmproxy_build_info` | gauge (1) | `version`, `commit` |
 * | `process_start_time_seconds` | gauge | |
 * | `pmproxy_requests_total` | counter | `outcome`: allowed, refused, quota, auth, error |
 * | `pmproxy_upstream_received_bytes_total`, `pmproxy_upstream_sent_bytes_total` | counter | |
 * | `pmproxy_client_connections`, `pmproxy_tunnels` | gauge | |
 * | `pmproxy_upstream_dial_failures_total` | counter | `kind`: timeout, refused, dns, parent, other |
 * | `pmproxy_upstream_timeouts_total` | counter | `kind`: dial, response |
 * | `pmproxy_sessions` | gauge | `manager` |
 * | `pmproxy_quota_consumed_bytes` | gauge | `manager` |
 * | `pmproxy_login_failures_total` | counter | `via`: api, proxy |
 * | `pmproxy_login_throttles_total` | counter | |
 * | `pmproxy_state_flush_duration_seconds` | histogram | |
 * | `pmproxy_state_flush_errors_total` | counter | |
 * | `pmproxy_state_store_up` | gauge (1 or 0) | |
 * | `pmproxy_reloads_total` | counter | `result`: ok, error |
 *
 * @module
 */
import type { GatewaySnapshot } from "../managers/mod.ts";
import type { BuildInfo } from "./build_info.ts";

/**
 * The proxy's counters this file reads: the fields of proxy/stats.ts's
 * `ProxyStats` (api/ does not import proxy/; main.ts hands the object over,
 * and the type checker holds the two together there).
 */
export interface ProxyCounters {
  requestsAllowed: number;
  requestsRefused: number;
  requestsQuota: number;
  requestsAuth: number;
  requestsError: number;
  bytesFromUpstream: number;
  bytesToUpstream: number;
  clientConnections: number;
  tunnels: number;
  dialTimeouts: number;
  dialRefused: number;
  dialDns: number;
  dialParent: number;
  dialOther: number;
  responseTimeouts: number;
}

/** Where the metrics come from, and the counters kept here. */
export class MetricsRegistry {
  /** The proxy's counters, once it runs. */
  proxy: Readonly<ProxyCounters> | undefined = undefined;
  /** The gateway, read at every scrape. */
  gateway: { snapshot(): GatewaySnapshot } | undefined = undefined;
  /** Reloads of the configuration, by result. */
  readonly reloads = { ok: 0, error: 0 };
  /**
   * Logins refused for coming too often, counted here by a throttle that
   * has the registry (in api/ or main.ts); one inside managers/ counts
   * `GatewayStats.loginThrottles` instead. The metric is their sum.
   */
  loginThrottles = 0;

  #build: BuildInfo | (() => BuildInfo);

  /**
   * `build`: what this pmproxy is, or a function that tells it at the
   * first render (from the source, that asks git: a start spawns nothing).
   * `startTimeMs`: when the process started (ms since the epoch; default
   * `performance.timeOrigin`).
   */
  constructor(
    build: BuildInfo | (() => BuildInfo),
    readonly startTimeMs: number = performance.timeOrigin,
  ) {
    this.#build = build;
  }

  /** What this pmproxy is (see the constructor). */
  get build(): BuildInfo {
    if (typeof this.#build === "function") this.#build = this.#build();
    return this.#build;
  }

  /** Counts one reload of the configuration that worked or failed. */
  countReload(result: "ok" | "error"): void {
    this.reloads[result]++;
  }

  /** Counts one login refused for coming too often. */
  countLoginThrottle(): void {
    this.loginThrottles++;
  }

  /** Everything, in the Prometheus text format. */
  render(): string {
    const out = new Exposition();
    out.family(
      "pmproxy_build_info",
      "gauge",
      "The version and commit of this pmproxy (always 1).",
    );
    out.sample("pmproxy_build_info", 1, {
      version: this.build.version,
      commit: this.build.commit,
    });
    out.family(
      "process_start_time_seconds",
      "gauge",
      "When this process started, in seconds since the epoch.",
    );
    out.sample("process_start_time_seconds", this.startTimeMs / 1000);
    if (this.proxy) proxyFamilies(out, this.proxy);
    if (this.gateway) {
      gatewayFamilies(out, this.gateway.snapshot(), this.loginThrottles);
    } else {
      out.counter(
        "pmproxy_login_throttles_total",
        THROTTLES_HELP,
        this.loginThrottles,
      );
    }
    out.family(
      "pmproxy_reloads_total",
      "counter",
      "Reloads of the configuration, by result.",
    );
    out.sample("pmproxy_reloads_total", this.reloads.ok, { result: "ok" });
    out.sample("pmproxy_reloads_total", this.reloads.error, {
      result: "error",
    });
    return out.text();
  }
}

function proxyFamilies(out: Exposition, p: Readonly<ProxyCounters>): void {
  out.family(
    "pmproxy_requests_total",
    "counter",
    "Finished requests by outcome: allowed, refused by the rule, quota reached, proxy credentials required, error.",
  );
  const requests: [string, number][] = [
    ["allowed", p.requestsAllowed],
    ["refused", p.requestsRefused],
    ["quota", p.requestsQuota],
    ["auth", p.requestsAuth],
    ["error", p.requestsError],
  ];
  for (const [outcome, n] of requests) {
    out.sample("pmproxy_requests_total", n, { outcome });
  }
  out.counter(
    "pmproxy_upstream_received_bytes_total",
    "Bytes read from upstream connections (heads, bodies, tunnels).",
    p.bytesFromUpstream,
  );
  out.counter(
    "pmproxy_upstream_sent_bytes_total",
    "Bytes written to upstream connections (heads, bodies, tunnels).",
    p.bytesToUpstream,
  );
  out.gauge(
    "pmproxy_client_connections",
    "Client connections open now.",
    p.clientConnections,
  );
  out.gauge(
    "pmproxy_tunnels",
    "Tunnels (CONNECT, upgraded connections) open now.",
    p.tunnels,
  );
  out.family(
    "pmproxy_upstream_dial_failures_total",
    "counter",
    "Connections to upstream that could not be made, by kind.",
  );
  const dials: [string, number][] = [
    ["timeout", p.dialTimeouts],
    ["refused", p.dialRefused],
    ["dns", p.dialDns],
    ["parent", p.dialParent],
    ["other", p.dialOther],
  ];
  for (const [kind, n] of dials) {
    out.sample("pmproxy_upstream_dial_failures_total", n, { kind });
  }
  out.family(
    "pmproxy_upstream_timeouts_total",
    "counter",
    "Upstreams that took too long: to connect (dialTimeout) or to answer (responseTimeout).",
  );
  out.sample("pmproxy_upstream_timeouts_total", p.dialTimeouts, {
    kind: "dial",
  });
  out.sample("pmproxy_upstream_timeouts_total", p.responseTimeouts, {
    kind: "response",
  });
}

const THROTTLES_HELP = "Logins refused because they came too often.";

function gatewayFamilies(
  out: Exposition,
  g: GatewaySnapshot,
  throttledHere: number,
): void {
  out.family(
    "pmproxy_sessions",
    "gauge",
    "Open sessions by sessionIPM manager.",
  );
  for (const s of g.sessions) {
    out.sample("pmproxy_sessions", s.open, { manager: s.manager });
  }
  out.family(
    "pmproxy_quota_consumed_bytes",
    "gauge",
    "Bytes consumed in the current cycle by dwnConsR manager, every user.",
  );
  for (const q of g.quotas) {
    out.sample("pmproxy_quota_consumed_bytes", q.bytes, { manager: q.manager });
  }
  const s = g.stats;
  out.family(
    "pmproxy_login_failures_total",
    "counter",
    "Logins refused for wrong credentials: over the API, or proxy credentials.",
  );
  out.sample("pmproxy_login_failures_total", s.loginFailures, { via: "api" });
  out.sample("pmproxy_login_failures_total", s.proxyAuthFailures, {
    via: "proxy",
  });
  out.counter(
    "pmproxy_login_throttles_total",
    THROTTLES_HELP,
    s.loginThrottles + throttledHere,
  );
  const h = s.flushSeconds;
  const name = "pmproxy_state_flush_duration_seconds";
  out.family(name, "histogram", "How long flushes to the state store took.");
  for (let i = 0; i < h.bounds.length; i++) {
    out.sample(`${name}_bucket`, h.counts[i], { le: String(h.bounds[i]) });
  }
  out.sample(`${name}_bucket`, h.count, { le: "+Inf" });
  out.sample(`${name}_sum`, h.sum);
  out.sample(`${name}_count`, h.count);
  out.counter(
    "pmproxy_state_flush_errors_total",
    "Flushes to the state store that failed.",
    s.flushErrors,
  );
  out.gauge(
    "pmproxy_state_store_up",
    "1 when the state store's last operations worked, else 0.",
    g.store.ok ? 1 : 0,
  );
}

/** The text exposition format, line by line. */
class Exposition {
  #lines: string[] = [];

  family(name: string, type: string, help: string): void {
    this.#lines.push(`# HELP ${name} ${escapeHelp(help)}`);
    this.#lines.push(`# TYPE ${name} ${type}`);
  }

  sample(name: string, value: number, labels?: Record<string, string>): void {
    let line = name;
    if (labels) {
      const pairs = Object.entries(labels).map(([k, v]) =>
        `${k}="${escapeLabel(v)}"`
      );
      line += `{${pairs.join(",")}}`;
    }
    this.#lines.push(`${line} ${formatValue(value)}`);
  }

  counter(name: string, help: string, value: number): void {
    this.family(name, "counter", help);
    this.sample(name, value);
  }

  gauge(name: string, help: string, value: number): void {
    this.family(name, "gauge", help);
    this.sample(name, value);
  }

  text(): string {
    return this.#lines.join("\n") + "\n";
  }
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function escapeLabel(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(
    /\n/g,
    "\\n",
  );
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}
