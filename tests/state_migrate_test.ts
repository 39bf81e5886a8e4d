/**
 * `pmproxy state export` / `state import`: sessions, consumption, last
 * resets and the signing key moved from a Deno KV file to Redis and back,
 * checked through real gateways on each store (the same sessions allow the
 * same IPs, the same consumption, a secret made before the move checks);
 * the command line; what an import into a store that holds state does
 * (refused, or --merge); broken input.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type GatewayRuntime,
  openGateway,
  openStateStore,
  type StateLine,
} from "../managers/mod.ts";
import { exportState, importState } from "../managers/state/migrate.ts";
import type { SessionAt, StateStore } from "../managers/state/store.ts";
import { KvStateStore } from "../managers/state/kv_store.ts";
import type { Meter } from "../proxy/policy.ts";
import { PolicyDir, README_TOML, request } from "./helpers/managers_setup.ts";
import { redisMissing, startRedis } from "./helpers/redis_server.ts";
import { runPmproxy } from "./helpers/pmproxy_process.ts";

const missing = await redisMissing();
if (missing) console.warn(`state_migrate_test.ts: Redis cases ${missing}`);

const KiB = 1024;

const TOML = README_TOML
  .replace('group0 = "1 GB"', 'group0 = "1 MB"')
  .replace(
    'rule = "sessions ∧ down"',
    'rule = "sessions ∧ down"\nadmins = ["user0"]\njwtExpiration = "1000h"',
  )
  .replace('user0 = "pass0"', 'user0 = "pass0"\n\t\tuser1 = "pass1"')
  .replace(
    'user0 = ["group0"]',
    'user0 = ["group0"]\n\t\tuser1 = ["group0"]',
  );

function meterOf(g: GatewayRuntime, ip: string, d: PolicyDir): Meter {
  const decision = g.decideSync(request(ip, d.clock));
  assert.ok(decision.allowed, JSON.stringify(decision));
  assert.ok(decision.meter);
  return decision.meter;
}

async function lines(store: StateStore): Promise<StateLine[]> {
  return await Array.fromAsync(exportState(store));
}

function text(all: StateLine[]): string[] {
  return all.map((l) => JSON.stringify(l));
}

function open(d: PolicyDir, state: string): Promise<GatewayRuntime> {
  return openGateway(d.managersPath, {
    state,
    persistIntervalMs: 0,
    loginUrl: "https://gw.test:4443",
    clock: d.clock.now,
  });
}

/** What a gateway shows of the state the first one made. */
async function sameState(
  g: GatewayRuntime,
  d: PolicyDir,
  secrets: { admin: string; user1: string },
  user1Bytes: number,
): Promise<void> {
  assert.equal(g.decideSync(request("10.0.0.5", d.clock)).allowed, true);
  assert.equal(g.decideSync(request("10.0.0.7", d.clock)).allowed, true);
  assert.equal(g.decideSync(request("10.0.0.8", d.clock)).allowed, false);
  // Secrets made before the move still check: the signing key came along.
  assert.equal(
    await g.check("sessions", { ip: "10.0.0.5", secret: secrets.admin }),
    "user0",
  );
  assert.equal(
    await g.check("sessions", { ip: "10.0.0.7", secret: secrets.user1 }),
    "user1",
  );
  const info = await g.userInfo("down", {
    ip: "10.0.0.5",
    secret: secrets.admin,
  }, { user: "user1" });
  assert.equal(info.bytesCons, user1Bytes);
}

function bySortedIp(sessions: SessionAt[]): SessionAt[] {
  return sessions.toSorted((a, b) => a.ip.localeCompare(b.ip));
}

