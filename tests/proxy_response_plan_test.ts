/**
 * How a response is framed for its client (proxy/_response_plan.ts), every
 * branch: passed on, de-chunked for HTTP/1.0, a close-delimited body
 * rechunked for a kept-alive HTTP/1.1 client, Content-Length dropped beside
 * chunked, bodyless answers, and when each connection may go on. The
 * bytes on the wire for these cases are tested over real sockets in
 * proxy_forward_test.ts and proxy_close_delimited_test.ts.
 */
import assert from "node:assert/strict";
import { type PlanRequest, planResponse } from "../proxy/_response_plan.ts";
import type { Field, ResponseHead } from "../proxy/http_head.ts";

function field(name: string, value: string): Field {
  return { name, lower: name.toLowerCase(), value };
}

function response(
  fields: Field[],
  options: { status?: number; version?: 10 | 11 } = {},
): ResponseHead {
  return {
    version: options.version ?? 11,
    status: options.status ?? 200,
    reason: "OK",
    fields,
  };
}

function client(
  version: 10 | 11,
  keepAlive: boolean,
  method = "GET",
): PlanRequest {
  return { req: { method, version }, keepAlive };
}

const LENGTH = [field("Content-Length", "5")];
const CHUNKED = [field("Transfer-Encoding", "chunked")];
const CLOSE_DELIMITED: Field[] = [];

Deno.test("plan: a Content-Length answer to a kept-alive HTTP/1.1 client passes as it is", () => {
  const plan = planResponse(client(11, true), response(LENGTH));
  assert.deepEqual(plan, {
    framing: { kind: "length", length: 5 },
    dechunk: false,
    rechunk: false,
    dropContentLength: false,
    keep: [],
    add: ["Via: 1.1 pmproxy"],
    clientKeeps: true,
    upstreamKeeps: true,
  });
});

Deno.test("plan: a chunked answer to an HTTP/1.1 client keeps its framing fields", () => {
  const plan = planResponse(client(11, true), response(CHUNKED));
  assert.deepEqual(plan.framing, { kind: "chunked" });
  assert.equal(plan.dechunk, false);
  assert.deepEqual(plan.keep, ["transfer-encoding", "trailer"]);
  assert.deepEqual(plan.add, ["Via: 1.1 pmproxy"]);
  assert.equal(plan.clientKeeps, true);
  assert.equal(plan.upstreamKeeps, true);
});

Deno.test("plan: a chunked answer to an HTTP/1.0 client is de-chunked, then the connection closes", () => {
  const plan = planResponse(client(10, true), response(CHUNKED));
  assert.equal(plan.dechunk, true);
  assert.equal(plan.rechunk, false);
  assert.deepEqual(plan.keep, [], "no Transfer-Encoding for bare data");
  assert.deepEqual(plan.add, ["Via: 1.1 pmproxy", "Connection: close"]);
  assert.equal(plan.clientKeeps, false, "the close marks the body's end");
  assert.equal(
    plan.upstreamKeeps,
    true,
    "upstream read the chunked body whole",
  );
});

Deno.test("plan: an HTTP/1.0 client that keeps its connection is told so", () => {
  const plan = planResponse(client(10, true), response(LENGTH));
  assert.deepEqual(plan.add, ["Via: 1.1 pmproxy", "Connection: keep-alive"]);
  assert.equal(plan.clientKeeps, true);
});

Deno.test("plan: a client that did not ask to keep its connection gets Connection: close", () => {
  for (const version of [10, 11] as const) {
    const plan = planResponse(client(version, false), response(LENGTH));
    assert.deepEqual(plan.add, ["Via: 1.1 pmproxy", "Connection: close"]);
    assert.equal(plan.clientKeeps, false);
    assert.equal(plan.upstreamKeeps, true, "upstream may still be reused");
  }
});

Deno.test("plan: a close-delimited answer to a kept-alive HTTP/1.1 client is rechunked", () => {
  const plan = planResponse(client(11, true), response(CLOSE_DELIMITED));
  assert.deepEqual(plan.framing, { kind: "close" });
  assert.equal(plan.rechunk, true);
  assert.equal(plan.dechunk, false);
  assert.deepEqual(plan.keep, []);
  assert.deepEqual(plan.add, [
    "Via: 1.1 pmproxy",
    "Transfer-Encoding: chunked",
  ]);
  assert.equal(plan.clientKeeps, true, "the last chunk ends the body");
  assert.equal(plan.upstreamKeeps, false, "upstream closes to end it");
});

Deno.test("plan: a close-delimited answer ends the connection of a client that does not keep it, and of any HTTP/1.0 client", () => {
  for (const c of [client(11, false), client(10, true), client(10, false)]) {
    const plan = planResponse(c, response(CLOSE_DELIMITED));
    assert.equal(plan.rechunk, false, JSON.stringify(c));
    assert.deepEqual(plan.add, ["Via: 1.1 pmproxy", "Connection: close"]);
    assert.equal(plan.clientKeeps, false);
    assert.equal(plan.upstreamKeeps, false);
  }
});

Deno.test("plan: Content-Length beside chunked is dropped and the upstream connection not reused", () => {
  const both = [...CHUNKED, field("Content-Length", "5")];
  const plan = planResponse(client(11, true), response(both));
  assert.deepEqual(plan.framing, { kind: "chunked" });
  assert.equal(plan.dropContentLength, true);
  assert.equal(plan.clientKeeps, true, "the client reads chunked framing");
  assert.equal(plan.upstreamKeeps, false);
  const old = planResponse(client(10, true), response(both));
  assert.equal(old.dropContentLength, true);
  assert.equal(old.dechunk, true);
  assert.equal(old.clientKeeps, false);
});

Deno.test("plan: answers without a body (HEAD, 204, 304) keep both connections", () => {
  const cases: [PlanRequest, ResponseHead][] = [
    [client(11, true, "HEAD"), response(LENGTH)],
    [client(11, true, "HEAD"), response(CHUNKED)],
    [client(11, true), response(CLOSE_DELIMITED, { status: 204 })],
    [client(11, true), response(LENGTH, { status: 304 })],
    [client(11, true), response([field("Content-Length", "0")])],
  ];
  for (const [c, r] of cases) {
    const plan = planResponse(c, r);
    const what = `${c.req.method} ${r.status} ${JSON.stringify(r.fields)}`;
    assert.deepEqual(plan.framing, { kind: "none" }, what);
    assert.equal(plan.rechunk, false, what);
    assert.equal(plan.dechunk, false, what);
    assert.equal(plan.dropContentLength, false, what);
    assert.deepEqual(plan.keep, [], what);
    assert.equal(plan.clientKeeps, true, what);
    assert.equal(plan.upstreamKeeps, true, what);
  }
});

Deno.test("plan: an HTTP/1.0 upstream, or one that says Connection: close, is not reused", () => {
  const old = planResponse(client(11, true), response(LENGTH, { version: 10 }));
  assert.equal(old.upstreamKeeps, false);
  assert.equal(old.clientKeeps, true);
  const closing = planResponse(
    client(11, true),
    response([...LENGTH, field("Connection", "close")]),
  );
  assert.equal(closing.upstreamKeeps, false);
  assert.equal(closing.clientKeeps, true);
});
