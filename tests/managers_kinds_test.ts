/**
 * Unit tests of the manager kinds beyond sessions and quotas: rangeIPM,
 * timeSpan, groupIPM, hostMatcher, parentProxy, netIface, bwConsR. Each
 * kind's semantics, and its configuration errors.
 */
import assert from "node:assert/strict";
import { parse } from "smol-toml";
import { ConfigError } from "../managers/types.ts";
import { rangeIpmFromTable } from "../managers/matchers/range_ipm.ts";
import {
  spanActive,
  timeSpanFromTable,
} from "../managers/matchers/time_span.ts";
import { groupIpmFromTable } from "../managers/matchers/group_ipm.ts";
import { hostMatcherFromTable } from "../managers/matchers/host_matcher.ts";
import { parentProxyFromTable } from "../managers/resources/parent_proxy.ts";
import {
  type InterfaceAddress,
  netIfaceFromTable,
} from "../managers/resources/net_iface.ts";
import {
  bwConsRFromTable,
  parseRate,
  TokenBucket,
} from "../managers/resources/bw_cons_r.ts";
import { emptyGrant, fakeCtx, kindCtx } from "./helpers/managers_kinds_ctx.ts";

type Table = Record<string, unknown>;

/** The first table of `[[kind]]` in a TOML text. */
function tableOf(toml: string, kind: string): Table {
  const doc = parse(toml) as Record<string, Table[]>;
  return doc[kind][0];
}

function configError(fn: () => unknown, ...patterns: RegExp[]): string {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(
    caught instanceof ConfigError,
    `expected a ConfigError, got ${caught}`,
  );
  for (const p of patterns) assert.match(caught.message, p);
  return caught.message;
}

// ---------------------------------------------------------------- rangeIPM

Deno.test("rangeIPM: IPv4 ranges", () => {
  const m = rangeIpmFromTable({ cidr: "10.0.0.0/8" }, kindCtx("lan"));
  assert.equal(
    m.evaluate(fakeCtx({ clientIp: "10.1.2.3" }), emptyGrant()),
    true,
  );
  assert.equal(
    m.evaluate(fakeCtx({ clientIp: "10.255.255.255" }), emptyGrant()),
    true,
  );
  assert.equal(
    m.evaluate(fakeCtx({ clientIp: "11.0.0.1" }), emptyGrant()),
    false,
  );
  assert.equal(
    m.evaluate(fakeCtx({ clientIp: "9.255.255.255" }), emptyGrant()),
    false,
  );
  const odd = rangeIpmFromTable({ cidr: "192.168.1.77/27" }, kindCtx("x"));
  assert.deepEqual(odd.show(), { name: "x", cidr: "192.168.1.64/27" });
  assert.equal(odd.contains("192.168.1.64"), true);
  assert.equal(odd.contains("192.168.1.95"), true);
  assert.equal(odd.contains("192.168.1.96"), false);
  const one = rangeIpmFromTable({ cidr: "127.0.0.1" }, kindCtx("one"));
  assert.equal(one.contains("127.0.0.1"), true);
  assert.equal(one.contains("127.0.0.2"), false);
  const all = rangeIpmFromTable({ cidr: "0.0.0.0/0" }, kindCtx("all"));
  assert.equal(all.contains("203.0.113.9"), true);
  assert.equal(
    all.contains("2001:db8::1"),
    false,
    "an IPv4 range holds no IPv6 client",
  );
  assert.equal(all.contains("not-an-ip"), false);
});

