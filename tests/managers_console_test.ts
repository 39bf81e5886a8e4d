/**
 * The administration console's questions through the real gateway (real
 * Deno KV file): the users table in pages for thousands of users (5,000 in
 * a mapDB, pages of 50, sorted by consumption, filtered), where each user
 * is logged in and when last seen, an administrator ending a session (the
 * user is refused again), a directory that cannot be listed, the managers
 * with their kinds, the live figures, and every new command refused to
 * anonymous callers and to users who are not administrators.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type Caller,
  CommandError,
  type GatewayRuntime,
  openGateway,
} from "../managers/mod.ts";
import { usersPage } from "../managers/console.ts";
import { DwnConsR } from "../managers/quotas/dwn_cons_r.ts";
import type { UserDb, UserRecord } from "../managers/types.ts";
import { request, TestClock } from "./helpers/managers_setup.ts";

const MiB = 1024 * 1024;

/** A mapDB of `n` users (user0 … user{n-1}) and an admin. */
function manyUsersToml(n: number): string {
  const passes: string[] = [];
  const groups: string[] = [];
  for (let i = 0; i < n; i++) {
    passes.push(`user${i} = "pass${i}"`);
    groups.push(`user${i} = ["${i % 2 === 0 ? "even" : "odd"}"]`);
  }
  return `rule = "sessions ∧ down"
admins = ["admin"]
jwtExpiration = "1000h"

[[sessionIPM]]
name = "sessions"
auth = "map"

[[dwnConsR]]
name = "down"
userDBN = "map"
resetCycle = "24h"
[dwnConsR.groupQuota]
even = "100 MB"
odd = "200 MB"
admins = "1 GB"

[mapDB]
name = "map"
[mapDB.userPass]
admin = "admin-pass"
${passes.join("\n")}
[mapDB.userGroups]
admin = ["admins"]
${groups.join("\n")}
`;
}

interface Site {
  clock: TestClock;
  gateway: GatewayRuntime;
  admin: Caller;
  close(): Promise<void>;
}

