/**
 * The state-store seam's contract, run against both backends: Deno KV on
 * a temporary file and Redis on a temporary redis-server. Every method
 * and its atomic/conditional semantics, with two store objects on one
 * backend as two gateways racing each other. Then what only Redis does:
 * announced changes between store objects, an outage (fail fast, health
 * told once, a password never shown) and the reconnect after it, TLS.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type {
  SessionAt,
  StateChange,
  StateStore,
  StoredSession,
} from "../managers/state/store.ts";
import { StoreWriteError } from "../managers/state/store.ts";
import { KvStateStore } from "../managers/state/kv_store.ts";
import { PACK_BYTES, packOf } from "../managers/state/_kv_packs.ts";
import { RedisStateStore } from "../managers/state/redis_store.ts";
import { openStateStore } from "../managers/state/open_store.ts";
import { stateConfigFrom } from "../managers/state/config.ts";
import { parseRedisUrl } from "../managers/state/_redis_url.ts";
import {
  redisMissing,
  type RedisServer,
  startRedis,
} from "./helpers/redis_server.ts";

const missing = await redisMissing();
if (missing) console.warn(`state_store_test.ts: Redis cases ${missing}`);

/** Store objects opened on one backend (like gateways sharing it). */
interface Site {
  open(): Promise<StateStore>;
  redis?: RedisServer;
}

interface Backend {
  name: string;
  ignore: boolean;
  /** Runs `fn` with a fresh, empty backend; closes what it opened. */
  with(fn: (site: Site) => Promise<void>): Promise<void>;
}

