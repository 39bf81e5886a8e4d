/**
 * The proxy's guards over real sockets: malformed and ambiguous requests,
 * oversized heads, slow clients, connection limits (and the delivery of the
 * 503 beyond them), shutdown. The policy is a fake (see helpers/proxy_kit.ts
 * for why that is legitimate here).
 */
import assert from "node:assert/strict";
import {
  curl,
  fakePolicy,
  RawClient,
  startRawOrigin,
  startTestProxy,
  writeText,
} from "./helpers/proxy_kit.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function answerTo(port: number, request: string): Promise<RawClient> {
  const c = await RawClient.open(port);
  await c.send(request);
  await c.readUntil();
  c.close();
  return c;
}

Deno.test("malformed and smuggling requests get 400 and close; others are still served", async () => {
  const origin = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("fine"),
  );
  let originRequests = 0;
  const policy = fakePolicy((_) => {
    originRequests++;
    return { allowed: true, route: { kind: "direct" } };
  });
  const proxy = await startTestProxy(policy);
  const u = `http://127.0.0.1:${origin.addr.port}/`;
  try {
    const bad = [
      "NOT A REQUEST LINE AT ALL\r\n\r\n",
      "GET\r\n\r\n",
      `GET ${u} HTTP/1.1\nHost: x\n\n`,
      `POST ${u} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      `POST ${u} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde`,
      `GET ${u} HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n`,
      `GET ${u} HTTP/1.1\r\nHost: x\r\nX-A: 1\r2\r\n\r\n`,
    ];
    for (const req of bad) {
      const c = await answerTo(proxy.addr.port, req);
      assert.match(
        c.text,
        /^HTTP\/1\.1 400 Bad Request\r\n/,
        JSON.stringify(req),
      );
      assert.match(c.text, /Connection: close/);
      assert.ok(c.closed);
    }
    assert.equal(originRequests, 0);
    assert.ok(policy.records.every((r) => r.result === "NONE_NONE/400"));
    const r = await curl(["-x", proxy.url, u]);
    assert.equal(r.out, "fine", r.err);
  } finally {
    await proxy.close();
    await origin.shutdown();
  }
});

Deno.test("an oversized head gets 431, an oversized request line 414", async () => {
  const proxy = await startTestProxy(fakePolicy(), {
    server: { maxHeaderBytes: "8 KiB" },
  });
  try {
    const big = await answerTo(
      proxy.addr.port,
      "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nX-Big: " +
        "a".repeat(10_000) +
        "\r\n\r\n",
    );
    assert.match(big.text, /^HTTP\/1\.1 431 Request Header Fields Too Large/);
    const many = await answerTo(
      proxy.addr.port,
      "GET http://a.test/ HTTP/1.1\r\n" + "X: y\r\n".repeat(150) + "\r\n",
    );
    assert.match(many.text, /^HTTP\/1\.1 431/);
    const line = await answerTo(
      proxy.addr.port,
      `GET http://a.test/${"a".repeat(9000)} HTTP/1.1\r\n\r\n`,
    );
    assert.match(line.text, /^HTTP\/1\.1 414 URI Too Long/);
  } finally {
    await proxy.close();
  }
});

Deno.test("slowloris: a head that does not finish in headerTimeout gets 408 and is closed", async () => {
  const proxy = await startTestProxy(fakePolicy(), {
    server: { headerTimeout: "300ms" },
  });
  const c = await RawClient.open(proxy.addr.port);
  try {
    await c.send("GET http://a.test/ HTTP/1.1\r\nHost: a.te");
    const sendSlowly = (async () => {
      for (let i = 0; i < 40 && !c.closed; i++) {
        await new Promise((r) => setTimeout(r, 50));
        try {
          await c.send("x");
        } catch {
          return;
        }
      }
    })();
    await c.readUntil(() => false, 5000);
    await sendSlowly;
    assert.ok(c.closed, "the proxy closed the slow connection");
    assert.match(c.text, /^HTTP\/1\.1 408 Request Timeout\r\n/);
    assert.match(c.text, /Connection: close/i);
  } finally {
    c.close();
    await proxy.close();
  }
});

