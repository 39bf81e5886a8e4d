/**
 * The dialers against real sockets: direct (Deno and node:net with a source
 * address), tinyproxy as HTTP parent (CONNECT and absolute-form GET, Basic
 * auth), microsocks as SOCKS5 parent (no auth, user/password), and failures:
 * dead parents, refusals, silent parents (timeouts).
 */
import assert from "node:assert/strict";
import { dial, type Dialed, DialError } from "../proxy/dial.ts";
import type { Stream } from "../proxy/_io.ts";
import { parseIpv4, parseIpv6 } from "../proxy/_socks5.ts";
import { PrefixedConn } from "../proxy/_parent_http.ts";
import { startOrigin } from "./helpers/origin.ts";
import {
  requireBinary,
  startEcho,
  startMicrosocks,
  startPeerReporter,
  startScriptedParent,
  startSilent,
  startTcpServer,
  startTinyproxy,
  startUnreachable,
} from "./helpers/dial_servers.ts";
import { freePort } from "./helpers/local_servers.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const TUNNEL = { timeoutMs: 5000, purpose: "tunnel" } as const;
const HTTP = { timeoutMs: 5000, purpose: "http" } as const;

async function writeAll(conn: Stream, p: Uint8Array) {
  let at = 0;
  while (at < p.length) at += await conn.write(p.subarray(at));
}

/** Reads until `n` bytes or end of stream (bounded by n). */
async function readBytes(conn: Stream, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let at = 0;
  while (at < n) {
    const k = await conn.read(out.subarray(at));
    if (k === null) break;
    at += k;
  }
  return out.subarray(0, at);
}

/** Reads to end of stream, at most `limit` bytes. */
async function readToEnd(conn: Stream, limit = 1 << 20): Promise<string> {
  const buf = new Uint8Array(limit);
  let at = 0;
  while (at < limit) {
    const k = await conn.read(buf.subarray(at));
    if (k === null) break;
    at += k;
  }
  return dec.decode(buf.subarray(0, at));
}

async function echoes(conn: Stream, text = "ping through the route\n") {
  await writeAll(conn, enc.encode(text));
  assert.equal(dec.decode(await readBytes(conn, text.length)), text);
}

async function dialError(
  p: Promise<Dialed>,
): Promise<DialError> {
  try {
    const d = await p;
    d.conn.close();
  } catch (e) {
    assert.ok(e instanceof DialError, `not a DialError: ${e}`);
    return e;
  }
  assert.fail("dial succeeded where it should have failed");
}

/** A plain GET in absolute form over a connection to an HTTP parent; returns the response text. */
async function getVia(
  conn: Stream,
  url: string,
  authorization?: string,
): Promise<string> {
  const u = new URL(url);
  const lines = [
    `GET ${url} HTTP/1.1`,
    `Host: ${u.host}`,
    `Connection: close`,
    ...(authorization ? [`Proxy-Authorization: ${authorization}`] : []),
  ];
  await writeAll(conn, enc.encode(lines.join("\r\n") + "\r\n\r\n"));
  return await readToEnd(conn);
}

Deno.test("direct: connects, names the peer, refused port is a clear 502 error", async () => {
  const echo = startEcho();
  try {
    const d = await dial(
      { kind: "direct" },
      { host: "127.0.0.1", port: echo.port },
      TUNNEL,
    );
    try {
      assert.equal(d.hierarchy, "HIER_DIRECT/127.0.0.1");
      assert.equal(d.viaHttpParent, false);
      await echoes(d.conn);
    } finally {
      d.conn.close();
    }
  } finally {
    await echo.close();
  }
  const port = freePort();
  const e = await dialError(
    dial({ kind: "direct" }, { host: "127.0.0.1", port }, TUNNEL),
  );
  assert.equal(e.timedOut, false);
  assert.equal(
    e.message,
    `cannot connect to 127.0.0.1:${port}: connection refused`,
  );
});

