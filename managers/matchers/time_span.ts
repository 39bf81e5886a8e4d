/**
 * `timeSpan`: true when the request's time falls in an active phase.
 *
 * Two ways to write one. The original's cycle:
 *
 * ```toml
 * [[timeSpan]]
 *   name = "night"
 *   [timeSpan.span]            # also spelt Span
 *     start = 2024-01-01T20:00:00   # a TOML datetime or a string; no offset = local time
 *     active = "12h"            # active for 12 hours …
 *     total = "24h"             # … of every 24
 *     times = 30                # for 30 cycles (or infinite = true)
 * ```
 *
 * With p = time − start: true when p ≥ 0 and (p mod total) < active and
 * (infinite or ⌊p / total⌋ < times); `allTime = true` is always true.
 *
 * And a readable week form:
 *
 * ```toml
 * [[timeSpan]]
 *   name = "workHours"
 *   days = ["mon-fri", "sat"]   # default: every day
 *   from = "08:00"              # default "00:00"
 *   to = "20:00"                # default "24:00"; to < from spans midnight
 *   timezone = "America/Havana" # default: this machine's zone
 * ```
 *
 * In the week form a window that spans midnight belongs to the day it starts
 * on (`days = ["fri"]`, `from = "22:00"`, `to = "06:00"` is true from Friday
 * 22:00 to Saturday 06:00). `timezone` also gives the zone of a `start`
 * without offset.
 *
 * The clock is the request's time (`facts.time`), read when its head arrived.
 *
 * @module
 */
import type { EvalContext, Grant, Manager } from "../types.ts";
import { formatDuration, parseDuration } from "../values/units.ts";
import {
  checkZone,
  machineZone,
  weekdayIndex,
  WEEKDAYS,
  ZoneClock,
} from "../values/zone.ts";
import {
  type Fail,
  optBool,
  optCount,
  optString,
  optTable,
  pickKey,
  refuseUnknown,
  type Table,
} from "../config/table_fields.ts";
import type { KindContext } from "../config/kind_context.ts";

/** The original's cycle: active for `active` ms of every `total` ms from `start`. */
export interface CycleSpan {
  /** Tells the two forms apart. */
  form: "cycle";
  /** Milliseconds since the epoch. */
  start: number;
  /** Length of the active phase of each cycle (ms). */
  active: number;
  /** Length of a cycle (ms), more than 0. */
  total: number;
  /** How many cycles, unless `infinite`. */
  times: number;
  /** Cycles repeat forever. */
  infinite: boolean;
  /** Always active. */
  allTime: boolean;
}

/** The week form: on some weekdays, between two wall-clock times, in a zone. */
export interface WeekSpan {
  /** Tells the two forms apart. */
  form: "week";
  /** Index 0 = Sunday … 6 = Saturday. */
  days: boolean[];
  /** Minutes after midnight, 0–1439. */
  from: number;
  /** Minutes after midnight, 0–1440; ≤ from spans midnight. */
  to: number;
  /** IANA zone of the wall clock. */
  timezone: string;
}

/** What a `timeSpan` checks. */
export type Span = CycleSpan | WeekSpan;

/** True when `span` is active at `time` (ms since the epoch or a Date). */
export function spanActive(
  span: CycleSpan,
  time: Date | number,
): boolean {
  if (span.allTime) return true;
  const p = +time - span.start;
  if (p < 0) return false;
  if (p % span.total >= span.active) return false;
  return span.infinite || Math.floor(p / span.total) < span.times;
}

/** A `timeSpan` manager. */
export class TimeSpan implements Manager {
  readonly kind = "timeSpan";
  readonly #clock?: ZoneClock;
  /**
   * The answer of a weekly span for one minute (zone offsets are whole
   * minutes), so most requests skip reading the wall clock, which
   * allocates.
   */
  #minute = NaN;
  #minuteActive = false;

  /** A span named `name` in the rule. */
  constructor(readonly name: string, readonly span: Span) {
    if (span.form === "week") this.#clock = new ZoneClock(span.timezone);
  }

