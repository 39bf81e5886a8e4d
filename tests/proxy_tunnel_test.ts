/**
 * CONNECT tunnels and upgrades over real sockets. The policy is a fake (see
 * helpers/proxy_kit.ts for why that is legitimate here).
 */
import assert from "node:assert/strict";
import {
  curl,
  fakePolicy,
  quotaMeter,
  RawClient,
  readRequestHead,
  startRawOrigin,
  startTestProxy,
  throttleMeter,
  writeText,
} from "./helpers/proxy_kit.ts";

const ALL_PORTS = { connectPorts: "*" };

/** An origin that echoes what it reads until the peer's FIN. */
function echoOrigin() {
  return startRawOrigin(async (conn) => {
    const buf = new Uint8Array(16 * 1024);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) return;
      await writeText(conn, buf.subarray(0, n));
    }
  });
}

async function connect(proxyPort: number, target: string): Promise<RawClient> {
  const c = await RawClient.open(proxyPort);
  await c.send(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
  await c.readUntil((t) => t.includes("\r\n\r\n"));
  return c;
}

Deno.test("CONNECT opens a tunnel; bytes sent with the head go first", async () => {
  const origin = echoOrigin();
  const policy = fakePolicy();
  const proxy = await startTestProxy(policy, ALL_PORTS);
  const c = await RawClient.open(proxy.addr.port);
  try {
    const target = `127.0.0.1:${origin.port}`;
    // A client may send its first bytes (a TLS hello) right after the head.
    await c.send(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\nearly`);
    await c.readUntil((t) => t.endsWith("early"));
    assert.match(
      c.text,
      /^HTTP\/1\.1 200 Connection established\r\n\r\nearly$/,
    );
    await c.send(" ping");
    await c.readUntil((t) => t.endsWith("early ping"));
    assert.equal(policy.facts[0].method, "CONNECT");
    assert.equal(policy.facts[0].url, target);
    assert.equal(policy.facts[0].port, origin.port);
  } finally {
    c.close();
    await proxy.close();
    await origin.close();
  }
  assert.equal(policy.records[0].result, "TCP_TUNNEL/200");
  assert.equal(policy.records[0].hierarchy, "HIER_DIRECT/127.0.0.1");
});

Deno.test("curl --proxytunnel reaches an HTTP origin through CONNECT", async () => {
  const origin = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("through the tunnel\n"),
  );
  const proxy = await startTestProxy(fakePolicy(), ALL_PORTS);
  try {
    const r = await curl([
      "-p",
      "-x",
      proxy.url,
      `http://127.0.0.1:${origin.addr.port}/`,
    ]);
    assert.equal(r.out, "through the tunnel\n", r.err);
  } finally {
    await proxy.close();
    await origin.shutdown();
  }
});

Deno.test("curl fetches an https origin through CONNECT (real TLS end to end)", async () => {
  const dir = await Deno.makeTempDir();
  const gen = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      `${dir}/key.pem`,
      "-out",
      `${dir}/cert.pem`,
      "-days",
      "1",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=IP:127.0.0.1",
    ],
    stdout: "null",
    stderr: "null",
  }).output();
  assert.equal(gen.code, 0, "openssl made a certificate");
  const origin = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: await Deno.readTextFile(`${dir}/cert.pem`),
    key: await Deno.readTextFile(`${dir}/key.pem`),
    onListen() {},
  }, () => new Response("secret hello\n"));
  const policy = fakePolicy();
  const proxy = await startTestProxy(policy, ALL_PORTS);
  try {
    const r = await curl([
      "--cacert",
      `${dir}/cert.pem`,
      "-x",
      proxy.url,
      `https://127.0.0.1:${origin.addr.port}/`,
    ]);
    assert.equal(r.out, "secret hello\n", r.err);
    assert.equal(policy.facts[0].method, "CONNECT");
    // The tunnel is logged when both directions have ended, which may be a
    // moment after curl has its answer and left.
    for (let i = 0; i < 100 && policy.records.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(policy.records[0]?.result, "TCP_TUNNEL/200");
  } finally {
    await proxy.close();
    await origin.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CONNECT to a port not in connectPorts is refused with 403", async () => {
  const policy = fakePolicy();
  const proxy = await startTestProxy(policy);
  const c = await RawClient.open(proxy.addr.port);
  try {
    await c.send("CONNECT 127.0.0.1:25 HTTP/1.1\r\nHost: 127.0.0.1:25\r\n\r\n");
    const t = await c.readUntil();
    assert.match(t, /^HTTP\/1\.1 403 Forbidden/);
    assert.match(t, /CONNECT to port 25 is not allowed/);
    assert.ok(c.closed);
    assert.equal(policy.facts.length, 0, "refused before asking the policy");
  } finally {
    c.close();
    await proxy.close();
  }
});

