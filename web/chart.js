// @ts-self-types="./chart.d.ts"
// pmproxy's usage charts: bar charts drawn as SVG markup, and the table
// that is their text alternative. Plain JavaScript without a build step,
// used by both sides: the API renders them into the pages it serves
// without JavaScript (api/_pages.ts imports this module), and app.js
// imports it in the browser (GET /chart.js). No text of its own: every
// word comes from the caller, in the page's language.
//
// The SVG is sized in percent horizontally, so it fills its box at any
// width (390 px phones too) with text at the page's font size, and is
// coloured by the stylesheet (classes chart, bar, grid, axis, label), so
// it follows the light and dark colour schemes.

/** Units of formatBytes, base 1024 as the gateway writes sizes. */
const SIZE_NAMES = ["B", "KB", "MB", "GB", "TB", "PB"];

/**
 * A size as the gateway writes it (managers/values/units.ts formatSize):
 * `0 B`, `512 KB`, `1.5 GB`.
 * @param {number} bytes
 * @returns {string}
 */
export function formatBytes(bytes) {
  let value = Math.max(0, Number(bytes) || 0);
  let unit = 0;
  while (value >= 1024 && unit < SIZE_NAMES.length - 1) {
    value /= 1024;
    unit++;
  }
  let rounded = Math.round(value * 10) / 10;
  if (rounded >= 1024 && unit < SIZE_NAMES.length - 1) {
    rounded = 1;
    unit++;
  }
  return `${rounded} ${SIZE_NAMES[unit]}`;
}

/**
 * An ISO 8601 time with its offset (`2026-05-04T00:00:00-04:00`, the
 * gateway's `nextReset`) as people read it in `lang`, on the gateway's
 * clock whatever the reader's zone: `Monday, 4 May 2026, 00:00
 * (UTC−04:00)`. The text itself when it is not such a time.
 * @param {string} iso
 * @param {string} lang
 * @returns {string}
 */
export function wallTime(iso, lang) {
  const m =
    /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d)(?::\d\d(?:\.\d+)?)?(Z|[+-]\d\d:\d\d)$/
      .exec(String(iso));
  if (!m) return String(iso);
  const [, y, mo, d, h, mi, offset] = m;
  const wall = Date.UTC(
    Number(y),
    Number(mo) - 1,
    Number(d),
    Number(h),
    Number(mi),
  );
  const text = new Intl.DateTimeFormat(lang, {
    timeZone: "UTC",
    dateStyle: "full",
    timeStyle: "short",
    hourCycle: "h23",
  }).format(wall);
  const utc = offset === "Z" ? "UTC" : `UTC${offset.replace("-", "\u2212")}`;
  return `${text} (${utc})`;
}

