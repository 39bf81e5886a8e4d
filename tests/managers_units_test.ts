/** Durations, sizes, addresses, password hashes and session secrets. */
import assert from "node:assert/strict";
import {
  formatDuration,
  formatSize,
  parseDuration,
  parseSize,
} from "../managers/values/units.ts";
import {
  checkPasswordHash,
  hashPassword,
  verifyPassword,
} from "../managers/users/password.ts";
import { signJwt, verifyJwt } from "../managers/sessions/_jwt.ts";
import { parseResetCycle } from "../managers/quotas/_reset_cycle.ts";
import { normalizeIp } from "../managers/values/ip.ts";
import fc from "fast-check";
import { formatBytes } from "../web/chart.js";

Deno.test("units: Go-style durations", () => {
  assert.equal(parseDuration("1h30m"), 5_400_000);
  assert.equal(parseDuration("500ms"), 500);
  assert.equal(parseDuration("24h"), 86_400_000);
  assert.equal(parseDuration("0"), 0);
  assert.match(String(parseDuration("ten seconds")), /not a duration/);
  assert.match(String(parseDuration("")), /not a duration/);
  assert.equal(formatDuration(5_400_000), "1h30m0s");
  assert.equal(formatDuration(500), "500ms");
});

Deno.test("units: sizes are base 1024 and print as the README does", () => {
  assert.equal(parseSize("1 GB"), 1024 ** 3);
  assert.equal(parseSize("1.5GiB"), 1.5 * 1024 ** 3);
  assert.equal(parseSize("512 KB"), 512 * 1024);
  assert.equal(parseSize(1000), 1000);
  assert.match(String(parseSize("1 gigabyte")), /not a size/);
  assert.equal(formatSize(0), "0 B");
  assert.equal(formatSize(1024 ** 3), "1 GB");
  assert.equal(formatSize(1.5 * 1024 ** 3), "1.5 GB");
  assert.equal(formatSize(1023), "1023 B");
  assert.equal(formatSize(1024 * 1024), "1 MB");
  // Just under a unit rounds up into it, not to "1024 KB".
  assert.equal(formatSize(1024 * 1024 - 1), "1 MB");
  assert.equal(formatSize(1024 ** 3 - 100), "1 GB");
  assert.equal(formatSize(1023.96 * 1024), "1 MB");
  assert.equal(formatSize(1023.9 * 1024), "1023.9 KB");
});

Deno.test("units: the pages' formatBytes (web/chart.js, which browsers run) writes every size as formatSize does", () => {
  // Its twin, because the browser cannot load managers/: the two must not drift.
  const edges = [0, 1, 1023, 1024, 1024 * 1024 - 1, 1023.96 * 1024];
  for (let unit = 1; unit <= 6; unit++) {
    for (const d of [-1, 0, 1]) edges.push(1024 ** unit + d);
  }
  for (const n of edges) assert.equal(formatBytes(n), formatSize(n), `${n}`);
  fc.assert(
    fc.property(
      fc.oneof(
        fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        fc.double({ min: 0, max: 8 * 1024 ** 5, noNaN: true }),
      ),
      (n) => formatBytes(n) === formatSize(n),
    ),
    { seed: 14, numRuns: 2000 },
  );
});

