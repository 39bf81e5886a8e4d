/**
 * Strict framing of requests (RFC 9110, RFC 9112; the rules are listed in
 * proxy/http_head.ts and proxy/body.ts), over raw sockets: each malformed
 * request is refused with 400 (501 for a transfer coding we do not
 * decode, 505 for another major version) before the policy is asked and
 * before anything is dialled, and the connection is closed after a refused
 * head. The cases come from RFC 9112's grammar, the parser discrepancies
 * the HTTP Garden found, and the request-smuggling payloads of the
 * `smuggler` scanner; squid and tinyproxy accept some of them.
 *
 * A malformed chunk that arrives after the request went up can only be
 * found while the body streams: the last test covers that path.
 */
import assert from "node:assert/strict";
import { type Answer, ask, framingBench } from "./helpers/framing_kit.ts";

/** A request whose head or body is refused, and the reason the page gives. */
interface Refused {
  request: string;
  status: number;
  why: RegExp;
}

/**
 * Sends each request and checks its refusal: the status, the reason, the
 * connection closed (after a head that cannot be read, or a body), and
 * nothing asked or dialled.
 */
async function allRefused(cases: Refused[], close = true): Promise<void> {
  const bench = await framingBench();
  try {
    for (const c of cases) {
      const label = JSON.stringify(c.request);
      const a = await ask(bench.port, c.request, close ? 300 : 0);
      assert.equal(a.status, c.status, `${label}: ${a.text.slice(0, 300)}`);
      assert.match(a.body, c.why, label);
      if (close) {
        assert.ok(a.closed, `${label}: the connection is closed`);
        assert.match(a.head, /\r\nConnection: close\r\n/, label);
      }
    }
    assert.equal(bench.policy.facts.length, 0, "the policy was never asked");
    assert.equal(bench.origin.connections, 0, "nothing was dialled");
  } finally {
    await bench.close();
  }
}

/** Sends `request` (with `{base}` for the origin) and checks it went up. */
async function accepted(
  request: string,
  check: (got: { head: string; body: string }, answer: Answer) => void,
): Promise<void> {
  const bench = await framingBench();
  try {
    const a = await ask(bench.port, request.replaceAll("{base}", bench.base));
    assert.equal(a.status, 200, a.text.slice(0, 300));
    assert.equal(a.body, "ok");
    await bench.origin.seen(1);
    const got = bench.origin.received[0];
    assert.ok(!got.cut, "the whole request went up");
    check(got, a);
  } finally {
    await bench.close();
  }
}

const T = "http://127.0.0.1:9/"; // never dialled: every case is refused first
const H = "Host: a.test\r\n";

Deno.test("request line: one SP between three parts, a token method, a case-sensitive version", async () => {
  const line = /request line is not METHOD TARGET HTTP\/1\.1/;
  const version = /unsupported protocol version/;
  await allRefused([
    { request: `GET  ${T} HTTP/1.1\r\n${H}\r\n`, status: 400, why: line },
    { request: `GET ${T}  HTTP/1.1\r\n${H}\r\n`, status: 400, why: line },
    { request: `GET\t${T} HTTP/1.1\r\n${H}\r\n`, status: 400, why: line },
    { request: `GET ${T}\tHTTP/1.1\r\n${H}\r\n`, status: 400, why: line },
    { request: `GET ${T} HTTP/1.1 \r\n${H}\r\n`, status: 400, why: line },
    { request: ` GET ${T} HTTP/1.1\r\n${H}\r\n`, status: 400, why: line },
    { request: `G@T ${T} HTTP/1.1\r\n${H}\r\n`, status: 400, why: line },
    { request: `GET\x00 ${T} HTTP/1.1\r\n${H}\r\n`, status: 400, why: line },
    { request: `GET ${T}\x7f HTTP/1.1\r\n${H}\r\n`, status: 400, why: line },
    { request: `GET ${T} http/1.1\r\n${H}\r\n`, status: 400, why: version },
    { request: `GET ${T} HTTP/1.1x\r\n${H}\r\n`, status: 400, why: version },
    { request: `GET ${T} HTTP/1.10\r\n${H}\r\n`, status: 400, why: version },
    { request: `GET ${T} HTTP/01.1\r\n${H}\r\n`, status: 400, why: version },
    { request: `GET ${T} HTTP/1\r\n${H}\r\n`, status: 400, why: version },
    { request: `GET ${T} HTTP/1.1.1\r\n${H}\r\n`, status: 400, why: version },
    {
      request: `GET ${T} HTTP/2.0\r\n${H}\r\n`,
      status: 505,
      why: /HTTP\/2\.0 is not spoken here/,
    },
    {
      request: `GET ${T} HTTP/0.9\r\n${H}\r\n`,
      status: 505,
      why: /HTTP\/0\.9/,
    },
    { request: `GET ${T} HTTP/1.1\n${H}\r\n`, status: 400, why: /bare LF/ },
    { request: `GET ${T} HTTP/1.1\r\r\n${H}\r\n`, status: 400, why: version },
  ]);
});

