/**
 * The zone clock's UTC path (Date's UTC fields, no ICU data) against the
 * Intl path it stands in for, and how the machine's zone is told without
 * Intl.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  checkZone,
  isUtcZone,
  machineUtc,
  machineZone,
  type WallClock,
  ZoneClock,
} from "../managers/values/zone.ts";

/** What Intl says the wall clock of `zone` shows at `t`. */
function intlWallClock(zone: string, t: number): WallClock {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone: zone,
    weekday: "short",
    year: "numeric",
    month: "numeric",
    day: "numeric",
    hour: "numeric",
    minute: "numeric",
    second: "numeric",
    hourCycle: "h23",
  }).formatToParts(t);
  const n = (type: string) => Number(parts.find((p) => p.type === type)!.value);
  const days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
  return {
    year: n("year"),
    month: n("month"),
    day: n("day"),
    weekday: days.indexOf(parts.find((p) => p.type === "weekday")!.value),
    hour: n("hour") % 24,
    minute: n("minute"),
    second: n("second"),
  };
}

// 1970 to 2200, to the millisecond.
const instants = fc.integer({ min: 0, max: 7_258_118_400_000 });

Deno.test("zone: the UTC clock reads every instant as Intl does, and answers the same instants and ISO times", () => {
  const utc = new ZoneClock("UTC");
  // A zone of offset 0 since 1912 that is not named UTC: read through Intl.
  const abidjan = new ZoneClock("Africa/Abidjan");
  fc.assert(
    fc.property(instants, (t) => {
      const w = utc.read(t);
      assert.deepEqual(w, intlWallClock("UTC", t));
      assert.deepEqual(w, abidjan.read(t));
      assert.equal(utc.isoLocal(t), abidjan.isoLocal(t));
      assert.equal(
        utc.instantOf(w.year, w.month, w.day, 3_600_000 * w.hour),
        abidjan.instantOf(w.year, w.month, w.day, 3_600_000 * w.hour),
      );
    }),
    { numRuns: 2000, seed: 14 },
  );
  assert.equal(utc.isoLocal(Date.UTC(2026, 4, 4)), "2026-05-04T00:00:00Z");
  assert.equal(utc.instantOf(2026, 2, 31, 0), Date.UTC(2026, 2, 3));
});

Deno.test("zone: every name taken as UTC is one Intl knows, at offset 0 in summer and winter", () => {
  const names = [
    "UTC",
    "utc",
    "Etc/UTC",
    "UCT",
    "Etc/UCT",
    "Universal",
    "Etc/Universal",
    "Zulu",
    "Etc/Zulu",
    "GMT",
    "Etc/GMT",
    "GMT0",
    "Etc/GMT0",
    "GMT+0",
    "Etc/GMT+0",
    "GMT-0",
    "Etc/GMT-0",
    "Greenwich",
    "Etc/Greenwich",
  ];
  for (const name of names) {
    assert(isUtcZone(name), name);
    assert.equal(checkZone(name), undefined, name);
    for (const t of [Date.UTC(2026, 0, 15, 12), Date.UTC(2026, 6, 15, 12)]) {
      assert.deepEqual(intlWallClock(name, t), intlWallClock("UTC", t), name);
    }
  }
  for (
    const other of ["Europe/London", "Africa/Abidjan", "Etc/GMT+1", "UTC+1"]
  ) {
    assert(!isUtcZone(other), other);
  }
  assert.match(checkZone("Mars/Olympus")!, /not a time zone known here/);
});

Deno.test("zone: the machine is told to be in UTC from TZ and /etc/localtime, and otherwise Intl is asked", () => {
  const link = (target: string) => () => target;
  const none = () => {
    throw new Deno.errors.NotFound("no /etc/localtime");
  };
  assert.equal(
    machineUtc(undefined, link("/usr/share/zoneinfo/Etc/UTC")),
    "UTC",
  );
  assert.equal(machineUtc("", link("../usr/share/zoneinfo/UTC")), "UTC");
  assert.equal(machineUtc("UTC", none), "UTC");
  assert.equal(
    machineUtc("Etc/UTC", link("/usr/share/zoneinfo/America/Havana")),
    "UTC",
  );
  assert.equal(machineUtc(":UTC", none), "UTC");
  // Anything else is left to Intl.
  assert.equal(
    machineUtc(undefined, link("/usr/share/zoneinfo/America/Havana")),
    undefined,
  );
  assert.equal(
    machineUtc(undefined, link("/usr/share/zoneinfo/Etc/UTC-3")),
    undefined,
  );
  assert.equal(
    machineUtc("America/Havana", link("/usr/share/zoneinfo/Etc/UTC")),
    undefined,
  );
  assert.equal(machineUtc("UTC0", none), undefined);
  assert.equal(machineUtc(undefined, none), undefined);
  // This process: the answer is the zone Intl gives.
  assert.equal(machineZone(), Intl.DateTimeFormat().resolvedOptions().timeZone);
});

Deno.test("zone: a gateway in another zone is told its zone by Intl", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import { machineZone } from ${
        JSON.stringify(
          new URL("../managers/values/zone.ts", import.meta.url).href,
        )
      };
       console.log(machineZone());`,
    ],
    env: { TZ: "America/Havana" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(out.success, new TextDecoder().decode(out.stderr));
  assert.equal(new TextDecoder().decode(out.stdout).trim(), "America/Havana");
});
