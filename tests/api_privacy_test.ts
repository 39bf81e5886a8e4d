/**
 * What the API tells whom, over real HTTPS with the real gateway: an
 * anonymous caller gets discover, open and the login page's names; a
 * logged-in user their own status and session and the managers'
 * configurations; administrators the user databases and the session list;
 * nobody a password, a hash or a directory's credentials. Refusals use the
 * original's `{"message": …}` shape.
 */
import assert from "node:assert/strict";
import { adminManagers, openRealGateway } from "./helpers/api_real_gateway.ts";
import { startTestApi } from "./helpers/api_server.ts";
import { hashPassword } from "../managers/mod.ts";

Deno.test("api privacy: anonymous, user and administrator each see what they may", async () => {
  const real = await openRealGateway(adminManagers());
  const t = await startTestApi(real.gateway);
  try {
    const json = (text: string) => JSON.parse(text);
    // Anonymous: discover and the login page's names, nothing else.
    assert.equal(
      (await t.post({ cmd: "discover", manager: "rules" })).status,
      200,
    );
    const portal = await t.get("/api/portal");
    assert.deepEqual(json(portal.text), {
      sessionIPM: ["sessions"],
      dwnConsR: ["down"],
    });
    for (const manager of ["map", "rules", "down", "sessions"]) {
      const shown = await t.post({ cmd: "show", manager });
      assert.equal(shown.status, 400, manager);
      assert.deepEqual(json(shown.text), { message: "empty JWT" }, manager);
    }
    const lu = await t.post({ cmd: "get", manager: "sessions" });
    assert.deepEqual(json(lu.text), { message: "empty JWT" });

    // A user: own status, the managers' configuration; not the user
    // database, not the session list, not another user's status.
    const user = await t.login("user0", "pass0");
    const own = await t.post({ cmd: "get", manager: "down", secret: user });
    assert.equal(json(own.text).userName, "user0");
    assert.equal(
      (await t.post({ cmd: "show", manager: "down", secret: user })).status,
      200,
    );
    assert.deepEqual(
      json((await t.post({ cmd: "show", manager: "map", secret: user })).text),
      {
        message:
          `show of the user database "map" is for administrators; user0 is not one`,
      },
    );
    assert.deepEqual(
      json(
        (await t.post({ cmd: "get", manager: "sessions", secret: user }))
          .text,
      ),
      {
        message:
          "the list of logged users is for administrators; user0 is not one",
      },
    );
    assert.deepEqual(
      json(
        (await t.post({
          cmd: "getOther",
          manager: "down",
          secret: user,
          info: { userName: "admin" },
        })).text,
      ),
      { User: "user0" },
    );
  } finally {
    await t.close();
    await real.close();
  }
});

Deno.test("api privacy: an administrator sees users and groups, never a password or a hash", async () => {
  const hashed = await hashPassword("admin-pass");
  const real = await openRealGateway(
    adminManagers().replace('admin = "admin-pass"', `admin = "${hashed}"`),
  );
  const t = await startTestApi(real.gateway);
  try {
    const secret = await t.login("admin", "admin-pass");
    const shown = await t.post({ cmd: "show", manager: "map", secret });
    assert.equal(shown.status, 200);
    const map = JSON.parse(shown.text);
    assert.deepEqual(map.users.sort(), ["admin", "user0"]);
    assert.deepEqual(map.userGroups.admin, ["staff"]);
    assert.doesNotMatch(shown.text, /admin-pass|pass0|pbkdf2/);
    const lu = await t.post({ cmd: "get", manager: "sessions", secret });
    assert.deepEqual(JSON.parse(lu.text), { "127.0.0.1": "admin" });
  } finally {
    await t.close();
    await real.close();
  }
});