Deno.test("direct: IPv6 literal target without brackets", async () => {
  const echo = startEcho({ hostname: "::1" });
  try {
    const d = await dial(
      { kind: "direct" },
      { host: "::1", port: echo.port },
      TUNNEL,
    );
    try {
      assert.equal(d.hierarchy, "HIER_DIRECT/::1");
      await echoes(d.conn);
    } finally {
      d.conn.close();
    }
  } finally {
    await echo.close();
  }
});

Deno.test("direct with localAddress: the origin sees the source address 127.0.0.2", async () => {
  const reporter = startPeerReporter();
  try {
    const d = await dial(
      { kind: "direct", localAddress: "127.0.0.2" },
      { host: "127.0.0.1", port: reporter.port },
      TUNNEL,
    );
    try {
      assert.equal(d.hierarchy, "HIER_DIRECT/127.0.0.1");
      assert.equal(await readToEnd(d.conn), "127.0.0.2\n");
      // After the end of stream, reads keep saying so.
      assert.equal(await d.conn.read(new Uint8Array(8)), null);
    } finally {
      d.conn.close();
    }
    // Without it, the default source address.
    const plain = await dial(
      { kind: "direct" },
      { host: "127.0.0.1", port: reporter.port },
      TUNNEL,
    );
    try {
      assert.equal(await readToEnd(plain.conn), "127.0.0.1\n");
    } finally {
      plain.conn.close();
    }
  } finally {
    await reporter.close();
  }
});

Deno.test("direct with localAddress: a name resolves to the source address's family", async () => {
  const reporter = startPeerReporter();
  try {
    const d = await dial(
      { kind: "direct", localAddress: "127.0.0.3" },
      { host: "localhost", port: reporter.port },
      TUNNEL,
    );
    try {
      assert.equal(await readToEnd(d.conn), "127.0.0.3\n");
    } finally {
      d.conn.close();
    }
  } finally {
    await reporter.close();
  }
});

Deno.test("direct with localAddress: 8 MiB both ways through node:net, slow reader, half-close", async () => {
  const echo = startEcho();
  try {
    const d = await dial(
      { kind: "direct", localAddress: "127.0.0.2" },
      { host: "127.0.0.1", port: echo.port },
      TUNNEL,
    );
    try {
      const total = 8 * 1024 * 1024;
      const data = new Uint8Array(total);
      for (let i = 0; i < total; i++) data[i] = (i * 7 + (i >> 13)) & 0xff;
      const sending = (async () => {
        for (let at = 0; at < total; at += 100_000) {
          await writeAll(
            d.conn,
            data.subarray(at, Math.min(total, at + 100_000)),
          );
        }
        // The echo answers what is left after our FIN: half-close must keep reading.
        await d.conn.closeWrite();
      })();
      // Let more than the 1 MiB high-water mark pile up before reading.
      await new Promise((r) => setTimeout(r, 300));
      const got = new Uint8Array(total + 1);
      let at = 0;
      const buf = new Uint8Array(37_000); // odd size: copies across chunk borders
      for (let i = 0; i < total; i++) {
        const n = await d.conn.read(buf);
        if (n === null) break;
        got.set(buf.subarray(0, n), at);
        at += n;
      }
      await sending;
      assert.equal(at, total);
      assert.deepEqual(got.subarray(0, total), data);
    } finally {
      d.conn.close();
    }
  } finally {
    await echo.close();
  }
});

Deno.test("node:net conn: close() ends a pending read with null, writes after close fail", async () => {
  const silent = startSilent();
  try {
    const d = await dial(
      { kind: "direct", localAddress: "127.0.0.2" },
      { host: "127.0.0.1", port: silent.port },
      TUNNEL,
    );
    const pending = d.conn.read(new Uint8Array(16));
    d.conn.close();
    assert.equal(await pending, null);
    d.conn.close(); // twice is harmless
    await assert.rejects(d.conn.write(enc.encode("x")));
  } finally {
    await silent.close();
  }
});