Deno.test("request line: a later HTTP/1.x minor version is read as HTTP/1.1 (RFC 9110 §2.5)", async () => {
  await accepted(`GET {base}/v HTTP/1.2\r\n${H}\r\n`, (got, a) => {
    assert.match(got.head, /^GET \/v HTTP\/1\.1\r\n/);
    assert.doesNotMatch(a.head, /Connection: close/, "kept alive as 1.1");
  });
});

Deno.test("field lines: token names, no whitespace before the colon or the first line, no obs-fold", async () => {
  const malformed = /malformed header line/;
  await allRefused([
    {
      request: `GET ${T} HTTP/1.1\r\n ${H}\r\n`,
      status: 400,
      why: /whitespace before the first header field/,
    },
    {
      request: `GET ${T} HTTP/1.1\r\n\t${H}\r\n`,
      status: 400,
      why: /whitespace before the first header field/,
    },
    {
      request: `GET ${T} HTTP/1.1\r\n${H}X-A: b\r\n c\r\n\r\n`,
      status: 400,
      why: /obsolete line folding/,
    },
    {
      request: `GET ${T} HTTP/1.1\r\n${H}X-A: b\r\n\tc\r\n\r\n`,
      status: 400,
      why: /obsolete line folding/,
    },
    {
      request: `GET ${T} HTTP/1.1\r\n${H}X-A : b\r\n\r\n`,
      status: 400,
      why: malformed,
    },
    {
      request: `GET ${T} HTTP/1.1\r\n${H}X-A\t: b\r\n\r\n`,
      status: 400,
      why: malformed,
    },
    {
      request: `GET ${T} HTTP/1.1\r\n${H}X-A b\r\n\r\n`,
      status: 400,
      why: malformed,
    },
    {
      request: `GET ${T} HTTP/1.1\r\n${H}: b\r\n\r\n`,
      status: 400,
      why: malformed,
    },
    {
      request: `GET ${T} HTTP/1.1\r\n${H}X(A): b\r\n\r\n`,
      status: 400,
      why: malformed,
    },
    {
      request: `GET ${T} HTTP/1.1\r\n${H}X\x82A: b\r\n\r\n`,
      status: 400,
      why: malformed,
    },
    {
      request: `GET ${T} HTTP/1.1\r\n${H}X-A\r\n\r\n`,
      status: 400,
      why: malformed,
    },
    // The header block does not end at "\r\n\rX" (HTTP Garden).
    {
      request: `GET ${T} HTTP/1.1\r\n${H}\rX: y\r\n\r\n`,
      status: 400,
      why: /bare CR/,
    },
  ]);
});

