/**
 * The usage history: the calendar of hours, days and months in a time
 * zone (offsets of half an hour, daylight-saving days), the roll-up of
 * days into months, the retention, and the history through the real
 * gateway on a real Deno KV file with a clock moved by hand: written with
 * the flush and the near-quota sync (never per request), in the hour of
 * the write, a failed write kept for the next, and who may read whose.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  CommandError,
  ConfigError,
  type GatewayRuntime,
  openGateway,
  stateConfigFrom,
} from "../managers/mod.ts";
import { UsageCalendar } from "../managers/quotas/_history.ts";
import { KvStateStore } from "../managers/state/kv_store.ts";
import type { UsageBuckets } from "../managers/state/store.ts";
import { download, request, TestClock } from "./helpers/managers_setup.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const utc = Date.parse;

// ------------------------------------------------------------ calendar

Deno.test("history: hours, days and months of a zone, and its times", () => {
  const kolkata = new UsageCalendar("Asia/Kolkata");
  // 15:45 in Kolkata (+05:30): its hour began at 15:00 local, 09:30 UTC.
  assert.equal(
    kolkata.hourStart(utc("2026-03-02T10:15:42.123Z")),
    utc("2026-03-02T09:30:00Z"),
  );
  assert.equal(
    kolkata.dayStart(utc("2026-03-02T10:15:00Z")),
    utc("2026-03-01T18:30:00Z"),
  );
  assert.equal(
    kolkata.isoLocal(utc("2026-03-01T18:30:00Z")),
    "2026-03-02T00:00:00+05:30",
  );

  const ny = new UsageCalendar("America/New_York");
  // 8 March 2026: clocks go from 02:00 to 03:00, a day of 23 hours.
  const days = ny.periods(
    "day",
    utc("2026-03-07T05:00:00Z"),
    utc("2026-03-10T04:00:00Z"),
  );
  assert.deepEqual(days, [
    utc("2026-03-07T05:00:00Z"),
    utc("2026-03-08T05:00:00Z"),
    utc("2026-03-09T04:00:00Z"),
  ]);
  assert.equal(ny.isoLocal(days[2]), "2026-03-09T00:00:00-04:00");
  // Periods start at the first whole one in the range.
  assert.deepEqual(
    ny.periods(
      "hour",
      utc("2026-03-09T04:30:00Z"),
      utc("2026-03-09T07:00:00Z"),
    ),
    [utc("2026-03-09T05:00:00Z"), utc("2026-03-09T06:00:00Z")],
  );
  assert.deepEqual(
    ny.periods(
      "month",
      utc("2026-01-01T05:00:00Z"),
      utc("2026-04-01T04:00:00Z"),
    ),
    [
      utc("2026-01-01T05:00:00Z"),
      utc("2026-02-01T05:00:00Z"),
      utc("2026-03-01T05:00:00Z"),
    ],
  );
  // Times as people write them, in the zone unless they say otherwise.
  assert.equal(ny.parseTime("2026-05-01"), utc("2026-05-01T04:00:00Z"));
  assert.equal(ny.parseTime("2026-05-01T10:30"), utc("2026-05-01T14:30:00Z"));
  assert.equal(
    ny.parseTime("2026-05-01 10:30:15"),
    utc("2026-05-01T14:30:15Z"),
  );
  assert.equal(
    ny.parseTime("2026-05-01T10:30:00Z"),
    utc("2026-05-01T10:30:00Z"),
  );
  assert.equal(
    ny.parseTime("2026-05-01T10:30:00+02:00"),
    utc("2026-05-01T08:30:00Z"),
  );
  for (
    const bad of ["yesterday", "2026-13-01", "2026-05-01T10", "", "1714550400"]
  ) {
    assert.equal(ny.parseTime(bad), undefined, bad);
  }
  assert.equal(new UsageCalendar("UTC").isoLocal(0), "1970-01-01T00:00:00Z");
});

Deno.test("history: days roll up into their local months, per user", () => {
  const ny = new UsageCalendar("America/New_York");
  const may1 = utc("2026-05-01T04:00:00Z");
  const apr30 = utc("2026-04-30T04:00:00Z");
  const months = ny.rollUpMonths([
    { start: apr30, user: "alice", bytes: 1 },
    { start: may1, user: "alice", bytes: 10 },
    { start: may1 + DAY, user: "alice", bytes: 100 },
    { start: may1 + DAY, user: "bob", bytes: 5 },
  ]);
  assert.deepEqual(months, [
    { start: utc("2026-04-01T04:00:00Z"), user: "alice", bytes: 1 },
    { start: may1, user: "alice", bytes: 110 },
    { start: may1, user: "bob", bytes: 5 },
  ]);
});

Deno.test("history: the buckets of a write and what is kept", () => {
  const cal = new UsageCalendar("UTC");
  const now = utc("2026-03-02T10:20:00Z");
  assert.deepEqual(
    cal.bucketsAt(now, { hours: 48, days: 400 }),
    {
      hour: utc("2026-03-02T10:00:00Z"),
      day: utc("2026-03-02T00:00:00Z"),
      keepHourMs: 48 * HOUR,
      keepDayMs: 400 * DAY,
    } satisfies UsageBuckets,
  );
  // 48 hours: the current hour and the 47 before it.
  const oldest = cal.oldestKept("hour", now, { hours: 48, days: 400 });
  const kept = cal.periods(
    "hour",
    oldest,
    cal.nextPeriod("hour", cal.hourStart(now)),
  );
  assert.equal(kept.length, 48);
  assert.equal(kept[0], utc("2026-02-28T11:00:00Z"));
  const keptDays = cal.periods(
    "day",
    cal.oldestKept("day", now, { hours: 48, days: 400 }),
    cal.nextPeriod("day", cal.dayStart(now)),
  );
  assert.equal(keptDays.length, 400);
});

// ------------------------------------------------- through the gateway

function managersToml(quota = "1 GB"): string {
  return `rule = "sessions ∧ down"
admins = ["admin"]
jwtExpiration = "1000h"

[[sessionIPM]]
name = "sessions"
auth = "map"

[[dwnConsR]]
name = "down"
userDBN = "map"
resetCycle = "monthly"
timezone = "UTC"
[dwnConsR.groupQuota]
group0 = "${quota}"

[mapDB]
name = "map"
[mapDB.userPass]
user0 = "pass0"
user1 = "pass1"
admin = "admin-pass"
[mapDB.userGroups]
user0 = ["group0"]
user1 = ["group0"]
admin = ["group0"]
`;
}

interface Site {
  dir: string;
  clock: TestClock;
  gateway: GatewayRuntime;
  /** The secret of a user logged in at their address. */
  login(user: string, ip: string): Promise<string>;
  download(ip: string, bytes: number): number;
  close(): Promise<void>;
}

