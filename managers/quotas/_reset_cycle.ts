/**
 * When download consumption returns to zero: every fixed duration aligned
 * to the last reset (`"24h"`), or at a wall-clock boundary of each day,
 * week or month in a time zone (`"daily"`, `"weekly"`, `"monthly"`): by
 * default local midnight, on Mondays, on the 1st; with `resetTime`
 * (`"06:00"`), `resetWeekday` (`"sun"`) and `resetDay` (1-28 or `"last"`)
 * where the site's budget resets. Private to this folder.
 *
 * @module
 */
import { parseDuration } from "../values/units.ts";
import {
  checkZone,
  machineZone,
  weekdayIndex,
  ZoneClock,
} from "../values/zone.ts";

/** A reset cycle. */
export interface ResetCycle {
  /** As configured (`"24h"`, `"daily"`). */
  readonly text: string;
  /**
   * Where a calendar cycle's boundary falls, as configured (for `show`);
   * undefined for a duration.
   */
  readonly at?: CalendarAt;
  /**
   * The reset instant at or before `now` that the cycle reaches from
   * `last` (a previous reset instant): for a duration, `last` plus whole
   * cycles; for a calendar cycle, the latest local boundary.
   */
  current(now: number, last: number): number;
  /** The reset after `last`. */
  next(last: number): number;
}

/** Where a calendar cycle's boundary falls, in its time zone. */
export interface CalendarAt {
  readonly zone: string;
  /** Minutes after local midnight (0 unless `resetTime`). */
  readonly minutes: number;
  /** `weekly`: 0 = Sunday ... 6 = Saturday (1 unless `resetWeekday`). */
  readonly weekday?: number;
  /** `monthly`: the day of the month, or the last one (1 unless `resetDay`). */
  readonly day?: number | "last";
}

/** What `resetDay`, `resetWeekday` and `resetTime` asked for, parsed. */
export interface CalendarOptions {
  /** `resetDay`: 1-28 or `"last"` (monthly cycles only). */
  day?: number | "last";
  /** `resetWeekday`: 0 = Sunday ... 6 = Saturday (weekly cycles only). */
  weekday?: number;
  /** `resetTime`: minutes after local midnight (calendar cycles only). */
  minutes?: number;
}

const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

class FixedCycle implements ResetCycle {
  constructor(readonly text: string, readonly ms: number) {}
  current(now: number, last: number): number {
    if (now < last) return last;
    return last + Math.floor((now - last) / this.ms) * this.ms;
  }
  next(last: number): number {
    return last + this.ms;
  }
}

/** Days in a month (1-12) of a year. */
function daysInMonth(year: number, month: number): number {
  // Day 0 of the next month is the last day of this one.
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

class CalendarCycle implements ResetCycle {
  readonly #clock: ZoneClock;
  readonly #timeMs: number;
  readonly at: CalendarAt;

  constructor(
    readonly text: "daily" | "weekly" | "monthly",
    zone: string,
    options: CalendarOptions,
  ) {
    this.#clock = new ZoneClock(zone);
    const minutes = options.minutes ?? 0;
    this.#timeMs = minutes * MINUTE;
    this.at = text === "weekly"
      ? { zone, minutes, weekday: options.weekday ?? 1 }
      : text === "monthly"
      ? { zone, minutes, day: options.day ?? 1 }
      : { zone, minutes };
  }

  /** The boundary of the month (1-12) of that year. */
  #monthly(year: number, month: number): number {
    const asked = this.at.day ?? 1;
    const day = asked === "last" ? daysInMonth(year, month) : asked;
    return this.#clock.instantOf(year, month, day, this.#timeMs);
  }

  /** The latest boundary at or before `t`. */
  #boundary(t: number): number {
    const w = this.#clock.read(t);
    if (this.text === "monthly") {
      const b = this.#monthly(w.year, w.month);
      if (b <= t) return b;
      return w.month === 1
        ? this.#monthly(w.year - 1, 12)
        : this.#monthly(w.year, w.month - 1);
    }
    // Days back to the boundary's day: today for daily, the last such
    // weekday for weekly. instantOf goes through Date.UTC, which carries a
    // day before the 1st into the previous month.
    const back = this.text === "weekly"
      ? (w.weekday - this.at.weekday! + 7) % 7
      : 0;
    const b = this.#clock.instantOf(
      w.year,
      w.month,
      w.day - back,
      this.#timeMs,
    );
    if (b <= t) return b;
    // Today's boundary is still to come (before resetTime): the one before.
    const period = this.text === "weekly" ? 7 : 1;
    return this.#clock.instantOf(
      w.year,
      w.month,
      w.day - back - period,
      this.#timeMs,
    );
  }

  current(now: number, _last: number): number {
    return this.#boundary(now);
  }

  next(last: number): number {
    // Days are 23-25 h long under daylight-saving time, months 28-31
    // days: these steps always land inside the following period, whose
    // boundary is the next one (a month's, on the 28th or the last day,
    // is at most 31 days after the one before).
    const step = this.text === "daily"
      ? DAY + HOUR
      : this.text === "weekly"
      ? 7 * DAY + HOUR
      : 32 * DAY;
    return this.#boundary(last + step);
  }
}