Deno.test("field values: no NUL, CR, LF or other control character but HTAB", async () => {
  const ctl = (c: string) => new RegExp(`control character \\(0x${c}\\)`);
  await allRefused([
    {
      request: `GET ${T} HTTP/1.1\r\n${H}X-A: a\x00b\r\n\r\n`,
      status: 400,
      why: ctl("00"),
    },
    {
      request: `GET ${T} HTTP/1.1\r\n${H}X-A: a\rb\r\n\r\n`,
      status: 400,
      why: /bare CR/,
    },
    {
      request: `GET ${T} HTTP/1.1\r\n${H}X-A: a\nb\r\n\r\n`,
      status: 400,
      why: /bare LF/,
    },
    {
      request: `GET ${T} HTTP/1.1\r\n${H}X-A: \x0bb\r\n\r\n`,
      status: 400,
      why: ctl("0b"),
    },
    {
      request: `GET ${T} HTTP/1.1\r\n${H}X-A: b\x0c\r\n\r\n`,
      status: 400,
      why: ctl("0c"),
    },
    {
      request: `GET ${T} HTTP/1.1\r\n${H}X-A: a\x01b\r\n\r\n`,
      status: 400,
      why: ctl("01"),
    },
    {
      request: `GET ${T} HTTP/1.1\r\n${H}X-A: a\x7fb\r\n\r\n`,
      status: 400,
      why: ctl("7f"),
    },
    {
      request: `GET ${T} HTTP/1.1\r\n${H}X-A: a\x1fb\r\n\r\n`,
      status: 400,
      why: ctl("1f"),
    },
  ]);
});

Deno.test("field values: HTAB and obs-text pass, and NBSP is not taken for whitespace", async () => {
  await accepted(
    `GET {base}/ HTTP/1.1\r\n${H}X-A: \ta\tb\xa0\r\nX-B: \xa0c\r\n\r\n`,
    (got) => {
      assert.match(got.head, /\r\nX-A: a\tb\xa0\r\n/);
      assert.match(got.head, /\r\nX-B: \xa0c\r\n/);
    },
  );
});

Deno.test("Host: exactly one in an HTTP/1.1 request, and host[:port]", async () => {
  const host = /Host field is not host\[:port\]/;
  await allRefused([
    {
      request: `GET ${T} HTTP/1.1\r\n\r\n`,
      status: 400,
      why: /needs a Host field/,
    },
    {
      request: `GET ${T} HTTP/1.1\r\nX-A: b\r\n\r\n`,
      status: 400,
      why: /needs a Host field/,
    },
    {
      request: `GET ${T} HTTP/1.1\r\n${H}${H}\r\n`,
      status: 400,
      why: /more than one Host/,
    },
    {
      request: `GET ${T} HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n`,
      status: 400,
      why: /more than one Host/,
    },
    {
      request: `GET ${T} HTTP/1.0\r\n${H}${H}\r\n`,
      status: 400,
      why: /more than one Host/,
    },
    {
      request: `GET ${T} HTTP/1.1\r\nHost: a b\r\n\r\n`,
      status: 400,
      why: host,
    },
    {
      request: `GET ${T} HTTP/1.1\r\nHost: u@a.test\r\n\r\n`,
      status: 400,
      why: host,
    },
    {
      request: `GET ${T} HTTP/1.1\r\nHost: a.test:99999\r\n\r\n`,
      status: 400,
      why: host,
    },
    {
      request: `GET ${T} HTTP/1.1\r\nHost: a.test:8x\r\n\r\n`,
      status: 400,
      why: host,
    },
    {
      request: `GET ${T} HTTP/1.1\r\nHost: a/b\r\n\r\n`,
      status: 400,
      why: host,
    },
    {
      request: `CONNECT a.test:443 HTTP/1.1\r\n\r\n`,
      status: 400,
      why: /needs a Host field/,
    },
  ]);
});