async function openSite(users: number): Promise<Site> {
  const dir = await Deno.makeTempDir({ prefix: "pmproxy-console-" });
  await Deno.writeTextFile(join(dir, "managers.toml"), manyUsersToml(users));
  const clock = new TestClock();
  const gateway = await openGateway(join(dir, "managers.toml"), {
    state: join(dir, "state.kv"),
    persistIntervalMs: 0,
    syncIntervalMs: 0,
    clock: clock.now,
  });
  const admin = {
    ip: "10.0.0.1",
    secret: await gateway.open("sessions", { ip: "10.0.0.1" }, {
      user: "admin",
      pass: "admin-pass",
    }),
  };
  return {
    clock,
    gateway,
    admin,
    close: async () => {
      await gateway.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("console: 5,000 users in a mapDB, answered in pages of 50 sorted by consumption", async () => {
  const site = await openSite(5000);
  const { gateway, admin } = site;
  try {
    // 300 users with consumption: user{i} has i MiB for i = 1 … 300.
    for (let i = 1; i <= 300; i++) {
      await gateway.setConsumption("down", admin, {
        user: `user${i}`,
        bytes: i * MiB,
      });
    }
    const t0 = performance.now();
    const first = await gateway.usersTable("down", admin, {
      offset: 0,
      limit: 50,
      sort: "consumption",
    });
    const ms = performance.now() - t0;
    console.log(`  a page of 5,001 users sorted in ${ms.toFixed(0)} ms`);
    assert.ok(ms < 2000, `${ms} ms`);
    assert.equal(first.total, 5001, "every user of the database, and admin");
    assert.equal(first.listed, "database");
    assert.equal(first.order, "desc", "the most consumption first");
    assert.equal(first.rows.length, 50);
    assert.deepEqual(
      first.rows.slice(0, 3).map((r) => [r.userName, r.bytesCons]),
      [["user300", 300 * MiB], ["user299", 299 * MiB], ["user298", 298 * MiB]],
    );
    const top = first.rows[0];
    assert.equal(top.bytesQuota, 100 * MiB, "user300 is even: 100 MB");
    assert.equal(top.percent, 300);
    assert.equal(top.quotaKnown, true);
    // One page is small: never the whole list.
    const bytes = JSON.stringify(first).length;
    assert.ok(bytes < 20_000, `a page is ${bytes} bytes`);

    // The pages go through every user once.
    const seen = new Set<string>();
    for (let offset = 0; offset < first.total; offset += 500) {
      const page = await gateway.usersTable("down", admin, {
        offset,
        limit: 500,
        sort: "consumption",
      });
      for (const r of page.rows) seen.add(r.userName);
    }
    assert.equal(seen.size, 5001);
    const last = await gateway.usersTable("down", admin, {
      offset: 4990,
      limit: 50,
      sort: "consumption",
    });
    assert.equal(last.rows.length, 11);
    assert.equal(last.rows.at(-1)!.bytesCons, 0);

    // Ascending, by quota, by percentage, by name.
    const fewest = await gateway.usersTable("down", admin, {
      limit: 1,
      sort: "consumption",
      order: "asc",
    });
    assert.equal(fewest.rows[0].bytesCons, 0);
    const byPercent = await gateway.usersTable("down", admin, {
      limit: 2,
      sort: "percent",
    });
    // user300 (even, 100 MB): 300 %; user299 (odd, 200 MB): 149.5 %.
    assert.deepEqual(byPercent.rows.map((r) => r.userName), [
      "user300",
      "user298",
    ]);
    const byQuota = await gateway.usersTable("down", admin, {
      limit: 1,
      sort: "quota",
    });
    assert.equal(byQuota.rows[0].userName, "admin");
    const byName = await gateway.usersTable("down", admin, { limit: 3 });
    assert.deepEqual(byName.rows.map((r) => r.userName), [
      "admin",
      "user0",
      "user1",
    ]);

    // A filter: user42, user420–429, user4200–4299.
    const filtered = await gateway.usersTable("down", admin, {
      filter: " USER42 ",
      limit: 500,
    });
    assert.equal(filtered.total, 111);
    assert.ok(filtered.rows.every((r) => r.userName.includes("user42")));
    // Limits are kept within bounds.
    const huge = await gateway.usersTable("down", admin, { limit: 100_000 });
    assert.equal(huge.rows.length, 500);
    assert.equal(huge.limit, 500);
  } finally {
    await site.close();
  }
});

Deno.test("console: where a user is logged in and when last seen; an admin ends the session and the user is refused again", async () => {
  const site = await openSite(3);
  const { gateway, admin, clock } = site;
  try {
    const user = {
      ip: "10.0.0.6",
      secret: await gateway.open("sessions", { ip: "10.0.0.6" }, {
        user: "user1",
        pass: "pass1",
      }),
    };
    clock.advance(60_000);
    const allowed = gateway.decideSync(request("10.0.0.6", clock));
    assert.ok(allowed.allowed && allowed.meter);
    allowed.meter.chunk(5000);
    clock.advance(1000);
    await gateway.flush();
    const row = async () =>
      (await gateway.usersTable("down", admin, { filter: "user1" })).rows[0];
    const before = await row();
    assert.deepEqual(before.session, {
      manager: "sessions",
      ip: "10.0.0.6",
      lastUsed: clock.ms - 1000,
    });
    assert.equal(before.lastSeen, clock.ms, "the flush that wrote its bytes");
    assert.equal(before.bytesCons, 5000);
    // By the address too.
    assert.equal(
      (await gateway.usersTable("down", admin, { filter: "10.0.0.6" })).total,
      1,
    );

    assert.deepEqual(
      await gateway.endSession("sessions", admin, { user: "user1" }),
      { ip: "10.0.0.6" },
    );
    const refused = gateway.decideSync(request("10.0.0.6", clock));
    assert.equal(refused.allowed, false);
    assert.equal((await row()).session, undefined);
    // The user's secret opens nothing now.
    await assert.rejects(() => gateway.check("sessions", user));
    await assert.rejects(
      () => gateway.endSession("sessions", admin, { user: "user1" }),
      (e: CommandError) => {
        assert.equal(e.message, "user1 has no session in sessions");
        return true;
      },
    );
    // Gone from the store too: a new gateway on it has no session there.
    const stored = await gateway.store.listSessions("sessions");
    assert.deepEqual(stored.map((s) => s.user), ["admin"]);
  } finally {
    await site.close();
  }
});

Deno.test("console: the managers with their kinds, and the live figures", async () => {
  const site = await openSite(2);
  const { gateway, admin, clock } = site;
  try {
    assert.deepEqual(await gateway.managers(admin), [
      { name: "sessions", kind: "sessionIPM", userDb: false, inRule: true },
      { name: "down", kind: "dwnConsR", userDb: false, inRule: true },
      { name: "map", kind: "mapDB", userDb: true, inRule: false },
    ]);
    await gateway.setConsumption("down", admin, { user: "user0", bytes: 7 });
    const live = await gateway.live(admin);
    assert.deepEqual(live, {
      at: clock.ms,
      sessions: { sessions: 1 },
      quotas: { down: { users: 1, bytes: 7 } },
    });
    gateway.useProxyFigures(() => ({
      clientConnections: 3,
      tunnels: 1,
      requests: 42,
    }));
    assert.deepEqual((await gateway.live(admin)).proxy, {
      clientConnections: 3,
      tunnels: 1,
      requests: 42,
    });
  } finally {
    await site.close();
  }
});

Deno.test("console: every new command refuses anonymous callers and users who are not admins", async () => {
  const site = await openSite(2);
  const { gateway } = site;
  try {
    const user = {
      ip: "10.0.0.5",
      secret: await gateway.open("sessions", { ip: "10.0.0.5" }, {
        user: "user0",
        pass: "pass0",
      }),
    };
    const anonymous = { ip: "10.0.0.7", secret: "" };
    const calls: [string, (c: Caller) => Promise<unknown>][] = [
      ["usersTable", (c) => gateway.usersTable("down", c, {})],
      [
        "endSession",
        (c) => gateway.endSession("sessions", c, { user: "user1" }),
      ],
      ["managers", (c) => gateway.managers(c)],
      ["live", (c) => gateway.live(c)],
      ["usage of another", (c) => gateway.usage("down", c, { user: "x" })],
      ["usage of all", (c) => gateway.usage("down", c, { all: true })],
    ];
    for (const [name, call] of calls) {
      await assert.rejects(() => call(user), (e: unknown) => {
        assert.ok(e instanceof CommandError, `${name}: ${e}`);
        assert.deepEqual(e.body, { User: "user0" }, name);
        return true;
      });
      await assert.rejects(() => call(anonymous), (e: unknown) => {
        assert.ok(e instanceof CommandError, `${name}: ${e}`);
        assert.deepEqual(e.body, { message: "empty JWT" }, name);
        return true;
      });
    }
    // A manager of another kind is the original's unknown command.
    await assert.rejects(
      () => gateway.usersTable("sessions", site.admin, {}),
      (e: CommandError) => e.body.Mng === "sessions" && e.body.Cmd === "users",
    );
    await assert.rejects(
      () => gateway.endSession("down", site.admin, { user: "user0" }),
      (e: CommandError) => e.body.Mng === "down" && e.body.Cmd === "close",
    );
  } finally {
    await site.close();
  }
});

/** A user database that cannot list its users, like a directory. */
class Directory implements UserDb {
  readonly name = "dir";
  readonly kind = "adDB";
  readonly refresh = "in-background" as const;
  lookups: string[] = [];
  authenticate(): Promise<UserRecord> {
    return Promise.reject(new Error("not here"));
  }
  lookup(user: string): Promise<UserRecord | undefined> {
    this.lookups.push(user);
    if (user === "gone") return Promise.resolve(undefined);
    return Promise.resolve({
      userName: user,
      name: `${user} Full`,
      groups: ["staff"],
    });
  }
  show(): unknown {
    return {};
  }
}

Deno.test("console: a directory is not listed: the users with consumption, their page looked up", async () => {
  const clock = new TestClock();
  const quota = new DwnConsR("down", {
    userDBN: "dir",
    groupQuota: { staff: 10 * MiB },
    clock: clock.now,
  });
  for (let i = 0; i < 120; i++) quota.account(`u${i}`).cons = i;
  quota.account("gone").cons = 1000;
  const db = new Directory();
  const page = await usersPage(
    { quota, db, sessions: [], now: clock.ms },
    { limit: 10, sort: "consumption" },
  );
  assert.equal(page.listed, "active");
  assert.equal(page.total, 121);
  assert.equal(page.rows.length, 10);
  // Only this page's rows were asked for.
  assert.equal(db.lookups.length, 10);
  assert.deepEqual(page.rows[0], {
    userName: "gone",
    name: "gone",
    bytesCons: 1000,
    bytesQuota: 0,
    percent: null,
    quotaKnown: false,
  });
  assert.deepEqual(page.rows[1], {
    userName: "u119",
    name: "u119 Full",
    bytesCons: 119,
    bytesQuota: 10 * MiB,
    percent: (119 * 100) / (10 * MiB),
    quotaKnown: true,
  });
});
