/**
 * The gateway's counters (managers/stats.ts) and its snapshot for the
 * metrics, with a real Deno KV file: logins refused, proxy credentials
 * refused, open sessions, consumption per quota, flushes timed and failed,
 * the store's health; and a quota refusal says it is one.
 */
import assert from "node:assert/strict";
import { openGateway, openStateStore } from "../managers/mod.ts";
import { Histogram } from "../managers/mod.ts";
import type { KvStateStore } from "../managers/state/kv_store.ts";
import { PolicyDir, README_TOML, request } from "./helpers/managers_setup.ts";

const caller = (ip: string) => ({ ip });

Deno.test("gateway stats: refused logins and proxy credentials are counted, not a good login", async () => {
  const toml = README_TOML.replace(
    'auth = "map"',
    'auth = "map"\n\tproxyAuth = true',
  );
  const p = await PolicyDir.make(toml);
  try {
    const g = await p.open();
    await assert.rejects(
      g.open("sessions", caller("10.0.0.1"), { user: "user0", pass: "no" }),
    );
    await assert.rejects(
      g.open("sessions", caller("10.0.0.1"), { user: "nobody", pass: "x" }),
    );
    await g.open("sessions", caller("10.0.0.2"), {
      user: "user0",
      pass: "pass0",
    });
    assert.equal(g.stats.loginFailures, 2);
    const facts = request("10.0.0.9", p.clock);
    facts.proxyAuth = { user: "user0", pass: "wrong" };
    const d = await g.decide(facts);
    assert.equal(d.allowed, false);
    assert.equal(g.stats.proxyAuthFailures, 1);
    assert.equal(g.stats.loginThrottles, 0);
    assert.deepEqual(g.snapshot().sessions, [{ manager: "sessions", open: 1 }]);
  } finally {
    await p.cleanup();
  }
});

Deno.test("gateway snapshot: consumption per quota manager; a quota refusal has cause quota", async () => {
  const p = await PolicyDir.make(
    README_TOML.replace('group0 = "1 GB"', 'group0 = "1 KB"'),
  );
  try {
    const g = await p.open();
    await g.open("sessions", caller("10.0.0.2"), {
      user: "user0",
      pass: "pass0",
    });
    const d = g.decideSync(request("10.0.0.2", p.clock));
    assert.ok(d.allowed && d.meter);
    d.meter.chunk(600);
    d.meter.chunk(600);
    assert.deepEqual(g.snapshot().quotas, [{ manager: "down", bytes: 1200 }]);
    const refused = g.decideSync(request("10.0.0.2", p.clock));
    assert.ok(!refused.allowed);
    assert.equal(refused.cause, "quota");
    const byRule = g.decideSync(request("10.0.0.3", p.clock));
    assert.ok(!byRule.allowed);
    assert.equal(byRule.cause, undefined, "the rule's refusal is the default");
  } finally {
    await p.cleanup();
  }
});

Deno.test("gateway stats: flushes are timed; a flush that fails is counted and the store says why", async () => {
  const p = await PolicyDir.make(README_TOML);
  const store = await openStateStore(p.kvPath) as KvStateStore;
  const g = await openGateway(p.managersPath, {
    state: store,
    persistIntervalMs: 0,
    clock: p.clock.now,
  });
  try {
    await g.open("sessions", caller("10.0.0.2"), {
      user: "user0",
      pass: "pass0",
    });
    await g.flush();
    assert.equal(g.stats.flushSeconds.count, 1);
    assert.equal(g.stats.flushErrors, 0);
    assert.deepEqual(g.snapshot().store, { ok: true });
    // The store goes away under the gateway.
    store.kv.close();
    const d = g.decideSync(request("10.0.0.2", p.clock));
    assert.ok(d.allowed && d.meter);
    d.meter.chunk(1000);
    await assert.rejects(g.flush());
    assert.equal(g.stats.flushSeconds.count, 2);
    assert.equal(g.stats.flushErrors, 1);
    const health = g.snapshot().store;
    assert.equal(health.ok, false);
    assert.match(health.problem ?? "", /failed/);
  } finally {
    await g.close().catch(() => {});
    await Deno.remove(p.dir, { recursive: true });
  }
});

Deno.test("histogram: cumulative counts per bound, sum and count", () => {
  const h = new Histogram([0.1, 1, 10]);
  for (const v of [0.05, 0.1, 0.5, 20]) h.observe(v);
  assert.deepEqual(h.counts, [2, 3, 3]);
  assert.equal(h.count, 4);
  assert.equal(h.sum, 20.65);
});
