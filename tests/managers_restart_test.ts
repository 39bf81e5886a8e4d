/**
 * What a restart keeps and what it must not: a session's last use (so an
 * idle session does not get a fresh idleTimeout), written with the periodic
 * flush and not per request; and the groups of restored sessions, which
 * follow the user database as it is now (mapDB at once, adDB in the
 * background, against a real slapd). A real Deno KV file in a temp dir;
 * the clock is the test's, so "after the idle time has passed" needs no
 * sleeping. And two download quotas on one request: a chunk one of them
 * stops is counted by none.
 */
import assert from "node:assert/strict";
import { CombinedMeter, type GatewayRuntime } from "../managers/mod.ts";
import { Account } from "../managers/quotas/dwn_cons_r.ts";
import type { Meter } from "../proxy/policy.ts";
import { SessionIpm } from "../managers/sessions/session_ipm.ts";
import { PolicyDir, README_TOML, request } from "./helpers/managers_setup.ts";
import { adDbToml, startSlapd } from "./helpers/slapd.ts";
import { KvStateStore } from "../managers/state/kv_store.ts";
import type { StoredSession } from "../managers/state/store.ts";

/** The README's file with a 1 s idleTimeout and a second user. */
const IDLE_TOML = README_TOML
  .replace('auth = "map"', 'auth = "map"\n\tidleTimeout = "1s"')
  .replace('user0 = "pass0"', 'user0 = "pass0"\n\t\tuser1 = "pass1"')
  .replace('user0 = ["group0"]', 'user0 = ["group0"]\n\t\tuser1 = ["group0"]');

/** The stored copy of the session at `ip`, read straight from the KV file. */
/**
 * The session stored at `ip` as another gateway reads it (a session's last
 * use may be in the packs of last uses, not in its own key).
 */
async function stored(
  kvPath: string,
  ip: string,
): Promise<StoredSession | null> {
  const store = await KvStateStore.open(kvPath);
  try {
    return await store.getSession("sessions", ip) ?? null;
  } finally {
    await store.close();
  }
}

Deno.test("restart: a session idle longer than idleTimeout is gone after a reopen; a recently used one survives", async () => {
  const d = await PolicyDir.make(IDLE_TOML);
  try {
    const g = await d.open();
    await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    await g.open("sessions", { ip: "10.0.0.7" }, {
      user: "user1",
      pass: "pass1",
    });
    assert.equal(g.decideSync(request("10.0.0.5", d.clock)).allowed, true);
    d.clock.advance(700);
    // Only user1 uses the gateway after this.
    assert.equal(g.decideSync(request("10.0.0.7", d.clock)).allowed, true);
    await g.close();
    // 1.2 s after user0's last use, 0.5 s after user1's.
    d.clock.advance(500);
    const again = await d.open();
    const idle = again.decideSync(request("10.0.0.5", d.clock));
    assert.equal(idle.allowed, false);
    assert.match(
      !idle.allowed ? idle.reason : "",
      /not logged in at 10\.0\.0\.5/,
    );
    const used = again.decideSync(request("10.0.0.7", d.clock));
    assert.equal(used.allowed, true);
    // The idle session's stored copy is deleted at the next flush.
    await again.flush();
    assert.equal(await stored(d.kvPath, "10.0.0.5"), null);
    assert.ok(await stored(d.kvPath, "10.0.0.7"));
  } finally {
    await d.cleanup();
  }
});

Deno.test("restart: the last use is written by the flush, not by each request", async () => {
  const d = await PolicyDir.make(IDLE_TOML);
  try {
    const g = await d.open();
    const login = d.clock.ms;
    await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    d.clock.advance(300);
    for (let i = 0; i < 5; i++) {
      d.clock.advance(100);
      assert.equal(g.decideSync(request("10.0.0.5", d.clock)).allowed, true);
    }
    const used = d.clock.ms;
    // Requests wrote nothing: the store still has the login's time.
    assert.equal((await stored(d.kvPath, "10.0.0.5"))?.lastUsed, login);
    await g.flush();
    const after = await stored(d.kvPath, "10.0.0.5");
    assert.equal(after?.lastUsed, used);
    assert.equal(after?.user, "user0");
    assert.deepEqual(after?.groups, { map: ["group0"] });
    // 0.9 s after the last use (1.7 s after the login) a reopened gateway
    // still has the session, and closes it once idleTimeout has passed.
    await g.close();
    d.clock.advance(900);
    const again = await d.open();
    assert.equal(again.decideSync(request("10.0.0.5", d.clock)).allowed, true);
    d.clock.advance(1000);
    assert.equal(
      again.decideSync(request("10.0.0.5", d.clock)).allowed,
      false,
    );
  } finally {
    await d.cleanup();
  }
});