const kvBackend: Backend = {
  name: "Deno KV",
  ignore: false,
  async with(fn) {
    const dir = await Deno.makeTempDir({ prefix: "pmproxy-state-" });
    const opened: StateStore[] = [];
    try {
      await fn({
        open: async () => {
          const s = await KvStateStore.open(join(dir, "state.kv"));
          opened.push(s);
          return s;
        },
      });
    } finally {
      for (const s of opened) await s.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
};

const redisBackend: Backend = {
  name: "Redis",
  ignore: missing !== undefined,
  async with(fn) {
    const redis = await startRedis();
    const opened: StateStore[] = [];
    try {
      await fn({
        open: async () => {
          const s = await RedisStateStore.open(redis.url, { warn: () => {} });
          opened.push(s);
          return s;
        },
        redis,
      });
    } finally {
      for (const s of opened) await s.close();
      await redis.close();
    }
  },
};

/** One case of the contract, registered for both backends. */
function contract(name: string, fn: (site: Site) => Promise<void>): void {
  for (const backend of [kvBackend, redisBackend]) {
    Deno.test({
      name: `state store (${backend.name}): ${name}`,
      ignore: backend.ignore,
      fn: () => backend.with(fn),
    });
  }
}

function session(
  ip: string,
  user: string,
  opened: number,
  lastUsed?: number,
): SessionAt {
  const s: SessionAt = {
    ip,
    user,
    record: { userName: user, name: `${user} Full`, groups: ["staff"] },
    // An empty list must stay a list.
    groups: { map: ["staff"], directory: [] },
    opened,
  };
  if (lastUsed !== undefined) s.lastUsed = lastUsed;
  return s;
}

function withoutIp(s: SessionAt) {
  const { ip: _, ...rest } = s;
  return rest;
}

async function waitFor(
  what: string,
  ok: () => boolean | Promise<boolean>,
  ms = 1000,
): Promise<number> {
  const t0 = performance.now();
  while (!(await ok())) {
    if (performance.now() - t0 > ms) {
      assert.fail(`${what}: not within ${ms} ms`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return performance.now() - t0;
}

// ------------------------------------------------------------- secrets

contract("the signing key is made once and shared", async (site) => {
  const a = await site.open();
  const b = await site.open();
  const [ka, kb] = await Promise.all([a.signingKey(), b.signingKey()]);
  assert.equal(ka.length, 32);
  assert.deepEqual(kb, ka);
  assert.deepEqual(await a.signingKey(), ka);
  // An initial key is only for a store that has none.
  const other = new Uint8Array(32).fill(7);
  assert.deepEqual(await b.signingKey({ initial: other }), ka);
});

contract("an initial signing key is stored byte for byte", async (site) => {
  const a = await site.open();
  // Bytes that text handling would damage: NUL, CR LF, invalid UTF-8.
  const key = new Uint8Array(32);
  key.set([0, 13, 10, 0xff, 0xfe, 0x80, 0xc3, 0x28]);
  for (let i = 8; i < 32; i++) key[i] = (i * 37) & 0xff;
  assert.deepEqual(await a.signingKey({ initial: key }), key);
  const b = await site.open();
  assert.deepEqual(await b.signingKey(), key);
});

contract(
  "inventory: empty, then what was stored, and it makes no key",
  async (site) => {
    const a = await site.open();
    const empty = await a.inventory();
    assert.equal(empty.signingKey, undefined);
    assert.deepEqual(empty.sessionManagers, []);
    assert.deepEqual([...empty.lastResets], []);
    assert.equal((await a.inventory()).signingKey, undefined);
    const key = await a.signingKey();
    await a.saveSession("sessions", session("10.0.0.5", "alice", 1000, 1000));
    await a.saveSession("wifi", session("10.0.0.6", "bob", 1000, 1000));
    await a.initLastReset("down", 5000);
    await a.initLastReset("up", 7000);
    const inv = await (await site.open()).inventory();
    assert.deepEqual(inv.signingKey, key);
    assert.deepEqual(inv.sessionManagers.toSorted(), ["sessions", "wifi"]);
    assert.deepEqual(
      [...inv.lastResets].toSorted(),
      [["down", 5000], ["up", 7000]],
    );
    // A manager whose sessions are all gone has none to export.
    await a.deleteSession("wifi", "10.0.0.6");
    assert.deepEqual((await a.inventory()).sessionManagers, ["sessions"]);
  },
);

// ------------------------------------------------------------ sessions

contract("sessions are stored, read back whole, and listed", async (site) => {
  const a = await site.open();
  const b = await site.open();
  assert.equal(await a.getSession("sessions", "10.0.0.5"), undefined);
  assert.deepEqual(await a.listSessions("sessions"), []);
  const s1 = session("10.0.0.5", "alice", 1000, 1500);
  const s2 = session("10.0.0.6", "bob", 2000);
  await a.saveSession("sessions", s1);
  await a.saveSession("sessions", s2);
  await a.saveSession("other", session("10.0.0.7", "carol", 3000, 3000));
  assert.deepEqual(await b.getSession("sessions", "10.0.0.5"), withoutIp(s1));
  // Stored without a last use (as older versions did): read without one.
  assert.deepEqual(await b.getSession("sessions", "10.0.0.6"), withoutIp(s2));
  const listed = (await b.listSessions("sessions")).toSorted((x, y) =>
    x.ip.localeCompare(y.ip)
  );
  assert.deepEqual(listed, [s1, s2]);
  assert.equal((await b.listSessions("other")).length, 1);
});

contract(
  "saveSession replaces the session at that IP and deletes the user's old one in the same write",
  async (site) => {
    const a = await site.open();
    await a.saveSession("sessions", session("10.0.0.5", "alice", 1000, 1000));
    await a.saveSession("sessions", session("10.0.0.9", "zed", 1000, 1000));
    const moved = session("10.0.0.6", "alice", 2000, 2000);
    await a.saveSession("sessions", moved, { deleteIp: "10.0.0.5" });
    assert.equal(await a.getSession("sessions", "10.0.0.5"), undefined);
    assert.deepEqual(
      await a.getSession("sessions", "10.0.0.6"),
      withoutIp(moved),
    );
    const over = session("10.0.0.9", "yann", 3000, 3000);
    await a.saveSession("sessions", over, { deleteIp: "10.0.0.9" });
    assert.deepEqual(
      await a.getSession("sessions", "10.0.0.9"),
      withoutIp(over),
    );
  },
);

contract(
  "deleteSession: unconditional, and only that session (user, login time, unused since)",
  async (site) => {
    const a = await site.open();
    const b = await site.open();
    assert.equal(await a.deleteSession("sessions", "10.0.0.5"), false);
    await a.saveSession("sessions", session("10.0.0.5", "alice", 1000, 5000));
    assert.equal(await b.deleteSession("sessions", "10.0.0.5"), true);
    assert.equal(await a.getSession("sessions", "10.0.0.5"), undefined);

    await a.saveSession("sessions", session("10.0.0.5", "alice", 1000, 5000));
    const only = (
      o: { user?: string; opened?: number; unusedSince?: number },
    ) =>
      b.deleteSession("sessions", "10.0.0.5", {
        only: { user: o.user ?? "alice", opened: o.opened ?? 1000, ...o },
      });
    // Another user logged in there, or the same user again later: it stays.
    assert.equal(await only({ user: "bob" }), false);
    assert.equal(await only({ opened: 999 }), false);
    // Idle since 4000 here, but another gateway used it at 5000: it stays.
    assert.equal(await only({ unusedSince: 4999 }), false);
    assert.ok(await a.getSession("sessions", "10.0.0.5"));
    assert.equal(await only({ unusedSince: 5000 }), true);
    assert.equal(await a.getSession("sessions", "10.0.0.5"), undefined);
    assert.equal(await only({}), false);

    await a.saveSession("sessions", session("10.0.0.5", "alice", 1000));
    // No stored last use counts as 0.
    assert.equal(await only({ unusedSince: 0 }), true);
    await a.saveSession("sessions", session("10.0.0.5", "alice", 1000, 9000));
    assert.equal(await only({}), true);
  },
);

contract(
  "updateSessions writes each only over its own copy, keeps the later last use and answers what it wrote",
  async (site) => {
    const a = await site.open();
    const b = await site.open();
    await a.saveSession("sessions", session("10.0.0.1", "u1", 1000, 1000));
    await a.saveSession("sessions", session("10.0.0.2", "u2", 1000, 1000));
    await a.saveSession("sessions", session("10.0.0.3", "u3", 1000, 1000));
    await a.saveSession("sessions", session("10.0.0.4", "u4", 1000, 1000));
    // Gateway B used u2 later than A did.
    let written = await b.updateSessions("sessions", [
      session("10.0.0.2", "u2", 1000, 9000),
    ]);
    assert.deepEqual([...written], [["10.0.0.2", 9000]]);
    // u3 logged in again (another login time), u4 logged out, u5 never was.
    await b.saveSession("sessions", session("10.0.0.3", "u3", 2000, 2000));
    await b.deleteSession("sessions", "10.0.0.4");
    const changed = session("10.0.0.1", "u1", 1000, 5000);
    changed.groups = { map: [], directory: ["wifi"] };
    written = await a.updateSessions("sessions", [
      changed,
      session("10.0.0.2", "u2", 1000, 4000),
      session("10.0.0.3", "u3", 1000, 4000),
      session("10.0.0.4", "u4", 1000, 4000),
      session("10.0.0.5", "u5", 1000, 4000),
    ]);
    assert.deepEqual(
      [...written].toSorted(),
      [["10.0.0.1", 5000], ["10.0.0.2", 9000]],
    );
    assert.deepEqual(
      await b.getSession("sessions", "10.0.0.1"),
      withoutIp(changed),
    );
    assert.equal((await b.getSession("sessions", "10.0.0.2"))?.lastUsed, 9000);
    assert.equal((await b.getSession("sessions", "10.0.0.3"))?.opened, 2000);
    assert.equal(await b.getSession("sessions", "10.0.0.4"), undefined);
    assert.equal(await b.getSession("sessions", "10.0.0.5"), undefined);
    // A session stored without a last use gets one.
    await a.saveSession("sessions", session("10.0.0.6", "u6", 1000));
    written = await a.updateSessions("sessions", [
      session("10.0.0.6", "u6", 1000, 1234),
    ]);
    assert.deepEqual([...written], [["10.0.0.6", 1234]]);
    assert.deepEqual(
      await b.getSession("sessions", "10.0.0.6"),
      withoutIp(session("10.0.0.6", "u6", 1000, 1234)),
    );
  },
);

contract(
  "updateLastUses writes a last use only over its own session, keeps the later one, and every read sees it",
  async (site) => {
    const a = await site.open();
    const b = await site.open();
    for (let i = 1; i <= 4; i++) {
      await a.saveSession(
        "sessions",
        session(`10.0.0.${i}`, `u${i}`, 1000, 1000),
      );
    }
    await a.listSessions("sessions");
    await b.listSessions("sessions");
    // Gateway B used u2 later than A did.
    let written = await b.updateLastUses("sessions", [
      session("10.0.0.2", "u2", 1000, 9000),
    ]);
    assert.deepEqual([...written], [["10.0.0.2", 9000]]);
    // u3 logged in again (another login time), u4 logged out, u5 never was.
    await b.saveSession("sessions", session("10.0.0.3", "u3", 2000, 2000));
    await b.deleteSession("sessions", "10.0.0.4");
    const c = await site.open();
    await c.listSessions("sessions");
    written = await a.updateLastUses("sessions", [
      session("10.0.0.1", "u1", 1000, 5000),
      session("10.0.0.2", "u2", 1000, 4000),
      session("10.0.0.3", "u3", 1000, 4000),
      session("10.0.0.4", "u4", 1000, 4000),
      session("10.0.0.5", "u5", 1000, 4000),
    ]);
    // The gone and the replaced one may be answered as written (Deno KV
    // packs what A saw; it is never read for another session), never with
    // another last use; u5, never seen, is not.
    assert.deepEqual(
      [...written].filter(([ip]) => ip <= "10.0.0.2").toSorted(),
      [["10.0.0.1", 5000], ["10.0.0.2", 9000]],
    );
    for (const ip of ["10.0.0.3", "10.0.0.4"]) {
      assert.ok([undefined, 4000].includes(written.get(ip)), ip);
    }
    assert.equal(written.has("10.0.0.5"), false);
    assert.equal(await c.sessionsUnchanged("sessions"), false, "c is told");
    const fresh = await site.open();
    for (const reader of [b, fresh]) {
      assert.deepEqual(
        await reader.getSession("sessions", "10.0.0.1"),
        withoutIp(session("10.0.0.1", "u1", 1000, 5000)),
      );
      assert.equal(
        (await reader.getSession("sessions", "10.0.0.2"))?.lastUsed,
        9000,
      );
      // The old login's last use is not the new one's.
      assert.deepEqual(
        await reader.getSession("sessions", "10.0.0.3"),
        withoutIp(session("10.0.0.3", "u3", 2000, 2000)),
      );
      assert.equal(await reader.getSession("sessions", "10.0.0.4"), undefined);
      assert.equal(await reader.getSession("sessions", "10.0.0.5"), undefined);
    }
    assert.deepEqual(
      Object.fromEntries(
        (await fresh.listSessions("sessions")).map((s) => [s.ip, s.lastUsed]),
      ),
      { "10.0.0.1": 5000, "10.0.0.2": 9000, "10.0.0.3": 2000 },
    );
    // An idle session used since is not deleted as idle.
    const idle = (unusedSince: number) =>
      fresh.deleteSession("sessions", "10.0.0.1", {
        only: { user: "u1", opened: 1000, unusedSince },
      });
    assert.equal(await idle(4999), false);
    assert.equal(await idle(5000), true);
  },
);

for (const write of ["updateSessions", "updateLastUses"] as const) {
  contract(
    `${write} from two gateways at once keeps the later last use`,
    async (site) => {
      const a = await site.open();
      const b = await site.open();
      // Enough for Deno KV's packs of last uses to go in several writes
      // (256 packs, 48 a write), so that one read again after the other's
      // write is followed by more.
      const ips = Array.from(
        { length: 600 },
        (_, i) => `10.1.${i >> 8}.${i & 255}`,
      );
      for (const ip of ips) {
        await a.saveSession("sessions", session(ip, `u${ip}`, 1000, 1000));
      }
      // A used the even ones later, B the odd ones.
      const mine = (gateway: number) =>
        ips.map((ip, i) =>
          session(ip, `u${ip}`, 1000, i % 2 === gateway ? 8000 + i : 2000)
        );
      await a.listSessions("sessions");
      await b.listSessions("sessions");
      const [byA, byB] = await Promise.all([
        a[write]("sessions", mine(0)),
        b[write]("sessions", mine(1)),
      ]);
      // What was written answers at least what was asked; one not written
      // (changed meanwhile) is tried again at the next flush, as here.
      const rounds = [[byA, mine(0)], [byB, mine(1)]] as const;
      for (const [written, asked] of rounds) {
        for (const s of asked) {
          const now = written.get(s.ip);
          if (now !== undefined) assert.ok(now >= s.lastUsed!, s.ip);
        }
      }
      await a[write]("sessions", mine(0).filter((s) => !byA.has(s.ip)));
      await b[write]("sessions", mine(1).filter((s) => !byB.has(s.ip)));
      for (const s of await a.listSessions("sessions")) {
        assert.equal(s.lastUsed, 8000 + ips.indexOf(s.ip), s.ip);
      }
    },
  );
}

// -------------------------------------------------------------- quotas

contract("initLastReset: the first one wins for everybody", async (site) => {
  const a = await site.open();
  const b = await site.open();
  const [ra, rb] = await Promise.all([
    a.initLastReset("down", 1000),
    b.initLastReset("down", 2000),
  ]);
  assert.equal(ra, rb);
  assert.ok(ra === 1000 || ra === 2000);
  assert.equal(await a.initLastReset("down", 3000), ra);
  assert.equal(await b.initLastReset("other", 4000), 4000);
});

contract(
  "advanceLastReset moves forward only, once for the whole site",
  async (site) => {
    const a = await site.open();
    const b = await site.open();
    await a.initLastReset("down", 1000);
    assert.equal(await b.advanceLastReset("down", 500), 1000);
    // Two gateways see the same boundary: both answer it, it is written once.
    const [ra, rb] = await Promise.all([
      a.advanceLastReset("down", 2000),
      b.advanceLastReset("down", 2000),
    ]);
    assert.deepEqual([ra, rb], [2000, 2000]);
    // Racing different values: the later one stays.
    const answers = await Promise.all([
      a.advanceLastReset("down", 4000),
      b.advanceLastReset("down", 3000),
    ]);
    assert.equal(answers[0], 4000);
    assert.ok(answers[1] === 3000 || answers[1] === 4000);
    assert.equal(await a.initLastReset("down", 0), 4000);
    // None stored yet: it is set.
    assert.equal(await b.advanceLastReset("fresh", 7000), 7000);
  },
);

contract("addConsumption from two gateways sums exactly", async (site) => {
  const a = await site.open();
  const b = await site.open();
  const rounds = 20;
  await Promise.all([a, b].map(async (store, g) => {
    for (let i = 0; i < rounds; i++) {
      await store.addConsumption(
        "down",
        1000,
        new Map([["alice", 1000 + g], ["bob", 1], [`only${g}`, 5]]),
      );
    }
  }));
  const read = await a.readConsumption("down", 1000);
  assert.deepEqual(
    Object.fromEntries(read),
    {
      alice: rounds * 2001,
      bob: rounds * 2,
      only0: rounds * 5,
      only1: rounds * 5,
    },
  );
  // Another cycle and another manager are other counters.
  assert.deepEqual([...await a.readConsumption("down", 2000)], []);
  assert.deepEqual([...await a.readConsumption("up", 1000)], []);
});

contract(
  "10,000 users' deltas in one call, and reading some users",
  async (site) => {
    const a = await site.open();
    const deltas = new Map<string, number>();
    for (let i = 0; i < 10_000; i++) deltas.set(`user${i}@example.org`, i + 1);
    const t0 = performance.now();
    await a.addConsumption("down", 1000, deltas);
    const ms = performance.now() - t0;
    console.log(`  10,000 deltas written in ${ms.toFixed(0)} ms`);
    const b = await site.open();
    const all = await b.readConsumption("down", 1000);
    assert.equal(all.size, 10_000);
    assert.equal(all.get("user9999@example.org"), 10_000);
    const some = await b.readConsumption("down", 1000, [
      "user0@example.org",
      "user5000@example.org",
      "nobody",
    ]);
    assert.deepEqual(Object.fromEntries(some), {
      "user0@example.org": 1,
      "user5000@example.org": 5001,
    });
    assert.deepEqual([...await b.readConsumption("down", 1000, [])], []);
  },
);

contract("counters are exact far beyond 4 GiB (up to 2^53)", async (site) => {
  const a = await site.open();
  const big = 2 ** 52 + 3; // 4 PiB and 3 bytes
  await a.addConsumption("down", 1000, new Map([["heavy", big]]));
  await a.addConsumption("down", 1000, new Map([["heavy", big]]));
  assert.equal(
    (await a.readConsumption("down", 1000)).get("heavy"),
    2 ** 53 + 6,
  );
});

contract("setConsumption sets one counter; deltas add to it", async (site) => {
  const a = await site.open();
  const b = await site.open();
  await a.addConsumption("down", 1000, new Map([["alice", 500], ["bob", 7]]));
  await b.setConsumption("down", 1000, "alice", 0);
  await a.addConsumption("down", 1000, new Map([["alice", 3]]));
  await b.setConsumption("down", 1000, "carol", 42);
  assert.deepEqual(
    Object.fromEntries(await a.readConsumption("down", 1000)),
    { alice: 3, bob: 7, carol: 42 },
  );
});

contract(
  "readConsumption sees every write of another gateway, whatever this one read and wrote before",
  async (site) => {
    const a = await site.open();
    const b = await site.open();
    // Enough users that reading some of them reads them all (see kv_store.ts).
    const many = Array.from({ length: 300 }, (_, i) => `u${i}`);
    await a.addConsumption("down", 1000, new Map(many.map((u) => [u, 1])));
    const expected = new Map(many.map((u) => [u, 1]));
    const check = async (what: string) => {
      assert.deepEqual(
        Object.fromEntries(await a.readConsumption("down", 1000)),
        Object.fromEntries(expected),
        `${what}: all`,
      );
      const some = await a.readConsumption("down", 1000, many.slice(0, 250));
      assert.equal(some.size, 250, what);
      for (const [u, v] of some) {
        assert.equal(v, expected.get(u), `${what}: ${u}`);
      }
      assert.deepEqual(
        [...await a.readConsumption("down", 1000, ["u7", "nobody"])],
        [["u7", expected.get("u7")]],
        `${what}: one`,
      );
    };
    await check("after its own write");
    await b.addConsumption("down", 1000, new Map([["u7", 10], ["new", 5]]));
    expected.set("u7", 11).set("new", 5);
    await check("after another's deltas");
    // Its own write right after another's: the copy it had is not used.
    await b.setConsumption("down", 1000, "u8", 100);
    await a.addConsumption("down", 1000, new Map([["u8", 1], ["u9", 2]]));
    expected.set("u8", 101).set("u9", 3);
    await check("after another's set and its own deltas");
    await a.addConsumption("down", 1000, new Map([["u7", 1]]));
    await a.setConsumption("down", 1000, "u9", 0);
    expected.set("u7", 12).set("u9", 0);
    await check("after its own deltas and set only");
    // Another cycle's counters are not this one's.
    await b.addConsumption("down", 2000, new Map([["u7", 1000]]));
    await check("after another's write to another cycle");
    await a.deleteOtherCycles("down", 2000);
    assert.deepEqual(
      [...await a.readConsumption("down", 2000)],
      [["u7", 1000]],
    );
  },
);

contract(
  "countersUnchanged is never true after another gateway wrote a counter",
  async (site) => {
    const a = await site.open();
    const b = await site.open();
    await a.addConsumption("down", 1000, new Map([["alice", 1]]));
    const writes: [string, () => Promise<unknown>][] = [
      ["deltas", () => b.addConsumption("down", 1000, new Map([["bob", 2]]))],
      ["a set", () => b.setConsumption("down", 1000, "alice", 0)],
    ];
    for (const [what, write] of writes) {
      await a.readConsumption("down", 1000);
      await write();
      assert.equal(await a.countersUnchanged("down", 1000), false, what);
    }
    assert.equal(await a.countersUnchanged("down", 2000), false, "not read");
  },
);

contract(
  "countersUnchanged stays true through a store's own writes, so a lone gateway reads nothing back",
  async (site) => {
    const a = await site.open();
    await a.addConsumption("down", 1000, new Map([["alice", 1]]));
    assert.equal(await a.countersUnchanged("down", 1000), false, "not read");
    await a.readConsumption("down", 1000);
    assert.equal(await a.countersUnchanged("down", 1000), true, "just read");
    await a.addConsumption("down", 1000, new Map([["alice", 2], ["bob", 3]]));
    await a.setConsumption("down", 1000, "carol", 4);
    assert.equal(await a.countersUnchanged("down", 1000), true, "own writes");
    assert.deepEqual(
      Object.fromEntries(await a.readConsumption("down", 1000)),
      { alice: 3, bob: 3, carol: 4 },
    );
    // More users than one batch of a write.
    const many = new Map(
      Array.from({ length: 1200 }, (_, i) => [`m${i}`, i + 1] as const),
    );
    await a.addConsumption("down", 1000, many);
    assert.equal(await a.countersUnchanged("down", 1000), true, "a big write");
    assert.equal(await a.countersUnchanged("down", 2000), false, "other cycle");
    const b = await site.open();
    const seen = await b.readConsumption("down", 1000);
    assert.equal(seen.size, 1203);
    assert.deepEqual(
      [seen.get("alice"), seen.get("carol"), seen.get("m1199")],
      [3, 4, 1200],
    );
    // Once the other one wrote, the first must read again.
    await b.setConsumption("down", 1000, "alice", 0);
    assert.equal(await a.countersUnchanged("down", 1000), false, "b wrote");
    assert.equal((await a.readConsumption("down", 1000)).get("alice"), 0);
    assert.equal(await a.countersUnchanged("down", 1000), true, "read again");
  },
);

contract(
  "sessionsUnchanged is never true after another gateway wrote a session",
  async (site) => {
    const a = await site.open();
    const b = await site.open();
    await a.saveSession("sessions", session("10.0.0.1", "u1", 1000, 1000));
    await a.listSessions("sessions");
    const writes: [string, () => Promise<unknown>][] = [
      [
        "a login",
        () => b.saveSession("sessions", session("10.0.0.2", "u2", 1000, 1000)),
      ],
      [
        "a last use",
        () =>
          b.updateSessions("sessions", [session("10.0.0.1", "u1", 1000, 2000)]),
      ],
      ["a logout", () => b.deleteSession("sessions", "10.0.0.2")],
      ["a conditional delete", () =>
        b.deleteSession("sessions", "10.0.0.1", {
          only: { user: "u1", opened: 1000 },
        })],
    ];
    for (const [what, write] of writes) {
      await a.listSessions("sessions");
      await write();
      assert.equal(await a.sessionsUnchanged("sessions"), false, what);
    }
    // Another manager's sessions are not these.
    await a.listSessions("sessions");
    const before = await a.sessionsUnchanged("sessions");
    await b.saveSession("other", session("10.0.0.3", "u3", 1000, 1000));
    assert.equal(await a.sessionsUnchanged("sessions"), before);
  },
);

contract(
  "sessionsUnchanged stays true through a store's own writes, so a lone gateway's flush lists nothing",
  async (site) => {
    const a = await site.open();
    assert.equal(await a.sessionsUnchanged("sessions"), false, "never listed");
    await a.saveSession("sessions", session("10.0.0.1", "u1", 1000, 1000));
    await a.listSessions("sessions");
    assert.equal(await a.sessionsUnchanged("sessions"), true, "just listed");
    await a.saveSession("sessions", session("10.0.0.2", "u2", 1000, 1000), {
      deleteIp: "10.0.0.1",
    });
    const many = Array.from(
      { length: 250 },
      (_, i) => session(`10.0.2.${i}`, `m${i}`, 1000, 1000),
    );
    for (const m of many) await a.saveSession("sessions", m);
    // Written with the versionstamps it saw, 100 at a time.
    const written = await a.updateSessions(
      "sessions",
      many.map((m) => ({ ...m, lastUsed: 5000 })),
    );
    assert.equal(written.size, 250);
    await a.deleteSession("sessions", "10.0.0.2");
    // A conditional delete that deletes, and one that does not.
    assert.equal(
      await a.deleteSession("sessions", "10.0.2.0", {
        only: { user: "m0", opened: 1000 },
      }),
      true,
    );
    assert.equal(
      await a.deleteSession("sessions", "10.0.2.1", {
        only: { user: "someone else", opened: 1000 },
      }),
      false,
    );
    assert.equal(await a.sessionsUnchanged("sessions"), true, "its own writes");
    const b = await site.open();
    assert.equal(
      (await b.listSessions("sessions")).filter((s) => s.lastUsed === 5000)
        .length,
      249,
    );
    assert.equal(await b.getSession("sessions", "10.0.0.2"), undefined);
    assert.equal(await b.getSession("sessions", "10.0.2.0"), undefined);
    // Once the other one wrote, the first must list again.
    await b.saveSession("sessions", session("10.0.0.9", "u9", 1000, 1000));
    assert.equal(await a.sessionsUnchanged("sessions"), false, "b wrote");
    await a.listSessions("sessions");
    assert.equal(await a.sessionsUnchanged("sessions"), true, "listed again");
  },
);

contract(
  "deleteOtherCycles keeps only that cycle of that manager",
  async (site) => {
    const a = await site.open();
    for (const cycle of [1000, 2000, 3000]) {
      await a.addConsumption("down", cycle, new Map([["alice", cycle]]));
    }
    await a.setConsumption("down", 4000, "bob", 1);
    await a.addConsumption("up", 1000, new Map([["alice", 9]]));
    await a.deleteOtherCycles("down", 3000);
    for (const cycle of [1000, 2000, 4000]) {
      assert.deepEqual(
        [...await a.readConsumption("down", cycle)],
        [],
        `${cycle}`,
      );
    }
    assert.deepEqual([...await a.readConsumption("down", 3000)], [[
      "alice",
      3000,
    ]]);
    assert.deepEqual([...await a.readConsumption("up", 1000)], [["alice", 9]]);
    await a.deleteOtherCycles("down", 3000); // nothing left to delete
    await a.deleteOtherCycles("never", 1);
  },
);

contract(
  "grants add up atomically per manager, cycle and user, and go with their cycle",
  async (site) => {
    const a = await site.open();
    const b = await site.open();
    assert.equal(await a.addGrant("down", 1000, "alice", 500), 500);
    // Two gateways granting at once: every grant counts.
    const answers = await Promise.all(
      [a, b].flatMap((store) =>
        Array.from(
          { length: 10 },
          () => store.addGrant("down", 1000, "alice", 100),
        )
      ),
    );
    assert.equal(Math.max(...answers), 2500);
    assert.equal(await b.addGrant("down", 1000, "bob", 7), 7);
    assert.deepEqual(
      Object.fromEntries(await b.readGrants("down", 1000)),
      { alice: 2500, bob: 7 },
    );
    assert.deepEqual(
      Object.fromEntries(
        await a.readGrants("down", 1000, ["alice", "nobody"]),
      ),
      { alice: 2500 },
    );
    assert.deepEqual([...await a.readGrants("down", 1000, [])], []);
    // Another cycle, another manager: no grants. Grants are no consumption.
    assert.deepEqual([...await a.readGrants("down", 2000)], []);
    assert.deepEqual([...await a.readGrants("up", 1000)], []);
    assert.deepEqual([...await a.readConsumption("down", 1000)], []);
    // Exact far beyond 4 GiB: 4 PiB and 3 bytes, twice.
    const big = 2 ** 52 + 3;
    await a.addGrant("down", 1000, "heavy", big);
    assert.equal(await b.addGrant("down", 1000, "heavy", big), 2 ** 53 + 6);
    // The next cycle's reset deletes the old cycle's grants with its counters.
    await a.addGrant("down", 2000, "carol", 1);
    await a.addConsumption("down", 2000, new Map([["carol", 2]]));
    await a.deleteOtherCycles("down", 2000);
    assert.deepEqual([...await b.readGrants("down", 1000)], []);
    assert.deepEqual([...await b.readGrants("down", 2000)], [["carol", 1]]);
    assert.deepEqual([...await b.readConsumption("down", 2000)], [[
      "carol",
      2,
    ]]);
  },
);

// ------------------------------------------------------------- history

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** The start of the hour of now: Redis expires buckets by the real clock. */
const thisHour = () => Math.floor(Date.now() / HOUR) * HOUR;

function usageAt(hour: number, keep = { hours: 48, days: 400 }) {
  return {
    hour,
    day: Math.floor(hour / DAY) * DAY,
    keepHourMs: keep.hours * HOUR,
    keepDayMs: keep.days * DAY,
  };
}

contract(
  "usage history: deltas from two gateways add up per hour and per day",
  async (site) => {
    const a = await site.open();
    const b = await site.open();
    const h = thisHour();
    const rounds = 10;
    await Promise.all([a, b].map(async (store, g) => {
      for (let i = 0; i < rounds; i++) {
        await store.addUsage(
          "down",
          new Map([["alice", 100 + g], [`only${g}`, 1]]),
          usageAt(h),
        );
      }
    }));
    await a.addUsage("down", new Map([["alice", 7]]), usageAt(h - HOUR));
    await a.addUsage("up", new Map([["alice", 9]]), usageAt(h));
    const hours = await b.readUsage("down", {
      grain: "hour",
      from: h - 2 * HOUR,
      to: h + HOUR,
    });
    assert.deepEqual(hours, [
      { start: h - HOUR, user: "alice", bytes: 7 },
      { start: h, user: "alice", bytes: rounds * 201 },
      { start: h, user: "only0", bytes: rounds },
      { start: h, user: "only1", bytes: rounds },
    ]);
    // One user, and [from, to) bounds.
    assert.deepEqual(
      await b.readUsage("down", {
        grain: "hour",
        from: h - HOUR,
        to: h,
        user: "alice",
      }),
      [{ start: h - HOUR, user: "alice", bytes: 7 }],
    );
    assert.deepEqual(
      await b.readUsage("down", {
        grain: "hour",
        from: h,
        to: h + HOUR,
        user: "alice",
      }),
      [{ start: h, user: "alice", bytes: rounds * 201 }],
    );
    // The day's bucket holds both hours (they are in one UTC day here,
    // unless the test runs in the first hour of a day).
    const day = usageAt(h).day;
    const days = await a.readUsage("down", {
      grain: "day",
      from: day - DAY,
      to: day + DAY,
      user: "alice",
    });
    const total = days.reduce((n, e) => n + e.bytes, 0);
    assert.equal(total, rounds * 201 + 7);
    // Another manager is another history; an empty range reads nothing.
    assert.deepEqual(
      await a.readUsage("up", { grain: "hour", from: h, to: h + HOUR }),
      [{ start: h, user: "alice", bytes: 9 }],
    );
    assert.deepEqual(
      await a.readUsage("down", { grain: "hour", from: h, to: h }),
      [],
    );
    assert.deepEqual(
      await a.readUsage("none", { grain: "day", from: 0, to: h }),
      [],
    );
  },
);

contract(
  "usage history: buckets past their retention are gone after a newer bucket's write",
  async (site) => {
    const a = await site.open();
    const h = thisHour();
    // Redis expires by the real clock: every bucket here ends its
    // retention after now, until a later bucket is written.
    const keep = { hours: 2, days: 2 };
    const d1 = h + 2 * HOUR - 2 * DAY;
    await a.addUsage("down", new Map([["alice", 1], ["bob", 2]]), {
      ...usageAt(h - HOUR, keep),
      day: d1,
    });
    await a.addUsage("down", new Map([["alice", 10]]), {
      ...usageAt(h, keep),
      day: h - DAY,
    });
    const all = { from: 0, to: h + 10 * DAY };
    assert.equal(
      (await a.readUsage("down", { grain: "hour", ...all })).length,
      3,
    );
    assert.equal(
      (await a.readUsage("down", { grain: "day", ...all })).length,
      3,
    );
    // The next hour, and a day 2 days after the first: those are 2 h and
    // 2 d old then.
    await a.addUsage("down", new Map([["carol", 5]]), {
      ...usageAt(h + HOUR, keep),
      day: d1 + 2 * DAY,
    });
    const b = await site.open();
    assert.deepEqual(await b.readUsage("down", { grain: "hour", ...all }), [
      { start: h, user: "alice", bytes: 10 },
      { start: h + HOUR, user: "carol", bytes: 5 },
    ]);
    assert.deepEqual(
      await b.readUsage("down", { grain: "hour", ...all, user: "bob" }),
      [],
      "the user's own copy went too",
    );
    assert.deepEqual(await b.readUsage("down", { grain: "day", ...all }), [
      { start: h - DAY, user: "alice", bytes: 10 },
      { start: d1 + 2 * DAY, user: "carol", bytes: 5 },
    ]);
    // A grain kept 0 ms is not written.
    await a.addUsage("hoursOnly", new Map([["alice", 1]]), {
      ...usageAt(h),
      keepDayMs: 0,
    });
    assert.equal(
      (await a.readUsage("hoursOnly", { grain: "hour", ...all })).length,
      1,
    );
    assert.deepEqual(
      await a.readUsage("hoursOnly", { grain: "day", ...all }),
      [],
    );
  },
);

contract("usage history: 10,000 users' deltas in one write", async (site) => {
  const a = await site.open();
  const h = thisHour();
  const deltas = new Map<string, number>();
  for (let i = 0; i < 10_000; i++) deltas.set(`user${i}@example.org`, i + 1);
  const t0 = performance.now();
  await a.addUsage("down", deltas, usageAt(h));
  console.log(
    `  10,000 users' history written in ${
      (performance.now() - t0).toFixed(0)
    } ms`,
  );
  const hour = await a.readUsage("down", {
    grain: "hour",
    from: h,
    to: h + HOUR,
  });
  assert.equal(hour.length, 10_000);
  assert.equal(
    hour.reduce((n, e) => n + e.bytes, 0),
    (10_000 * 10_001) / 2,
  );
  assert.deepEqual(
    await a.readUsage("down", {
      grain: "day",
      from: 0,
      to: h + DAY,
      user: "user9999@example.org",
    }),
    [{ start: usageAt(h).day, user: "user9999@example.org", bytes: 10_000 }],
  );
});

contract("status is ok while the store works", async (site) => {
  const a = await site.open();
  await a.signingKey();
  assert.deepEqual(a.status(), { ok: true });
});

// ------------------------------------------------------- Deno KV alone

/** A store on a new KV file, that file opened raw beside it, and a lister. */
/** A pack of others than the test's users, 1 byte each, filled to its limit. */
function fullPack(pack: number): Map<string, number> {
  const others = new Map<string, number>();
  let bytes = 16;
  for (let i = 0; bytes < PACK_BYTES; i++) {
    const name = `filler-${i}`;
    if (packOf(name) !== pack) continue;
    others.set(name, 1);
    bytes += name.length + 16;
  }
  return others;
}

async function kvAlone() {
  const dir = await Deno.makeTempDir({ prefix: "pmproxy-state-" });
  const path = join(dir, "state.kv");
  const store = await KvStateStore.open(path);
  const raw = await Deno.openKv(path);
  return {
    path,
    store,
    raw,
    keysUnder: async (prefix: Deno.KvKey) => {
      const out: Deno.KvKey[] = [];
      for await (const e of raw.list({ prefix })) out.push(e.key);
      return out;
    },
    async [Symbol.asyncDispose]() {
      raw.close();
      await store.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test(
  "state store (Deno KV): the history packs its users' bytes a value per pack and bucket, and still reads and forgets the keys older versions wrote",
  async () => {
    await using kv = await kvAlone();
    const { store, raw, keysUnder } = kv;
    const h = thisHour();
    const day = usageAt(h).day;
    assert.notEqual(packOf("alice"), packOf("bob"));
    // What a pmproxy before 2026-12-02 left: an older hour's bucket with
    // each delta twice (by time, by user) and no index of its start.
    const old = h - 3 * HOUR;
    await raw.atomic()
      .sum(["usage", "down", "hour", old, "alice"], 4n)
      .sum(["usage", "down", "hourByUser", "alice", old], 4n)
      .commit();
    // What one of 2026-12-02 left in this hour: a counter per user.
    await raw.atomic()
      .sum(["usage", "down", "hour", h, "alice"], 100n)
      .set(["usage", "down", "hourStarts", h], h)
      .commit();
    await store.addUsage(
      "down",
      new Map([["alice", 7], ["bob", 2]]),
      usageAt(h),
    );
    await store.addUsage("down", new Map([["alice", 1]]), usageAt(h));
    const packs = [packOf("alice"), packOf("bob")].sort((x, y) => x - y);
    assert.deepEqual(
      await keysUnder(["usage", "down", "hourPacks", h]),
      packs.map((p) => ["usage", "down", "hourPacks", h, p]),
    );
    const alicePack = await raw.get([
      "usage",
      "down",
      "dayPacks",
      day,
      packOf("alice"),
    ]);
    assert.deepEqual(alicePack.value, new Map([["alice", 8]]));
    assert.deepEqual(
      await keysUnder(["usage", "down", "hour", h]),
      [["usage", "down", "hour", h, "alice"]],
      "no counter written, the old one kept",
    );
    assert.deepEqual(
      (await keysUnder(["usage", "down"])).filter((k) =>
        String(k[2]).endsWith("Starts")
      ),
      [
        ["usage", "down", "dayStarts", day],
        ["usage", "down", "hourStarts", h],
      ],
      "each bucket's start once",
    );
    assert.deepEqual(
      await keysUnder(["usage", "down", "hourByUser"]),
      [["usage", "down", "hourByUser", "alice", old]],
      "no key by user written",
    );
    // One user's history: the old bucket (found through the key by user)
    // and the new one (through the index), pack and counter added up.
    const all = { from: 0, to: h + DAY };
    assert.deepEqual(
      await store.readUsage("down", { grain: "hour", ...all, user: "alice" }),
      [
        { start: old, user: "alice", bytes: 4 },
        { start: h, user: "alice", bytes: 108 },
      ],
    );
    assert.deepEqual(
      await store.readUsage("down", { grain: "hour", ...all }),
      [
        { start: old, user: "alice", bytes: 4 },
        { start: h, user: "alice", bytes: 108 },
        { start: h, user: "bob", bytes: 2 },
      ],
    );
    assert.deepEqual(
      await store.readUsage("down", { grain: "day", ...all, user: "carol" }),
      [],
    );
    // Kept 2 hours: the next hour's write forgets the old bucket, its key
    // by user and the index's start of it.
    await store.addUsage("down", new Map([["bob", 5]]), {
      ...usageAt(h + HOUR, { hours: 2, days: 400 }),
    });
    assert.deepEqual(await keysUnder(["usage", "down", "hourByUser"]), []);
    assert.deepEqual(await keysUnder(["usage", "down", "hour", old]), []);
    assert.deepEqual(await keysUnder(["usage", "down", "hourStarts"]), [
      ["usage", "down", "hourStarts", h],
      ["usage", "down", "hourStarts", h + HOUR],
    ]);
    assert.deepEqual(
      await store.readUsage("down", { grain: "hour", ...all, user: "bob" }),
      [
        { start: h, user: "bob", bytes: 2 },
        { start: h + HOUR, user: "bob", bytes: 5 },
      ],
    );
    // Kept 1 hour: the hour after forgets this hour's packs and counter.
    await store.addUsage("down", new Map([["bob", 1]]), {
      ...usageAt(h + 2 * HOUR, { hours: 1, days: 400 }),
    });
    assert.deepEqual(await keysUnder(["usage", "down", "hourPacks", h]), []);
    assert.deepEqual(await keysUnder(["usage", "down", "hour", h]), []);
    assert.deepEqual(
      (await store.readUsage("down", { grain: "hour", ...all })).map((e) =>
        e.start
      ),
      [h + 2 * HOUR],
    );
  },
);

Deno.test(
  "state store (Deno KV): a user whose pack is full gets a counter of their own, read with the pack",
  async () => {
    await using kv = await kvAlone();
    const { store, raw, keysUnder } = kv;
    const h = thisHour();
    const pack = packOf("carol");
    // Fill carol's pack of this hour with others to its limit.
    const others = fullPack(pack);
    const key = ["usage", "down", "hourPacks", h, pack];
    await raw.set(key, others);
    const later = new Map([["carol", 30], [[...others.keys()][0], 2]]);
    await store.addUsage("down", later, usageAt(h));
    await store.addUsage("down", later, usageAt(h));
    assert.deepEqual(await keysUnder(["usage", "down", "hour", h]), [
      ["usage", "down", "hour", h, "carol"],
    ]);
    const packed = (await raw.get<Map<string, number>>(key)).value!;
    assert.equal(packed.size, others.size, "nobody added to the full pack");
    assert.equal(packed.get([...others.keys()][0]), 5, "but its users add up");
    assert.ok((await raw.get(key)).versionstamp, "the pack is stored");
    // One of her packs is full: her bytes of both grains went to counters,
    // each counted once.
    assert.deepEqual(
      await store.readUsage("down", {
        grain: "hour",
        from: h,
        to: h + 1,
        user: "carol",
      }),
      [{ start: h, user: "carol", bytes: 60 }],
    );
    assert.deepEqual(
      await store.readUsage("down", {
        grain: "day",
        from: 0,
        to: h + DAY,
        user: "carol",
      }),
      [{ start: usageAt(h).day, user: "carol", bytes: 60 }],
    );
    const hour = await store.readUsage("down", {
      grain: "hour",
      from: h,
      to: h + 1,
    });
    assert.equal(hour.length, others.size + 1);
    assert.deepEqual(hour.filter((e) => e.user === "carol"), [
      { start: h, user: "carol", bytes: 60 },
    ]);
  },
);

Deno.test(
  "state store (Deno KV): two gateways writing the same packs at once lose no byte",
  async () => {
    await using kv = await kvAlone();
    const other = await KvStateStore.open(kv.path);
    try {
      const h = thisHour();
      const deltas = new Map<string, number>();
      for (let i = 0; i < 600; i++) deltas.set(`u${i}`, i + 1);
      const rounds = (store: StateStore) => async () => {
        for (let r = 0; r < 10; r++) {
          await store.addUsage("down", deltas, usageAt(h));
        }
      };
      await Promise.all([rounds(kv.store)(), rounds(other)()]);
      const hour = await other.readUsage("down", {
        grain: "hour",
        from: h,
        to: h + 1,
      });
      assert.equal(hour.length, 600);
      for (const e of hour) {
        assert.equal(e.bytes, 20 * deltas.get(e.user)!, e.user);
      }
    } finally {
      await other.close();
    }
  },
);

Deno.test(
  "state store (Deno KV): the counters pack their users' bytes a value per pack, and still read the counters older versions wrote",
  async () => {
    await using kv = await kvAlone();
    const { store, raw, keysUnder } = kv;
    assert.notEqual(packOf("alice"), packOf("bob"));
    // What a pmproxy before 2026-12-04 left: a counter per user.
    await raw.set(
      ["dwnConsR", "down", "cons", 1000, "alice"],
      new Deno.KvU64(100n),
    );
    await store.addConsumption(
      "down",
      1000,
      new Map([["alice", 7], ["bob", 2]]),
    );
    await store.addConsumption("down", 1000, new Map([["alice", 1]]));
    const packs = [packOf("alice"), packOf("bob")].sort((x, y) => x - y);
    assert.deepEqual(
      await keysUnder(["dwnConsR", "down", "consPacks", 1000]),
      packs.map((p) => ["dwnConsR", "down", "consPacks", 1000, p]),
    );
    assert.deepEqual(
      (await raw.get(["dwnConsR", "down", "consPacks", 1000, packOf("alice")]))
        .value,
      new Map([["alice", 8]]),
    );
    assert.deepEqual(
      await keysUnder(["dwnConsR", "down", "cons", 1000]),
      [["dwnConsR", "down", "cons", 1000, "alice"]],
      "no counter written, the old one kept",
    );
    // Another gateway reads the pack and the old counter added up.
    const other = await KvStateStore.open(kv.path);
    try {
      assert.deepEqual(
        Object.fromEntries(await other.readConsumption("down", 1000)),
        { alice: 108, bob: 2 },
      );
      assert.deepEqual(
        [...await other.readConsumption("down", 1000, ["alice", "nobody"])],
        [["alice", 108]],
      );
      // A set takes the user out of the pack, into a counter of their own.
      await other.setConsumption("down", 1000, "alice", 5);
      assert.deepEqual(
        (await raw.get([
          "dwnConsR",
          "down",
          "consPacks",
          1000,
          packOf("alice"),
        ]))
          .versionstamp,
        null,
        "the pack had only her: gone",
      );
      await store.addConsumption("down", 1000, new Map([["alice", 1]]));
      assert.deepEqual(
        Object.fromEntries(await store.readConsumption("down", 1000)),
        { alice: 6, bob: 2 },
      );
      assert.deepEqual(
        [...await other.readConsumption("down", 1000, ["alice"])],
        [["alice", 6]],
      );
    } finally {
      await other.close();
    }
    // Another cycle's packs go with their cycle.
    await store.addConsumption("down", 2000, new Map([["bob", 1]]));
    await store.deleteOtherCycles("down", 2000);
    assert.deepEqual(
      await keysUnder(["dwnConsR", "down", "consPacks", 1000]),
      [],
    );
    assert.deepEqual(await keysUnder(["dwnConsR", "down", "cons", 1000]), []);
    assert.deepEqual(
      [...await store.readConsumption("down", 2000)],
      [["bob", 1]],
    );
  },
);

Deno.test(
  "state store (Deno KV): a user whose counters' pack is full gets a counter of their own, read with the pack",
  async () => {
    await using kv = await kvAlone();
    const { store, raw, keysUnder } = kv;
    const pack = packOf("carol");
    const others = fullPack(pack);
    const key = ["dwnConsR", "down", "consPacks", 1000, pack];
    await raw.set(key, others);
    const filler = [...others.keys()][0];
    const later = new Map([["carol", 30], [filler, 2]]);
    // Read first: the copy stays good through both writes.
    await store.readConsumption("down", 1000);
    await store.addConsumption("down", 1000, later);
    await store.addConsumption("down", 1000, later);
    assert.equal(await store.countersUnchanged("down", 1000), true);
    assert.deepEqual(await keysUnder(["dwnConsR", "down", "cons", 1000]), [
      ["dwnConsR", "down", "cons", 1000, "carol"],
    ]);
    const packed = (await raw.get<Map<string, number>>(key)).value!;
    assert.equal(packed.size, others.size, "nobody added to the full pack");
    assert.equal(packed.get(filler), 5, "but its users add up");
    const fresh = await KvStateStore.open(kv.path);
    try {
      for (const s of [store, fresh]) {
        const seen = await s.readConsumption("down", 1000);
        assert.equal(seen.get("carol"), 60);
        assert.equal(seen.get(filler), 5);
        assert.equal(seen.size, others.size + 1);
      }
    } finally {
      await fresh.close();
    }
  },
);

Deno.test(
  "state store (Deno KV): two gateways adding to the same counters' packs at once lose no byte",
  async () => {
    await using kv = await kvAlone();
    const other = await KvStateStore.open(kv.path);
    try {
      const deltas = new Map<string, number>();
      for (let i = 0; i < 600; i++) deltas.set(`u${i}`, i + 1);
      // Each keeps a copy, as a gateway does; the other's writes spoil it.
      await kv.store.readConsumption("down", 1000);
      await other.readConsumption("down", 1000);
      const rounds = (store: StateStore) => async () => {
        for (let r = 0; r < 10; r++) {
          await store.addConsumption("down", 1000, deltas);
          if (r === 4) await store.setConsumption("down", 1000, "u0", 0);
        }
      };
      await Promise.all([rounds(kv.store)(), rounds(other)()]);
      for (const s of [kv.store, other]) {
        const seen = await s.readConsumption("down", 1000);
        assert.equal(seen.size, 600);
        for (const [u, d] of deltas) {
          if (u === "u0") continue;
          assert.equal(seen.get(u), 20 * d, u);
        }
        // Set to 0 by each after its 5th round: at most the rounds after
        // the later set are left.
        assert.ok(seen.get("u0")! <= 10, `u0: ${seen.get("u0")}`);
      }
    } finally {
      await other.close();
    }
  },
);

// --------------------------------------------------------- Redis alone

function redisTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name: `state store (Redis): ${name}`, ignore: !!missing, fn });
}

redisTest(
  "sessionsUnchanged is false once the writes counter is gone or moved by a hand",
  () =>
    redisBackend.with(async (site) => {
      const redis = site.redis!;
      const a = await site.open();
      const key = "pmproxy:sessionIPM:sessions:writes";
      await a.saveSession("sessions", session("10.0.0.1", "u1", 1000, 1000));
      await a.listSessions("sessions");
      assert.equal(await a.sessionsUnchanged("sessions"), true);
      assert.equal(await redis.cli("GET", key), "1\n");
      await redis.cli("DEL", key);
      assert.equal(await a.sessionsUnchanged("sessions"), false, "deleted");
      await a.listSessions("sessions");
      assert.equal(await a.sessionsUnchanged("sessions"), false, "no counter");
      // A write of its own starts a counter it did not list at: still false.
      await a.saveSession("sessions", session("10.0.0.2", "u2", 1000, 1000));
      assert.equal(await a.sessionsUnchanged("sessions"), false, "unlisted");
      await a.listSessions("sessions");
      assert.equal(await a.sessionsUnchanged("sessions"), true, "listed");
      await redis.cli("INCR", key);
      assert.equal(await a.sessionsUnchanged("sessions"), false, "moved");
      // Its next own write answers two past what it knew: not in step.
      await a.saveSession("sessions", session("10.0.0.3", "u3", 1000, 1000));
      assert.equal(await a.sessionsUnchanged("sessions"), false, "own write");
    }),
);

redisTest(
  "usage history: each bucket's hash expires at the end of its retention",
  async () => {
    await using redis = await startRedis();
    const a = await RedisStateStore.open(redis.url);
    try {
      const h = thisHour();
      await a.addUsage("down", new Map([["alice", 1]]), usageAt(h));
      const ttl = async (key: string) => Number(await redis.cli("PTTL", key));
      const hourLeft = h + 48 * HOUR - Date.now();
      const hourTtl = await ttl(`pmproxy:usage:down:hour:${h}`);
      assert.ok(Math.abs(hourTtl - hourLeft) < 5000, `${hourTtl}`);
      const dayLeft = usageAt(h).day + 400 * DAY - Date.now();
      const dayTtl = await ttl(`pmproxy:usage:down:day:${usageAt(h).day}`);
      assert.ok(Math.abs(dayTtl - dayLeft) < 5000, `${dayTtl}`);
      // The indexes expire with their latest bucket.
      assert.ok(await ttl("pmproxy:usage:down:hours") > 0);
      assert.ok(await ttl("pmproxy:usage:down:days") > 0);
    } finally {
      await a.close();
    }
  },
);

redisTest(
  "a counter that is not an integer leaves that user unwritten, and the users of the other batches are written",
  async () => {
    await using redis = await startRedis();
    const a = await RedisStateStore.open(redis.url);
    try {
      // 1,200 users: three batches; user 700 (the second) is broken.
      const deltas = new Map<string, number>();
      for (let i = 0; i < 1200; i++) deltas.set(`u${i}`, 10 + i);
      await redis.cli(
        "HSET",
        "pmproxy:dwnConsR:down:cons:1000",
        "u700",
        "many",
      );
      const failed = await a.addConsumption("down", 1000, deltas).then(
        () => assert.fail("a broken counter was added to"),
        (e) => e,
      );
      assert.ok(failed instanceof StoreWriteError);
      // u700 and the third batch (u1000 on) were not written; the rest were.
      const unwritten = failed.unwritten as Map<string, number>;
      assert.deepEqual(
        [...unwritten.keys()],
        ["u700", ...[...deltas.keys()].slice(1000)],
      );
      assert.equal(unwritten.get("u700"), 710);
      const stored = await a.readConsumption("down", 1000);
      assert.equal(stored.get("u0"), 10);
      assert.equal(stored.get("u999"), 1009);
      assert.equal(stored.has("u1000"), false);
      assert.match(
        failed.message,
        /the counters of 1 of 500 users could not be added to/,
      );

      // The same in the usage history's day bucket.
      const h = thisHour();
      const at = usageAt(h);
      await redis.cli("HSET", `pmproxy:usage:down:day:${at.day}`, "u3", "x");
      const history = await a.addUsage("down", deltas, at).then(
        () => assert.fail("a broken bucket was added to"),
        (e) => e,
      );
      assert.ok(history instanceof StoreWriteError);
      assert.deepEqual(
        [...(history.unwritten as Map<string, number>).keys()],
        ["u3", ...[...deltas.keys()].slice(500)],
      );
      const rows = await a.readUsage("down", {
        grain: "hour",
        from: h,
        to: h + HOUR,
      });
      assert.equal(rows.find((r) => r.user === "u4")?.bytes, 14);
      assert.equal(rows.find((r) => r.user === "u600"), undefined);
    } finally {
      await a.close();
    }
  },
);

redisTest(
  "changes are announced to the other store objects, not to their sender",
  async () => {
    await using redis = await startRedis();
    const a = await RedisStateStore.open(redis.url);
    const b = await RedisStateStore.open(redis.url);
    try {
      assert.equal(a.announcesChanges, true);
      const atA: StateChange[] = [];
      const atB: StateChange[] = [];
      a.subscribe((c) => atA.push(c));
      const stopB = b.subscribe((c) => atB.push(c));
      await a.publish({ kind: "session", manager: "sessions", ip: "10.0.0.5" });
      await b.publish({ kind: "consumption", manager: "down", user: "alice" });
      await b.publish({ kind: "grant", manager: "down", user: "bob" });
      await waitFor("B hears A", () => atB.length === 1);
      await waitFor("A hears B", () => atA.length === 2);
      assert.deepEqual(atB, [
        { kind: "session", manager: "sessions", ip: "10.0.0.5" },
      ]);
      assert.deepEqual(atA, [
        { kind: "consumption", manager: "down", user: "alice" },
        { kind: "grant", manager: "down", user: "bob" },
      ]);
      // Messages that are not changes (another program on the channel).
      await redis.cli("PUBLISH", "pmproxy:changes", "not json");
      await redis.cli("PUBLISH", "pmproxy:changes", '{"change":{"kind":"x"}}');
      stopB();
      await a.publish({ kind: "session", manager: "sessions", ip: "10.0.0.6" });
      await new Promise((r) => setTimeout(r, 150));
      assert.equal(atB.length, 1);
      assert.equal(atA.length, 2);
    } finally {
      await a.close();
      await b.close();
    }
  },
);

redisTest(
  "a lost subscription is followed by a resync when it is back",
  async () => {
    await using redis = await startRedis();
    const a = await RedisStateStore.open(redis.url, { warn: () => {} });
    const b = await RedisStateStore.open(redis.url, { warn: () => {} });
    try {
      const atB: StateChange[] = [];
      b.subscribe((c) => atB.push(c));
      // Drops the subscribers' connections only; the announcement made while
      // B reconnects is lost, so B must be told to read everything again.
      await redis.cli("CLIENT", "KILL", "TYPE", "pubsub");
      await a.publish({ kind: "session", manager: "sessions", ip: "10.0.0.5" });
      await waitFor(
        "B is told to resync",
        () => atB.some((c) => c.kind === "resync"),
        3000,
      );
      await a.publish({ kind: "session", manager: "sessions", ip: "10.0.0.6" });
      await waitFor(
        "B hears A again",
        () => atB.some((c) => c.kind === "session" && c.ip === "10.0.0.6"),
      );
    } finally {
      await a.close();
      await b.close();
    }
  },
);

redisTest(
  "a change announced before anybody listened gives the first listener a resync",
  async () => {
    await using redis = await startRedis();
    const a = await RedisStateStore.open(redis.url);
    const b = await RedisStateStore.open(redis.url);
    try {
      await a.publish({ kind: "session", manager: "sessions", ip: "10.0.0.5" });
      await new Promise((r) => setTimeout(r, 100));
      const atB: StateChange[] = [];
      b.subscribe((c) => atB.push(c));
      await waitFor("B resyncs", () => atB.length > 0);
      assert.deepEqual(atB, [{ kind: "resync" }]);
    } finally {
      await a.close();
      await b.close();
    }
  },
);

redisTest(
  "an outage: calls fail fast and name the store without its password; it comes back by itself",
  async () => {
    const password = "pa:ss@w/rd%1";
    await using redis = await startRedis({ password });
    const warnings: string[] = [];
    const a = await RedisStateStore.open(redis.url, {
      warn: (m) => warnings.push(m),
    });
    const b = await RedisStateStore.open(redis.url, { warn: () => {} });
    try {
      const encoded = encodeURIComponent(password);
      const secretFree = (text: string) => {
        assert.ok(!text.includes(password), text);
        assert.ok(!text.includes(encoded), text);
        assert.ok(!text.includes("pa:ss"), text);
      };
      assert.equal(a.description, `Redis at redis://127.0.0.1:${redis.port}/0`);
      const atA: StateChange[] = [];
      a.subscribe((c) => atA.push(c));
      await a.addConsumption("down", 1000, new Map([["alice", 10]]));

      await redis.stop();
      // Every call fails within 2 s, with an error naming the store.
      const calls: [string, () => Promise<unknown>][] = [
        ["readConsumption", () => a.readConsumption("down", 1000)],
        ["signingKey", () => a.signingKey()],
        ["listSessions", () => a.listSessions("sessions")],
        [
          "saveSession",
          () => a.saveSession("sessions", session("10.0.0.5", "alice", 1, 1)),
        ],
        ["deleteSession", () =>
          a.deleteSession("sessions", "10.0.0.5", {
            only: { user: "alice", opened: 1 },
          })],
        ["advanceLastReset", () => a.advanceLastReset("down", 2000)],
        [
          "publish",
          () => a.publish({ kind: "session", manager: "s", ip: "10.0.0.5" }),
        ],
      ];
      for (const [name, call] of calls) {
        const t0 = performance.now();
        const error = await call().then(
          () => assert.fail(`${name} worked with Redis stopped`),
          (e) => e as Error,
        );
        const ms = performance.now() - t0;
        assert.ok(ms < 2000, `${name} took ${ms} ms`);
        assert.ok(error instanceof Error);
        assert.match(
          error.message,
          new RegExp(`Redis at redis://127\\.0\\.0\\.1:${redis.port}/0`),
        );
        secretFree(error.message);
      }
      // A flush that fails keeps every delta.
      const deltas = new Map([["alice", 5], ["bob", 6]]);
      const failed = await a.addConsumption("down", 1000, deltas).then(
        () => assert.fail("addConsumption worked with Redis stopped"),
        (e) => e,
      );
      assert.ok(failed instanceof StoreWriteError);
      assert.deepEqual(failed.unwritten, deltas);
      secretFree(failed.message);
      const history = await a.addUsage("down", deltas, {
        hour: 0,
        day: 0,
        keepHourMs: 1,
        keepDayMs: 1,
      }).then(
        () => assert.fail("addUsage worked with Redis stopped"),
        (e) => e,
      );
      assert.ok(history instanceof StoreWriteError);
      assert.deepEqual(history.unwritten, deltas);
      const status = a.status();
      assert.equal(status.ok, false);
      assert.match(status.problem ?? "", /Redis at redis:\/\/127\.0\.0\.1/);
      secretFree(status.problem ?? "");
      // Told once, however many calls failed.
      assert.equal(warnings.length, 1, warnings.join("\n"));
      assert.match(warnings[0], /state store \(Redis at redis:\/\/127/);
      secretFree(warnings[0]);

      await redis.start();
      await waitFor("status ok again", () => a.status().ok, 3000);
      assert.equal(warnings.length, 2, warnings.join("\n"));
      assert.match(warnings[1], /works again/);
      // The listener was told it may have missed changes.
      await waitFor(
        "a resync after the reconnect",
        () => atA.some((c) => c.kind === "resync"),
      );
      // The server came back empty (no persistence): the deltas kept are
      // written now, and subscriptions work again.
      await waitFor("B reconnected", async () => {
        try {
          await b.readConsumption("down", 1000);
          return true;
        } catch {
          return false;
        }
      }, 3000);
      await a.addConsumption(
        "down",
        1000,
        failed.unwritten as Map<string, number>,
      );
      assert.deepEqual(
        Object.fromEntries(await b.readConsumption("down", 1000)),
        { alice: 5, bob: 6 },
      );
      await b.publish({ kind: "consumption", manager: "down", user: "bob" });
      await waitFor(
        "A hears B after the outage",
        () => atA.some((c) => c.kind === "consumption"),
      );
      for (const w of warnings) secretFree(w);
    } finally {
      await a.close();
      await b.close();
    }
  },
);

redisTest(
  "open: no server, a wrong password, a bad URL: clear errors without the password",
  async () => {
    await using redis = await startRedis({ password: "right-one" });
    const port = (() => {
      const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const p = (l.addr as Deno.NetAddr).port;
      l.close();
      return p;
    })();
    const t0 = performance.now();
    await assert.rejects(
      () =>
        RedisStateStore.open(`redis://:hunter2@127.0.0.1:${port}/0`, {
          openTimeoutMs: 1000,
        }),
      (e: Error) => {
        assert.match(
          e.message,
          new RegExp(
            `cannot connect to the state store, Redis at redis://127\\.0\\.0\\.1:${port}/0: .*ECONNREFUSED`,
          ),
        );
        assert.ok(!e.message.includes("hunter2"), e.message);
        return true;
      },
    );
    assert.ok(performance.now() - t0 < 3000);
    await assert.rejects(
      () =>
        RedisStateStore.open(`redis://:wrong-one@127.0.0.1:${redis.port}/0`, {
          openTimeoutMs: 1000,
        }),
      (e: Error) => {
        assert.match(e.message, /WRONGPASS|invalid password|NOAUTH/i);
        assert.ok(!e.message.includes("wrong-one"), e.message);
        return true;
      },
    );
    for (
      const [url, problem] of [
        ["redis://:s3cr3t@127.0.0.1:6379/zero", /not a database number/],
        [
          "redis://:s3cr3t@127.0.0.1:6379/0?timeout=1",
          /unknown parameter "timeout"/,
        ],
        [
          "redis://:s3cr3t@127.0.0.1:6379/0?ca=/x.pem",
          /rediss:\/\/ \(TLS\) only/,
        ],
        ["redis://:s3cr3t@:6379/0", /no host|not a URL/],
      ] as const
    ) {
      assert.throws(() => parseRedisUrl(url), (e: Error) => {
        assert.match(e.message, problem);
        assert.ok(!e.message.includes("s3cr3t"), e.message);
        return true;
      });
    }
    assert.throws(
      () =>
        stateConfigFrom({ url: "redsi://u:s3cr3t@h:6379/0" }, {
          file: "server.toml",
          configDir: "/etc/pmproxy",
        }),
      (e: Error) => {
        assert.match(e.message, /the scheme redsi: is not a state store/);
        assert.ok(!e.message.includes("s3cr3t"), e.message);
        return true;
      },
    );
    const parsed = parseRedisUrl(
      "rediss://ops:p%40ss@[::1]:6380/3?ca=/etc/ca.pem",
    );
    assert.deepEqual(parsed, {
      tls: true,
      host: "::1",
      port: 6380,
      db: 3,
      username: "ops",
      password: "p@ss",
      caFile: "/etc/ca.pem",
      safe: "rediss://[::1]:6380/3?ca=%2Fetc%2Fca.pem",
    });
  },
);

redisTest(
  "openStateStore opens redis:// URLs on Redis, in the database the URL names",
  async () => {
    await using redis = await startRedis({ password: "pw-in-url" });
    const store = await openStateStore(redis.url.replace(/\/0$/, "/2"));
    try {
      assert.ok(store instanceof RedisStateStore);
      assert.equal(
        store.description,
        `Redis at redis://127.0.0.1:${redis.port}/2`,
      );
      await store.initLastReset("down", 1234);
      assert.equal(
        (await redis.cli("-n", "2", "GET", "pmproxy:dwnConsR:down:lastReset"))
          .trim(),
        "1234",
      );
      assert.equal((await redis.cli("-n", "0", "DBSIZE")).trim(), "0");
    } finally {
      await store.close();
    }
  },
);

redisTest(
  "rediss:// with the server's CA works; without it the certificate is refused",
  async () => {
    await using redis = await startRedis({ tls: true });
    assert.match(redis.url, /^rediss:\/\//);
    const store = await openStateStore(redis.url);
    try {
      assert.match(
        store.description,
        /^Redis at rediss:\/\/127\.0\.0\.1:\d+\/0\?ca=/,
      );
      assert.equal((await store.signingKey()).length, 32);
    } finally {
      await store.close();
    }
    await assert.rejects(
      () =>
        RedisStateStore.open(redis.url.replace(/\?ca=.*$/, ""), {
          openTimeoutMs: 1000,
        }),
      /cannot connect to the state store.*certificate/,
    );
  },
);

contract(
  "failed logins are counted by two gateways together, forgotten on success and after forgetMs",
  async ({ open }) => {
    const a = await open();
    const b = await open();
    assert.equal(await a.loginFailures("addr:10.0.0.5"), undefined);
    const t0 = Date.parse("2026-03-02T10:00:00Z");
    assert.deepEqual(
      await a.recordLoginFailure("addr:10.0.0.5", {
        now: t0,
        forgetMs: 60_000,
      }),
      { count: 1, last: t0 },
    );
    // Two gateways counting at once lose no failure.
    const both = await Promise.all([
      a.recordLoginFailure("addr:10.0.0.5", { now: t0 + 1, forgetMs: 60_000 }),
      b.recordLoginFailure("addr:10.0.0.5", { now: t0 + 2, forgetMs: 60_000 }),
    ]);
    assert.deepEqual(both.map((f) => f.count).sort(), [2, 3]);
    assert.equal((await b.loginFailures("addr:10.0.0.5"))?.count, 3);
    // Another key is another count.
    assert.equal(await b.loginFailures("user:alice"), undefined);
    await b.clearLoginFailures("addr:10.0.0.5");
    assert.equal(await a.loginFailures("addr:10.0.0.5"), undefined);
    // Forgotten on their own after forgetMs (the store expires them).
    await a.recordLoginFailure("user:alice", { now: t0, forgetMs: 300 });
    assert.equal((await a.loginFailures("user:alice"))?.count, 1);
    await waitFor(
      "forgotten",
      async () => (await a.loginFailures("user:alice")) === undefined,
      3000,
    );
  },
);

// ------------------------------------- Deno KV: the packs a write left

/**
 * A real KV file opened with every read of a pack (of the counters or of
 * the history) counted: an observer on Deno KV, not a mock of it. While
 * `failing.n` is above 0, that many atomic writes throw instead of being
 * committed (a disk that fails them).
 */
async function packReadsCounted(path: string) {
  const kv = await Deno.openKv(path);
  const reads = { n: 0 };
  const failing = { n: 0 };
  const isPack = (key: Deno.KvKey | undefined) =>
    key !== undefined && key.some((part) => String(part).endsWith("Packs"));
  const counted = new Proxy(kv, {
    get(target, name) {
      const value = Reflect.get(target, name, target);
      if (typeof value !== "function") return value;
      if (name === "get") {
        return (key: Deno.KvKey, ...rest: unknown[]) => {
          if (isPack(key)) reads.n++;
          return value.call(target, key, ...rest);
        };
      }
      if (name === "getMany") {
        return (keys: Deno.KvKey[], ...rest: unknown[]) => {
          if (keys.some(isPack)) reads.n++;
          return value.call(target, keys, ...rest);
        };
      }
      if (name === "list") {
        return (selector: Deno.KvListSelector, ...rest: unknown[]) => {
          const s = selector as { prefix?: Deno.KvKey; start?: Deno.KvKey };
          if (isPack(s.prefix ?? s.start)) reads.n++;
          return value.call(target, selector, ...rest);
        };
      }
      if (name === "atomic") {
        return () => {
          const op = target.atomic();
          if (failing.n > 0) {
            failing.n--;
            op.commit = () => Promise.reject(new Error("disk I/O error"));
          }
          return op;
        };
      }
      return value.bind(target);
    },
  });
  return { store: new KvStateStore(counted, "counted"), reads, failing };
}

Deno.test(
  "state store (Deno KV): a lone gateway's next write merges into the packs its last write left, reading none; a pack another changed meanwhile is read again",
  async () => {
    await using kv = await kvAlone();
    const { raw } = kv;
    const { store, reads } = await packReadsCounted(kv.path);
    try {
      const h = thisHour();
      const deltas = new Map<string, number>();
      for (let i = 0; i < 600; i++) deltas.set(`u${i}`, i + 1);
      const write = async (s: StateStore) => {
        await s.addConsumption("down", 1000, deltas);
        await s.addUsage("down", deltas, usageAt(h));
      };
      await store.readConsumption("down", 1000);
      await write(store);
      const first = reads.n;
      assert.ok(first > 0, "the first write reads its packs");
      await write(store);
      await write(store);
      assert.equal(reads.n, first, "the next writes read no pack");
      // A pack changed by a hand (nothing else moved): its check fails,
      // and it is read again, not written over from what was kept.
      const alice = packOf("u0");
      for (
        const key of [
          ["dwnConsR", "down", "consPacks", 1000, alice],
          ["usage", "down", "hourPacks", h, alice],
        ]
      ) {
        const pack = (await raw.get<Map<string, number>>(key)).value!;
        pack.set("u0", pack.get("u0")! + 1000);
        await raw.set(key, pack);
      }
      await write(store);
      assert.ok(reads.n > first, "the changed packs were read");
      // Another gateway's writes: all of them count.
      const other = await KvStateStore.open(kv.path);
      try {
        await write(other);
        await write(store);
      } finally {
        await other.close();
      }
      const fresh = await KvStateStore.open(kv.path);
      try {
        const counters = await fresh.readConsumption("down", 1000);
        const hour = new Map(
          (await fresh.readUsage("down", { grain: "hour", from: h, to: h + 1 }))
            .map((e) => [e.user, e.bytes]),
        );
        for (const seen of [counters, hour]) {
          assert.equal(seen.size, 600);
          for (const [u, d] of deltas) {
            assert.equal(seen.get(u), 6 * d + (u === "u0" ? 1000 : 0), u);
          }
        }
        assert.deepEqual(
          await store.readConsumption("down", 1000),
          counters,
          "the writer's copy agrees",
        );
      } finally {
        await fresh.close();
      }
    } finally {
      await store.close();
    }
  },
);

Deno.test(
  "state store (Deno KV): a write that throws after merging into the packs it kept leaves them to be read again, so nothing counts twice",
  async () => {
    await using kv = await kvAlone();
    const { store, failing } = await packReadsCounted(kv.path);
    try {
      const h = thisHour();
      const deltas = new Map<string, number>();
      for (let i = 0; i < 600; i++) deltas.set(`u${i}`, 10);
      await store.readConsumption("down", 1000);
      await store.addConsumption("down", 1000, deltas);
      await store.addUsage("down", deltas, usageAt(h));
      // The first operation of each write fails: its deltas come back
      // unwritten, and the caller (a flush) writes them again.
      for (
        const add of [
          (d: Map<string, number>) => store.addConsumption("down", 1000, d),
          (d: Map<string, number>) => store.addUsage("down", d, usageAt(h)),
        ]
      ) {
        failing.n = 1;
        const e = await add(deltas).then(() => undefined, (e) => e);
        assert.ok(e instanceof StoreWriteError, String(e));
        assert.equal(e.unwritten.size, 600, "the first operation wrote none");
        const status = store.status();
        assert.ok(!status.ok);
        assert.match(
          status.problem ?? "",
          /^adding (consumption|to the usage history) failed: disk I\/O error$/,
          "what failed, said once",
        );
        await add(e.unwritten as Map<string, number>);
      }
      const fresh = await KvStateStore.open(kv.path);
      try {
        const counters = await fresh.readConsumption("down", 1000);
        const hour = await fresh.readUsage("down", {
          grain: "hour",
          from: h,
          to: h + 1,
        });
        assert.equal(counters.size, 600);
        assert.equal(hour.length, 600);
        for (
          const bytes of [
            ...counters.values(),
            ...hour.map((e) => e.bytes),
          ]
        ) {
          assert.equal(bytes, 20);
        }
      } finally {
        await fresh.close();
      }
    } finally {
      await store.close();
    }
  },
);

Deno.test(
  "state store (Deno KV): a session's last use goes to the pack of its IP, not to the session again, and one whose pack is full is written whole",
  async () => {
    await using kv = await kvAlone();
    const { store, raw } = kv;
    const [one, two] = ["10.0.3.1", "10.0.3.2"];
    assert.notEqual(packOf(one), packOf(two));
    await store.saveSession("sessions", session(one, "u1", 1000, 1000));
    await store.saveSession("sessions", session(two, "u2", 1000, 1000));
    await store.listSessions("sessions");
    const packKey = (ip: string) => [
      "sessionIPM",
      "sessions",
      "lastUsePacks",
      packOf(ip),
    ];
    // Two's pack filled by hand with other IPs to its limit.
    const others = new Map<string, [number, number]>();
    for (let i = 0, bytes = 16; bytes < PACK_BYTES; i++) {
      const ip = `10.9.${i >> 8}.${i & 255}`;
      if (packOf(ip) !== packOf(two)) continue;
      others.set(ip, [1, 1]);
      bytes += ip.length + 40;
    }
    await raw.set(packKey(two), others);
    const written = await store.updateLastUses("sessions", [
      session(one, "u1", 1000, 5000),
      session(two, "u2", 1000, 6000),
    ]);
    assert.deepEqual(Object.fromEntries(written), { [one]: 5000, [two]: 6000 });
    const stored = async (ip: string) =>
      (await raw.get<StoredSession>(["sessionIPM", "sessions", "session", ip]))
        .value?.lastUsed;
    assert.equal(await stored(one), 1000, "one's session is not written");
    assert.deepEqual(
      (await raw.get<Map<string, unknown>>(packKey(one))).value,
      new Map([[one, [1000, 5000]]]),
    );
    assert.equal(await stored(two), 6000, "two's is, whole");
    assert.equal(
      (await raw.get<Map<string, unknown>>(packKey(two))).value?.size,
      others.size,
    );
    const fresh = await KvStateStore.open(kv.path);
    try {
      assert.equal((await fresh.getSession("sessions", one))?.lastUsed, 5000);
      assert.equal((await fresh.getSession("sessions", two))?.lastUsed, 6000);
    } finally {
      await fresh.close();
    }
  },
);