Deno.test("direct with localAddress not on this machine: says which address to check", async () => {
  const echo = startEcho();
  try {
    const e = await dialError(dial(
      { kind: "direct", localAddress: "192.0.2.1" },
      { host: "127.0.0.1", port: echo.port },
      TUNNEL,
    ));
    assert.equal(e.timedOut, false);
    assert.match(
      e.message,
      /^cannot connect to 127\.0\.0\.1:\d+ from source address 192\.0\.2\.1: it cannot be bound \(E[A-Z]+\); is 192\.0\.2\.1 an address of this machine\?$/,
    );
  } finally {
    await echo.close();
  }
});

Deno.test("tinyproxy: CONNECT tunnel to an echo server (IPv4 and IPv6 targets), and the http purpose", async () => {
  const tiny = await startTinyproxy();
  const echo = startEcho();
  const echo6 = startEcho({ hostname: "::1" });
  const origin = startOrigin();
  try {
    const route = {
      kind: "parent" as const,
      proxyUrl: `http://127.0.0.1:${tiny.port}`,
    };
    const d = await dial(route, { host: "127.0.0.1", port: echo.port }, TUNNEL);
    try {
      assert.equal(d.hierarchy, "FIRSTUP_PARENT/127.0.0.1");
      assert.equal(d.viaHttpParent, false);
      await echoes(d.conn);
      await echoes(d.conn, "a second round\n");
    } finally {
      d.conn.close();
    }

    // "::1" is sent as CONNECT [::1]:port.
    const d6 = await dial(route, { host: "::1", port: echo6.port }, TUNNEL);
    try {
      await echoes(d6.conn);
    } finally {
      d6.conn.close();
    }

    const h = await dial(route, { host: "127.0.0.1", port: origin.port }, HTTP);
    try {
      assert.equal(h.viaHttpParent, true);
      assert.equal(h.parentAuthorization, undefined);
      assert.equal(h.hierarchy, "FIRSTUP_PARENT/127.0.0.1");
      const res = await getVia(h.conn, `${origin.url}/hello`);
      assert.match(res, /^HTTP\/1\.[01] 200 /);
      assert.match(res, /\r\n\r\nhello\n$/);
    } finally {
      h.conn.close();
    }
    assert.equal(origin.requests, 1);
  } finally {
    await origin.close();
    await echo6.close();
    await echo.close();
    await tiny.stop();
  }
});

Deno.test("tinyproxy with BasicAuth: 407 without credentials, tunnel and GET with them", async () => {
  const tiny = await startTinyproxy({
    auth: { user: "alice", pass: "s3cret" },
  });
  const echo = startEcho();
  const origin = startOrigin();
  try {
    const target = { host: "127.0.0.1", port: echo.port };
    const e = await dialError(dial(
      { kind: "parent", proxyUrl: `http://127.0.0.1:${tiny.port}` },
      target,
      TUNNEL,
    ));
    assert.equal(e.timedOut, false);
    assert.equal(
      e.message,
      `parent proxy 127.0.0.1:${tiny.port} refused CONNECT to 127.0.0.1:${echo.port}: 407 Proxy Authentication Required`,
    );

    const wrong = await dialError(dial(
      { kind: "parent", proxyUrl: `http://alice:nope@127.0.0.1:${tiny.port}` },
      target,
      TUNNEL,
    ));
    // tinyproxy says 401 for wrong credentials, 407 for none.
    assert.match(wrong.message, /: 40[17] /);
    assert.doesNotMatch(wrong.message, /nope/);

    const route = {
      kind: "parent" as const,
      proxyUrl: `http://alice:s3cret@127.0.0.1:${tiny.port}`,
    };
    const d = await dial(route, target, TUNNEL);
    try {
      await echoes(d.conn);
    } finally {
      d.conn.close();
    }

    const h = await dial(route, { host: "127.0.0.1", port: origin.port }, HTTP);
    try {
      assert.equal(h.parentAuthorization, `Basic ${btoa("alice:s3cret")}`);
      const res = await getVia(
        h.conn,
        `${origin.url}/hello`,
        h.parentAuthorization,
      );
      assert.match(res, /^HTTP\/1\.[01] 200 /);
    } finally {
      h.conn.close();
    }
    const h2 = await dial(
      { kind: "parent", proxyUrl: `http://127.0.0.1:${tiny.port}` },
      { host: "127.0.0.1", port: origin.port },
      HTTP,
    );
    try {
      assert.match(
        await getVia(h2.conn, `${origin.url}/hello`),
        /^HTTP\/1\.[01] 407 /,
      );
    } finally {
      h2.conn.close();
    }
  } finally {
    await origin.close();
    await echo.close();
    await tiny.stop();
  }
});

