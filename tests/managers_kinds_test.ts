/**
 * Unit tests of the manager kinds beyond sessions and quotas: rangeIPM,
 * timeSpan, groupIPM, hostMatcher, parentProxy, netIface, bwConsR. Each
 * kind's semantics, and its configuration errors.
 */
import assert from "node:assert/strict";
import { parse } from "smol-toml";
import { ConfigError } from "../managers/types.ts";
import { rangeIpmFromFields } from "../managers/matchers/range_ipm.ts";
import {
  spanActive,
  timeSpanFromFields,
} from "../managers/matchers/time_span.ts";
import { groupIpmFromFields } from "../managers/matchers/group_ipm.ts";
import { hostMatcherFromFields } from "../managers/matchers/host_matcher.ts";
import { parentProxyFromFields } from "../managers/resources/parent_proxy.ts";
import {
  type InterfaceAddress,
  netIfaceFromFields,
} from "../managers/resources/net_iface.ts";
import {
  bwConsRFromFields,
  parseRate,
  TokenBucket,
} from "../managers/resources/bw_cons_r.ts";
import { emptyGrant, failAt, fakeCtx } from "./helpers/managers_kinds_ctx.ts";

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
  const m = rangeIpmFromFields("lan", { cidr: "10.0.0.0/8" }, failAt);
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
  const odd = rangeIpmFromFields("x", { cidr: "192.168.1.77/27" }, failAt);
  assert.deepEqual(odd.show(), { name: "x", cidr: "192.168.1.64/27" });
  assert.equal(odd.contains("192.168.1.64"), true);
  assert.equal(odd.contains("192.168.1.95"), true);
  assert.equal(odd.contains("192.168.1.96"), false);
  const one = rangeIpmFromFields("one", { cidr: "127.0.0.1" }, failAt);
  assert.equal(one.contains("127.0.0.1"), true);
  assert.equal(one.contains("127.0.0.2"), false);
  const all = rangeIpmFromFields("all", { cidr: "0.0.0.0/0" }, failAt);
  assert.equal(all.contains("203.0.113.9"), true);
  assert.equal(
    all.contains("2001:db8::1"),
    false,
    "an IPv4 range holds no IPv6 client",
  );
  assert.equal(all.contains("not-an-ip"), false);
});

Deno.test("rangeIPM: IPv6 ranges and IPv4-mapped peers", () => {
  const v6 = rangeIpmFromFields("v6", { cidr: "2001:db8::/32" }, failAt);
  assert.equal(v6.contains("2001:db8:1:2::5"), true);
  assert.equal(v6.contains("2001:db9::1"), false);
  assert.equal(v6.contains("::1"), false);
  assert.equal(v6.contains("10.0.0.1"), false);
  assert.deepEqual(v6.show(), { name: "v6", cidr: "2001:db8::/32" });
  const lo = rangeIpmFromFields("lo", { cidr: "::1/128" }, failAt);
  assert.equal(lo.contains("::1"), true);
  assert.equal(lo.contains("0:0:0:0:0:0:0:1"), true);
  assert.equal(lo.contains("::2"), false);
  const odd = rangeIpmFromFields("odd", { cidr: "fe80::/10" }, failAt);
  assert.equal(odd.contains("fe80::1%eth0"), true);
  assert.equal(odd.contains("febf::1"), true);
  assert.equal(odd.contains("fec0::1"), false);
  // A dual-stack socket shows an IPv4 client as ::ffff:a.b.c.d.
  const lan = rangeIpmFromFields("lan", { cidr: "10.0.0.0/8" }, failAt);
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
  const mapped = rangeIpmFromFields("m", { cidr: "::ffff:0:0/96" }, failAt);
  assert.equal(mapped.contains("192.0.2.1"), true);
  assert.equal(mapped.contains("2001:db8::1"), false);
});

