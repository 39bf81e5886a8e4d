/**
 * The access log's line formats (Squid native as Squid 5 writes it, and JSON
 * lines; written by proxy/ itself) and its writer's promise never to take
 * the data path down. The lines' journey to standard output and syslog is
 * tested end to end in e2e_access_log_test.ts, to a file read by calamaris
 * and rotated in e2e_logs_test.ts; what each request logs, in the proxy_*
 * tests through helpers/proxy_kit.ts.
 */
import assert from "node:assert/strict";
import {
  formatAccessLine,
  formatJsonLine,
  logExchange,
  newExchange,
} from "../proxy/access_log.ts";
import { parseAccessLine } from "./helpers/proxy_kit.ts";
import { openSyslog } from "../proxy/log_sinks.ts";
import { createSocket } from "node:dgram";

function finished() {
  const x = newExchange("10.0.0.5", new Date(1764064012345));
  x.method = "GET";
  x.url = "http://example.org/";
  x.tag = "TCP_MISS";
  x.status = 200;
  x.bytes = 1534;
  x.hierarchy = "HIER_DIRECT/93.184.216.34";
  return x;
}

Deno.test("access line: Squid native fields in order, the user and type when known", () => {
  const x = finished();
  x.user = "user0";
  x.contentType = "text/html";
  assert.equal(
    formatAccessLine(x, 12),
    "1764064012.345     12 10.0.0.5 TCP_MISS/200 1534 GET http://example.org/ user0 HIER_DIRECT/93.184.216.34 text/html",
  );
});

Deno.test("access line: '-' for no user and no content type; a long elapsed is not cut", () => {
  const x = finished();
  x.user = "";
  assert.equal(
    formatAccessLine(x, 1234567),
    "1764064012.345 1234567 10.0.0.5 TCP_MISS/200 1534 GET http://example.org/ - HIER_DIRECT/93.184.216.34 -",
  );
});

Deno.test("access line: the decision's note is one more tag of the result code", () => {
  const x = finished();
  x.user = "user0";
  x.note = "slowed";
  assert.equal(
    formatAccessLine(x, 12),
    "1764064012.345     12 10.0.0.5 TCP_MISS_SLOWED/200 1534 GET http://example.org/ user0 HIER_DIRECT/93.184.216.34 -",
  );
  // Whatever it holds, the result code stays one word.
  x.tag = "TCP_TUNNEL";
  x.note = "over quota";
  assert.match(formatAccessLine(x, 1), / TCP_TUNNEL_OVER_QUOTA\/200 /);
});

Deno.test("access line: a fresh exchange (a head that could not be read) logs NONE_NONE, HIER_NONE", () => {
  const x = newExchange("::1", new Date(1000));
  x.status = 400;
  assert.equal(
    formatAccessLine(x, 0),
    "1.000      0 ::1 NONE_NONE/400 0 - - - HIER_NONE/- -",
  );
});

Deno.test("logExchange sends one line per exchange, survives a failing sink and no sink", () => {
  const lines: string[] = [];
  const x = finished();
  logExchange({ send: (l) => lines.push(l), close() {} }, x);
  assert.equal(lines.length, 1);
  const parsed = parseAccessLine(lines[0]);
  assert.equal(parsed.result, "TCP_MISS/200");
  assert.equal(parsed.bytes, 1534);
  assert.equal(parsed.hierarchy, "HIER_DIRECT/93.184.216.34");
  assert.equal(parsed.user, undefined);
  logExchange({
    send() {
      throw new Error("the log is gone");
    },
    close() {},
  }, x);
  logExchange(undefined, x);
});

Deno.test("access line: the media type alone, as Squid logs it (cut at ';' or white space)", () => {
  const x = finished();
  for (
    const [given, logged] of [
      ["text/html; charset=utf-8", "text/html"],
      ["text/html;charset=utf-8", "text/html"],
      ["application/json \t; q=1", "application/json"],
      ["image/png", "image/png"],
      ["  ", "-"],
      ["; charset=utf-8", "-"],
    ]
  ) {
    x.contentType = given;
    const line = formatAccessLine(x, 1);
    assert.equal(line.split(" ").filter((f) => f !== "").length, 10, line);
    assert.ok(line.endsWith(` ${logged}`), `${given} -> ${line}`);
  }
});

Deno.test("access line: status in three digits, 000 when nothing was sent", () => {
  const x = finished();
  x.status = 0;
  x.tag = "TCP_MISS_ABORTED";
  assert.match(formatAccessLine(x, 3), / TCP_MISS_ABORTED\/000 1534 /);
});

Deno.test("access line: what would split a field is escaped; IPv6 brackets in URLs stay", () => {
  const x = finished();
  x.user = "Jane Doe%[x]\u00e9";
  x.url = "http://[::1]:8080/a b\u00ff";
  x.method = "GET";
  const line = formatAccessLine(x, 1);
  assert.equal(line.split(" ").filter((f) => f !== "").length, 10, line);
  assert.match(line, / Jane%20Doe%25%5Bx%5D%C3%A9 /);
  assert.match(line, / http:\/\/\[::1\]:8080\/a%20b%C3%BF /);
  const plain = finished();
  plain.user = "user0";
  assert.match(formatAccessLine(plain, 1), / user0 HIER_DIRECT\//);
});

Deno.test("JSON line: the same fields, split hierarchy, nulls for what is unknown, and the outcome", () => {
  const x = finished();
  x.contentType = "text/html; charset=utf-8";
  x.outcome = "allowed";
  assert.deepEqual(JSON.parse(formatJsonLine(x, 12)), {
    time: "2025-11-25T09:46:52.345Z",
    elapsedMs: 12,
    clientIp: "10.0.0.5",
    result: "TCP_MISS",
    status: 200,
    bytes: 1534,
    method: "GET",
    url: "http://example.org/",
    user: null,
    hierarchy: "HIER_DIRECT",
    peer: "93.184.216.34",
    contentType: "text/html",
    outcome: "allowed",
  });
  const fresh = newExchange("::1", new Date(1000));
  fresh.status = 400;
  const j = JSON.parse(formatJsonLine(fresh, 0));
  assert.equal(j.hierarchy, "HIER_NONE");
  assert.equal(j.peer, null);
  assert.equal(j.contentType, null);
  assert.equal(j.outcome, "error");
  const lines: string[] = [];
  logExchange({ send: (l) => lines.push(l), close() {} }, x, "json");
  assert.equal(lines.length, 1);
  assert.equal(JSON.parse(lines[0]).user, null);
  assert.ok(!lines[0].includes("\n"));
});

Deno.test("syslog over UDP: lines sent at once after opening all arrive", async () => {
  // node:dgram is loaded when the sink opens: what is sent before it is
  // there waits for it, and is sent then (datagrams in any order).
  const received: string[] = [];
  const socket = createSocket("udp4");
  socket.on("message", (msg) => received.push(msg.toString()));
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  try {
    const sink = await openSyslog(`127.0.0.1:${socket.address().port}`);
    for (let i = 0; i < 3; i++) sink.send(`line ${i}`);
    const deadline = Date.now() + 5000;
    while (received.length < 3 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    sink.close();
    assert.deepEqual(
      received.map((m) => m.replace(/^.*: /, "")).sort(),
      ["line 0", "line 1", "line 2"],
    );
  } finally {
    socket.close();
  }
});