Deno.test("restart: the persist timer writes the last use (a gateway that dies without closing keeps it)", async () => {
  const d = await PolicyDir.make(IDLE_TOML);
  try {
    const g = await d.open(20);
    await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    d.clock.advance(600);
    const used = d.clock.ms;
    assert.equal(g.decideSync(request("10.0.0.5", d.clock)).allowed, true);
    let seen: unknown;
    for (let i = 0; i < 250 && seen !== used; i++) {
      await new Promise((r) => setTimeout(r, 20));
      seen = (await stored(d.kvPath, "10.0.0.5"))?.lastUsed;
    }
    assert.equal(seen, used);
  } finally {
    await d.cleanup();
  }
});

/** Waits for the background refresh of the sessions restored at start. */
async function refreshed(g: GatewayRuntime): Promise<void> {
  const m = g.config.managers.get("sessions");
  assert.ok(m instanceof SessionIpm);
  await m.whenRefreshed();
}

Deno.test("restart: restored sessions follow a group changed in managers.toml (mapDB, groupIPM)", async () => {
  const toml = (user0: string, user1: string) =>
    `rule = "sessions ∧ staff"

[[sessionIPM]]
  name = "sessions"
  auth = "map"

[[groupIPM]]
  name = "staff"
  group = "staff"
  userDBN = "map"

[mapDB]
  name = "map"
  [mapDB.userPass]
    user0 = "pass0"
    user1 = "pass1"
  [mapDB.userGroups]
    user0 = ${user0}
    user1 = ${user1}
`;
  const d = await PolicyDir.make(toml(`["staff"]`, `["guests"]`));
  try {
    const g = await d.open();
    await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    await g.open("sessions", { ip: "10.0.0.6" }, {
      user: "user1",
      pass: "pass1",
    });
    assert.equal(g.decideSync(request("10.0.0.5", d.clock)).allowed, true);
    assert.equal(g.decideSync(request("10.0.0.6", d.clock)).allowed, false);
    await g.close();
    await Deno.writeTextFile(
      d.managersPath,
      toml(`["guests"]`, `["guests", "staff"]`),
    );
    const again = await d.open();
    await refreshed(again);
    const moved = again.decideSync(request("10.0.0.5", d.clock));
    assert.equal(moved.allowed, false);
    assert.match(
      !moved.allowed ? moved.reason : "",
      /user0 is not in group "staff"/,
    );
    assert.equal(again.decideSync(request("10.0.0.6", d.clock)).allowed, true);
  } finally {
    await d.cleanup();
  }
});