Deno.test("rangeIPM: IPv6 ranges and IPv4-mapped peers", () => {
  const v6 = rangeIpmFromTable({ cidr: "2001:db8::/32" }, kindCtx("v6"));
  assert.equal(v6.contains("2001:db8:1:2::5"), true);
  assert.equal(v6.contains("2001:db9::1"), false);
  assert.equal(v6.contains("::1"), false);
  assert.equal(v6.contains("10.0.0.1"), false);
  assert.deepEqual(v6.show(), { name: "v6", cidr: "2001:db8::/32" });
  const lo = rangeIpmFromTable({ cidr: "::1/128" }, kindCtx("lo"));
  assert.equal(lo.contains("::1"), true);
  assert.equal(lo.contains("0:0:0:0:0:0:0:1"), true);
  assert.equal(lo.contains("::2"), false);
  const odd = rangeIpmFromTable({ cidr: "fe80::/10" }, kindCtx("odd"));
  assert.equal(odd.contains("fe80::1%eth0"), true);
  assert.equal(odd.contains("febf::1"), true);
  assert.equal(odd.contains("fec0::1"), false);
  // A dual-stack socket shows an IPv4 client as ::ffff:a.b.c.d.
  const lan = rangeIpmFromTable({ cidr: "10.0.0.0/8" }, kindCtx("lan"));
  assert.equal(
    lan.evaluate(fakeCtx({ clientIp: "::ffff:10.0.0.1" }), emptyGrant()),
    true,
  );
  assert.equal(lan.contains("::FFFF:10.0.0.1"), true);
  assert.equal(
    lan.contains("::ffff:a00:1"),
    true,
    "hex form of ::ffff:10.0.0.1",
  );
  assert.equal(lan.contains("::ffff:11.0.0.1"), false);
  const mapped = rangeIpmFromTable({ cidr: "::ffff:0:0/96" }, kindCtx("m"));
  assert.equal(mapped.contains("192.0.2.1"), true);
  assert.equal(mapped.contains("2001:db8::1"), false);
});

