/**
 * `main.ts` run without `--unstable-kv` (a `deno run` by hand): what needs
 * no state still works, and `serve` stops with a sentence that says which
 * flag is missing instead of "Deno.openKv is not a function".
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { join } from "node:path";

const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));
const CONFIG = fileURLToPath(new URL("../deno.json", import.meta.url));

async function run(args: string[]) {
  const out = await new Deno.Command("deno", {
    args: ["run", "-A", "--config", CONFIG, MAIN, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return {
    code: out.code,
    stdout: text.decode(out.stdout),
    stderr: text.decode(out.stderr),
  };
}

Deno.test("cli without --unstable-kv: --help and --version answer, serve names the missing flag", async () => {
  const help = await run(["--help"]);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /^pmproxy .*gateway proxy/);
  const version = await run(["--version"]);
  assert.equal(version.code, 0, version.stderr);
  assert.match(version.stdout, /^pmproxy \d/);

  const dir = await Deno.makeTempDir({ prefix: "pmproxy-no-kv-" });
  try {
    const serve = await run(["serve", "--config-dir", join(dir, "cfg")]);
    assert.notEqual(serve.code, 0);
    assert.match(
      serve.stderr,
      /Deno KV is off: run pmproxy with --unstable-kv/,
    );
    assert.doesNotMatch(serve.stderr, /is not a function/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