  /** True when the span is active at `time`. */
  activeAt(time: Date | number): boolean {
    const span = this.span;
    if (span.form === "cycle") return spanActive(span, time);
    const minute = Math.floor(
      (typeof time === "number" ? time : time.getTime()) / 60_000,
    );
    if (minute !== this.#minute) {
      this.#minuteActive = this.#weekActive(span, time);
      this.#minute = minute;
    }
    return this.#minuteActive;
  }

  #weekActive(span: WeekSpan, time: Date | number): boolean {
    const w = this.#clock!.read(time);
    const m = w.hour * 60 + w.minute;
    if (span.from < span.to) {
      return span.days[w.weekday] && m >= span.from && m < span.to;
    }
    // Spans midnight (or the whole day when from = to): the part before
    // midnight belongs to today, the part after to yesterday's window.
    return (span.days[w.weekday] && m >= span.from) ||
      (span.days[(w.weekday + 6) % 7] && m < span.to);
  }

  evaluate(ctx: EvalContext, _grant: Grant): boolean {
    return this.activeAt(ctx.facts.time);
  }

  whyFalse(ctx: EvalContext): string {
    return `${this.name}: ${this.#where(ctx, "outside")}`;
  }

  explain(ctx: EvalContext, value: boolean): string {
    return value ? this.#where(ctx, "inside") : this.whyFalse(ctx);
  }

  /** The time of the request against the span, in words. */
  #where(ctx: EvalContext, relation: "inside" | "outside"): string {
    const s = this.span;
    if (s.form === "cycle") {
      return `${ctx.facts.time.toISOString()} is ${relation} its active phases`;
    }
    const w = this.#clock!.read(ctx.facts.time);
    const days = WEEKDAYS.filter((_, i) => s.days[i]).join(",");
    return `now is ${WEEKDAYS[w.weekday]} ${
      clockText(w.hour * 60 + w.minute)
    } in ${s.timezone}, ${relation} ${days} ${clockText(s.from)}–${
      clockText(s.to)
    }`;
  }

  show(): unknown {
    const s = this.span;
    if (s.form === "cycle") {
      return {
        name: this.name,
        span: {
          start: new Date(s.start).toISOString(),
          active: formatDuration(s.active),
          total: formatDuration(s.total),
          times: s.times,
          infinite: s.infinite,
          allTime: s.allTime,
        },
      };
    }
    return {
      name: this.name,
      days: WEEKDAYS.filter((_, i) => s.days[i]),
      from: clockText(s.from),
      to: clockText(s.to),
      timezone: s.timezone,
    };
  }
}

function clockText(minutes: number): string {
  const h = Math.floor(minutes / 60);
  const m = minutes % 60;
  return `${String(h).padStart(2, "0")}:${String(m).padStart(2, "0")}`;
}

const CYCLE_KEYS = ["start", "active", "total", "times", "infinite", "allTime"];
const WEEK_KEYS = ["days", "from", "to"];

/**
 * Builds a `timeSpan` from its table (`name` already read by the caller).
 * `ctx.fail` throws the configuration error for a key.
 */
export function timeSpanFromTable(table: Table, ctx: KindContext): TimeSpan {
  const { name, fail } = ctx;
  const zone = optString(table, "timezone", fail, `timezone = "UTC"`);
  if (zone !== undefined) {
    const bad = checkZone(zone);
    if (bad) fail("timezone", `timezone = ${bad}`);
  }
  const timezone = zone ?? machineZone();
  const spanKey = pickKey(table, ["span", "Span"]);
  const weekKey = WEEK_KEYS.find((k) => table[k] !== undefined);
  if (spanKey && weekKey) {
    fail(
      weekKey,
      `timeSpan "${name}" has both "${spanKey}" (a cycle from a start) and "${weekKey}" (the week form); keep one of them`,
    );
  }
  if (spanKey) {
    const span = optTable(table, spanKey, fail)!;
    return new TimeSpan(name, cycleFrom(span, spanKey, timezone, fail));
  }
  if (weekKey) return new TimeSpan(name, weekFrom(table, timezone, fail));
  return fail(
    "span",
    `timeSpan "${name}" says nothing about time: add a [timeSpan.span] table (start, active, total, times or infinite, or allTime = true) or the week form (days = ["mon-fri"], from = "08:00", to = "20:00")`,
  );
}