Deno.test("Host: the absolute target wins over a Host that differs; HTTP/1.0 may omit it", async () => {
  await accepted(
    `GET {base}/p HTTP/1.1\r\nHost: elsewhere.test\r\n\r\n`,
    (got) => {
      const host = /\r\nHost: ([^\r]*)\r\n/.exec(got.head)?.[1];
      assert.match(host ?? "", /^127\.0\.0\.1:\d+$/, got.head);
      assert.doesNotMatch(got.head, /elsewhere/);
    },
  );
  await accepted(`GET {base}/p HTTP/1.0\r\n\r\n`, (got) => {
    assert.match(got.head, /\r\nHost: 127\.0\.0\.1:\d+\r\n/);
  });
});

Deno.test("Content-Length: 1*DIGIT only, one value, no overflow", async () => {
  const invalid = /invalid Content-Length/;
  const differ = /differing Content-Length/;
  const post = (cl: string) =>
    `POST ${T} HTTP/1.1\r\n${H}Content-Length: ${cl}\r\n\r\n`;
  await allRefused([
    { request: post("+5"), status: 400, why: invalid },
    { request: post("-5"), status: 400, why: invalid },
    { request: post("0x5"), status: 400, why: invalid },
    { request: post("5 5"), status: 400, why: invalid },
    { request: post("5_0"), status: 400, why: invalid },
    { request: post("5e2"), status: 400, why: invalid },
    { request: post("5.0"), status: 400, why: invalid },
    { request: post(""), status: 400, why: invalid },
    { request: post("5,"), status: 400, why: invalid },
    { request: post(",5"), status: 400, why: invalid },
    { request: post("\xa05"), status: 400, why: invalid },
    { request: post("5\xa0"), status: 400, why: invalid },
    { request: post("\u00855"), status: 400, why: invalid },
    { request: post("5, 6"), status: 400, why: differ },
    { request: post("5, 05"), status: 400, why: differ },
    {
      request:
        `POST ${T} HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\n`,
      status: 400,
      why: differ,
    },
    {
      request:
        `POST ${T} HTTP/1.1\r\n${H}Content-Length:\r\nContent-Length: 5\r\n\r\n`,
      status: 400,
      why: invalid,
    },
    { request: post("9007199254740992"), status: 400, why: invalid },
    { request: post("1".repeat(17)), status: 400, why: invalid },
    { request: post("0".repeat(17)), status: 400, why: invalid },
  ]);
});

Deno.test("Content-Length: a repeated identical value is read as one and forwarded once, in decimal", async () => {
  await accepted(
    `POST {base}/ HTTP/1.1\r\n${H}Content-Length: 5, 5\r\n\r\nhello`,
    (got) => {
      assert.equal(got.head.match(/content-length/gi)?.length, 1, got.head);
      assert.match(got.head, /\r\nContent-Length: 5\r\n/);
      assert.equal(got.body, "hello");
    },
  );
  await accepted(
    `POST {base}/ HTTP/1.1\r\n${H}Content-Length: 5\r\ncontent-length: 5\r\n\r\nhello`,
    (got) => {
      assert.equal(got.head.match(/content-length/gi)?.length, 1, got.head);
      assert.equal(got.body, "hello");
    },
  );
  // Leading zeros are decimal here; a next hop could read "010" as octal.
  await accepted(
    `POST {base}/ HTTP/1.1\r\n${H}Content-Length: 010\r\n\r\nhellohello`,
    (got) => {
      assert.match(got.head, /\r\nContent-Length: 10\r\n/);
      assert.equal(got.body, "hellohello");
    },
  );
});

