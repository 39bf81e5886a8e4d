/**
 * A usage report as people read it: a CSV file (the API's `usage` with
 * `format: "csv"`, the admin page's download, `pmproxy usage --csv`) and
 * the lines `pmproxy usage` prints. Times are written in the quota
 * manager's zone, whatever the zone of the machine that prints them.
 * Private to `api/`.
 *
 * @module
 */
import {
  formatSize,
  type UsageReport,
  zoneFormatter,
} from "../managers/mod.ts";

/**
 * A CSV field (RFC 4180): quoted when it holds a comma, a quote or a line
 * break. A user name a spreadsheet would take for a formula (`=`, `+`,
 * `-`, `@` first) gets a leading `'`, so opening the file runs nothing.
 */
function csvField(text: string): string {
  const safe = /^[=+\-@\t\r]/.test(text) ? `'${text}` : text;
  return /[",\r\n]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}

/**
 * The report as CSV: a header, then one line per period and user with
 * bytes: `start,user,bytes`, `start` being the period's start as an ISO
 * 8601 time in the report's zone (`2026-05-01T00:00:00-04:00`).
 */
export function usageCsv(report: UsageReport): string {
  const local = zoneFormatter(report.zone);
  const lines = ["start,user,bytes"];
  for (const e of report.entries) {
    lines.push(`${local(e.start)},${csvField(e.user)},${e.bytes}`);
  }
  return lines.join("\r\n") + "\r\n";
}

/** A period's start as the report's grain shows it: `2026-05-01 14:00`. */
function periodLabel(iso: string, by: UsageReport["by"]): string {
  if (by === "month") return iso.slice(0, 7);
  if (by === "day") return iso.slice(0, 10);
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)}`;
}

/**
 * The lines `pmproxy usage` prints: a heading, one line per period (and
 * user, for several) that has bytes, and the total.
 */
export function usageLines(report: UsageReport, who: string): string[] {
  const local = zoneFormatter(report.zone);
  const several = new Set(report.entries.map((e) => e.user)).size > 1 ||
    who === "";
  const out = [
    `Usage of ${
      who || "every user"
    } under ${report.manager} by ${report.by} (${report.zone})`,
  ];
  if (report.entries.length === 0) {
    out.push("No usage in this period.");
    return out;
  }
  const width = Math.max(...report.entries.map((e) => e.user.length));
  let total = 0;
  for (const e of report.entries) {
    total += e.bytes;
    const when = periodLabel(local(e.start), report.by);
    const user = several ? `  ${e.user.padEnd(width)}` : "";
    out.push(`${when}${user}  ${formatSize(e.bytes)}`);
  }
  out.push(`Total: ${formatSize(total)}`);
  return out;
}
