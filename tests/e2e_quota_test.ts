/**
 * Download quotas end to end: counting, refusal and cut-off at the quota,
 * admin reset, the reset cycle, and state that survives a restart. Real
 * server process, real KV file, real curl, real client commands.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { adminManagersToml, makeConfigDir } from "./helpers/config_dir.ts";
import {
  Pmproxy,
  runPmproxy,
  startPmproxy,
} from "./helpers/pmproxy_process.ts";
import { curl, Origin, startOrigin } from "./helpers/origin.ts";

const MiB = 1024 * 1024;

interface Setup {
  dir: string;
  work: string;
  admin: string;
  origin: Origin;
  server: Pmproxy;
  proxy: string;
  cli(...args: string[]): ReturnType<typeof runPmproxy>;
  adminCli(...args: string[]): ReturnType<typeof runPmproxy>;
  cleanup(): Promise<void>;
}

async function setup(
  options: { quota: string; resetCycle?: string },
): Promise<Setup> {
  const dir = await makeConfigDir(adminManagersToml(options), {
    persistInterval: "200ms",
  });
  const work = await Deno.makeTempDir({ prefix: "pmproxy-client-" });
  const admin = await Deno.makeTempDir({ prefix: "pmproxy-admin-" });
  const env = { PMPROXY_KNOWN_SERVERS: join(work, "known_servers.json") };
  const origin = startOrigin();
  const server = await startPmproxy(dir);
  const s: Setup = {
    dir,
    work,
    admin,
    origin,
    server,
    proxy: `http://127.0.0.1:${server.proxyPort}`,
    cli: (...args) => runPmproxy(args, { cwd: work, env }),
    adminCli: (...args) => runPmproxy(args, { cwd: admin, env }),
    cleanup: async () => {
      await s.server.stop();
      await origin.close();
      for (const d of [dir, work, admin]) {
        await Deno.remove(d, { recursive: true });
      }
    },
  };
  return s;
}

async function login(s: Setup) {
  const user = await s.cli(
    "login",
    "-m",
    "sessions",
    s.server.apiUrl,
    "user0",
    "pass0",
  );
  assert.equal(user.code, 0, user.stderr);
}

async function consumption(s: Setup): Promise<string> {
  const status = await s.cli("status");
  assert.equal(status.code, 0, status.stderr);
  const m = /^Quota: (.*) Consumption: (.*)$/m.exec(status.stdout);
  assert.ok(m, status.stdout);
  return m[2];
}

Deno.test("quota: bytes count, a download is cut at the quota, then refused, admin reset", async () => {
  const s = await setup({ quota: "1 MB" });
  try {
    await login(s);
    const small = await curl([
      "-x",
      s.proxy,
      "-o",
      "/dev/null",
      "-w",
      "%{size_download}",
      `${s.origin.url}/bytes/102400`,
    ]);
    assert.equal(small.code, 0, small.stderr);
    assert.equal(small.body, "102400");
    // Headers count too, so consumption is a little over 100 KB.
    assert.match(await consumption(s), /^10\d(\.\d)? KB$/);

    const big = await curl([
      "-x",
      s.proxy,
      "-o",
      "/dev/null",
      "-w",
      "%{size_download}",
      `${s.origin.url}/bytes/${3 * MiB}`,
    ]);
    assert.notEqual(big.code, 0, "the transfer is cut");
    const got = Number(big.body);
    assert.ok(got < 1.2 * MiB, `cut near the quota, got ${got} bytes`);
    assert.ok(got > 0.5 * MiB, `not refused at once, got ${got} bytes`);

    const next = await curl([
      "-x",
      s.proxy,
      "-w",
      "\n%{http_code}",
      `${s.origin.url}/hello`,
    ]);
    assert.match(next.body, /quota/i);
    assert.match(next.body, /403$/);
    const tunnel = await curl(["-p", "-x", s.proxy, `${s.origin.url}/hello`]);
    assert.notEqual(
      tunnel.code,
      0,
      "CONNECT is refused at the quota, not hung",
    );

    // user0 is no admin: reset refused; the admin resets user0.
    const denied = await s.cli("reset", "user0");
    assert.notEqual(denied.code, 0);
    const adminLogin = await s.adminCli(
      "login",
      "-m",
      "sessions",
      s.server.apiUrl,
      "admin",
      "admin-pass",
    );
    assert.equal(adminLogin.code, 0, adminLogin.stderr);
    const other = await s.adminCli("status", "user0");
    assert.equal(other.code, 0, other.stderr);
    assert.match(other.stdout, /^User: user0$/m);
    const reset = await s.adminCli("reset", "user0");
    assert.equal(reset.code, 0, reset.stderr);
    // One IP, one user (as the original): the admin's login from 127.0.0.1
    // ended user0's session there, so user0 logs in again.
    await login(s);
    assert.equal(await consumption(s), "0 B");
    const again = await curl(["-x", s.proxy, `${s.origin.url}/hello`]);
    assert.equal(again.body, "hello\n");
  } finally {
    await s.cleanup();
  }
});

Deno.test("quota: consumption returns to zero every reset cycle", async () => {
  const s = await setup({ quota: "1 MB", resetCycle: "3s" });
  try {
    await login(s);
    await curl([
      "-x",
      s.proxy,
      "-o",
      "/dev/null",
      `${s.origin.url}/bytes/${2 * MiB}`,
    ]);
    const refused = await curl([
      "-x",
      s.proxy,
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      `${s.origin.url}/hello`,
    ]);
    assert.equal(refused.body, "403");
    // Within at most one cycle (+ slack) consumption is back to 0.
    let cons = "";
    for (let i = 0; i < 40; i++) {
      cons = await consumption(s);
      if (cons === "0 B") break;
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(cons, "0 B");
    const ok = await curl(["-x", s.proxy, `${s.origin.url}/hello`]);
    assert.equal(ok.body, "hello\n");
  } finally {
    await s.cleanup();
  }
});

Deno.test("restart: consumption and sessions survive SIGTERM and start", async () => {
  const s = await setup({ quota: "10 MB" });
  try {
    await login(s);
    const dl = await curl([
      "-x",
      s.proxy,
      "-o",
      "/dev/null",
      `${s.origin.url}/bytes/${MiB}`,
    ]);
    assert.equal(dl.code, 0, dl.stderr);
    const before = await consumption(s);
    assert.match(before, /^1(\.0)? MB$/);
    assert.equal(await s.server.stop("SIGTERM"), 0);
    assert.match(s.server.output(), /saving state/);

    s.server = await startPmproxy(s.dir);
    s.proxy = `http://127.0.0.1:${s.server.proxyPort}`;
    // login.secret names the old API port: point the client at the new one.
    const secretPath = join(s.work, "login.secret");
    const secret = JSON.parse(await Deno.readTextFile(secretPath));
    secret.server = s.server.apiUrl;
    await Deno.writeTextFile(secretPath, JSON.stringify(secret));
    // The session is still open: status works and the proxy lets us through.
    assert.equal(await consumption(s), before);
    const ok = await curl(["-x", s.proxy, `${s.origin.url}/hello`]);
    assert.equal(ok.body, "hello\n");
  } finally {
    await s.cleanup();
  }
});

Deno.test("API errors: malformed JSON and unknown managers answer 400 with a message", async () => {
  const s = await setup({ quota: "1 MB" });
  try {
    const post = (body: string) =>
      curl([
        "-k",
        "-w",
        "\n%{http_code}",
        "-X",
        "POST",
        "-d",
        body,
        `${s.server.apiUrl}/api/cmd`,
      ]);
    const bad = await post("{not json");
    assert.match(bad.body, /"message"/);
    assert.match(bad.body, /400$/);
    const unknown = await post(JSON.stringify({ cmd: "get", manager: "nope" }));
    assert.match(unknown.body, /"Mng":"nope"/);
    assert.match(unknown.body, /400$/);
    const wrong = await post(
      JSON.stringify({
        cmd: "open",
        manager: "sessions",
        cred: { user: "user0", pass: "x" },
      }),
    );
    assert.match(wrong.body, /incorrect user name or password/);
    assert.match(wrong.body, /400$/);
  } finally {
    await s.cleanup();
  }
});

Deno.test("proxy: a malformed request line gets 400 and others are still served", async () => {
  const s = await setup({ quota: "1 MB" });
  try {
    await login(s);
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: s.server.proxyPort,
    });
    await conn.write(new TextEncoder().encode("THIS IS NOT HTTP\r\n\r\n"));
    const buf = new Uint8Array(4096);
    const n = await conn.read(buf);
    conn.close();
    assert.ok(n !== null);
    assert.match(
      new TextDecoder().decode(buf.subarray(0, n)),
      /^HTTP\/1\.1 400 /,
    );
    const ok = await curl(["-x", s.proxy, `${s.origin.url}/hello`]);
    assert.equal(ok.body, "hello\n");
  } finally {
    await s.cleanup();
  }
});