Deno.test("Transfer-Encoding: chunked once and last, tokens only, not in HTTP/1.0, not beside Content-Length", async () => {
  const te = (v: string) =>
    `POST ${T} HTTP/1.1\r\n${H}Transfer-Encoding: ${v}\r\n\r\n0\r\n\r\n`;
  const twice = /names chunked more than once/;
  const notLast = /last transfer coding is not chunked/;
  const malformed = /malformed Transfer-Encoding/;
  await allRefused([
    { request: te("chunked, chunked"), status: 400, why: twice },
    {
      request:
        `POST ${T} HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      status: 400,
      why: twice,
    },
    { request: te("chunked, gzip"), status: 400, why: notLast },
    { request: te("gzip"), status: 400, why: notLast },
    { request: te("identity"), status: 400, why: notLast },
    { request: te("chunk"), status: 400, why: notLast },
    { request: te("'chunked'"), status: 400, why: notLast },
    { request: te(",chunked"), status: 400, why: malformed },
    { request: te("chunked,"), status: 400, why: malformed },
    { request: te(""), status: 400, why: malformed },
    { request: te('"chunked"'), status: 400, why: malformed },
    { request: te("chunked;q=1"), status: 400, why: malformed },
    { request: te("cow chunked bar"), status: 400, why: malformed },
    { request: te("\xffchunked"), status: 400, why: malformed },
    { request: te("\xa0chunked"), status: 400, why: malformed },
    { request: te("ch\x96nked"), status: 400, why: malformed },
    { request: te("\x0bchunked"), status: 400, why: /control character/ },
    { request: te("chunked\r"), status: 400, why: /bare CR/ },
    {
      request:
        `POST ${T} HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      status: 400,
      why: /HTTP\/1\.0 request cannot use Transfer-Encoding/,
    },
    {
      request:
        `POST ${T} HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      status: 400,
      why: /both Content-Length and Transfer-Encoding/,
    },
    {
      request:
        `POST ${T} HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n`,
      status: 400,
      why: /both Content-Length and Transfer-Encoding/,
    },
    {
      request:
        `POST ${T} HTTP/1.1\r\n${H}Transfer-Encoding: cow\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      status: 501,
      why: /transfer coding other than .{1,5}chunked.{1,5} \(cow\)/,
    },
    {
      request: te("gzip, chunked"),
      status: 501,
      why: /transfer coding other than .{1,5}chunked.{1,5} \(gzip\)/,
    },
  ]);
});

Deno.test("Transfer-Encoding: smuggler's disguises of it beside Content-Length are all refused", async () => {
  // The scanner's mutations: a Transfer-Encoding some parser sees and
  // another does not, beside a Content-Length.
  const gadgets = [
    "Transfer-Encoding:\tchunked",
    "Transfer-Encoding : chunked",
    "Transfer-Encoding\t:\tchunked",
    " Transfer-Encoding: chunked",
    "Transfer-Encoding:  chunked",
    "Transfer-Encoding:\x0bchunked",
    "Transfer-Encoding: chunked, cow",
    'Transfer-Encoding: "chunked"',
    "TrAnSFer-EnCODinG: cHuNkeD",
    "Transfer-Encoding: chunked\t",
    "Transfer\r-Encoding: chunked",
    "Transfer-Encoding: cow chunked bar",
    "Transf\x82r-Encoding: chunked",
    "X:X\rTransfer-Encoding: chunked",
    "Transfer_Encoding: chunked",
  ];
  for (const c of [0x1, 0x4, 0x8, 0xb, 0xc, 0xd, 0x1f, 0x7f, 0xa0, 0xff]) {
    const ch = String.fromCharCode(c);
    gadgets.push(
      `Transfer-Encoding:${ch}chunked`,
      `Transfer-Encoding${ch}: chunked`,
      `${ch}Transfer-Encoding: chunked`,
      `Transfer-Encoding: chunked${ch}`,
      `X: X\r${ch}Transfer-Encoding: chunked`,
    );
    // obs-text is allowed in a value: "X: X\xa0Transfer-Encoding: …" is a
    // field X, and the request is framed by its Content-Length.
    if (c < 0x80) gadgets.push(`X: X${ch}Transfer-Encoding: chunked`);
  }
  const bench = await framingBench();
  try {
    for (const g of gadgets) {
      const a = await ask(
        bench.port,
        `POST ${T} HTTP/1.1\r\n${g}\r\n${H}Content-Length: 5\r\n\r\n0\r\n\r\n`,
      );
      assert.equal(a.status, 400, `${JSON.stringify(g)}: ${a.head}`);
      assert.ok(a.closed, JSON.stringify(g));
    }
    assert.equal(bench.policy.facts.length, 0);
    assert.equal(bench.origin.connections, 0);
  } finally {
    await bench.close();
  }
});

