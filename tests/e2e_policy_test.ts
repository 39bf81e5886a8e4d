/**
 * Issue-4 capabilities end to end through the real server process: proxy
 * credentials (407 and Proxy-Authorization), parent proxies that are real
 * Debian programs (tinyproxy, microsocks) and a dead parent, and an LDAP
 * login against a real slapd with groups deciding the rule.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { adminManagersToml, makeConfigDir } from "./helpers/config_dir.ts";
import { runPmproxy, startPmproxy } from "./helpers/pmproxy_process.ts";
import { curl, startOrigin } from "./helpers/origin.ts";
import { startMicrosocks, startTinyproxy } from "./helpers/dial_servers.ts";
import { adDbToml, startSlapd } from "./helpers/slapd.ts";

Deno.test("proxy credentials: 407 with Proxy-Authenticate without them, browsing with them, accounted to the user", async () => {
  const origin = startOrigin();
  const managers = adminManagersToml().replace(
    'auth = "map"',
    'auth = "map"\nproxyAuth = true\nrealm = "Example gateway"',
  );
  assert.match(managers, /proxyAuth = true/);
  const dir = await makeConfigDir(managers);
  const work = await Deno.makeTempDir({ prefix: "pmproxy-client-" });
  const server = await startPmproxy(dir);
  const proxy = `http://127.0.0.1:${server.proxyPort}`;
  try {
    const none = await curl([
      "-x",
      proxy,
      "-D",
      "-",
      "-o",
      "/dev/null",
      `${origin.url}/hello`,
    ]);
    assert.match(none.body, /^HTTP\/1\.1 407 /);
    assert.match(
      none.body,
      /^proxy-authenticate: Basic realm="Example gateway"/im,
    );
    const wrong = await curl([
      "-x",
      proxy,
      "-U",
      "user0:nope",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      `${origin.url}/hello`,
    ]);
    assert.equal(wrong.body, "407");
    const right = await curl([
      "-x",
      proxy,
      "-U",
      "user0:pass0",
      `${origin.url}/bytes/10000`,
    ]);
    assert.equal(right.code, 0, right.stderr);
    assert.equal(right.body.length, 10000);
    const tunnel = await curl([
      "-p",
      "-x",
      proxy,
      "-U",
      "user0:pass0",
      `${origin.url}/hello`,
    ]);
    assert.equal(tunnel.body, "hello\n", tunnel.stderr);
    // The bytes count against user0 although no session binds this IP to them.
    const env = { PMPROXY_KNOWN_SERVERS: join(work, "known.json") };
    const login = await runPmproxy([
      "login",
      "-m",
      "sessions",
      server.apiUrl,
      "admin",
      "admin-pass",
    ], { cwd: work, env });
    assert.equal(login.code, 0, login.stderr);
    const status = await runPmproxy(["status", "user0"], { cwd: work, env });
    assert.equal(status.code, 0, status.stderr);
    const cons = /Consumption: ([\d.]+) KB/.exec(status.stdout);
    assert.ok(cons && Number(cons[1]) >= 9.7, status.stdout);
  } finally {
    await server.stop();
    await origin.close();
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(work, { recursive: true });
  }
});

for (const kind of ["http", "socks5"] as const) {
  Deno.test(`parent proxy: plain HTTP and CONNECT through a real ${kind === "http" ? "tinyproxy" : "microsocks"}, 502 when it dies`, async () => {
    const origin = startOrigin();
    const parent = kind === "http"
      ? await startTinyproxy()
      : await startMicrosocks();
    const dir = await makeConfigDir(`rule = "local ∧ up"
[[rangeIPM]]
name = "local"
cidr = "127.0.0.0/8"
[[parentProxy]]
name = "up"
proxyURL = "${kind}://127.0.0.1:${parent.port}"
`);
    const server = await startPmproxy(dir);
    const proxy = `http://127.0.0.1:${server.proxyPort}`;
    let parentStopped = false;
    try {
      const plain = await curl(["-x", proxy, `${origin.url}/hello`]);
      assert.equal(plain.body, "hello\n", plain.stderr);
      const tunnel = await curl(["-p", "-x", proxy, `${origin.url}/hello`]);
      assert.equal(tunnel.body, "hello\n", tunnel.stderr);
      const before = origin.requests;
      await parent.stop();
      parentStopped = true;
      const dead = await curl([
        "-x",
        proxy,
        "-w",
        "\n%{http_code}",
        `${origin.url}/hello`,
      ]);
      assert.match(dead.body, /502$/);
      assert.match(dead.body, /parent/i);
      assert.match(
        dead.body,
        /running\? Check the address/,
        "one sentence end, not '?.'",
      );
      assert.equal(
        origin.requests,
        before,
        "nothing reached the origin without the parent",
      );
    } finally {
      await server.stop();
      if (!parentStopped) await parent.stop();
      await origin.close();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("LDAP: login against a real slapd, groups decide the rule and sum the quota", async () => {
  const ldap = await startSlapd();
  const origin = startOrigin();
  await ldap.addUser("alice", "alice-pw", "Alice Liddell", ["staff", "wifi"]);
  await ldap.addUser("bob", "bob-pw", "Bob Builder", ["guests"]);
  const dir = await makeConfigDir(`rule = "sessions ∧ wifi ∧ down"
[[sessionIPM]]
name = "sessions"
auth = "ldap"
[[groupIPM]]
name = "wifi"
group = "wifi"
userDBN = "ldap"
[[dwnConsR]]
name = "down"
userDBN = "ldap"
resetCycle = "24h"
[dwnConsR.groupQuota]
staff = "1 GB"
wifi = "512 MB"
guests = "1 GB"
${adDbToml(ldap, "ldap")}`);
  const work = await Deno.makeTempDir({ prefix: "pmproxy-client-" });
  const env = { PMPROXY_KNOWN_SERVERS: join(work, "known.json") };
  const server = await startPmproxy(dir);
  const proxy = `http://127.0.0.1:${server.proxyPort}`;
  const cli = (...args: string[]) => runPmproxy(args, { cwd: work, env });
  try {
    const wrong = await cli(
      "login",
      "-m",
      "sessions",
      server.apiUrl,
      "alice",
      "nope",
    );
    assert.notEqual(wrong.code, 0);
    assert.match(
      wrong.stdout + wrong.stderr,
      /incorrect user name or password/,
    );

    // The directory matches names ignoring case; the session is the
    // directory's "alice" however it was typed (one session, one quota).
    const login = await cli(
      "login",
      "-m",
      "sessions",
      server.apiUrl,
      "ALICE",
      "alice-pw",
    );
    assert.equal(login.code, 0, login.stderr);
    const status = await cli("status");
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /^User: alice$/m);
    assert.match(status.stdout, /^Name: Alice Liddell$/m);
    assert.match(
      status.stdout,
      /^Groups: \[staff wifi\]$|^Groups: \[staff, wifi\]$/m,
    );
    assert.match(status.stdout, /^Quota: 1\.5 GB Consumption: 0 B$/m);
    const ok = await curl(["-x", proxy, `${origin.url}/hello`]);
    assert.equal(ok.body, "hello\n");

    // bob is not in wifi: logged in, yet the rule refuses him.
    assert.equal(
      (await cli("login", "-m", "sessions", server.apiUrl, "bob", "bob-pw"))
        .code,
      0,
    );
    const refused = await curl([
      "-x",
      proxy,
      "-w",
      "\n%{http_code}",
      `${origin.url}/hello`,
    ]);
    assert.match(refused.body, /wifi/);
    assert.match(refused.body, /403$/);
  } finally {
    await server.stop();
    await origin.close();
    await ldap.stop();
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(work, { recursive: true });
  }
});
