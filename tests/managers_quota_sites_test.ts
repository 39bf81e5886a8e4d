/**
 * dwnConsR the way sites run it, through the gateway with an injected
 * clock and a real KV file: past the quota slowed (overQuotaRate) instead
 * of cut, warnAt, grants for the current cycle, countUploads, the reset
 * day keys and their errors, a live reload of them, and 6 TiB counted
 * exactly. The proxy side (the up-meter, the note in the log) is in
 * proxy_up_meter_test.ts; real curl through the real server in
 * e2e_quota_sites_test.ts.
 */
import assert from "node:assert/strict";
import { CombinedMeter, CommandError, ConfigError } from "../managers/mod.ts";
import type { Decision, Meter } from "../proxy/policy.ts";
import { PolicyDir, README_TOML, request } from "./helpers/managers_setup.ts";
import { Account } from "../managers/quotas/dwn_cons_r.ts";
import { TokenBucket } from "../managers/resources/bw_cons_r.ts";
import { formatSize } from "../managers/values/units.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const TiB = 1024 ** 4;

/** The README's file with a 1 MB quota, user0 admin, user1 not, and `extra` keys. */
function toml(extra = "", quota = "1 MB"): string {
  return README_TOML
    .replace('group0 = "1 GB"', `group0 = "${quota}"`)
    .replace('resetCycle = "24h"', `resetCycle = "24h"\n${extra}`)
    .replace(
      'rule = "sessions ∧ down"',
      'rule = "sessions ∧ down"\nadmins = ["user0"]\njwtExpiration = "1000h"',
    )
    .replace('user0 = "pass0"', 'user0 = "pass0"\n\t\tuser1 = "pass1"')
    .replace(
      'user0 = ["group0"]',
      'user0 = ["group0"]\n\t\tuser1 = ["group0"]',
    );
}

function allowedOf(d: Decision): Extract<Decision, { allowed: true }> {
  assert.ok(d.allowed, `expected allowed, got ${JSON.stringify(d)}`);
  return d;
}

function meterOf(d: Decision): Meter {
  const a = allowedOf(d);
  assert.ok(a.meter, "a metered request");
  return a.meter;
}

/**
 * Feeds chunks until the meter stops (that chunk is not taken) or asks to
 * wait (it is); answers the bytes taken.
 */
function download(meter: Meter, bytes: number, chunk = 64 * KiB): number {
  let got = 0;
  while (got < bytes) {
    const n = Math.min(chunk, bytes - got);
    const answer = meter.chunk(n);
    if (answer < 0) return got;
    got += n;
    if (answer > 0) return got;
  }
  return got;
}

async function gateway(extra: string) {
  const d = await PolicyDir.make(toml(extra));
  const g = await d.open();
  const admin = await g.open("sessions", { ip: "10.0.0.5" }, {
    user: "user0",
    pass: "pass0",
  });
  const user = await g.open("sessions", { ip: "10.0.0.6" }, {
    user: "user1",
    pass: "pass1",
  });
  return {
    d,
    g,
    admin: { ip: "10.0.0.5", secret: admin },
    user: { ip: "10.0.0.6", secret: user },
  };
}

Deno.test("overQuotaRate: past the quota the user is slowed, not cut nor refused, by one bucket for all their transfers; consumption counts on", async () => {
  const { d, g, user } = await gateway('overQuotaRate = "64 KiB/s"');
  try {
    const first = allowedOf(g.decideSync(request("10.0.0.6", d.clock)));
    assert.equal(first.note, undefined, "below the quota: no note");
    // The quota goes through at full speed; the chunk that finds it
    // reached is the first one the bucket meters (a burst of 64 KiB).
    assert.equal(download(first.meter!, 1024 * KiB), 1024 * KiB);
    assert.equal(first.meter!.chunk(64 * KiB), 0, "the burst");
    const wait = first.meter!.chunk(64 * KiB);
    assert.ok(wait > 900 && wait <= 1000, `64 KiB at 64 KiB/s: ${wait} ms`);
    // A new request is allowed, says so, and shares the same bucket: it
    // waits for the debt the first one ran up.
    const second = allowedOf(g.decideSync(request("10.0.0.6", d.clock)));
    assert.equal(second.note, "slowed");
    const shared = second.meter!.chunk(64 * KiB);
    assert.ok(shared > 1900 && shared <= 2000, `shared bucket: ${shared} ms`);
    const info = await g.userInfo("down", user);
    assert.equal(info.bytesCons, 1024 * KiB + 192 * KiB);
    assert.equal(info.overQuota, "slowed");
    assert.equal(info.overQuotaRate, "64 KB/s");
    assert.equal(info.bytesOverQuotaRate, 64 * KiB);
    // Another user is not slowed by it.
    const other = allowedOf(g.decideSync(request("10.0.0.5", d.clock)));
    assert.equal(other.note, undefined);
    assert.equal(other.meter!.chunk(64 * KiB), 0);
    // With a bandwidth meter beside it, the quota never stops a chunk.
    const combined = new CombinedMeter([second.meter!, {
      chunk: () => 5,
    }]);
    assert.ok(combined.chunk(1) > 0);
    // The reset ends it: full speed, no note.
    d.clock.advance(24 * 3600_000);
    const after = allowedOf(g.decideSync(request("10.0.0.6", d.clock)));
    assert.equal(after.note, undefined);
    assert.equal(download(after.meter!, 512 * KiB), 512 * KiB);
    assert.equal((await g.userInfo("down", user)).overQuota, undefined);
  } finally {
    await d.cleanup();
  }
});