function cycleFrom(
  span: Table,
  key: string,
  timezone: string,
  fail: Fail,
): CycleSpan {
  const at = `${key}.`;
  refuseUnknown(span, CYCLE_KEYS, at, fail);
  const inSpan: Fail = (k, p) =>
    fail(at + k, p.replaceAll(`"${k}"`, `"${at}${k}"`));
  const allTime = optBool(span, "allTime", inSpan) ?? false;
  const infinite = optBool(span, "infinite", inSpan) ?? false;
  const times = optCount(span, "times", inSpan);
  if (allTime) {
    return {
      form: "cycle",
      start: 0,
      active: 1,
      total: 1,
      times: times ?? 0,
      infinite,
      allTime,
    };
  }
  const missing = ["start", "active", "total"].filter((k) =>
    span[k] === undefined
  );
  if (missing.length > 0) {
    fail(
      at + missing[0],
      `"${at}${
        missing.join(`", "${at}`)
      }" missing: a cycle needs start (a datetime), active and total (durations like "8h", "24h"), or allTime = true`,
    );
  }
  const start = parseStart(span.start, new ZoneClock(timezone));
  if (typeof start === "string") fail(at + "start", start);
  const active = durationOf(span, "active", at, fail);
  const total = durationOf(span, "total", at, fail);
  if (total <= 0) {
    fail(at + "total", `"${at}total" must be longer than 0, like "24h"`);
  }
  if (active > total) {
    fail(
      at + "active",
      `"${at}active" (${formatDuration(active)}) is longer than "${at}total" (${
        formatDuration(total)
      }): the active phase is part of each cycle`,
    );
  }
  if (!infinite && times === undefined) {
    fail(
      at + "times",
      `"${at}times" is missing: say how many cycles (times = 30) or that it repeats forever (infinite = true)`,
    );
  }
  return {
    form: "cycle",
    start: start as number,
    active,
    total,
    times: times ?? 0,
    infinite,
    allTime,
  };
}

function durationOf(span: Table, key: string, at: string, fail: Fail): number {
  const value = span[key];
  if (typeof value !== "string") {
    return fail(
      at + key,
      `"${at}${key}" must be a duration in quotes, like "8h", "30m" or "1h30m"`,
    );
  }
  const ms = parseDuration(value);
  if (typeof ms === "string") return fail(at + key, `"${at}${key}": ${ms}`);
  return ms;
}

const DATE_TEXT =
  /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?\s*(Z|z|[+-]\d{2}:?\d{2})?$/;

/**
 * The start instant from a TOML datetime (a `Date`; smol-toml marks local
 * ones with `isLocal()` and stores their fields as UTC) or a string.
 * Without an offset the time is wall-clock time in the span's zone.
 */
