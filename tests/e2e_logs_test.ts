/**
 * The access log of the real server (a child process) in a file, read by a
 * real Squid log analyser (Debian's calamaris), which counts our requests
 * and bytes; the file rotated with SIGUSR1, by hand and by logrotate with
 * scripts/pmproxy.logrotate; JSON lines; syslog over TCP in RFC 5424.
 * Standard output and syslog over UDP: e2e_access_log_test.ts.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { makeConfigDir } from "./helpers/config_dir.ts";
import { type Pmproxy, startPmproxy } from "./helpers/pmproxy_process.ts";
import { curl } from "./helpers/origin.ts";

const REPO = fileURLToPath(new URL("../", import.meta.url));

/** The rule lets loopback clients through, but not to the host "blocked". */
function managers(top: string): string {
  return `${top}
rule = "local ∧ ¬blocked"
[[rangeIPM]]
name = "local"
cidr = "127.0.0.0/8"
[[hostMatcher]]
name = "blocked"
pattern = "^blocked$"
`;
}

/** An origin whose pages say `text/html; charset=utf-8`, the case that broke analysers. */
function htmlOrigin() {
  return Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req) => {
      const n = /^\/bytes\/(\d+)$/.exec(new URL(req.url).pathname);
      if (n) {
        return new Response("b".repeat(Number(n[1])), {
          headers: { "content-type": "application/octet-stream" },
        });
      }
      return new Response("<!doctype html><p>hello</p>\n", {
        headers: { "content-type": "text/html; charset=utf-8" },
      });
    },
  );
}

