/**
 * sessionIPM through the gateway: login and the original's error bodies,
 * one IP per user, secrets that expire and renew (injected clock), logged
 * users, sessions surviving a restart, and discover's answers as the
 * original gave them on the wire.
 */
import assert from "node:assert/strict";
import { CommandError, LOGIN_FAILED } from "../managers/mod.ts";
import { JWT_KEY } from "../managers/state/kv_store.ts";
import { PolicyDir, README_TOML, request } from "./helpers/managers_setup.ts";

async function commandError(
  fn: () => unknown,
  body: Record<string, unknown>,
): Promise<void> {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof CommandError, `expected a CommandError, got ${e}`);
    assert.deepEqual(e.body, body);
    return;
  }
  assert.fail(`expected ${JSON.stringify(body)}`);
}

const ADMIN_TOML = README_TOML.replace(
  'rule = "sessions ∧ down"',
  'rule = "sessions ∧ down"\njwtExpiration = "1h"\nadmins = ["user0"]',
).replace('user0 = "pass0"', 'user0 = "pass0"\n\t\tuser1 = "pass1"');

Deno.test("sessions: open checks the password with the original's error bodies", async () => {
  const d = await PolicyDir.make(README_TOML);
  try {
    const g = await d.open();
    await commandError(
      () =>
        g.open("sessions", { ip: "10.0.0.5" }, { user: "user0", pass: "nope" }),
      { message: LOGIN_FAILED },
    );
    await commandError(
      () =>
        g.open("sessions", { ip: "10.0.0.5" }, { user: "nobody", pass: "x" }),
      { message: LOGIN_FAILED },
    );
    await commandError(
      () =>
        g.open("down", { ip: "10.0.0.5" }, { user: "user0", pass: "pass0" }),
      { Mng: "down", Cmd: "open" },
    );
    const secret = await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    assert.match(secret, /^[\w-]+\.[\w-]+\.[\w-]+$/);
    assert.equal(
      await g.check("sessions", { ip: "10.0.0.5", secret }),
      "user0",
    );
    await commandError(
      () => g.check("sessions", { ip: "10.0.0.5", secret: "" }),
      {
        message: "empty JWT",
      },
    );
    // The secret of the session at another IP.
    await commandError(() => g.check("sessions", { ip: "10.0.0.6", secret }), {
      Logged: "",
      Decrypted: "user0",
    });
    await commandError(
      () =>
        g.check("sessions", {
          ip: "10.0.0.5",
          secret: secret.slice(0, -2) + "xx",
        }),
      {
        message:
          "invalid secret: it was not made by this gateway; log in again",
      },
    );
  } finally {
    await d.cleanup();
  }
});

Deno.test("sessions: one IP per user; a login at an IP ends whoever was there", async () => {
  const d = await PolicyDir.make(ADMIN_TOML);
  try {
    const g = await d.open();
    const first = await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    assert.equal(g.decideSync(request("10.0.0.5", d.clock)).allowed, true);
    const second = await g.open("sessions", { ip: "10.0.0.6" }, {
      user: "user0",
      pass: "pass0",
    });
    const old = g.decideSync(request("10.0.0.5", d.clock));
    assert.equal(old.allowed, false);
    assert.equal(g.decideSync(request("10.0.0.6", d.clock)).allowed, true);
    await commandError(
      () => g.check("sessions", { ip: "10.0.0.5", secret: first }),
      {
        Logged: "",
        Decrypted: "user0",
      },
    );
    assert.deepEqual(
      await g.loggedUsers("sessions", { ip: "10.0.0.6", secret: second }),
      {
        "10.0.0.6": "user0",
      },
    );
    const other = await g.open("sessions", { ip: "10.0.0.6" }, {
      user: "user1",
      pass: "pass1",
    });
    await commandError(
      () => g.check("sessions", { ip: "10.0.0.6", secret: second }),
      {
        Logged: "user1",
        Decrypted: "user0",
      },
    );
    assert.equal(
      await g.check("sessions", { ip: "10.0.0.6", secret: other }),
      "user1",
    );
    // Who is logged in where is for administrators only.
    await commandError(
      () => g.loggedUsers("sessions", { ip: "10.0.0.6", secret: other }),
      {
        message:
          "the list of logged users is for administrators; user1 is not one",
      },
    );
    await g.logout("sessions", { ip: "10.0.0.6", secret: other });
    assert.equal(g.decideSync(request("10.0.0.6", d.clock)).allowed, false);
    await commandError(
      () => g.loggedUsers("sessions", { ip: "10.0.0.6", secret: other }),
      {
        Logged: "",
        Decrypted: "user1",
      },
    );
  } finally {
    await d.cleanup();
  }
});

