import assert from "node:assert/strict";
import {
  endToEnd,
  HeadError,
  latin1,
  latin1Bytes,
  parseRequestHead,
  parseResponseHead,
  readHead,
  requestFraming,
  responseFraming,
} from "../proxy/http_head.ts";
import { BodyError, ChunkedScanner } from "../proxy/body.ts";
import { Reader } from "../proxy/_io.ts";
import { isIPv6, parseAuthority, parseHttpUrl } from "../proxy/_target.ts";
import { isIPv6 as nodeIsIPv6 } from "node:net";
import fc from "fast-check";

const head = (s: string) => latin1Bytes(s);

function refused(text: string, status: number) {
  try {
    parseRequestHead(head(text), 100);
  } catch (e) {
    assert.ok(e instanceof HeadError, String(e));
    assert.equal(e.status, status, e.message);
    return;
  }
  assert.fail(`accepted: ${JSON.stringify(text)}`);
}

Deno.test("request heads parse; smuggling guards refuse ambiguous framing", () => {
  const h = parseRequestHead(
    head("GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\nX-A:  b \r\n\r\n"),
    100,
  );
  assert.equal(h.method, "GET");
  assert.equal(h.target, "http://a.test/x");
  assert.equal(h.version, 11);
  assert.deepEqual(h.fields[1], { name: "X-A", lower: "x-a", value: "b" });
  refused(
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    400,
  );
  refused(
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
    400,
  );
  refused("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\n", 400);
  refused("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400);
  refused("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400); // obs-fold
  refused("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", 400); // bare CR
  refused("GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n", 400); // space before colon
  refused("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  refused("GET / HTTP/2.0\r\n\r\n", 505); // another major version
  refused("GET /\r\n\r\n", 400);
  // The last coding is not chunked: the length cannot be known (RFC 9112
  // §6.3), 400; chunked last after a coding we do not decode, 501.
  refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400);
  refused(
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    501,
  );
  refused("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
  const same = parseRequestHead(
    head(
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
    ),
    100,
  );
  assert.deepEqual(requestFraming(same), { kind: "length", length: 3 });
  const many = "GET / HTTP/1.1\r\n" + "X: y\r\n".repeat(101) + "\r\n";
  refused(many, 431);
});

Deno.test("response framing: none for HEAD/1xx/204/304, else CL, chunked or close", () => {
  const r = (s: string) => parseResponseHead(head(s));
  const ok = r("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
  assert.deepEqual(responseFraming("GET", ok), { kind: "length", length: 5 });
  assert.deepEqual(responseFraming("HEAD", ok), { kind: "none" });
  assert.deepEqual(
    responseFraming("GET", r("HTTP/1.1 204 No Content\r\n\r\n")),
    { kind: "none" },
  );
  assert.deepEqual(
    responseFraming("GET", r("HTTP/1.1 304 Not Modified\r\n\r\n")),
    { kind: "none" },
  );
  assert.deepEqual(
    responseFraming(
      "GET",
      r("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n"),
    ),
    { kind: "chunked" },
  );
  assert.deepEqual(responseFraming("GET", r("HTTP/1.0 200 OK\r\n\r\n")), {
    kind: "close",
  });
  assert.throws(() => r("SSH-2.0-OpenSSH\r\n\r\n"), HeadError);
  // Both lengths in a response: chunked wins (the request side refuses it).
  assert.deepEqual(
    responseFraming(
      "GET",
      r("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ),
    { kind: "chunked" },
  );
  assert.throws(
    () =>
      r("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
    HeadError,
  );
});

Deno.test("hop-by-hop fields are removed, with those Connection names", () => {
  const h = parseRequestHead(
    head(
      "GET http://a/ HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n" +
        "Keep-Alive: 5\r\nProxy-Authorization: Basic eDp5\r\nTE: trailers\r\n" +
        "Proxy-Connection: keep-alive\r\nUpgrade: h2c\r\nAccept: */*\r\n\r\n",
    ),
    100,
  );
  assert.deepEqual(endToEnd(h.fields).map((f) => f.name), ["Host", "Accept"]);
  assert.deepEqual(endToEnd(h.fields, ["upgrade"]).map((f) => f.name), [
    "Host",
    "Upgrade",
    "Accept",
  ]);
});

Deno.test("readHead: incremental, bare LF refused, limits give 431/414", async () => {
  const feed = (parts: string[]) => {
    let i = 0;
    return new Reader({
      read(p: Uint8Array) {
        if (i >= parts.length) return Promise.resolve(null);
        const b = latin1Bytes(parts[i++]);
        p.set(b);
        return Promise.resolve(b.length);
      },
      write: (p: Uint8Array) => Promise.resolve(p.length),
      closeWrite: () => Promise.resolve(),
      close() {},
    });
  };
  const r = feed(["\r\nGET / HT", "TP/1.1\r\nA: b\r", "\n\r\nNEXT"]);
  const bytes = await readHead(r, 1000, true);
  assert.equal(latin1(bytes!), "GET / HTTP/1.1\r\nA: b\r\n\r\n");
  assert.equal(r.buffered, 4);
  await assert.rejects(
    () => readHead(feed(["GET / HTTP/1.1\nA: b\n\n"]), 1000, true),
    {
      status: 400,
    },
  );
  const lenient = await readHead(
    feed(["HTTP/1.1 200 OK\nA: b\n\n"]),
    1000,
    false,
  );
  assert.ok(lenient);
  await assert.rejects(
    () =>
      readHead(
        feed(["GET / HTTP/1.1\r\n", "X: " + "a".repeat(3000)]),
        2000,
        true,
      ),
    { status: 431 },
  );
  await assert.rejects(
    () =>
      readHead(
        feed(["GET /" + "a".repeat(9000) + " HTTP/1.1\r\n\r\n"]),
        64 * 1024,
        true,
      ),
    { status: 414 },
  );
  assert.equal(await readHead(feed([]), 1000, true), null);
});

Deno.test("chunked scanner: any split point, trailers, and broken framing", () => {
  const body = "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 9\r\n\r\nNEXT";
  const bytes = latin1Bytes(body);
  const endAt = body.indexOf("NEXT");
  for (let cut = 0; cut <= endAt; cut++) {
    const s = new ChunkedScanner();
    let data = "";
    const take = (from: number, to: number) => {
      const e = s.scan(bytes, from, to);
      for (let k = 0; k < s.data.length; k += 2) {
        data += latin1(bytes.subarray(s.data[k], s.data[k + 1]));
      }
      return e;
    };
    const first = take(0, cut);
    const end = first >= 0 ? first : take(cut, bytes.length);
    assert.equal(end, endAt, `split at ${cut}`);
    assert.equal(data, "hello world");
  }
  const bad = (t: string) =>
    assert.throws(
      () => new ChunkedScanner().scan(latin1Bytes(t), 0, t.length),
      BodyError,
    );
  bad("zz\r\n");
  bad("3\r\nabcd\r\n");
  bad("\r\n");
  bad("1".repeat(20) + "\r\n");
});

Deno.test("targets: absolute http URLs, authorities, IPv6 literals", () => {
  assert.deepEqual(parseHttpUrl("http://Example.COM/a?b#c"), {
    host: "example.com",
    port: 80,
    authority: "example.com",
    path: "/a?b",
  });
  assert.deepEqual(parseHttpUrl("http://[::1]:8080"), {
    host: "::1",
    port: 8080,
    authority: "[::1]:8080",
    path: "/",
  });
  assert.deepEqual(parseHttpUrl("http://h:81?q"), {
    host: "h",
    port: 81,
    authority: "h:81",
    path: "/?q",
  });
  // Userinfo is refused, no longer dropped (RFC 9110 §4.2.4).
  assert.match(parseHttpUrl("http://u:p@h:81?q") as string, /user name/);
  assert.match(parseHttpUrl("https://a/") as string, /CONNECT/);
  assert.match(parseHttpUrl("ftp://a/") as string, /not an http/);
  assert.deepEqual(parseAuthority("[2001:db8::1]:443"), {
    host: "2001:db8::1",
    port: 443,
  });
  assert.match(parseAuthority("a.test") as string, /no port/);
  assert.match(parseAuthority("a.test:99999") as string, /out of range/);
  assert.match(parseAuthority("a b:1") as string, /not a valid host/);
});

Deno.test("isIPv6 answers as node:net's over edge cases and 100,000 seeded random texts", () => {
  const cases = [
    "::",
    "::1",
    "1::",
    "1:2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7::",
    "::2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7",
    ":1::2",
    "1::2:",
    "1:::2",
    "::1::",
    "1:2::3:4:5:6:7:8",
    "::ffff:1.2.3.4",
    "1:2:3:4:5:6:1.2.3.4",
    "1:2:3:4:5:6:7:1.2.3.4",
    "::ffff:1.2.3.04",
    "::ffff:1.2.3.256",
    "::ffff:1.2.3",
    "FE80::A",
    "12345::",
    "g::",
    "",
    ":",
    ":::",
    "1.2.3.4",
    "::1.2.3.4:5",
    "1::2::3",
    "::ffff:",
  ];
  // A small linear congruential generator: the same texts every run.
  let seed = 4291;
  const next = () =>
    (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const alphabet = "0123456789abcdefABCDEF:.g";
  for (let i = 0; i < 50_000; i++) {
    let t = "";
    for (let k = 1 + Math.floor(next() * 20); k > 0; k--) {
      t += alphabet[Math.floor(next() * alphabet.length)];
    }
    cases.push(t);
  }
  for (let i = 0; i < 50_000; i++) {
    const groups: string[] = [];
    for (let k = 1 + Math.floor(next() * 10); k > 0; k--) {
      const r = next();
      groups.push(
        r < 0.2
          ? ""
          : r < 0.3
          ? "1.2.3.4"
          : Math.floor(next() * 0x1ffff).toString(16),
      );
    }
    cases.push(groups.join(":"));
  }
  for (const c of cases) {
    assert.equal(isIPv6(c), nodeIsIPv6(c), JSON.stringify(c));
  }
});

Deno.test("http head: latin1 gives one char per byte, whatever the bytes", () => {
  const byByte = (b: Uint8Array) =>
    Array.from(b, (x) => String.fromCharCode(x)).join("");
  // Mostly ASCII with some high bytes, as heads are; and any bytes at all.
  const headLike = fc.array(
    fc.oneof(
      { weight: 8, arbitrary: fc.integer({ min: 0, max: 0x7f }) },
      { weight: 1, arbitrary: fc.integer({ min: 0x80, max: 0xff }) },
    ),
    { maxLength: 300 },
  ).map((a) => Uint8Array.from(a));
  fc.assert(
    fc.property(fc.oneof(headLike, fc.uint8Array({ maxLength: 300 })), (b) => {
      const s = latin1(b);
      assert.equal(s, byByte(b));
      assert.deepEqual(latin1Bytes(s), b);
    }),
    { numRuns: 3000, seed: 14 },
  );
  // Valid UTF-8 (é, €, an emoji), a byte-order mark, and U+FFFD's own
  // bytes are still one char per byte; so is a head longer than a chunk.
  for (
    const b of [
      [0x41, 0xc3, 0xa9],
      [0xe2, 0x82, 0xac],
      [0xf0, 0x9f, 0x98, 0x80],
      [0xef, 0xbb, 0xbf, 0x47, 0x45, 0x54],
      [0xef, 0xbf, 0xbd],
      Array.from({ length: 10_000 }, (_, i) => i % 7 === 0 ? 0xe9 : 0x61),
    ].map((a) => Uint8Array.from(a))
  ) {
    assert.equal(latin1(b), byByte(b));
  }
  const view = Uint8Array.from([0x58, 0x47, 0x45, 0x54, 0x58]).subarray(1, 4);
  assert.equal(latin1(view), "GET");
});