Deno.test("rangeIPM: odd IPv4 spellings are not addresses; one check does not leak into the next", () => {
  const all = rangeIpmFromTable({ cidr: "0.0.0.0/0" }, kindCtx("all"));
  for (
    const bad of [
      "010.0.0.1",
      "1.2.3.4.",
      ".1.2.3.4",
      "1..2.3",
      "1.2.3",
      "1.2.3.4.5",
      "256.1.1.1",
      "1.2.3.1000",
      "1.2.3.-4",
      "1.2.3.4 ",
      "",
    ]
  ) {
    assert.equal(all.contains(bad), false, JSON.stringify(bad));
  }
  assert.equal(all.contains("0.0.0.0"), true);
  assert.equal(all.contains("255.255.255.255"), true);
  // An IPv6 client, then an IPv4 one: the second is read on its own.
  const lan = rangeIpmFromTable({ cidr: "10.0.0.0/8" }, kindCtx("lan"));
  assert.equal(lan.contains("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), false);
  assert.equal(lan.contains("10.0.0.1"), true);
  assert.equal(all.contains("2001:db8::1"), false);
  assert.equal(all.contains("192.0.2.1"), true);
});

Deno.test("rangeIPM: bad ranges name the value and the expected form", () => {
  for (
    const cidr of [
      "1.2.3.4::1.2.3.4/64",
      "::1.2.3.4:5/64",
      "10.0.0.0/33",
      "10.0.0/8",
      "10.0.0.256/8",
      "banana",
      "::1/129",
      "1:2:3:4:5:6:7:8:9/64",
      "10.0.0.0/x",
      "1::2::3/64",
    ]
  ) {
    configError(
      () => rangeIpmFromTable({ cidr }, kindCtx("r")),
      new RegExp(`cidr.*"${cidr.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}"`),
      /"10\.0\.0\.0\/8"/,
    );
  }
  configError(() => rangeIpmFromTable({}, kindCtx("r")), /"cidr" is missing/);
  configError(
    () => rangeIpmFromTable({ cidr: 10 }, kindCtx("r")),
    /must be a non-empty string/,
  );
});

// ---------------------------------------------------------------- timeSpan

const H = 3_600_000;

Deno.test("timeSpan: the original's formula with times and infinite", () => {
  const start = Date.UTC(2026, 0, 1, 8);
  const span = {
    form: "cycle" as const,
    start,
    active: 1 * H,
    total: 24 * H,
    times: 2,
    infinite: false,
    allTime: false,
  };
  assert.equal(spanActive(span, start - 1), false, "before start");
  assert.equal(spanActive(span, start), true);
  assert.equal(spanActive(span, start + 0.5 * H), true);
  assert.equal(spanActive(span, start + 1 * H), false, "active is half-open");
  assert.equal(spanActive(span, start + 23 * H), false);
  assert.equal(spanActive(span, start + 24.5 * H), true, "second cycle");
  assert.equal(spanActive(span, start + 48.5 * H), false, "times = 2 is over");
  assert.equal(
    spanActive({ ...span, infinite: true }, start + 480.5 * H),
    true,
  );
  assert.equal(
    spanActive({ ...span, infinite: true }, start + 481.5 * H),
    false,
  );
  assert.equal(spanActive({ ...span, times: 0 }, start), false);
  assert.equal(spanActive({ ...span, allTime: true }, 0), true);
});

Deno.test("timeSpan: from TOML, a datetime with offset, evaluated at facts.time", () => {
  const t = tableOf(
    `[[timeSpan]]
name = "morning"
[timeSpan.Span]
start = 2026-01-05T08:00:00-05:00
active = "2h"
total = "24h"
times = 3
`,
    "timeSpan",
  );
  const m = timeSpanFromTable(t, kindCtx("morning"));
  const at = (iso: string) =>
    m.evaluate(fakeCtx({ time: new Date(iso) }), emptyGrant());
  assert.equal(at("2026-01-05T13:00:00Z"), true);
  assert.equal(at("2026-01-05T14:59:59Z"), true);
  assert.equal(at("2026-01-05T15:00:00Z"), false);
  assert.equal(at("2026-01-07T13:30:00Z"), true);
  assert.equal(at("2026-01-08T13:30:00Z"), false, "three cycles only");
  assert.equal(at("2026-01-05T12:59:59Z"), false, "before start");
  const shown = m.show() as { span: Record<string, unknown> };
  assert.equal(shown.span.start, "2026-01-05T13:00:00.000Z");
  assert.equal(shown.span.active, "2h0m0s");
  const all = timeSpanFromTable({ span: { allTime: true } }, kindCtx("all"));
  assert.equal(all.activeAt(0), true);
});

Deno.test("timeSpan: a local datetime is wall-clock time in the timezone (or the machine's)", () => {
  const t = tableOf(
    `[[timeSpan]]
name = "h"
timezone = "America/Havana"
span = { start = 2026-01-05T08:00:00, active = "1h", total = "24h", infinite = true }
`,
    "timeSpan",
  );
  const m = timeSpanFromTable(t, kindCtx("h"));
  // Havana is UTC-5 in January: 08:00 there is 13:00Z.
  assert.equal(m.activeAt(Date.parse("2026-01-05T13:30:00Z")), true);
  assert.equal(m.activeAt(Date.parse("2026-01-05T08:30:00Z")), false);
  const s = timeSpanFromTable({
    timezone: "America/Havana",
    span: {
      start: "2026-01-05 08:00",
      active: "1h",
      total: "24h",
      infinite: true,
    },
  }, kindCtx("s"));
  assert.equal(s.activeAt(Date.parse("2026-01-05T13:30:00Z")), true);
  const z = timeSpanFromTable({
    span: {
      start: "2026-01-05T08:00:00Z",
      active: "1h",
      total: "24h",
      infinite: true,
    },
  }, kindCtx("z"));
  assert.equal(z.activeAt(Date.parse("2026-01-06T08:30:00Z")), true);
  // In July Havana keeps daylight-saving time (UTC-4).
  const summer = timeSpanFromTable({
    timezone: "America/Havana",
    span: {
      start: "2026-07-01T08:00",
      active: "1h",
      total: "24h",
      infinite: true,
    },
  }, kindCtx("s"));
  assert.equal(summer.activeAt(Date.parse("2026-07-01T12:30:00Z")), true);
  assert.equal(summer.activeAt(Date.parse("2026-07-01T13:30:00Z")), false);
  // Without a timezone key: this machine's zone (try TZ=Asia/Tokyo).
  const local = timeSpanFromTable(
    tableOf(
      `[[timeSpan]]\nname = "l"\nspan = { start = 2026-01-05T08:00:00, active = "1h", total = "24h", infinite = true }\n`,
      "timeSpan",
    ),
    kindCtx("l"),
  );
  const eight = new Date(2026, 0, 5, 8, 30).getTime();
  assert.equal(local.activeAt(eight), true);
  assert.equal(local.activeAt(eight + H), false);
});

Deno.test("timeSpan: week form with days, from, to and a timezone", () => {
  const m = timeSpanFromTable({
    days: ["mon-fri", "sat"],
    from: "08:00",
    to: "20:00",
    timezone: "America/Havana",
  }, kindCtx("work"));
  // 2026-01-05 is a Monday; Havana is UTC-5.
  const at = (iso: string) =>
    m.evaluate(fakeCtx({ time: new Date(iso) }), emptyGrant());
  assert.equal(at("2026-01-05T13:00:00Z"), true, "Mon 08:00 Havana");
  assert.equal(at("2026-01-05T12:59:00Z"), false, "Mon 07:59 Havana");
  // Remembered per minute: the next minute and a clock set back are read anew.
  assert.equal(at("2026-01-05T12:59:59.999Z"), false, "Mon 07:59:59.999");
  assert.equal(at("2026-01-05T13:00:00.000Z"), true, "Mon 08:00:00.000");
  assert.equal(at("2026-01-05T13:00:59.999Z"), true, "same minute");
  assert.equal(at("2026-01-05T12:59:30Z"), false, "clock set back");
  assert.equal(
    at("2026-01-06T00:59:00Z"),
    true,
    "Mon 19:59 Havana (Tue in UTC)",
  );
  assert.equal(at("2026-01-06T01:00:00Z"), false, "Mon 20:00 Havana");
  assert.equal(at("2026-01-10T15:00:00Z"), true, "Saturday");
  assert.equal(at("2026-01-11T15:00:00Z"), false, "Sunday");
  // Across midnight: the window belongs to the day it starts on.
  const night = timeSpanFromTable({
    days: ["fri"],
    from: "22:00",
    to: "06:00",
    timezone: "UTC",
  }, kindCtx("n"));
  assert.equal(
    night.activeAt(Date.parse("2026-01-09T23:00:00Z")),
    true,
    "Fri 23:00",
  );
  assert.equal(
    night.activeAt(Date.parse("2026-01-10T05:59:00Z")),
    true,
    "Sat 05:59",
  );
  assert.equal(
    night.activeAt(Date.parse("2026-01-10T06:00:00Z")),
    false,
    "Sat 06:00",
  );
  assert.equal(
    night.activeAt(Date.parse("2026-01-10T23:00:00Z")),
    false,
    "Sat 23:00",
  );
  assert.equal(
    night.activeAt(Date.parse("2026-01-09T05:00:00Z")),
    false,
    "Fri 05:00 (Thursday's night)",
  );
  // Wrapping day ranges and whole days.
  const weekend = timeSpanFromTable(
    { days: "sat-sun", timezone: "UTC" },
    kindCtx("w"),
  );
  assert.equal(weekend.activeAt(Date.parse("2026-01-10T00:00:00Z")), true);
  assert.equal(weekend.activeAt(Date.parse("2026-01-11T23:59:00Z")), true);
  assert.equal(weekend.activeAt(Date.parse("2026-01-12T00:00:00Z")), false);
  const wrap = timeSpanFromTable(
    { days: ["fri-mon"], timezone: "UTC" },
    kindCtx("f"),
  );
  assert.deepEqual((wrap.show() as { days: string[] }).days, [
    "sun",
    "mon",
    "fri",
    "sat",
  ]);
  assert.deepEqual(m.show(), {
    name: "work",
    days: ["mon", "tue", "wed", "thu", "fri", "sat"],
    from: "08:00",
    to: "20:00",
    timezone: "America/Havana",
  });
});

Deno.test("timeSpan: configuration errors say what to write", () => {
  const cycle = {
    start: "2026-01-05T08:00:00Z",
    active: "1h",
    total: "24h",
    times: 1,
  };
  configError(
    () => timeSpanFromTable({}, kindCtx("t")),
    /says nothing about time/,
    /days = \["mon-fri"\]/,
  );
  configError(
    () =>
      timeSpanFromTable({ span: { ...cycle, active: "1 hour" } }, kindCtx("t")),
    /span\.active/,
    /not a duration/,
  );
  configError(
    () =>
      timeSpanFromTable({ span: { ...cycle, active: "25h" } }, kindCtx("t")),
    /span\.active.*longer than "span\.total"/,
  );
  configError(
    () =>
      timeSpanFromTable(
        { span: { ...cycle, total: "0s", active: "0s" } },
        kindCtx("t"),
      ),
    /span\.total.*longer than 0/,
  );
  configError(
    () =>
      timeSpanFromTable({ span: { ...cycle, times: undefined } }, kindCtx("t")),
    /span\.times.*infinite = true/,
  );
  configError(
    () => timeSpanFromTable({ span: { ...cycle, times: "3" } }, kindCtx("t")),
    /span\.times.*whole number/,
  );
  configError(
    () =>
      timeSpanFromTable(
        { span: { ...cycle, start: "yesterday" } },
        kindCtx("t"),
      ),
    /span\.start.*"yesterday".*2024-01-01T08:00:00/,
  );
  configError(
    () =>
      timeSpanFromTable({
        span: { ...cycle, start: "2026-02-30T08:00:00" },
      }, kindCtx("t")),
    /not a real date/,
  );
  configError(
    () => timeSpanFromTable({ span: { ...cycle, actve: "1h" } }, kindCtx("t")),
    /unknown key "span\.actve".*did you mean "span\.active"/,
  );
  configError(
    () => timeSpanFromTable({ span: { active: "1h" } }, kindCtx("t")),
    /span\.start", "span\.total" missing/,
  );
  configError(
    () => timeSpanFromTable({ span: cycle, days: ["mon"] }, kindCtx("t")),
    /both "span".*"days"/,
  );
  configError(
    () => timeSpanFromTable({ days: ["monday-fry"] }, kindCtx("t")),
    /days.*"monday-fry".*"mon-fri"/,
  );
  configError(() => timeSpanFromTable({ days: [] }, kindCtx("t")), /days/);
  configError(
    () => timeSpanFromTable({ days: ["mon"], from: "8am" }, kindCtx("t")),
    /"from" must be a time of day.*"08:00"/,
  );
  configError(
    () => timeSpanFromTable({ days: ["mon"], to: "25:00" }, kindCtx("t")),
    /"to" must be a time of day/,
  );
  configError(
    () =>
      timeSpanFromTable(
        { days: ["mon"], timezone: "Mars/Olympus" },
        kindCtx("t"),
      ),
    /timezone.*"Mars\/Olympus".*America\/Havana/,
  );
  const toml = tableOf(
    `[[timeSpan]]\nname = "t"\nspan = { start = 08:00:00, active = "1h", total = "2h", infinite = true }\n`,
    "timeSpan",
  );
  configError(
    () => timeSpanFromTable(toml, kindCtx("t")),
    /span\.start.*time of day without a date/,
  );
});

// ---------------------------------------------------------------- groupIPM

Deno.test("groupIPM: true only for a logged user in the group", () => {
  const m = groupIpmFromTable(
    { group: "staff", userDBN: "map" },
    kindCtx("staff", { userDbs: ["map"] }),
  );
  const groups = { map: ["staff", "group0"], other: ["nobody"] };
  assert.equal(
    m.evaluate(fakeCtx({}, { user: "ana", groups }), emptyGrant()),
    true,
  );
  assert.equal(
    m.evaluate(
      fakeCtx({}, { user: "ana", groups: { map: ["group0"] } }),
      emptyGrant(),
    ),
    false,
  );
  assert.equal(
    m.evaluate(fakeCtx({}, { groups }), emptyGrant()),
    false,
    "nobody logged in",
  );
  assert.deepEqual(m.show(), { name: "staff", group: "staff", userDBN: "map" });
  configError(
    () =>
      groupIpmFromTable(
        { group: "staff", userDBN: "ldap" },
        kindCtx("g", { userDbs: ["map"] }),
      ),
    /userDBN.*"ldap".*map/,
  );
  configError(
    () => groupIpmFromTable({ userDBN: "map" }, kindCtx("g")),
    /"group" is missing/,
  );
});

// ---------------------------------------------------------------- hostMatcher

Deno.test("hostMatcher: the pattern is tested against the host name, without port", () => {
  const m = hostMatcherFromTable(
    tableOf(
      `[[hostMatcher]]\nname = "cu"\npattern = '(^|\\.)cu$'\n`,
      "hostMatcher",
    ),
    kindCtx("cu"),
  );
  const at = (host: string, port = 443) =>
    m.evaluate(fakeCtx({ host, port }), emptyGrant());
  assert.equal(at("www.uh.cu"), true);
  assert.equal(at("cu"), true);
  assert.equal(at("cu.example.org"), false);
  assert.equal(at("educu"), false);
  assert.equal(at("WWW.UH.CU"), false, "case-sensitive by default");
  const ci = hostMatcherFromTable({
    pattern: "\\.cu$",
    ignoreCase: true,
  }, kindCtx("ci"));
  assert.equal(ci.matches("WWW.UH.CU", 80), true);
  const port = hostMatcherFromTable(
    { pattern: ":443$", matchPort: true },
    kindCtx("p"),
  );
  assert.equal(port.matches("example.org", 443), true);
  assert.equal(port.matches("example.org", 80), false);
  const v6 = hostMatcherFromTable({
    pattern: "^\\[2001:db8::1\\]:443$",
    matchPort: true,
  }, kindCtx("v6"));
  assert.equal(v6.matches("2001:db8::1", 443), true);
  assert.deepEqual(port.show(), {
    name: "p",
    pattern: ":443$",
    matchPort: true,
    ignoreCase: false,
  });
});

Deno.test("hostMatcher: a bad pattern names the pattern, the engine's reason and the column", () => {
  configError(
    () => hostMatcherFromTable({ pattern: "a(b)(c" }, kindCtx("h")),
    /pattern 'a\(b\)\(c'/,
    /Unterminated group/,
    /column 5/,
  );
  configError(
    () => hostMatcherFromTable({ pattern: "ab**" }, kindCtx("h")),
    /Nothing to repeat/,
    /column 4/,
  );
  configError(
    () => hostMatcherFromTable({ pattern: "x)" }, kindCtx("h")),
    /Unmatched '\)'/,
    /column 2/,
  );
  configError(
    () => hostMatcherFromTable({ pattern: "^https?://.*\\.cu/" }, kindCtx("h")),
    /"\:\/\/".*host name only/,
  );
  configError(
    () => hostMatcherFromTable({}, kindCtx("h")),
    /"pattern" is missing/,
  );
  configError(
    () =>
      hostMatcherFromTable({ pattern: "x", matchPort: "yes" }, kindCtx("h")),
    /"matchPort" must be true or false/,
  );
});

// ---------------------------------------------------------------- parentProxy

Deno.test("parentProxy: sets the route and keeps a local address already set", () => {
  const m = parentProxyFromTable({
    proxyURL: "http://u:secret@10.0.0.1:3128",
  }, kindCtx("up"));
  const g = emptyGrant();
  assert.equal(m.evaluate(fakeCtx(), g), true);
  assert.deepEqual(g.route, {
    kind: "parent",
    proxyUrl: "http://u:secret@10.0.0.1:3128",
  });
  const g2 = emptyGrant();
  g2.route = { kind: "direct", localAddress: "192.0.2.2" };
  m.evaluate(fakeCtx(), g2);
  assert.deepEqual(g2.route, {
    kind: "parent",
    proxyUrl: "http://u:secret@10.0.0.1:3128",
    localAddress: "192.0.2.2",
  });
  assert.deepEqual(m.show(), {
    name: "up",
    proxyURL: "http://u:***@10.0.0.1:3128",
  });
  for (
    const ok of [
      "socks5://10.0.0.1:1080",
      "http://[::1]:8080/",
      "http://proxy.example.org:80",
    ]
  ) {
    parentProxyFromTable({ proxyURL: ok }, kindCtx("ok"));
  }
});

Deno.test("parentProxy: show hides a password that holds an @ or a user that holds one", () => {
  for (
    const [url, shown] of [
      ["http://u:p@ss@10.0.0.1:3128", "http://u:***@10.0.0.1:3128"],
      ["socks5://u@x:s3cr@t@10.0.0.1:1080", "socks5://u@x:***@10.0.0.1:1080"],
      ["http://u@10.0.0.1:3128", "http://u@10.0.0.1:3128"],
      ["http://10.0.0.1:3128", "http://10.0.0.1:3128"],
    ]
  ) {
    const m = parentProxyFromTable({ proxyURL: url }, kindCtx("up"));
    assert.deepEqual(m.show(), { name: "up", proxyURL: shown });
  }
});

Deno.test("parentProxy: bad URLs say which part is wrong", () => {
  configError(
    () => parentProxyFromTable({ proxyURL: "10.0.0.1:3128" }, kindCtx("p")),
    /proxyURL.*not a proxy URL.*http:\/\/10\.0\.0\.1:3128/,
  );
  configError(
    () =>
      parentProxyFromTable({ proxyURL: "https://10.0.0.1:3128" }, kindCtx("p")),
    /"https:\/\/" is not supported/,
  );
  configError(
    () => parentProxyFromTable({ proxyURL: "http://10.0.0.1" }, kindCtx("p")),
    /needs a host and a port/,
  );
  configError(
    () =>
      parentProxyFromTable({ proxyURL: "http://10.0.0.1:99999" }, kindCtx("p")),
    /port 99999/,
  );
  configError(
    () =>
      parentProxyFromTable(
        { proxyURL: "http://10.0.0.1:3128/path" },
        kindCtx("p"),
      ),
    /not a proxy URL/,
  );
  configError(
    () => parentProxyFromTable({}, kindCtx("p")),
    /"proxyURL" is missing/,
  );
});

// ---------------------------------------------------------------- netIface

const IFACES: InterfaceAddress[] = [
  { name: "lo", family: "IPv4", address: "127.0.0.1" },
  { name: "lo", family: "IPv6", address: "::1" },
  { name: "eth0", family: "IPv6", address: "fe80::1" },
  { name: "eth0", family: "IPv6", address: "fd00::2" },
  { name: "eth0", family: "IPv4", address: "192.0.2.2" },
  { name: "tun0", family: "IPv6", address: "fe80::9" },
];

Deno.test("netIface: the interface's address, IPv4 first, is the source address", () => {
  const m = netIfaceFromTable({ iface: "eth0" }, kindCtx("wan"), {
    interfaces: IFACES,
  });
  assert.equal(m.localAddress, "192.0.2.2");
  const g = emptyGrant();
  assert.equal(m.evaluate(fakeCtx(), g), true);
  assert.deepEqual(g.route, { kind: "direct", localAddress: "192.0.2.2" });
  // A parent reached before keeps its URL and gets the source address.
  const g2 = emptyGrant();
  g2.route = { kind: "parent", proxyUrl: "http://10.0.0.1:3128" };
  m.evaluate(fakeCtx(), g2);
  assert.deepEqual(g2.route, {
    kind: "parent",
    proxyUrl: "http://10.0.0.1:3128",
    localAddress: "192.0.2.2",
  });
  // Then a parent reached after keeps the interface.
  const p = parentProxyFromTable(
    { proxyURL: "socks5://10.0.0.9:1080" },
    kindCtx("p"),
  );
  p.evaluate(fakeCtx(), g);
  assert.deepEqual(g.route, {
    kind: "parent",
    proxyUrl: "socks5://10.0.0.9:1080",
    localAddress: "192.0.2.2",
  });
  const v6only = netIfaceFromTable({ iface: "eth0" }, kindCtx("v6"), {
    interfaces: IFACES.filter((a) => a.family === "IPv6"),
  });
  assert.equal(v6only.localAddress, "fd00::2", "global IPv6 before link-local");
  const byAddr = netIfaceFromTable({ addr: "127.0.0.1" }, kindCtx("a"), {
    interfaces: IFACES,
  });
  assert.equal(byAddr.localAddress, "127.0.0.1");
  const ipAsIface = netIfaceFromTable({ iface: "::1" }, kindCtx("b"), {
    interfaces: IFACES,
  });
  assert.equal(ipAsIface.localAddress, "::1");
  // The real machine: loopback is always there.
  const real = netIfaceFromTable({ iface: "lo" }, kindCtx("lo"));
  assert.equal(real.localAddress, "127.0.0.1");
});

Deno.test("netIface: a missing interface or address is refused at load with the machine's list", () => {
  configError(
    () =>
      netIfaceFromTable({ iface: "eth7" }, kindCtx("n"), {
        interfaces: IFACES,
      }),
    /iface: iface = "eth7": interface eth7 not found; this machine has: lo \(127\.0\.0\.1, ::1\), eth0 /,
  );
  configError(
    () =>
      netIfaceFromTable({ iface: "tun0" }, kindCtx("n"), {
        interfaces: IFACES,
      }),
    /tun0 has no usable address/,
  );
  configError(
    () =>
      netIfaceFromTable({ addr: "10.9.9.9" }, kindCtx("n"), {
        interfaces: IFACES,
      }),
    /addr: addr = "10\.9\.9\.9": address 10\.9\.9\.9 is not an address of this machine/,
  );
  configError(
    () =>
      netIfaceFromTable({ addr: "eth0" }, kindCtx("n"), { interfaces: IFACES }),
    /"addr" = "eth0" is not an IPv4 or IPv6 address/,
  );
  configError(
    () => netIfaceFromTable({}, kindCtx("n"), { interfaces: IFACES }),
    /needs "iface"/,
  );
  configError(
    () =>
      netIfaceFromTable({ iface: "lo", addr: "127.0.0.1" }, kindCtx("n"), {
        interfaces: IFACES,
      }),
    /both "iface" and "addr"/,
  );
});

// ---------------------------------------------------------------- bwConsR

Deno.test("bwConsR: the token bucket lets through about `rate` bytes per simulated second", () => {
  for (
    const [rate, chunk] of [[512 * 1024, 16 * 1024], [64 * 1024, 256 * 1024], [
      1000,
      1,
    ]]
  ) {
    let clock = 0;
    const bucket = new TokenBucket(rate, rate, () => clock);
    let bytes = 0;
    let waits = 0;
    // A reader that waits exactly as told, for 10 simulated seconds.
    for (let i = 0; i < 1_000_000 && clock < 10_000; i++) {
      const wait = bucket.chunk(chunk);
      bytes += chunk;
      assert.ok(wait >= 0 && Number.isInteger(wait), `wait ${wait}`);
      if (wait > 0) {
        waits++;
        clock += wait;
      }
    }
    assert.ok(clock >= 10_000, "the loop ran for the simulated time");
    // The burst (one second of rate) plus rate per second, within one chunk
    // and 2 % for rounding waits up to whole milliseconds.
    const expected = rate * (clock / 1000) + rate;
    assert.ok(
      Math.abs(bytes - expected) <= chunk + expected * 0.02,
      `rate ${rate}, chunk ${chunk}: ${bytes} bytes in ${clock} ms, expected ≈ ${expected}`,
    );
    assert.ok(waits > 0);
  }
});

Deno.test("bwConsR: go on while tokens last, then the wait until they would", () => {
  let clock = 1000;
  const bucket = new TokenBucket(1000, 500, () => clock);
  assert.equal(bucket.chunk(400), 0);
  assert.equal(bucket.chunk(100), 0);
  assert.equal(bucket.chunk(250), 250, "250 bytes in debt at 1000 B/s");
  clock += 250;
  assert.equal(bucket.chunk(0), 0);
  clock += 10_000;
  assert.equal(bucket.tokens, 500, "refill stops at burst");
  assert.equal(bucket.chunk(5000), 4500);
});

Deno.test("bwConsR: one bucket per user, shared and reused; per client IP without a user", () => {
  let clock = 0;
  const m = bwConsRFromTable(
    { rate: "1 KiB/s", userDBN: "map" },
    kindCtx("bw", { userDbs: ["map"] }),
    { now: () => clock },
  );
  const g1 = emptyGrant();
  const g2 = emptyGrant();
  assert.equal(
    m.evaluate(fakeCtx({ clientIp: "10.0.0.1" }, { user: "ana" }), g1),
    true,
  );
  m.evaluate(fakeCtx({ clientIp: "10.0.0.2" }, { user: "ana" }), g2);
  assert.equal(g1.meters.length, 1);
  assert.equal(
    g1.meters[0],
    g2.meters[0],
    "the same meter object for both connections of ana",
  );
  assert.equal(g1.meters[0].chunk(1024), 0);
  assert.ok(
    g2.meters[0].chunk(512) >= 500,
    "the second connection shares the emptied bucket",
  );
  const g3 = emptyGrant();
  m.evaluate(fakeCtx({ clientIp: "10.0.0.1" }), g3);
  assert.notEqual(g3.meters[0], g1.meters[0], "no user: the bucket of the IP");
  assert.equal(g3.meters[0].chunk(1024), 0);
  const g4 = emptyGrant();
  m.evaluate(fakeCtx({ clientIp: "10.0.0.1" }), g4);
  assert.equal(g4.meters[0], g3.meters[0]);
  assert.equal(m.size, 2);
  assert.deepEqual(m.show(), {
    name: "bw",
    rate: "1 KB/s",
    burst: "1 KB",
    userDBN: "map",
  });
  clock += 5;
});

Deno.test("bwConsR: rates and configuration errors", () => {
  assert.equal(parseRate("512 KiB/s"), 512 * 1024);
  assert.equal(parseRate("1 MB/s"), 1024 * 1024);
  assert.equal(parseRate("2MBps"), 2 * 1024 * 1024);
  assert.equal(parseRate(4096), 4096);
  const b = bwConsRFromTable({ rate: "1 MiB/s", burst: "4 MiB" }, kindCtx("b"));
  assert.equal(b.burst, 4 * 1024 * 1024);
  configError(
    () => bwConsRFromTable({}, kindCtx("b")),
    /"rate" is missing.*512 KiB\/s/,
  );
  configError(
    () => bwConsRFromTable({ rate: "fast" }, kindCtx("b")),
    /rate.*"fast" is not a rate.*"512 KiB\/s"/,
  );
  configError(
    () => bwConsRFromTable({ rate: "8 Mbit/s" }, kindCtx("b")),
    /in bits/,
  );
  configError(
    () => bwConsRFromTable({ rate: "0 KiB/s" }, kindCtx("b")),
    /more than 0/,
  );
  configError(
    () => bwConsRFromTable({ rate: "1 KiB/s", burst: "lots" }, kindCtx("b")),
    /"burst" must be a size/,
  );
  configError(
    () =>
      bwConsRFromTable(
        { rate: "1 KiB/s", userDBN: "x" },
        kindCtx("b", { userDbs: ["map"] }),
      ),
    /userDBN.*"x".*map/,
  );
});
