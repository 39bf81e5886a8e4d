/**
 * The forward and tunnel paths through an HTTP parent proxy, where the parent
 * is a second pmproxy data path. Both policies are fakes (see
 * helpers/proxy_kit.ts for why that is legitimate here).
 */
import assert from "node:assert/strict";
import type { Route } from "../proxy/mod.ts";
import {
  curl,
  fakePolicy,
  readRequestHead,
  startRawOrigin,
  startTestProxy,
  writeText,
} from "./helpers/proxy_kit.ts";

function keepAliveOrigin() {
  const heads: string[] = [];
  const origin = startRawOrigin(async (conn) => {
    let rest = "";
    for (let i = 0; i < 100; i++) {
      const got = await readRequestHead(conn, rest);
      if (!got) return;
      heads.push(got.head);
      rest = got.rest;
      await writeText(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    }
  });
  return Object.assign(origin, { heads });
}

Deno.test("forward via an HTTP parent: absolute form, parent credentials, Via chain", async () => {
  const origin = keepAliveOrigin();
  const parentPolicy = fakePolicy();
  const parent = await startTestProxy(parentPolicy);
  const route: Route = {
    kind: "parent",
    proxyUrl: `http://up%20user:p%40ss@127.0.0.1:${parent.addr.port}`,
  };
  const childPolicy = fakePolicy(() => ({ allowed: true, route }));
  const child = await startTestProxy(childPolicy);
  try {
    const r = await curl([
      "-x",
      child.url,
      `http://127.0.0.1:${origin.port}/x?y`,
    ]);
    assert.equal(r.out, "ok", r.err);
    // The parent saw an absolute-form request with the route's credentials.
    const f = parentPolicy.facts[0];
    assert.equal(f.url, `http://127.0.0.1:${origin.port}/x?y`);
    assert.deepEqual(f.proxyAuth, { user: "up user", pass: "p@ss" });
    assert.match(origin.heads[0], /^GET \/x\?y HTTP\/1\.1\r\n/);
    assert.equal((origin.heads[0].match(/pmproxy/g) ?? []).length, 2);
    assert.doesNotMatch(origin.heads[0], /Proxy-Authorization/i);
    assert.match(
      childPolicy.records[0].hierarchy,
      /^FIRSTUP_PARENT\/127\.0\.0\.1$/,
    );
  } finally {
    await child.close();
    await parent.close();
    await origin.close();
  }
});

Deno.test("CONNECT via an HTTP parent", async () => {
  const origin = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("tunnelled twice\n"),
  );
  const parentPolicy = fakePolicy();
  const parent = await startTestProxy(parentPolicy, { connectPorts: "*" });
  const child = await startTestProxy(
    fakePolicy(() => ({
      allowed: true,
      route: {
        kind: "parent",
        proxyUrl: `http://127.0.0.1:${parent.addr.port}`,
      },
    })),
    { connectPorts: "*" },
  );
  try {
    const r = await curl([
      "-p",
      "-x",
      child.url,
      `http://127.0.0.1:${origin.addr.port}/`,
    ]);
    assert.equal(r.out, "tunnelled twice\n", r.err);
    assert.equal(parentPolicy.facts[0].method, "CONNECT");
  } finally {
    await child.close();
    await parent.close();
    await origin.shutdown();
  }
});

Deno.test("pooled upstream connections are never shared across routes", async () => {
  const origin = keepAliveOrigin();
  const parent = await startTestProxy(fakePolicy());
  const viaParent: Route = {
    kind: "parent",
    proxyUrl: `http://127.0.0.1:${parent.addr.port}`,
  };
  const child = await startTestProxy(
    fakePolicy((f) => ({
      allowed: true,
      route: f.url.includes("/p") ? viaParent : { kind: "direct" },
    })),
  );
  try {
    const base = `http://127.0.0.1:${origin.port}`;
    for (const path of ["/d1", "/p1", "/d2", "/p2", "/d3"]) {
      const r = await curl(["-x", child.url, `${base}${path}`]);
      assert.equal(r.out, "ok", r.err);
    }
    // One connection from the child (direct), one from the parent; each reused.
    assert.equal(origin.connections, 2);
    const viaCount = origin.heads.map((h) =>
      (h.match(/pmproxy/g) ?? []).length
    );
    assert.deepEqual(viaCount, [1, 2, 1, 2, 1]);
  } finally {
    await child.close();
    await parent.close();
    await origin.close();
  }
});