Deno.test("a refused CONNECT gets the refusal and the connection closes", async () => {
  const proxy = await startTestProxy(
    fakePolicy(() => ({
      allowed: false,
      status: 403,
      reason: "Not during exams.",
    })),
    ALL_PORTS,
  );
  const c = await RawClient.open(proxy.addr.port);
  try {
    await c.send("CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n");
    const t = await c.readUntil();
    assert.match(t, /^HTTP\/1\.1 403 Forbidden/);
    assert.match(t, /Not during exams\./);
    assert.ok(c.closed);
  } finally {
    c.close();
    await proxy.close();
  }
});

Deno.test("half-close: the client's FIN reaches the origin, its late reply comes back", async () => {
  const origin = startRawOrigin(async (conn) => {
    let total = 0;
    const buf = new Uint8Array(16 * 1024);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      total += n;
    }
    // Reply only after the client's FIN.
    await writeText(conn, `received ${total} bytes`);
  });
  const proxy = await startTestProxy(fakePolicy(), ALL_PORTS);
  const c = await connect(proxy.addr.port, `127.0.0.1:${origin.port}`);
  try {
    c.text = "";
    await c.send("x".repeat(100_000));
    await c.conn.closeWrite();
    const t = await c.readUntil();
    assert.equal(t, "received 100000 bytes");
    assert.ok(c.closed);
  } finally {
    c.close();
    await proxy.close();
    await origin.close();
  }
});

Deno.test("a meter STOP cuts a tunnel: both sides are closed", async () => {
  let originSawClose = false;
  const origin = startRawOrigin(async (conn) => {
    const block = new Uint8Array(64 * 1024);
    try {
      for (let i = 0; i < 200; i++) await writeText(conn, block);
    } catch {
      originSawClose = true;
    }
  });
  const meter = quotaMeter(300_000);
  const policy = fakePolicy(() => ({
    allowed: true,
    route: { kind: "direct" },
    meter,
  }));
  const proxy = await startTestProxy(policy, ALL_PORTS);
  const c = await connect(proxy.addr.port, `127.0.0.1:${origin.port}`);
  try {
    await c.readUntil(() => false, 10_000);
    assert.ok(c.closed);
    assert.ok(c.text.length < 300_000 + 300_000, `got ${c.text.length}`);
    assert.ok(meter.seen > 300_000);
  } finally {
    c.close();
    await proxy.close();
    await origin.close();
  }
  assert.ok(originSawClose, "the origin side was closed too");
  assert.equal(policy.records[0].result, "TCP_TUNNEL_ABORTED/200");
});

