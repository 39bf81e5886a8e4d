/**
 * The text of `GET /metrics`: the counters of the proxy and of the gateway
 * in the Prometheus text exposition format (version 0.0.4). The data path
 * and the policy only increment plain number fields (proxy/stats.ts,
 * managers/stats.ts); the names, the labels and the text are made here,
 * when a scraper asks. Loaded at the first scrape (metrics.ts's
 * `MetricsRegistry.render`): a gateway nobody scrapes does not hold it.
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
 * The proxy's counters the text is made of: the fields of proxy/stats.ts's
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

/** What the text is made of: api/metrics.ts's `MetricsRegistry`. */
export interface MetricsSource {
  readonly build: BuildInfo;
  /** When the process started (ms since the epoch). */
  readonly startTimeMs: number;
  readonly proxy: Readonly<ProxyCounters> | undefined;
  readonly gateway: { snapshot(): GatewaySnapshot } | undefined;
  readonly reloads: { readonly ok: number; readonly error: number };
  readonly loginThrottles: number;
}

/** Everything, in the Prometheus text format. */
export function renderMetrics(m: MetricsSource): string {
  const out = new Exposition();
  out.family(
    "pmproxy_build_info",
    "gauge",
    "The version and commit of this pmproxy (always 1).",
  );
  out.sample("pmproxy_build_info", 1, {
    version: m.build.version,
    commit: m.build.commit,
  });
  out.family(
    "process_start_time_seconds",
    "gauge",
    "When this process started, in seconds since the epoch.",
  );
  out.sample("process_start_time_seconds", m.startTimeMs / 1000);
  if (m.proxy) proxyFamilies(out, m.proxy);
  if (m.gateway) {
    gatewayFamilies(out, m.gateway.snapshot(), m.loginThrottles);
  } else {
    out.counter(
      "pmproxy_login_throttles_total",
      THROTTLES_HELP,
      m.loginThrottles,
    );
  }
  out.family(
    "pmproxy_reloads_total",
    "counter",
    "Reloads of the configuration, by result.",
  );
  out.sample("pmproxy_reloads_total", m.reloads.ok, { result: "ok" });
  out.sample("pmproxy_reloads_total", m.reloads.error, {
    result: "error",
  });
  return out.text();
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
