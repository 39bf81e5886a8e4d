/**
 * dwnConsR through the gateway: the meter stops at the quota, new requests
 * are refused, the cycle resets aligned to the last reset (injected clock),
 * state persists in a real KV file across restarts, admins set/reset, and
 * two gateways on one KV file add up.
 */
import assert from "node:assert/strict";
import { CombinedMeter, CommandError, type Gateway } from "../managers/mod.ts";
import type { Decision, Meter } from "../proxy/policy.ts";
import {
  download,
  PolicyDir,
  README_TOML,
  request,
} from "./helpers/managers_setup.ts";
import { DwnConsR } from "../managers/quotas/dwn_cons_r.ts";
import { KvStateStore } from "../managers/state/kv_store.ts";
import {
  parseResetCycle,
  type ResetCycle,
} from "../managers/quotas/_reset_cycle.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const HOUR = 3600_000;

/** The README's file with a 1 MB quota, user0 admin, user1 not. */
const TOML = README_TOML
  .replace('group0 = "1 GB"', 'group0 = "1 MB"')
  .replace(
    'rule = "sessions ∧ down"',
    'rule = "sessions ∧ down"\nadmins = ["user0"]\njwtExpiration = "1000h"',
  )
  .replace('user0 = "pass0"', 'user0 = "pass0"\n\t\tuser1 = "pass1"')
  .replace(
    'user0 = ["group0"]',
    'user0 = ["group0"]\n\t\tuser1 = ["group0"]',
  );

function meterOf(d: Decision): Meter {
  assert.ok(d.allowed, `expected allowed, got ${JSON.stringify(d)}`);
  assert.ok(d.meter, "a metered request");
  return d.meter;
}

function reasonOf(d: Decision): string {
  assert.ok(!d.allowed, "expected a refusal");
  return d.reason;
}

async function consumption(
  g: Pick<Gateway, "userInfo">,
  ip: string,
  secret: string,
): Promise<number> {
  return (await g.userInfo("down", { ip, secret })).bytesCons;
}

Deno.test("quota: the meter stops at the quota and the next request is refused", async () => {
  const d = await PolicyDir.make(TOML);
  try {
    const g = await d.open();
    await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    const meter = meterOf(g.decideSync(request("10.0.0.5", d.clock)));
    // Chunks are accepted while the consumption before them is below quota.
    assert.equal(download(meter, 3 * MiB), MiB);
    assert.equal(meter.stopReason, "quota reached");
    // An uneven chunk size goes over by less than one chunk.
    const d2 = await PolicyDir.make(TOML);
    try {
      const g2 = await d2.open();
      await g2.open("sessions", { ip: "10.0.0.5" }, {
        user: "user0",
        pass: "pass0",
      });
      const got = download(
        meterOf(g2.decideSync(request("10.0.0.5", d2.clock))),
        3 * MiB,
        100_000,
      );
      assert.ok(got >= MiB && got < MiB + 100_000, `${got}`);
    } finally {
      await d2.cleanup();
    }
    const refused = g.decideSync(request("10.0.0.5", d.clock));
    assert.equal(refused.allowed, false);
    assert.equal(!refused.allowed && refused.status, 403);
    assert.equal(
      reasonOf(refused),
      "Quota reached: consumption 1 MB of quota 1 MB for user0 (resets at 2026-03-03T10:00:00.000Z)",
    );
    // Another user has their own consumption.
    await g.open("sessions", { ip: "10.0.0.6" }, {
      user: "user1",
      pass: "pass1",
    });
    assert.equal(
      download(meterOf(g.decideSync(request("10.0.0.6", d.clock))), 10),
      10,
    );
  } finally {
    await d.cleanup();
  }
});

