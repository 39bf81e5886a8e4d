/**
 * The proxy's forward path (plain HTTP) over real sockets: curl for the common
 * cases, raw sockets for edge cases. The policy is a fake (see
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
import { poolKey, UpstreamPool } from "../proxy/upstream_pool.ts";
import { Reader } from "../proxy/_io.ts";

/** A keep-alive origin: answers each request head with `respond(head)`. */
function httpOrigin(respond: (head: string, index: number) => string) {
  let n = 0;
  const heads: string[] = [];
  const origin = startRawOrigin(async (conn) => {
    let rest = "";
    for (let i = 0; i < 1000; i++) {
      const got = await readRequestHead(conn, rest);
      if (!got) return;
      heads.push(got.head);
      rest = got.rest;
      const cl = /content-length: (\d+)/i.exec(got.head);
      if (cl) {
        // Read (and drop) the request body.
        let need = Number(cl[1]) - rest.length;
        const buf = new Uint8Array(65536);
        while (need > 0) {
          const k = await conn.read(buf);
          if (k === null) return;
          need -= k;
        }
        rest = "";
      }
      const answer = respond(got.head, n++);
      await writeText(conn, answer);
      if (/connection: close/i.test(answer)) return;
    }
  });
  return Object.assign(origin, { heads });
}

Deno.test("curl GET through the proxy; facts and access record", async () => {
  const origin = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req) => new Response(`hello ${new URL(req.url).pathname}\n`),
  );
  const policy = fakePolicy((f) => ({
    allowed: true,
    route: { kind: "direct" },
    user: f.proxyAuth?.user,
  }));
  const proxy = await startTestProxy(policy);
  try {
    const url = `http://127.0.0.1:${origin.addr.port}/a/b?c=1`;
    const r = await curl(["-x", proxy.url, "-U", "alice:s3cr:t", url]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, "hello /a/b\n");
    const f = policy.facts[0];
    assert.equal(f.clientIp, "127.0.0.1");
    assert.equal(f.host, "127.0.0.1");
    assert.equal(f.port, origin.addr.port);
    assert.equal(f.method, "GET");
    assert.equal(f.url, url);
    assert.deepEqual(f.proxyAuth, { user: "alice", pass: "s3cr:t" });
    assert.equal(policy.records.length, 1);
    const rec = policy.records[0];
    assert.equal(rec.result, "TCP_MISS/200");
    assert.equal(rec.user, "alice");
    assert.equal(rec.hierarchy, "HIER_DIRECT/127.0.0.1");
    assert.match(rec.contentType ?? "", /text\/plain/);
    assert.ok(rec.bytes > 11);
  } finally {
    await proxy.close();
    await origin.shutdown();
  }
});