Deno.test("rangeIPM: odd IPv4 spellings are not addresses; one check does not leak into the next", () => {
  const all = rangeIpmFromFields("all", { cidr: "0.0.0.0/0" }, failAt);
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
  const lan = rangeIpmFromFields("lan", { cidr: "10.0.0.0/8" }, failAt);
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
      () => rangeIpmFromFields("r", { cidr }, failAt),
      new RegExp(`cidr.*"${cidr.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}"`),
      /"10\.0\.0\.0\/8"/,
    );
  }
  configError(() => rangeIpmFromFields("r", {}, failAt), /"cidr" is missing/);
  configError(
    () => rangeIpmFromFields("r", { cidr: 10 }, failAt),
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
  const m = timeSpanFromFields("morning", t, failAt);
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
  const all = timeSpanFromFields("all", { span: { allTime: true } }, failAt);
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
  const m = timeSpanFromFields("h", t, failAt);
  // Havana is UTC-5 in January: 08:00 there is 13:00Z.
  assert.equal(m.activeAt(Date.parse("2026-01-05T13:30:00Z")), true);
  assert.equal(m.activeAt(Date.parse("2026-01-05T08:30:00Z")), false);
  const s = timeSpanFromFields(
    "s",
    {
      timezone: "America/Havana",
      span: {
        start: "2026-01-05 08:00",
        active: "1h",
        total: "24h",
        infinite: true,
      },
    },
    failAt,
  );
  assert.equal(s.activeAt(Date.parse("2026-01-05T13:30:00Z")), true);
  const z = timeSpanFromFields(
    "z",
    {
      span: {
        start: "2026-01-05T08:00:00Z",
        active: "1h",
        total: "24h",
        infinite: true,
      },
    },
    failAt,
  );
  assert.equal(z.activeAt(Date.parse("2026-01-06T08:30:00Z")), true);
  // In July Havana keeps daylight-saving time (UTC-4).
  const summer = timeSpanFromFields(
    "s",
    {
      timezone: "America/Havana",
      span: {
        start: "2026-07-01T08:00",
        active: "1h",
        total: "24h",
        infinite: true,
      },
    },
    failAt,
  );
  assert.equal(summer.activeAt(Date.parse("2026-07-01T12:30:00Z")), true);
  assert.equal(summer.activeAt(Date.parse("2026-07-01T13:30:00Z")), false);
  // Without a timezone key: this machine's zone (try TZ=Asia/Tokyo).
  const local = timeSpanFromFields(
    "l",
    tableOf(
      `[[timeSpan]]\nname = "l"\nspan = { start = 2026-01-05T08:00:00, active = "1h", total = "24h", infinite = true }\n`,
      "timeSpan",
    ),
    failAt,
  );
  const eight = new Date(2026, 0, 5, 8, 30).getTime();
  assert.equal(local.activeAt(eight), true);
  assert.equal(local.activeAt(eight + H), false);
});

Deno.test("timeSpan: week form with days, from, to and a timezone", () => {
  const m = timeSpanFromFields(
    "work",
    {
      days: ["mon-fri", "sat"],
      from: "08:00",
      to: "20:00",
      timezone: "America/Havana",
    },
    failAt,
  );
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
  const night = timeSpanFromFields("n", {
    days: ["fri"],
    from: "22:00",
    to: "06:00",
    timezone: "UTC",
  }, failAt);
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
  const weekend = timeSpanFromFields(
    "w",
    { days: "sat-sun", timezone: "UTC" },
    failAt,
  );
  assert.equal(weekend.activeAt(Date.parse("2026-01-10T00:00:00Z")), true);
  assert.equal(weekend.activeAt(Date.parse("2026-01-11T23:59:00Z")), true);
  assert.equal(weekend.activeAt(Date.parse("2026-01-12T00:00:00Z")), false);
  const wrap = timeSpanFromFields(
    "f",
    { days: ["fri-mon"], timezone: "UTC" },
    failAt,
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
    () => timeSpanFromFields("t", {}, failAt),
    /says nothing about time/,
    /days = \["mon-fri"\]/,
  );
  configError(
    () =>
      timeSpanFromFields("t", { span: { ...cycle, active: "1 hour" } }, failAt),
    /span\.active/,
    /not a duration/,
  );
  configError(
    () =>
      timeSpanFromFields("t", { span: { ...cycle, active: "25h" } }, failAt),
    /span\.active.*longer than "span\.total"/,
  );
  configError(
    () =>
      timeSpanFromFields(
        "t",
        { span: { ...cycle, total: "0s", active: "0s" } },
        failAt,
      ),
    /span\.total.*longer than 0/,
  );
  configError(
    () =>
      timeSpanFromFields("t", { span: { ...cycle, times: undefined } }, failAt),
    /span\.times.*infinite = true/,
  );
  configError(
    () => timeSpanFromFields("t", { span: { ...cycle, times: "3" } }, failAt),
    /span\.times.*whole number/,
  );
  configError(
    () =>
      timeSpanFromFields(
        "t",
        { span: { ...cycle, start: "yesterday" } },
        failAt,
      ),
    /span\.start.*"yesterday".*2024-01-01T08:00:00/,
  );
  configError(
    () =>
      timeSpanFromFields("t", {
        span: { ...cycle, start: "2026-02-30T08:00:00" },
      }, failAt),
    /not a real date/,
  );
  configError(
    () => timeSpanFromFields("t", { span: { ...cycle, actve: "1h" } }, failAt),
    /unknown key "span\.actve".*did you mean "span\.active"/,
  );
  configError(
    () => timeSpanFromFields("t", { span: { active: "1h" } }, failAt),
    /span\.start", "span\.total" missing/,
  );
  configError(
    () => timeSpanFromFields("t", { span: cycle, days: ["mon"] }, failAt),
    /both "span".*"days"/,
  );
  configError(
    () => timeSpanFromFields("t", { days: ["monday-fry"] }, failAt),
    /days.*"monday-fry".*"mon-fri"/,
  );
  configError(() => timeSpanFromFields("t", { days: [] }, failAt), /days/);
  configError(
    () => timeSpanFromFields("t", { days: ["mon"], from: "8am" }, failAt),
    /"from" must be a time of day.*"08:00"/,
  );
  configError(
    () => timeSpanFromFields("t", { days: ["mon"], to: "25:00" }, failAt),
    /"to" must be a time of day/,
  );
  configError(
    () =>
      timeSpanFromFields(
        "t",
        { days: ["mon"], timezone: "Mars/Olympus" },
        failAt,
      ),
    /timezone.*"Mars\/Olympus".*America\/Havana/,
  );
  const toml = tableOf(
    `[[timeSpan]]\nname = "t"\nspan = { start = 08:00:00, active = "1h", total = "2h", infinite = true }\n`,
    "timeSpan",
  );
  configError(
    () => timeSpanFromFields("t", toml, failAt),
    /span\.start.*time of day without a date/,
  );
});

