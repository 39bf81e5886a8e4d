/**
 * Request bodies on their way up, over real sockets: a client that stalls
 * mid-body (408), an upstream that stops taking it (504), `Expect:
 * 100-continue` and its deadlines, and maxRequestBody (413) for declared
 * and chunked bodies (see proxy/_upload.ts). The policy is a fake (see
 * helpers/proxy_kit.ts for why that is legitimate here).
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

/**
 * An origin that takes `delayMs` to say 100 Continue to a request that asked
 * for it, then reads the body and echoes it.
 */
function slowContinueOrigin(delayMs: number) {
  return startRawOrigin(async (conn) => {
    const got = await readRequestHead(conn);
    if (!got) return;
    await sleep(delayMs);
    await writeText(conn, "HTTP/1.1 100 Continue\r\n\r\n");
    let body = got.rest;
    const buf = new Uint8Array(100);
    while (body.length < 5) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) return;
      body += new TextDecoder().decode(buf.subarray(0, n));
    }
    await writeText(
      conn,
      `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
  });
}

Deno.test("a client waiting for 100-continue is not timed out by readTimeout while the origin thinks", async () => {
  const origin = slowContinueOrigin(900);
  const policy = fakePolicy();
  const proxy = await startTestProxy(policy, {
    responseTimeout: "20s",
    server: { readTimeout: "300ms" },
  });
  const c = await RawClient.open(proxy.addr.port);
  try {
    await c.send(
      `POST http://127.0.0.1:${origin.port}/up HTTP/1.1\r\nHost: x\r\n` +
        "Expect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    await c.readUntil((t) => t.includes("\r\n\r\n"), 8000);
    assert.match(c.text, /^HTTP\/1\.1 100 Continue\r\n/, c.text);
    await c.send("hello");
    const t = await c.readUntil((t) => t.endsWith("hello"), 8000);
    assert.match(t, /HTTP\/1\.1 200 OK[\s\S]*\r\n\r\nhello$/, t);
  } finally {
    c.close();
    await proxy.close();
    await origin.close();
  }
});

Deno.test("after a 100 Continue, a client that never sends its body gets 408 after readTimeout", async () => {
  const origin = slowContinueOrigin(0);
  const policy = fakePolicy();
  const proxy = await startTestProxy(policy, {
    responseTimeout: "20s",
    server: { readTimeout: "300ms" },
  });
  const c = await RawClient.open(proxy.addr.port);
  try {
    await c.send(
      `POST http://127.0.0.1:${origin.port}/up HTTP/1.1\r\nHost: x\r\n` +
        "Expect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    const t = await c.readUntil((t) => / 408 /.test(t), 8000);
    assert.match(
      t,
      /^HTTP\/1\.1 100 Continue\r\n[\s\S]*?\r\n\r\nHTTP\/1\.1 408 /,
      t,
    );
    assert.match(policy.records[0]?.result ?? "", /\/408$/);
  } finally {
    c.close();
    await proxy.close();
    await origin.close();
  }
});

/** An origin that reads what it gets and counts the requests it saw. */
function countingOrigin() {
  const seen = { requests: 0, bodyBytes: 0 };
  const origin = startRawOrigin(async (conn) => {
    const got = await readRequestHead(conn);
    if (!got) return;
    seen.requests++;
    seen.bodyBytes += got.rest.length;
    const length = Number(/content-length: *(\d+)/i.exec(got.head)?.[1] ?? -1);
    const buf = new Uint8Array(4096);
    for (let i = 0; i < 10_000 && seen.bodyBytes !== length; i++) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      seen.bodyBytes += n;
      if (/\r\n0\r\n\r\n$/.test(new TextDecoder().decode(buf.subarray(0, n)))) {
        break;
      }
    }
    await writeText(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
      .catch(() => {});
  });
  return Object.assign(origin, { seen });
}

Deno.test("maxRequestBody: a declared body over it gets 413 without reaching the origin; one under it goes through", async () => {
  const origin = countingOrigin();
  const policy = fakePolicy();
  const proxy = await startTestProxy(policy, {
    server: { maxRequestBody: "1 KiB" },
  });
  try {
    const c = await RawClient.open(proxy.addr.port);
    await c.send(
      `POST http://127.0.0.1:${origin.port}/up HTTP/1.1\r\nHost: x\r\n` +
        "Content-Length: 5000\r\n\r\n",
    );
    const t = await c.readUntil(() => false, 5000);
    c.close();
    assert.match(t, /^HTTP\/1\.1 413 /, t);
    assert.match(t, /5000 bytes; this proxy accepts at most 1024/);
    assert.match(t, /Connection: close\r\n/);
    assert.equal(origin.seen.requests, 0);

    const ok = await RawClient.open(proxy.addr.port);
    await ok.send(
      `POST http://127.0.0.1:${origin.port}/up HTTP/1.1\r\nHost: x\r\n` +
        "Content-Length: 1000\r\n\r\n" + "a".repeat(1000),
    );
    const t2 = await ok.readUntil((t) => t.endsWith("ok"), 5000);
    ok.close();
    assert.match(t2, /^HTTP\/1\.1 200 OK/);
    assert.equal(origin.seen.bodyBytes, 1000);
    assert.match(policy.records[0]?.result ?? "", /\/413$/);
  } finally {
    await proxy.close();
    await origin.close();
  }
});

Deno.test("maxRequestBody: a chunked body that grows over it is cut and answered 413", async () => {
  const origin = silentOrigin();
  const policy = fakePolicy();
  const proxy = await startTestProxy(policy, {
    responseTimeout: "20s",
    server: { maxRequestBody: "4 KiB" },
  });
  const c = await RawClient.open(proxy.addr.port);
  try {
    await c.send(
      `POST http://127.0.0.1:${origin.port}/up HTTP/1.1\r\nHost: x\r\n` +
        "Transfer-Encoding: chunked\r\n\r\n",
    );
    const chunk = "400\r\n" + "c".repeat(1024) + "\r\n";
    for (let i = 0; i < 8 && !c.closed; i++) {
      await c.send(chunk).catch(() => {});
      await sleep(20);
    }
    const t = await c.readUntil(() => false, 5000);
    assert.match(t, /^HTTP\/1\.1 413 /, t);
    assert.match(t, /larger than the 4096 bytes/);
    for (let i = 0; i < 100 && !origin.seen.closedByProxy; i++) {
      await sleep(20);
    }
    assert.ok(origin.seen.closedByProxy, "the upstream connection is closed");
    assert.ok(
      origin.seen.bodyBytes <= 4096,
      `at most the limit went upstream (${origin.seen.bodyBytes})`,
    );
  } finally {
    c.close();
    await proxy.close();
    await origin.close();
  }
});
