/**
 * Wall-clock time in a named time zone (IANA, such as `America/Havana`)
 * through `Intl.DateTimeFormat`, for `timeSpan` (matchers/) and the
 * calendar reset cycles of `dwnConsR` (quotas/).
 *
 * UTC, the zone of most servers, is read from `Date`'s UTC fields instead:
 * the first use of `Intl` with a time zone loads the runtime's ICU data,
 * about 7 MiB resident, which a gateway in UTC never needs. For the same
 * reason {@link machineZone} tells UTC from `TZ` and `/etc/localtime`
 * before it asks `Intl`.
 *
 * @module
 */

/** The days of the week, Sunday first (as `Date.getUTCDay`), in three letters. */
export const WEEKDAYS = [
  "sun",
  "mon",
  "tue",
  "wed",
  "thu",
  "fri",
  "sat",
] as const;

const WEEKDAYS_WHOLE = [
  "sunday",
  "monday",
  "tuesday",
  "wednesday",
  "thursday",
  "friday",
  "saturday",
];

/**
 * 0 (Sunday) ... 6 for a day's name, three letters or whole, in any case
 * and with spaces around; -1 when it is not one.
 */
export function weekdayIndex(text: string): number {
  const t = text.trim().toLowerCase();
  const short = (WEEKDAYS as readonly string[]).indexOf(t);
  return short >= 0 ? short : WEEKDAYS_WHOLE.indexOf(t);
}

/**
 * The names of UTC (any case), whose clock needs no time-zone data. Every
 * one of them is an IANA name or link for a zone of offset 0 always.
 */
const UTC_NAMES = new Set([
  "utc",
  "etc/utc",
  "uct",
  "etc/uct",
  "universal",
  "etc/universal",
  "zulu",
  "etc/zulu",
  "gmt",
  "etc/gmt",
  "gmt0",
  "etc/gmt0",
  "gmt+0",
  "etc/gmt+0",
  "gmt-0",
  "etc/gmt-0",
  "greenwich",
  "etc/greenwich",
]);

/** True when `zone` names UTC (or a zone that is UTC at every instant). */
export function isUtcZone(zone: string): boolean {
  return UTC_NAMES.has(zone.toLowerCase());
}

/**
 * `UTC` when this machine is set to UTC the way Debian, Ubuntu and
 * containers set it (`TZ` unset or empty, and `/etc/localtime` a link to
 * `.../zoneinfo/Etc/UTC` or `.../zoneinfo/UTC`; or `TZ` saying `UTC` or
 * `Etc/UTC`); undefined when that cannot be told without `Intl`.
 */
export function machineUtc(
  tz: string | undefined = Deno.env.get("TZ"),
  localtime: () => string = () => Deno.readLinkSync("/etc/localtime"),
): "UTC" | undefined {
  if (tz !== undefined && tz !== "") {
    return /^:?(Etc\/)?UTC$/.test(tz) ? "UTC" : undefined;
  }
  try {
    return /\/zoneinfo\/(Etc\/)?UTC$/.test(localtime()) ? "UTC" : undefined;
  } catch {
    // Not a link (a copied file), absent, or not readable: Intl tells.
    return undefined;
  }
}

/** The time zone of this machine (`UTC` when it has none). */
export function machineZone(): string {
  return machineUtc() ??
    Intl.DateTimeFormat().resolvedOptions().timeZone ?? "UTC";
}

/**
 * Answers an error sentence when the zone is not known to this runtime,
 * undefined when it is.
 */
export function checkZone(zone: string): string | undefined {
  if (isUtcZone(zone)) return undefined;
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: zone });
    return undefined;
  } catch {
    return `"${zone}" is not a time zone known here: write an IANA name such as "America/Havana", "Europe/Madrid" or "UTC"`;
  }
}

const DAY_MS = 86_400_000;

/**
 * A function writing instants as ISO 8601 local times of `zone` with its
 * offset ({@link ZoneClock.isoLocal}), for reports in a gateway's zone.
 */
export function zoneFormatter(zone: string): (time: number) => string {
  const clock = new ZoneClock(zone);
  return (time) => clock.isoLocal(time);
}

/** Wall-clock fields of an instant in one zone. */
export interface WallClock {
  year: number;
  /** 1-12. */
  month: number;
  day: number;
  /** 0 = Sunday ... 6 = Saturday. */
  weekday: number;
  hour: number;
  minute: number;
  second: number;
}