Deno.test("HTTP parent: bytes sent right after the 200 head are the first bytes read", async () => {
  const parent = startScriptedParent(
    "HTTP/1.1 200 Connection established\r\nX-Note: one write\r\n\r\n220 greeting\r\n",
  );
  try {
    const d = await dial(
      { kind: "parent", proxyUrl: `http://127.0.0.1:${parent.port}` },
      { host: "origin.test", port: 25 },
      TUNNEL,
    );
    try {
      assert.ok(d.conn instanceof PrefixedConn);
      // The tunnel tells the policy this address (Decision.onUpstream).
      assert.equal(
        (d.conn.localAddr as Deno.NetAddr | undefined)?.hostname,
        "127.0.0.1",
      );
      // A small buffer: the kept bytes come out over several reads.
      const first = new Uint8Array(5);
      assert.equal(await d.conn.read(first), 5);
      assert.equal(dec.decode(first), "220 g");
      assert.equal(dec.decode(await readBytes(d.conn, 9)), "reeting\r\n");
      await echoes(d.conn);
    } finally {
      d.conn.close();
    }
  } finally {
    await parent.close();
  }
});

Deno.test("HTTP parent: the CONNECT request carries brackets, Host and percent-decoded credentials", async () => {
  let seen = "";
  const parent = startTcpServer(async (conn) => {
    const buf = new Uint8Array(4096);
    while (!seen.includes("\r\n\r\n")) {
      const n = await conn.read(buf);
      if (n === null) return;
      seen += dec.decode(buf.subarray(0, n));
    }
    await conn.write(enc.encode("HTTP/1.0 200 OK\r\n\r\n"));
  });
  try {
    const d = await dial(
      {
        kind: "parent",
        proxyUrl: `http://us%20er:p%40ss%3Aw%2Frd@127.0.0.1:${parent.port}`,
      },
      { host: "2001:db8::1", port: 443 },
      TUNNEL,
    );
    d.conn.close();
    assert.equal(
      seen,
      "CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n" +
        `Proxy-Authorization: Basic ${btoa("us er:p@ss:w/rd")}\r\n\r\n`,
    );
  } finally {
    await parent.close();
  }
});

Deno.test("HTTP parent: a non-HTTP answer and an early close are named", async () => {
  const junk = startScriptedParent("SSH-2.0-OpenSSH\r\n\r\n");
  const closer = startTcpServer(async () => {});
  try {
    const a = await dialError(dial(
      { kind: "parent", proxyUrl: `http://127.0.0.1:${junk.port}` },
      { host: "x.test", port: 443 },
      TUNNEL,
    ));
    assert.match(
      a.message,
      /with something that is not HTTP; is it an HTTP proxy\?$/,
    );
    const b = await dialError(dial(
      { kind: "parent", proxyUrl: `http://127.0.0.1:${closer.port}` },
      { host: "x.test", port: 443 },
      TUNNEL,
    ));
    assert.match(
      b.message,
      /^parent proxy 127\.0\.0\.1:\d+ closed the connection without answering CONNECT to x\.test:443/,
    );
  } finally {
    await closer.close();
    await junk.close();
  }
});