/** Fetches through the proxy; answers the bytes curl received (head and body). */
async function fetchThrough(server: Pmproxy, url: string): Promise<number> {
  const r = await curl([
    "-x",
    `http://127.0.0.1:${server.proxyPort}`,
    "-o",
    "/dev/null",
    "-w",
    "%{size_header} %{size_download}",
    url,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const [head, body] = r.body.split(" ").map(Number);
  return head + body;
}

async function lines(path: string): Promise<string[]> {
  try {
    return (await Deno.readTextFile(path)).split("\n").filter((l) => l);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
}

/** Waits until the file has `n` lines (lines are written every 100 ms). */
async function untilLines(path: string, n: number): Promise<string[]> {
  for (let i = 0; i < 100; i++) {
    const got = await lines(path);
    if (got.length >= n) return got;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`${path} has ${(await lines(path)).length} lines, not ${n}`);
}

/** Runs calamaris on the file: its summary's numbers. */
async function calamaris(path: string) {
  const out = await new Deno.Command("calamaris", {
    args: ["-a", path],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const report = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const number = (label: RegExp) => {
    const m = new RegExp(`^${label.source}\\s+\\S+\\s+(\\d+)\\s*$`, "m")
      .exec(report);
    assert.ok(m, `${label} in\n${report}`);
    return Number(m[1]);
  };
  return {
    report,
    parsed: number(/lines parsed:/),
    invalid: number(/invalid lines:/),
    requests: number(/Total amount:/),
    bytes: number(/Total Bandwidth:/),
  };
}

Deno.test("access log file: calamaris counts our requests and bytes; SIGUSR1 after a rename starts a new file", async () => {
  const origin = htmlOrigin();
  const base = `http://127.0.0.1:${origin.addr.port}`;
  const dir = await makeConfigDir(managers('accessLog = "access.log"'));
  const log = join(dir, "access.log");
  const server = await startPmproxy(dir);
  try {
    let sent = 0;
    for (const path of ["/a", "/b", "/bytes/5000", "/c"]) {
      sent += await fetchThrough(server, `${base}${path}`);
    }
    sent += await fetchThrough(server, "http://blocked/"); // 403, our page
    const first = await untilLines(log, 5);
    assert.equal(first.length, 5);
    assert.match(
      first.join("\n"),
      / TCP_MISS\/200 \d+ GET http:\S+\/a - HIER_DIRECT\/127\.0\.0\.1 text\/html$/m,
    );
    assert.match(
      first.join("\n"),
      / TCP_DENIED\/403 \d+ GET http:\/\/blocked\/ - HIER_NONE\/- text\/html$/m,
    );
    assert.doesNotMatch(server.stdout(), /TCP_/, "not on standard output");

    const report = await calamaris(log);
    assert.equal(report.parsed, 5, report.report);
    assert.equal(report.invalid, 0, report.report);
    assert.equal(report.requests, 5, report.report);
    assert.equal(report.bytes, sent, report.report);

    // Rotation by hand: rename, then SIGUSR1.
    await Deno.rename(log, `${log}.1`);
    server.signal("SIGUSR1");
    await new Promise((r) => setTimeout(r, 300));
    const later = await fetchThrough(server, `${base}/d`) +
      await fetchThrough(server, `${base}/e`);
    const second = await untilLines(log, 2);
    assert.equal(second.length, 2);
    assert.match(second[0], /\/d - HIER_DIRECT/);
    assert.equal((await lines(`${log}.1`)).length, 5, "the old file is whole");
    const again = await calamaris(log);
    assert.equal(again.requests, 2);
    assert.equal(again.bytes, later);
  } finally {
    await server.stop();
    await origin.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("access log file: logrotate with scripts/pmproxy.logrotate rotates it, and pmproxy goes on in a new file", async () => {
  const origin = htmlOrigin();
  const base = `http://127.0.0.1:${origin.addr.port}`;
  const dir = await makeConfigDir(managers('accessLog = "logs/access.log"'));
  await Deno.mkdir(join(dir, "logs"));
  const log = join(dir, "logs", "access.log");
  const server = await startPmproxy(dir);
  try {
    await fetchThrough(server, `${base}/before`);
    await untilLines(log, 1);
    // The shipped file, with this test's path, and the signal sent to this
    // server rather than through systemd.
    const shipped = await Deno.readTextFile(
      join(REPO, "scripts", "pmproxy.logrotate"),
    );
    assert.match(shipped, /systemctl kill -s USR1 --kill-whom=main pmproxy/);
    const conf = shipped
      .replace("/var/log/pmproxy/access.log", log)
      .replace(/^\s*systemctl kill .*$/m, `\t\tkill -USR1 ${server.pid}`);
    const confPath = join(dir, "logrotate.conf");
    await Deno.writeTextFile(confPath, conf, { mode: 0o644 });
    const rotated = await new Deno.Command("logrotate", {
      args: ["-f", "-s", join(dir, "logrotate.state"), confPath],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(
      rotated.code,
      0,
      new TextDecoder().decode(rotated.stderr) + conf,
    );
    await new Promise((r) => setTimeout(r, 300));
    await fetchThrough(server, `${base}/after`);
    const now = await untilLines(log, 1);
    assert.equal(now.length, 1);
    assert.match(now[0], /\/after - HIER_DIRECT/);
    const old = await lines(`${log}.1`);
    assert.equal(old.length, 1, "delaycompress: the last rotation is plain");
    assert.match(old[0], /\/before - HIER_DIRECT/);
  } finally {
    await server.stop();
    await origin.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("access log as JSON lines: one object per request, with the outcome", async () => {
  const origin = htmlOrigin();
  const dir = await makeConfigDir(managers('accessLogFormat = "json"'));
  const server = await startPmproxy(dir);
  try {
    await fetchThrough(server, `http://127.0.0.1:${origin.addr.port}/page`);
    await fetchThrough(server, "http://blocked/");
    let objects: Record<string, unknown>[] = [];
    for (let i = 0; i < 100 && objects.length < 2; i++) {
      await new Promise((r) => setTimeout(r, 50));
      objects = server.stdout().split("\n").filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l));
    }
    assert.equal(objects.length, 2, server.stdout());
    const [ok, refused] = objects;
    assert.equal(ok.result, "TCP_MISS");
    assert.equal(ok.status, 200);
    assert.equal(ok.contentType, "text/html");
    assert.equal(ok.hierarchy, "HIER_DIRECT");
    assert.equal(ok.peer, "127.0.0.1");
    assert.equal(ok.outcome, "allowed");
    assert.equal(ok.user, null);
    assert.equal(refused.result, "TCP_DENIED");
    assert.equal(refused.outcome, "refused");
    assert.match(String(ok.time), /^\d{4}-\d\d-\d\dT/);
  } finally {
    await server.stop();
    await origin.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("access log to syslog over TCP in RFC 5424, framed by length", async () => {
  const origin = htmlOrigin();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let received = "";
  const reading = (async () => {
    const conn = await listener.accept();
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      received += new TextDecoder().decode(buf.subarray(0, n));
    }
    conn.close();
  })();
  const port = (listener.addr as Deno.NetAddr).port;
  const dir = await makeConfigDir(
    managers(`syslogAddr = "tcp://127.0.0.1:${port}"
syslogFormat = "rfc5424"`),
  );
  const server = await startPmproxy(dir);
  try {
    await fetchThrough(server, `http://127.0.0.1:${origin.addr.port}/page`);
    await fetchThrough(server, "http://blocked/");
    for (
      let i = 0;
      i < 100 && (received.match(/<30>1 /g) ?? []).length < 2;
      i++
    ) {
      await new Promise((r) => setTimeout(r, 50));
    }
    // Each message: its length in bytes, a space, the message.
    const frames: string[] = [];
    for (let at = 0; at < received.length;) {
      const space = received.indexOf(" ", at);
      const length = Number(received.slice(at, space));
      assert.ok(length > 0, `a length at ${at} of ${JSON.stringify(received)}`);
      frames.push(received.slice(space + 1, space + 1 + length));
      at = space + 1 + length;
    }
    assert.equal(frames.length, 2, received);
    assert.match(
      frames[0],
      new RegExp(
        `^<30>1 \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z \\S+ pmproxy ${server.pid} access - \\d+\\.\\d{3} +\\d+ 127\\.0\\.0\\.1 TCP_MISS/200 `,
      ),
    );
    assert.match(frames[1], / TCP_DENIED\/403 \d+ GET http:\/\/blocked\/ /);
    assert.doesNotMatch(server.stdout(), /TCP_/);
  } finally {
    await server.stop();
    await reading;
    listener.close();
    await origin.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
