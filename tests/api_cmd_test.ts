/**
 * `POST /api/cmd` over real TLS against the real Gateway (managers/, real
 * Deno KV): the original's wire shapes, errors as 400 with a body, admin
 * checks; unexpected errors as 500 and the static web with an in-test one.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createApp } from "../api/app.ts";
import { FakeGateway } from "./helpers/api_fake_gateway.ts";
import {
  adminManagers,
  openRealGateway,
  type RealGateway,
} from "./helpers/api_real_gateway.ts";
import { startTestApi, type TestApi } from "./helpers/api_server.ts";

/** The real API over the real gateway (README's managers by default). */
async function withApi(
  fn: (t: TestApi, real: RealGateway) => Promise<void>,
  managersToml?: string,
): Promise<void> {
  const real = await openRealGateway(managersToml);
  const t = await startTestApi(real.gateway);
  try {
    await fn(t, real);
  } finally {
    await t.close();
    await real.close();
  }
}

Deno.test("api: discover before and after login, open, check, get, close (as observed on the wire)", async () => {
  await withApi(async (t, real) => {
    const before = await t.post({ cmd: "discover", manager: "rules" });
    assert.equal(before.status, 200);
    assert.equal(
      before.text,
      `{"matchMng":{"sessions":{"match":false,"type":"sessionIPM"}},"result":"false"}`,
    );
    assert.equal(before.headers.get("cache-control"), "no-store");

    const open = await t.post({
      cmd: "open",
      manager: "sessions",
      cred: { user: "user0", pass: "pass0" },
    });
    assert.equal(open.status, 200);
    const secret = open.text;
    assert.match(secret, /^[\w-]+\.[\w-]+\.[\w-]+$/, "a JWT as the raw body");
    // The TCP peer is the client IP.
    assert.equal(
      await real.gateway.check("sessions", { ip: "127.0.0.1", secret }),
      "user0",
    );

    const after = await t.post({ cmd: "discover", manager: "rules" });
    assert.equal(
      after.text,
      `{"matchMng":{"down":{"match":true,"type":"dwnConsR"},"sessions":{"match":true,"type":"sessionIPM"}},"result":"true"}`,
    );
    const check = await t.post({ cmd: "check", manager: "sessions", secret });
    assert.equal(check.status, 200);
    assert.equal(check.text, "user0");
    const get = await t.post({ cmd: "get", manager: "down", secret });
    // The original's fields in its order, then pmproxy's own (its clients
    // ignore them).
    const original =
      `{"quota":"1 GB","groups":["group0"],"name":"user0","userName":"user0","consumption":"0 B","bytesQuota":1073741824,"bytesCons":0,"isAdmin":false,`;
    assert.ok(get.text.startsWith(original), get.text);
    const { nextReset, ...added } = JSON.parse(
      `{${get.text.slice(original.length)}`,
    );
    assert.deepEqual(added, {
      bytesGranted: 0,
      granted: "0 B",
      warning: false,
    });
    assert.match(nextReset, /^\d{4}-\d\d-\d\dT[\d:.]+Z$/);
    // The session list is an administrator's: user0 gets the refusal.
    const users = await t.post({ cmd: "get", manager: "sessions", secret });
    assert.equal(users.status, 400);
    assert.equal(
      users.text,
      `{"message":"the list of logged users is for administrators; user0 is not one"}\n`,
    );
    const renew = await t.post({ cmd: "renew", manager: "sessions", secret });
    assert.equal(renew.status, 200);
    const renewed = renew.text;
    assert.match(renewed, /^[\w-]+\.[\w-]+\.[\w-]+$/);
    const close = await t.post({
      cmd: "close",
      manager: "sessions",
      secret: renewed,
    });
    assert.equal(close.status, 200, close.text);
    assert.equal(close.text, "");
    const gone = await t.post({ cmd: "discover", manager: "rules" });
    assert.match(gone.text, /"result":"false"/);
  });
});

