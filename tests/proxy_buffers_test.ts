/**
 * Memory held while waiting: pooled buffers that grow for bulk data and go
 * back to small ones when a connection idles (in the upstream pool,
 * between a client's requests) or waits in a tunnel. The policy is a fake
 * (see helpers/proxy_kit.ts for why that is legitimate here).
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
        hierarchy: "HIER_DIRECT/origin.test",
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