/** Text safe inside SVG and HTML text and quoted attributes. */
function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * How the periods of a report are named in a language and a time zone:
 * `short` under a bar (`14`, `3`, `Mar`), `long` in tables and tips
 * (`Mon 14:00`, `Mon 3 Mar`, `March 2026`).
 * @param {string} lang
 * @param {string} zone an IANA time zone (the gateway's)
 * @param {"hour" | "day" | "month"} by
 */
export function periodNames(lang, zone, by) {
  const make = (options) => {
    try {
      return new Intl.DateTimeFormat(lang, { timeZone: zone, ...options });
    } catch {
      // A zone this browser does not know: its own zone is still a name.
      return new Intl.DateTimeFormat(lang, options);
    }
  };
  const shortFormat = by === "hour"
    ? make({ hour: "2-digit", hourCycle: "h23" })
    : by === "day"
    ? make({ day: "numeric" })
    : make({ month: "short" });
  const longFormat = by === "hour"
    ? make({
      weekday: "short",
      hour: "2-digit",
      minute: "2-digit",
      hourCycle: "h23",
    })
    : by === "day"
    ? make({ weekday: "short", day: "numeric", month: "short" })
    : make({ month: "long", year: "numeric" });
  return {
    short: (t) => shortFormat.format(t),
    long: (t) => longFormat.format(t),
  };
}

/**
 * The bars of a usage report (api: `usage`): one per period, every
 * user's bytes of that period summed, empty periods included.
 * @param {{ periods: number[], entries: { start: number, bytes: number }[] }} report
 * @param {{ short(t: number): string, long(t: number): string }} names
 */
export function usageBars(report, names) {
  const sums = new Map();
  for (const e of report.entries) {
    sums.set(e.start, (sums.get(e.start) ?? 0) + e.bytes);
  }
  return report.periods.map((start) => {
    const value = sums.get(start) ?? 0;
    return {
      start,
      value,
      label: names.short(start),
      name: names.long(start),
      text: formatBytes(value),
    };
  });
}

/**
 * The total and the fullest bar, for the sentence under a chart.
 * @param {{ value: number, name: string, text: string }[]} bars
 */
export function barsSummary(bars) {
  let total = 0;
  let peak = null;
  for (const bar of bars) {
    total += bar.value;
    if (bar.value > 0 && (peak === null || bar.value > peak.value)) peak = bar;
  }
  return { total, totalText: formatBytes(total), peak };
}

/** A round number at or above `max` for the top of the scale. */
function scaleTop(max) {
  if (max <= 0) return 1;
  const unit = 1024 ** Math.floor(Math.log(max) / Math.log(1024));
  const inUnit = max / unit;
  const steps = [1, 2, 2.5, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 1024];
  const top = steps.find((s) => s >= inUnit) ?? 1024;
  return top * unit;
}

const HEIGHT = 150;
const TOP = 18;
const BOTTOM = 22;

/**
 * A bar chart as SVG markup.
 * @param {{ start: number, value: number, label: string, name: string, text: string }[]} bars
 * @param {{ id: string, title: string, summary: string, labelEvery?: number, current?: number }} options
 *   `current`: the start of the bar to mark as now.
 * @returns {string}
 */
export function barChart(bars, options) {
  const id = escape(options.id);
  const n = Math.max(1, bars.length);
  const top = scaleTop(Math.max(0, ...bars.map((b) => b.value)));
  const plot = HEIGHT - TOP - BOTTOM;
  const every = Math.max(1, options.labelEvery ?? Math.ceil(n / 8));
  const slot = 100 / n;
  const gap = Math.min(slot * 0.2, 0.6);
  const parts = [
    `<svg class="chart" id="${id}" width="100%" height="${HEIGHT}" role="img" aria-labelledby="${id}-title ${id}-desc" focusable="false">`,
    `<title id="${id}-title">${escape(options.title)}</title>`,
    `<desc id="${id}-desc">${escape(options.summary)}</desc>`,
    `<line class="grid" x1="0" x2="100%" y1="${TOP}" y2="${TOP}"></line>`,
    `<line class="grid" x1="0" x2="100%" y1="${TOP + plot / 2}" y2="${
      TOP + plot / 2
    }"></line>`,
  ];
  // The top of the scale, once there is something to measure.
  if (bars.some((b) => b.value > 0)) {
    parts.push(
      `<text class="label scale" x="0" y="${TOP - 5}">${
        escape(formatBytes(top))
      }</text>`,
    );
  }
  bars.forEach((bar, i) => {
    const h = bar.value > 0 ? Math.max(1, (bar.value / top) * plot) : 0;
    const x = (i * slot + gap / 2).toFixed(3);
    const w = Math.max(0.1, slot - gap).toFixed(3);
    const now = bar.start === options.current ? " now" : "";
    parts.push(
      `<rect class="bar${now}" x="${x}%" width="${w}%" y="${
        (TOP + plot - h).toFixed(1)
      }" height="${h.toFixed(1)}"><title>${escape(bar.name)}: ${
        escape(bar.text)
      }</title></rect>`,
    );
    if (i % every === 0) {
      const minor = i % (2 * every) === 0 ? "" : " minor";
      parts.push(
        `<text class="label${minor}" x="${
          (i * slot + slot / 2).toFixed(3)
        }%" y="${HEIGHT - 6}" text-anchor="middle">${escape(bar.label)}</text>`,
      );
    }
  });
  parts.push(
    `<line class="axis" x1="0" x2="100%" y1="${TOP + plot}" y2="${
      TOP + plot
    }"></line>`,
    "</svg>",
  );
  return parts.join("");
}

/**
 * The chart's text alternative: a table of the periods that have bytes.
 * @param {{ value: number, name: string, text: string }[]} bars
 * @param {{ caption: string, period: string, bytes: string, empty: string }} texts
 * @returns {string}
 */
export function barTable(bars, texts) {
  const rows = bars.filter((b) => b.value > 0).map((b) =>
    `<tr><td>${escape(b.name)}</td><td class="num">${escape(b.text)}</td></tr>`
  );
  if (rows.length === 0) {
    rows.push(`<tr><td colspan="2">${escape(texts.empty)}</td></tr>`);
  }
  return `<table class="chart-table"><caption>${
    escape(texts.caption)
  }</caption><thead><tr><th scope="col">${
    escape(texts.period)
  }</th><th scope="col" class="num">${
    escape(texts.bytes)
  }</th></tr></thead><tbody>${rows.join("")}</tbody></table>`;
}