Deno.test({
  name:
    "state export/import: from a KV file to Redis and back, seen the same by gateways on each",
  ignore: missing !== undefined,
  fn: async () => {
    await using redis = await startRedis({ password: "move-me" });
    const d = await PolicyDir.make(TOML);
    try {
      // A gateway on the KV file: two logins, some traffic, a later use.
      const kvGateway = await open(d, d.kvPath);
      const admin = await kvGateway.open("sessions", { ip: "10.0.0.5" }, {
        user: "user0",
        pass: "pass0",
      });
      const user1 = await kvGateway.open("sessions", { ip: "10.0.0.7" }, {
        user: "user1",
        pass: "pass1",
      });
      meterOf(kvGateway, "10.0.0.7", d).chunk(300 * KiB);
      d.clock.advance(60_000);
      meterOf(kvGateway, "10.0.0.5", d).chunk(KiB);
      const lastReset = (kvGateway.describe("down") as { lastReset: string })
        .lastReset;
      await kvGateway.close();

      const kv = await KvStateStore.open(d.kvPath);
      const fromKv = await lines(kv);
      assert.deepEqual(
        fromKv.map((l) => l.type),
        [
          "signingKey",
          "lastReset",
          "consumption",
          "consumption",
          "session",
          "session",
        ],
      );
      const kvSessions = bySortedIp(await kv.listSessions("sessions"));
      await kv.close();
      // The admin's later use (written by the close, on KV in the packs of
      // last uses, not in the session's own key) is exported with it.
      const used = d.clock.ms;
      assert.equal(kvSessions[0].ip, "10.0.0.5");
      assert.equal(kvSessions[0].lastUsed, used);
      const exported = fromKv.find((l) =>
        l.type === "session" && l.ip === "10.0.0.5"
      );
      assert.equal(
        exported?.type === "session" && exported.session.lastUsed,
        used,
      );

      const store = await openStateStore(redis.url);
      const summary = await importState(store, text(fromKv));
      assert.deepEqual(summary, {
        signingKey: "stored",
        lastResets: 1,
        counters: 2,
        sessions: 2,
        grants: 0,
        skipped: 0,
        warnings: [],
      });
      assert.deepEqual(
        bySortedIp(await store.listSessions("sessions")),
        kvSessions,
      );
      await store.close();

      const onRedis = await open(d, redis.url);
      await sameState(onRedis, d, { admin, user1 }, 300 * KiB);
      assert.equal(
        (onRedis.describe("down") as { lastReset: string }).lastReset,
        lastReset,
      );
      // More traffic on Redis, then back to a new KV file.
      meterOf(onRedis, "10.0.0.7", d).chunk(100 * KiB);
      await onRedis.close();

      const again = await openStateStore(redis.url);
      const fromRedis = await lines(again);
      await again.close();
      const backPath = join(d.dir, "back.kv");
      const back = await openStateStore(backPath);
      await importState(back, text(fromRedis));
      await back.close();
      const onKv = await open(d, backPath);
      await sameState(onKv, d, { admin, user1 }, 400 * KiB);
      await onKv.close();
    } finally {
      await d.cleanup();
    }
  },
});

Deno.test({
  name:
    "state export/import on the command line: KV file to Redis; a second import needs --merge",
  ignore: missing !== undefined,
  fn: async () => {
    await using redis = await startRedis({ password: "cli-secret" });
    const d = await PolicyDir.make(TOML);
    try {
      const g = await d.open();
      await g.open("sessions", { ip: "10.0.0.7" }, {
        user: "user1",
        pass: "pass1",
      });
      meterOf(g, "10.0.0.7", d).chunk(5000);
      await g.close();
      d.gateways.length = 0;

      // No server.toml here: the default store, DIR/state.kv.
      const exported = await runPmproxy([
        "state",
        "export",
        "--config-dir",
        d.dir,
      ]);
      assert.equal(exported.code, 0, exported.stderr);
      assert.match(exported.stderr, /exported 4 lines from Deno KV file /);
      const types = exported.stdout.trim().split("\n").map((l) =>
        JSON.parse(l).type
      );
      assert.deepEqual(types, [
        "signingKey",
        "lastReset",
        "consumption",
        "session",
      ]);

      const into = (...extra: string[]) =>
        runPmproxy(["state", "import", "--state", redis.url, ...extra], {
          stdin: exported.stdout,
        });
      const first = await into();
      assert.equal(first.code, 0, first.stderr);
      assert.match(
        first.stderr,
        /imported into Redis at redis:\/\/127\.0\.0\.1:\d+\/0: signing key stored, 1 last resets, 1 counters, 1 sessions/,
      );
      const second = await into();
      assert.equal(second.code, 1);
      assert.match(
        second.stderr,
        /already holds a signing key, sessions of "sessions", the quota "down"; import into an empty store, or give --merge/,
      );
      const merged = await into("--merge");
      assert.equal(merged.code, 0, merged.stderr);
      for (const r of [exported, first, second, merged]) {
        assert.ok(!r.stderr.includes("cli-secret"), r.stderr);
      }
      // Merged: the counter added again, the rest as it was.
      const store = await openStateStore(redis.url);
      try {
        const cycle = [...(await store.inventory()).lastResets.values()][0];
        assert.deepEqual(
          Object.fromEntries(await store.readConsumption("down", cycle)),
          { user1: 10_000 },
        );
        assert.equal((await store.listSessions("sessions")).length, 1);
      } finally {
        await store.close();
      }

      // Nothing to export: no store is made.
      const empty = await Deno.makeTempDir({ prefix: "pmproxy-empty-" });
      const none = await runPmproxy([
        "state",
        "export",
        "--config-dir",
        empty,
      ]);
      assert.equal(none.code, 1);
      assert.match(none.stderr, /there is no state store at .*state\.kv/);
      assert.deepEqual([...Deno.readDirSync(empty)], []);
      await Deno.remove(empty);
      const wrong = await runPmproxy(["state", "move"]);
      assert.equal(wrong.code, 2);
      assert.match(
        wrong.stderr,
        /state needs "export" or "import", not "move"/,
      );
    } finally {
      await d.cleanup();
    }
  },
});

