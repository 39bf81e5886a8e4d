/**
 * Reset cycles on the site's day and time (`resetDay`, `resetWeekday`,
 * `resetTime`) in the manager's time zone, with an injected clock (the
 * instants asked about): month ends, leap years, and the daylight-saving
 * changes of America/Havana (at midnight) and Europe/Madrid (at night).
 */
import assert from "node:assert/strict";
import {
  type CalendarOptions,
  formatResetTime,
  parseResetCycle,
  parseResetDay,
  parseResetTime,
  parseResetWeekday,
  type ResetCycle,
} from "../managers/quotas/_reset_cycle.ts";
import { ZoneClock } from "../managers/values/zone.ts";

const HOUR = 3_600_000;
const at = (iso: string) => Date.parse(iso);
const iso = (ms: number) => new Date(ms).toISOString();

function cycle(
  text: string,
  zone: string,
  options: CalendarOptions = {},
): ResetCycle {
  const c = parseResetCycle(text, zone, options);
  assert.ok(typeof c !== "string", c as string);
  return c;
}

/** Local wall-clock time of an instant, `2026-03-15 06:00 Sun`. */
function local(ms: number, zone: string): string {
  const w = new ZoneClock(zone).read(ms);
  const day = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"][w.weekday];
  const two = (n: number) => String(n).padStart(2, "0");
  return `${w.year}-${two(w.month)}-${two(w.day)} ${two(w.hour)}:${
    two(w.minute)
  } ${day}`;
}

Deno.test("reset cycle: resetDay = 15 at 06:00 in Havana, across the year's end and the change to summer time", () => {
  const z = "America/Havana";
  const c = cycle("monthly", z, { day: 15, minutes: 6 * 60 });
  // Havana is UTC-5 in winter, UTC-4 from 8 March 2026 (00:00 → 01:00).
  assert.equal(
    iso(c.current(at("2026-03-20T12:00:00Z"), 0)),
    "2026-03-15T10:00:00.000Z",
  );
  // A minute before 06:00 on the 15th: still February's cycle.
  assert.equal(
    iso(c.current(at("2026-03-15T09:59:00Z"), 0)),
    "2026-02-15T11:00:00.000Z",
  );
  assert.equal(
    iso(c.current(at("2026-03-15T10:00:00Z"), 0)),
    "2026-03-15T10:00:00.000Z",
  );
  assert.equal(
    iso(c.next(at("2026-02-15T11:00:00Z"))),
    "2026-03-15T10:00:00.000Z",
  );
  // January's 10th belongs to December's cycle.
  assert.equal(
    local(c.current(at("2027-01-10T12:00:00Z"), 0), z),
    "2026-12-15 06:00 Tue",
  );
  // A whole year of boundaries: always the 15th at 06:00 local.
  let b = at("2026-01-15T11:00:00Z");
  for (let i = 0; i < 14; i++) {
    const next = c.next(b);
    assert.match(local(next, z), /^\d{4}-\d\d-15 06:00/, local(next, z));
    assert.equal(c.current(next, 0), next);
    assert.equal(c.current(next - 1, 0), b);
    b = next;
  }
  assert.equal(local(b, z), "2027-03-15 06:00 Mon");
});

