/**
 * The access log's line format (Squid native, written by proxy/ itself) and
 * its writer's promise never to take the data path down. The lines' journey
 * to standard output and syslog is tested end to end in
 * e2e_access_log_test.ts; what each request logs, in the proxy_* tests
 * through helpers/proxy_kit.ts.
 */
import assert from "node:assert/strict";
import {
  formatAccessLine,
  logExchange,
  newExchange,
} from "../proxy/access_log.ts";
import { parseAccessLine } from "./helpers/proxy_kit.ts";

function finished() {
  const x = newExchange("10.0.0.5", new Date(1764064012345));
  x.method = "GET";
  x.url = "http://example.org/";
  x.tag = "TCP_MISS";
  x.status = 200;
  x.bytes = 1534;
  x.hierarchy = "DIRECT/93.184.216.34";
  return x;
}

Deno.test("access line: Squid native fields in order, the user and type when known", () => {
  const x = finished();
  x.user = "user0";
  x.contentType = "text/html";
  assert.equal(
    formatAccessLine(x, 12),
    "1764064012.345     12 10.0.0.5 TCP_MISS/200 1534 GET http://example.org/ user0 DIRECT/93.184.216.34 text/html",
  );
});

Deno.test("access line: '-' for no user and no content type; a long elapsed is not cut", () => {
  const x = finished();
  x.user = "";
  assert.equal(
    formatAccessLine(x, 1234567),
    "1764064012.345 1234567 10.0.0.5 TCP_MISS/200 1534 GET http://example.org/ - DIRECT/93.184.216.34 -",
  );
});

Deno.test("access line: the decision's note is one more tag of the result code", () => {
  const x = finished();
  x.user = "user0";
  x.note = "slowed";
  assert.equal(
    formatAccessLine(x, 12),
    "1764064012.345     12 10.0.0.5 TCP_MISS_SLOWED/200 1534 GET http://example.org/ user0 DIRECT/93.184.216.34 -",
  );
  // Whatever it holds, the result code stays one word.
  x.tag = "TCP_TUNNEL";
  x.note = "over quota";
  assert.match(formatAccessLine(x, 1), / TCP_TUNNEL_OVER_QUOTA\/200 /);
});

Deno.test("access line: a fresh exchange (a head that could not be read) logs NONE", () => {
  const x = newExchange("::1", new Date(1000));
  x.status = 400;
  assert.equal(
    formatAccessLine(x, 0),
    "1.000      0 ::1 NONE/400 0 - - - NONE/- -",
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
  assert.equal(parsed.hierarchy, "DIRECT/93.184.216.34");
  assert.equal(parsed.user, undefined);
  logExchange({
    send() {
      throw new Error("the log is gone");
    },
    close() {},
  }, x);
  logExchange(undefined, x);
});
