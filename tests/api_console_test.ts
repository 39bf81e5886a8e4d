/**
 * The console's and the history's commands on the wire (`POST /api/cmd`
 * of the real HTTPS API over the real gateway): `usage` as JSON and as
 * CSV, `users` in pages, `close` of another user's session, `managers`
 * and `live` on `rules`; the answers to malformed `info`; and the
 * administrators-only refusals, anonymous and not.
 */
import assert from "node:assert/strict";
import { adminManagers, openRealGateway } from "./helpers/api_real_gateway.ts";
import { startTestApi } from "./helpers/api_server.ts";

const MANAGERS = adminManagers("1h").replace(
  'user0 = "pass0"',
  'user0 = "pass0"\n"=cmd|x" = "pass-odd"',
).replace(
  'user0 = ["group0"]',
  'user0 = ["group0"]\n"=cmd|x" = ["group0"]',
);

Deno.test("api: usage, users, close of another session, managers and live on the wire; admins only", async () => {
  const real = await openRealGateway(MANAGERS);
  const gw = real.gateway;
  // The API sees every caller at 127.0.0.1: one session at a time there,
  // so the user logs in from another address through the gateway itself.
  const t = await startTestApi(gw);
  try {
    const other = await gw.open("sessions", { ip: "10.0.0.6" }, {
      user: "=cmd|x",
      pass: "pass-odd",
    });
    const decision = gw.decideSync({
      clientIp: "10.0.0.6",
      time: new Date(),
      method: "GET",
      url: "http://example.org/",
      host: "example.org",
      port: 80,
    });
    assert.ok(decision.allowed && decision.meter);
    decision.meter.chunk(1234);
    await gw.flush();

    // Anonymous: refused, whatever the command.
    for (
      const body of [
        { cmd: "usage", manager: "down" },
        { cmd: "users", manager: "down" },
        { cmd: "managers", manager: "rules" },
        { cmd: "live", manager: "rules" },
        { cmd: "close", manager: "sessions", info: { userName: "=cmd|x" } },
      ]
    ) {
      const res = await t.post(body);
      assert.equal(res.status, 400, body.cmd);
      assert.deepEqual(JSON.parse(res.text), { message: "empty JWT" });
    }

    // A user who is not an admin: their own usage, nothing else.
    const user = await t.login("user0", "pass0");
    const own = await t.post({
      cmd: "usage",
      manager: "down",
      secret: user,
      info: { by: "hour" },
    });
    assert.equal(own.status, 200, own.text);
    assert.equal(JSON.parse(own.text).user, "user0");
    for (
      const body of [
        { cmd: "usage", manager: "down", info: { userName: "=cmd|x" } },
        { cmd: "usage", manager: "down", info: { all: true } },
        { cmd: "users", manager: "down" },
        { cmd: "managers", manager: "rules" },
        { cmd: "live", manager: "rules" },
        { cmd: "close", manager: "sessions", info: { userName: "=cmd|x" } },
      ]
    ) {
      const res = await t.post({ ...body, secret: user });
      assert.equal(res.status, 400, body.cmd);
      assert.deepEqual(JSON.parse(res.text), { User: "user0" }, body.cmd);
    }

    // An administrator (the same address: the user's session is replaced).
    const admin = await t.login("admin", "admin-pass");
    const cmd = (body: Record<string, unknown>) =>
      t.post({ ...body, secret: admin });

    const csv = await cmd({
      cmd: "usage",
      manager: "down",
      info: { all: true, by: "day", format: "csv" },
    });
    assert.equal(csv.status, 200, csv.text);
    assert.equal(csv.headers.get("content-type"), "text/csv; charset=utf-8");
    const lines = csv.text.split("\r\n");
    assert.equal(lines[0], "start,user,bytes");
    // A user name a spreadsheet would run is quoted and made inert.
    assert.match(
      lines[1],
      /^\d{4}-\d\d-\d\dT00:00:00(Z|[+-]\d\d:\d\d),'=cmd\|x,1234$/,
    );
    assert.equal(lines.at(-1), "", "ends with a line break");

    const json = JSON.parse(
      (await cmd({
        cmd: "usage",
        manager: "down",
        info: { userName: "=cmd|x", since: "2020-01-01", by: "month" },
      })).text,
    );
    assert.equal(json.by, "month");
    assert.deepEqual(json.entries.map((e: { bytes: number }) => e.bytes), [
      1234,
    ]);

    const page = JSON.parse(
      (await cmd({
        cmd: "users",
        manager: "down",
        info: { limit: 2, sort: "consumption" },
      })).text,
    );
    assert.equal(page.total, 3);
    assert.equal(page.rows.length, 2);
    assert.equal(page.rows[0].userName, "=cmd|x");
    assert.deepEqual(page.rows[0].session.ip, "10.0.0.6");

    const managers = JSON.parse(
      (await cmd({ cmd: "managers", manager: "rules" })).text,
    );
    assert.deepEqual(
      managers.map((m: { name: string; kind: string }) =>
        `${m.name}:${m.kind}`
      ),
      ["sessions:sessionIPM", "down:dwnConsR", "map:mapDB"],
    );
    const live = JSON.parse(
      (await cmd({ cmd: "live", manager: "rules" })).text,
    );
    assert.deepEqual(live.sessions, { sessions: 2 });

    const closed = await cmd({
      cmd: "close",
      manager: "sessions",
      info: { userName: "=cmd|x" },
    });
    assert.equal(closed.status, 200, closed.text);
    assert.deepEqual(JSON.parse(closed.text), {
      userName: "=cmd|x",
      ip: "10.0.0.6",
    });
    await assert.rejects(() =>
      gw.check("sessions", { ip: "10.0.0.6", secret: other })
    );

    // Malformed info: what is wrong, and an example.
    const bad: [Record<string, unknown>, RegExp][] = [
      [
        { cmd: "usage", manager: "down", info: { by: "week" } },
        /usage: "by" must be one of hour, day, month; e\.g\./,
      ],
      [
        { cmd: "usage", manager: "down", info: { since: 5 } },
        /usage: "since" must be a string/,
      ],
      [
        { cmd: "usage", manager: "down", info: { since: "soon" } },
        /since "soon" is not a time/,
      ],
      [
        { cmd: "usage", manager: "down", info: { format: "xml" } },
        /"format" must be "csv" or "json"/,
      ],
      [
        { cmd: "usage", manager: "down", info: { all: "yes" } },
        /"all" must be true or false/,
      ],
      [
        { cmd: "users", manager: "down", info: { sort: "size" } },
        /users: "sort" must be one of user, consumption, quota, percent, lastSeen/,
      ],
      [
        { cmd: "users", manager: "down", info: { limit: -1 } },
        /"limit" must be a whole number from 0/,
      ],
      [
        { cmd: "users", manager: "down", info: { order: "up" } },
        /"order" must be "asc" or "desc"/,
      ],
      [
        { cmd: "users", manager: "down", info: { filter: 3 } },
        /"filter" must be a string/,
      ],
      [
        { cmd: "close", manager: "sessions", info: { userName: "" } },
        /close of another user's session needs the user/,
      ],
      [
        { cmd: "close", manager: "sessions", info: { userName: "nobody" } },
        /nobody has no session in sessions/,
      ],
    ];
    for (const [body, problem] of bad) {
      const res = await cmd(body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.match(JSON.parse(res.text).message, problem);
    }
    // A command on a manager of another kind: the original's answer.
    assert.deepEqual(
      JSON.parse((await cmd({ cmd: "users", manager: "sessions" })).text),
      { Mng: "sessions", Cmd: "users" },
    );
    // The admin's own logout still works as before.
    const out = await cmd({ cmd: "close", manager: "sessions" });
    assert.equal(out.status, 200);
    assert.equal(out.text, "");
  } finally {
    await t.close();
    await real.close();
  }
});