Deno.test("api: errors are 400 with the original's bodies and a newline", async () => {
  await withApi(async (t) => {
    const wrong = await t.post({
      cmd: "open",
      manager: "sessions",
      cred: { user: "user0", pass: "nope" },
    });
    assert.equal(wrong.status, 400);
    assert.equal(wrong.text, `{"message":"incorrect user name or password"}\n`);
    assert.match(wrong.headers.get("content-type") ?? "", /json/);

    const unknown = await t.post({ cmd: "get", manager: "nope" });
    assert.equal(unknown.status, 400);
    assert.equal(unknown.text, `{"Mng":"nope","Cmd":"get"}\n`);
    const badCmd = await t.post({ cmd: "fly", manager: "sessions" });
    assert.equal(badCmd.text, `{"Mng":"sessions","Cmd":"fly"}\n`);
    const dbCmd = await t.post({ cmd: "get", manager: "map" });
    assert.equal(dbCmd.text, `{"Mng":"map","Cmd":"get"}\n`);

    const malformed = await t.post("{not json");
    assert.equal(malformed.status, 400);
    assert.match(JSON.parse(malformed.text).message, /^malformed JSON: /);

    const notObject = await t.post("[1,2]");
    assert.equal(notObject.status, 400);
    assert.match(JSON.parse(notObject.text).message, /JSON object/);

    // The original crashed here; we say what is missing.
    const noCred = await t.post({ cmd: "open", manager: "sessions" });
    assert.equal(noCred.status, 400);
    assert.match(JSON.parse(noCred.text).message, /cred/);

    const empty = await t.post({ cmd: "check", manager: "sessions" });
    assert.equal(empty.text, `{"message":"empty JWT"}\n`);

    const nobody = await t.post({
      cmd: "open",
      manager: "sessions",
      cred: { user: "nobody", pass: "x" },
    });
    // The same answer as a wrong password: nobody learns who exists.
    assert.equal(
      nobody.text,
      `{"message":"incorrect user name or password"}\n`,
    );

    const getMethod = await t.get("/api/cmd");
    assert.equal(getMethod.status, 405);
    assert.equal(getMethod.headers.get("allow"), "POST");
  });
});

Deno.test("api: getOther and set are for admins only", async () => {
  await withApi(async (t) => {
    const user = await t.login("user0", "pass0");
    const denied = await t.post({
      cmd: "getOther",
      manager: "down",
      secret: user,
      info: { userName: "admin" },
    });
    assert.equal(denied.status, 400);
    assert.equal(denied.text, `{"User":"user0"}\n`);
    const deniedSet = await t.post({
      cmd: "set",
      manager: "down",
      secret: user,
      info: { userName: "user0", bytesCons: 0 },
    });
    assert.equal(deniedSet.text, `{"User":"user0"}\n`);

    // Same IP: the admin's login replaces user0's session.
    const admin = await t.login("admin", "admin-pass");
    const stale = await t.post({
      cmd: "check",
      manager: "sessions",
      secret: user,
    });
    assert.equal(stale.text, `{"Logged":"admin","Decrypted":"user0"}\n`);
    const set = await t.post({
      cmd: "set",
      manager: "down",
      secret: admin,
      info: { userName: "user0", bytesCons: 5000 },
    });
    assert.equal(set.status, 200, set.text);
    assert.equal(set.text, "");
    const other = await t.post({
      cmd: "getOther",
      manager: "down",
      secret: admin,
      info: { userName: "user0" },
    });
    assert.equal(other.status, 200);
    const info = JSON.parse(other.text);
    assert.equal(info.bytesCons, 5000);
    assert.equal(info.userName, "user0");
    assert.equal(info.isAdmin, false);
    const me = JSON.parse(
      (await t.post({ cmd: "get", manager: "down", secret: admin })).text,
    );
    assert.equal(me.isAdmin, true);
    const noUser = await t.post({
      cmd: "getOther",
      manager: "down",
      secret: admin,
    });
    assert.equal(noUser.status, 400);
    assert.match(JSON.parse(noUser.text).message, /userName/);
    const badBytes = await t.post({
      cmd: "set",
      manager: "down",
      secret: admin,
      info: { userName: "user0", bytesCons: -1 },
    });
    assert.equal(badBytes.status, 400);
    const unknownUser = await t.post({
      cmd: "getOther",
      manager: "down",
      secret: admin,
      info: { userName: "nobody" },
    });
    assert.equal(unknownUser.text, `{"User":"nobody","DB":"map"}\n`);
    const reset = await t.post({
      cmd: "set",
      manager: "down",
      secret: admin,
      info: { userName: "user0", bytesCons: 0 },
    });
    assert.equal(reset.status, 200);
    const after = JSON.parse(
      (await t.post({
        cmd: "getOther",
        manager: "down",
        secret: admin,
        info: { userName: "user0" },
      })).text,
    );
    assert.equal(after.bytesCons, 0, "reset means 0, not the original's 1");
    assert.equal(after.consumption, "0 B");
  }, adminManagers());
});