Deno.test("overQuotaRate absent: as the original, cut at the quota, then refused; the user info says refused", async () => {
  const { d, g, user } = await gateway("");
  try {
    const meter = meterOf(g.decideSync(request("10.0.0.6", d.clock)));
    let got = 0;
    while (meter.chunk(64 * KiB) === 0) got += 64 * KiB;
    assert.equal(got, 1024 * KiB);
    assert.equal(g.decideSync(request("10.0.0.6", d.clock)).allowed, false);
    const info = await g.userInfo("down", user);
    assert.equal(info.overQuota, "refused");
    assert.equal(info.overQuotaRate, undefined);
  } finally {
    await d.cleanup();
  }
});

Deno.test("Account: the slowdown bucket meters past the quota only", () => {
  let t = 0;
  const acc = new Account();
  acc.quota = 1000;
  acc.slowdown = new TokenBucket(100, 100, () => t);
  assert.equal(acc.chunk(1000), 0);
  assert.equal(acc.wouldStop(), false);
  assert.equal(acc.chunk(100), 0, "one second of burst");
  assert.equal(acc.chunk(50), 500, "50 bytes at 100 B/s");
  t += 500;
  assert.equal(acc.chunk(10), 100);
  assert.equal(acc.cons, 1160);
  acc.granted = 500;
  assert.equal(acc.limit, 1500);
  assert.equal(acc.chunk(10), 0, "a grant: under the quota again");
});

Deno.test("warnAt: the user info says warning from that share of the quota (grants included) on", async () => {
  const { d, g, user } = await gateway('warnAt = "80%"');
  try {
    const below = await g.userInfo("down", user);
    assert.equal(below.warnAt, 80);
    assert.equal(below.warning, false);
    const meter = meterOf(g.decideSync(request("10.0.0.6", d.clock)));
    download(meter, 800 * KiB);
    assert.equal((await g.userInfo("down", user)).warning, false);
    meter.chunk(20 * KiB);
    assert.equal((await g.userInfo("down", user)).warning, true);
    assert.equal((await g.userInfo("down", user)).overQuota, undefined);
  } finally {
    await d.cleanup();
  }
  // Only percentages.
  for (const bad of ['"80"', "80", '"0%"', '"120%"']) {
    const dd = await PolicyDir.make(toml(`warnAt = ${bad}`));
    try {
      await assert.rejects(
        () => dd.open(),
        (e) =>
          e instanceof ConfigError &&
          /warnAt.*percentage.*warnAt = "80%"/.test(e.message),
      );
    } finally {
      await dd.cleanup();
    }
  }
});