Deno.test("an idle kept-alive connection is closed after idleTimeout", async () => {
  const origin = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("ok"),
  );
  const proxy = await startTestProxy(fakePolicy(), {
    server: { idleTimeout: "200ms" },
  });
  const c = await RawClient.open(proxy.addr.port);
  try {
    await c.send(
      `GET http://127.0.0.1:${origin.addr.port}/ HTTP/1.1\r\nHost: x\r\n\r\n`,
    );
    await c.readUntil(() => false, 5000);
    assert.ok(c.closed);
    assert.match(c.text, /\r\n\r\nok$/);
  } finally {
    c.close();
    await proxy.close();
    await origin.shutdown();
  }
});

Deno.test("beyond maxConnections the proxy answers 503 and closes", async () => {
  const proxy = await startTestProxy(fakePolicy(), {
    server: { maxConnections: 2 },
  });
  const held = [
    await RawClient.open(proxy.addr.port),
    await RawClient.open(proxy.addr.port),
  ];
  try {
    await new Promise((r) => setTimeout(r, 50));
    const extra = await RawClient.open(proxy.addr.port);
    held.push(extra);
    const t = await extra.readUntil();
    assert.match(t, /^HTTP\/1\.1 503 Service Unavailable/);
    assert.ok(extra.closed);
  } finally {
    for (const c of held) c.close();
    await proxy.close();
  }
});

/**
 * Sends `parts` on a new connection, pausing between them (an upload as it
 * goes over a network), then reads to the end. Errors are kept, not thrown.
 */
async function sendAndReadAll(port: number, parts: Uint8Array[]) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), 5000);
  const chunks: Uint8Array[] = [];
  let error = "";
  try {
    try {
      for (const [i, part] of parts.entries()) {
        if (i > 0) await sleep(30);
        await writeText(conn, part);
      }
    } catch (e) {
      error = `send: ${(e as Error).message}`;
    }
    const buf = new Uint8Array(64 * 1024);
    for (let i = 0; i < 10_000; i++) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
  } catch (e) {
    error ||= `read: ${(e as Error).message}`;
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
  const text = new TextDecoder().decode(
    new Uint8Array(chunks.flatMap((c) => [...c])),
  );
  return { text, error };
}

Deno.test("the 503 beyond maxConnections arrives whole, without a reset, though the request was unread", async () => {
  const proxy = await startTestProxy(fakePolicy(), {
    server: { maxConnections: 1 },
  });
  const held = await RawClient.open(proxy.addr.port);
  try {
    await held.send("GET http://a.test/ HTTP/1.1\r\nHo"); // accepted, kept busy
    await sleep(50);
    const enc = new TextEncoder();
    const parts = [
      enc.encode(
        "POST http://a.test/upload HTTP/1.1\r\nHost: a.test\r\n" +
          "Content-Length: 20000\r\n\r\n",
      ),
      ...Array.from({ length: 4 }, () => enc.encode("x".repeat(5000))),
    ];
    // Bounded repetitions, at once as overload comes: resets depend on timing.
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => sendAndReadAll(proxy.addr.port, parts)),
    );
    for (const [i, { text, error }] of answers.entries()) {
      assert.equal(error, "", `attempt ${i}: ${error}`);
      assert.match(text, /^HTTP\/1\.1 503 Service Unavailable\r\n/);
      const length = Number(/Content-Length: (\d+)/.exec(text)![1]);
      const body = text.slice(text.indexOf("\r\n\r\n") + 4);
      assert.equal(body.length, length, `attempt ${i}: the whole page`);
      assert.match(body, /too many connections/);
    }
  } finally {
    held.close();
    await proxy.close();
  }
});

