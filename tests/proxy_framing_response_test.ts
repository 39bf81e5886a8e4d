/**
 * Strict framing of answers from origins, over raw sockets: a malformed
 * answer never reaches the client as it came. A bad status line, a bad
 * Content-Length or Transfer-Encoding, a NUL or CR in a field, or a bad
 * chunk size before anything went out is answered 502 by the proxy; a bad
 * chunk after the head went out cuts the connection (the client sees no
 * last chunk). Obs-fold is replaced by one SP (RFC 9112 §5.2), and
 * Content-Length beside chunked is dropped. The rules are listed in
 * proxy/http_head.ts and proxy/body.ts.
 */
import assert from "node:assert/strict";
import { type Answer, ask, framingBench } from "./helpers/framing_kit.ts";

/** Every answer carries this, so that the test sees whether it leaked. */
const MARK = "X-Origin-Mark: leaked\r\n";

/**
 * For each origin answer, a client's GET through the proxy; `check` gets
 * the client's answer. One connection per answer (the origin closes).
 */
async function throughProxy(
  answers: (string | (string | number)[])[],
  check: (a: Answer, index: number) => void,
): Promise<void> {
  const bench = await framingBench((i) => answers[i] ?? "");
  try {
    for (let i = 0; i < answers.length; i++) {
      const a = await ask(
        bench.port,
        `GET ${bench.base}/${i} HTTP/1.1\r\nHost: x\r\n\r\n`,
      );
      check(a, i);
    }
    assert.equal(bench.origin.connections, answers.length);
  } finally {
    await bench.close();
  }
}

/** Each answer is replaced by the proxy's 502 naming `why`, nothing leaks. */
async function all502(cases: { answer: string; why: RegExp }[]) {
  await throughProxy(cases.map((c) => c.answer), (a, i) => {
    const label = JSON.stringify(cases[i].answer);
    assert.equal(a.status, 502, `${label}: ${a.text.slice(0, 400)}`);
    assert.match(a.body, cases[i].why, label);
    assert.doesNotMatch(a.text, /leaked|SECRET/, label);
  });
}

const notHttp = /not an HTTP\/1\.x response/;

Deno.test("from origins: a malformed status line is answered 502", async () => {
  await all502([
    { answer: `HTTP/1.1 20 OK\r\n${MARK}\r\n`, why: notHttp },
    { answer: `HTTP/1.1 2000 OK\r\n${MARK}\r\n`, why: notHttp },
    { answer: `HTTP/1.1 099 Early\r\n${MARK}\r\n`, why: notHttp },
    { answer: `HTTP/1.1 000 Zero\r\n${MARK}\r\n`, why: notHttp },
    { answer: `HTTP/2.0 200 OK\r\n${MARK}\r\n`, why: notHttp },
    { answer: `http/1.1 200 OK\r\n${MARK}\r\n`, why: notHttp },
    { answer: `HTTP/1.1  200 OK\r\n${MARK}\r\n`, why: notHttp },
    { answer: `HTTP/1.1 200 O\x00K\r\n${MARK}\r\n`, why: notHttp },
    { answer: `HTTP/1.1 200 O\x01K\r\n${MARK}\r\n`, why: notHttp },
    { answer: `HTTP/1.1 200 O\rK\r\n${MARK}\r\n`, why: notHttp },
    { answer: ` HTTP/1.1 200 OK\r\n${MARK}\r\n`, why: notHttp },
    { answer: `ICY 200 OK\r\n${MARK}\r\n`, why: notHttp },
  ]);
});

Deno.test("from origins: a later minor version is read as 1.1, a status over 599 passes as it is", async () => {
  await throughProxy([
    "HTTP/1.2 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.1 999 Odd\r\nContent-Length: 2\r\n\r\nno",
  ], (a, i) => {
    assert.equal(a.status, i === 0 ? 200 : 999, a.text);
    assert.match(a.head, /^HTTP\/1\.1 /);
  });
});

Deno.test("from origins: a malformed Content-Length is answered 502; one repeated is sent once", async () => {
  const invalid = /invalid Content-Length/;
  const cl = (v: string) =>
    `HTTP/1.1 200 OK\r\n${MARK}Content-Length: ${v}\r\n\r\nSECRET`;
  await all502([
    { answer: cl("+6"), why: invalid },
    { answer: cl("-6"), why: invalid },
    { answer: cl("0x6"), why: invalid },
    { answer: cl(""), why: invalid },
    { answer: cl("6 6"), why: invalid },
    { answer: cl("\xa06"), why: invalid },
    { answer: cl("9007199254740992"), why: invalid },
    { answer: cl("6, 7"), why: /differing Content-Length/ },
    {
      answer:
        `HTTP/1.1 200 OK\r\n${MARK}Content-Length: 6\r\nContent-Length: 7\r\n\r\nSECRET`,
      why: /differing Content-Length/,
    },
  ]);
  await throughProxy([
    "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok",
  ], (a) => {
    assert.equal(a.status, 200, a.text);
    assert.equal(a.head.match(/content-length/gi)?.length, 1, a.head);
    assert.match(a.head, /\r\nContent-Length: 2\r\n/);
    assert.equal(a.body, "ok");
  });
});