Deno.test("grants: an admin's grant lets a user at the quota browse again, grants add up, survive a restart and end at the reset", async () => {
  const { d, g, admin, user } = await gateway('warnAt = "80%"');
  try {
    download(meterOf(g.decideSync(request("10.0.0.6", d.clock))), 2 * MiB);
    assert.equal(g.decideSync(request("10.0.0.6", d.clock)).allowed, false);
    // Only administrators, known users, more than 0 bytes.
    await assert.rejects(
      () => g.grant("down", user, { user: "user1", bytes: MiB }),
      (e) => e instanceof CommandError && e.body.User === "user1",
    );
    await assert.rejects(
      () => g.grant("down", admin, { user: "nobody", bytes: MiB }),
      (e) => e instanceof CommandError && e.body.User === "nobody",
    );
    await assert.rejects(
      () => g.grant("down", admin, { user: "user1", bytes: 0 }),
      /more than 0 bytes/,
    );
    await assert.rejects(
      () => g.grant("sessions", admin, { user: "user1", bytes: 1 }),
      (e) => e instanceof CommandError && e.body.Cmd === "grant",
    );
    const info = await g.grant("down", admin, { user: "user1", bytes: MiB });
    assert.equal(info.bytesGranted, MiB);
    assert.equal(info.granted, "1 MB");
    assert.equal(info.bytesQuota, 2 * MiB, "the quota in force");
    assert.equal(info.quota, "2 MB");
    assert.equal(info.overQuota, undefined);
    assert.equal(info.bytesCons, 1024 * KiB, "consumption untouched");
    assert.equal(info.warning, false, "50 % of the quota with the grant");
    const meter = meterOf(g.decideSync(request("10.0.0.6", d.clock)));
    assert.equal(download(meter, 3 * MiB), MiB, "the grant's bytes, then cut");
    await g.grant("down", admin, { user: "user1", bytes: 512 * KiB });
    assert.equal((await g.userInfo("down", user)).bytesGranted, 1536 * KiB);
    assert.ok(g.decideSync(request("10.0.0.6", d.clock)).allowed);
    // Kept in the store: a restart (a new gateway on the same file) keeps them.
    await g.close();
    const again = await d.open();
    assert.equal((await again.userInfo("down", user)).bytesGranted, 1536 * KiB);
    assert.ok(again.decideSync(request("10.0.0.6", d.clock)).allowed);
    // The reset ends the grants with the consumption.
    d.clock.advance(24 * 3600_000);
    const next = await again.userInfo("down", user);
    assert.equal(next.bytesGranted, 0);
    assert.equal(next.bytesCons, 0);
    assert.equal(next.bytesQuota, MiB);
    await again.flush();
    const third = await d.open();
    assert.equal((await third.userInfo("down", user)).bytesGranted, 0);
  } finally {
    await d.cleanup();
  }
});

Deno.test("grants: two gateways on one KV file add up and see each other's at the flush", async () => {
  const d = await PolicyDir.make(toml());
  try {
    const a = await d.open();
    const b = await d.open();
    const secret = await a.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    const admin = { ip: "10.0.0.5", secret };
    await b.flush(); // the session, seen by B
    await a.grant("down", admin, { user: "user1", bytes: 100 });
    await b.grant("down", admin, { user: "user1", bytes: 23 });
    await a.flush();
    assert.equal(
      (await a.userInfo("down", admin, { user: "user1" })).bytesGranted,
      123,
    );
    // KV announces nothing: B reads A's grant back at its flush.
    await b.flush();
    assert.equal(
      (await b.userInfo("down", admin, { user: "user1" })).bytesGranted,
      123,
    );
  } finally {
    await d.cleanup();
  }
});

Deno.test("countUploads: the quota is the decision's upMeter and uploads count like downloads; off by default", async () => {
  const off = await gateway("");
  try {
    const d = allowedOf(off.g.decideSync(request("10.0.0.6", off.d.clock)));
    assert.equal(d.upMeter, undefined);
  } finally {
    await off.d.cleanup();
  }
  const { d, g, user } = await gateway("countUploads = true");
  try {
    const decision = allowedOf(g.decideSync(request("10.0.0.6", d.clock)));
    assert.ok(decision.upMeter);
    assert.equal(download(decision.upMeter, 600 * KiB), 600 * KiB);
    assert.equal(download(decision.meter!, 424 * KiB), 424 * KiB);
    assert.equal((await g.userInfo("down", user)).bytesCons, 1024 * KiB);
    assert.equal(
      decision.upMeter.chunk(1),
      -1,
      "an upload at the quota is cut",
    );
    assert.equal(g.decideSync(request("10.0.0.6", d.clock)).allowed, false);
  } finally {
    await d.cleanup();
  }
  // With overQuotaRate, uploads past the quota are slowed by the same bucket.
  const slow = await gateway('countUploads = true\noverQuotaRate = "64 KiB/s"');
  try {
    const a = allowedOf(slow.g.decideSync(request("10.0.0.6", slow.d.clock)));
    download(a.meter!, 1024 * KiB);
    assert.equal(a.meter!.chunk(64 * KiB), 0, "the burst");
    const wait = a.upMeter!.chunk(64 * KiB);
    assert.ok(wait > 900 && wait <= 1000, `${wait} ms`);
  } finally {
    await slow.d.cleanup();
  }
});

