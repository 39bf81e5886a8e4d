/**
 * `adDB` inside a gateway (the real loader, sessions, quotas, groupIPM and
 * a real Deno KV file) against a real slapd over StartTLS: login, the
 * user's full name and groups in UserInfo, quotas summed over the
 * directory's groups, group membership deciding requests, and the
 * original's error bodies.
 */
import assert from "node:assert/strict";
import { CommandError, LOGIN_FAILED } from "../managers/mod.ts";
import { PolicyDir, request } from "./helpers/managers_setup.ts";
import { adDbToml, startSlapd } from "./helpers/slapd.ts";

async function commandError(
  fn: () => unknown,
): Promise<CommandError> {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof CommandError, `expected a CommandError, got ${e}`);
    return e;
  }
  assert.fail("expected a CommandError");
}

Deno.test("adDB in a gateway: login, UserInfo, group quotas, groupIPM", async () => {
  await using ldap = await startSlapd({ tls: true });
  await ldap.addUser("alice", "alice-pw", "Alice Liddell", ["staff", "wifi"]);
  await ldap.addUser("bob", "bob-pw", "Bob Builder", ["staff"]);
  const toml = `rule = "sessions ∧ wifi ∧ down"
admins = ["alice"]

[[sessionIPM]]
  name = "sessions"
  auth = "ldap"

[[groupIPM]]
  name = "wifi"
  group = "wifi"
  userDBN = "ldap"

[[dwnConsR]]
  name = "down"
  userDBN = "ldap"
  resetCycle = "24h"
  [dwnConsR.groupQuota]
    staff = "1 GB"
    wifi = "512 MB"

${adDbToml(ldap, "ldap", { tls: "starttls" })}`;
  const d = await PolicyDir.make(toml);
  try {
    const g = await d.open();
    assert.equal(g.kindOf("ldap"), "adDB");

    const wrong = await commandError(() =>
      g.open("sessions", { ip: "10.0.0.5" }, { user: "alice", pass: "nope" })
    );
    assert.deepEqual(wrong.body, { message: LOGIN_FAILED });
    const unknown = await commandError(() =>
      g.open("sessions", { ip: "10.0.0.5" }, { user: "mallory", pass: "x" })
    );
    assert.deepEqual(unknown.body, { message: LOGIN_FAILED });

    const secret = await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "alice",
      pass: "alice-pw",
    });
    assert.equal(
      await g.check("sessions", { ip: "10.0.0.5", secret }),
      "alice",
    );
    const info = await g.userInfo("down", { ip: "10.0.0.5", secret });
    assert.equal(info.name, "Alice Liddell");
    assert.equal(info.userName, "alice");
    assert.deepEqual(info.groups, ["staff", "wifi"]);
    assert.equal(info.bytesQuota, 1.5 * 1024 ** 3);
    assert.equal(info.isAdmin, true);
    const allowed = await g.decide(request("10.0.0.5", d.clock));
    assert.equal(allowed.allowed, true);

    // bob is not in wifi: logged in, but the rule refuses.
    const bobSecret = await g.open("sessions", { ip: "10.0.0.6" }, {
      user: "bob",
      pass: "bob-pw",
    });
    const bobInfo = await g.userInfo("down", { ip: "10.0.0.5", secret }, {
      user: "bob",
    });
    assert.equal(bobInfo.name, "Bob Builder");
    assert.equal(bobInfo.bytesQuota, 1024 ** 3);
    assert.ok(bobSecret);
    const refused = await g.decide(request("10.0.0.6", d.clock));
    assert.equal(refused.allowed, false);
    assert.ok(
      !refused.allowed && /bob is not in group "wifi"/.test(refused.reason),
    );

    // The service account's record answers for another user (admin view)
    // and an unknown one gets the database's error.
    await commandError(() =>
      g.userInfo("down", { ip: "10.0.0.5", secret }, { user: "mallory" })
    );
  } finally {
    await d.cleanup();
  }
});