Deno.test("Transfer-Encoding: the names of framing fields with _ for - are refused", async () => {
  await allRefused([
    {
      request:
        `POST ${T} HTTP/1.1\r\n${H}Transfer_Encoding: chunked\r\n\r\n0\r\n\r\n`,
      status: 400,
      why: /may take for transfer-encoding/,
    },
    {
      request: `POST ${T} HTTP/1.1\r\n${H}Content_Length: 5\r\n\r\nhello`,
      status: 400,
      why: /may take for content-length/,
    },
  ]);
});

Deno.test("Transfer-Encoding: chunked in any case goes up as chunked, the body as it came", async () => {
  const body = '5;a=b;c="q\\"x" ; d\r\nhello\r\n0\r\nX-T: 1\r\n\r\n';
  await accepted(
    `POST {base}/ HTTP/1.1\r\n${H}Transfer-Encoding: CHUNKED\r\n\r\n${body}`,
    (got) => {
      assert.match(got.head, /\r\nTransfer-Encoding: chunked\r\n/, got.head);
      assert.equal(got.body, body);
    },
  );
});

Deno.test("targets: no userinfo in an http URI, a well-formed authority", async () => {
  const userinfo = /cannot carry a user name or password/;
  const get = (t: string) => `GET ${t} HTTP/1.1\r\n${H}\r\n`;
  await allRefused([
    {
      request: get("http://user:pass@127.0.0.1:9/"),
      status: 400,
      why: userinfo,
    },
    { request: get("http://user@127.0.0.1:9/"), status: 400, why: userinfo },
    { request: get("http://a.test@127.0.0.1:9/"), status: 400, why: userinfo },
    { request: get("http://@127.0.0.1:9/"), status: 400, why: userinfo },
    {
      request: get("http://a.test:99999/"),
      status: 400,
      why: /port out of range/,
    },
    { request: get("http://a.test:8x/"), status: 400, why: /invalid port/ },
    { request: get("http://a.test:-1/"), status: 400, why: /invalid port/ },
    { request: get("http:///x"), status: 400, why: /not a valid host/ },
    { request: get("http://a%zz.test/"), status: 400, why: /not a valid host/ },
    { request: get("http://a\\b.test/"), status: 400, why: /not a valid host/ },
    { request: get('http://a"b/'), status: 400, why: /not a valid host/ },
    { request: get("http://[::1/"), status: 400, why: /unclosed IPv6/ },
    {
      request: get("http://[zz::1]/"),
      status: 400,
      why: /not an IPv6 address/,
    },
    { request: get("http://[:::1]/"), status: 400, why: /not an IPv6 address/ },
    { request: get("http://[::1]x/"), status: 400, why: /invalid port/ },
    {
      request: `CONNECT u@a.test:443 HTTP/1.1\r\n${H}\r\n`,
      status: 400,
      why: /not a valid host/,
    },
    {
      request: `CONNECT a.test:99999 HTTP/1.1\r\n${H}\r\n`,
      status: 400,
      why: /out of range/,
    },
    {
      request: `CONNECT [1:2]:443 HTTP/1.1\r\n${H}\r\n`,
      status: 400,
      why: /not an IPv6/,
    },
  ], false);
});

/** A chunked POST whose body starts with `body`, all in one write. */
const chunked = (body: string) =>
  `POST ${T} HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n${body}`;

