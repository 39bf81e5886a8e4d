/**
 * The decision's up-meter (bytes sent upstream: request bodies, the
 * client's direction of tunnels and upgraded connections) and its note in
 * the access log, over real sockets. The policy is a fake (see
 * helpers/proxy_kit.ts for why that is legitimate here); the quota that
 * implements the up-meter is tested through the real server in
 * e2e_quota_sites_test.ts.
 */
import assert from "node:assert/strict";
import type { Meter } from "../proxy/mod.ts";
import {
  fakePolicy,
  quotaMeter,
  RawClient,
  readRequestHead,
  startRawOrigin,
  startTestProxy,
  writeText,
} from "./helpers/proxy_kit.ts";

const ALL_PORTS = { connectPorts: "*" };

/** An origin that reads a Content-Length body and answers its size. */
function countingOrigin() {
  const seen = { bodies: [] as number[] };
  const origin = startRawOrigin(async (conn) => {
    const got = await readRequestHead(conn);
    if (!got) return;
    const length = Number(/content-length: (\d+)/i.exec(got.head)?.[1] ?? 0);
    let body = got.rest.length;
    const buf = new Uint8Array(64 * 1024);
    while (body < length) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      body += n;
    }
    seen.bodies.push(body);
    if (body < length) return;
    const answer = `got ${body}\n`;
    await writeText(
      conn,
      `HTTP/1.1 200 OK\r\nContent-Length: ${answer.length}\r\n\r\n${answer}`,
    );
  });
  return Object.assign(origin, { seen });
}

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

/** A meter that counts and lets everything go. */
function counter(): Meter & { seen: number; calls: number } {
  const m = {
    seen: 0,
    calls: 0,
    chunk(n: number) {
      m.seen += n;
      m.calls++;
      return 0;
    },
  };
  return m;
}

/** A meter that lets `rate` bytes a second through (a bucket without burst). */
function rateMeter(rate: number): Meter & { seen: number } {
  const t0 = performance.now();
  const m = {
    seen: 0,
    chunk(n: number) {
      m.seen += n;
      const due = t0 + (m.seen / rate) * 1000;
      return Math.max(0, Math.ceil(due - performance.now()));
    },
  };
  return m;
}

function post(port: number, body: number): string {
  return `POST http://127.0.0.1:${port}/up HTTP/1.1\r\nHost: x\r\n` +
    `Content-Length: ${body}\r\n\r\n` + "u".repeat(body);
}