Deno.test("reset day keys: show prints them and the next reset; they belong to their cycle", async () => {
  const d = await PolicyDir.make(
    toml().replace(
      'resetCycle = "24h"',
      'resetCycle = "monthly"\n\tresetDay = 15\n\tresetTime = "06:00"\n\ttimezone = "America/Havana"\n\toverQuotaRate = "64 KiB/s"\n\twarnAt = "85.5%"',
    ),
  );
  try {
    const g = await d.open();
    const shown = g.describe("down") as Record<string, unknown>;
    // The clock is at 2026-03-02T10:00Z: February's cycle, 15 Feb 06:00
    // in Havana (UTC-5), until 15 March 06:00 (UTC-4, summer time).
    assert.equal(shown.lastReset, "2026-02-15T11:00:00.000Z");
    assert.equal(shown.nextReset, "2026-03-15T10:00:00.000Z");
    assert.equal(shown.resetDay, 15);
    assert.equal(shown.resetTime, "06:00");
    assert.equal(shown.timezone, "America/Havana");
    assert.equal(shown.overQuotaRate, "64 KB/s");
    assert.equal(shown.warnAt, "85.5%");
    assert.equal(shown.countUploads, false);
  } finally {
    await d.cleanup();
  }
  const cases: [string, RegExp][] = [
    [
      'resetCycle = "weekly"\n\tresetDay = 15',
      /resetDay.*is for resetCycle = "monthly", not "weekly"/,
    ],
    [
      'resetCycle = "monthly"\n\tresetWeekday = "sun"',
      /resetWeekday.*is for resetCycle = "weekly"/,
    ],
    [
      'resetCycle = "24h"\n\tresetTime = "06:00"',
      /resetTime.*calendar cycles.*not "24h"/,
    ],
    [
      'resetCycle = "monthly"\n\tresetDay = 31',
      /does not exist in every month/,
    ],
    ['resetCycle = "weekly"\n\tresetWeekday = "someday"', /"sun", "mon"/],
    ['resetCycle = "daily"\n\tresetTime = "25:00"', /"00:00" to "23:59"/],
    [
      'resetCycle = "24h"\n\toverQuotaRate = "64 kbit/s"',
      /overQuotaRate.*bits/,
    ],
    [
      'resetCycle = "24h"\n\tcountUploads = "yes"',
      /countUploads.*true or false/,
    ],
  ];
  for (const [keys, problem] of cases) {
    const bad = await PolicyDir.make(
      toml().replace('resetCycle = "24h"', keys),
    );
    try {
      await assert.rejects(
        () => bad.open(),
        (e) =>
          e instanceof ConfigError && /managers\.toml:\d+/.test(e.message) &&
          problem.test(e.message),
        keys,
      );
    } finally {
      await bad.cleanup();
    }
  }
});

