/**
 * `/metrics` of the real server (a child process), scraped before and after
 * traffic through it: the counters move by exactly what was sent, and a
 * real consumer (`promtool check metrics`) accepts both scrapes; its build
 * info names the same commit as `pmproxy --version`; `/healthz` answers.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { adminManagersToml, makeConfigDir } from "./helpers/config_dir.ts";
import { runPmproxy, startPmproxy } from "./helpers/pmproxy_process.ts";
import { curl } from "./helpers/origin.ts";
import {
  readRequestHead,
  startRawOrigin,
  writeText,
} from "./helpers/proxy_kit.ts";
import { promtool, sample, scrape } from "./helpers/prometheus.ts";

const enc = new TextEncoder();

Deno.test("metrics: scraped before and after traffic, the counters move by what was sent", async () => {
  const body = "z".repeat(200_000);
  const answer =
    `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
  let received = 0;
  const origin = startRawOrigin(async (conn) => {
    const req = await readRequestHead(conn);
    if (!req) return;
    received += enc.encode(req.head).length + enc.encode(req.rest).length;
    await writeText(conn, answer);
  });
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const closedPort = (closed.addr as Deno.NetAddr).port;
  closed.close();
  const dir = await makeConfigDir(adminManagersToml({ quota: "10 MB" }));
  const work = await Deno.makeTempDir({ prefix: "pmproxy-client-" });
  const env = { PMPROXY_KNOWN_SERVERS: join(work, "known.json") };
  const server = await startPmproxy(dir);
  const proxy = `http://127.0.0.1:${server.proxyPort}`;
  const get = (url: string) =>
    curl(["-x", proxy, "-o", "/dev/null", "-w", "%{http_code}", url]);
  try {
    const before = await scrape(server.apiUrl, dir);
    assert.equal(before.status, 200);
    const checked = await promtool(before.text);
    assert.equal(checked.code, 0, checked.out + before.text);
    assert.equal(checked.out, "");
    const at = (text: string, name: string, labels = "") => {
      const v = sample(text, name, labels);
      assert.notEqual(v, undefined, `${name}{${labels}} in\n${text}`);
      return v!;
    };
    assert.equal(at(before.text, "pmproxy_sessions", 'manager="sessions"'), 0);

    // Refused by the rule: nobody is logged in.
    assert.equal((await get(`http://127.0.0.1:${origin.port}/`)).body, "403");
    const wrong = await runPmproxy(
      ["login", "-m", "sessions", server.apiUrl, "user0", "nope"],
      { cwd: work, env },
    );
    assert.notEqual(wrong.code, 0);
    const login = await runPmproxy(
      ["login", "-m", "sessions", server.apiUrl, "user0", "pass0"],
      { cwd: work, env },
    );
    assert.equal(login.code, 0, login.stderr);
    // Allowed: exactly `answer` comes from upstream.
    assert.equal(
      (await get(`http://127.0.0.1:${origin.port}/big`)).body,
      "200",
    );
    // Allowed by the rule, but nobody listens there.
    assert.equal((await get(`http://127.0.0.1:${closedPort}/`)).body, "502");

    // The periodic flush (persistInterval 1 s) may not have run yet on a
    // fast machine: scrape again until it has, for at most 5 s.
    let after = await scrape(server.apiUrl, dir);
    const flushes = () =>
      sample(after.text, "pmproxy_state_flush_duration_seconds_count") ?? 0;
    for (let i = 0; i < 50 && flushes() < 1; i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = await scrape(server.apiUrl, dir);
    }
    const again = await promtool(after.text);
    assert.equal(again.code, 0, again.out + after.text);
    const moved = (name: string, labels = "") =>
      at(after.text, name, labels) - at(before.text, name, labels);
    assert.equal(moved("pmproxy_requests_total", 'outcome="refused"'), 1);
    assert.equal(moved("pmproxy_requests_total", 'outcome="allowed"'), 1);
    assert.equal(moved("pmproxy_requests_total", 'outcome="error"'), 1);
    assert.equal(moved("pmproxy_requests_total", 'outcome="quota"'), 0);
    assert.equal(moved("pmproxy_requests_total", 'outcome="auth"'), 0);
    assert.equal(
      moved("pmproxy_upstream_received_bytes_total"),
      enc.encode(answer).length,
    );
    assert.equal(moved("pmproxy_upstream_sent_bytes_total"), received);
    assert.equal(
      moved("pmproxy_quota_consumed_bytes", 'manager="down"'),
      enc.encode(answer).length,
      "the quota counts what came from upstream",
    );
    assert.equal(
      moved("pmproxy_upstream_dial_failures_total", 'kind="refused"'),
      1,
    );
    assert.equal(moved("pmproxy_login_failures_total", 'via="api"'), 1);
    assert.equal(at(after.text, "pmproxy_sessions", 'manager="sessions"'), 1);
    assert.equal(at(after.text, "pmproxy_state_store_up"), 1);
    assert.ok(
      at(after.text, "pmproxy_state_flush_duration_seconds_count") >= 1,
    );

    // The build info is what --version says.
    const version = await runPmproxy(["--version"]);
    const commit = /\(commit ([^,)]+)/.exec(version.stdout)?.[1] ?? "source";
    assert.match(
      after.text,
      new RegExp(
        `^pmproxy_build_info\\{version="[^"]+",commit="${commit}"\\} 1$`,
        "m",
      ),
    );

    const health = await scrape(server.apiUrl, dir, "/healthz");
    assert.deepEqual(health, { status: 200, text: "ok\n" });
  } finally {
    await server.stop();
    await origin.close();
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(work, { recursive: true });
  }
});