// ---------------------------------------------------------------- groupIPM

Deno.test("groupIPM: true only for a logged user in the group", () => {
  const m = groupIpmFromFields(
    "staff",
    { group: "staff", userDBN: "map" },
    failAt,
    { userDbs: ["map"] },
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
      groupIpmFromFields("g", { group: "staff", userDBN: "ldap" }, failAt, {
        userDbs: ["map"],
      }),
    /userDBN.*"ldap".*map/,
  );
  configError(
    () => groupIpmFromFields("g", { userDBN: "map" }, failAt),
    /"group" is missing/,
  );
});

// ---------------------------------------------------------------- hostMatcher

Deno.test("hostMatcher: the pattern is tested against the host name, without port", () => {
  const m = hostMatcherFromFields(
    "cu",
    tableOf(
      `[[hostMatcher]]\nname = "cu"\npattern = '(^|\\.)cu$'\n`,
      "hostMatcher",
    ),
    failAt,
  );
  const at = (host: string, port = 443) =>
    m.evaluate(fakeCtx({ host, port }), emptyGrant());
  assert.equal(at("www.uh.cu"), true);
  assert.equal(at("cu"), true);
  assert.equal(at("cu.example.org"), false);
  assert.equal(at("educu"), false);
  assert.equal(at("WWW.UH.CU"), false, "case-sensitive by default");
  const ci = hostMatcherFromFields("ci", {
    pattern: "\\.cu$",
    ignoreCase: true,
  }, failAt);
  assert.equal(ci.matches("WWW.UH.CU", 80), true);
  const port = hostMatcherFromFields(
    "p",
    { pattern: ":443$", matchPort: true },
    failAt,
  );
  assert.equal(port.matches("example.org", 443), true);
  assert.equal(port.matches("example.org", 80), false);
  const v6 = hostMatcherFromFields("v6", {
    pattern: "^\\[2001:db8::1\\]:443$",
    matchPort: true,
  }, failAt);
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
    () => hostMatcherFromFields("h", { pattern: "a(b)(c" }, failAt),
    /pattern 'a\(b\)\(c'/,
    /Unterminated group/,
    /column 5/,
  );
  configError(
    () => hostMatcherFromFields("h", { pattern: "ab**" }, failAt),
    /Nothing to repeat/,
    /column 4/,
  );
  configError(
    () => hostMatcherFromFields("h", { pattern: "x)" }, failAt),
    /Unmatched '\)'/,
    /column 2/,
  );
  configError(
    () => hostMatcherFromFields("h", { pattern: "^https?://.*\\.cu/" }, failAt),
    /"\:\/\/".*host name only/,
  );
  configError(
    () => hostMatcherFromFields("h", {}, failAt),
    /"pattern" is missing/,
  );
  configError(
    () =>
      hostMatcherFromFields("h", { pattern: "x", matchPort: "yes" }, failAt),
    /"matchPort" must be true or false/,
  );
});

// ---------------------------------------------------------------- parentProxy

Deno.test("parentProxy: sets the route and keeps a local address already set", () => {
  const m = parentProxyFromFields("up", {
    proxyURL: "http://u:secret@10.0.0.1:3128",
  }, failAt);
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
    parentProxyFromFields("ok", { proxyURL: ok }, failAt);
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
    const m = parentProxyFromFields("up", { proxyURL: url }, failAt);
    assert.deepEqual(m.show(), { name: "up", proxyURL: shown });
  }
});