Deno.test("units: sizes up to petabytes parse and print exactly", () => {
  const TiB = 1024 ** 4;
  const PiB = 1024 ** 5;
  assert.equal(parseSize("5 TB"), 5 * TiB);
  assert.equal(parseSize("5TiB"), 5 * TiB);
  assert.equal(parseSize("1.5 PB"), 1.5 * PiB);
  assert.equal(parseSize("1.5 PiB"), 1.5 * PiB);
  assert.equal(parseSize("2 p"), 2 * PiB);
  assert.equal(parseSize("7.5 PB"), 7.5 * PiB);
  assert.match(String(parseSize("8 PB")), /too large.*8 PB/);
  assert.match(String(parseSize("1 EB")), /not a size.*"1 PB"/);
  assert.equal(formatSize(5 * TiB), "5 TB");
  assert.equal(formatSize(1.5 * PiB), "1.5 PB");
  assert.equal(formatSize(4 * 1024 ** 3 + 1), "4 GB");
  assert.equal(formatSize(1023.95 * TiB), "1 PB");
  assert.equal(formatSize(2048 * PiB), "2048 PB");
  // 6 TiB of consumption counted in 64 KiB chunks (about 100 million of
  // them) is summed without losing a byte; in 1 MiB chunks here to keep
  // the test short, then an odd chunk.
  let sum = 0;
  for (let i = 0; i < 6 * 1024 * 1024; i++) sum += 1024 * 1024;
  assert.equal(sum, 6 * TiB);
  assert.equal(formatSize(sum), "6 TB");
  sum += 3;
  assert.equal(sum - 6 * TiB, 3);
  assert.equal(formatSize(sum + 0.5 * TiB), "6.5 TB");
});

Deno.test("password: PBKDF2 hashes verify; plain passwords too", async () => {
  const stored = await hashPassword("s3cret");
  assert.match(
    stored,
    /^pbkdf2-sha256\$100000\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/,
  );
  assert.notEqual(stored, await hashPassword("s3cret"), "salted");
  assert.equal(await verifyPassword("s3cret", stored), true);
  assert.equal(await verifyPassword("s3cret!", stored), false);
  assert.equal(await verifyPassword("pass0", "pass0"), true);
  assert.equal(await verifyPassword("pass", "pass0"), false);
  assert.equal(checkPasswordHash(stored), undefined);
  assert.match(String(checkPasswordHash("pbkdf2-sha256$x$y")), /must read/);
  assert.equal(await verifyPassword("x", "pbkdf2-sha256$x$y"), false);
});

Deno.test("secrets: HS256 JWTs verify only with their key", async () => {
  const key = crypto.getRandomValues(new Uint8Array(32));
  const claims = { user: "user0", ip: "10.0.0.5", exp: 1_800_000_000 };
  const token = await signJwt(key, claims);
  assert.deepEqual(await verifyJwt(key, token), claims);
  assert.equal(await verifyJwt(new Uint8Array(32), token), undefined);
  const [h, , s] = token.split(".");
  const forged = btoa(JSON.stringify({ ...claims, user: "admin" }))
    .replace(/=+$/, "");
  assert.equal(await verifyJwt(key, `${h}.${forged}.${s}`), undefined);
  assert.equal(await verifyJwt(key, "a.b"), undefined);
});

/** A fixed signing key, and secrets the hand-written HS256 signer made with it. */
const FIXED_KEY = Uint8Array.from({ length: 32 }, (_, i) => i);
const OLD_EXPIRED =
  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyIjoiYWxpY2UiLCJpcCI6IjEwLjAuMC41IiwiZXhwIjoxNzAwMDAwMDAwfQ.t2xRfw2Fyl5RkEshgXFXRekRox8X7cCT_qVG3hCp4c8";
const OLD_VALID =
  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyIjoiYWxpY2UiLCJpcCI6IjEwLjAuMC41IiwiZXhwIjo0MTAyNDQ0ODAwfQ.uIxMKqowhjaXl8BaioDtFyvS-Vc5j3BFP4xt6PBbflI";
const OLD_UTF8 =
  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyIjoiSsO8cmdlbiDDkSIsImlwIjoiOjoxIiwiZXhwIjo0MTAyNDQ0ODAwfQ.AlY8LKmTxV7PRl-flrZqqCh_WE6LxdiZ0AttgA5h0NU";