Deno.test("reload: a changed resetDay and resetTime take effect at the next boundary without losing the counter; a new overQuotaRate applies to open accounts", async () => {
  const monthly = (day: string, time: string, rate = "") =>
    toml().replace(
      'resetCycle = "24h"',
      `resetCycle = "monthly"\n\tresetDay = ${day}\n\tresetTime = "${time}"\n\ttimezone = "UTC"${
        rate ? `\n\toverQuotaRate = "${rate}"` : ""
      }`,
    );
  const d = await PolicyDir.make(monthly("1", "00:00"));
  try {
    const g = await d.open();
    const secret = await g.open("sessions", { ip: "10.0.0.6" }, {
      user: "user1",
      pass: "pass1",
    });
    const user = { ip: "10.0.0.6", secret };
    const meter = meterOf(g.decideSync(request("10.0.0.6", d.clock)));
    assert.equal(download(meter, 1024 * KiB), 1024 * KiB);
    assert.equal(g.decideSync(request("10.0.0.6", d.clock)).allowed, false);
    assert.equal(
      (g.describe("down") as { lastReset: string }).lastReset,
      "2026-03-01T00:00:00.000Z",
    );
    // The 1st at midnight becomes the 2nd at 06:00, and past the quota the
    // user is now slowed. The clock is at 2026-03-02T10:00Z, past this
    // month's new boundary: the counter goes on until the next one, 2 April
    // at 06:00, rather than reset at the reload.
    await Deno.writeTextFile(
      d.managersPath,
      monthly("2", "06:00", "64 KiB/s"),
    );
    await g.reload();
    assert.equal(
      (g.describe("down") as { lastReset: string }).lastReset,
      "2026-03-01T00:00:00.000Z",
      "no reset at the reload",
    );
    assert.equal(
      (g.describe("down") as { nextReset: string }).nextReset,
      "2026-04-02T06:00:00.000Z",
    );
    const info = await g.userInfo("down", user);
    assert.equal(info.bytesCons, 1024 * KiB, "the counter goes on");
    assert.equal(info.overQuota, "slowed");
    // The open transfer's account is slowed now, not cut.
    assert.equal(meter.chunk(64 * KiB), 0, "the burst");
    assert.ok(meter.chunk(64 * KiB) > 0, "slowed");
    const slowed = allowedOf(g.decideSync(request("10.0.0.6", d.clock)));
    assert.equal(slowed.note, "slowed");
    d.clock.ms = Date.parse("2026-04-02T05:59:00Z");
    assert.equal((await g.userInfo("down", user)).bytesCons, 1152 * KiB);
    d.clock.ms = Date.parse("2026-04-02T06:00:00Z");
    assert.equal((await g.userInfo("down", user)).bytesCons, 0);
    assert.equal(
      (g.describe("down") as { lastReset: string }).lastReset,
      "2026-04-02T06:00:00.000Z",
    );
  } finally {
    await d.cleanup();
  }
});

Deno.test("sizes: 6 TiB of consumption is counted, stored and printed exactly", async () => {
  const d = await PolicyDir.make(toml("", "10 TB"));
  try {
    const g = await d.open();
    const secret = await g.open("sessions", { ip: "10.0.0.6" }, {
      user: "user1",
      pass: "pass1",
    });
    const user = { ip: "10.0.0.6", secret };
    const meter = meterOf(g.decideSync(request("10.0.0.6", d.clock)));
    // 6 TiB in 64 MiB chunks, then 3 bytes: no wrap at 4 GiB, nothing lost.
    for (let i = 0; i < (6 * TiB) / (64 * MiB); i++) {
      assert.equal(meter.chunk(64 * MiB), 0);
    }
    meter.chunk(3);
    const info = await g.userInfo("down", user);
    assert.equal(info.bytesCons, 6 * TiB + 3);
    assert.equal(info.consumption, "6 TB");
    assert.equal(info.quota, "10 TB");
    await g.flush();
    await g.close();
    const again = await d.open();
    const stored = await again.userInfo("down", user);
    assert.equal(stored.bytesCons, 6 * TiB + 3);
    assert.equal(stored.consumption, "6 TB");
    assert.equal(formatSize(stored.bytesCons + 0.5 * TiB), "6.5 TB");
  } finally {
    await d.cleanup();
  }
});

Deno.test("the README's example of quotas as sites run them loads, and does what it says", async () => {
  const readme = await Deno.readTextFile(
    new URL("../README.md", import.meta.url),
  );
  const section = readme.slice(readme.indexOf("### Quotas as sites run them"));
  const example = /```toml\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(example, "a TOML example in the section");
  const d = await PolicyDir.make(`rule = "sessions ∧ down"
[[sessionIPM]]
  name = "sessions"
  auth = "map"
${example}
[mapDB]
  name = "map"
  [mapDB.userPass]
    ana = "pass"
  [mapDB.userGroup]
    ana = ["students"]
`);
  try {
    const g = await d.open();
    const shown = g.describe("down") as Record<string, unknown>;
    assert.equal(shown.resetDay, 15);
    assert.equal(shown.resetTime, "06:00");
    assert.equal(shown.timezone, "America/Havana");
    assert.equal(shown.overQuotaRate, "64 KB/s");
    assert.equal(shown.warnAt, "80%");
    assert.equal(shown.countUploads, true);
    assert.deepEqual(shown.groupQuota, { students: "20 GB", staff: "1.5 TB" });
    assert.deepEqual(g.warnings, []);
  } finally {
    await d.cleanup();
  }
});
