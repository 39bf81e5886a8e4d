/**
 * When download consumption returns to zero: every fixed duration aligned
 * to the last reset (`"24h"`), or at local midnight of each day, week
 * (Monday) or month (the 1st) in a time zone (`"daily"`, `"weekly"`,
 * `"monthly"`). Private to this folder.
 *
 * @module
 */
import { parseDuration } from "../values/units.ts";
import { checkZone, machineZone, ZoneClock } from "../values/zone.ts";

/** A reset cycle. */
export interface ResetCycle {
  /** As configured (`"24h"`, `"daily"`). */
  readonly text: string;
  /**
   * The reset instant at or before `now` that the cycle reaches from
   * `last` (a previous reset instant): for a duration, `last` plus whole
   * cycles; for a calendar cycle, the latest local boundary.
   */
  current(now: number, last: number): number;
  /** The reset after `last`. */
  next(last: number): number;
}

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

class CalendarCycle implements ResetCycle {
  readonly #clock: ZoneClock;
  constructor(
    readonly text: "daily" | "weekly" | "monthly",
    readonly zone: string,
  ) {
    this.#clock = new ZoneClock(zone);
  }
  /** The latest boundary at or before `t`. */
  #boundary(t: number): number {
    const w = this.#clock.read(t);
    if (this.text === "monthly") {
      return this.#clock.instantOf(w.year, w.month, 1, 0);
    }
    const back = this.text === "weekly" ? (w.weekday + 6) % 7 : 0;
    // instantOf goes through Date.UTC, which carries a day before the 1st
    // into the previous month.
    return this.#clock.instantOf(w.year, w.month, w.day - back, 0);
  }
  current(now: number, _last: number): number {
    return this.#boundary(now);
  }
  next(last: number): number {
    // Days are 23–25 h long under daylight-saving time, months 28–31
    // days: these steps always land inside the following period.
    const step = this.text === "daily"
      ? DAY + HOUR
      : this.text === "weekly"
      ? 7 * DAY + HOUR
      : 32 * DAY;
    return this.#boundary(last + step);
  }
}

/**
 * Parses a `resetCycle` value (and the optional `timezone` of calendar
 * cycles). Answers an error sentence instead of throwing.
 */
export function parseResetCycle(
  text: string,
  timezone?: string,
): ResetCycle | string {
  const t = text.trim();
  if (t === "daily" || t === "weekly" || t === "monthly") {
    const zone = timezone ?? machineZone();
    const bad = checkZone(zone);
    if (bad) return bad;
    return new CalendarCycle(t, zone);
  }
  const ms = parseDuration(t);
  if (typeof ms === "string") {
    return `${ms}, or "daily", "weekly" (Mondays) or "monthly" (the 1st) at local midnight`;
  }
  if (ms <= 0) return `"${text}" must be more than 0, like "24h"`;
  return new FixedCycle(t, ms);
}
