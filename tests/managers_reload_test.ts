/**
 * A live reload of managers.toml through the gateway: the new rule and
 * quotas decide the next requests, sessions and counters carry over, open
 * transfers keep counting into the same counters, and a file that does
 * not load changes nothing.
 */
import assert from "node:assert/strict";
import { ConfigError } from "../managers/mod.ts";
import type { Decision, Meter } from "../proxy/policy.ts";
import { PolicyDir, README_TOML, request } from "./helpers/managers_setup.ts";

const KiB = 1024;

const TOML = README_TOML
  .replace('group0 = "1 GB"', 'group0 = "1 MB"')
  .replace(
    'rule = "sessions ∧ down"',
    'rule = "sessions ∧ down"\nadmins = ["user0"]',
  );

function meterOf(d: Decision): Meter {
  assert.ok(d.allowed, `expected allowed, got ${JSON.stringify(d)}`);
  assert.ok(d.meter);
  return d.meter;
}

Deno.test("reload: a new quota applies to the counter as it stands; sessions and open transfers carry over", async () => {
  const d = await PolicyDir.make(TOML);
  try {
    const g = await d.open();
    const secret = await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    const open = meterOf(g.decideSync(request("10.0.0.5", d.clock)));
    for (let i = 0; i < 16; i++) assert.equal(open.chunk(64 * KiB), 0);
    // At the quota: refused.
    assert.equal(g.decideSync(request("10.0.0.5", d.clock)).allowed, false);

    await Deno.writeTextFile(
      d.managersPath,
      TOML.replace('group0 = "1 MB"', 'group0 = "2 MB"'),
    );
    const result = await g.reload();
    assert.deepEqual(result.warnings, []);
    // Same session, same counter, the new quota.
    const info = await g.userInfo("down", { ip: "10.0.0.5", secret });
    assert.equal(info.bytesCons, 1024 * KiB);
    assert.equal(info.bytesQuota, 2048 * KiB);
    const next = meterOf(g.decideSync(request("10.0.0.5", d.clock)));
    // The transfer opened before the reload counts into the same counter,
    // and so does one decided after it.
    assert.equal(open.chunk(100 * KiB), 0);
    assert.equal(next.chunk(100 * KiB), 0);
    assert.equal(
      (await g.userInfo("down", { ip: "10.0.0.5", secret })).bytesCons,
      1224 * KiB,
    );
    // Written once, by the new manager.
    await g.flush();
    const again = await d.open();
    assert.equal(
      (await again.userInfo("down", { ip: "10.0.0.5", secret })).bytesCons,
      1224 * KiB,
    );
  } finally {
    await d.cleanup();
  }
});

Deno.test("reload: the new rule decides the next request; a broken file changes nothing and names its line", async () => {
  const d = await PolicyDir.make(TOML);
  try {
    const g = await d.open();
    await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    assert.equal(g.decideSync(request("10.0.0.5", d.clock)).allowed, true);
    await Deno.writeTextFile(
      d.managersPath,
      TOML.replace('rule = "sessions ∧ down"', 'rule = "sessions ∧ down ∧ web"')
        .replace(
          "[mapDB]",
          '[[hostMatcher]]\n  name = "web"\n  pattern = "^allowed\\\\.test$"\n\n[mapDB]',
        ),
    );
    await g.reload();
    assert.equal(g.decideSync(request("10.0.0.5", d.clock)).allowed, false);
    assert.equal(
      g.decideSync(request("10.0.0.5", d.clock, "http://allowed.test/"))
        .allowed,
      true,
    );

    await Deno.writeTextFile(
      d.managersPath,
      TOML.replace('rule = "sessions ∧ down"', 'rule = "sessions ∧ nobody"'),
    );
    await assert.rejects(
      () => g.reload(),
      (e) =>
        e instanceof ConfigError && /managers\.toml:1: rule: "nobody"/.test(
          e.message,
        ),
    );
    // The configuration before the broken file goes on deciding.
    assert.equal(
      g.decideSync(request("10.0.0.5", d.clock, "http://allowed.test/"))
        .allowed,
      true,
    );
    assert.equal(g.decideSync(request("10.0.0.5", d.clock)).allowed, false);
  } finally {
    await d.cleanup();
  }
});

Deno.test("reload: a changed resetCycle takes effect at its next boundary without losing the counter", async () => {
  const d = await PolicyDir.make(TOML);
  try {
    const g = await d.open();
    const secret = await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    const meter = meterOf(g.decideSync(request("10.0.0.5", d.clock)));
    assert.equal(meter.chunk(300 * KiB), 0);
    const before = (g.describe("down") as { lastReset: string }).lastReset;
    // The clock is at 2026-03-02T10:00Z; daily at UTC midnight would have
    // reset at 00:00 today, but the counter of this cycle goes on.
    d.clock.advance(3_600_000);
    await Deno.writeTextFile(
      d.managersPath,
      TOML.replace(
        'resetCycle = "24h"',
        'resetCycle = "daily"\n  timezone = "UTC"',
      ),
    );
    await g.reload();
    assert.equal(
      (g.describe("down") as { lastReset: string }).lastReset,
      before,
    );
    assert.equal(
      (await g.userInfo("down", { ip: "10.0.0.5", secret })).bytesCons,
      300 * KiB,
    );
    d.clock.ms = Date.parse("2026-03-03T00:00:00Z");
    assert.equal(
      (await g.userInfo("down", { ip: "10.0.0.5", secret })).bytesCons,
      0,
    );
    assert.equal(
      (g.describe("down") as { lastReset: string }).lastReset,
      "2026-03-03T00:00:00.000Z",
    );
  } finally {
    await d.cleanup();
  }
});
