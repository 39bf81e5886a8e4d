/**
 * The original README's client scenario, word for word, against the real
 * server (child process), with the real client commands and real curl.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { makeConfigDir, README_MANAGERS_TOML } from "./helpers/config_dir.ts";
import { runPmproxy, startPmproxy } from "./helpers/pmproxy_process.ts";
import { curl, startOrigin } from "./helpers/origin.ts";

Deno.test("README scenario: discover, login, status, discover, browse", async () => {
  const dir = await makeConfigDir(README_MANAGERS_TOML);
  const work = await Deno.makeTempDir({ prefix: "pmproxy-client-" });
  const env = { PMPROXY_KNOWN_SERVERS: join(work, "known_servers.json") };
  const origin = startOrigin();
  const server = await startPmproxy(dir);
  const proxy = `http://127.0.0.1:${server.proxyPort}`;
  try {
    const cli = (...args: string[]) => runPmproxy(args, { cwd: work, env });

    const before = await cli("discover", server.apiUrl);
    assert.equal(before.code, 0, before.stderr);
    assert.match(before.stdout, /^Match result: false$/m);
    assert.match(before.stdout, /^\[❌\] sessions:sessionIPM$/m);
    assert.match(
      before.stderr + before.stdout,
      /SHA-256/,
      "first contact prints the fingerprint",
    );

    // Before login the proxy refuses plain HTTP and CONNECT with 403.
    const refused = await curl([
      "-x",
      proxy,
      "-o",
      "-",
      "-w",
      "%{http_code}",
      `${origin.url}/hello`,
    ]);
    assert.match(refused.body, /403$/);
    assert.match(refused.body, /log in/i);
    // The login link leads back to the refused page after login.
    assert.ok(
      refused.body.includes(
        `?next=${encodeURIComponent(`${origin.url}/hello`)}`,
      ),
      refused.body,
    );
    const tunnelRefused = await curl([
      "-p",
      "-x",
      proxy,
      `${origin.url}/hello`,
    ]);
    assert.notEqual(tunnelRefused.code, 0);
    assert.match(tunnelRefused.stderr, /403/);

    const login = await cli(
      "login",
      "-m",
      "sessions",
      server.apiUrl,
      "user0",
      "pass0",
    );
    assert.equal(login.code, 0, login.stderr);
    const secret = JSON.parse(
      await Deno.readTextFile(join(work, "login.secret")),
    );
    assert.equal(secret.sessionIPM, "sessions");
    assert.equal(secret.dwnConsR, "down");
    assert.equal(typeof secret.secret, "string");

    const status = await cli("status");
    assert.equal(status.code, 0, status.stderr);
    // The original's four lines word for word, then pmproxy's: the bar and
    // the next reset.
    const lines = status.stdout.trim().split("\n");
    assert.equal(
      lines.slice(0, 4).join("\n"),
      "User: user0\nName: user0\nGroups: [group0]\nQuota: 1 GB Consumption: 0 B",
    );
    assert.equal(lines[4], "[--------------] 0 %");
    assert.match(lines[5], /^Next reset: \S+Z \(in (1 d 0 h|23 h 59 min)\)$/);
    assert.equal(lines.length, 6);

    const after = await cli("d");
    assert.equal(after.code, 0, after.stderr);
    assert.match(after.stdout, /^Match result: true$/m);
    assert.match(after.stdout, /^\[✅\] down:dwnConsR$/m);
    assert.match(after.stdout, /^\[✅\] sessions:sessionIPM$/m);

    // After login both plain HTTP and a CONNECT tunnel go through.
    const plain = await curl(["-x", proxy, `${origin.url}/hello`]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(plain.body, "hello\n");
    const tunnel = await curl(["-p", "-x", proxy, `${origin.url}/hello`]);
    assert.equal(tunnel.code, 0, tunnel.stderr);
    assert.equal(tunnel.body, "hello\n");

    const logout = await cli("o");
    assert.equal(logout.code, 0, logout.stderr);
    const gone = await curl([
      "-x",
      proxy,
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      `${origin.url}/hello`,
    ]);
    assert.equal(gone.body, "403");
  } finally {
    await server.stop();
    await origin.close();
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("a browser that sends everything through the proxy reaches the login API, and the session is its own IP's", async () => {
  const dir = await makeConfigDir(README_MANAGERS_TOML);
  const origin = startOrigin();
  const server = await startPmproxy(dir);
  const proxy = `http://127.0.0.1:${server.proxyPort}`;
  // The "browser" connects from 127.0.0.2; the proxy's own tunnel to the API
  // comes from 127.0.0.1. The session must bind 127.0.0.2.
  const browser = ["--interface", "127.0.0.2", "-x", proxy];
  try {
    const page = await curl([
      ...browser,
      "-k",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      `${server.apiUrl}/`,
    ]);
    assert.equal(page.body, "200", page.stderr);
    const open = await curl([
      ...browser,
      "-k",
      "-X",
      "POST",
      "-d",
      JSON.stringify({
        cmd: "open",
        manager: "sessions",
        cred: { user: "user0", pass: "pass0" },
      }),
      `${server.apiUrl}/api/cmd`,
    ]);
    assert.equal(open.code, 0, open.stderr);
    assert.match(open.body, /^[\w-]+\.[\w-]+\.[\w-]+$/, "a JWT");
    const ok = await curl([...browser, `${origin.url}/hello`]);
    assert.equal(ok.body, "hello\n");
    const other = await curl([
      "-x",
      proxy,
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      `${origin.url}/hello`,
    ]);
    assert.equal(other.body, "403", "127.0.0.1 did not log in");
    // Before login only the API's port is let through, not other ports.
    const elsewhere = await curl([
      "-p",
      "-x",
      proxy,
      "-o",
      "/dev/null",
      "-w",
      "%{http_connect}",
      `${origin.url}/hello`,
    ]);
    assert.equal(elsewhere.body, "403");
  } finally {
    await server.stop();
    await origin.close();
    await Deno.remove(dir, { recursive: true });
  }
});