Deno.test("restart: restored sessions get their groups from the directory again (adDB, real slapd)", async () => {
  await using ldap = await startSlapd();
  await ldap.addUser("alice", "alice-pw", "Alice Liddell", ["staff", "wifi"]);
  const bobDn = await ldap.addUser("bob", "bob-pw", "Bob Builder", ["staff"]);
  const carolDn = await ldap.addUser("carol", "carol-pw", "Carol", ["wifi"]);
  const toml = `rule = "sessions ∧ wifi"

[[sessionIPM]]
  name = "sessions"
  auth = "ldap"

[[groupIPM]]
  name = "wifi"
  group = "wifi"
  userDBN = "ldap"

${adDbToml(ldap, "ldap")}`;
  const d = await PolicyDir.make(toml);
  const warnings: string[] = [];
  const warn = console.warn;
  try {
    const g = await d.open();
    await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "alice",
      pass: "alice-pw",
    });
    await g.open("sessions", { ip: "10.0.0.6" }, {
      user: "bob",
      pass: "bob-pw",
    });
    await g.open("sessions", { ip: "10.0.0.7" }, {
      user: "carol",
      pass: "carol-pw",
    });
    assert.equal(g.decideSync(request("10.0.0.5", d.clock)).allowed, true);
    assert.equal(g.decideSync(request("10.0.0.6", d.clock)).allowed, false);
    await g.close();

    // While the gateway is down: bob joins wifi, alice leaves it, carol
    // leaves the directory.
    const wifi = `cn=wifi,${ldap.groupsDn}`;
    await ldap.ldapAdd(
      `dn: ${wifi}\nchangetype: modify\nadd: member\nmember: ${bobDn}\n`,
    );
    await ldap.ldapAdd(
      `dn: ${wifi}\nchangetype: modify\ndelete: member\nmember: uid=alice,${ldap.peopleDn}\n`,
    );
    await ldap.ldapAdd(
      `dn: ${wifi}\nchangetype: modify\ndelete: member\nmember: ${carolDn}\n`,
    );
    await ldap.ldapAdd(`dn: ${carolDn}\nchangetype: delete\n`);

    const again = await d.open();
    await refreshed(again);
    const bob = again.decideSync(request("10.0.0.6", d.clock));
    assert.equal(bob.allowed, true, JSON.stringify(bob));
    const alice = again.decideSync(request("10.0.0.5", d.clock));
    assert.match(
      !alice.allowed ? alice.reason : "allowed",
      /alice is not in group "wifi"/,
    );
    const carol = again.decideSync(request("10.0.0.7", d.clock));
    assert.match(
      !carol.allowed ? carol.reason : "allowed",
      /not logged in at 10\.0\.0\.7/,
    );
    await again.close();

    // The directory is gone: the sessions keep the groups last read (and
    // written at the close), and the problem is told once.
    await ldap.stop();
    console.warn = (...args: unknown[]) => warnings.push(args.join(" "));
    const third = await d.open();
    await refreshed(third);
    console.warn = warn;
    assert.equal(third.decideSync(request("10.0.0.6", d.clock)).allowed, true);
    assert.equal(
      third.decideSync(request("10.0.0.5", d.clock)).allowed,
      false,
    );
    assert.equal(warnings.length, 1, warnings.join("\n"));
    assert.match(
      warnings[0],
      /sessionIPM "sessions": cannot refresh .*adDB "ldap".*cannot reach the directory.*keep the groups they had/,
    );
  } finally {
    console.warn = warn;
    await d.cleanup();
  }
});

Deno.test("two quotas on one request: a chunk the second stops is counted by neither", async () => {
  const KiB = 1024;
  const toml = README_TOML
    .replace('rule = "sessions ∧ down"', 'rule = "sessions ∧ down ∧ small"')
    .replace(
      "[mapDB]",
      `[[dwnConsR]]
	name = "small"
	userDBN = "map"
	resetCycle = "24h"
	[dwnConsR.groupQuota]
		group0 = "250 KB"

[mapDB]`,
    );
  const d = await PolicyDir.make(toml);
  try {
    const g = await d.open();
    const secret = await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    const decision = g.decideSync(request("10.0.0.5", d.clock));
    assert.ok(decision.allowed && decision.meter);
    // 100 KiB chunks: "small" takes three (300 KiB, over its 250 KiB
    // after the third) and stops the fourth; "down" (1 GB) comes first in
    // the rule, so it sees every chunk first.
    let passed = 0;
    let stopped = false;
    for (let i = 0; i < 10 && !stopped; i++) {
      if (decision.meter.chunk(100 * KiB) < 0) stopped = true;
      else passed += 100 * KiB;
    }
    assert.ok(stopped);
    assert.equal(decision.meter.stopReason, "quota reached");
    assert.equal(passed, 300 * KiB);
    const down = await g.userInfo("down", { ip: "10.0.0.5", secret });
    const small = await g.userInfo("small", { ip: "10.0.0.5", secret });
    assert.equal(small.bytesCons, passed);
    assert.equal(down.bytesCons, passed);
    // The next request is refused by "small" and counts nothing more.
    assert.equal(g.decideSync(request("10.0.0.5", d.clock)).allowed, false);
    await g.close();
    const again = await d.open();
    const downAgain = await again.userInfo("down", { ip: "10.0.0.5", secret });
    assert.equal(downAgain.bytesCons, passed);
  } finally {
    await d.cleanup();
  }
});