/**
 * Parses a `resetCycle` value, with the optional `timezone` of calendar
 * cycles and where their boundary falls (`resetDay`, `resetWeekday`,
 * `resetTime`, parsed by the functions below). Answers an error sentence
 * instead of throwing.
 */
export function parseResetCycle(
  text: string,
  timezone?: string,
  options: CalendarOptions = {},
): ResetCycle | string {
  const t = text.trim();
  if (t === "daily" || t === "weekly" || t === "monthly") {
    const zone = timezone ?? machineZone();
    const bad = checkZone(zone);
    if (bad) return bad;
    return new CalendarCycle(t, zone, options);
  }
  const ms = parseDuration(t);
  if (typeof ms === "string") {
    return `${ms}, or "daily", "weekly" (Mondays) or "monthly" (the 1st) at local midnight`;
  }
  if (ms <= 0) return `"${text}" must be more than 0, like "24h"`;
  return new FixedCycle(t, ms);
}

/**
 * Parses `resetDay`: a day of the month 1-28 (every month has it) or
 * `"last"`. Answers an error sentence when it is neither.
 */
export function parseResetDay(
  value: unknown,
): { day: number | "last" } | string {
  if (typeof value === "string" && value.trim().toLowerCase() === "last") {
    return { day: "last" };
  }
  const n = typeof value === "bigint" ? Number(value) : value;
  if (typeof n === "number" && Number.isInteger(n) && n >= 1 && n <= 28) {
    return { day: n };
  }
  if (typeof n === "number" && Number.isInteger(n) && n >= 29 && n <= 31) {
    return `resetDay = ${n} does not exist in every month: write a day from 1 to 28, or resetDay = "last" for the last day of each month`;
  }
  return `resetDay must be a day of the month from 1 to 28 (without quotes), or "last"; for example resetDay = 15`;
}

/**
 * Parses `resetWeekday`: `"sun"` ... `"sat"` or the whole name, in any case.
 * Answers 0 (Sunday) ... 6, or an error sentence.
 */
export function parseResetWeekday(value: unknown): number | string {
  if (typeof value === "string") {
    const i = weekdayIndex(value);
    if (i >= 0) return i;
  }
  return `resetWeekday must be a day of the week: "sun", "mon", "tue", "wed", "thu", "fri" or "sat"; for example resetWeekday = "sun"`;
}

/**
 * Parses `resetTime`: `"HH:MM"` on a 24-hour clock. Answers the minutes
 * after midnight, or an error sentence.
 */
export function parseResetTime(value: unknown): number | string {
  const m = typeof value === "string"
    ? /^\s*(\d{1,2}):(\d{2})\s*$/.exec(value)
    : null;
  if (m) {
    const h = Number(m[1]);
    const min = Number(m[2]);
    if (h <= 23 && min <= 59) return h * 60 + min;
  }
  return `resetTime must be a time of day "HH:MM" on a 24-hour clock, from "00:00" to "23:59"; for example resetTime = "06:00"`;
}

/** `06:00` for 360 minutes. */
export function formatResetTime(minutes: number): string {
  const h = Math.floor(minutes / 60);
  const m = minutes % 60;
  return `${String(h).padStart(2, "0")}:${String(m).padStart(2, "0")}`;
}