async function openSite(
  options: {
    quota?: string;
    history?: { hours: number; days: number };
    syncIntervalMs?: number;
    store?: (path: string) => Promise<KvStateStore>;
  } = {},
): Promise<Site> {
  const dir = await Deno.makeTempDir({ prefix: "pmproxy-history-" });
  await Deno.writeTextFile(
    join(dir, "managers.toml"),
    managersToml(options.quota),
  );
  const clock = new TestClock(utc("2026-03-02T10:20:00Z"));
  const kv = join(dir, "state.kv");
  const gateway = await openGateway(join(dir, "managers.toml"), {
    state: options.store ? await options.store(kv) : kv,
    persistIntervalMs: 0,
    syncIntervalMs: options.syncIntervalMs ?? 0,
    clock: clock.now,
    history: options.history,
  });
  return {
    dir,
    clock,
    gateway,
    login: (user, ip) =>
      gateway.open("sessions", { ip }, {
        user,
        pass: user === "admin" ? "admin-pass" : `pass${user.slice(-1)}`,
      }),
    download(ip, bytes) {
      const d = gateway.decideSync(request(ip, clock));
      assert.ok(d.allowed && d.meter, JSON.stringify(d));
      return download(d.meter, bytes);
    },
    close: async () => {
      await gateway.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

const at = (iso: string) => utc(iso);

Deno.test("history: bytes are written with the flush, in the hour of the flush, and roll up per day and month", async () => {
  const site = await openSite();
  try {
    const me = {
      ip: "10.0.0.5",
      secret: await site.login("user0", "10.0.0.5"),
    };
    site.download("10.0.0.5", 300 * KiB);
    // Counted, not written: the history has nothing before the flush.
    const before = await site.gateway.usage("down", me, { by: "hour" });
    assert.deepEqual(before.entries, []);
    assert.equal(before.user, "user0");
    assert.equal(before.zone, "UTC");
    assert.equal(before.periods.length, 48);
    await site.gateway.flush();
    const first = await site.gateway.usage("down", me, { by: "hour" });
    assert.deepEqual(first.entries, [
      { start: at("2026-03-02T10:00:00Z"), user: "user0", bytes: 300 * KiB },
    ]);
    // Counted at 10:55, written at 11:05: it belongs to 11:00.
    site.clock.advance(35 * 60_000);
    site.download("10.0.0.5", 100 * KiB);
    site.clock.advance(10 * 60_000);
    await site.gateway.flush();
    // A flush with nothing new writes nothing.
    await site.gateway.flush();
    const hours = await site.gateway.usage("down", me, { by: "hour" });
    assert.deepEqual(hours.entries, [
      { start: at("2026-03-02T10:00:00Z"), user: "user0", bytes: 300 * KiB },
      { start: at("2026-03-02T11:00:00Z"), user: "user0", bytes: 100 * KiB },
    ]);
    assert.equal(
      hours.to,
      at("2026-03-02T12:00:00Z"),
      "to the end of this hour",
    );
    // The next day, and the days and the month they make.
    site.clock.advance(DAY);
    site.download("10.0.0.5", 1 * MiB);
    await site.gateway.flush();
    const days = await site.gateway.usage("down", me, {
      by: "day",
      since: "2026-03-01",
    });
    assert.deepEqual(days.entries, [
      { start: at("2026-03-02T00:00:00Z"), user: "user0", bytes: 400 * KiB },
      { start: at("2026-03-03T00:00:00Z"), user: "user0", bytes: MiB },
    ]);
    assert.deepEqual(days.periods, [
      at("2026-03-01T00:00:00Z"),
      at("2026-03-02T00:00:00Z"),
      at("2026-03-03T00:00:00Z"),
    ]);
    const months = await site.gateway.usage("down", me, { by: "month" });
    assert.deepEqual(months.entries, [
      {
        start: at("2026-03-01T00:00:00Z"),
        user: "user0",
        bytes: MiB + 400 * KiB,
      },
    ]);
    // Only today's hours, until a time.
    const today = await site.gateway.usage("down", me, {
      by: "hour",
      since: "2026-03-03",
      until: new Date("2026-03-03T11:00:00Z"),
    });
    assert.equal(today.periods.length, 11);
    assert.deepEqual(today.entries, []);
    // An administrator's reset sets the counter, not the history.
    const admin = {
      ip: "10.0.0.9",
      secret: await site.login("admin", "10.0.0.9"),
    };
    await site.gateway.setConsumption("down", admin, {
      user: "user0",
      bytes: 0,
    });
    const after = await site.gateway.usage("down", admin, {
      user: "user0",
      by: "month",
    });
    assert.equal(after.entries[0].bytes, MiB + 400 * KiB);
    await assert.rejects(
      () => site.gateway.usage("down", me, { since: "next week" }),
      (e: CommandError) => {
        assert.match(
          e.message,
          /since "next week" is not a time: write it like 2026-05-01/,
        );
        return true;
      },
    );
  } finally {
    await site.close();
  }
});

Deno.test("history: the retention: older hours and days are not shown, and the KV file forgets them", async () => {
  const site = await openSite({ history: { hours: 3, days: 2 } });
  try {
    const me = {
      ip: "10.0.0.5",
      secret: await site.login("user0", "10.0.0.5"),
    };
    site.download("10.0.0.5", 1000);
    await site.gateway.flush(); // 10:00, 2 March
    site.clock.advance(2 * HOUR);
    site.download("10.0.0.5", 20);
    await site.gateway.flush(); // 12:00
    let hours = await site.gateway.usage("down", me, {
      by: "hour",
      since: "2026-03-01",
    });
    assert.deepEqual(hours.entries.map((e) => e.bytes), [1000, 20]);
    assert.equal(hours.periods.length, 3, "3 hours kept: 10:00 to 12:00");
    // 13:20: 10:00 is 3 hours old. It is not shown, even asked for.
    site.clock.advance(HOUR);
    hours = await site.gateway.usage("down", me, {
      by: "hour",
      since: "2026-03-01",
    });
    assert.deepEqual(hours.entries.map((e) => e.bytes), [20]);
    assert.equal(hours.periods[0], at("2026-03-02T11:00:00Z"));
    // The store keeps it until a write reaches a newer hour.
    const store = site.gateway.store;
    const raw = () =>
      store.readUsage("down", {
        grain: "hour",
        from: 0,
        to: at("2027-01-01T00:00:00Z"),
      });
    assert.equal((await raw()).length, 2);
    site.download("10.0.0.5", 3);
    await site.gateway.flush(); // 13:20
    assert.deepEqual((await raw()).map((e) => e.bytes), [20, 3]);
    // Days: 2 kept. Two days later, 2 March is gone from the file too.
    site.clock.advance(2 * DAY);
    site.download("10.0.0.5", 4);
    await site.gateway.flush();
    const days = await store.readUsage("down", {
      grain: "day",
      from: 0,
      to: at("2027-01-01T00:00:00Z"),
    });
    assert.deepEqual(days, [
      { start: at("2026-03-04T00:00:00Z"), user: "user0", bytes: 4 },
    ]);
  } finally {
    await site.close();
  }

  // historyHours = 0: no hour is written, days are.
  const none = await openSite({ history: { hours: 0, days: 400 } });
  try {
    const me = {
      ip: "10.0.0.5",
      secret: await none.login("user0", "10.0.0.5"),
    };
    none.download("10.0.0.5", 10);
    await none.gateway.flush();
    assert.deepEqual(
      (await none.gateway.usage("down", me, { by: "hour" })).entries,
      [],
    );
    assert.equal(
      (await none.gateway.usage("down", me, { by: "hour" })).periods.length,
      0,
    );
    assert.deepEqual(
      (await none.gateway.usage("down", me, { by: "day" })).entries.map((e) =>
        e.bytes
      ),
      [10],
    );
  } finally {
    await none.close();
  }
});

Deno.test("history: the near-quota sync writes the history too, between flushes", async () => {
  const site = await openSite({ quota: "1 MB", syncIntervalMs: 30 });
  try {
    const me = {
      ip: "10.0.0.5",
      secret: await site.login("user0", "10.0.0.5"),
    };
    site.download("10.0.0.5", 900 * KiB);
    const deadline = Date.now() + 3000;
    let entries: { bytes: number }[] = [];
    while (Date.now() < deadline) {
      entries = (await site.gateway.usage("down", me, { by: "hour" })).entries;
      if (entries.length > 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual(entries.map((e) => e.bytes), [900 * KiB]);
  } finally {
    await site.close();
  }
});

/** A KV store whose next `failures` history writes fail. */
class FlakyStore extends KvStateStore {
  failures = 0;
  override addUsage(
    manager: string,
    deltas: ReadonlyMap<string, number>,
    at: UsageBuckets,
  ): Promise<void> {
    if (this.failures > 0) {
      this.failures--;
      return Promise.reject(new Error("the history is down"));
    }
    return super.addUsage(manager, deltas, at);
  }
}

Deno.test("history: a failed history write is kept and written with the next flush", async () => {
  let flaky: FlakyStore | undefined;
  const site = await openSite({
    store: async (path) => {
      const opened = await KvStateStore.open(path);
      flaky = new FlakyStore(opened.kv, opened.description);
      return flaky;
    },
  });
  try {
    const me = {
      ip: "10.0.0.5",
      secret: await site.login("user0", "10.0.0.5"),
    };
    site.download("10.0.0.5", 700);
    flaky!.failures = 1;
    await assert.rejects(() => site.gateway.flush(), /the history is down/);
    // The counters were written all the same.
    assert.equal(
      (await site.gateway.store.readConsumption(
        "down",
        at("2026-03-01T00:00:00Z"),
      )).get("user0"),
      700,
    );
    assert.deepEqual(
      (await site.gateway.usage("down", me, { by: "hour" })).entries,
      [],
    );
    site.clock.advance(HOUR);
    site.download("10.0.0.5", 5);
    await site.gateway.flush();
    // Both, once each, in the hour of the write that worked.
    assert.deepEqual(
      (await site.gateway.usage("down", me, { by: "hour" })).entries,
      [
        { start: at("2026-03-02T11:00:00Z"), user: "user0", bytes: 705 },
      ],
    );
  } finally {
    await site.close();
  }
});

Deno.test("history: one's own for anyone, another user's and everyone's for admins", async () => {
  const site = await openSite();
  try {
    const user0 = {
      ip: "10.0.0.5",
      secret: await site.login("user0", "10.0.0.5"),
    };
    const user1 = {
      ip: "10.0.0.6",
      secret: await site.login("user1", "10.0.0.6"),
    };
    const admin = {
      ip: "10.0.0.9",
      secret: await site.login("admin", "10.0.0.9"),
    };
    site.download("10.0.0.5", 10);
    site.download("10.0.0.6", 20);
    await site.gateway.flush();
    const refusedAs = (who: string) => (e: unknown) => {
      assert.ok(e instanceof CommandError);
      assert.deepEqual(e.body, { User: who });
      return true;
    };
    await assert.rejects(
      () => site.gateway.usage("down", user0, { user: "user1" }),
      refusedAs("user0"),
    );
    await assert.rejects(
      () => site.gateway.usage("down", user1, { all: true }),
      refusedAs("user1"),
    );
    await assert.rejects(
      () => site.gateway.usage("down", { ip: "10.0.0.7" }, {}),
      (e: CommandError) => e.body.message === "empty JWT",
    );
    await assert.rejects(
      () => site.gateway.usage("sessions", user0, {}),
      (e: CommandError) => e.body.Mng === "sessions" && e.body.Cmd === "usage",
    );
    assert.deepEqual(
      (await site.gateway.usage("down", user0, { user: "user0" })).entries.map((
        e,
      ) => e.bytes),
      [10],
    );
    assert.deepEqual(
      (await site.gateway.usage("down", admin, { user: "user1" })).entries.map((
        e,
      ) => e.bytes),
      [20],
    );
    const all = await site.gateway.usage("down", admin, {
      all: true,
      by: "day",
    });
    assert.equal(all.user, undefined);
    assert.deepEqual(all.entries.map((e) => [e.user, e.bytes]), [
      ["user0", 10],
      ["user1", 20],
    ]);
  } finally {
    await site.close();
  }
});

Deno.test("history: [state] historyHours and historyDays in server.toml", () => {
  const site = {
    file: "server.toml",
    configDir: "/etc/pmproxy",
    lineOf: () => 7,
  };
  assert.deepEqual(stateConfigFrom(undefined, site).history, {
    hours: 48,
    days: 400,
  });
  assert.deepEqual(stateConfigFrom({}, site).history, { hours: 48, days: 400 });
  assert.deepEqual(
    stateConfigFrom({ historyHours: 72, historyDays: 0 }, site).history,
    { hours: 72, days: 0 },
  );
  for (
    const [table, problem] of [
      [
        { historyHours: "48" },
        /server\.toml:7: historyHours must be a whole number from 0 to 87840 without quotes, like historyHours = 48/,
      ],
      [
        { historyDays: -1 },
        /historyDays must be a whole number from 0 to 3660/,
      ],
      [{ historyDays: 1.5 }, /historyDays must be a whole number/],
      [
        { historyDay: 3 },
        /unknown key "historyDay" in \[state\]; did you mean "historyDays"\?/,
      ],
    ] as const
  ) {
    assert.throws(() => stateConfigFrom(table, site), (e: Error) => {
      assert.ok(e instanceof ConfigError, String(e));
      assert.match(e.message, problem);
      return true;
    });
  }
});
