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
  writeText,
} from "./helpers/proxy_kit.ts";
import { BIG, bigBuffersOut, SMALL, TINY } from "../proxy/_buffers.ts";
import { Reader, type Stream } from "../proxy/_io.ts";
import { poolKey, UpstreamPool } from "../proxy/upstream_pool.ts";
import { relay } from "../proxy/relay.ts";

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

/** A socket whose first `full` reads fill the whole buffer, then wait until closed. */
function bulkStream(full: number): Stream & { closed: boolean } {
  let wake: ((n: number | null) => void) | undefined;
  const s = {
    closed: false,
    read(p: Uint8Array): Promise<number | null> {
      if (s.closed) return Promise.resolve(null);
      if (full-- > 0) return Promise.resolve(p.fill(120).length);
      return new Promise<number | null>((r) => wake = r);
    },
    write: (p: Uint8Array) => Promise.resolve(p.length),
    closeWrite: () => Promise.resolve(),
    close() {
      s.closed = true;
      wake?.(null);
    },
  };
  return s;
}

Deno.test("a reader that grew to the big buffer goes back to a small one when pooled", async () => {
  const conn = bulkStream(3);
  const reader = new Reader(conn);
  for (let i = 0; i < 3; i++) {
    assert.ok(await reader.fill());
    reader.take(reader.buffered);
  }
  assert.equal(reader.buf.length, BIG, "bulk data moved it up");
  const out = bigBuffersOut();
  const pool = new UpstreamPool(4, 60_000);
  const key = poolKey({ kind: "direct" }, "origin.test", 80);
  try {
    pool.put({
      key,
      reader,
      dialed: {
        conn: conn as unknown as Deno.TcpConn,
        viaHttpParent: false,
        hierarchy: "DIRECT/origin.test",
      },
    });
    assert.equal(pool.idleCount(key), 1);
    assert.equal(reader.buf.length, SMALL);
    assert.equal(bigBuffersOut(), out - 1, "the big buffer was given back");
    // Handed out again, it reads what comes (here: the close) as before.
    const up = pool.take(key);
    assert.equal(up?.reader, reader);
    conn.close();
    assert.equal(await reader.fill(), false);
    reader.release();
  } finally {
    pool.close();
  }
  assert.ok(conn.closed);
});

/** A keep-alive origin answering every request with `size` bytes. */
function bulkOrigin(size: number) {
  const body = new Uint8Array(size).fill(121);
  return startRawOrigin(async (conn) => {
    let rest = "";
    for (let i = 0; i < 100; i++) {
      const got = await readRequestHead(conn, rest);
      if (!got) return;
      rest = got.rest;
      await writeText(
        conn,
        `HTTP/1.1 200 OK\r\nContent-Length: ${size}\r\n\r\n`,
      );
      await writeText(conn, body);
    }
  });
}

async function until(ok: () => boolean, tries = 100) {
  for (let i = 0; i < tries && !ok(); i++) await sleep(20);
}

Deno.test("after a bulk download the pooled upstream connection holds no big buffer", async () => {
  const size = 2 * 1024 * 1024;
  const origin = bulkOrigin(size);
  const proxy = await startTestProxy(fakePolicy());
  const out = bigBuffersOut();
  try {
    const url = `http://127.0.0.1:${origin.port}/big`;
    for (let i = 0; i < 2; i++) {
      const r = await new Deno.Command("curl", {
        args: [
          "-sS",
          "-m",
          "20",
          "-o",
          "/dev/null",
          "-w",
          "%{size_download}",
          "-x",
          proxy.url,
          url,
        ],
        stdout: "piped",
      }).output();
      assert.equal(r.code, 0);
      assert.equal(new TextDecoder().decode(r.stdout), String(size));
      await until(() => bigBuffersOut() === out);
      assert.equal(bigBuffersOut(), out, "no big buffer held while idle");
    }
    assert.equal(origin.connections, 1, "the connection was pooled and reused");
  } finally {
    await proxy.close();
    await origin.close();
  }
});