Deno.test("quota: userInfo formats sizes; getOther and set are for admins", async () => {
  const d = await PolicyDir.make(TOML);
  try {
    const g = await d.open();
    const admin = await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    const user = await g.open("sessions", { ip: "10.0.0.6" }, {
      user: "user1",
      pass: "pass1",
    });
    const { nextReset, ...info } = await g.userInfo("down", {
      ip: "10.0.0.5",
      secret: admin,
    });
    // In this machine's zone (the file names none), the same instant.
    assert.equal(Date.parse(nextReset ?? ""), Date.parse("2026-03-03T10:00Z"));
    assert.deepEqual(
      info,
      {
        quota: "1 MB",
        groups: ["group0"],
        name: "user0",
        userName: "user0",
        consumption: "0 B",
        bytesQuota: MiB,
        bytesCons: 0,
        isAdmin: true,
        // pmproxy's own fields (the original's clients ignore them).
        bytesGranted: 0,
        granted: "0 B",
        warning: false,
      },
    );
    download(meterOf(g.decideSync(request("10.0.0.6", d.clock))), 512 * KiB);
    const other = await g.userInfo("down", { ip: "10.0.0.5", secret: admin }, {
      user: "user1",
    });
    assert.equal(other.consumption, "512 KB");
    assert.equal(other.isAdmin, false);
    await assert.rejects(
      () =>
        g.userInfo("down", { ip: "10.0.0.6", secret: user }, { user: "user0" }),
      (e) => e instanceof CommandError && e.body.User === "user1",
    );
    await assert.rejects(
      () =>
        g.setConsumption("down", { ip: "10.0.0.6", secret: user }, {
          user: "user1",
          bytes: 0,
        }),
      (e) => e instanceof CommandError && e.body.User === "user1",
    );
    await assert.rejects(
      () =>
        g.userInfo("down", { ip: "10.0.0.5", secret: admin }, {
          user: "nobody",
        }),
      (e) =>
        e instanceof CommandError &&
        JSON.stringify(e.body) === '{"User":"nobody","DB":"map"}',
    );
    await assert.rejects(
      () => g.userInfo("sessions", { ip: "10.0.0.5", secret: admin }),
      (e) =>
        e instanceof CommandError &&
        JSON.stringify(e.body) === '{"Mng":"sessions","Cmd":"get"}',
    );
    await assert.rejects(
      () =>
        g.setConsumption("down", { ip: "10.0.0.5", secret: admin }, {
          user: "nobody",
          bytes: 0,
        }),
      (e) =>
        e instanceof CommandError &&
        JSON.stringify(e.body) === '{"User":"nobody","DB":"map"}',
    );
    await g.setConsumption("down", { ip: "10.0.0.5", secret: admin }, {
      user: "user1",
      bytes: 0,
    });
    assert.equal(await consumption(g, "10.0.0.6", user), 0, "reset writes 0");
    await g.setConsumption("down", { ip: "10.0.0.5", secret: admin }, {
      user: "user1",
      bytes: MiB,
    });
    assert.match(
      reasonOf(g.decideSync(request("10.0.0.6", d.clock))),
      /^Quota reached/,
    );
  } finally {
    await d.cleanup();
  }
});

Deno.test("quota: consumption returns to 0 at whole cycles from the last reset", async () => {
  const d = await PolicyDir.make(TOML);
  try {
    const start = d.clock.ms;
    const g = await d.open();
    const secret = await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    download(meterOf(g.decideSync(request("10.0.0.5", d.clock))), 300 * KiB);
    d.clock.advance(24 * HOUR - 1);
    assert.equal(await consumption(g, "10.0.0.5", secret), 300 * KiB);
    d.clock.advance(1);
    assert.equal(await consumption(g, "10.0.0.5", secret), 0);
    // Three and a half cycles later: reset to start + 4 cycles, not to now.
    download(meterOf(g.decideSync(request("10.0.0.5", d.clock))), 100);
    d.clock.advance(3.5 * 24 * HOUR);
    g.decideSync(request("10.0.0.5", d.clock));
    const shown = g.describe("down") as { lastReset: string };
    assert.equal(
      shown.lastReset,
      new Date(start + 4 * 24 * HOUR).toISOString(),
    );
    assert.equal(await consumption(g, "10.0.0.5", secret), 0);
    // An open transfer goes on after a reset: its meter is the same account.
    const meter = meterOf(g.decideSync(request("10.0.0.5", d.clock)));
    download(meter, MiB);
    assert.ok(meter.chunk(1) < 0);
    d.clock.advance(24 * HOUR);
    g.decideSync(request("10.0.0.6", d.clock));
    assert.equal(meter.chunk(1), 0);
  } finally {
    await d.cleanup();
  }
});

