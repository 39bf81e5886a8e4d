/**
 * `pmproxy explain` against the real server: an allowed request, a rule
 * refusal and a quota refusal, each manager reached with its value and
 * why, as an administrator reads them; refused to a user who is not one.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { adminManagersToml, makeConfigDir } from "./helpers/config_dir.ts";
import { runPmproxy, startPmproxy } from "./helpers/pmproxy_process.ts";

const TOML = adminManagersToml({ quota: "1 MB" })
  .replace(
    'rule = "sessions ∧ down"',
    'rule = "sessions ∧ (web ∨ lan) ∧ down"',
  )
  // A function, not a string: "$'" in a replacement string means the text
  // after the match.
  .replace(
    "[mapDB]",
    () =>
      `[[hostMatcher]]
name = "web"
pattern = '(^|\\.)example\\.org$'

[[rangeIPM]]
name = "lan"
cidr = "10.0.0.0/8"

[mapDB]`,
  );

Deno.test("explain: allowed, refused by the rule, refused at the quota; administrators only", async () => {
  const dir = await makeConfigDir(TOML);
  const admin = await Deno.makeTempDir({ prefix: "pmproxy-admin-" });
  const user = await Deno.makeTempDir({ prefix: "pmproxy-user-" });
  const env = { PMPROXY_KNOWN_SERVERS: join(admin, "known_servers.json") };
  const server = await startPmproxy(dir);
  const cli = (cwd: string, ...args: string[]) =>
    runPmproxy(args, { cwd, env });
  try {
    const login = await cli(
      admin,
      "login",
      "-m",
      "sessions",
      server.apiUrl,
      "admin",
      "admin-pass",
    );
    assert.equal(login.code, 0, login.stderr);

    const ok = await cli(
      admin,
      "explain",
      "--ip",
      "192.0.2.7",
      "--user",
      "user0",
      "http://www.example.org/page",
    );
    assert.equal(ok.code, 0, ok.stderr);
    console.log(ok.stdout);
    assert.match(
      ok.stdout,
      /^GET http:\/\/www\.example\.org\/page from 192\.0\.2\.7 \(user0\)/m,
    );
    assert.match(ok.stdout, /^Result: allowed$/m);
    assert.match(
      ok.stdout,
      /^\[✅\] sessions:sessionIPM {2}user0 is taken as logged in at 192\.0\.2\.7$/m,
    );
    assert.match(
      ok.stdout,
      /^\[✅\] web:hostMatcher {2}www\.example\.org matches/m,
    );
    // web was true: lan was not reached.
    assert.doesNotMatch(ok.stdout, /lan:rangeIPM/);
    assert.match(
      ok.stdout,
      /^\[✅\] down:dwnConsR {2}0 B of 1 MB used by user0, resets at /m,
    );
    assert.match(ok.stdout, /^Attached: down:dwnConsR$/m);
    assert.match(ok.stdout, /^Route: direct$/m);

    const refused = await cli(
      admin,
      "explain",
      "--ip",
      "192.0.2.7",
      "--user",
      "user0",
      "http://other.test/",
    );
    assert.equal(refused.code, 0, refused.stderr);
    assert.match(refused.stdout, /^Result: refused: /m);
    assert.match(
      refused.stdout,
      /^\[❌\] web:hostMatcher {2}web: other\.test does not match/m,
    );
    assert.match(
      refused.stdout,
      /^\[❌\] lan:rangeIPM {2}lan: 192\.0\.2\.7 is not in 10\.0\.0\.0\/8$/m,
    );

    // user0 at the quota: the admin sets their consumption to 1 MB.
    const set = await setConsumption(dir, server.apiUrl, admin, 1024 * 1024);
    assert.equal(set, 200);
    const quota = await cli(
      admin,
      "explain",
      "--ip",
      "10.1.2.3",
      "--user",
      "user0",
      "http://other.test/",
    );
    console.log(quota.stdout);
    assert.match(
      quota.stdout,
      /^Result: refused: Quota reached: consumption 1 MB of quota 1 MB for user0 \(resets at /m,
    );
    assert.match(
      quota.stdout,
      /^\[✅\] lan:rangeIPM {2}10\.1\.2\.3 is in 10\.0\.0\.0\/8$/m,
    );
    assert.match(
      quota.stdout,
      /^\[❌\] down:dwnConsR {2}1 MB of 1 MB used by user0 \(quota reached\)/m,
    );

    // Not an administrator: refused with the original's error shape.
    const u = await cli(
      user,
      "login",
      "-m",
      "sessions",
      server.apiUrl,
      "user0",
      "pass0",
    );
    assert.equal(u.code, 0, u.stderr);
    const denied = await cli(user, "explain", "http://www.example.org/");
    assert.equal(denied.code, 1);
    assert.match(
      denied.stderr,
      /explain is for administrators; user0 is not one/,
    );
  } finally {
    await server.stop();
    for (const d of [dir, admin, user]) {
      await Deno.remove(d, { recursive: true });
    }
  }
});

/** Sets user0's consumption through the API as the logged admin. */
async function setConsumption(
  configDir: string,
  apiUrl: string,
  adminDir: string,
  bytes: number,
): Promise<number> {
  const login = JSON.parse(
    await Deno.readTextFile(join(adminDir, "login.secret")),
  );
  const client = Deno.createHttpClient({
    caCerts: [await Deno.readTextFile(join(configDir, "cert.pem"))],
  });
  try {
    const res = await fetch(`${apiUrl}/api/cmd`, {
      method: "POST",
      body: JSON.stringify({
        cmd: "set",
        manager: "down",
        secret: login.secret,
        info: { userName: "user0", bytesCons: bytes },
      }),
      client,
    });
    await res.body?.cancel();
    return res.status;
  } finally {
    client.close();
  }
}
