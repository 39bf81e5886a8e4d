/**
 * Two gateways in one process on one real Redis (a temporary
 * redis-server): a login, a logout and an administrator's reset through A
 * take effect on B within a second, through announced changes only (no
 * persist timer); a secret made by A checks on B; an outage of Redis
 * while both run: logins fail with a clear message, consumption counted
 * meanwhile is written when Redis is back, and announcements work again.
 */
import assert from "node:assert/strict";
import { createClient } from "@redis/client";
import { type GatewayRuntime, openGateway } from "../managers/mod.ts";
import type { Decision, Meter } from "../proxy/policy.ts";
import {
  download,
  PolicyDir,
  README_TOML,
  request,
} from "./helpers/managers_setup.ts";
import {
  redisMissing,
  type RedisServer,
  startRedis,
} from "./helpers/redis_server.ts";

const missing = await redisMissing();
if (missing) console.warn(`state_redis_gateway_test.ts: ${missing}`);

const KiB = 1024;

/** The README's file with a 1 MB quota, user0 admin, user1 not. */
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

interface Pair {
  d: PolicyDir;
  redis: RedisServer;
  a: GatewayRuntime;
  b: GatewayRuntime;
}

/** Two gateways on one Redis, with no persist timer: only announcements. */
async function withPair(fn: (p: Pair) => Promise<void>): Promise<void> {
  const redis = await startRedis({ password: "gw-secret" });
  const d = await PolicyDir.make(TOML);
  const open = () =>
    openGateway(d.managersPath, {
      state: redis.url,
      persistIntervalMs: 0,
      loginUrl: "https://gw.test:4443",
      clock: d.clock.now,
    });
  const gateways: GatewayRuntime[] = [];
  try {
    gateways.push(await open());
    gateways.push(await open());
    await fn({ d, redis, a: gateways[0], b: gateways[1] });
  } finally {
    for (const g of gateways) {
      await g.close().catch(() => {});
    }
    await d.cleanup();
    await redis.close();
  }
}