Deno.test("POST bodies with Content-Length and chunked reach the origin", async () => {
  const origin = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (req) =>
      new Response(`got ${(await req.arrayBuffer()).byteLength}\n`),
  );
  const proxy = await startTestProxy(fakePolicy());
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/body`;
    await Deno.writeFile(file, new Uint8Array(1_000_000).fill(65));
    const url = `http://127.0.0.1:${origin.addr.port}/up`;
    const a = await curl(["-x", proxy.url, "--data-binary", `@${file}`, url]);
    assert.equal(a.out, "got 1000000\n", a.err);
    const b = await curl([
      "-x",
      proxy.url,
      "-H",
      "Transfer-Encoding: chunked",
      "--data-binary",
      `@${file}`,
      url,
    ]);
    assert.equal(b.out, "got 1000000\n", b.err);
    // Expect: 100-continue, as curl sends for large bodies.
    const c = await curl([
      "-x",
      proxy.url,
      "-H",
      "Expect: 100-continue",
      "--data-binary",
      `@${file}`,
      url,
    ]);
    assert.equal(c.out, "got 1000000\n", c.err);
  } finally {
    await proxy.close();
    await origin.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("100-continue is relayed before the body; the final answer follows", async () => {
  const origin = startRawOrigin(async (conn) => {
    const got = await readRequestHead(conn);
    assert.match(got!.head, /Expect: 100-continue/i);
    await writeText(conn, "HTTP/1.1 100 Continue\r\n\r\n");
    let body = got!.rest;
    const buf = new Uint8Array(100);
    while (body.length < 5) {
      const n = await conn.read(buf);
      if (n === null) break;
      body += new TextDecoder().decode(buf.subarray(0, n));
    }
    await writeText(
      conn,
      `HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n${body}`,
    );
  });
  const proxy = await startTestProxy(fakePolicy());
  const c = await RawClient.open(proxy.addr.port);
  try {
    await c.send(
      `POST http://127.0.0.1:${origin.port}/ HTTP/1.1\r\nHost: x\r\n` +
        "Expect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    await c.readUntil((t) => t.includes("\r\n\r\n"));
    assert.match(c.text, /^HTTP\/1\.1 100 Continue\r\n/);
    await c.send("hello");
    const t = await c.readUntil((t) => t.endsWith("hello"));
    assert.match(t, /HTTP\/1\.1 200 OK[\s\S]*\r\n\r\nhello$/);
  } finally {
    c.close();
    await proxy.close();
    await origin.close();
  }
});

Deno.test("chunked response with trailers passes through; HTTP/1.0 client gets it de-chunked", async () => {
  const origin = httpOrigin(() =>
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n" +
    "5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n"
  );
  const proxy = await startTestProxy(fakePolicy());
  try {
    const c = await RawClient.open(proxy.addr.port);
    await c.send(
      `GET http://127.0.0.1:${origin.port}/ HTTP/1.1\r\nHost: x\r\n\r\n`,
    );
    const t = await c.readUntil((t) =>
      t.endsWith("\r\n0\r\nX-Sum: 42\r\n\r\n")
    );
    c.close();
    assert.match(t, /Transfer-Encoding: chunked/);
    assert.match(t, /Trailer: X-Sum/);
    assert.ok(
      t.endsWith("5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n"),
      t,
    );

    const old = await RawClient.open(proxy.addr.port);
    await old.send(`GET http://127.0.0.1:${origin.port}/ HTTP/1.0\r\n\r\n`);
    const t2 = await old.readUntil();
    old.close();
    assert.ok(old.closed);
    assert.doesNotMatch(t2, /Transfer-Encoding/i);
    assert.match(t2, /Connection: close\r\n/);
    assert.ok(t2.endsWith("\r\n\r\nhello world"), t2);
  } finally {
    await proxy.close();
    await origin.close();
  }
});

Deno.test("close-delimited response reaches a client that asked to close as bare data, then the proxy closes", async () => {
  const origin = startRawOrigin(async (conn) => {
    await readRequestHead(conn);
    await writeText(
      conn,
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
    );
  });
  const proxy = await startTestProxy(fakePolicy());
  const c = await RawClient.open(proxy.addr.port);
  try {
    // (A client that keeps its connection gets it chunked instead: see
    // proxy_close_delimited_test.ts.)
    await c.send(
      `GET http://127.0.0.1:${origin.port}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
    );
    const t = await c.readUntil();
    assert.ok(c.closed);
    assert.match(t, /Connection: close\r\n/);
    assert.doesNotMatch(t, /Transfer-Encoding/i);
    assert.ok(t.endsWith("\r\n\r\nuntil the end"), t);
  } finally {
    c.close();
    await proxy.close();
    await origin.close();
  }
});

Deno.test("HEAD, 204 and 304 have no body; keep-alive goes on after them", async () => {
  const origin = httpOrigin((head) => {
    if (head.startsWith("HEAD")) {
      return "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
    }
    if (head.includes("/204")) return "HTTP/1.1 204 No Content\r\n\r\n";
    if (head.includes("/304")) {
      return "HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n";
    }
    return "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone";
  });
  const proxy = await startTestProxy(fakePolicy());
  const c = await RawClient.open(proxy.addr.port);
  try {
    const base = `http://127.0.0.1:${origin.port}`;
    await c.send(`HEAD ${base}/ HTTP/1.1\r\nHost: x\r\n\r\n`);
    await c.readUntil((t) => t.includes("\r\n\r\n"));
    assert.match(c.text, /Content-Length: 1000/);
    for (const path of ["/204", "/304", "/last"]) {
      await c.send(`GET ${base}${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
    }
    const t = await c.readUntil((t) => t.endsWith("done"));
    const statuses = [...t.matchAll(/^HTTP\/1\.1 (\d+)/gm)].map((m) => m[1]);
    assert.deepEqual(statuses, ["200", "204", "304", "200"]);
    assert.equal(origin.connections, 1, "one upstream connection for all");
  } finally {
    c.close();
    await proxy.close();
    await origin.close();
  }
});

Deno.test("pipelined requests are each decided and answered in order", async () => {
  const origin = httpOrigin((head) => {
    const path = /^GET (\S+)/.exec(head)![1];
    // Answer the first slowly so a wrong order would show.
    return `HTTP/1.1 200 OK\r\nContent-Length: ${path.length}\r\n\r\n${path}`;
  });
  const policy = fakePolicy((f) =>
    f.url.endsWith("/deny")
      ? { allowed: false, status: 403, reason: "not this one" }
      : { allowed: true, route: { kind: "direct" } }
  );
  const proxy = await startTestProxy(policy);
  const c = await RawClient.open(proxy.addr.port);
  try {
    const base = `http://127.0.0.1:${origin.port}`;
    await c.send(
      ["/one", "/deny", "/three", "/four"].map((p) =>
        `GET ${base}${p} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`
      ).join(""),
    );
    const t = await c.readUntil((t) => t.endsWith("/four"));
    const bodies = [...t.matchAll(/\r\n\r\n(\/(?:one|three|four))/g)].map((m) =>
      m[1]
    );
    assert.deepEqual(bodies, ["/one", "/three", "/four"]);
    assert.ok(t.indexOf("403 Forbidden") > t.indexOf("/one"));
    assert.ok(t.indexOf("403 Forbidden") < t.indexOf("/three"));
    assert.equal(policy.facts.length, 4);
    assert.deepEqual(policy.records.map((r) => r.result), [
      "TCP_MISS/200",
      "TCP_DENIED/403",
      "TCP_MISS/200",
      "TCP_MISS/200",
    ]);
  } finally {
    c.close();
    await proxy.close();
    await origin.close();
  }
});

Deno.test("upstream connections are pooled across client connections", async () => {
  const origin = httpOrigin(() =>
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
  );
  const proxy = await startTestProxy(fakePolicy());
  try {
    for (let i = 0; i < 5; i++) {
      const r = await curl([
        "-x",
        proxy.url,
        `http://127.0.0.1:${origin.port}/${i}`,
      ]);
      assert.equal(r.out, "ok", r.err);
    }
    assert.equal(origin.connections, 1);
    assert.equal(origin.heads.length, 5);
  } finally {
    await proxy.close();
    await origin.close();
  }
});

Deno.test("a pooled connection the origin closed is replaced transparently", async () => {
  // The origin closes each connection right after answering, without saying so.
  const origin = startRawOrigin(async (conn) => {
    await readRequestHead(conn);
    await writeText(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  });
  const proxy = await startTestProxy(fakePolicy());
  try {
    for (let i = 0; i < 3; i++) {
      const r = await curl([
        "-x",
        proxy.url,
        `http://127.0.0.1:${origin.port}/`,
      ]);
      assert.equal(r.out, "ok", r.err);
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(origin.connections, 3);
  } finally {
    await proxy.close();
    await origin.close();
  }
});

Deno.test("hop-by-hop headers are removed, Via added, Host set from the URL", async () => {
  const origin = httpOrigin(() =>
    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-End: 1\r\n\r\n"
  );
  const proxy = await startTestProxy(fakePolicy());
  const c = await RawClient.open(proxy.addr.port);
  try {
    await c.send(
      `GET http://127.0.0.1:${origin.port}/p HTTP/1.1\r\nHost: wrong\r\n` +
        "Connection: keep-alive, X-Private\r\nX-Private: 1\r\nProxy-Authorization: Basic eDp5\r\n" +
        "Proxy-Connection: keep-alive\r\nTE: trailers\r\nX-Keep: yes\r\n\r\n",
    );
    const t = await c.readUntil((t) => t.includes("\r\n\r\n"));
    const up = origin.heads[0];
    assert.match(up, /^GET \/p HTTP\/1\.1\r\nHost: 127\.0\.0\.1:\d+\r\n/);
    assert.match(up, /X-Keep: yes/);
    assert.match(up, /Via: 1\.1 pmproxy/);
    for (
      const h of [
        "X-Private",
        "Proxy-Authorization",
        "Proxy-Connection",
        "TE:",
        "Connection",
      ]
    ) {
      assert.ok(!up.includes(h), `${h} forwarded: ${up}`);
    }
    assert.match(t, /X-End: 1/);
    assert.match(t, /Via: 1\.1 pmproxy/);
    assert.doesNotMatch(t, /X-Hop|Keep-Alive/);
  } finally {
    c.close();
    await proxy.close();
    await origin.close();
  }
});

Deno.test("HTTP/1.0 keep-alive is honoured", async () => {
  const origin = httpOrigin(() =>
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
  );
  const proxy = await startTestProxy(fakePolicy());
  const c = await RawClient.open(proxy.addr.port);
  try {
    const req =
      `GET http://127.0.0.1:${origin.port}/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n`;
    await c.send(req);
    await c.readUntil((t) => t.endsWith("ok"));
    assert.match(c.text, /Connection: keep-alive/);
    await c.send(req);
    const t = await c.readUntil((t) => t.split("ok").length === 3);
    assert.equal(t.split("200 OK").length, 3);
    assert.ok(!c.closed);
  } finally {
    c.close();
    await proxy.close();
    await origin.close();
  }
});

Deno.test("refusals: 403 with reason and login link, 407 with Proxy-Authenticate", async () => {
  const policy = fakePolicy((f) =>
    f.proxyAuth
      ? {
        allowed: false,
        status: 403,
        reason: "Your quota is used up <today>.",
      }
      : {
        allowed: false,
        status: 407,
        reason: "Log in first.",
        realm: "pmproxy gateway",
      }
  );
  const proxy = await startTestProxy(policy);
  try {
    const a = await curl(["-i", "-x", proxy.url, "http://a.test/"]);
    assert.match(a.out, /^HTTP\/1\.1 407 Proxy Authentication Required/);
    assert.match(a.out, /Proxy-Authenticate: Basic realm="pmproxy gateway"/);
    assert.match(a.out, /Log in first\./);
    assert.match(a.out, /https:\/\/gateway\.test:4443\//);
    const b = await curl([
      "-i",
      "-x",
      proxy.url,
      "-U",
      "bob:pw",
      "http://a.test/",
    ]);
    assert.match(b.out, /^HTTP\/1\.1 403 Forbidden/);
    assert.match(b.out, /Your quota is used up &#60;today&#62;\./);
    assert.deepEqual(policy.records.map((r) => r.result), [
      "TCP_DENIED/407",
      "TCP_DENIED/403",
    ]);
  } finally {
    await proxy.close();
  }
});

Deno.test("an async policy is awaited", async () => {
  const origin = httpOrigin(() =>
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
  );
  const proxy = await startTestProxy(
    fakePolicy(async () => {
      await new Promise((r) => setTimeout(r, 10));
      return { allowed: true, route: { kind: "direct" } };
    }),
  );
  try {
    const r = await curl(["-x", proxy.url, `http://127.0.0.1:${origin.port}/`]);
    assert.equal(r.out, "ok");
  } finally {
    await proxy.close();
    await origin.close();
  }
});

Deno.test("a meter STOP cuts the download at the quota; the connection is not pooled", async () => {
  const big = 4 * 1024 * 1024;
  const payload = "x".repeat(big);
  const origin = httpOrigin(() =>
    `HTTP/1.1 200 OK\r\nContent-Length: ${big}\r\n\r\n${payload}`
  );
  const meter = quotaMeter(200_000);
  const policy = fakePolicy((f) => ({
    allowed: true,
    route: { kind: "direct" },
    meter: f.url.endsWith("/metered") ? meter : undefined,
  }));
  const proxy = await startTestProxy(policy);
  try {
    const url = `http://127.0.0.1:${origin.port}`;
    const r = await curl([
      "-x",
      proxy.url,
      "-o",
      "/dev/null",
      "-w",
      "%{size_download}",
      `${url}/metered`,
    ]);
    assert.notEqual(r.code, 0, "curl must see a cut transfer");
    const got = Number(r.out);
    assert.ok(got < 200_000 + 300_000, `got ${got} bytes`);
    assert.ok(meter.seen > 200_000 && meter.seen < big);
    assert.equal(policy.records[0].result, "TCP_MISS_ABORTED/200");
    const again = await curl([
      "-x",
      proxy.url,
      "-o",
      "/dev/null",
      "-w",
      "%{size_download}",
      `${url}/free`,
    ]);
    assert.equal(Number(again.out), big, again.err);
    assert.equal(origin.connections, 2, "the cut connection was not reused");
  } finally {
    await proxy.close();
    await origin.close();
  }
});

Deno.test("a throttling meter slows the transfer down without losing bytes", async () => {
  const origin = startRawOrigin(async (conn) => {
    await readRequestHead(conn);
    await writeText(conn, "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n");
    for (let i = 0; i < 5; i++) {
      await writeText(conn, "x".repeat(10));
      await new Promise((r) => setTimeout(r, 5));
    }
  });
  const meter = throttleMeter(40);
  const proxy = await startTestProxy(
    fakePolicy(() => ({ allowed: true, route: { kind: "direct" }, meter })),
  );
  try {
    const t0 = performance.now();
    const r = await curl(["-x", proxy.url, `http://127.0.0.1:${origin.port}/`]);
    const took = performance.now() - t0;
    assert.equal(r.out, "x".repeat(50));
    // Each chunk waited at least 40 ms: a lower bound, never flaky.
    assert.ok(meter.calls >= 2);
    assert.ok(
      took >= 40 * meter.calls,
      `took ${took} ms for ${meter.calls} chunks`,
    );
  } finally {
    await proxy.close();
    await origin.close();
  }
});

Deno.test("dial failure gives 502 with what failed; the connection stays usable", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const policy = fakePolicy();
  const proxy = await startTestProxy(policy);
  try {
    const r = await curl(["-i", "-x", proxy.url, `http://127.0.0.1:${port}/`]);
    assert.match(r.out, /^HTTP\/1\.1 502 Bad Gateway/);
    assert.match(
      r.out,
      new RegExp(`cannot connect to 127\\.0\\.0\\.1:${port}`),
    );
    assert.equal(policy.records[0].result, "TCP_MISS/502");
  } finally {
    await proxy.close();
  }
});

Deno.test("an upstream that never answers gives 504 after responseTimeout", async () => {
  const origin = startRawOrigin(async (conn) => {
    await readRequestHead(conn);
    await conn.read(new Uint8Array(10)); // wait until the proxy gives up
  });
  const proxy = await startTestProxy(fakePolicy(), {
    responseTimeout: "300ms",
  });
  try {
    const r = await curl([
      "-i",
      "-x",
      proxy.url,
      `http://127.0.0.1:${origin.port}/`,
    ]);
    assert.match(r.out, /^HTTP\/1\.1 504 Gateway Timeout/);
    assert.match(r.out, /did not answer within 300 ms/);
  } finally {
    await proxy.close();
    await origin.close();
  }
});

Deno.test("a pooled upstream that times out gives 504; the request is not sent again", async () => {
  // Answers the first request, then holds the connection without answering.
  const origin = startRawOrigin(async (conn) => {
    await readRequestHead(conn);
    await writeText(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    await readRequestHead(conn);
    await conn.read(new Uint8Array(10)); // wait until the proxy gives up
  });
  // A source address makes the upstream a node socket, whose read ends with
  // null (not an error) when the deadline closes it.
  const proxy = await startTestProxy(
    fakePolicy(() => ({
      allowed: true,
      route: { kind: "direct", localAddress: "127.0.0.1" },
    })),
    { responseTimeout: "300ms" },
  );
  try {
    const url = `http://127.0.0.1:${origin.port}/`;
    assert.equal((await curl(["-x", proxy.url, url])).out, "ok");
    const r = await curl(["-i", "-m", "5", "-x", proxy.url, url]);
    assert.match(r.out, /^HTTP\/1\.1 504 Gateway Timeout/, r.err);
    assert.match(r.out, /did not answer within 300 ms/);
    assert.equal(origin.connections, 1, "no second connection for a retry");
  } finally {
    await proxy.close();
    await origin.close();
  }
});

Deno.test("a pause mid-body longer than writeTimeout is waited out under responseTimeout", async () => {
  // Event streams and slow origins pause between chunks; only the upstream
  // read limit (responseTimeout) applies while the proxy waits for them.
  const origin = startRawOrigin(async (conn) => {
    await readRequestHead(conn);
    await writeText(conn, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab");
    await new Promise((r) => setTimeout(r, 800));
    await writeText(conn, "cd");
  });
  const proxy = await startTestProxy(fakePolicy(), {
    responseTimeout: "5s",
    server: { writeTimeout: "300ms" },
  });
  try {
    const r = await curl(["-x", proxy.url, `http://127.0.0.1:${origin.port}/`]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, "abcd");
  } finally {
    await proxy.close();
    await origin.close();
  }
});

Deno.test("a retry after a stale pooled connection still has a response deadline", async () => {
  // A SOCKS5 parent that plays the origin itself. Connection 0 answers one
  // request, then takes the next and closes unanswered (stale); connection 1
  // is slow to open (longer than responseTimeout), then never answers.
  const readN = async (conn: Deno.Conn, n: number) => {
    const buf = new Uint8Array(n);
    for (let at = 0; at < n;) {
      const k = await conn.read(buf.subarray(at));
      if (k === null) throw new Error("closed");
      at += k;
    }
  };
  const parent = startRawOrigin(async (conn, index) => {
    await readN(conn, 3); // greeting: version, one method, no auth
    await writeText(conn, new Uint8Array([5, 0]));
    await readN(conn, 10); // CONNECT to an IPv4 address and port
    if (index === 1) await new Promise((r) => setTimeout(r, 600));
    await writeText(conn, new Uint8Array([5, 0, 0, 1, 0, 0, 0, 0, 0, 0]));
    if (index === 0) {
      await readRequestHead(conn);
      await writeText(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
      await readRequestHead(conn);
      return; // closed without an answer
    }
    // Take the request, then wait until the proxy gives up.
    while ((await conn.read(new Uint8Array(1024))) !== null) { /* more */ }
  });
  const proxy = await startTestProxy(
    fakePolicy(() => ({
      allowed: true,
      route: { kind: "parent", proxyUrl: `socks5://127.0.0.1:${parent.port}` },
    })),
    { responseTimeout: "300ms" },
  );
  try {
    const url = "http://127.0.0.1:9/";
    assert.equal((await curl(["-x", proxy.url, url])).out, "ok");
    const r = await curl(["-i", "-x", proxy.url, "-m", "4", url]);
    assert.match(r.out, /^HTTP\/1\.1 504 Gateway Timeout/, r.err);
    assert.equal(parent.connections, 2);
  } finally {
    await proxy.close();
    await parent.close();
  }
});

Deno.test("the proxy's own address opened as a site shows what it is", async () => {
  const proxy = await startTestProxy(fakePolicy());
  try {
    const r = await curl(["-i", `${proxy.url}/`]);
    assert.match(r.out, /^HTTP\/1\.1 200 OK/);
    assert.match(r.out, /an HTTP proxy/);
    assert.match(r.out, /href="https:\/\/gateway\.test:4443\/"/);
    const other = await curl(["-i", `${proxy.url}/elsewhere`]);
    assert.match(other.out, /^HTTP\/1\.1 400/);
  } finally {
    await proxy.close();
  }
});

Deno.test("IPv6 literal targets", async () => {
  let l: Deno.TcpListener;
  try {
    l = Deno.listen({ hostname: "::1", port: 0 });
  } catch {
    console.warn("no IPv6 loopback here; skipped");
    return;
  }
  const port = (l.addr as Deno.NetAddr).port;
  const served = (async () => {
    const conn = await l.accept();
    const got = await readRequestHead(conn);
    await writeText(
      conn,
      `HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nv6`,
    );
    conn.close();
    return got!.head;
  })();
  const policy = fakePolicy();
  const proxy = await startTestProxy(policy);
  try {
    const r = await curl(["-x", proxy.url, `http://[::1]:${port}/six`]);
    assert.equal(r.out, "v6", r.err);
    assert.equal(policy.facts[0].host, "::1");
    assert.match(await served, new RegExp(`Host: \\[::1\\]:${port}`));
  } finally {
    await proxy.close();
    l.close();
  }
});

Deno.test("a request that went through pmproxy too often is stopped with 508", async () => {
  // This is what a parent route pointing back at the proxy itself produces.
  const policy = fakePolicy();
  const proxy = await startTestProxy(policy);
  const c = await RawClient.open(proxy.addr.port);
  try {
    await c.send(
      "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n" +
        "Via: 1.1 pmproxy, 1.1 pmproxy\r\nVia: 1.1 pmproxy, 1.1 pmproxy\r\n\r\n",
    );
    const t = await c.readUntil((t) => t.includes("</html>"));
    assert.match(t, /^HTTP\/1\.1 508 Loop Detected/);
    assert.equal(policy.facts.length, 0);
  } finally {
    c.close();
    await proxy.close();
  }
});

Deno.test("a response with Content-Length and chunked is read as chunked, without the length", async () => {
  const origin = httpOrigin(() =>
    "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n" +
    "2\r\nok\r\n0\r\n\r\n"
  );
  const proxy = await startTestProxy(fakePolicy());
  const c = await RawClient.open(proxy.addr.port);
  try {
    const req =
      `GET http://127.0.0.1:${origin.port}/ HTTP/1.1\r\nHost: x\r\n\r\n`;
    await c.send(req);
    const t = await c.readUntil((t) => t.endsWith("0\r\n\r\n"));
    assert.doesNotMatch(t, /Content-Length/i);
    assert.match(t, /Transfer-Encoding: chunked/);
    await c.send(req);
    await c.readUntil((t) => t.split("2\r\nok\r\n0\r\n\r\n").length === 3);
    assert.equal(
      origin.connections,
      2,
      "the ambiguous connection was not reused",
    );
  } finally {
    c.close();
    await proxy.close();
    await origin.close();
  }
});

Deno.test("Connection: close, and HTTP/1.0 without keep-alive, end the connection after the answer", async () => {
  const origin = httpOrigin(() =>
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
  );
  const proxy = await startTestProxy(fakePolicy());
  try {
    for (
      const tail of ["HTTP/1.1\r\nHost: x\r\nConnection: close", "HTTP/1.0"]
    ) {
      const c = await RawClient.open(proxy.addr.port);
      await c.send(`GET http://127.0.0.1:${origin.port}/ ${tail}\r\n\r\n`);
      const t = await c.readUntil();
      c.close();
      assert.ok(c.closed);
      assert.match(t, /Connection: close\r\n/);
      assert.ok(t.endsWith("\r\n\r\nok"), t);
    }
    assert.equal(
      origin.connections,
      1,
      "the upstream connection is still pooled",
    );
  } finally {
    await proxy.close();
    await origin.close();
  }
});

Deno.test("an origin that dies mid-body: the client sees a cut, not a short success", async () => {
  const origin = startRawOrigin(async (conn) => {
    await readRequestHead(conn);
    await writeText(
      conn,
      "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this",
    );
  });
  const policy = fakePolicy();
  const proxy = await startTestProxy(policy);
  try {
    const r = await curl(["-x", proxy.url, `http://127.0.0.1:${origin.port}/`]);
    assert.notEqual(r.code, 0);
    assert.equal(r.out, "only this");
    assert.equal(policy.records[0].result, "TCP_MISS_ABORTED/200");
  } finally {
    await proxy.close();
    await origin.close();
  }
});

Deno.test("a request with a body never goes on a pooled connection", async () => {
  const origin = httpOrigin(() =>
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
  );
  const proxy = await startTestProxy(fakePolicy());
  try {
    const url = `http://127.0.0.1:${origin.port}/`;
    assert.equal((await curl(["-x", proxy.url, url])).out, "ok");
    assert.equal((await curl(["-x", proxy.url, "-d", "x=1", url])).out, "ok");
    assert.equal(origin.connections, 2, "the POST dialled its own connection");
    assert.equal((await curl(["-x", proxy.url, url])).out, "ok");
    assert.equal(origin.connections, 2, "later GETs reuse pooled ones");
  } finally {
    await proxy.close();
    await origin.close();
  }
});

Deno.test("a bodyless POST is never sent on a pooled connection (it could not be retried)", async () => {
  const origin = httpOrigin(() =>
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
  );
  const proxy = await startTestProxy(fakePolicy());
  try {
    const url = `http://127.0.0.1:${origin.port}/`;
    assert.equal((await curl(["-x", proxy.url, url])).out, "ok");
    assert.equal((await curl(["-x", proxy.url, "-X", "POST", url])).out, "ok");
    assert.equal(origin.connections, 2, "the POST dialled its own connection");
    assert.match(origin.heads[1], /^POST \/ HTTP\/1\.1/);
  } finally {
    await proxy.close();
    await origin.close();
  }
});

Deno.test("an idle pooled connection closed by the origin is dropped at once", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  const pool = new UpstreamPool(4, 60_000);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const peer = await l.accept();
  try {
    const key = poolKey({ kind: "direct" }, "127.0.0.1", port);
    pool.put({
      key,
      reader: new Reader(conn),
      dialed: {
        conn,
        viaHttpParent: false,
        hierarchy: "HIER_DIRECT/127.0.0.1",
      },
    });
    assert.equal(pool.idleCount(key), 1);
    peer.close(); // the origin's idle timeout
    for (let i = 0; i < 50 && pool.idleCount(key) > 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(pool.idleCount(key), 0, "dropped without waiting for reuse");
  } finally {
    pool.close();
    l.close();
  }
});