Deno.test("chunk sizes: hex digits only, no prefix, sign or whitespace before, no overflow", async () => {
  const notHex = /does not start with hex digits/;
  const malformed = /chunk size line is malformed/;
  const large = /chunk size is too large/;
  await allRefused([
    {
      request: chunked("0x5\r\nhello\r\n0\r\n\r\n"),
      status: 400,
      why: malformed,
    },
    { request: chunked("+5\r\nhello\r\n0\r\n\r\n"), status: 400, why: notHex },
    { request: chunked("-5\r\nhello\r\n0\r\n\r\n"), status: 400, why: notHex },
    { request: chunked(" 5\r\nhello\r\n0\r\n\r\n"), status: 400, why: notHex },
    { request: chunked("\t5\r\nhello\r\n0\r\n\r\n"), status: 400, why: notHex },
    { request: chunked("\r\nhello\r\n0\r\n\r\n"), status: 400, why: notHex },
    { request: chunked(";a\r\nhello\r\n0\r\n\r\n"), status: 400, why: notHex },
    {
      request: chunked("5_0\r\nhello\r\n0\r\n\r\n"),
      status: 400,
      why: malformed,
    },
    {
      request: chunked("5g\r\nhello\r\n0\r\n\r\n"),
      status: 400,
      why: malformed,
    },
    {
      request: chunked("5 \r\nhello\r\n0\r\n\r\n"),
      status: 400,
      why: malformed,
    },
    {
      request: chunked("5\t\r\nhello\r\n0\r\n\r\n"),
      status: 400,
      why: malformed,
    },
    {
      request: chunked("5\x00\r\nhello\r\n0\r\n\r\n"),
      status: 400,
      why: malformed,
    },
    { request: chunked("1".repeat(17) + "\r\n"), status: 400, why: large },
    { request: chunked("0".repeat(17) + "5\r\n"), status: 400, why: large },
    { request: chunked("20000000000000\r\n"), status: 400, why: large },
    { request: chunked("ffffffffffffffff\r\n"), status: 400, why: large },
  ]);
});

Deno.test("chunk lines end in CRLF: a bare LF or CR is refused", async () => {
  await allRefused([
    { request: chunked("5\nhello\r\n0\r\n\r\n"), status: 400, why: /bare LF/ },
    { request: chunked("5\rhello\r\n0\r\n\r\n"), status: 400, why: /bare CR/ },
    {
      request: chunked("5;a\nhello\r\n0\r\n\r\n"),
      status: 400,
      why: /bare LF/,
    },
    {
      request: chunked("5;a\rXhello\r\n0\r\n\r\n"),
      status: 400,
      why: /bare CR/,
    },
    { request: chunked("5\r\nhello\n0\r\n\r\n"), status: 400, why: /bare LF/ },
    { request: chunked("5\r\nhello\rX0\r\n\r\n"), status: 400, why: /bare CR/ },
    { request: chunked("5\r\nhello\r\n0\n\r\n"), status: 400, why: /bare LF/ },
    { request: chunked("5\r\nhello\r\n0\r\n\n"), status: 400, why: /bare LF/ },
    { request: chunked("5\r\nhello\r\n0\r\n\rX"), status: 400, why: /bare CR/ },
  ]);
});

Deno.test("chunk data is followed by CRLF exactly", async () => {
  const longer = /chunk data is longer than its size/;
  await allRefused([
    { request: chunked("5\r\nhelloXX0\r\n\r\n"), status: 400, why: longer },
    { request: chunked("5\r\nhello!\r\n0\r\n\r\n"), status: 400, why: longer },
    { request: chunked("3\r\nhello\r\n0\r\n\r\n"), status: 400, why: longer },
    // An empty line before the last chunk is no size (HTTP Garden).
    {
      request: chunked("5\r\nhello\r\n\r\n0\r\n\r\n"),
      status: 400,
      why: /does not start with hex digits/,
    },
  ]);
});