Deno.test('reset cycle: resetDay = "last" and 28 across month ends and leap years', () => {
  const last = cycle("monthly", "UTC", { day: "last" });
  assert.equal(
    iso(last.next(at("2026-01-31T00:00:00Z"))),
    "2026-02-28T00:00:00.000Z",
  );
  assert.equal(
    iso(last.next(at("2026-02-28T00:00:00Z"))),
    "2026-03-31T00:00:00.000Z",
  );
  assert.equal(
    iso(last.next(at("2026-04-30T00:00:00Z"))),
    "2026-05-31T00:00:00.000Z",
  );
  // 2028 is a leap year: February ends on the 29th.
  assert.equal(
    iso(last.next(at("2028-01-31T00:00:00Z"))),
    "2028-02-29T00:00:00.000Z",
  );
  assert.equal(
    iso(last.current(at("2028-02-29T12:00:00Z"), 0)),
    "2028-02-29T00:00:00.000Z",
  );
  assert.equal(
    iso(last.current(at("2028-02-28T23:59:59Z"), 0)),
    "2028-01-31T00:00:00.000Z",
  );
  assert.equal(
    iso(last.current(at("2028-03-10T00:00:00Z"), 0)),
    "2028-02-29T00:00:00.000Z",
  );
  assert.equal(
    iso(last.next(at("2028-02-29T00:00:00Z"))),
    "2028-03-31T00:00:00.000Z",
  );
  // The year's end: December's last day, then January's.
  assert.equal(
    iso(last.current(at("2027-01-15T00:00:00Z"), 0)),
    "2026-12-31T00:00:00.000Z",
  );
  assert.equal(
    iso(last.next(at("2026-12-31T00:00:00Z"))),
    "2027-01-31T00:00:00.000Z",
  );
  // Every month of four years, the one with 29 February among them.
  const expectDays = (
    c: ResetCycle,
    want: (y: number, m: number) => number,
  ) => {
    let b = c.current(at("2026-01-31T12:00:00Z"), 0);
    for (let i = 0; i < 48; i++) {
      const d = new Date(b);
      assert.equal(
        d.getUTCDate(),
        want(d.getUTCFullYear(), d.getUTCMonth() + 1),
        iso(b),
      );
      b = c.next(b);
    }
    assert.equal(new Date(b).getUTCFullYear(), 2030);
  };
  expectDays(last, (y, m) => new Date(Date.UTC(y, m, 0)).getUTCDate());
  expectDays(cycle("monthly", "UTC", { day: 28 }), () => 28);
});

Deno.test('reset cycle: resetWeekday = "sun" at 06:00 in Madrid, across both daylight-saving changes', () => {
  const z = "Europe/Madrid";
  const c = cycle("weekly", z, { weekday: 0, minutes: 6 * 60 });
  // 29 March 2026 is a Sunday, and Madrid goes from UTC+1 to UTC+2 at
  // 02:00 that night: 06:00 is 04:00Z, a week of 167 hours.
  const mar22 = at("2026-03-22T05:00:00Z");
  assert.equal(local(mar22, z), "2026-03-22 06:00 Sun");
  assert.equal(iso(c.next(mar22)), "2026-03-29T04:00:00.000Z");
  assert.equal(c.next(mar22) - mar22, 167 * HOUR);
  // Before 06:00 on a Sunday: last Sunday's.
  assert.equal(iso(c.current(at("2026-03-29T03:59:00Z"), 0)), iso(mar22));
  // On Wednesday: the Sunday before.
  assert.equal(
    iso(c.current(at("2026-04-01T10:00:00Z"), 0)),
    "2026-03-29T04:00:00.000Z",
  );
  // 25 October 2026 is a Sunday: back to UTC+1, a week of 169 hours.
  const oct18 = at("2026-10-18T04:00:00Z");
  assert.equal(local(oct18, z), "2026-10-18 06:00 Sun");
  assert.equal(c.next(oct18) - oct18, 169 * HOUR);
  assert.equal(local(c.next(oct18), z), "2026-10-25 06:00 Sun");
  // The default stays Monday at midnight.
  const monday = cycle("weekly", z);
  assert.equal(
    local(monday.current(at("2026-10-25T12:00:00Z"), 0), z),
    "2026-10-19 00:00 Mon",
  );
});

