/**
 * What a restart keeps and what it must not: a session's last use (so an
 * idle session does not get a fresh idleTimeout), written with the periodic
 * flush and not per request. A real Deno KV file in a temp dir; the clock
 * is the test's, so "after the idle time has passed" needs no sleeping.
 */
import assert from "node:assert/strict";
import { PolicyDir, README_TOML, request } from "./helpers/managers_setup.ts";

/** The README's file with a 1 s idleTimeout and a second user. */
const IDLE_TOML = README_TOML
  .replace('auth = "map"', 'auth = "map"\n\tidleTimeout = "1s"')
  .replace('user0 = "pass0"', 'user0 = "pass0"\n\t\tuser1 = "pass1"')
  .replace('user0 = ["group0"]', 'user0 = ["group0"]\n\t\tuser1 = ["group0"]');

/** The stored copy of the session at `ip`, read straight from the KV file. */
async function stored(
  kvPath: string,
  ip: string,
): Promise<Record<string, unknown> | null> {
  const kv = await Deno.openKv(kvPath);
  try {
    const entry = await kv.get<Record<string, unknown>>(
      ["sessionIPM", "sessions", "session", ip],
    );
    return entry.value;
  } finally {
    kv.close();
  }
}

Deno.test("restart: a session idle longer than idleTimeout is gone after a reopen; a recently used one survives", async () => {
  const d = await PolicyDir.make(IDLE_TOML);
  try {
    const g = await d.open();
    await g.open("sessions", "10.0.0.5", "user0", "pass0");
    await g.open("sessions", "10.0.0.7", "user1", "pass1");
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
    await g.open("sessions", "10.0.0.5", "user0", "pass0");
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
    await g.open("sessions", "10.0.0.5", "user0", "pass0");
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
