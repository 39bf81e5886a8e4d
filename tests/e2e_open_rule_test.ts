/**
 * An open rule through the real command line: `check-config` and `serve`
 * refuse it when the proxy listens on every interface, name the file, the
 * rule's line and what to do, and accept it with `allowOpenProxy = true`
 * (with a warning); on loopback it is only a warning.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { makeConfigDir } from "./helpers/config_dir.ts";
import { loopbackServerToml } from "./helpers/pmproxy_process.ts";
import { runPmproxy, startPmproxy } from "./helpers/pmproxy_process.ts";
import { curl, startOrigin } from "./helpers/origin.ts";

const OPEN_MANAGERS = `rule = "sessions ∨ true"

[[sessionIPM]]
  name = "sessions"
  auth = "map"

[mapDB]
  name = "map"
  [mapDB.userPass]
    user0 = "pass0"
`;

/** server.toml with the proxy on every interface (a free port). */
function everyInterfaceServerToml(): string {
  const toml = loopbackServerToml();
  const proxyAt = toml.indexOf("[proxy.server]");
  const changed = toml.slice(0, proxyAt) +
    toml.slice(proxyAt).replace('addr = "127.0.0.1:0"', 'addr = ":0"');
  assert.match(changed, /\[proxy\.server\]\n\s*addr = ":0"/);
  return changed;
}

/** A config dir whose proxy listens on every interface. */
async function everyInterfaceDir(managers: string): Promise<string> {
  const dir = await makeConfigDir(managers);
  await Deno.writeTextFile(
    join(dir, "server.toml"),
    everyInterfaceServerToml(),
  );
  return dir;
}

const REFUSED =
  /managers\.toml:1: rule "sessions ∨ true" lets a request through when sessions is false: nobody is identified, and the proxy listens on every interface \(:0\).*allowOpenProxy = true/;

Deno.test("an open rule on every interface is refused by check-config and serve", async () => {
  const dir = await everyInterfaceDir(OPEN_MANAGERS);
  try {
    const check = await runPmproxy(["check-config", "--config-dir", dir]);
    assert.equal(check.code, 1, check.stdout + check.stderr);
    assert.match(check.stderr, /configuration error/);
    assert.match(check.stderr, REFUSED);
    assert.doesNotMatch(check.stdout, /valid/);
    const serve = await runPmproxy(["serve", "--config-dir", dir]);
    assert.equal(serve.code, 1, serve.stdout + serve.stderr);
    assert.match(serve.stderr, REFUSED);
    assert.doesNotMatch(serve.stdout, /listening/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("allowOpenProxy = true lets an open rule run on every interface, with a warning", async () => {
  const dir = await everyInterfaceDir(
    `allowOpenProxy = true\n${OPEN_MANAGERS}`,
  );
  const origin = startOrigin();
  try {
    const check = await runPmproxy(["check-config", "--config-dir", dir]);
    assert.equal(check.code, 0, check.stderr);
    assert.match(check.stdout, /valid/);
    const warning =
      /warning: .*managers\.toml:2: rule "sessions ∨ true" lets a request through when sessions is false: nobody is identified; the proxy listens on every interface/;
    assert.match(check.stderr, warning);
    const server = await startPmproxy(dir);
    try {
      assert.match(server.output(), warning);
      // Open indeed: a request without login goes through.
      const res = await curl([
        "-x",
        `http://127.0.0.1:${server.proxyPort}`,
        `${origin.url}/hello`,
      ]);
      assert.equal(res.body, "hello\n");
    } finally {
      await server.stop();
    }
  } finally {
    await origin.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an open rule on loopback is only a warning", async () => {
  const dir = await makeConfigDir(OPEN_MANAGERS);
  try {
    const check = await runPmproxy(["check-config", "--config-dir", dir]);
    assert.equal(check.code, 0, check.stderr);
    assert.match(
      check.stderr,
      /warning: .*managers\.toml:1: rule "sessions ∨ true" lets a request through when sessions is false: nobody is identified; the proxy listens on loopback only \(127\.0\.0\.1:0\)/,
    );
    const server = await startPmproxy(dir);
    try {
      assert.match(server.output(), /warning: .*loopback only/);
    } finally {
      await server.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