/** Reads instants as wall-clock time in one zone. Create once, reuse. */
export class ZoneClock {
  /** Undefined for UTC, which `Date`'s UTC fields read. */
  readonly #format: Intl.DateTimeFormat | undefined;

  constructor(readonly zone: string) {
    if (isUtcZone(zone)) return;
    this.#format = new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      weekday: "short",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
      hourCycle: "h23",
    });
  }

  /** The wall-clock fields of `time` in this zone. */
  read(time: Date | number): WallClock {
    if (this.#format === undefined) return utcWallClock(time);
    const out: WallClock = {
      year: 0,
      month: 0,
      day: 0,
      weekday: 0,
      hour: 0,
      minute: 0,
      second: 0,
    };
    for (const part of this.#format.formatToParts(time)) {
      switch (part.type) {
        case "weekday":
          out.weekday = Math.max(0, weekdayIndex(part.value));
          break;
        case "year":
          out.year = Number(part.value);
          break;
        case "month":
          out.month = Number(part.value);
          break;
        case "day":
          out.day = Number(part.value);
          break;
        case "hour":
          out.hour = Number(part.value) % 24;
          break;
        case "minute":
          out.minute = Number(part.value);
          break;
        case "second":
          out.second = Number(part.value);
          break;
      }
    }
    return out;
  }

  /**
   * The instant (ms since the epoch) at which this zone's clocks show the
   * given wall-clock time (month 1-12; a day outside the month carries into
   * the next or previous one). When the clocks show it twice (they were
   * set back) it answers the first; in a gap (they jumped forward over it)
   * it answers the instant after the jump that is as far from the jump's
   * start as the time asked (02:30 in a jump from 02:00 to 03:00 is 03:30,
   * 00:00 in a jump from 00:00 to 01:00 is 01:00): never a time of the day
   * before.
   */
  instantOf(
    year: number,
    month: number,
    day: number,
    ms: number,
  ): number {
    const wall = Date.UTC(year, month - 1, day) + ms;
    // The answer is the wall-clock time minus the offset in force at the
    // answer: the offset a day before or the one a day after (zones change
    // their offset at most once in two days). Either, or both when the
    // clocks show that time twice, or none in a gap.
    const before = wall - this.#offsetAt(wall - DAY_MS);
    const after = wall - this.#offsetAt(wall + DAY_MS);
    const beforeHolds = this.#offsetAt(before) === wall - before;
    const afterHolds = this.#offsetAt(after) === wall - after;
    if (beforeHolds && afterHolds) return Math.min(before, after);
    if (beforeHolds) return before;
    if (afterHolds) return after;
    // A gap: with the offset before the jump, the time lands after it.
    return Math.max(before, after);
  }

  /**
   * `time` as an ISO 8601 local time with this zone's offset, to the
   * second: `2026-05-04T00:00:00-04:00` (`Z` where the offset is 0).
   */
  isoLocal(time: Date | number): string {
    const t = typeof time === "number" ? time : time.getTime();
    const w = this.read(t);
    const two = (n: number) => String(n).padStart(2, "0");
    const offset = Math.round(this.#offsetAt(t) / 60_000);
    const zone = offset === 0
      ? "Z"
      : `${offset < 0 ? "-" : "+"}${two(Math.floor(Math.abs(offset) / 60))}:${
        two(Math.abs(offset) % 60)
      }`;
    return `${String(w.year).padStart(4, "0")}-${two(w.month)}-${two(w.day)}T${
      two(w.hour)
    }:${two(w.minute)}:${two(w.second)}${zone}`;
  }

  /** This zone's offset from UTC (ms) at an instant. */
  #offsetAt(instant: number): number {
    const w = this.read(instant);
    const asUtc = Date.UTC(
      w.year,
      w.month - 1,
      w.day,
      w.hour,
      w.minute,
      w.second,
    );
    const whole = instant - (((instant % 1000) + 1000) % 1000);
    return asUtc - whole;
  }
}

/** The wall-clock fields of `time` in UTC. */
function utcWallClock(time: Date | number): WallClock {
  const d = typeof time === "number" ? new Date(time) : time;
  return {
    year: d.getUTCFullYear(),
    month: d.getUTCMonth() + 1,
    day: d.getUTCDate(),
    weekday: d.getUTCDay(),
    hour: d.getUTCHours(),
    minute: d.getUTCMinutes(),
    second: d.getUTCSeconds(),
  };
}