Deno.test("HTTP parent over IPv6 and from a source address: http purpose connects to the parent", async () => {
  const reporter6 = startPeerReporter({ hostname: "::1" });
  const reporter = startPeerReporter();
  try {
    const d = await dial(
      { kind: "parent", proxyUrl: `http://[::1]:${reporter6.port}` },
      { host: "example.test", port: 80 },
      HTTP,
    );
    try {
      assert.equal(d.hierarchy, "FIRSTUP_PARENT/::1");
      assert.equal(d.viaHttpParent, true);
      assert.equal(await readToEnd(d.conn), "::1\n");
    } finally {
      d.conn.close();
    }
    const b = await dial(
      {
        kind: "parent",
        proxyUrl: `http://127.0.0.1:${reporter.port}`,
        localAddress: "127.0.0.2",
      },
      { host: "example.test", port: 80 },
      HTTP,
    );
    try {
      assert.equal(await readToEnd(b.conn), "127.0.0.2\n");
    } finally {
      b.conn.close();
    }
  } finally {
    await reporter.close();
    await reporter6.close();
  }
});

Deno.test("microsocks without auth: IPv4 and IPv6 targets, greeting kept, refusal mapped", async () => {
  const socks = await startMicrosocks();
  const echo = startEcho({ greeting: "220 ready\r\n" });
  const echo6 = startEcho({ hostname: "::1" });
  try {
    const route = {
      kind: "parent" as const,
      proxyUrl: `socks5://127.0.0.1:${socks.port}`,
    };
    const d = await dial(route, { host: "127.0.0.1", port: echo.port }, TUNNEL);
    try {
      assert.equal(d.hierarchy, "FIRSTUP_PARENT/127.0.0.1");
      assert.equal(d.viaHttpParent, false);
      assert.equal(dec.decode(await readBytes(d.conn, 11)), "220 ready\r\n");
      await echoes(d.conn);
    } finally {
      d.conn.close();
    }
    // The http purpose gives a stream to the origin too: no absolute form.
    const h = await dial(route, { host: "::1", port: echo6.port }, HTTP);
    try {
      assert.equal(h.viaHttpParent, false);
      assert.equal(h.parentAuthorization, undefined);
      await echoes(h.conn);
    } finally {
      h.conn.close();
    }
    const closed = freePort();
    const e = await dialError(
      dial(route, { host: "127.0.0.1", port: closed }, TUNNEL),
    );
    assert.equal(e.timedOut, false);
    assert.equal(
      e.message,
      `SOCKS5 parent 127.0.0.1:${socks.port} answered: connection refused by destination`,
    );
  } finally {
    await echo6.close();
    await echo.close();
    await socks.stop();
  }
});

Deno.test("microsocks with user/password: percent-decoded credentials; wrong or missing ones are named", async () => {
  const socks = await startMicrosocks({
    auth: { user: "us er", pass: "p@ss:w/rd" },
  });
  const echo = startEcho();
  try {
    const target = { host: "127.0.0.1", port: echo.port };
    const d = await dial(
      {
        kind: "parent",
        proxyUrl: `socks5://us%20er:p%40ss%3Aw%2Frd@127.0.0.1:${socks.port}`,
      },
      target,
      TUNNEL,
    );
    try {
      await echoes(d.conn);
    } finally {
      d.conn.close();
    }
    const wrong = await dialError(dial(
      {
        kind: "parent",
        proxyUrl: `socks5://us%20er:nope@127.0.0.1:${socks.port}`,
      },
      target,
      TUNNEL,
    ));
    assert.equal(
      wrong.message,
      `SOCKS5 parent 127.0.0.1:${socks.port} rejected the user name and password; check the credentials in its URL`,
    );
    const none = await dialError(dial(
      { kind: "parent", proxyUrl: `socks5://127.0.0.1:${socks.port}` },
      target,
      TUNNEL,
    ));
    assert.equal(
      none.message,
      `SOCKS5 parent 127.0.0.1:${socks.port} requires authentication; put user:password@ in its URL`,
    );
  } finally {
    await echo.close();
    await socks.stop();
  }
});

