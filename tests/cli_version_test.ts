/**
 * `pmproxy --version`: the version and the commit, from git when run from
 * the source, baked in by scripts/build_stamp.ts when bundled (what `deno
 * task bundle` and `deno task compile` run), with the source left as it was.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { runPmproxy } from "./helpers/pmproxy_process.ts";
import { VERSION } from "../api/mod.ts";
import { currentCommit, stampedText } from "../scripts/build_stamp.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const STAMP = join(ROOT, "api", "_build_stamp.ts");

function gitHead(): string {
  const out = new Deno.Command("git", {
    args: ["-C", ROOT, "rev-parse", "--short=12", "HEAD"],
  }).outputSync();
  assert.ok(out.success, "the tests run in a git checkout");
  return new TextDecoder().decode(out.stdout).trim();
}

Deno.test("--version prints the version and the commit (from git, from the source)", async () => {
  const r = await runPmproxy(["--version"]);
  assert.equal(r.code, 0, r.stderr);
  const head = gitHead();
  // From the source it says so; a bundle under test (PMPROXY_BUNDLE) does not.
  assert.match(
    r.stdout,
    new RegExp(
      `^pmproxy ${
        VERSION.replaceAll(".", "\\.")
      } \\(commit ${head}(-dirty)?(, from source)?\\)\\n$`,
    ),
  );
});

Deno.test("a bundle made through build_stamp.ts carries its commit; the source is put back", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pmproxy-bundle-" });
  const before = await Deno.readTextFile(STAMP);
  try {
    const expected = currentCommit();
    const bundle = join(dir, "pmproxy.js");
    const built = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        join(ROOT, "scripts", "build_stamp.ts"),
        "deno",
        "bundle",
        "-o",
        bundle,
        "main.ts",
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const said = new TextDecoder().decode(built.stderr);
    assert.equal(built.code, 0, said);
    assert.match(said, new RegExp(`build stamp: commit ${expected}`));
    assert.equal(
      await Deno.readTextFile(STAMP),
      before,
      "the source is as it was",
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--unstable-kv", "--no-config", bundle, "--version"],
      stdout: "piped",
    }).output();
    assert.equal(
      new TextDecoder().decode(out.stdout),
      `pmproxy ${VERSION} (commit ${expected})\n`,
    );
    assert.match(expected, new RegExp(`^${gitHead()}(-dirty)?$`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("stampedText writes the commit into the stamp line, and refuses a stamp file it does not know", async () => {
  const source = await Deno.readTextFile(STAMP);
  const stamped = stampedText(source, "abc123");
  assert.match(
    stamped,
    /^export const BUILD_COMMIT: string \| undefined = "abc123";$/m,
  );
  assert.equal(stamped.replace('"abc123"', "undefined"), source);
  assert.throws(() => stampedText(stamped, "def456"), /git checkout/);
});
