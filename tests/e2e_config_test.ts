/**
 * Configuration end to end: the default configuration written on first
 * start (never an open proxy), and broken files refused with file, line and
 * what is wrong, by `check-config` and by `serve`.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { makeConfigDir, README_MANAGERS_TOML } from "./helpers/config_dir.ts";
import { runPmproxy, startPmproxy } from "./helpers/pmproxy_process.ts";
import { curl, startOrigin } from "./helpers/origin.ts";

Deno.test("first start writes a safe default configuration with a hashed admin password", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pmproxy-default-" });
  const origin = startOrigin();
  // An empty configuration directory: the defaults are written, so this
  // server listens on :8080 and :4443 (the quick start's ports).
  const server = await startPmproxy(join(dir, "conf"));
  try {
    const out = server.output();
    const m = /user "admin", password "([^"]+)"/.exec(out);
    assert.ok(m, out);
    const managers = await Deno.readTextFile(
      join(dir, "conf", "managers.toml"),
    );
    assert.ok(!managers.includes(m[1]), "the password is not stored in clear");
    assert.match(managers, /pbkdf2-sha256\$/);
    const server_toml = await Deno.readTextFile(
      join(dir, "conf", "server.toml"),
    );
    assert.match(server_toml, /addr = ":8080"/);
    await Deno.stat(join(dir, "conf", "cert.pem"));
    await Deno.stat(join(dir, "conf", "key.pem"));
    // Not an open proxy: a request without login is refused.
    const refused = await curl([
      "-x",
      `http://127.0.0.1:${server.proxyPort}`,
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      `${origin.url}/hello`,
    ]);
    assert.equal(refused.body, "403");
    // The printed password logs in.
    const work = await Deno.makeTempDir({ prefix: "pmproxy-client-" });
    const env = { PMPROXY_KNOWN_SERVERS: join(work, "known.json") };
    const login = await runPmproxy([
      "login",
      "-m",
      "sessions",
      server.apiUrl,
      "admin",
      m[1],
    ], { cwd: work, env });
    assert.equal(login.code, 0, login.stderr + login.stdout);
    const ok = await curl([
      "-x",
      `http://127.0.0.1:${server.proxyPort}`,
      `${origin.url}/hello`,
    ]);
    assert.equal(ok.body, "hello\n");
    await Deno.remove(work, { recursive: true });
  } finally {
    await server.stop();
    await origin.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("check-config accepts the original README's configuration", async () => {
  const dir = await makeConfigDir(README_MANAGERS_TOML);
  try {
    const res = await runPmproxy(["check-config", "--config-dir", dir]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /valid/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const BROKEN: {
  name: string;
  managers?: string;
  server?: string;
  expect: RegExp;
}[] = [
  {
    name: "TOML syntax error names file, line and column",
    managers: 'rule = "sessions ∧ down"\n[[sessionIPM]\nname = "sessions"\n',
    expect: /managers\.toml:2:\d+/,
  },
  {
    name: "a rule name without a manager names its column",
    managers: README_MANAGERS_TOML.replace(
      'rule = "sessions ∧ down"',
      'rule = "sessions ∧ dwn"',
    ),
    expect: /managers\.toml:1.*"dwn".*column 12/,
  },
  {
    name: "mixing ∧ and ∨ needs parentheses",
    managers: README_MANAGERS_TOML.replace(
      'rule = "sessions ∧ down"',
      'rule = "sessions ∧ down ∨ sessions"',
    ),
    expect: /managers\.toml:1.*parenthes/,
  },
  {
    name: "a bad size names the key",
    managers: README_MANAGERS_TOML.replace(
      'group0 = "1 GB"',
      'group0 = "1 gigabyte"',
    ),
    expect: /managers\.toml:\d+.*group0.*not a size/,
  },
  {
    name: "a bad duration in server.toml names the file and key",
    server: '[proxy]\ndialTimeout = "ten seconds"\n',
    expect: /server\.toml:2.*dialTimeout/,
  },
];

for (const c of BROKEN) {
  Deno.test(`broken configuration: ${c.name}`, async () => {
    const dir = await makeConfigDir(c.managers ?? README_MANAGERS_TOML);
    try {
      if (c.server) {
        await Deno.writeTextFile(join(dir, "server.toml"), c.server);
      }
      const check = await runPmproxy(["check-config", "--config-dir", dir]);
      assert.equal(check.code, 1, check.stdout);
      assert.match(check.stderr, c.expect);
      const serve = await runPmproxy(["serve", "--config-dir", dir]);
      assert.equal(serve.code, 1, serve.stdout);
      assert.match(serve.stderr, c.expect);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("unknown keys are warned about with the nearest known key", async () => {
  const dir = await makeConfigDir(
    README_MANAGERS_TOML.replace(
      'resetCycle = "24h"',
      'resetCicle = "24h"\n\tresetCycle = "24h"',
    ),
  );
  try {
    const res = await runPmproxy(["check-config", "--config-dir", dir]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(
      res.stderr,
      /managers\.toml:\d+.*resetCicle.*did you mean "resetCycle"/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("hash-password prints a hash that logs in, and the clear password is nowhere", async () => {
  const hashed = await runPmproxy(["hash-password"], {
    stdin: "s3cret pass\n",
  });
  assert.equal(hashed.code, 0, hashed.stderr);
  const hash = hashed.stdout.trim();
  assert.match(hash, /^pbkdf2-sha256\$/);
  const dir = await makeConfigDir(
    README_MANAGERS_TOML.replace('user0 = "pass0"', `user0 = "${hash}"`),
  );
  const work = await Deno.makeTempDir({ prefix: "pmproxy-client-" });
  const env = { PMPROXY_KNOWN_SERVERS: join(work, "known.json") };
  const server = await startPmproxy(dir);
  try {
    const bad = await runPmproxy([
      "login",
      "-m",
      "sessions",
      server.apiUrl,
      "user0",
      hash,
    ], { cwd: work, env });
    assert.notEqual(bad.code, 0, "the hash itself is no password");
    const ok = await runPmproxy([
      "login",
      "-m",
      "sessions",
      server.apiUrl,
      "user0",
      "s3cret pass",
    ], { cwd: work, env });
    assert.equal(ok.code, 0, ok.stderr + ok.stdout);
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(work, { recursive: true });
  }
});