Deno.test("sessions: a secret expires after jwtExpiration and renews", async () => {
  const d = await PolicyDir.make(ADMIN_TOML);
  try {
    const g = await d.open();
    const secret = await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    d.clock.advance(3600_000 - 1000);
    assert.equal(
      await g.check("sessions", { ip: "10.0.0.5", secret }),
      "user0",
    );
    d.clock.advance(1000);
    await commandError(() => g.check("sessions", { ip: "10.0.0.5", secret }), {
      message: "expired token",
    });
    // The session itself is still open: the proxy lets it through.
    assert.equal(g.decideSync(request("10.0.0.5", d.clock)).allowed, true);
    // Renew needs the user logged at this IP.
    await commandError(() => g.renew("sessions", { ip: "10.0.0.9", secret }), {
      Logged: "",
      Decrypted: "user0",
    });
    const renewed = await g.renew("sessions", { ip: "10.0.0.5", secret });
    assert.notEqual(renewed, secret);
    assert.equal(
      await g.check("sessions", { ip: "10.0.0.5", secret: renewed }),
      "user0",
    );
    await commandError(
      () => g.renew("sessions", { ip: "10.0.0.5", secret: "junk" }),
      {
        message:
          "invalid secret: it was not made by this gateway; log in again",
      },
    );
  } finally {
    await d.cleanup();
  }
});

/** The signing key put in the store, and user0@10.0.0.5's secrets made with it by the hand-written HS256 signer. */
const PINNED_KEY = Uint8Array.from({ length: 32 }, (_, i) => i);
const PINNED_EXPIRED =
  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyIjoidXNlcjAiLCJpcCI6IjEwLjAuMC41IiwiZXhwIjoxNzAwMDAwMDAwfQ.DEDZnpMPqMKxMkjNMSf8mSPOakwb7g4MYs3I42ygz9s";
const PINNED_VALID =
  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyIjoidXNlcjAiLCJpcCI6IjEwLjAuMC41IiwiZXhwIjo0MTAyNDQ0ODAwfQ.7hsvk9FhgoBJZBiqi5s8CZlICpQ6PQMFm6TemvA6oBo";
/** The same claims as PINNED_VALID, signed with another key. */
const PINNED_OTHER_KEY =
  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyIjoidXNlcjAiLCJpcCI6IjEwLjAuMC41IiwiZXhwIjo0MTAyNDQ0ODAwfQ.Hc5NZ21DR4Y9z1qNBO0-WrtDsJCdboITTXSR4kW_OBU";

Deno.test("sessions: secrets given out before an upgrade keep working; expired ones renew, forged ones do not", async () => {
  const d = await PolicyDir.make(ADMIN_TOML);
  try {
    const kv = await Deno.openKv(d.kvPath);
    await kv.set(JWT_KEY, PINNED_KEY);
    kv.close();
    const g = await d.open();
    await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    assert.equal(
      await g.check("sessions", { ip: "10.0.0.5", secret: PINNED_VALID }),
      "user0",
    );
    assert.deepEqual(
      await g.loggedUsers("sessions", { ip: "10.0.0.5", secret: PINNED_VALID }),
      { "10.0.0.5": "user0" },
    );
    // Correctly signed but expired: check refuses it, renew takes it.
    await commandError(
      () => g.check("sessions", { ip: "10.0.0.5", secret: PINNED_EXPIRED }),
      { message: "expired token" },
    );
    const renewed = await g.renew("sessions", {
      ip: "10.0.0.5",
      secret: PINNED_EXPIRED,
    });
    assert.equal(
      await g.check("sessions", { ip: "10.0.0.5", secret: renewed }),
      "user0",
    );
    // Forged: another key, or claims changed under the signature.
    const [h, , sig] = PINNED_EXPIRED.split(".");
    const longer = btoa(JSON.stringify({
      user: "user0",
      ip: "10.0.0.5",
      exp: 4_102_444_800,
    })).replace(/=+$/, "");
    const refused = {
      message: "invalid secret: it was not made by this gateway; log in again",
    };
    for (const forged of [PINNED_OTHER_KEY, `${h}.${longer}.${sig}`]) {
      await commandError(
        () => g.check("sessions", { ip: "10.0.0.5", secret: forged }),
        refused,
      );
      await commandError(
        () => g.renew("sessions", { ip: "10.0.0.5", secret: forged }),
        refused,
      );
    }
  } finally {
    await d.cleanup();
  }
});

