/**
 * What this pmproxy is: its version and the commit it was built from, for
 * `pmproxy --version` and the `pmproxy_build_info` metric.
 *
 * A bundle or an executable made by `deno task bundle` / `deno task
 * compile` carries its commit (`scripts/build_stamp.ts` writes it into
 * `_build_stamp.ts` while they run). Run from the source, the commit is
 * asked of git (`git rev-parse`), or is "source" when git cannot tell.
 *
 * ```ts
 * import { buildInfo, versionLine } from "./build_info.ts";
 * buildInfo(); // { version: "0.1.0", commit: "a11ea95c1d2e", fromSource: true }
 * versionLine(); // "pmproxy 0.1.0 (commit a11ea95c1d2e, from source)"
 * ```
 *
 * @module
 */
import { BUILD_COMMIT } from "./_build_stamp.ts";

/** pmproxy's version. */
export const VERSION = "0.1.0";

/** The version and the commit. */
export interface BuildInfo {
  version: string;
  /** The commit's short hash (`-dirty` when built from changed files), or "source". */
  commit: string;
  /** True when run from the source rather than from a build. */
  fromSource: boolean;
}

let known: BuildInfo | undefined;

/** This program's build information (git is asked once, from the source). */
export function buildInfo(): BuildInfo {
  known ??= BUILD_COMMIT !== undefined
    ? { version: VERSION, commit: BUILD_COMMIT, fromSource: false }
    : { version: VERSION, commit: gitCommit() ?? "source", fromSource: true };
  return known;
}

/** The line `pmproxy --version` prints. */
export function versionLine(info: BuildInfo = buildInfo()): string {
  if (!info.fromSource) {
    return `pmproxy ${info.version} (commit ${info.commit})`;
  }
  if (info.commit === "source") return `pmproxy ${info.version} (from source)`;
  return `pmproxy ${info.version} (commit ${info.commit}, from source)`;
}

/** The commit of the checkout this file is in, or undefined. */
function gitCommit(): string | undefined {
  if (!import.meta.url.startsWith("file:")) return undefined;
  try {
    const out = new Deno.Command("git", {
      args: [
        "-C",
        decodeURIComponent(new URL(".", import.meta.url).pathname),
        "rev-parse",
        "--short=12",
        "HEAD",
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    const commit = new TextDecoder().decode(out.stdout).trim();
    return out.success && /^[0-9a-f]{7,40}$/.test(commit) ? commit : undefined;
  } catch {
    // No git here, or no permission to run it.
    return undefined;
  }
}