Deno.test("reset cycle: daily at midnight in Havana, where summer time starts at midnight and ends at 01:00", () => {
  const z = "America/Havana";
  const c = cycle("daily", z);
  // 8 March 2026: the clocks go from 00:00 straight to 01:00. That day's
  // reset is at 01:00 (05:00Z), never on the evening before.
  const mar7 = at("2026-03-07T05:00:00Z");
  assert.equal(local(mar7, z), "2026-03-07 00:00 Sat");
  assert.equal(iso(c.next(mar7)), "2026-03-08T05:00:00.000Z");
  assert.equal(local(c.next(mar7), z), "2026-03-08 01:00 Sun");
  // 23:30 on the 7th is still the 7th's cycle.
  assert.equal(iso(c.current(at("2026-03-08T04:30:00Z"), 0)), iso(mar7));
  // The next day is 23 hours long.
  assert.equal(
    iso(c.next(at("2026-03-08T05:00:00Z"))),
    "2026-03-09T04:00:00.000Z",
  );
  // 1 November 2026: 01:00 goes back to 00:00, so 00:30 happens twice;
  // the reset is at the first, once.
  const half = cycle("daily", z, { minutes: 30 });
  const first = half.current(at("2026-11-01T04:45:00Z"), 0);
  assert.equal(iso(first), "2026-11-01T04:30:00.000Z");
  assert.equal(
    half.current(at("2026-11-01T05:40:00Z"), 0),
    first,
    "the second 00:30 is no reset",
  );
  assert.equal(iso(half.next(first)), "2026-11-02T05:30:00.000Z");
  assert.equal(half.next(first) - first, 25 * HOUR);
});

Deno.test("reset cycle: resetTime in Madrid's gap and overlap, and a year of days in both zones", () => {
  const z = "Europe/Madrid";
  // 02:30 does not exist on 29 March 2026 (02:00 → 03:00): 03:30 then.
  const c = cycle("daily", z, { minutes: 150 });
  assert.equal(
    local(c.next(at("2026-03-28T01:30:00Z")), z),
    "2026-03-29 03:30 Sun",
  );
  // It happens twice on 25 October 2026: the first one.
  assert.equal(
    iso(c.next(at("2026-10-24T00:30:00Z"))),
    "2026-10-25T00:30:00.000Z",
  );
  for (const zone of ["Europe/Madrid", "America/Havana"]) {
    const d = cycle("daily", zone, { minutes: 6 * 60 });
    let b = d.current(at("2026-01-01T12:00:00Z"), 0);
    for (let i = 0; i < 800; i++) {
      const next = d.next(b);
      const hours = (next - b) / HOUR;
      assert.ok(hours >= 23 && hours <= 25, `${zone} ${iso(b)}: ${hours} h`);
      assert.match(local(next, zone), / 06:00 /);
      assert.equal(d.current(next, 0), next);
      assert.equal(d.current(next - 1, 0), b);
      b = next;
    }
  }
});

Deno.test("reset cycle: resetDay, resetWeekday and resetTime values", () => {
  assert.deepEqual(parseResetDay(15), { day: 15 });
  assert.deepEqual(parseResetDay(15n), { day: 15 });
  assert.deepEqual(parseResetDay("last"), { day: "last" });
  assert.deepEqual(parseResetDay("LAST"), { day: "last" });
  assert.match(
    String(parseResetDay(31)),
    /does not exist in every month.*"last"/,
  );
  assert.match(String(parseResetDay(0)), /from 1 to 28/);
  assert.match(String(parseResetDay("15")), /without quotes/);
  assert.equal(parseResetWeekday("sun"), 0);
  assert.equal(parseResetWeekday("Saturday"), 6);
  assert.equal(parseResetWeekday("MON"), 1);
  assert.match(String(parseResetWeekday("su")), /"sun", "mon"/);
  assert.match(String(parseResetWeekday(0)), /day of the week/);
  assert.equal(parseResetTime("06:00"), 360);
  assert.equal(parseResetTime("6:05"), 365);
  assert.equal(parseResetTime("23:59"), 1439);
  assert.match(String(parseResetTime("24:00")), /"00:00" to "23:59"/);
  assert.match(String(parseResetTime("6pm")), /HH:MM/);
  assert.equal(formatResetTime(360), "06:00");
  assert.equal(formatResetTime(1439), "23:59");
});