Deno.test("upMeter: every byte of a request body sent upstream is counted; the download meter counts the answer only", async () => {
  const origin = countingOrigin();
  const up = counter();
  const down = counter();
  const policy = fakePolicy(() => ({
    allowed: true,
    route: { kind: "direct" },
    meter: down,
    upMeter: up,
    user: "user0",
    note: "slowed",
  }));
  const proxy = await startTestProxy(policy);
  const c = await RawClient.open(proxy.addr.port);
  try {
    const size = 300 * 1024 + 7;
    await c.send(post(origin.port, size));
    await c.readUntil((t) => t.endsWith(`got ${size}\n`));
    assert.match(c.text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.equal(up.seen, size);
    assert.ok(up.calls >= 1);
    assert.ok(down.seen > 0 && down.seen < 200, `${down.seen}`);
  } finally {
    c.close();
    await proxy.close();
    await origin.close();
  }
  // The note is one more tag of the result code.
  assert.equal(policy.records[0].result, "TCP_MISS_SLOWED/200");
  assert.equal(policy.records[0].user, "user0");
});

Deno.test("upMeter: a wait throttles the body going up; STOP cuts it and the client is told why", async () => {
  const origin = countingOrigin();
  let meter: Meter = rateMeter(256 * 1024);
  const policy = fakePolicy(() => ({
    allowed: true,
    route: { kind: "direct" },
    upMeter: meter,
  }));
  const proxy = await startTestProxy(policy);
  try {
    // 512 KiB at 256 KiB/s: about 2 s, never much less.
    const c = await RawClient.open(proxy.addr.port);
    const started = performance.now();
    await c.send(post(origin.port, 512 * 1024));
    await c.readUntil((t) => t.endsWith(`got ${512 * 1024}\n`), 10_000);
    c.close();
    const seconds = (performance.now() - started) / 1000;
    assert.match(c.text, /got 524288\n$/);
    assert.ok(seconds >= 1.5, `512 KiB went up in ${seconds.toFixed(2)} s`);

    meter = quotaMeter(100 * 1024);
    const cut = await RawClient.open(proxy.addr.port);
    await cut.send(post(origin.port, 1024 * 1024)).catch(() => {});
    await cut.readUntil(() => false, 5000);
    cut.close();
    assert.match(cut.text, /^HTTP\/1\.1 403 /, cut.text);
    assert.match(cut.text, /The request body was stopped: quota reached/);
    const last = origin.seen.bodies.at(-1) ?? 0;
    assert.ok(last < 1024 * 1024, `the origin got ${last} bytes`);
  } finally {
    await proxy.close();
    await origin.close();
  }
  assert.ok(
    policy.records.some((r) => r.result === "TCP_MISS/403"),
    policy.records.map((r) => r.line).join("\n"),
  );
});

Deno.test("upMeter: a tunnel's client direction is counted, bytes sent with the CONNECT head too; the note is logged", async () => {
  const origin = echoOrigin();
  const up = counter();
  const down = counter();
  const policy = fakePolicy(() => ({
    allowed: true,
    route: { kind: "direct" },
    meter: down,
    upMeter: up,
    note: "slowed",
  }));
  const proxy = await startTestProxy(policy, ALL_PORTS);
  const c = await RawClient.open(proxy.addr.port);
  try {
    const target = `127.0.0.1:${origin.port}`;
    await c.send(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\nearly`);
    await c.readUntil((t) => t.endsWith("early"));
    const bulk = "b".repeat(100_000);
    await c.send(bulk);
    await c.readUntil((t) => t.endsWith("early" + bulk));
    assert.equal(up.seen, 5 + 100_000);
    assert.equal(down.seen, 5 + 100_000);
  } finally {
    c.close();
    await proxy.close();
    await origin.close();
  }
  assert.equal(policy.records[0].result, "TCP_TUNNEL_SLOWED/200");
});

Deno.test("upMeter: a STOP in a tunnel's client direction cuts the tunnel", async () => {
  const origin = echoOrigin();
  const policy = fakePolicy(() => ({
    allowed: true,
    route: { kind: "direct" },
    upMeter: quotaMeter(1000),
  }));
  const proxy = await startTestProxy(policy, ALL_PORTS);
  const c = await RawClient.open(proxy.addr.port);
  try {
    const target = `127.0.0.1:${origin.port}`;
    await c.send(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
    await c.readUntil((t) => t.includes("\r\n\r\n"));
    await c.send("x".repeat(500));
    await c.readUntil((t) => t.endsWith("x".repeat(500)));
    await c.send("y".repeat(2000)).catch(() => {});
    await c.readUntil(() => false, 3000);
    assert.ok(c.closed, "the tunnel is closed");
    assert.ok(
      !c.text.includes("y".repeat(2000)),
      "the cut bytes never came back",
    );
  } finally {
    c.close();
    await proxy.close();
    await origin.close();
  }
  assert.equal(policy.records[0].result, "TCP_TUNNEL_ABORTED/200");
});

Deno.test("upMeter: an upgraded connection's client direction is counted", async () => {
  // An origin that switches protocols, then echoes.
  const origin = startRawOrigin(async (conn) => {
    const got = await readRequestHead(conn);
    if (!got) return;
    await writeText(
      conn,
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n",
    );
    const buf = new Uint8Array(16 * 1024);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) return;
      await writeText(conn, buf.subarray(0, n));
    }
  });
  const up = counter();
  const policy = fakePolicy(() => ({
    allowed: true,
    route: { kind: "direct" },
    upMeter: up,
  }));
  const proxy = await startTestProxy(policy);
  const c = await RawClient.open(proxy.addr.port);
  try {
    await c.send(
      `GET http://127.0.0.1:${origin.port}/ws HTTP/1.1\r\nHost: x\r\n` +
        "Connection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    );
    await c.readUntil((t) => t.includes("\r\n\r\n"));
    assert.match(c.text, /^HTTP\/1\.1 101 /);
    await c.send("z".repeat(4000));
    await c.readUntil((t) => t.endsWith("z".repeat(4000)));
    assert.equal(up.seen, 4000);
  } finally {
    c.close();
    await proxy.close();
    await origin.close();
  }
});
