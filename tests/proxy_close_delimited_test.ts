/**
 * Close-delimited answers (no Content-Length, no chunked: the origin's close
 * ends the body) over real sockets: rechunked for a kept-alive HTTP/1.1
 * client so its connection goes on, bare data then a close for HTTP/1.0.
 * The decision itself is unit-tested in proxy_response_plan_test.ts. The
 * policy is a fake (see helpers/proxy_kit.ts for why that is legitimate
 * here).
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
