/**
 * File paths of the configuration (POSIX, as node:path's `posix` writes
 * them): the files a config names are relative to its directory.
 *
 * These are here rather than taken from node:path because loading any
 * `node:` module at start makes the runtime set up its Node layer, about
 * 4 MiB resident that a gateway otherwise never needs.
 *
 * ```ts
 * import { inDir, join } from "./paths.ts";
 * join("/etc/pmproxy/", "./state.kv"); // "/etc/pmproxy/state.kv"
 * inDir("/etc/pmproxy", "/var/log/pmproxy.log"); // "/var/log/pmproxy.log"
 * ```
 *
 * @module
 */

/** True when `path` starts at the root. */
export function isAbsolute(path: string): boolean {
  return path.startsWith("/");
}

/**
 * `path` without `.` segments, `..` folded into what it leaves, and single
 * slashes; a trailing slash is kept. The empty path is `.`.
 */
export function normalize(path: string): string {
  if (path === "") return ".";
  const absolute = isAbsolute(path);
  const out: string[] = [];
  for (const segment of path.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") {
      if (out.length > 0 && out[out.length - 1] !== "..") out.pop();
      else if (!absolute) out.push("..");
      continue;
    }
    out.push(segment);
  }
  let joined = out.join("/");
  if (joined === "") return absolute ? "/" : path.endsWith("/") ? "./" : ".";
  if (path.endsWith("/")) joined += "/";
  return absolute ? `/${joined}` : joined;
}

/** The parts joined with slashes and normalized; `.` when all are empty. */
export function join(...parts: string[]): string {
  const joined = parts.filter((p) => p !== "").join("/");
  return joined === "" ? "." : normalize(joined);
}

/** `path` as it stands, when absolute; else `path` in `dir`. */
export function inDir(dir: string, path: string): string {
  return isAbsolute(path) ? path : join(dir, path);
}

/**
 * The directory `path` is in: everything before its last segment's slash
 * (`.` for a bare name, `/` for the root; `//` is kept, as POSIX allows).
 */
export function dirname(path: string): string {
  if (path === "") return ".";
  const rooted = path.startsWith("/");
  // The slash before the last segment: the first one met, from the end,
  // once a char that is not a slash has been.
  let end = -1;
  let inSegment = false;
  for (let i = path.length - 1; i >= 1; i--) {
    if (path[i] !== "/") inSegment = true;
    else if (inSegment) {
      end = i;
      break;
    }
  }
  if (end < 0) return rooted ? "/" : ".";
  if (rooted && end === 1) return "//";
  return path.slice(0, end);
}

/** The last segment of `path` (trailing slashes left out). */
export function basename(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  return trimmed.slice(trimmed.lastIndexOf("/") + 1);
}