Deno.test("quota: consumption and the last reset persist across close and open", async () => {
  const d = await PolicyDir.make(TOML);
  try {
    const g = await d.open();
    const secret = await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    download(meterOf(g.decideSync(request("10.0.0.5", d.clock))), 200 * KiB);
    await g.flush();
    download(meterOf(g.decideSync(request("10.0.0.5", d.clock))), 100 * KiB);
    await g.close(); // writes the last 100 KiB
    d.clock.advance(HOUR);
    const again = await d.open();
    assert.equal(await consumption(again, "10.0.0.5", secret), 300 * KiB);
    // The first persist after start keeps it (the original wiped it).
    await again.flush();
    assert.equal(await consumption(again, "10.0.0.5", secret), 300 * KiB);
    await again.close();
    // A restart after the cycle ended starts at 0, aligned to the old reset.
    d.clock.advance(24 * HOUR);
    const later = await d.open();
    assert.equal(await consumption(later, "10.0.0.5", secret), 0);
    assert.equal(
      (later.describe("down") as { lastReset: string }).lastReset,
      "2026-03-03T10:00:00.000Z",
    );
  } finally {
    await d.cleanup();
  }
});

Deno.test("quota: a failing flush hook does not keep consumption from being saved at shutdown", async () => {
  const d = await PolicyDir.make(TOML);
  try {
    const g = await d.open();
    const secret = await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    download(meterOf(g.decideSync(request("10.0.0.5", d.clock))), 200 * KiB);
    // A hook that fails before the quota's (as the sessions' reload can).
    g.config.hooks.flush.unshift(() => Promise.reject(new Error("store down")));
    await assert.rejects(() => g.close(), /store down/);
    const again = await d.open();
    assert.equal(await consumption(again, "10.0.0.5", secret), 200 * KiB);
  } finally {
    await d.cleanup();
  }
});

Deno.test("quota: an admin's set is kept across a restart", async () => {
  const d = await PolicyDir.make(TOML);
  try {
    const g = await d.open();
    const admin = await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    download(meterOf(g.decideSync(request("10.0.0.5", d.clock))), 700 * KiB);
    await g.flush();
    await g.setConsumption("down", { ip: "10.0.0.5", secret: admin }, {
      user: "user0",
      bytes: 0,
    });
    download(meterOf(g.decideSync(request("10.0.0.5", d.clock))), 10 * KiB);
    await g.close();
    const again = await d.open();
    assert.equal(await consumption(again, "10.0.0.5", admin), 10 * KiB);
  } finally {
    await d.cleanup();
  }
});

Deno.test("quota: two gateways on one KV file add up", async () => {
  const d = await PolicyDir.make(TOML);
  try {
    const a = await d.open();
    const b = await d.open();
    const secret = await a.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    await b.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    download(meterOf(a.decideSync(request("10.0.0.5", d.clock))), 300 * KiB);
    download(meterOf(b.decideSync(request("10.0.0.5", d.clock))), 400 * KiB);
    await a.flush();
    await b.flush();
    // Each sees the other's traffic after its next write.
    await a.flush();
    // One signing key per installation: a's secret is good at b too.
    const secretB = secret;
    assert.equal(
      (await a.userInfo("down", { ip: "10.0.0.5", secret })).bytesCons,
      700 * KiB,
    );
    {
      assert.equal(
        (await b.userInfo("down", { ip: "10.0.0.5", secret: secretB }))
          .bytesCons,
        700 * KiB,
      );
    }
    // Together they stop at the quota.
    download(meterOf(a.decideSync(request("10.0.0.5", d.clock))), 400 * KiB);
    await a.flush();
    await b.flush();
    assert.match(
      reasonOf(b.decideSync(request("10.0.0.5", d.clock))),
      /^Quota reached/,
    );
    // A new cycle is seen by both, whichever notices first.
    d.clock.advance(24 * HOUR);
    download(meterOf(a.decideSync(request("10.0.0.5", d.clock))), 5 * KiB);
    await a.flush();
    download(meterOf(b.decideSync(request("10.0.0.5", d.clock))), 6 * KiB);
    await b.flush();
    await a.flush();
    assert.equal(
      (await a.userInfo("down", { ip: "10.0.0.5", secret })).bytesCons,
      11 * KiB,
    );
  } finally {
    await d.cleanup();
  }
});