Deno.test("SOCKS5 parent: a host name goes as ATYP 3, an address as ATYP 1 or 4", async () => {
  const requests: number[][] = [];
  const parent = startTcpServer(async (conn) => {
    const buf = new Uint8Array(512);
    const greeting = await conn.read(buf);
    if (greeting === null) return;
    await conn.write(Uint8Array.of(5, 0));
    const n = await conn.read(buf);
    if (n === null) return;
    requests.push([...buf.subarray(0, n)]);
    // Success, bound to a domain-name address: its length byte must be read too.
    await conn.write(Uint8Array.of(5, 0, 0, 3, 3, 97, 98, 99, 0, 80, 33));
  });
  try {
    const route = {
      kind: "parent" as const,
      proxyUrl: `socks5://127.0.0.1:${parent.port}`,
    };
    for (const host of ["example.test", "10.1.2.3", "2001:db8::1"]) {
      const d = await dial(route, { host, port: 443 }, TUNNEL);
      try {
        // The byte after the reply belongs to the stream.
        assert.equal(dec.decode(await readBytes(d.conn, 1)), "!");
      } finally {
        d.conn.close();
      }
    }
    assert.deepEqual(requests, [
      [5, 1, 0, 3, 12, ...enc.encode("example.test"), 1, 187],
      [5, 1, 0, 1, 10, 1, 2, 3, 1, 187],
      [5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8, ...new Array(11).fill(0), 1, 1, 187],
    ]);
  } finally {
    await parent.close();
  }
});

Deno.test("dead parents: refused connection names the parent and asks whether it runs", async () => {
  const port = freePort();
  const http = await dialError(dial(
    { kind: "parent", proxyUrl: `http://user:secret@127.0.0.1:${port}` },
    { host: "example.test", port: 443 },
    TUNNEL,
  ));
  assert.equal(http.timedOut, false);
  assert.equal(
    http.message,
    `cannot connect to parent proxy 127.0.0.1:${port}: connection refused; is the parent proxy running?`,
  );
  const socks = await dialError(dial(
    { kind: "parent", proxyUrl: `socks5://127.0.0.1:${port}` },
    { host: "example.test", port: 443 },
    HTTP,
  ));
  assert.equal(
    socks.message,
    `cannot connect to SOCKS5 parent 127.0.0.1:${port}: connection refused; is the parent proxy running?`,
  );
  // Through node:net (source address) the same words.
  const bound = await dialError(dial(
    {
      kind: "parent",
      proxyUrl: `socks5://127.0.0.1:${port}`,
      localAddress: "127.0.0.2",
    },
    { host: "example.test", port: 443 },
    TUNNEL,
  ));
  assert.equal(
    bound.message,
    `cannot connect to SOCKS5 parent 127.0.0.1:${port} from source address 127.0.0.2: connection refused; is the parent proxy running?`,
  );
});

Deno.test("silent parents: the deadline covers the handshake and gives timedOut", async () => {
  const silent = startSilent();
  try {
    for (const scheme of ["http", "socks5"]) {
      for (const localAddress of [undefined, "127.0.0.2"]) {
        const e = await dialError(dial(
          {
            kind: "parent",
            proxyUrl: `${scheme}://127.0.0.1:${silent.port}`,
            localAddress,
          },
          { host: "example.test", port: 443 },
          { timeoutMs: 300, purpose: "tunnel" },
        ));
        assert.equal(e.timedOut, true, e.message);
        assert.match(
          e.message,
          /^(parent proxy|SOCKS5 parent) 127\.0\.0\.1:\d+ did not open a connection to example\.test:443 within 300 ms/,
        );
      }
    }
  } finally {
    await silent.close();
  }
});