Deno.test("secrets: the format is pinned: secrets already given out still verify, and signing makes the same bytes", async () => {
  const cases: [string, { user: string; ip: string; exp: number }][] = [
    [OLD_EXPIRED, { user: "alice", ip: "10.0.0.5", exp: 1_700_000_000 }],
    [OLD_VALID, { user: "alice", ip: "10.0.0.5", exp: 4_102_444_800 }],
    [OLD_UTF8, { user: "J\u00fcrgen \u00d1", ip: "::1", exp: 4_102_444_800 }],
  ];
  for (const [token, claims] of cases) {
    // Expired or not: the caller decides about `exp` (renew takes expired ones).
    assert.deepEqual(await verifyJwt(FIXED_KEY, token), claims);
    assert.equal(await signJwt(FIXED_KEY, claims), token);
    assert.equal(await verifyJwt(new Uint8Array(32), token), undefined);
  }
  // Tampering with any part of a correctly signed, expired secret breaks it.
  const [h, p, s] = OLD_EXPIRED.split(".");
  const flip = (t: string) => (t[0] === "A" ? "B" : "A") + t.slice(1);
  for (
    const bad of [
      `${flip(h)}.${p}.${s}`,
      `${h}.${flip(p)}.${s}`,
      `${h}.${p}.${flip(s)}`,
      `${h}.${p}.`,
      `${h}.${p}`,
      `${h}.${p}.${s}.${s}`,
    ]
  ) {
    assert.equal(await verifyJwt(FIXED_KEY, bad), undefined, bad);
  }
  // A correctly signed token whose claims are not a session's is refused.
  const noIp = await signJwt(FIXED_KEY, { user: "alice", exp: 1 } as never);
  assert.equal(await verifyJwt(FIXED_KEY, noIp), undefined);
});

Deno.test("reset cycles: durations align to the last reset; calendars to local midnight", () => {
  const day = parseResetCycle("24h");
  assert.ok(typeof day !== "string");
  const t0 = Date.parse("2026-03-02T10:00:00Z");
  assert.equal(day.current(t0 + 3.5 * 86_400_000, t0), t0 + 3 * 86_400_000);
  assert.equal(day.next(t0), t0 + 86_400_000);
  const weekly = parseResetCycle("weekly", "UTC");
  assert.ok(typeof weekly !== "string");
  // 2026-03-05 is a Thursday: the week began on Monday 2026-03-02.
  const thu = Date.parse("2026-03-05T15:00:00Z");
  assert.equal(weekly.current(thu, 0), Date.parse("2026-03-02T00:00:00Z"));
  assert.equal(
    weekly.next(Date.parse("2026-03-02T00:00:00Z")),
    Date.parse("2026-03-09T00:00:00Z"),
  );
  const monthly = parseResetCycle("monthly", "Europe/Madrid");
  assert.ok(typeof monthly !== "string");
  // Madrid is UTC+1 in winter, UTC+2 from the last Sunday of March.
  assert.equal(monthly.current(thu, 0), Date.parse("2026-02-28T23:00:00Z"));
  assert.equal(
    monthly.next(Date.parse("2026-02-28T23:00:00Z")),
    Date.parse("2026-03-31T22:00:00Z"),
  );
  const daily = parseResetCycle("daily", "Europe/Madrid");
  assert.ok(typeof daily !== "string");
  // Across the change to summer time (29 March 2026): a 23-hour day.
  const mar29 = Date.parse("2026-03-28T23:00:00Z");
  assert.equal(daily.next(mar29), Date.parse("2026-03-29T22:00:00Z"));
  assert.match(String(parseResetCycle("fortnightly")), /"daily", "weekly"/);
  assert.match(
    String(parseResetCycle("daily", "Mars/Olympus")),
    /not a time zone/,
  );
  assert.match(String(parseResetCycle("0s")), /more than 0/);
});

Deno.test("normalizeIp: an IPv4-mapped IPv6 address is its IPv4 address; others as they are", () => {
  assert.equal(normalizeIp("::ffff:10.0.0.5"), "10.0.0.5");
  assert.equal(normalizeIp("::FFFF:127.0.0.1"), "127.0.0.1");
  assert.equal(normalizeIp("10.0.0.5"), "10.0.0.5");
  assert.equal(normalizeIp("::1"), "::1");
  assert.equal(normalizeIp("::ffff:a00:5"), "::ffff:a00:5");
  assert.equal(normalizeIp("2001:db8::ffff:1.2.3.4"), "2001:db8::ffff:1.2.3.4");
});