Deno.test("quota: refusals without a user, and combined meters", async () => {
  const d = await PolicyDir.make(
    TOML.replace('rule = "sessions ∧ down"', 'rule = "down"'),
  );
  try {
    const g = await d.open();
    assert.match(
      reasonOf(g.decideSync(request("10.0.0.9", d.clock))),
      /^down: the download quota needs a logged-in user; nobody is logged in at 10\.0\.0\.9/,
    );
  } finally {
    await d.cleanup();
  }
  let calls = 0;
  const slow: Meter = { chunk: () => (calls++, 25) };
  const stop: Meter = { chunk: () => -1, stopReason: "quota reached" };
  const both = new CombinedMeter([slow, { chunk: () => 10 }]);
  assert.equal(both.chunk(100), 25);
  const cut = new CombinedMeter([slow, stop]);
  assert.equal(cut.chunk(100), -1);
  assert.equal(cut.stopReason, "quota reached");
  assert.equal(calls, 2);
});

Deno.test("quota: userQuota overrides the groups; calendar cycles reset at local midnight", async () => {
  const d = await PolicyDir.make(
    TOML.replace(
      'resetCycle = "24h"',
      'resetCycle = "daily"\n\ttimezone = "America/Havana"',
    )
      .replace(
        "[dwnConsR.groupQuota]",
        '[dwnConsR.userQuota]\n\t\tuser1 = "2 MB"\n\t[dwnConsR.groupQuota]',
      ),
  );
  try {
    // 2026-03-02T10:00Z is 05:00 in Havana (UTC-5): the last reset was at 05:00Z.
    const g = await d.open();
    assert.equal(
      (g.describe("down") as { lastReset: string }).lastReset,
      "2026-03-02T05:00:00.000Z",
    );
    const admin = await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    assert.equal(
      (await g.userInfo("down", { ip: "10.0.0.5", secret: admin }, {
        user: "user1",
      })).bytesQuota,
      2 * MiB,
    );
    download(meterOf(g.decideSync(request("10.0.0.5", d.clock))), 100);
    d.clock.ms = Date.parse("2026-03-03T04:59:59Z");
    assert.equal(await consumption(g, "10.0.0.5", admin), 100);
    d.clock.ms = Date.parse("2026-03-03T05:00:00Z");
    assert.equal(await consumption(g, "10.0.0.5", admin), 0);
  } finally {
    await d.cleanup();
  }
});

Deno.test("quota: a name twice in the rule counts the bytes once", async () => {
  const d = await PolicyDir.make(
    TOML.replace('rule = "sessions ∧ down"', 'rule = "sessions ∧ down ∧ down"'),
  );
  try {
    const g = await d.open();
    await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    const meter = meterOf(g.decideSync(request("10.0.0.5", d.clock)));
    assert.ok(!(meter instanceof CombinedMeter));
    assert.equal(download(meter, 3 * MiB), MiB);
  } finally {
    await d.cleanup();
  }
});

Deno.test("quota: the persist timer writes consumption without a flush", async () => {
  const d = await PolicyDir.make(TOML);
  try {
    const a = await d.open(20);
    const b = await d.open();
    const secret = await a.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    download(meterOf(a.decideSync(request("10.0.0.5", d.clock))), 123 * KiB);
    let seen = 0;
    for (let i = 0; i < 250 && seen === 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
      await b.flush(); // b reads the store back after its own (empty) write
      seen = await consumption(b, "10.0.0.5", secret);
    }
    assert.equal(seen, 123 * KiB);
  } finally {
    await d.cleanup();
  }
});

Deno.test("quota: a user none of whose groups has a quota is told so", async () => {
  const d = await PolicyDir.make(
    TOML.replace('user1 = ["group0"]', 'user1 = ["guests"]'),
  );
  try {
    const g = await d.open();
    await g.open("sessions", { ip: "10.0.0.6" }, {
      user: "user1",
      pass: "pass1",
    });
    assert.match(
      reasonOf(g.decideSync(request("10.0.0.6", d.clock))),
      /^Quota reached: user1 has no download quota under "down" \(none of their groups has one in groupQuota\)/,
    );
  } finally {
    await d.cleanup();
  }
});