Deno.test("chunk extensions: BWS ; token [= token / quoted-string], no bare CR or control character", async () => {
  const malformed = /chunk size line is malformed/;
  await allRefused([
    {
      request: chunked("5;\r\nhello\r\n0\r\n\r\n"),
      status: 400,
      why: malformed,
    },
    {
      request: chunked("5;=b\r\nhello\r\n0\r\n\r\n"),
      status: 400,
      why: malformed,
    },
    {
      request: chunked("5;a=\r\nhello\r\n0\r\n\r\n"),
      status: 400,
      why: malformed,
    },
    {
      request: chunked("5;a b\r\nhello\r\n0\r\n\r\n"),
      status: 400,
      why: malformed,
    },
    {
      request: chunked("5;a=b c\r\nhello\r\n0\r\n\r\n"),
      status: 400,
      why: malformed,
    },
    {
      request: chunked("5;a\x00\r\nhello\r\n0\r\n\r\n"),
      status: 400,
      why: malformed,
    },
    {
      request: chunked("5;a=\x01\r\nhello\r\n0\r\n\r\n"),
      status: 400,
      why: malformed,
    },
    {
      request: chunked('5;a="x\rb"\r\nhello\r\n0\r\n\r\n'),
      status: 400,
      why: malformed,
    },
    {
      request: chunked('5;a="x\x00"\r\nhello\r\n0\r\n\r\n'),
      status: 400,
      why: malformed,
    },
    {
      request: chunked('5;a="x\r\nhello\r\n0\r\n\r\n'),
      status: 400,
      why: malformed,
    },
    {
      request: chunked('5;a="x"y\r\nhello\r\n0\r\n\r\n'),
      status: 400,
      why: malformed,
    },
    {
      request: chunked('5;a="\\\r"\r\nhello\r\n0\r\n\r\n'),
      status: 400,
      why: malformed,
    },
    // A CR in the whitespace before ";" (HTTP Garden).
    {
      request: chunked("5\r;a\r\nhello\r\n0\r\n\r\n"),
      status: 400,
      why: /bare CR/,
    },
    {
      request: chunked("5 \r;a\r\nhello\r\n0\r\n\r\n"),
      status: 400,
      why: malformed,
    },
    {
      request: chunked("5;a" + "b".repeat(5000) + "\r\n"),
      status: 400,
      why: /too long/,
    },
  ]);
});

Deno.test("the last chunk and trailers: field lines of a token, a colon and a value, then CRLF", async () => {
  const trailer = /trailer field is malformed/;
  await allRefused([
    { request: chunked("0\r\n X: y\r\n\r\n"), status: 400, why: trailer },
    { request: chunked("0\r\nX : y\r\n\r\n"), status: 400, why: trailer },
    { request: chunked("0\r\nX y\r\n\r\n"), status: 400, why: trailer },
    { request: chunked("0\r\n: y\r\n\r\n"), status: 400, why: trailer },
    { request: chunked("0\r\nX: a\x00b\r\n\r\n"), status: 400, why: trailer },
    { request: chunked("0\r\nX: a\x0bb\r\n\r\n"), status: 400, why: trailer },
    { request: chunked("0\r\nX: a\rb\r\n\r\n"), status: 400, why: /bare CR/ },
    { request: chunked("0\r\nX: y\n\r\n"), status: 400, why: /bare LF/ },
    { request: chunked("0\r\nX: y\r\n\n"), status: 400, why: /bare LF/ },
  ]);
});

Deno.test("a malformed chunk after the request went up: 400 to the client, the upstream closed, the bad bytes never sent", async () => {
  const bench = await framingBench();
  try {
    const answer = ask(bench.port, [
      `POST ${bench.base}/ HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n`,
      300,
      "5\nworld\r\n0\r\n\r\n",
    ]);
    await bench.origin.seen(1);
    const got = bench.origin.received[0];
    const a = await answer;
    assert.equal(a.status, 400, a.text);
    assert.match(
      a.body,
      /request body is malformed: a chunk size line ends in a bare LF/,
    );
    assert.ok(a.closed, "the client connection is closed");
    // The origin's connection was closed mid-body (before the proxy was).
    assert.ok(got.cut, "the upstream connection was closed");
    assert.equal(got.body, "5\r\nhello\r\n", "only the good chunk went up");
    assert.equal(bench.policy.facts.length, 1);
    assert.equal(bench.policy.records[0]?.result, "TCP_MISS/400");
  } finally {
    await bench.close();
  }
});