Deno.test("a kept-alive client connection idle after a bulk upload holds no big buffer", async () => {
  const origin = startRawOrigin(async (conn) => {
    const got = await readRequestHead(conn);
    if (!got) return;
    let need = Number(/content-length: (\d+)/i.exec(got.head)![1]) -
      got.rest.length;
    const buf = new Uint8Array(65536);
    while (need > 0) {
      const n = await conn.read(buf);
      if (n === null) return;
      need -= n;
    }
    await writeText(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  });
  const proxy = await startTestProxy(fakePolicy());
  const out = bigBuffersOut();
  const c = await RawClient.open(proxy.addr.port);
  try {
    const size = 2 * 1024 * 1024;
    await c.send(
      `POST http://127.0.0.1:${origin.port}/up HTTP/1.1\r\nHost: x\r\n` +
        `Content-Length: ${size}\r\n\r\n`,
    );
    await c.send(new Uint8Array(size).fill(98));
    await c.readUntil((t) => t.endsWith("\r\n\r\nok"));
    assert.match(c.text, /^HTTP\/1\.1 200 OK/);
    assert.ok(!c.closed);
    await until(() => bigBuffersOut() === out);
    assert.equal(bigBuffersOut(), out, "no big buffer held while idle");
  } finally {
    c.close();
    await proxy.close();
    await origin.close();
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

/** ASCII bytes with a pattern that shows misplaced or lost ranges. */
function patterned(n: number): string {
  const abc = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  let s = "";
  for (let i = 0; s.length < n; i++) s += abc[i % 61] + abc[(i >> 6) % 62];
  return s.slice(0, n);
}

const CLOSE_BODIES: Record<string, string> = {
  "/big": patterned(400_000),
  "/empty": "",
  "/small": "until the end",
};

/** An origin that answers every request with a close-delimited body (no length, no chunked). */
function closeDelimitedOrigin() {
  return startRawOrigin(async (conn) => {
    const got = await readRequestHead(conn);
    if (!got) return;
    const path = /^\S+ (\S+)/.exec(got.head)![1];
    await writeText(
      conn,
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" +
        (CLOSE_BODIES[path] ?? "?"),
    );
    // Returning closes the connection: that ends the body.
  });
}

/** Splits a chunked body; undefined while incomplete. Throws on bad framing. */
function dechunk(s: string): { body: string; rest: string } | undefined {
  let body = "";
  let at = 0;
  for (let i = 0; i < 100_000; i++) {
    const eol = s.indexOf("\r\n", at);
    if (eol < 0) return undefined;
    const size = parseInt(s.slice(at, eol), 16);
    assert.ok(Number.isInteger(size), `bad chunk size line at ${at}`);
    const data = eol + 2;
    if (s.length < data + size + 2) return undefined;
    assert.equal(s.slice(data + size, data + size + 2), "\r\n");
    if (size === 0) return { body, rest: s.slice(data + 2) };
    body += s.slice(data, data + size);
    at = data + size + 2;
  }
  throw new Error("too many chunks");
}

function splitHead(t: string) {
  const end = t.indexOf("\r\n\r\n");
  return end < 0 ? undefined : { head: t.slice(0, end + 2), after: end + 4 };
}

Deno.test("a close-delimited answer reaches an HTTP/1.1 client as chunked; its connection goes on", async () => {
  const origin = closeDelimitedOrigin();
  const policy = fakePolicy();
  const proxy = await startTestProxy(policy);
  const c = await RawClient.open(proxy.addr.port);
  const base = `http://127.0.0.1:${origin.port}`;
  try {
    let from = 0;
    for (const path of ["/big", "/empty", "/small", "/big"]) {
      await c.send(`GET ${base}${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
      let got: { body: string; rest: string } | undefined;
      let head = "";
      await c.readUntil((t) => {
        const h = splitHead(t.slice(from));
        if (!h) return false;
        head = h.head;
        got = dechunk(t.slice(from + h.after));
        return got !== undefined;
      });
      assert.ok(!c.closed, `${path}: the connection stays open`);
      assert.ok(got, `${path}: a complete chunked body`);
      assert.match(head, /^HTTP\/1\.1 200 OK\r\n/);
      assert.match(head, /\r\nTransfer-Encoding: chunked\r\n/i);
      assert.doesNotMatch(head, /Connection: close|Content-Length/i);
      assert.equal(got.body.length, CLOSE_BODIES[path].length, path);
      assert.ok(got.body === CLOSE_BODIES[path], `${path}: the same bytes`);
      assert.equal(got.rest, "", "nothing after the last chunk");
      from = c.text.length;
    }
    assert.equal(origin.connections, 4, "each answer took its own upstream");
    assert.deepEqual(
      policy.records.map((r) => r.result),
      Array(4).fill("TCP_MISS/200"),
    );
  } finally {
    c.close();
    await proxy.close();
    await origin.close();
  }
});

Deno.test("curl gets close-delimited answers whole over one kept-alive proxy connection", async () => {
  const origin = closeDelimitedOrigin();
  const proxy = await startTestProxy(fakePolicy());
  const dir = await Deno.makeTempDir();
  const base = `http://127.0.0.1:${origin.port}`;
  try {
    const r = await new Deno.Command("curl", {
      args: [
        "-sS",
        "-m",
        "20",
        "-x",
        proxy.url,
        "-w",
        "%{http_code} %{num_connects}\n",
        "-o",
        `${dir}/1`,
        `${base}/big`,
        "-o",
        `${dir}/2`,
        `${base}/empty`,
        "-o",
        `${dir}/3`,
        `${base}/small`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(r.stderr);
    assert.equal(r.code, 0, err);
    assert.equal(
      new TextDecoder().decode(r.stdout),
      "200 1\n200 0\n200 0\n",
      "one connection to the proxy for all three",
    );
    for (const [i, path] of ["/big", "/empty", "/small"].entries()) {
      const got = await Deno.readTextFile(`${dir}/${i + 1}`);
      assert.equal(got.length, CLOSE_BODIES[path].length, path);
      assert.ok(got === CLOSE_BODIES[path], `${path}: the same bytes`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
    await proxy.close();
    await origin.close();
  }
});

Deno.test("an HTTP/1.0 client still gets a close-delimited answer as bare data, then a close", async () => {
  const origin = closeDelimitedOrigin();
  const proxy = await startTestProxy(fakePolicy());
  try {
    for (const extra of ["", "Connection: keep-alive\r\n"]) {
      const c = await RawClient.open(proxy.addr.port);
      try {
        await c.send(
          `GET http://127.0.0.1:${origin.port}/big HTTP/1.0\r\n${extra}\r\n`,
        );
        const t = await c.readUntil(() => false, 8000);
        assert.ok(c.closed);
        const h = splitHead(t)!;
        assert.match(h.head, /^HTTP\/1\.1 200 OK\r\n/);
        assert.match(h.head, /Connection: close\r\n/);
        assert.doesNotMatch(h.head, /Transfer-Encoding/i);
        assert.ok(t.slice(h.after) === CLOSE_BODIES["/big"], "bare data");
      } finally {
        c.close();
      }
    }
  } finally {
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

Deno.test("a tunnel waits with tiny buffers; data that fills them moves them up to small, then big", async () => {
  const client = bulkStream(0);
  const upstream = bulkStream(3);
  const c = new Reader(client);
  const u = new Reader(upstream);
  assert.equal(c.buf.length, SMALL, "a connection starts small");
  const done = relay(c, u);
  // The client direction waits for a read that never comes: it waits tiny.
  assert.equal(c.buf.length, TINY);
  // The upstream direction had three full reads: tiny, then small, then big.
  for (let i = 0; i < 50 && u.buf.length !== BIG; i++) await sleep(5);
  assert.equal(u.buf.length, BIG, "bulk moved the upstream reader up");
  client.close();
  upstream.close();
  const moved = await done;
  assert.equal(moved.down, TINY + SMALL + BIG, "every byte went through");
  c.release();
  u.release();
});