Deno.test("api: show answers JSON to a logged-in caller for any manager (a user database to an admin); unknown is 400", async () => {
  await withApi(async (t) => {
    const secret = await t.login("admin", "admin-pass");
    const show = await t.post({ cmd: "show", manager: "down", secret });
    assert.equal(show.status, 200);
    assert.equal(JSON.parse(show.text).name, "down");
    assert.equal(JSON.parse(show.text).groupQuota.group0, "1 GB");
    const rules = await t.post({ cmd: "show", manager: "rules", secret });
    assert.equal(JSON.parse(rules.text).rule, "sessions ∧ down");
    const db = await t.post({ cmd: "show", manager: "map", secret });
    assert.equal(db.status, 200);
    assert.ok(!db.text.includes("pass0"), "never passwords");
    const none = await t.post({ cmd: "show", manager: "nope", secret });
    assert.equal(none.text, `{"Mng":"nope","Cmd":"show"}\n`);
  }, adminManagers());
});

Deno.test("api: an unexpected error is a 500 with a message, and the server goes on", async () => {
  const gw = new FakeGateway();
  const t = await startTestApi(gw);
  try {
    gw.failWith = new Error("disk on fire");
    const res = await t.post({ cmd: "discover", manager: "rules" });
    assert.equal(res.status, 500);
    assert.match(JSON.parse(res.text).message, /disk on fire/);
    gw.failWith = undefined;
    const ok = await t.post({ cmd: "discover", manager: "rules" });
    assert.equal(ok.status, 200);
  } finally {
    await t.close();
  }
});

Deno.test("api: web pages: index, assets, excluded routes, static dir first, headers", async () => {
  const gw = new FakeGateway();
  const dir = await Deno.makeTempDir({ prefix: "pmproxy-api-web-" });
  const t = await startTestApi(gw, {
    dir,
    table: { excludedRoutes: ["/about"], webStaticFilesDir: "staticFiles" },
    assets: {
      "/index.html": { type: "text/html; charset=utf-8", body: "<p>index</p>" },
      "/app.js": { type: "text/javascript; charset=utf-8", body: "go()" },
      "/style.css": { type: "text/css; charset=utf-8", body: "p{}" },
    },
  });
  try {
    const root = await t.get("/");
    assert.equal(root.status, 200);
    assert.equal(root.text, "<p>index</p>");
    assert.match(root.headers.get("content-type") ?? "", /text\/html/);
    assert.equal(root.headers.get("x-content-type-options"), "nosniff");
    assert.match(root.headers.get("content-security-policy") ?? "", /self/);
    assert.equal((await t.get("/app.js")).text, "go()");
    assert.equal((await t.get("/about")).text, "<p>index</p>");
    assert.equal((await t.get("/about/team")).text, "<p>index</p>");
    assert.equal((await t.get("/nothing")).status, 404);

    // A static dir that appears later is served first, embedded files after.
    await Deno.mkdir(join(dir, "staticFiles"));
    await Deno.writeTextFile(join(dir, "staticFiles", "app.js"), "local()");
    await Deno.writeTextFile(join(dir, "staticFiles", "extra.txt"), "extra");
    assert.equal((await t.get("/app.js")).text, "local()");
    assert.equal((await t.get("/extra.txt")).text, "extra");
    assert.equal((await t.get("/style.css")).text, "p{}");
    assert.equal((await t.get("/about")).text, "<p>index</p>");
    // With its own index page, the directory's web app answers "/" and
    // the excluded routes.
    await Deno.writeTextFile(
      join(dir, "staticFiles", "index.html"),
      "<p>local</p>",
    );
    assert.equal((await t.get("/")).text, "<p>local</p>");
    assert.equal((await t.get("/about")).text, "<p>local</p>");
    assert.equal((await t.get("/about/team")).text, "<p>local</p>");
    // The key lives next to staticFiles/: no path may climb to it.
    for (const path of ["/../key.pem", "/%2e%2e/key.pem", "/..%2fkey.pem"]) {
      const out = await new Deno.Command("curl", {
        args: [
          "-sS",
          "--path-as-is",
          "--max-time",
          "20",
          "--cacert",
          t.certFile,
          "-o",
          "/dev/null",
          "-w",
          "%{http_code}",
          `${t.origin}${path}`,
        ],
      }).output();
      assert.equal(new TextDecoder().decode(out.stdout), "404", path);
    }
  } finally {
    await t.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("api: the embedded web pages are served by default", async () => {
  const t = await startTestApi(new FakeGateway());
  try {
    const root = await t.get("/");
    assert.equal(root.status, 200);
    assert.match(root.text, /<script src="\/app\.js"/);
    const js = await t.get("/app.js");
    assert.match(js.headers.get("content-type") ?? "", /javascript/);
    assert.match(js.text, /\/api\/cmd/);
  } finally {
    await t.close();
  }
});

Deno.test("api: on every address, an IPv4 client is seen as plain IPv4", async () => {
  const real = await openRealGateway();
  const t = await startTestApi(real.gateway, { addr: ":0" });
  try {
    const res = await t.post({
      cmd: "open",
      manager: "sessions",
      cred: { user: "user0", pass: "pass0" },
    });
    assert.equal(res.status, 200, res.text);
    // The session is at that address.
    assert.equal(
      await real.gateway.check("sessions", {
        ip: "127.0.0.1",
        secret: res.text,
      }),
      "user0",
    );
  } finally {
    await t.close();
    await real.close();
  }
});

Deno.test("api: a body over 64 KiB is refused with 413", async () => {
  const t = await startTestApi(new FakeGateway());
  try {
    const big = JSON.stringify({
      cmd: "discover",
      manager: "rules",
      pad: "x".repeat(70_000),
    });
    const res = await t.post(big);
    assert.equal(res.status, 413);
    assert.match(JSON.parse(res.text).message, /too large/);
    // Chunked, without Content-Length: counted while read.
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode(big));
        c.close();
      },
    });
    const client = Deno.createHttpClient({ caCerts: [t.api.certPem] });
    try {
      const chunked = await fetch(`${t.origin}/api/cmd`, {
        method: "POST",
        body: stream,
        client,
      });
      assert.equal(chunked.status, 413);
      await chunked.body?.cancel();
    } finally {
      client.close();
    }
  } finally {
    await t.close();
  }
});

