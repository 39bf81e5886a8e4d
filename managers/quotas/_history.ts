/**
 * The usage history's calendar: which hour and day a write of consumption
 * deltas goes to, how long each is kept, the periods of a report, and the
 * roll-up of days into months. Hours, days and months are those of the
 * quota manager's time zone (its `timezone`, else this machine's), so a
 * day is a local day and a report of "today" starts at local midnight.
 * Private to this folder.
 *
 * Bytes are attributed to the hour they were written to the store in:
 * with the consumption flush (every `persistInterval`) and the near-quota
 * sync, never per request, so a byte shows at most one persist interval
 * late, in the hour of that flush.
 *
 * @module
 */
import { ZoneClock } from "../values/zone.ts";
import type {
  HistoryRetention,
  UsageBuckets,
  UsageEntry,
  UsageGrain,
} from "../state/store.ts";
import type { UsageBy } from "../types.ts";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** The most periods a report lists (a year and a half of hours). */
export const MAX_PERIODS = 24 * 550;

/** Local hours, days and months of one time zone. */
export class UsageCalendar {
  readonly #clock: ZoneClock;

  constructor(readonly zone: string) {
    this.#clock = new ZoneClock(zone);
  }

  /** The start of the local hour of `t` (zones with :30 offsets too). */
  hourStart(t: number): number {
    const w = this.#clock.read(t);
    const ms = ((t % 1000) + 1000) % 1000;
    return t - ((w.minute * 60 + w.second) * 1000 + ms);
  }

  /** Local midnight of the day of `t`. */
  dayStart(t: number): number {
    const w = this.#clock.read(t);
    return this.#clock.instantOf(w.year, w.month, w.day, 0);
  }

  /** Local midnight of the 1st of the month of `t`. */
  monthStart(t: number): number {
    const w = this.#clock.read(t);
    return this.#clock.instantOf(w.year, w.month, 1, 0);
  }

  /** The start of the period of `by` that holds `t`. */
  periodStart(by: UsageBy, t: number): number {
    return by === "hour"
      ? this.hourStart(t)
      : by === "day"
      ? this.dayStart(t)
      : this.monthStart(t);
  }

  /** The start of the period after the one starting at `start`. */
  nextPeriod(by: UsageBy, start: number): number {
    if (by === "hour") return start + HOUR;
    // Local days are 23 to 25 hours long, months 28 to 31 days: a step
    // that always lands inside the next one, then its start.
    if (by === "day") return this.dayStart(start + DAY + 2 * HOUR);
    return this.monthStart(start + 32 * DAY);
  }

  /** Where a write at `now` goes, with the retention of each grain. */
  bucketsAt(now: number, keep: HistoryRetention): UsageBuckets {
    return {
      hour: this.hourStart(now),
      day: this.dayStart(now),
      keepHourMs: keep.hours * HOUR,
      keepDayMs: keep.days * DAY,
    };
  }

  /**
   * The earliest bucket start of `grain` still kept at `now`: a bucket is
   * kept while less than its retention has passed since it began (the
   * current hour and the 47 before it, for 48 hours).
   */
  oldestKept(grain: UsageGrain, now: number, keep: HistoryRetention): number {
    const ms = grain === "hour" ? keep.hours * HOUR : keep.days * DAY;
    return now - ms + 1;
  }

  /** The start of every period of `by` that begins in `[from, to)`. */
  periods(by: UsageBy, from: number, to: number): number[] {
    const out: number[] = [];
    let start = this.periodStart(by, from);
    if (start < from) start = this.nextPeriod(by, start);
    while (start < to && out.length < MAX_PERIODS) {
      out.push(start);
      start = this.nextPeriod(by, start);
    }
    return out;
  }

  /** Day buckets summed into the local months they fall in, per user. */
  rollUpMonths(days: readonly UsageEntry[]): UsageEntry[] {
    const sums = new Map<string, UsageEntry>();
    for (const e of days) {
      const start = this.monthStart(e.start);
      const key = `${start}\u0000${e.user}`;
      const sum = sums.get(key);
      if (sum) sum.bytes += e.bytes;
      else sums.set(key, { start, user: e.user, bytes: e.bytes });
    }
    return [...sums.values()];
  }

  /**
   * A time as people write it: `2026-05-01` (midnight) or
   * `2026-05-01T10:00[:00]` (wall-clock) in this zone, or an ISO time with
   * `Z` or an offset. Undefined when it is none of these.
   */
  parseTime(text: string): number | undefined {
    const local =
      /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?)?$/
        .exec(text.trim());
    if (local) {
      const [, y, mo, d, h, mi, sec] = local.map(Number);
      if (mo < 1 || mo > 12 || d < 1 || d > 31) return undefined;
      const ms = ((h || 0) * 3600 + (mi || 0) * 60 + (sec || 0)) * 1000;
      return this.#clock.instantOf(y, mo, d, ms);
    }
    if (!/\d{4}-\d{2}-\d{2}T.*(Z|[+-]\d{2}:?\d{2})$/i.test(text.trim())) {
      return undefined;
    }
    const t = Date.parse(text);
    return Number.isNaN(t) ? undefined : t;
  }

  /** `t` as an ISO 8601 local time with this zone's offset. */
  isoLocal(t: number): string {
    return this.#clock.isoLocal(t);
  }
}
