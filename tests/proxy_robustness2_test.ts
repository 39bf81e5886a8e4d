/**
 * The proxy under misbehaving peers and idle resources, over real sockets:
 * a client that stalls mid-body, memory held by idle pooled connections,
 * the overload answer's delivery, close-delimited answers on kept-alive
 * connections. The policy is a fake (see helpers/proxy_kit.ts for why that
 * is legitimate here).
 */
import assert from "node:assert/strict";
import {
  fakePolicy,
  RawClient,
  readRequestHead,
  startRawOrigin,
  startTestProxy,
} from "./helpers/proxy_kit.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An origin that reads the request and never answers; notes when the proxy lets go. */
function silentOrigin() {
  const seen = { bodyBytes: 0, closedByProxy: false };
  const origin = startRawOrigin(async (conn) => {
    const got = await readRequestHead(conn);
    if (!got) return;
    seen.bodyBytes += got.rest.length;
    const buf = new Uint8Array(4096);
    for (let i = 0; i < 10_000; i++) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      seen.bodyBytes += n;
    }
    seen.closedByProxy = true;
  });
  return Object.assign(origin, { seen });
}

for (const sent of [10, 0]) {
  Deno.test(`a client that stalls mid-body (${sent} of 1000 bytes sent) gets 408 after readTimeout`, async () => {
    const origin = silentOrigin();
    const policy = fakePolicy();
    const proxy = await startTestProxy(policy, {
      responseTimeout: "20s",
      server: { readTimeout: "400ms" },
    });
    const c = await RawClient.open(proxy.addr.port);
    try {
      await c.send(
        `POST http://127.0.0.1:${origin.port}/up HTTP/1.1\r\nHost: x\r\n` +
          "Content-Length: 1000\r\n\r\n" + "b".repeat(sent),
      );
      const started = Date.now();
      const t = await c.readUntil(() => false, 8000);
      const took = Date.now() - started;
      assert.match(t, /^HTTP\/1\.1 408 Request Timeout\r\n/, t);
      assert.match(t, /request body stopped arriving/);
      assert.match(t, /Connection: close\r\n/);
      assert.ok(c.closed, "the client connection is closed");
      assert.ok(
        took < 8000,
        `answered after readTimeout, not later (${took} ms)`,
      );
      for (let i = 0; i < 100 && !origin.seen.closedByProxy; i++) {
        await sleep(20);
      }
      assert.ok(origin.seen.closedByProxy, "the upstream connection is closed");
      assert.equal(origin.seen.bodyBytes, sent);
      assert.equal(policy.records.length, 1);
      assert.match(policy.records[0].result, /\/408$/);
    } finally {
      c.close();
      await proxy.close();
      await origin.close();
    }
  });
}

Deno.test("an upstream that stops taking the request body gives 504 after writeTimeout, not 408", async () => {
  const done = Promise.withResolvers<void>();
  const origin = startRawOrigin(async (conn) => {
    await readRequestHead(conn);
    await done.promise; // takes nothing more: the proxy's writes stall
  });
  const policy = fakePolicy();
  const proxy = await startTestProxy(policy, {
    responseTimeout: "20s",
    server: { readTimeout: "5s", writeTimeout: "400ms" },
  });
  const c = await RawClient.open(proxy.addr.port);
  const size = 64 * 1024 * 1024;
  try {
    const sending = (async () => {
      await c.send(
        `POST http://127.0.0.1:${origin.port}/up HTTP/1.1\r\nHost: x\r\n` +
          `Content-Length: ${size}\r\n\r\n`,
      );
      const block = new Uint8Array(64 * 1024).fill(98);
      for (let sent = 0; sent < size && !c.closed; sent += block.length) {
        await c.send(block);
      }
    })().catch(() => {});
    const t = await c.readUntil(() => false, 8000);
    c.close();
    await sending;
    assert.match(t, /^HTTP\/1\.1 504 Gateway Timeout\r\n/, t.slice(0, 300));
    assert.match(t, /did not take the request body within 400 ms/);
    assert.match(policy.records[0].result, /\/504$/);
  } finally {
    done.resolve();
    c.close();
    await proxy.close();
    await origin.close();
  }
});