Deno.test("sessions: persist in KV across a restart, with the same signing key", async () => {
  const d = await PolicyDir.make(ADMIN_TOML);
  try {
    const g = await d.open();
    const secret = await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    await g.open("sessions", { ip: "10.0.0.7" }, {
      user: "user1",
      pass: "pass1",
    });
    await g.close();
    const again = await d.open();
    assert.equal(
      await again.check("sessions", { ip: "10.0.0.5", secret }),
      "user0",
    );
    assert.deepEqual(
      await again.loggedUsers("sessions", { ip: "10.0.0.5", secret }),
      {
        "10.0.0.5": "user0",
        "10.0.0.7": "user1",
      },
    );
    const decision = again.decideSync(request("10.0.0.5", d.clock));
    assert.equal(decision.allowed, true);
    assert.equal(decision.allowed && decision.user, "user0");
    // user1 is logged in but has no group with a quota.
    const none = again.decideSync(request("10.0.0.7", d.clock));
    assert.equal(none.allowed, false);
    assert.match(
      !none.allowed ? none.reason : "",
      /^Quota reached: user1 has no download quota under "down"/,
    );
  } finally {
    await d.cleanup();
  }
});

Deno.test("sessions: a restart checks restored sessions against the mapDB as configured now", async () => {
  const d = await PolicyDir.make(ADMIN_TOML.replace(
    'user0 = ["group0"]',
    'user0 = ["group0"]\n\t\tuser1 = ["group0"]',
  ));
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
    assert.equal(g.decideSync(request("10.0.0.6", d.clock)).allowed, true);
    await g.close();
    // user1 removed, user0 moved to a group without a quota.
    await Deno.writeTextFile(
      d.managersPath,
      README_TOML.replace('user0 = ["group0"]', 'user0 = ["other"]'),
    );
    const again = await d.open();
    const gone = again.decideSync(request("10.0.0.6", d.clock));
    assert.equal(gone.allowed, false);
    assert.match(
      !gone.allowed ? gone.reason : "",
      /not logged in at 10\.0\.0\.6/,
    );
    const moved = again.decideSync(request("10.0.0.5", d.clock));
    assert.match(
      !moved.allowed ? moved.reason : "",
      /^Quota reached: user0 has no download quota/,
    );
    // The removed user's stored session is deleted at the next flush.
    await again.flush();
    await again.close();
    const third = await d.open();
    assert.equal(third.decideSync(request("10.0.0.6", d.clock)).allowed, false);
  } finally {
    await d.cleanup();
  }
});

Deno.test("sessions: idleTimeout closes a session unused that long", async () => {
  const d = await PolicyDir.make(
    README_TOML.replace('auth = "map"', 'auth = "map"\n\tidleTimeout = "10m"'),
  );
  try {
    const g = await d.open();
    await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    d.clock.advance(9 * 60_000);
    assert.equal(g.decideSync(request("10.0.0.5", d.clock)).allowed, true);
    d.clock.advance(9 * 60_000);
    assert.equal(g.decideSync(request("10.0.0.5", d.clock)).allowed, true);
    d.clock.advance(10 * 60_000);
    assert.equal(g.decideSync(request("10.0.0.5", d.clock)).allowed, false);
    await g.flush();
    await g.close();
    const again = await d.open();
    assert.equal(again.decideSync(request("10.0.0.5", d.clock)).allowed, false);
  } finally {
    await d.cleanup();
  }
});

