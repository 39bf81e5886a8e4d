/**
 * Stopping the real server (a child process) with signals: SIGTERM lets a
 * slow download finish within `shutdownTimeout` and saves its consumption
 * (a restart shows it), answers the next request of a kept-alive
 * connection with `Connection: close`, closes a tunnel when
 * `shutdownTimeout` ends; a second SIGTERM stops at once and still saves
 * state; SIGHUP does not end it.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { adminManagersToml, makeConfigDir } from "./helpers/config_dir.ts";
import {
  type Pmproxy,
  runPmproxy,
  startPmproxy,
} from "./helpers/pmproxy_process.ts";
import { curl, startOrigin } from "./helpers/origin.ts";
import {
  RawClient,
  readRequestHead,
  startRawOrigin,
  writeText,
} from "./helpers/proxy_kit.ts";
import { echoOrigin, PIECE, slowOrigin } from "./helpers/slow_origins.ts";
import { sample, scrape } from "./helpers/prometheus.ts";
import { DEFAULT_PROXY_CONFIG } from "../proxy/mod.ts";

/** The rule lets loopback clients through, with no login. */
const OPEN_TO_LOOPBACK = `rule = "local"
[[rangeIPM]]
name = "local"
cidr = "127.0.0.0/8"
`;

async function waitFor(ok: () => boolean, what: string, ms = 10_000) {
  const end = Date.now() + ms;
  while (!ok() && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.ok(ok(), what);
}

/** The consumption of dwnConsR "down" the server reports, in bytes. */
async function consumed(server: Pmproxy, dir: string): Promise<number> {
  const m = await scrape(server.apiUrl, dir);
  return sample(m.text, "pmproxy_quota_consumed_bytes", 'manager="down"')!;
}

async function loggedIn(server: Pmproxy, work: string) {
  const env = { PMPROXY_KNOWN_SERVERS: join(work, "known.json") };
  const r = await runPmproxy(
    ["login", "-m", "sessions", server.apiUrl, "user0", "pass0"],
    { cwd: work, env },
  );
  assert.equal(r.code, 0, r.stderr);
}

Deno.test("SIGTERM: a slow download completes within shutdownTimeout, and its consumption survives the restart", async () => {
  // 10 pieces, 200 ms apart: about 2 s, well within the 10 s default.
  const slow = slowOrigin(10, 200);
  const dir = await makeConfigDir(adminManagersToml({ quota: "10 MB" }), {
    persistInterval: "1h", // only the stop saves it
  });
  const work = await Deno.makeTempDir({ prefix: "pmproxy-client-" });
  let server = await startPmproxy(dir);
  try {
    await loggedIn(server, work);
    const download = curl([
      "-x",
      `http://127.0.0.1:${server.proxyPort}`,
      "-o",
      "/dev/null",
      "-w",
      "%{http_code} %{size_download}",
      `http://127.0.0.1:${slow.origin.port}/slow`,
    ]);
    await slow.started;
    const t0 = Date.now();
    server.signal("SIGTERM");
    const done = await download;
    assert.equal(done.code, 0, done.stderr);
    assert.equal(done.body, `200 ${10 * PIECE}`, "the whole body arrived");
    assert.equal(await server.exited, 0);
    const took = Date.now() - t0;
    assert.ok(took < 8000, `stopped after the download (${took} ms)`);
    assert.match(server.stderr(), /SIGTERM received, stopping/);
    assert.match(server.stderr(), /saving state[\s\S]*stopped/);

    server = await startPmproxy(dir);
    assert.equal(await consumed(server, dir), slow.bytes);
  } finally {
    await server.stop();
    await slow.origin.close();
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("SIGTERM: a kept-alive connection gets Connection: close on its next request, and the server ends", async () => {
  const origin = startRawOrigin(async (conn) => {
    let rest = "";
    for (;;) {
      const req = await readRequestHead(conn, rest);
      if (!req) return;
      rest = req.rest;
      await writeText(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    }
  });
  const dir = await makeConfigDir(OPEN_TO_LOOPBACK);
  const server = await startPmproxy(dir);
  const c = await RawClient.open(server.proxyPort);
  try {
    const get =
      `GET http://127.0.0.1:${origin.port}/ HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\n\r\n`;
    await c.send(get);
    await c.readUntil((t) => t.endsWith("ok"));
    assert.doesNotMatch(c.text, /Connection: close/i);
    const t0 = Date.now();
    server.signal("SIGTERM");
    await waitFor(
      () => /SIGTERM received, stopping/.test(server.stderr()),
      "the server began to stop",
    );
    c.text = "";
    await c.send(get);
    await c.readUntil();
    assert.match(c.text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(c.text, /\r\nConnection: close\r\n/i);
    assert.ok(c.text.endsWith("ok"), "the exchange was finished");
    assert.ok(c.closed, "and the connection closed after it");
    assert.equal(await server.exited, 0);
    assert.ok(Date.now() - t0 < 5000, "no waiting for shutdownTimeout");
  } finally {
    c.close();
    await server.stop();
    await origin.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SIGTERM: a tunnel open at the signal works on until shutdownTimeout, then is closed; /healthz says it is stopping", async () => {
  const echo = echoOrigin();
  const dir = await makeConfigDir(OPEN_TO_LOOPBACK, {
    proxy: 'shutdownTimeout = "2s"',
  });
  const server = await startPmproxy(dir);
  const tunnel = await RawClient.open(server.proxyPort);
  try {
    const target = `127.0.0.1:${echo.port}`;
    await tunnel.send(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
    await tunnel.readUntil((t) => t.includes("\r\n\r\n"));
    assert.match(tunnel.text, /^HTTP\/1\.1 200 /);
    const t0 = Date.now();
    server.signal("SIGTERM");
    await waitFor(
      () => /SIGTERM received, stopping/.test(server.stderr()),
      "the server began to stop",
    );
    const health = await scrape(server.apiUrl, dir, "/healthz");
    assert.equal(health.status, 503);
    assert.match(health.text, /does not accept connections/);
    await tunnel.send("still open");
    await tunnel.readUntil((t) => t.endsWith("still open"));
    assert.ok(!tunnel.closed);
    await tunnel.readUntil(() => false, 8000);
    const closedAt = Date.now() - t0;
    assert.ok(tunnel.closed);
    assert.ok(
      closedAt >= 1800 && closedAt < 5000,
      `closed when shutdownTimeout ended (${closedAt} ms)`,
    );
    assert.equal(await server.exited, 0);
  } finally {
    tunnel.close();
    await server.stop();
    await echo.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a second SIGTERM stops at once, and state is still saved", async () => {
  // 100 pieces, 200 ms apart: 20 s, longer than the test waits.
  const slow = slowOrigin(100, 200);
  const dir = await makeConfigDir(adminManagersToml({ quota: "10 MB" }), {
    persistInterval: "1h",
    proxy: 'shutdownTimeout = "30s"',
  });
  const work = await Deno.makeTempDir({ prefix: "pmproxy-client-" });
  let server = await startPmproxy(dir);
  try {
    await loggedIn(server, work);
    const download = curl([
      "-x",
      `http://127.0.0.1:${server.proxyPort}`,
      "-o",
      "/dev/null",
      `http://127.0.0.1:${slow.origin.port}/slow`,
    ]);
    await slow.started;
    // A few pieces through, so there is consumption to save.
    await new Promise((r) => setTimeout(r, 700));
    server.signal("SIGTERM");
    await waitFor(
      () => /SIGTERM received, stopping/.test(server.stderr()),
      "the server began to stop",
    );
    const t0 = Date.now();
    server.signal("SIGTERM");
    assert.equal(await server.exited, 0);
    assert.ok(Date.now() - t0 < 3000, "it did not wait for the 30 s");
    assert.match(
      server.stderr(),
      /SIGTERM again: closing every connection now/,
    );
    assert.match(server.stderr(), /saving state[\s\S]*stopped/);
    const cut = await download;
    assert.notEqual(cut.code, 0, "the download was cut");

    server = await startPmproxy(dir);
    const saved = await consumed(server, dir);
    assert.ok(
      saved > PIECE && saved < slow.bytes,
      `what came through before the stop was saved (${saved} bytes)`,
    );
  } finally {
    await server.stop();
    await slow.origin.close();
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("SIGHUP, SIGUSR2 and SIGALRM do not end the server; SIGQUIT stops it saving state", async () => {
  const origin = startOrigin();
  const dir = await makeConfigDir(OPEN_TO_LOOPBACK);
  const server = await startPmproxy(dir);
  try {
    for (const signal of ["SIGHUP", "SIGUSR2", "SIGALRM"] as const) {
      server.signal(signal);
      await waitFor(
        () => new RegExp(`${signal} (received|ignored)`).test(server.stderr()),
        `the server took the ${signal}`,
      );
    }
    const r = await curl([
      "-x",
      `http://127.0.0.1:${server.proxyPort}`,
      `${origin.url}/hello`,
    ]);
    assert.equal(r.body, "hello\n", r.stderr);
    assert.equal((await scrape(server.apiUrl, dir, "/healthz")).status, 200);
  } finally {
    // SIGQUIT ends it as SIGTERM does: gracefully, state saved last.
    assert.equal(await server.stop("SIGQUIT"), 0);
    assert.match(server.stderr(), /SIGQUIT received, stopping/);
    assert.match(server.stderr(), /saving state[\s\S]*stopped/);
    await origin.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the systemd unit waits longer than the default shutdownTimeout before it kills", async () => {
  const unit = await Deno.readTextFile(
    new URL("../scripts/pmproxy.service", import.meta.url),
  );
  const m = /^TimeoutStopSec=(\d+)(s|min)?$/m.exec(unit);
  assert.ok(m, "the unit sets TimeoutStopSec in seconds or minutes");
  const seconds = Number(m[1]) * (m[2] === "min" ? 60 : 1);
  assert.ok(
    seconds * 1000 > DEFAULT_PROXY_CONFIG.shutdownTimeoutMs,
    `TimeoutStopSec=${seconds}s leaves the graceful stop its ${
      DEFAULT_PROXY_CONFIG.shutdownTimeoutMs / 1000
    } s`,
  );
});
