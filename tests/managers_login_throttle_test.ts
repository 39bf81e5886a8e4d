/**
 * Logins that resist guessing, through the real gateway and its Deno KV
 * store: one answer for every failure, failures counted per address and
 * per user name, exponential waits with a cap, a correct login elsewhere
 * held back only briefly, the same for proxy credentials, counts that
 * survive a restart, and password hashing two at a time.
 */
import assert from "node:assert/strict";
import {
  CommandError,
  LOGIN_FAILED,
  TooManyAttempts,
} from "../managers/mod.ts";
import { PolicyDir, README_TOML, request } from "./helpers/managers_setup.ts";
import {
  hashingLoad,
  hashPassword,
  verifyPassword,
} from "../managers/users/password.ts";
import { waitAfter } from "../managers/sessions/_login_throttle.ts";

const TOML = README_TOML.replace(
  '[[sessionIPM]]\n\tname = "sessions"\n\tauth = "map"',
  '[[sessionIPM]]\n\tname = "sessions"\n\tauth = "map"\n\tproxyAuth = true',
);

async function failure(p: Promise<unknown>): Promise<CommandError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof CommandError, String(e));
    return e;
  }
  assert.fail("expected a refusal");
}

Deno.test("throttle: the wait doubles past the free tries, up to the cap", () => {
  const rule = { free: 5, firstMs: 1000, capMs: 15 * 60_000 };
  assert.equal(waitAfter({ count: 5, last: 0 }, rule), 0);
  assert.equal(waitAfter({ count: 6, last: 0 }, rule), 1000);
  assert.equal(waitAfter({ count: 7, last: 0 }, rule), 2000);
  assert.equal(waitAfter({ count: 10, last: 0 }, rule), 16_000);
  assert.equal(waitAfter({ count: 60, last: 0 }, rule), 15 * 60_000);
});

Deno.test("throttle: guesses from one address wait longer each time; a correct login elsewhere waits at most a minute; counts survive a restart", async () => {
  const d = await PolicyDir.make(TOML);
  try {
    const g = await d.open();
    const guess = (ip: string, user: string, pass = "nope") =>
      failure(g.open("sessions", { ip }, { user, pass }));
    // Five free failures, each the same answer for a wrong password and an
    // unknown user.
    for (let i = 0; i < 5; i++) {
      const e = await guess("10.0.0.66", i % 2 ? "user0" : `nobody${i}`);
      assert.deepEqual(e.body, { message: LOGIN_FAILED });
    }
    // The sixth failure is counted; the next try must wait a second.
    assert.deepEqual((await guess("10.0.0.66", "user0")).body, {
      message: LOGIN_FAILED,
    });
    const held = await guess("10.0.0.66", "user0", "pass0");
    assert.ok(held instanceof TooManyAttempts);
    assert.equal(held.retryAfterSeconds, 1);
    assert.match(held.message, /too many failed logins; try again in 1 s/);
    // Even the right password waits: the guesser learns nothing.
    d.clock.advance(1000);
    await guess("10.0.0.66", "user0"); // 7th failure: 2 s
    d.clock.advance(1999);
    assert.equal(
      (await guess("10.0.0.66", "user0", "pass0") as TooManyAttempts)
        .retryAfterSeconds,
      1,
    );
    d.clock.advance(1);
    // Another address is not held back by this one's failures...
    await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });

    // ...until the user name itself has had many failures (from anywhere):
    // then only briefly (at most a minute).
    for (let i = 0; i < 12; i++) {
      d.clock.advance(60_000);
      await guess(`10.1.0.${i}`, "user0");
    }
    const userHeld = await guess("10.0.0.5", "user0", "pass0");
    assert.ok(userHeld instanceof TooManyAttempts);
    assert.ok(
      userHeld.retryAfterSeconds <= 60,
      `${userHeld.retryAfterSeconds}`,
    );

    // A restart keeps the counts (they are in the store).
    await g.close();
    d.gateways.length = 0;
    const again = await d.open();
    assert.ok(
      await failure(
        again.open("sessions", { ip: "10.0.0.5" }, {
          user: "user0",
          pass: "pass0",
        }),
      ) instanceof TooManyAttempts,
    );
    d.clock.advance(60_000);
    await again.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
  } finally {
    await d.cleanup();
  }
});

Deno.test("throttle: proxy credentials guessed from one address stop being checked", async () => {
  const d = await PolicyDir.make(TOML);
  try {
    const g = await d.open();
    const ask = async (pass: string, user = "user0") =>
      await g.decide({
        ...request("10.0.0.77", d.clock),
        proxyAuth: { user, pass },
      });
    // Each wrong password is another user name here, so the 30 s memory
    // of refused credentials does not answer for the database.
    for (let i = 0; i < 6; i++) {
      assert.equal((await ask(`wrong${i}`)).allowed, false);
    }
    // Throttled: the right password is not even checked now.
    const held = await ask("pass0");
    assert.equal(held.allowed, false);
    d.clock.advance(1000);
    assert.equal((await ask("pass0")).allowed, true);
  } finally {
    await d.cleanup();
  }
});

Deno.test("password hashing: at most two at a time, the rest queue", async () => {
  const stored = await hashPassword("s3cret");
  let most = 0;
  const all = Array.from({ length: 8 }, () => verifyPassword("s3cret", stored));
  const watch = setInterval(() => {
    most = Math.max(most, hashingLoad().running);
  }, 1);
  const results = await Promise.all(all);
  clearInterval(watch);
  assert.deepEqual(results, Array(8).fill(true));
  assert.ok(most >= 1 && most <= 2, `running at once: ${most}`);
  assert.deepEqual(hashingLoad(), { running: 0, waiting: 0 });
});