Deno.test("sessions: a login at an IP whose idle session awaits deletion survives the flush", async () => {
  const d = await PolicyDir.make(
    README_TOML.replace('auth = "map"', 'auth = "map"\n\tidleTimeout = "10m"'),
  );
  try {
    const g = await d.open();
    await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    d.clock.advance(11 * 60_000);
    // Idle: closed now, its stored copy deleted at the next flush.
    assert.equal(g.decideSync(request("10.0.0.5", d.clock)).allowed, false);
    await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    await g.flush();
    assert.equal(g.decideSync(request("10.0.0.5", d.clock)).allowed, true);
    await g.close();
    const again = await d.open();
    assert.equal(again.decideSync(request("10.0.0.5", d.clock)).allowed, true);
  } finally {
    await d.cleanup();
  }
});

Deno.test("discover: the original's answers before and after login", async () => {
  const d = await PolicyDir.make(README_TOML);
  try {
    const g = await d.open();
    assert.deepEqual(g.discover({ ip: "10.0.0.5" }), {
      matchMng: { sessions: { match: false, type: "sessionIPM" } },
      result: false,
    });
    await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    assert.deepEqual(g.discover({ ip: "10.0.0.5" }), {
      matchMng: {
        down: { match: true, type: "dwnConsR" },
        sessions: { match: true, type: "sessionIPM" },
      },
      result: true,
    });
    assert.equal(g.kindOf("sessions"), "sessionIPM");
    assert.equal(g.kindOf("down"), "dwnConsR");
    assert.equal(g.kindOf("nope"), undefined);
    assert.deepEqual(g.describe("rules"), { rule: "sessions ∧ down" });
    assert.deepEqual(g.describe("sessions"), { name: "sessions", auth: "map" });
    const shown = JSON.stringify(g.describe("map"));
    assert.ok(!shown.includes("pass0"), "show never shows passwords");
    await commandError(() => g.describe("nope"), { Mng: "nope", Cmd: "show" });
  } finally {
    await d.cleanup();
  }
});

Deno.test("decide: a refusal says which managers were false and where to log in", async () => {
  const d = await PolicyDir.make(README_TOML);
  try {
    const g = await d.open();
    assert.deepEqual(g.decideSync(request("10.0.0.5", d.clock)), {
      allowed: false,
      status: 403,
      reason: "Forbidden by the rule: sessions: not logged in at 10.0.0.5.",
      loginUrl: "https://gw.test:4443",
    });
  } finally {
    await d.cleanup();
  }
});

const PROXY_AUTH_TOML = README_TOML.replace(
  'auth = "map"',
  'auth = "map"\n\tproxyAuth = true\n\trealm = "office"',
);

Deno.test("proxyAuth: Basic credentials authenticate a request without a session", async () => {
  const d = await PolicyDir.make(PROXY_AUTH_TOML);
  try {
    const g = await d.open();
    const facts = request("10.0.0.5", d.clock);
    // Without credentials: 407 with the realm, so a browser asks for them.
    const ask = g.decide(facts);
    assert.ok(!(ask instanceof Promise), "decided synchronously");
    assert.equal(ask.allowed, false);
    assert.equal(!ask.allowed && ask.status, 407);
    assert.equal(!ask.allowed && ask.realm, "office");
    // Wrong credentials: asked again.
    const wrong = await g.decide({
      ...facts,
      proxyAuth: { user: "user0", pass: "nope" },
    });
    assert.equal(!wrong.allowed && wrong.status, 407);
    assert.match(
      !wrong.allowed ? wrong.reason : "",
      /the proxy credentials of "user0" are wrong/,
    );
    // Right ones: allowed, accounted to user0, no session at the IP.
    const right = { ...facts, proxyAuth: { user: "user0", pass: "pass0" } };
    const first = g.decide(right);
    assert.ok(first instanceof Promise, "checked with the database once");
    const ok = await first;
    assert.equal(ok.allowed, true);
    assert.equal(ok.allowed && ok.user, "user0");
    assert.ok(ok.allowed && ok.meter, "the quota applies");
    const again = g.decide(right);
    assert.ok(!(again instanceof Promise), "then remembered");
    assert.equal(again.allowed, true);
    assert.equal(g.decideSync(facts).allowed, false, "the IP is not bound");
    // A changed password is not taken from memory.
    const changed = g.decide({
      ...facts,
      proxyAuth: { user: "user0", pass: "pass0x" },
    });
    assert.equal((await changed).allowed, false);
    // After five minutes the database is asked again.
    d.clock.advance(5 * 60_000);
    const later = {
      ...request("10.0.0.5", d.clock),
      proxyAuth: right.proxyAuth,
    };
    const recheck = g.decide(later);
    assert.ok(recheck instanceof Promise);
    assert.equal((await recheck).allowed, true);
  } finally {
    await d.cleanup();
  }
});