Deno.test("from origins: a Transfer-Encoding other than chunked once and last is answered 502", async () => {
  const te = (v: string, version = "1.1") =>
    `HTTP/${version} 200 OK\r\n${MARK}Transfer-Encoding: ${v}\r\n\r\n6\r\nSECRET\r\n0\r\n\r\n`;
  await all502([
    { answer: te("gzip"), why: /last transfer coding is not chunked/ },
    { answer: te("chunked, gzip"), why: /last transfer coding is not chunked/ },
    { answer: te("chunked, chunked"), why: /chunked more than once/ },
    { answer: te("gzip, chunked"), why: /transfer coding other than/ },
    { answer: te(",chunked"), why: /malformed Transfer-Encoding/ },
    { answer: te("\xa0chunked"), why: /malformed Transfer-Encoding/ },
    { answer: te("chunked", "1.0"), why: /HTTP\/1\.0 response/ },
  ]);
});

Deno.test("from origins: Content-Length beside chunked is dropped, the body passes chunked", async () => {
  await throughProxy([
    "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
  ], (a) => {
    assert.equal(a.status, 200, a.text);
    assert.doesNotMatch(a.head, /content-length/i, a.head);
    assert.match(a.head, /\r\nTransfer-Encoding: chunked\r\n/);
    assert.match(a.text, /\r\n\r\n2\r\nok\r\n0\r\n\r\n$/);
  });
});

Deno.test("from origins: NUL, CR or LF in a field, a bad name, whitespace before the first field: 502", async () => {
  const ok = "HTTP/1.1 200 OK\r\n";
  const end = "Content-Length: 6\r\n\r\nSECRET";
  await all502([
    {
      answer: `${ok}${MARK}X-A: a\x00b\r\n${end}`,
      why: /control character \(0x00\)/,
    },
    { answer: `${ok}${MARK}X-A: a\rb\r\n${end}`, why: /bare CR/ },
    { answer: `${ok}${MARK}X-A: a\nb\r\n${end}`, why: /malformed header line/ },
    { answer: `${ok}${MARK}X A: b\r\n${end}`, why: /malformed header line/ },
    { answer: `${ok}${MARK}X-A : b\r\n${end}`, why: /malformed header line/ },
    { answer: `${ok}${MARK}: b\r\n${end}`, why: /malformed header line/ },
    {
      answer: `${ok} ${MARK}${end}`,
      why: /whitespace before the first header field/,
    },
  ]);
});

Deno.test("from origins: obs-fold is replaced by one SP, also where it would change the framing", async () => {
  await throughProxy([
    "HTTP/1.1 200 OK\r\nX-Folded: a\r\n  b \r\n\tc\r\nContent-Length: 2\r\n\r\nok",
  ], (a) => {
    assert.equal(a.status, 200, a.text);
    assert.match(a.head, /\r\nX-Folded: a b c\r\n/, a.head);
    assert.equal(a.body, "ok");
  });
  await all502([
    {
      answer: `HTTP/1.1 200 OK\r\n${MARK}Content-Length: 6\r\n 6\r\n\r\nSECRET`,
      why: /invalid Content-Length/,
    },
    {
      answer:
        `HTTP/1.1 200 OK\r\n${MARK}Transfer-Encoding: chunked\r\n , gzip\r\n\r\n6\r\nSECRET\r\n0\r\n\r\n`,
      why: /last transfer coding is not chunked/,
    },
  ]);
});

Deno.test("from origins: other control characters in a value are kept (RFC 9110 §5.5)", async () => {
  await throughProxy([
    "HTTP/1.1 200 OK\r\nX-A: a\x01b\x7f\r\nContent-Length: 2\r\n\r\nok",
  ], (a) => {
    assert.equal(a.status, 200, a.text);
    assert.ok(a.head.includes("\r\nX-A: a\x01b\x7f\r\n"), a.head);
  });
});

Deno.test("from origins: a bad chunk before anything went out is answered 502", async () => {
  const chunked = (body: string) =>
    `HTTP/1.1 200 OK\r\n${MARK}Transfer-Encoding: chunked\r\n\r\n${body}`;
  await all502([
    { answer: chunked("zz\r\nSECRET"), why: /does not start with hex digits/ },
    { answer: chunked("0x6\r\nSECRET\r\n0\r\n\r\n"), why: /malformed/ },
    { answer: chunked("-6\r\nSECRET\r\n0\r\n\r\n"), why: /hex digits/ },
    { answer: chunked(" 6\r\nSECRET\r\n0\r\n\r\n"), why: /hex digits/ },
    { answer: chunked("6 \r\nSECRET\r\n0\r\n\r\n"), why: /malformed/ },
    { answer: chunked("6\nSECRET\r\n0\r\n\r\n"), why: /bare LF/ },
    { answer: chunked("1".repeat(17) + "\r\n"), why: /too large/ },
    { answer: chunked("6\r\nSECRETXX0\r\n\r\n"), why: /longer than its size/ },
  ]);
});

Deno.test("from origins: a bad chunk after the head went out cuts the connection, with no last chunk", async () => {
  await throughProxy([
    [
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
      200,
      "2\r\nok\r\n",
      100,
      "zz\r\n0\r\n\r\n",
    ],
  ], (a) => {
    assert.equal(a.status, 200, a.text);
    assert.ok(a.closed, "the client connection is closed");
    assert.match(a.text, /\r\n\r\n2\r\nok\r\n$/, "the good chunk, and no more");
    assert.doesNotMatch(a.text, /zz|\r\n0\r\n/);
  });
});