Deno.test("parent URLs that cannot be used are refused with the URL, credentials hidden", async () => {
  const target = { host: "example.test", port: 443 };
  const ftp = await dialError(
    dial(
      { kind: "parent", proxyUrl: "ftp://u:secret@127.0.0.1:21" },
      target,
      TUNNEL,
    ),
  );
  assert.equal(ftp.timedOut, false);
  assert.equal(
    ftp.message,
    'the parent proxy URL "ftp://…@127.0.0.1:21" is not usable; write it as http://host:port or socks5://host:port',
  );
  const junk = await dialError(
    dial({ kind: "parent", proxyUrl: "not a url" }, target, TUNNEL),
  );
  assert.match(junk.message, /is not a URL/);
});

Deno.test("IP literal parsing for SOCKS5", () => {
  assert.deepEqual(parseIpv4("10.0.0.255"), [10, 0, 0, 255]);
  assert.equal(parseIpv4("10.0.0.256"), undefined);
  assert.equal(parseIpv4("example.test"), undefined);
  assert.deepEqual(parseIpv6("::1"), [...new Array(15).fill(0), 1]);
  assert.deepEqual(parseIpv6("::"), new Array(16).fill(0));
  assert.deepEqual(
    parseIpv6("1:2:3:4:5:6:7:8"),
    [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8],
  );
  assert.deepEqual(
    parseIpv6("::ffff:192.0.2.1"),
    [...new Array(10).fill(0), 0xff, 0xff, 192, 0, 2, 1],
  );
  assert.deepEqual(parseIpv6("fe80::1%eth0"), [
    0xfe,
    0x80,
    ...new Array(13).fill(0),
    1,
  ]);
  assert.equal(parseIpv6("1::2::3"), undefined);
  assert.equal(parseIpv6("1:2:3:4:5:6:7:8:9"), undefined);
  assert.equal(parseIpv6("12345::"), undefined);
  assert.equal(parseIpv6("localhost"), undefined);
});

Deno.test("unknown host names: the DNS failure is named, for origins and parents", async () => {
  // .invalid never resolves (RFC 6761).
  const e = await dialError(dial(
    { kind: "direct" },
    { host: "no-such-host.invalid", port: 80 },
    TUNNEL,
  ));
  assert.equal(
    e.message,
    "cannot connect to no-such-host.invalid:80: no such host name (DNS lookup failed)",
  );
  const p = await dialError(dial(
    {
      kind: "parent",
      proxyUrl: "http://no-such-parent.invalid:3128",
      localAddress: "127.0.0.2",
    },
    { host: "example.test", port: 443 },
    TUNNEL,
  ));
  assert.equal(p.timedOut, false);
  assert.equal(
    p.message,
    "cannot connect to parent proxy no-such-parent.invalid:3128 from source address 127.0.0.2: no such host name (DNS lookup failed); check the host name in the parent proxy's URL",
  );
});

Deno.test("a missing parent binary fails the tests with the apt-get line", async () => {
  await assert.rejects(
    requireBinary("no-such-proxy-binary", "no-such-package"),
    /no-such-proxy-binary is not installed; .* run apt-get install no-such-package/,
  );
});

Deno.test("connect timeouts (full accept queue): direct, from a source address, and to a parent", async () => {
  const full = await startUnreachable();
  try {
    const at = { host: "127.0.0.1", port: full.port };
    const quick = { timeoutMs: 300, purpose: "tunnel" } as const;
    for (const localAddress of [undefined, "127.0.0.2"]) {
      const e = await dialError(
        dial({ kind: "direct", localAddress }, at, quick),
      );
      assert.equal(e.timedOut, true);
      assert.equal(
        e.message,
        `connecting to 127.0.0.1:${full.port} took longer than 300 ms`,
      );
    }
    const p = await dialError(dial(
      { kind: "parent", proxyUrl: `socks5://127.0.0.1:${full.port}` },
      { host: "example.test", port: 443 },
      quick,
    ));
    assert.equal(p.timedOut, true);
    assert.equal(
      p.message,
      `connecting to SOCKS5 parent 127.0.0.1:${full.port} took longer than 300 ms; is the parent proxy running and reachable?`,
    );
  } finally {
    await full.close();
  }
});