Deno.test("proxyAuth: wrong credentials are remembered for 30 s, right ones are still checked", async () => {
  const d = await PolicyDir.make(PROXY_AUTH_TOML);
  try {
    const g = await d.open();
    const wrong = () => ({
      ...request("10.0.0.5", d.clock),
      proxyAuth: { user: "user0", pass: "nope" },
    });
    const first = g.decide(wrong());
    assert.ok(first instanceof Promise, "the database is asked once");
    const refused = await first;
    assert.equal(!refused.allowed && refused.status, 407);
    const again = g.decide(wrong());
    assert.ok(!(again instanceof Promise), "then the refusal is remembered");
    assert.equal(!again.allowed && again.status, 407);
    // Other credentials of the same user are checked at once.
    const right = g.decide({
      ...request("10.0.0.5", d.clock),
      proxyAuth: { user: "user0", pass: "pass0" },
    });
    assert.ok(right instanceof Promise);
    assert.equal((await right).allowed, true);
    // An unknown user too is remembered; after 30 s everything is asked again.
    const nobody = () => ({
      ...request("10.0.0.6", d.clock),
      proxyAuth: { user: "nobody", pass: "x" },
    });
    await g.decide(nobody());
    assert.ok(!(g.decide(nobody()) instanceof Promise));
    d.clock.advance(30_000);
    assert.ok(g.decide(wrong()) instanceof Promise, "asked again after 30 s");
  } finally {
    await d.cleanup();
  }
});

Deno.test("sessions: gateways sharing one store see logins and logouts after a flush", async () => {
  const d = await PolicyDir.make(README_TOML);
  try {
    const a = await d.open();
    const b = await d.open();
    const secret = await a.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    assert.equal(b.decideSync(request("10.0.0.5", d.clock)).allowed, false);
    await b.flush();
    assert.equal(b.decideSync(request("10.0.0.5", d.clock)).allowed, true);
    assert.equal(
      await b.check("sessions", { ip: "10.0.0.5", secret }),
      "user0",
    );
    await a.logout("sessions", { ip: "10.0.0.5", secret });
    await b.flush();
    assert.equal(b.decideSync(request("10.0.0.5", d.clock)).allowed, false);
  } finally {
    await d.cleanup();
  }
});

Deno.test("sessions: an IPv4-mapped IPv6 client address is its IPv4 address", async () => {
  const d = await PolicyDir.make(README_TOML);
  try {
    const g = await d.open();
    const secret = await g.open("sessions", { ip: "::ffff:10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    assert.equal(g.decideSync(request("10.0.0.5", d.clock)).allowed, true);
    assert.equal(
      await g.check("sessions", { ip: "10.0.0.5", secret }),
      "user0",
    );
    assert.equal(
      await g.check("sessions", { ip: "::FFFF:10.0.0.5", secret }),
      "user0",
    );
    await g.logout("sessions", { ip: "::ffff:10.0.0.5", secret });
    assert.equal(g.decideSync(request("10.0.0.5", d.clock)).allowed, false);
  } finally {
    await d.cleanup();
  }
});