Deno.test("quota: gateways starting together on an empty store agree on the next reset", async () => {
  const kv = await Deno.openKv(":memory:");
  const store = new KvStateStore(kv, "Deno KV in memory");
  try {
    const t0 = Date.parse("2026-03-02T10:00:00Z");
    const make = (ms: number) =>
      new DwnConsR("down", {
        userDBN: "map",
        cycle: parseResetCycle("24h") as ResetCycle,
        groupQuota: {},
        clock: () => new Date(ms),
      });
    const a = make(t0);
    const b = make(t0 + 5 * HOUR);
    // Both find no last reset; one of them writes its own, the other adopts it.
    await Promise.all([a.start(store), b.start(store)]);
    assert.equal(b.lastReset, a.lastReset);
    assert.equal(b.nextReset, a.nextReset);
    assert.equal(a.nextReset, a.lastReset + 24 * HOUR);
  } finally {
    kv.close();
  }
});

Deno.test("quota: long user names in many accounts are written in batches the store accepts", async () => {
  const kv = await Deno.openKv(":memory:");
  const store = new KvStateStore(kv, "Deno KV in memory");
  try {
    let ms = Date.parse("2026-03-02T10:00:00Z");
    const make = () =>
      new DwnConsR("down", {
        userDBN: "map",
        cycle: parseResetCycle("24h") as ResetCycle,
        groupQuota: {},
        clock: () => new Date(ms),
      });
    // 1200 keys of ~90 bytes: more than Deno KV's 81920 bytes of keys in
    // one atomic operation, though fewer than 1000 per batch would be.
    const users = Array.from(
      { length: 1200 },
      (_, i) => `firstname.lastname.${i}@department.organization.example.org`,
    );
    const a = make();
    // A counter per user, as pmproxy before 2026-12-04 wrote them (since,
    // a user has a key of their own only when their pack is full).
    const op = kv.atomic();
    for (const user of users.slice(0, 600)) {
      op.sum(["dwnConsR", "down", "cons", a.lastReset, user], 1n);
    }
    await op.commit();
    await a.start(store);
    for (const user of users) {
      const acc = a.account(user);
      acc.quota = 10 * KiB;
      acc.chunk(KiB);
    }
    await a.flush();
    const b = make();
    await b.start(store);
    assert.equal(b.consumptionOf(users[1199]), KiB);
    assert.equal(b.consumptionOf(users[0]), KiB + 1);
    // A new cycle deletes the old one's counters and packs, as many batches.
    ms += 24 * HOUR;
    await b.flush();
    for (const what of ["cons", "consPacks"]) {
      const left = await Array.fromAsync(
        kv.list({ prefix: ["dwnConsR", "down", what] }),
      );
      assert.equal(left.length, 0, what);
    }
  } finally {
    kv.close();
  }
});

Deno.test("quota: gateways sharing a store stop a user near the quota within a sync interval of each other", async () => {
  const d = await PolicyDir.make(TOML);
  try {
    const syncMs = 50;
    const a = await d.open(0, syncMs);
    const b = await d.open(0, syncMs);
    const secret = await a.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    await b.flush(); // B reads the session A stored
    // 90 % through A: A is near the quota, so it writes within a sync.
    assert.equal(
      download(meterOf(a.decideSync(request("10.0.0.5", d.clock))), 900 * KiB),
      900 * KiB,
    );
    await delay(4 * syncMs);
    // B has not read A's counter since it started: it lets the user on, and
    // learns of A's 90 % within one sync interval of its first bytes.
    const meter = meterOf(b.decideSync(request("10.0.0.5", d.clock)));
    let throughB = 0;
    for (let i = 0; i < 40 && meter.chunk(16 * KiB) >= 0; i++) {
      throughB += 16 * KiB;
      await delay(syncMs);
    }
    const total = 900 * KiB + throughB;
    // Bound: two gateways × (bytes between two syncs + one chunk); here
    // only B moves, 16 KiB per interval.
    assert.ok(total >= MiB, `stopped before the quota: ${total}`);
    assert.ok(total <= MiB + 2 * (2 * 16 * KiB), `overshoot: ${total - MiB}`);
    assert.equal(b.decideSync(request("10.0.0.5", d.clock)).allowed, false);
    await b.flush();
    await a.flush();
    assert.equal(await consumption(a, "10.0.0.5", secret), total);
    assert.equal(a.decideSync(request("10.0.0.5", d.clock)).allowed, false);
  } finally {
    await d.cleanup();
  }
});

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
