/**
 * The types of `chart.js`, the usage charts the API renders into its
 * pages and app.js draws in the browser.
 *
 * @module
 */

/** How the periods of a report are named. */
export interface PeriodNames {
  /** Under a bar: `14`, `3`, `Mar`. */
  short(t: number): string;
  /** In tables and tips: `Mon 14:00`, `Mon 3 Mar`, `March 2026`. */
  long(t: number): string;
}

/** One bar: a period and its bytes. */
export interface Bar {
  start: number;
  value: number;
  label: string;
  name: string;
  text: string;
}

/**
 * An ISO 8601 time with its offset as people read it in `lang`, on the
 * gateway's clock: `Monday, 4 May 2026, 00:00 (UTC−04:00)`.
 */
export function wallTime(iso: string, lang: string): string;

/** A size as the gateway writes it: `0 B`, `512 KB`, `1.5 GB`. */
export function formatBytes(bytes: number): string;

/** The names of the periods of `by` in a language and a time zone. */
export function periodNames(
  lang: string,
  zone: string,
  by: "hour" | "day" | "month",
): PeriodNames;

/** One bar per period of the report, every user's bytes summed. */
export function usageBars(
  report: {
    periods: number[];
    entries: { start: number; bytes: number }[];
  },
  names: PeriodNames,
): Bar[];

/** The total and the fullest bar (null when every bar is empty). */
export function barsSummary(
  bars: Bar[],
): { total: number; totalText: string; peak: Bar | null };

/** A bar chart as SVG markup, labelled by `title` and `summary`. */
export function barChart(
  bars: Bar[],
  options: {
    id: string;
    title: string;
    summary: string;
    labelEvery?: number;
    current?: number;
  },
): string;

/** The chart's text alternative: a table of the periods with bytes. */
export function barTable(
  bars: Bar[],
  texts: { caption: string; period: string; bytes: string; empty: string },
): string;
