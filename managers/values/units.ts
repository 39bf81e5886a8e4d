/**
 * Go-style durations (`"1h30m"`, `"500ms"`) and base-1024 sizes (`"1 GB"`,
 * `"512 KiB"`, up to petabytes: `"5 TB"`, `"1.5 PiB"`), as the original's
 * configuration writes them.
 *
 * @module
 */

const DURATION_UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/**
 * Parses a Go-style duration into milliseconds. Returns an error sentence
 * (a string) instead of throwing, so the caller can add where it stood.
 *
 * ```ts
 * parseDuration("1h30m"); // 5400000
 * ```
 */
export function parseDuration(text: string): number | string {
  const src = text.trim();
  if (src === "0") return 0;
  const part = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)/y;
  let total = 0;
  let at = 0;
  while (at < src.length) {
    part.lastIndex = at;
    const m = part.exec(src);
    if (!m) {
      return `"${text}" is not a duration: write it like "30s", "5m", "24h" or "1h30m"`;
    }
    total += Number(m[1]) * DURATION_UNITS[m[2]];
    at = part.lastIndex;
  }
  if (src.length === 0) {
    return `an empty string is not a duration: write it like "30s" or "24h"`;
  }
  return total;
}

/** Formats milliseconds the way Go prints durations (`1h30m0s`, `500ms`). */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  if (ms < 1000) return `${ms}ms`;
  let rest = Math.round(ms / 1000);
  const h = Math.floor(rest / 3600);
  rest -= h * 3600;
  const m = Math.floor(rest / 60);
  const s = rest - m * 60;
  return (h ? `${h}h` : "") + (h || m ? `${m}m` : "") + `${s}s`;
}

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1024 ** 4,
  tib: 1024 ** 4,
  p: 1024 ** 5,
  pb: 1024 ** 5,
  pib: 1024 ** 5,
};

/**
 * Parses a size such as `"1 GB"`, `"1.5GiB"`, `"512 KB"`, `"5 TB"`,
 * `"1.5 PB"` or a plain number of bytes into bytes, base 1024 (`KB` and
 * `KiB` are the same). Returns an error sentence instead of throwing.
 * Sizes are JavaScript numbers: whole bytes are exact below 2^53 (8 PiB),
 * and a larger size is refused.
 */
export function parseSize(text: string | number): number | string {
  if (typeof text === "number") {
    return Number.isFinite(text) && text >= 0
      ? Math.floor(text)
      : `${text} is not a size in bytes`;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? SIZE_UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    return `"${text}" is not a size: write it like "1 GB", "512 MB", "1.5 GB", "5 TB" or "1 PB" (base 1024)`;
  }
  const bytes = Math.floor(Number(m[1]) * unit);
  if (bytes > Number.MAX_SAFE_INTEGER) {
    return `"${text}" is too large: pmproxy counts bytes exactly up to just under 8 PB (2^53 bytes)`;
  }
  return bytes;
}

const SIZE_NAMES = ["B", "KB", "MB", "GB", "TB", "PB"];

/**
 * Prints a size as the original's README does: `0 B`, `1 GB`, `1.5 GB`,
 * `1023 B`, `6 TB`, `1.5 PB` (base 1024, at most one decimal, no trailing
 * `.0`; from 1024 PB on, in PB).
 */
export function formatSize(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < SIZE_NAMES.length - 1) {
    value /= 1024;
    unit++;
  }
  let rounded = Math.round(value * 10) / 10;
  // 1023.96 KB rounds to 1024: that is 1 MB.
  if (rounded >= 1024 && unit < SIZE_NAMES.length - 1) {
    rounded = 1;
    unit++;
  }
  return `${rounded} ${SIZE_NAMES[unit]}`;
}
