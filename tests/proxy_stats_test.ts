/**
 * The data path's counters (proxy/stats.ts, `RunningProxy.stats`) over real
 * sockets: requests by outcome, bytes to and from upstream to the byte,
 * open connections and tunnels, failed dials by kind, response timeouts.
 * The policy is a fake (see helpers/proxy_kit.ts for why that is
 * legitimate here); the counters' exposition is tested in
 * api_metrics_test.ts and e2e_metrics_test.ts.
 */
import assert from "node:assert/strict";
import type { Decision, ProxyStats } from "../proxy/mod.ts";
import {
  curl,
  fakePolicy,
  RawClient,
  readRequestHead,
  startRawOrigin,
  startTestProxy,
  writeText,
} from "./helpers/proxy_kit.ts";

/** Waits until `ok()` (the log line is written after the answer). */
async function until(ok: () => boolean, what: string) {
  for (let i = 0; i < 100 && !ok(); i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(ok(), what);
}

Deno.test("requests are counted by outcome: allowed, refused, quota, auth, error", async () => {
  const answers: Record<string, Decision> = {
    allowed: { allowed: true, route: { kind: "direct" } },
    refused: { allowed: false, status: 403, reason: "no", cause: "rule" },
    quota: { allowed: false, status: 403, reason: "full", cause: "quota" },
    auth: { allowed: false, status: 407, reason: "who?" },
  };
  const policy = fakePolicy((f) => answers[new URL(f.url).pathname.slice(1)]);
  const origin = startRawOrigin(async (conn) => {
    await readRequestHead(conn);
    await writeText(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  });
  const proxy = await startTestProxy(policy);
  const s = proxy.stats;
  try {
    const base = `http://127.0.0.1:${origin.port}`;
    for (const path of ["allowed", "refused", "quota", "auth", "allowed"]) {
      await curl(["-x", proxy.url, "-o", "/dev/null", `${base}/${path}`]);
    }
    // Not even asked of the policy: the proxy cannot read it.
    const bad = await RawClient.open(proxy.addr.port);
    await bad.send("garbage\r\n\r\n");
    await bad.readUntil();
    bad.close();
    await until(() => policy.records.length === 6, "six lines logged");
    assert.deepEqual(
      [
        s.requestsAllowed,
        s.requestsRefused,
        s.requestsQuota,
        s.requestsAuth,
        s.requestsError,
      ],
      [2, 1, 1, 1, 1],
    );
  } finally {
    await proxy.close();
    await origin.close();
  }
});

Deno.test("bytes to and from upstream are counted to the byte, bodies and heads", async () => {
  const body = "x".repeat(100_000);
  const answer =
    `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
  let received = 0;
  const origin = startRawOrigin(async (conn) => {
    const req = await readRequestHead(conn);
    if (!req) return;
    const length = Number(/content-length: (\d+)/i.exec(req.head)?.[1] ?? 0);
    let got = new TextEncoder().encode(req.rest).length;
    const buf = new Uint8Array(64 * 1024);
    while (got < length) {
      const n = await conn.read(buf);
      if (n === null) break;
      got += n;
    }
    received += new TextEncoder().encode(req.head).length + got;
    await writeText(conn, answer);
  });
  const policy = fakePolicy();
  const proxy = await startTestProxy(policy);
  try {
    const url = `http://127.0.0.1:${origin.port}/up`;
    const get = await curl(["-x", proxy.url, "-o", "/dev/null", url]);
    assert.equal(get.code, 0, get.err);
    const post = await curl([
      "-x",
      proxy.url,
      "-o",
      "/dev/null",
      "--data-binary",
      "y".repeat(50_000),
      url,
    ]);
    assert.equal(post.code, 0, post.err);
    await until(() => policy.records.length === 2, "two lines logged");
    assert.equal(proxy.stats.bytesFromUpstream, 2 * answer.length);
    assert.equal(proxy.stats.bytesToUpstream, received);
    assert.ok(received > 50_000);
  } finally {
    await proxy.close();
    await origin.close();
  }
});

Deno.test("open client connections and tunnels are gauges; a tunnel's bytes are counted", async () => {
  const origin = startRawOrigin(async (conn) => {
    const buf = new Uint8Array(1024);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) return;
      await writeText(conn, buf.subarray(0, n));
    }
  });
  const proxy = await startTestProxy(fakePolicy(), { connectPorts: "*" });
  const s: ProxyStats = proxy.stats;
  const idle = await RawClient.open(proxy.addr.port);
  const tunnel = await RawClient.open(proxy.addr.port);
  try {
    const target = `127.0.0.1:${origin.port}`;
    await tunnel.send(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
    await tunnel.readUntil((t) => t.includes("\r\n\r\n"));
    await tunnel.send("ping");
    await tunnel.readUntil((t) => t.endsWith("ping"));
    await until(() => s.clientConnections === 2, "two connections open");
    assert.equal(s.tunnels, 1);
    tunnel.close();
    idle.close();
    await until(() => s.clientConnections === 0, "both ended");
    assert.equal(s.tunnels, 0);
    assert.equal(s.bytesToUpstream, 4);
    assert.equal(s.bytesFromUpstream, 4);
  } finally {
    tunnel.close();
    idle.close();
    await proxy.close();
    await origin.close();
  }
});

Deno.test("failed dials are counted by kind; an upstream that does not answer is a response timeout", async () => {
  // Reads the request and answers nothing, until the proxy gives up.
  const silent = startRawOrigin(async (conn) => {
    await readRequestHead(conn);
    await conn.read(new Uint8Array(1024)).catch(() => null);
  });
  // A port nobody listens on: connection refused.
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const closedPort = (l.addr as Deno.NetAddr).port;
  l.close();
  const proxy = await startTestProxy(
    fakePolicy((f) =>
      f.host === "via.parent"
        ? {
          allowed: true,
          route: {
            kind: "parent",
            proxyUrl: `http://127.0.0.1:${closedPort}`,
          },
        }
        : { allowed: true, route: { kind: "direct" } }
    ),
    { responseTimeout: "300ms" },
  );
  const s = proxy.stats;
  try {
    const fetchVia = (url: string) =>
      curl(["-x", proxy.url, "-o", "/dev/null", "-w", "%{http_code}", url]);
    assert.equal(
      (await fetchVia(`http://127.0.0.1:${closedPort}/`)).out,
      "502",
    );
    assert.equal((await fetchVia("http://no-such-host.invalid/")).out, "502");
    assert.equal((await fetchVia("http://via.parent/")).out, "502");
    assert.equal(
      (await fetchVia(`http://127.0.0.1:${silent.port}/`)).out,
      "504",
    );
    assert.deepEqual(
      [s.dialRefused, s.dialDns, s.dialParent, s.dialTimeouts, s.dialOther],
      [1, 1, 1, 0, 0],
    );
    assert.equal(s.responseTimeouts, 1);
    await until(() => s.requestsError === 4, "four errors counted");
  } finally {
    await proxy.close();
    await silent.close();
  }
});