function openFds(): number {
  return [...Deno.readDirSync("/proc/self/fd")].length;
}

Deno.test("refused connections held for draining are bounded in number and time", async () => {
  const proxy = await startTestProxy(fakePolicy(), {
    server: { maxConnections: 1 },
  });
  const held = await RawClient.open(proxy.addr.port);
  const refused: RawClient[] = [];
  try {
    await held.send("GET http://a.test/ HTTP/1.1\r\nHo");
    await sleep(50);
    const before = openFds();
    for (let i = 0; i < 100; i++) {
      refused.push(await RawClient.open(proxy.addr.port));
    }
    // Each reads the 503 and the half-close; their sockets stay open.
    for (const c of refused) {
      await c.readUntil();
      assert.match(c.text, /^HTTP\/1\.1 503 /);
    }
    const extra = openFds() - before - refused.length;
    assert.ok(extra <= 64 + 2, `${extra} proxy sockets held for 100 refusals`);
    // A silent client's socket is closed by the proxy after the drain time:
    // writing to it fails then (bounded wait).
    const probe = refused[0];
    let failed = false;
    for (let i = 0; i < 40 && !failed; i++) {
      await sleep(100);
      failed = await probe.conn.write(new Uint8Array(1)).then(
        () => false,
        () => true,
      );
    }
    assert.ok(failed, "the proxy let go of the refused connection");
  } finally {
    for (const c of refused) c.close();
    held.close();
    await proxy.close();
  }
});

Deno.test("close() stops listening and ends open connections and tunnels", async () => {
  const origin = startRawOrigin(async (conn) => {
    await conn.read(new Uint8Array(10));
  });
  const proxy = await startTestProxy(fakePolicy(), { connectPorts: "*" });
  const idle = await RawClient.open(proxy.addr.port);
  const tunnel = await RawClient.open(proxy.addr.port);
  await tunnel.send(`CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\n\r\n`);
  await tunnel.readUntil((t) => t.includes("\r\n\r\n"));
  await proxy.close();
  try {
    await idle.readUntil(() => false, 2000);
    await tunnel.readUntil(() => false, 2000);
    assert.ok(idle.closed && tunnel.closed);
    await assert.rejects(() =>
      Deno.connect({ hostname: "127.0.0.1", port: proxy.addr.port })
    );
  } finally {
    idle.close();
    tunnel.close();
    await origin.close();
  }
});

Deno.test("a dial that takes longer than dialTimeout gives 504", async () => {
  // A listener that never accepts, with its backlog filled: further SYNs are
  // dropped, so a connect hangs the way it does to an unreachable host.
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  const fillers: Deno.Conn[] = [];
  const policy = fakePolicy();
  const proxy = await startTestProxy(policy, { dialTimeout: "300ms" });
  try {
    for (let i = 0; i < 4096; i++) {
      try {
        fillers.push(
          await Deno.connect({
            hostname: "127.0.0.1",
            port,
            signal: AbortSignal.timeout(200),
          }),
        );
      } catch {
        break; // the backlog is full
      }
    }
    const r = await curl(["-i", "-x", proxy.url, `http://127.0.0.1:${port}/`]);
    assert.match(r.out, /^HTTP\/1\.1 504 Gateway Timeout/);
    assert.match(r.out, /took longer than 300 ms/);
    assert.equal(policy.records[0].result, "TCP_MISS/504");
  } finally {
    for (const c of fillers) c.close();
    l.close();
    await proxy.close();
  }
});