Deno.test("a throttling meter slows a tunnel down without losing bytes", async () => {
  const origin = startRawOrigin(async (conn) => {
    for (let i = 0; i < 5; i++) {
      await writeText(conn, "x".repeat(10));
      await new Promise((r) => setTimeout(r, 5));
    }
  });
  const meter = throttleMeter(40);
  const proxy = await startTestProxy(
    fakePolicy(() => ({ allowed: true, route: { kind: "direct" }, meter })),
    ALL_PORTS,
  );
  const c = await connect(proxy.addr.port, `127.0.0.1:${origin.port}`);
  try {
    const t0 = performance.now();
    await c.readUntil((t) => t.endsWith("x".repeat(50)), 10_000);
    const took = performance.now() - t0;
    assert.match(c.text, /\r\n\r\nx{50}$/);
    // Each chunk from upstream waited at least 40 ms before it was passed
    // on: a lower bound, never flaky.
    assert.ok(meter.calls >= 2);
    assert.ok(
      took >= 40 * (meter.calls - 1),
      `took ${took} ms for ${meter.calls} chunks`,
    );
  } finally {
    c.close();
    await proxy.close();
    await origin.close();
  }
});

Deno.test("Upgrade (WebSocket-like): after 101 the connection is a tunnel", async () => {
  const origin = startRawOrigin(async (conn) => {
    const got = await readRequestHead(conn);
    assert.match(got!.head, /Upgrade: websocket/i);
    assert.match(got!.head, /Connection: Upgrade/i);
    await writeText(
      conn,
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhi",
    );
    const buf = new Uint8Array(1024);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) return;
      await writeText(conn, buf.subarray(0, n));
    }
  });
  const policy = fakePolicy();
  const proxy = await startTestProxy(policy);
  const c = await RawClient.open(proxy.addr.port);
  try {
    await c.send(
      `GET http://127.0.0.1:${origin.port}/ws HTTP/1.1\r\nHost: x\r\n` +
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    await c.readUntil((t) => t.endsWith("hi"));
    assert.match(c.text, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    assert.match(c.text, /Upgrade: websocket/);
    await c.send("frame");
    await c.readUntil((t) => t.endsWith("hiframe"));
  } finally {
    c.close();
    await proxy.close();
    await origin.close();
  }
  assert.equal(policy.records[0].result, "TCP_MISS/101");
});

Deno.test("maxTunnelsPerClient: one tunnel too many gets 503", async () => {
  const origin = echoOrigin();
  const proxy = await startTestProxy(fakePolicy(), {
    ...ALL_PORTS,
    maxTunnelsPerClient: 2,
  });
  const target = `127.0.0.1:${origin.port}`;
  const open: RawClient[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      open.push(await connect(proxy.addr.port, target));
    }
    const third = await RawClient.open(proxy.addr.port);
    open.push(third);
    await third.send(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
    const t = await third.readUntil();
    assert.match(t, /^HTTP\/1\.1 503/);
    assert.match(t, /Too many tunnels/);
    open[0].close();
    await new Promise((r) => setTimeout(r, 100));
    const again = await connect(proxy.addr.port, target);
    open.push(again);
    assert.match(again.text, /^HTTP\/1\.1 200/);
  } finally {
    for (const c of open) c.close();
    await proxy.close();
    await origin.close();
  }
});

Deno.test("load: 2000 tunnels opened at once are all answered", async () => {
  const origin = echoOrigin();
  const proxy = await startTestProxy(fakePolicy(), {
    ...ALL_PORTS,
    maxTunnelsPerClient: 5000,
  });
  const target = `127.0.0.1:${origin.port}`;
  const clients: RawClient[] = [];
  const N = 2000;
  try {
    const results = await Promise.all(
      Array.from({ length: N }, async (_, i) => {
        const c = await RawClient.open(proxy.addr.port);
        clients.push(c);
        await c.send(
          `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\nmsg${i};`,
        );
        const t = await c.readUntil((t) => t.endsWith(`msg${i};`), 30_000);
        return t.startsWith("HTTP/1.1 200") && t.endsWith(`msg${i};`);
      }),
    );
    assert.equal(results.filter((ok) => ok).length, N);
  } finally {
    for (const c of clients) c.close();
    await proxy.close();
    await origin.close();
  }
});