Deno.test("combined meters: a quota that counted a chunk another meter then stops takes it back", () => {
  const acc = new Account();
  acc.quota = 1000;
  let buckets = 0;
  const bucket: Meter = { chunk: () => (buckets++, 0) };
  const stop: Meter = { chunk: () => -1, stopReason: "cut" };
  const cut = new CombinedMeter([acc, bucket, stop]);
  assert.equal(cut.chunk(100), -1);
  assert.equal(cut.stopReason, "cut");
  assert.equal(acc.cons, 0);
  assert.equal(acc.pending, 0);
  // A quota that would stop is asked before anyone counts the chunk.
  const full = new Account();
  full.quota = 0;
  const before = new CombinedMeter([acc, bucket, full]);
  assert.equal(before.chunk(100), -1);
  assert.equal(before.stopReason, "quota reached");
  assert.equal(acc.cons, 0);
  assert.equal(buckets, 1);
  const ok = new CombinedMeter([acc, bucket]);
  assert.equal(ok.chunk(100), 0);
  assert.equal(acc.cons, 100);
  assert.equal(acc.pending, 100);
});

Deno.test("restart: a flush writes a session's last use once it moved a step (a tenth of idleTimeout, 5 minutes without one); closing writes it exactly", async () => {
  for (
    const [toml, stepMs] of [[IDLE_TOML, 100], [
      README_TOML,
      5 * 60_000,
    ]] as const
  ) {
    const d = await PolicyDir.make(toml);
    try {
      const g = await d.open();
      const login = d.clock.ms;
      await g.open("sessions", { ip: "10.0.0.5" }, {
        user: "user0",
        pass: "pass0",
      });
      const use = (ms: number) => {
        d.clock.advance(ms);
        assert.equal(g.decideSync(request("10.0.0.5", d.clock)).allowed, true);
        return d.clock.ms;
      };
      use(stepMs / 2);
      await g.flush();
      assert.equal(
        (await stored(d.kvPath, "10.0.0.5"))?.lastUsed,
        login,
        `moved half a step (${stepMs} ms): not written`,
      );
      const moved = use(stepMs / 2);
      await g.flush();
      assert.equal(
        (await stored(d.kvPath, "10.0.0.5"))?.lastUsed,
        moved,
        `moved a step (${stepMs} ms): written`,
      );
      const last = use(stepMs / 10);
      await g.close();
      assert.equal(
        (await stored(d.kvPath, "10.0.0.5"))?.lastUsed,
        last,
        "closing writes it exactly",
      );
    } finally {
      await d.cleanup();
    }
  }
});

Deno.test("restart: two gateways on one state file: a session used through one alone stays open on the other past idleTimeout, and closes on both once unused", async () => {
  const d = await PolicyDir.make(IDLE_TOML);
  try {
    const a = await d.open();
    const b = await d.open();
    await a.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    await a.flush();
    await b.flush();
    // Used through B every 200 ms for 3 s (idleTimeout is 1 s); each
    // gateway flushes meanwhile, as its persist timer would.
    for (let i = 0; i < 15; i++) {
      d.clock.advance(200);
      assert.equal(b.decideSync(request("10.0.0.5", d.clock)).allowed, true);
      await b.flush();
      await a.flush();
    }
    assert.ok(
      (await stored(d.kvPath, "10.0.0.5"))!.lastUsed! >= d.clock.ms - 200,
      "B's last use is stored",
    );
    assert.equal(
      a.decideSync(request("10.0.0.5", d.clock)).allowed,
      true,
      "A saw B's use",
    );
    // Unused since: closed on both.
    d.clock.advance(1100);
    for (const g of [a, b]) {
      assert.equal(g.decideSync(request("10.0.0.5", d.clock)).allowed, false);
    }
  } finally {
    await d.cleanup();
  }
});