async function withKv(fn: (store: StateStore) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "pmproxy-migrate-" });
  const store = await KvStateStore.open(join(dir, "state.kv"));
  try {
    await fn(store);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

function storedAt(ip: string, user: string, opened: number): SessionAt {
  return {
    ip,
    user,
    record: { userName: user, name: user, groups: [] },
    groups: { map: [] },
    opened,
    lastUsed: opened,
  };
}

function session(ip: string, user: string, opened: number): StateLine {
  const { ip: _, ...stored } = storedAt(ip, user, opened);
  return { type: "session", manager: "sessions", ip, session: stored };
}

Deno.test("state import --merge: the store's key and the later reset stay, counters add, sessions at the same IP are replaced", async () => {
  await withKv(async (store) => {
    const own = await store.signingKey();
    await store.initLastReset("down", 2000);
    await store.addConsumption("down", 2000, new Map([["alice", 10]]));
    await store.initLastReset("up", 5000);
    await store.saveSession("sessions", storedAt("10.0.0.5", "carol", 1));
    await store.saveSession("sessions", storedAt("10.0.0.6", "dave", 1));
    const imported: StateLine[] = [
      { type: "signingKey", key: btoa("k".repeat(32)) },
      // Later than the store's: the store moves to it, its counters stay
      // with the cycle that is over.
      { type: "lastReset", manager: "down", at: 3000 },
      {
        type: "consumption",
        manager: "down",
        cycle: 3000,
        user: "alice",
        bytes: 5,
      },
      {
        type: "consumption",
        manager: "down",
        cycle: 3000,
        user: "bob",
        bytes: 7,
      },
      // Earlier than the store's: the store keeps its own, and these
      // counters of a cycle that is over there are skipped.
      { type: "lastReset", manager: "up", at: 4000 },
      {
        type: "consumption",
        manager: "up",
        cycle: 4000,
        user: "alice",
        bytes: 99,
      },
      session("10.0.0.5", "erin", 50),
    ];
    const refused = await importState(store, text(imported)).then(
      () => assert.fail("imported into a store with state"),
      (e: Error) => e,
    );
    assert.match(refused.message, /already holds a signing key/);
    assert.deepEqual(
      Object.fromEntries(await store.readConsumption("down", 2000)),
      { alice: 10 },
    );

    const summary = await importState(store, text(imported), { merge: true });
    assert.equal(summary.signingKey, "kept");
    assert.equal(summary.skipped, 1);
    assert.equal(summary.warnings.length, 2);
    assert.match(summary.warnings[0], /kept its own signing key/);
    assert.deepEqual(await store.signingKey(), own);
    const inv = await store.inventory();
    assert.deepEqual(Object.fromEntries(inv.lastResets), {
      down: 3000,
      up: 5000,
    });
    assert.deepEqual(
      Object.fromEntries(await store.readConsumption("down", 3000)),
      { alice: 5, bob: 7 },
    );
    assert.deepEqual([...await store.readConsumption("up", 5000)], []);
    assert.equal(
      (await store.getSession("sessions", "10.0.0.5"))?.user,
      "erin",
    );
    assert.equal(
      (await store.getSession("sessions", "10.0.0.6"))?.user,
      "dave",
    );

    // Merging the same counters again adds them again.
    await importState(store, text(imported.slice(1, 4)), { merge: true });
    assert.deepEqual(
      Object.fromEntries(await store.readConsumption("down", 3000)),
      { alice: 10, bob: 14 },
    );
  });
});

Deno.test("state import: a broken line is reported with its number and nothing is written", async () => {
  await withKv(async (store) => {
    const good = JSON.stringify({
      type: "lastReset",
      manager: "down",
      at: 1000,
    });
    const cases: [string[], RegExp][] = [
      [[good, "{not json"], /^line 2: not JSON/],
      [
        [good, "", JSON.stringify({ type: "quota" })],
        /^line 3: unknown "type" "quota"/,
      ],
      [
        [JSON.stringify({ type: "signingKey", key: btoa("short") })],
        /^line 1: "key" must be 32 bytes, not 5/,
      ],
      [[
        good,
        JSON.stringify({
          type: "consumption",
          manager: "down",
          cycle: 1000,
          user: "a",
          bytes: 1.5,
        }),
      ], /^line 2: "bytes" must be a whole number/],
      [
        [JSON.stringify({
          type: "session",
          manager: "s",
          ip: "10.0.0.5",
          session: { user: "a" },
        })],
        /^line 1: "session" must hold/,
      ],
      [["[1,2]"], /^line 1: not a JSON object/],
    ];
    for (const [input, problem] of cases) {
      await assert.rejects(() => importState(store, input), (e: Error) => {
        assert.match(e.message, problem);
        assert.match(e.message, /nothing was imported$/);
        return true;
      });
    }
    const inv = await store.inventory();
    assert.deepEqual([...inv.lastResets], []);
    assert.equal(inv.signingKey, undefined);
  });
});

Deno.test("state export and import: grants of the current cycle go with the counters; those of a cycle that is over are skipped", async () => {
  await withKv(async (from) => {
    await from.initLastReset("down", 2000);
    await from.addConsumption("down", 2000, new Map([["alice", 10]]));
    await from.addGrant("down", 2000, "alice", 500);
    await from.addGrant("down", 2000, "bob", 7);
    // An old cycle's grant, not yet deleted: not exported.
    await from.addGrant("down", 1000, "alice", 99);
    const lines: StateLine[] = [];
    for await (const line of exportState(from)) lines.push(line);
    assert.deepEqual(lines.filter((l) => l.type === "grant"), [
      {
        type: "grant",
        manager: "down",
        cycle: 2000,
        user: "alice",
        bytes: 500,
      },
      { type: "grant", manager: "down", cycle: 2000, user: "bob", bytes: 7 },
    ]);
    await withKv(async (to) => {
      const summary = await importState(to, text(lines));
      assert.equal(summary.grants, 2);
      assert.deepEqual(
        Object.fromEntries(await to.readGrants("down", 2000)),
        { alice: 500, bob: 7 },
      );
      // Into a store whose cycle is later: skipped, and said so.
      await to.advanceLastReset("down", 3000);
      const merged = await importState(to, text(lines), { merge: true });
      assert.equal(merged.grants, 0);
      assert.equal(merged.skipped, 3);
      assert.match(merged.warnings.at(-1)!, /3 counters or grants/);
      assert.deepEqual([...await to.readGrants("down", 3000)], []);
    });
    await assert.rejects(
      () =>
        importState(from, [
          JSON.stringify({
            type: "grant",
            manager: "down",
            cycle: 2000,
            user: "a",
            bytes: -1,
          }),
        ], { merge: true }),
      /^Error: line 1: "bytes" must be a whole number/,
    );
  });
});