function parseStart(value: unknown, clock: ZoneClock): number | string {
  const form =
    `write it as a TOML datetime (start = 2024-01-01T08:00:00, or with an offset: 2024-01-01T08:00:00-05:00) or a string in that form`;
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) {
      return `"start" is not a valid date; ${form}`;
    }
    const toml = value as Date & { isLocal?(): boolean; isTime?(): boolean };
    if (toml.isTime?.()) {
      return `"start" is a time of day without a date; ${form}`;
    }
    if (toml.isLocal?.()) {
      return clock.instantOf(
        value.getUTCFullYear(),
        value.getUTCMonth() + 1,
        value.getUTCDate(),
        value.getTime() - Date.UTC(
          value.getUTCFullYear(),
          value.getUTCMonth(),
          value.getUTCDate(),
        ),
      );
    }
    return value.getTime();
  }
  if (typeof value !== "string") return `"start" must be a datetime; ${form}`;
  const m = DATE_TEXT.exec(value.trim());
  if (!m) return `"start" = "${value}" is not a datetime; ${form}`;
  const [y, mo, d, h = "0", mi = "0", s = "0"] = m.slice(1, 7);
  const frac = m[7] ? Math.round(Number(m[7]) * 1000) : 0;
  const fields = [
    Number(y),
    Number(mo),
    Number(d),
    Number(h),
    Number(mi),
    Number(s),
  ];
  const check = new Date(
    Date.UTC(
      fields[0],
      fields[1] - 1,
      fields[2],
      fields[3],
      fields[4],
      fields[5],
    ),
  );
  if (
    check.getUTCMonth() !== fields[1] - 1 || check.getUTCDate() !== fields[2] ||
    fields[3] > 23 || fields[4] > 59 || fields[5] > 59
  ) {
    return `"start" = "${value}" is not a real date and time; ${form}`;
  }
  const dayMs = ((fields[3] * 60 + fields[4]) * 60 + fields[5]) * 1000 + frac;
  const offset = m[8];
  if (offset === undefined) {
    return clock.instantOf(fields[0], fields[1], fields[2], dayMs);
  }
  let offsetMs = 0;
  if (offset.toUpperCase() !== "Z") {
    const sign = offset[0] === "-" ? -1 : 1;
    const digits = offset.slice(1).replace(":", "");
    offsetMs = sign *
      (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2))) * 60_000;
  }
  return Date.UTC(fields[0], fields[1] - 1, fields[2]) + dayMs - offsetMs;
}

function weekFrom(table: Table, timezone: string, fail: Fail): WeekSpan {
  const days = new Array<boolean>(7).fill(table.days === undefined);
  if (table.days !== undefined) {
    const list = typeof table.days === "string" ? [table.days] : table.days;
    if (!Array.isArray(list) || list.length === 0) {
      fail(
        "days",
        `"days" must be a list of days or ranges, like days = ["mon-fri", "sat"]`,
      );
    }
    for (const item of list as unknown[]) {
      const bad = addDays(item, days);
      if (bad) fail("days", bad);
    }
  }
  const from = clockOf(table, "from", "00:00", fail);
  const to = clockOf(table, "to", "24:00", fail);
  if (from === 1440) {
    fail("from", `"from" = "24:00" is the end of the day; write "00:00"`);
  }
  return { form: "week", days, from, to, timezone };
}

function addDays(item: unknown, days: boolean[]): string | undefined {
  const form =
    `write days as "mon", "tue", "wed", "thu", "fri", "sat", "sun" or a range like "mon-fri"`;
  if (typeof item !== "string") return `"days" holds ${String(item)}; ${form}`;
  const ends = item.split("-");
  if (ends.length > 2) return `"days" holds "${item}"; ${form}`;
  const a = weekdayIndex(ends[0]);
  const b = weekdayIndex(ends[ends.length - 1]);
  if (a < 0 || b < 0) return `"days" holds "${item}"; ${form}`;
  // A range may wrap around the week end ("fri-mon").
  for (let i = a;; i = (i + 1) % 7) {
    days[i] = true;
    if (i === b) break;
  }
  return undefined;
}

function clockOf(table: Table, key: string, dflt: string, fail: Fail): number {
  const value = table[key] ?? dflt;
  const m = typeof value === "string"
    ? /^(\d{1,2}):(\d{2})$/.exec(value.trim())
    : null;
  const minutes = m ? Number(m[1]) * 60 + Number(m[2]) : NaN;
  if (!m || Number(m[2]) > 59 || !(minutes <= 1440)) {
    return fail(
      key,
      `"${key}" must be a time of day in quotes from "00:00" to "24:00", like ${key} = "${
        key === "from" ? "08:00" : "20:00"
      }"`,
    );
  }
  return minutes;
}
