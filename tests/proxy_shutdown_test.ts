/**
 * The proxy's graceful stop (`RunningProxy.shutdown`) over real sockets: no
 * new connections, `Connection: close` on the next answer of a kept-alive
 * connection, transfers finishing within the grace, tunnels closed at its
 * end, and close() ending it all at once. The same through the real
 * server and its signals: e2e_stop_test.ts.
 */
import assert from "node:assert/strict";
import {
  fakePolicy,
  RawClient,
  readRequestHead,
  startRawOrigin,
  startTestProxy,
  writeText,
} from "./helpers/proxy_kit.ts";

/** Answers every request on a connection with "ok", keeping it alive. */
function keepAliveOrigin() {
  return startRawOrigin(async (conn) => {
    let rest = "";
    for (;;) {
      const req = await readRequestHead(conn, rest);
      if (!req) return;
      rest = req.rest;
      await writeText(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    }
  });
}

function get(port: number): string {
  return `GET http://127.0.0.1:${port}/ HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`;
}

async function refusesConnections(port: number): Promise<boolean> {
  try {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    c.close();
    return false;
  } catch {
    return true;
  }
}

Deno.test("shutdown: a kept-alive connection gets Connection: close on its next answer, then it ends", async () => {
  const origin = keepAliveOrigin();
  const proxy = await startTestProxy(fakePolicy());
  const c = await RawClient.open(proxy.addr.port);
  try {
    await c.send(get(origin.port));
    await c.readUntil((t) => t.endsWith("ok"));
    assert.doesNotMatch(c.text, /Connection: close/i);
    assert.ok(proxy.listening);
    const t0 = Date.now();
    const stopped = proxy.shutdown({ graceMs: 5000 });
    assert.equal(proxy.listening, false);
    assert.ok(await refusesConnections(proxy.addr.port), "no new connections");
    c.text = "";
    await c.send(get(origin.port));
    await c.readUntil();
    assert.match(c.text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(c.text, /\r\nConnection: close\r\n/i);
    assert.ok(c.text.endsWith("ok"));
    assert.ok(c.closed, "the proxy closed it after the answer");
    await stopped;
    assert.ok(Date.now() - t0 < 3000, "it did not wait for the grace to end");
  } finally {
    c.close();
    await proxy.close();
    await origin.close();
  }
});

Deno.test("shutdown: a slow download finishes within the grace; a tunnel is closed when it ends", async () => {
  // 10 pieces of 1000 bytes, 100 ms apart.
  const slow = startRawOrigin(async (conn) => {
    await readRequestHead(conn);
    await writeText(conn, "HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n");
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 100));
      await writeText(conn, "x".repeat(1000));
    }
  });
  const echo = startRawOrigin(async (conn) => {
    const buf = new Uint8Array(1024);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) return;
      await writeText(conn, buf.subarray(0, n));
    }
  });
  const policy = fakePolicy();
  const proxy = await startTestProxy(policy, { connectPorts: "*" });
  const download = await RawClient.open(proxy.addr.port);
  const tunnel = await RawClient.open(proxy.addr.port);
  try {
    const target = `127.0.0.1:${echo.port}`;
    await tunnel.send(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
    await tunnel.readUntil((t) => t.includes("\r\n\r\n"));
    await download.send(get(slow.port));
    await download.readUntil((t) => t.includes("\r\n\r\n"));
    const t0 = Date.now();
    const stopped = proxy.shutdown({ graceMs: 2000 });
    const body = await download.readUntil((t) =>
      t.endsWith("x".repeat(1000 * 10))
    );
    assert.ok(body.endsWith("x".repeat(10_000)), "the download completed");
    // The tunnel still works during the grace.
    await tunnel.send("still here");
    await tunnel.readUntil((t) => t.endsWith("still here"));
    await tunnel.readUntil(() => false, 5000);
    const closedAfter = Date.now() - t0;
    assert.ok(tunnel.closed);
    assert.ok(
      closedAfter >= 1800 && closedAfter < 3500,
      `the tunnel was closed at the grace's end (${closedAfter} ms)`,
    );
    await stopped;
    const results = policy.records.map((r) => r.result).sort();
    assert.deepEqual(results, ["TCP_MISS/200", "TCP_TUNNEL/200"]);
  } finally {
    download.close();
    tunnel.close();
    await proxy.close();
    await slow.close();
    await echo.close();
  }
});

Deno.test("shutdown: close() during the grace ends everything at once", async () => {
  const echo = startRawOrigin(async (conn) => {
    await conn.read(new Uint8Array(1024)).catch(() => null);
  });
  const proxy = await startTestProxy(fakePolicy(), { connectPorts: "*" });
  const tunnel = await RawClient.open(proxy.addr.port);
  try {
    const target = `127.0.0.1:${echo.port}`;
    await tunnel.send(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
    await tunnel.readUntil((t) => t.includes("\r\n\r\n"));
    const t0 = Date.now();
    const stopped = proxy.shutdown({ graceMs: 30_000 });
    await new Promise((r) => setTimeout(r, 200));
    await proxy.close();
    await stopped;
    await tunnel.readUntil(() => false, 2000);
    assert.ok(tunnel.closed);
    assert.ok(Date.now() - t0 < 2000, "no waiting for the 30 s grace");
  } finally {
    tunnel.close();
    await proxy.close();
    await echo.close();
  }
});
