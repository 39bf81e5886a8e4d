/**
 * deno.json's tasks run pmproxy one way: `start` is `pmproxy serve`,
 * `compile` builds with the same runtime flags, and a pmproxy started as the
 * tests start it (tests/helpers/pmproxy_process.ts reads the `pmproxy` task)
 * maps no V8 code cache and never checks for a newer Deno (README, Memory).
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { PMPROXY_TASK, startPmproxy } from "./helpers/pmproxy_process.ts";
import { makeConfigDir, README_MANAGERS_TOML } from "./helpers/config_dir.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const tasks: Record<string, string> = JSON.parse(
  Deno.readTextFileSync(join(ROOT, "deno.json")),
).tasks;

Deno.test("tasks: start is the pmproxy task's serve, and compile builds with its flags", () => {
  assert.equal(tasks.start, `${tasks.pmproxy} serve`);
  assert.deepEqual(PMPROXY_TASK.env, { DENO_NO_UPDATE_CHECK: "1" });
  assert.ok(PMPROXY_TASK.flags.includes("--no-code-cache"), tasks.pmproxy);
  const compile = tasks.compile.split(/\s+/);
  const from = compile.indexOf("compile") + 1;
  const flags = compile.slice(from, compile.indexOf("-o"));
  assert.deepEqual(flags, PMPROXY_TASK.flags);
});

Deno.test("tasks: pmproxy run as the task runs it maps no code cache and has the update check off", async () => {
  const dir = await makeConfigDir(README_MANAGERS_TOML);
  const server = await startPmproxy(dir);
  try {
    const maps = await Deno.readTextFile(`/proc/${server.pid}/maps`);
    // The deno process itself, not a shell in between.
    assert.match(maps, /\/deno\n/);
    assert.doesNotMatch(maps, /v8_code_cache/);
    const environ = (await Deno.readTextFile(`/proc/${server.pid}/environ`))
      .split("\0");
    assert.ok(environ.includes("DENO_NO_UPDATE_CHECK=1"));
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
