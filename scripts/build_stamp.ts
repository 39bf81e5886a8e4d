/**
 * Runs a build command with the commit it builds from written into
 * `api/_build_stamp.ts`, then puts that file back as it was, so that the
 * bundle or executable says where it came from (`pmproxy --version`, the
 * `pmproxy_build_info` metric) and the work tree stays clean.
 *
 * ```sh
 * deno run -A scripts/build_stamp.ts deno bundle -o dist/pmproxy.js main.ts
 * deno run -A scripts/build_stamp.ts deno compile -A --unstable-kv --no-code-cache -o pmproxy main.ts
 * ```
 *
 * `deno task bundle` and `deno task compile` run it. The commit is
 * `git rev-parse --short=12 HEAD`, with `-dirty` when tracked files differ
 * from it, or `unknown` outside a git checkout. Exits with the command's
 * exit code.
 *
 * @module
 */
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const STAMP = fileURLToPath(new URL("../api/_build_stamp.ts", import.meta.url));

function git(args: string[]): string | undefined {
  try {
    const out = new Deno.Command("git", {
      args: ["-C", ROOT, ...args],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    return out.success ? new TextDecoder().decode(out.stdout) : undefined;
  } catch {
    return undefined;
  }
}

/** The commit being built: its short hash, `-dirty` when files changed. */
export function currentCommit(): string {
  const head = git(["rev-parse", "--short=12", "HEAD"])?.trim();
  if (!head) return "unknown";
  const changes = git(["status", "--porcelain", "--untracked-files=no"]);
  return changes !== undefined && changes.trim() !== ""
    ? `${head}-dirty`
    : head;
}

/** The stamp module's text for `commit`, from the one in the source. */
export function stampedText(source: string, commit: string): string {
  const line = /^export const BUILD_COMMIT: string \| undefined = undefined;$/m;
  if (!line.test(source)) {
    throw new Error(
      `${STAMP} does not have the line "export const BUILD_COMMIT: string | undefined = undefined;" to stamp; put it back (git checkout api/_build_stamp.ts)`,
    );
  }
  return source.replace(
    line,
    `export const BUILD_COMMIT: string | undefined = ${
      JSON.stringify(commit)
    };`,
  );
}

async function main(command: string[]): Promise<number> {
  if (command.length === 0) {
    console.error(
      "usage: deno run -A scripts/build_stamp.ts COMMAND [ARGS...]  (e.g. deno bundle -o dist/pmproxy.js main.ts)",
    );
    return 2;
  }
  const source = await Deno.readTextFile(STAMP);
  // Read before the stamp is written: it must not count as a change.
  const commit = currentCommit();
  const restore = () => Deno.writeTextFileSync(STAMP, source);
  // An interrupted build leaves the source as it was.
  const onSignal = () => {
    restore();
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  await Deno.writeTextFile(STAMP, stampedText(source, commit));
  try {
    // The deno running this script, whatever PATH says.
    const program = command[0] === "deno" ? Deno.execPath() : command[0];
    const status = await new Deno.Command(program, {
      args: command.slice(1),
      cwd: ROOT,
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn().status;
    if (status.success) console.error(`build stamp: commit ${commit}`);
    return status.code;
  } finally {
    restore();
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