Deno.test("api: clientIpOf names who is behind a peer (e.g. the proxy's own tunnel)", async () => {
  const real = await openRealGateway();
  const seen: Deno.NetAddr[] = [];
  const t = await startTestApi(real.gateway, {
    clientIpOf: (peer) => {
      seen.push(peer);
      return "::ffff:10.9.9.9";
    },
  });
  try {
    const res = await t.post({
      cmd: "open",
      manager: "sessions",
      cred: { user: "user0", pass: "pass0" },
    });
    assert.equal(res.status, 200, res.text);
    assert.equal(seen[0].hostname, "127.0.0.1");
    // The session is at that address.
    assert.equal(
      await real.gateway.check("sessions", {
        ip: "10.9.9.9",
        secret: res.text,
      }),
      "user0",
    );
  } finally {
    await t.close();
    await real.close();
  }
});

Deno.test("api: a body that stops arriving gets 408 after readTimeout", async () => {
  const app = createApp(new FakeGateway(), {
    readTimeoutMs: 200,
    clientIp: () => "127.0.0.1",
  });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req, info) => app.fetch(req, info),
  );
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  try {
    // Ten of the hundred announced bytes, then silence.
    await conn.write(
      new TextEncoder().encode(
        'POST /api/cmd HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"cmd":"d',
      ),
    );
    const buf = new Uint8Array(4096);
    const read = conn.read(buf);
    const timeout = new Promise<null>((r) => setTimeout(() => r(null), 5000));
    const n = await Promise.race([read, timeout]);
    assert.ok(n, "an answer came before 5 s");
    const answer = new TextDecoder().decode(buf.subarray(0, n));
    assert.match(answer, /^HTTP\/1\.1 408 /);
    assert.match(
      answer,
      /did not arrive within 0\.2s \(\[api\.server\] readTimeout\)/,
    );
  } finally {
    conn.close();
    await server.shutdown();
  }
});