async function within(
  what: string,
  ms: number,
  ok: () => boolean | Promise<boolean>,
): Promise<void> {
  const t0 = performance.now();
  while (!(await ok())) {
    if (performance.now() - t0 > ms) {
      assert.fail(`${what}: not within ${ms} ms`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * The administrator user0 logs in through A from 10.0.0.5, user1 through B
 * from 10.0.0.7; answers the administrator's secret.
 */
async function adminOnAUser1OnB(
  a: GatewayRuntime,
  b: GatewayRuntime,
): Promise<string> {
  const admin = await a.open("sessions", { ip: "10.0.0.5" }, {
    user: "user0",
    pass: "pass0",
  });
  await b.open("sessions", { ip: "10.0.0.7" }, {
    user: "user1",
    pass: "pass1",
  });
  return admin;
}

function allowed(g: GatewayRuntime, ip: string, d: PolicyDir): boolean {
  return g.decideSync(request(ip, d.clock)).allowed;
}

function meterOf(decision: Decision): Meter {
  assert.ok(decision.allowed, `expected allowed: ${JSON.stringify(decision)}`);
  assert.ok(decision.meter);
  return decision.meter;
}

Deno.test({
  name:
    "two gateways on Redis: a login and a logout through A take effect on B within a second",
  ignore: missing !== undefined,
  fn: () =>
    withPair(async ({ d, a, b }) => {
      assert.equal(allowed(b, "10.0.0.5", d), false);
      const secret = await a.open("sessions", { ip: "10.0.0.5" }, {
        user: "user0",
        pass: "pass0",
      });
      await within("B allows the IP logged in through A", 1000, () =>
        allowed(b, "10.0.0.5", d));
      // One signing key for the site: A's secret checks on B.
      assert.equal(
        await b.check("sessions", { ip: "10.0.0.5", secret }),
        "user0",
      );
      // The same user logs in from another IP through B: A forgets the old one.
      await b.open("sessions", { ip: "10.0.0.6" }, {
        user: "user0",
        pass: "pass0",
      });
      await within("A follows the move to 10.0.0.6", 1000, () =>
        allowed(a, "10.0.0.6", d) && !allowed(a, "10.0.0.5", d));
      const second = await a.renew("sessions", {
        ip: "10.0.0.6",
        secret,
      });
      await a.logout("sessions", { ip: "10.0.0.6", secret: second });
      await within("B refuses the IP logged out through A", 1000, () =>
        !allowed(b, "10.0.0.6", d));
    }),
});

Deno.test({
  name:
    "two gateways on Redis: an administrator's reset through A takes effect on B within a second",
  ignore: missing !== undefined,
  fn: () =>
    withPair(async ({ d, a, b }) => {
      const admin = await adminOnAUser1OnB(a, b);
      // user1 uses the whole 1 MB through B: refused there.
      const got = download(
        meterOf(b.decideSync(request("10.0.0.7", d.clock))),
        2048 * KiB,
      );
      assert.ok(got >= 1024 * KiB);
      assert.equal(allowed(b, "10.0.0.7", d), false);
      await b.flush();
      await a.flush();
      const before = await a.userInfo(
        "down",
        { ip: "10.0.0.5", secret: admin },
        {
          user: "user1",
        },
      );
      assert.equal(before.bytesCons, got);
      await a.setConsumption("down", { ip: "10.0.0.5", secret: admin }, {
        user: "user1",
        bytes: 0,
      });
      await within(
        "B allows user1 again after the reset on A",
        1000,
        () => allowed(b, "10.0.0.7", d),
      );
      await a.setConsumption("down", { ip: "10.0.0.5", secret: admin }, {
        user: "user1",
        bytes: 4096 * KiB,
      });
      await within(
        "B refuses user1 after A set 4 MB",
        1000,
        () => !allowed(b, "10.0.0.7", d),
      );
    }),
});

Deno.test({
  name:
    "two gateways on Redis: a grant through A lets the user browse through B within a second; both grants add up",
  ignore: missing !== undefined,
  fn: () =>
    withPair(async ({ d, a, b }) => {
      const admin = await adminOnAUser1OnB(a, b);
      download(meterOf(b.decideSync(request("10.0.0.7", d.clock))), 2048 * KiB);
      assert.equal(allowed(b, "10.0.0.7", d), false);
      const caller = { ip: "10.0.0.5", secret: admin };
      const info = await a.grant("down", caller, {
        user: "user1",
        bytes: 512 * KiB,
      });
      assert.equal(info.bytesGranted, 512 * KiB);
      await within("B allows user1 after A's grant", 1000, () =>
        allowed(b, "10.0.0.7", d));
      // Granted through B too: the site's grants add up, on both.
      const adminOnB = await b.renew("sessions", caller);
      await b.grant("down", { ip: "10.0.0.5", secret: adminOnB }, {
        user: "user1",
        bytes: 256 * KiB,
      });
      await within("A sees both grants", 1000, async () =>
        (await a.userInfo("down", caller, { user: "user1" })).bytesGranted ===
          768 * KiB);
      assert.equal(
        (await a.userInfo("down", caller, { user: "user1" })).bytesQuota,
        1024 * KiB + 768 * KiB,
      );
    }),
});

Deno.test({
  name:
    "two gateways on Redis: a lost announcement is caught up by the resync after the reconnect",
  ignore: missing !== undefined,
  fn: () =>
    withPair(async ({ d, redis, b }) => {
      // A third gateway logs user0 in at 10.0.0.5 and announces it in the
      // same transaction that drops every subscription: B cannot hear it,
      // and with no persist timer only the resync after B's reconnect can
      // tell it.
      const c = createClient({ url: redis.url });
      await c.connect();
      try {
        const now = d.clock.ms;
        const session = {
          user: "user0",
          record: { userName: "user0", name: "user0", groups: ["group0"] },
          groups: { map: ["group0"] },
          opened: now,
          lastUsed: now,
        };
        const change = { kind: "session", manager: "sessions", ip: "10.0.0.5" };
        const replies = await c.multi()
          .sendCommand(["CLIENT", "KILL", "TYPE", "pubsub"])
          .hSet(
            "pmproxy:sessionIPM:sessions:sessions",
            "10.0.0.5",
            JSON.stringify(session),
          )
          .publish(
            "pmproxy:changes",
            JSON.stringify({ from: "gateway-c", change }),
          )
          .exec();
        assert.equal(replies[2], 0, "nobody was subscribed to hear it");
      } finally {
        await c.close();
      }
      await within("B sees the login after its resync", 2000, () =>
        allowed(b, "10.0.0.5", d));
    }),
});

Deno.test({
  name:
    "two gateways on Redis: while Redis is down they decide from memory, logins fail clearly, and what was counted is written when it is back",
  ignore: missing !== undefined,
  fn: () =>
    withPair(async ({ d, redis, a, b }) => {
      const admin = await adminOnAUser1OnB(a, b);
      await within("A sees user1", 1000, () => allowed(a, "10.0.0.7", d));
      const warn = console.warn;
      const warnings: string[] = [];
      console.warn = (...args: unknown[]) => warnings.push(args.join(" "));
      try {
        // An outage of a Redis that keeps its data (RDB/AOF in production).
        await redis.stop({ keepData: true });
        // Decisions from memory.
        assert.equal(allowed(b, "10.0.0.7", d), true);
        const counted = download(
          meterOf(b.decideSync(request("10.0.0.7", d.clock))),
          300 * KiB,
        );
        await assert.rejects(() => b.flush());
        await assert.rejects(
          () =>
            a.open("sessions", { ip: "10.0.0.8" }, {
              user: "user1",
              pass: "pass1",
            }),
          (e: Error) => {
            const body = (e as { body?: { message?: string } }).body;
            assert.match(
              body?.message ?? e.message,
              /^the login cannot be saved now \(Redis at redis:\/\/127\.0\.0\.1:\d+\/0 cannot be reached.*\); try again in a moment$/,
            );
            return true;
          },
        );
        await redis.start();
        // What B counted during the outage is written at its next flush.
        await within(
          "B writes its deltas once Redis is back",
          3000,
          async () => {
            try {
              await b.flush();
              return true;
            } catch {
              return false;
            }
          },
        );
        await a.flush();
        const info = await a.userInfo(
          "down",
          { ip: "10.0.0.5", secret: admin },
          {
            user: "user1",
          },
        );
        assert.equal(info.bytesCons, counted);
        await a.open("sessions", { ip: "10.0.0.9" }, {
          user: "user0",
          pass: "pass0",
        });
        await within(
          "B hears of logins again",
          1000,
          () => allowed(b, "10.0.0.9", d),
        );
      } finally {
        console.warn = warn;
      }
      const down = warnings.filter((w) =>
        /state store .*: /.test(w) && !/works again/.test(w)
      );
      const back = warnings.filter((w) => /works again/.test(w));
      // Once per gateway, however many calls failed.
      assert.equal(down.length, 2, warnings.join("\n"));
      assert.equal(back.length, 2, warnings.join("\n"));
      for (const w of warnings) assert.ok(!w.includes("gw-secret"), w);
    }),
});