Deno.test("a malformed chunked request body gets 400 and the upstream is let go", async () => {
  let upstreamClosed = false;
  let upstreamGot = "";
  const origin = startRawOrigin(async (conn) => {
    const buf = new Uint8Array(1024);
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      upstreamGot += new TextDecoder().decode(buf.subarray(0, n));
    }
    upstreamClosed = true;
  });
  const proxy = await startTestProxy(fakePolicy());
  try {
    // The malformed chunk comes after the request went up (one that comes
    // with the head is refused before dialling: proxy_framing_test.ts).
    const c = await RawClient.open(proxy.addr.port);
    await c.send(
      `POST http://127.0.0.1:${origin.port}/ HTTP/1.1\r\nHost: x\r\n` +
        "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    );
    for (let i = 0; i < 250 && !upstreamGot.includes("hello"); i++) {
      await sleep(20);
    }
    assert.match(upstreamGot, /hello\r\n$/, "the first chunk went up");
    await c.send("zz\r\n");
    await c.readUntil();
    c.close();
    assert.match(c.text, /^HTTP\/1\.1 400 Bad Request/);
    assert.match(c.text, /request body is malformed/);
  } finally {
    await proxy.close();
    await origin.close();
  }
  assert.ok(upstreamClosed);
  assert.doesNotMatch(upstreamGot, /zz/, "the malformed chunk never went up");
});

Deno.test('addr ":port" listens on every interface; IPv4 clients are seen as IPv4', async () => {
  const policy = fakePolicy(() => ({
    allowed: false,
    status: 403,
    reason: "no",
  }));
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  const proxy = await startTestProxy(policy, { server: { addr: `:${port}` } });
  try {
    assert.equal(proxy.addr.port, port);
    const r = await curl([
      "-i",
      "-x",
      `http://127.0.0.1:${port}`,
      "http://a.test/",
    ]);
    assert.match(r.out, /^HTTP\/1\.1 403/);
    assert.equal(policy.facts[0].clientIp, "127.0.0.1");
  } finally {
    await proxy.close();
  }
});

Deno.test("out of file descriptors: the proxy backs off and serves again afterwards", async () => {
  const origin = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("alive"),
  );
  const child = new Deno.Command("bash", {
    args: [
      "-c",
      `ulimit -n 60 && exec "${Deno.execPath()}" run -A ${
        new URL("./helpers/proxy_emfile_child.ts", import.meta.url).pathname
      }`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const clients: Deno.Conn[] = [];
  try {
    const reader = child.stdout.getReader();
    let out = "";
    for (let i = 0; i < 100 && !out.includes("\n"); i++) {
      const { value, done } = await reader.read();
      if (done) break;
      out += new TextDecoder().decode(value);
    }
    reader.releaseLock();
    const port = Number(out.trim());
    assert.ok(port > 0, `child printed ${JSON.stringify(out)}`);
    // More connections than the proxy has descriptors for.
    for (let i = 0; i < 120; i++) {
      try {
        clients.push(
          await Deno.connect({
            hostname: "127.0.0.1",
            port,
            signal: AbortSignal.timeout(300),
          }),
        );
      } catch {
        break;
      }
    }
    await new Promise((r) => setTimeout(r, 300));
    for (const c of clients.splice(0)) c.close();
    // Once descriptors are free again, requests are served.
    let served = "";
    for (let i = 0; i < 30 && served !== "alive"; i++) {
      await new Promise((r) => setTimeout(r, 200));
      served = (await curl([
        "-m",
        "3",
        "-x",
        `http://127.0.0.1:${port}`,
        `http://127.0.0.1:${origin.addr.port}/`,
      ])).out;
    }
    assert.equal(served, "alive");
  } finally {
    for (const c of clients) c.close();
    child.kill("SIGTERM");
    await child.status;
    await child.stdout.cancel().catch(() => {});
    const err = await new Response(child.stderr).text();
    assert.doesNotMatch(err, /panicked/);
    await origin.shutdown();
  }
});

Deno.test("a port in use is a clear error naming the setting", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    await assert.rejects(
      () =>
        startTestProxy(fakePolicy(), {
          server: { addr: `127.0.0.1:${(taken.addr as Deno.NetAddr).port}` },
        }),
      /the proxy cannot listen on "127\.0\.0\.1:\d+": .*change \[proxy\.server\] addr/,
    );
  } finally {
    taken.close();
  }
});
