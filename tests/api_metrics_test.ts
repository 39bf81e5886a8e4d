/**
 * `/metrics` and `/healthz` of the API: the exposition read by a real
 * consumer (`promtool check metrics`, from Debian's prometheus package),
 * who may read it (loopback, `[api] metricsAllow`; others get 403), and the
 * health check over the real gateway, proxy and HTTPS API, with a Deno KV
 * store that goes away under the gateway. The whole server scraped before
 * and after traffic: e2e_metrics_test.ts.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  checkHealth,
  MetricsRegistry,
  type ProxyCounters,
} from "../api/mod.ts";
import { createApp } from "../api/app.ts";
import {
  type GatewaySnapshot,
  Histogram,
  openGateway,
  openStateStore,
  parseCidr,
} from "../managers/mod.ts";
import type { Cidr } from "../managers/mod.ts";
import type { KvStateStore } from "../managers/state/kv_store.ts";
import { proxyConfigFrom, startProxy } from "../proxy/mod.ts";
import { FakeGateway } from "./helpers/api_fake_gateway.ts";
import { startTestApi } from "./helpers/api_server.ts";
import { README_MANAGERS_TOML } from "./helpers/config_dir.ts";
import { promtool } from "./helpers/prometheus.ts";

function counters(n: number): ProxyCounters {
  return {
    requestsAllowed: n,
    requestsRefused: n + 1,
    requestsQuota: n + 2,
    requestsAuth: n + 3,
    requestsError: n + 4,
    bytesFromUpstream: 123456789012,
    bytesToUpstream: 42,
    clientConnections: 3,
    tunnels: 1,
    dialTimeouts: 5,
    dialRefused: 6,
    dialDns: 7,
    dialParent: 8,
    dialOther: 9,
    responseTimeouts: 10,
  };
}

function snapshot(): GatewaySnapshot {
  const flushSeconds = new Histogram([0.01, 0.1, 1]);
  flushSeconds.observe(0.004);
  flushSeconds.observe(0.5);
  return {
    stats: {
      loginFailures: 2,
      proxyAuthFailures: 1,
      loginThrottles: 4,
      flushSeconds,
      flushErrors: 1,
    },
    sessions: [{ manager: "sessions", open: 2 }, {
      manager: 'odd "name"\\',
      open: 0,
    }],
    quotas: [{ manager: "down", bytes: 1048576 }],
    store: { ok: false, problem: "the disk is full" },
  };
}

Deno.test("metrics: every family in the text format, which promtool accepts", async () => {
  const m = new MetricsRegistry(
    { version: "0.1.0", commit: "a11ea95c1d2e", fromSource: false },
    1764064012345,
  );
  m.proxy = counters(10);
  m.gateway = { snapshot };
  m.countReload("ok");
  m.countReload("error");
  m.countReload("ok");
  m.countLoginThrottle();
  const text = await m.render();
  const checked = await promtool(text);
  assert.equal(checked.code, 0, checked.out + text);
  assert.equal(checked.out, "", "no lint problem");
  for (
    const line of [
      'pmproxy_build_info{version="0.1.0",commit="a11ea95c1d2e"} 1',
      "process_start_time_seconds 1764064012.345",
      'pmproxy_requests_total{outcome="allowed"} 10',
      'pmproxy_requests_total{outcome="refused"} 11',
      'pmproxy_requests_total{outcome="quota"} 12',
      'pmproxy_requests_total{outcome="auth"} 13',
      'pmproxy_requests_total{outcome="error"} 14',
      "pmproxy_upstream_received_bytes_total 123456789012",
      "pmproxy_upstream_sent_bytes_total 42",
      "pmproxy_client_connections 3",
      "pmproxy_tunnels 1",
      'pmproxy_upstream_dial_failures_total{kind="timeout"} 5',
      'pmproxy_upstream_dial_failures_total{kind="dns"} 7',
      'pmproxy_upstream_dial_failures_total{kind="parent"} 8',
      'pmproxy_upstream_timeouts_total{kind="dial"} 5',
      'pmproxy_upstream_timeouts_total{kind="response"} 10',
      'pmproxy_sessions{manager="sessions"} 2',
      'pmproxy_sessions{manager="odd \\"name\\"\\\\"} 0',
      'pmproxy_quota_consumed_bytes{manager="down"} 1048576',
      'pmproxy_login_failures_total{via="api"} 2',
      'pmproxy_login_failures_total{via="proxy"} 1',
      "pmproxy_login_throttles_total 5",
      'pmproxy_state_flush_duration_seconds_bucket{le="0.01"} 1',
      'pmproxy_state_flush_duration_seconds_bucket{le="0.1"} 1',
      'pmproxy_state_flush_duration_seconds_bucket{le="1"} 2',
      'pmproxy_state_flush_duration_seconds_bucket{le="+Inf"} 2',
      "pmproxy_state_flush_duration_seconds_sum 0.504",
      "pmproxy_state_flush_duration_seconds_count 2",
      "pmproxy_state_flush_errors_total 1",
      "pmproxy_state_store_up 0",
      'pmproxy_reloads_total{result="ok"} 2',
      'pmproxy_reloads_total{result="error"} 1',
    ]
  ) {
    assert.ok(text.split("\n").includes(line), `${line}\nin\n${text}`);
  }
  assert.match(
    text,
    /^# TYPE pmproxy_state_flush_duration_seconds histogram$/m,
  );
  assert.match(text, /^# TYPE pmproxy_requests_total counter$/m);
});

Deno.test("metrics: promtool is a real judge (it refuses a broken exposition)", async () => {
  const bad = await promtool('pmproxy_x_total{a="b} 1\n');
  assert.notEqual(bad.code, 0);
});

Deno.test("metrics: before the proxy and the gateway are there, build info, start time and reloads", async () => {
  const m = new MetricsRegistry({
    version: "0.1.0",
    commit: "source",
    fromSource: true,
  });
  const text = await m.render();
  assert.equal((await promtool(text)).code, 0, text);
  assert.match(
    text,
    /^pmproxy_build_info\{version="0\.1\.0",commit="source"\} 1$/m,
  );
  assert.doesNotMatch(text, /pmproxy_requests_total/);
  m.countLoginThrottle();
  assert.match(await m.render(), /^pmproxy_login_throttles_total 1$/m);
  const start = Number(/^process_start_time_seconds (\S+)$/m.exec(text)![1]);
  assert.ok(Math.abs(start - performance.timeOrigin / 1000) < 1);
});

function appFrom(ip: string, allow: string[] = []) {
  return createApp(new FakeGateway(), {
    clientIp: () => ip,
    metrics: () => "pmproxy_up 1\n",
    metricsAllow: allow.map((a) => parseCidr(a) as Cidr),
    health: () => ({ ok: true }),
  });
}

Deno.test("metrics: open to this machine and to metricsAllow, 403 for anybody else", async () => {
  for (const ip of ["127.0.0.1", "127.9.9.9", "::1"]) {
    const res = await appFrom(ip).request("/metrics");
    assert.equal(res.status, 200, ip);
    assert.equal(await res.text(), "pmproxy_up 1\n");
    assert.equal(
      res.headers.get("content-type"),
      "text/plain; version=0.0.4; charset=utf-8",
    );
  }
  const refused = await appFrom("10.1.2.3").request("/metrics");
  assert.equal(refused.status, 403);
  assert.match(
    await refused.text(),
    /metricsAllow.*; 10\.1\.2\.3 is in none of them/,
  );
  const allowed = await appFrom("10.1.2.3", ["10.1.2.0/24"]).request(
    "/metrics",
  );
  assert.equal(allowed.status, 200);
  const other = await appFrom("10.1.3.3", ["10.1.2.0/24", "2001:db8::/32"])
    .request("/metrics");
  assert.equal(other.status, 403);
  const v6 = await appFrom("2001:db8::7", ["2001:db8::/32"]).request(
    "/metrics",
  );
  assert.equal(v6.status, 200);
  // Health is for every load balancer.
  assert.equal((await appFrom("10.1.3.3").request("/healthz")).status, 200);
});

Deno.test("metrics: without a registry there is no /metrics page", async () => {
  const app = createApp(new FakeGateway(), { clientIp: () => "127.0.0.1" });
  assert.equal((await app.request("/metrics")).status, 404);
  assert.equal((await app.request("/healthz")).status, 404);
});

Deno.test("health: the proxy's listener first, then the store", () => {
  const store = (ok: boolean) => ({
    status: () => ok ? { ok } : { ok, problem: "writing failed: disk full" },
  });
  assert.deepEqual(
    checkHealth({ proxy: { listening: true }, store: store(true) }),
    {
      ok: true,
    },
  );
  const none = checkHealth({ store: store(true) });
  assert.ok(!none.ok && /not started/.test(none.reason));
  const stopping = checkHealth({
    proxy: { listening: false },
    store: store(true),
  });
  assert.ok(
    !stopping.ok && /does not accept connections/.test(stopping.reason),
  );
  const failing = checkHealth({
    proxy: { listening: true },
    store: store(false),
  });
  assert.ok(!failing.ok && /disk full/.test(failing.reason));
});

Deno.test("healthz over HTTPS: 200, then 503 naming the store once the Deno KV store is gone under the gateway", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pmproxy-health-" });
  await Deno.writeTextFile(join(dir, "managers.toml"), README_MANAGERS_TOML);
  const store = await openStateStore(join(dir, "state.kv")) as KvStateStore;
  const gateway = await openGateway(join(dir, "managers.toml"), {
    state: store,
    persistIntervalMs: 0,
  });
  const proxy = await startProxy(
    proxyConfigFrom({ server: { addr: "127.0.0.1:0" } }, {
      file: "server.toml",
    }),
    gateway,
  );
  const metrics = new MetricsRegistry({
    version: "0.1.0",
    commit: "test",
    fromSource: true,
  });
  metrics.gateway = gateway;
  metrics.proxy = proxy.stats;
  const api = await startTestApi(gateway, {
    metrics: () => metrics.render(),
    health: () => checkHealth({ proxy, store: gateway.store }),
  });
  try {
    const ok = await api.get("/healthz");
    assert.equal(ok.status, 200);
    assert.equal(ok.text, "ok\n");
    assert.match(
      (await api.get("/metrics")).text,
      /^pmproxy_state_store_up 1$/m,
    );
    store.kv.close();
    // The next flush finds out (the persist timer would, within persistInterval).
    await assert.rejects(gateway.flush());
    const down = await api.get("/healthz");
    assert.equal(down.status, 503);
    assert.match(down.text, /^unhealthy: the state store fails: .*failed/);
    const scraped = (await api.get("/metrics")).text;
    assert.match(scraped, /^pmproxy_state_store_up 0$/m);
    assert.match(scraped, /^pmproxy_state_flush_errors_total 1$/m);
    assert.equal((await promtool(scraped)).code, 0, scraped);
    // A proxy that no longer listens is unhealthy too.
    await proxy.close();
    const closed = await api.get("/healthz");
    assert.equal(closed.status, 503);
    assert.match(closed.text, /the proxy does not accept connections/);
  } finally {
    await api.close();
    await proxy.close();
    await gateway.close().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("metrics over HTTPS: a client seen as 10.9.9.9 gets 403 until [api] metricsAllow has it", async () => {
  const behind = (table: Record<string, unknown>) =>
    startTestApi(new FakeGateway(), {
      table,
      // As the captive portal tells the API who is behind a tunnel.
      clientIpOf: () => "10.9.9.9",
      metrics: () => "pmproxy_up 1\n",
      health: () => ({ ok: true }),
    });
  const closed = await behind({});
  try {
    assert.equal((await closed.get("/metrics")).status, 403);
    assert.equal((await closed.get("/healthz")).status, 200);
  } finally {
    await closed.close();
  }
  const open = await behind({ metricsAllow: ["10.9.9.0/24"] });
  try {
    const res = await open.get("/metrics");
    assert.equal(res.status, 200);
    assert.equal(res.text, "pmproxy_up 1\n");
  } finally {
    await open.close();
  }
});