Deno.test("parentProxy: bad URLs say which part is wrong", () => {
  configError(
    () => parentProxyFromFields("p", { proxyURL: "10.0.0.1:3128" }, failAt),
    /proxyURL.*not a proxy URL.*http:\/\/10\.0\.0\.1:3128/,
  );
  configError(
    () =>
      parentProxyFromFields("p", { proxyURL: "https://10.0.0.1:3128" }, failAt),
    /"https:\/\/" is not supported/,
  );
  configError(
    () => parentProxyFromFields("p", { proxyURL: "http://10.0.0.1" }, failAt),
    /needs a host and a port/,
  );
  configError(
    () =>
      parentProxyFromFields("p", { proxyURL: "http://10.0.0.1:99999" }, failAt),
    /port 99999/,
  );
  configError(
    () =>
      parentProxyFromFields(
        "p",
        { proxyURL: "http://10.0.0.1:3128/path" },
        failAt,
      ),
    /not a proxy URL/,
  );
  configError(
    () => parentProxyFromFields("p", {}, failAt),
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
  const m = netIfaceFromFields("wan", { iface: "eth0" }, failAt, {
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
  const p = parentProxyFromFields(
    "p",
    { proxyURL: "socks5://10.0.0.9:1080" },
    failAt,
  );
  p.evaluate(fakeCtx(), g);
  assert.deepEqual(g.route, {
    kind: "parent",
    proxyUrl: "socks5://10.0.0.9:1080",
    localAddress: "192.0.2.2",
  });
  const v6only = netIfaceFromFields("v6", { iface: "eth0" }, failAt, {
    interfaces: IFACES.filter((a) => a.family === "IPv6"),
  });
  assert.equal(v6only.localAddress, "fd00::2", "global IPv6 before link-local");
  const byAddr = netIfaceFromFields("a", { addr: "127.0.0.1" }, failAt, {
    interfaces: IFACES,
  });
  assert.equal(byAddr.localAddress, "127.0.0.1");
  const ipAsIface = netIfaceFromFields("b", { iface: "::1" }, failAt, {
    interfaces: IFACES,
  });
  assert.equal(ipAsIface.localAddress, "::1");
  // The real machine: loopback is always there.
  const real = netIfaceFromFields("lo", { iface: "lo" }, failAt);
  assert.equal(real.localAddress, "127.0.0.1");
});

Deno.test("netIface: a missing interface or address is refused at load with the machine's list", () => {
  configError(
    () =>
      netIfaceFromFields("n", { iface: "eth7" }, failAt, {
        interfaces: IFACES,
      }),
    /iface: iface = "eth7": interface eth7 not found; this machine has: lo \(127\.0\.0\.1, ::1\), eth0 /,
  );
  configError(
    () =>
      netIfaceFromFields("n", { iface: "tun0" }, failAt, {
        interfaces: IFACES,
      }),
    /tun0 has no usable address/,
  );
  configError(
    () =>
      netIfaceFromFields("n", { addr: "10.9.9.9" }, failAt, {
        interfaces: IFACES,
      }),
    /addr: addr = "10\.9\.9\.9": address 10\.9\.9\.9 is not an address of this machine/,
  );
  configError(
    () =>
      netIfaceFromFields("n", { addr: "eth0" }, failAt, { interfaces: IFACES }),
    /"addr" = "eth0" is not an IPv4 or IPv6 address/,
  );
  configError(
    () => netIfaceFromFields("n", {}, failAt, { interfaces: IFACES }),
    /needs "iface"/,
  );
  configError(
    () =>
      netIfaceFromFields("n", { iface: "lo", addr: "127.0.0.1" }, failAt, {
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
  const m = bwConsRFromFields(
    "bw",
    { rate: "1 KiB/s", userDBN: "map" },
    failAt,
    { userDbs: ["map"], now: () => clock },
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
  const b = bwConsRFromFields("b", { rate: "1 MiB/s", burst: "4 MiB" }, failAt);
  assert.equal(b.burst, 4 * 1024 * 1024);
  configError(
    () => bwConsRFromFields("b", {}, failAt),
    /"rate" is missing.*512 KiB\/s/,
  );
  configError(
    () => bwConsRFromFields("b", { rate: "fast" }, failAt),
    /rate.*"fast" is not a rate.*"512 KiB\/s"/,
  );
  configError(
    () => bwConsRFromFields("b", { rate: "8 Mbit/s" }, failAt),
    /in bits/,
  );
  configError(
    () => bwConsRFromFields("b", { rate: "0 KiB/s" }, failAt),
    /more than 0/,
  );
  configError(
    () => bwConsRFromFields("b", { rate: "1 KiB/s", burst: "lots" }, failAt),
    /"burst" must be a size/,
  );
  configError(
    () =>
      bwConsRFromFields("b", { rate: "1 KiB/s", userDBN: "x" }, failAt, {
        userDbs: ["map"],
      }),
    /userDBN.*"x".*map/,
  );
});
