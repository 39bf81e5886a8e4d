/**
 * The manager kinds beyond sessions and quotas through the real loader and
 * gateway: configuration errors with file and line, the route and meters a
 * request gets, and the reasons shown when a matcher is false.
 */
import assert from "node:assert/strict";
import { loadManagers } from "../managers/config/loader.ts";
import { parseTomlText } from "../managers/config/toml_file.ts";
import { ConfigError } from "../managers/mod.ts";
import type { Decision } from "../proxy/policy.ts";
import { PolicyDir, request } from "./helpers/managers_setup.ts";

async function configError(text: string): Promise<string> {
  try {
    await loadManagers(parseTomlText("managers.toml", text));
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${e}`);
    return e.message;
  }
  assert.fail("expected a ConfigError");
}

const MAP = `
[mapDB]
name = "map"
[mapDB.userPass]
user0 = "pass0"
user1 = "pass1"
[mapDB.userGroups]
user0 = ["staff"]
user1 = ["students"]
`;

const BROKEN: { name: string; toml: string; expect: RegExp }[] = [
  {
    name: "rangeIPM with a bad CIDR",
    toml: `rule = "lan"\n[[rangeIPM]]\nname = "lan"\ncidr = "10.0.0.0/33"\n`,
    expect:
      /^managers\.toml:4: rangeIPM "lan": cidr = "10\.0\.0\.0\/33" is not a CIDR range.*0 to 32.*"10\.0\.0\.0\/8"/,
  },
  {
    name: "timeSpan with a bad duration inside span",
    toml:
      `rule = "night"\n[[timeSpan]]\nname = "night"\n[timeSpan.span]\nstart = 2026-01-01T20:00:00\nactive = "12 hours"\ntotal = "24h"\ninfinite = true\n`,
    expect: /^managers\.toml:6: timeSpan "night": "span\.active": .*"1h30m"/,
  },
  {
    name: "timeSpan with an unknown zone",
    toml:
      `rule = "day"\n[[timeSpan]]\nname = "day"\ndays = ["mon-fri"]\ntimezone = "Cuba/Havana"\n`,
    expect:
      /^managers\.toml:5: timeSpan "day": timezone = "Cuba\/Havana".*IANA/,
  },
  {
    name: "timeSpan with a misspelt day",
    toml:
      `rule = "day"\n[[timeSpan]]\nname = "day"\nfrom = "08:00"\ndays = ["mon-fir"]\n`,
    expect: /^managers\.toml:5: timeSpan "day": "days" holds "mon-fir"/,
  },
  {
    name: "groupIPM naming a missing user database",
    toml:
      `rule = "staff"\n[[groupIPM]]\nname = "staff"\ngroup = "staff"\nuserDBN = "ldap"\n${MAP}`,
    expect:
      /^managers\.toml:5: groupIPM "staff": "userDBN" = "ldap" names no user database; the configured ones are: map/,
  },
  {
    name: "hostMatcher with a bad pattern",
    toml: `rule = "h"\n[[hostMatcher]]\nname = "h"\npattern = '(^|\\.cu$'\n`,
    expect:
      /^managers\.toml:4: hostMatcher "h": pattern '\(\^\|\\\.cu\$' is not a valid JavaScript regular expression: Unterminated group \(at column 1/,
  },
  {
    name: "parentProxy without a port",
    toml:
      `rule = "up"\n[[parentProxy]]\nname = "up"\nproxyURL = "http://10.0.0.1"\n`,
    expect:
      /^managers\.toml:4: parentProxy "up": proxyURL = .*needs a host and a port/,
  },
  {
    name: "netIface naming a missing interface",
    toml: `rule = "wan"\n[[netIface]]\nname = "wan"\niface = "eth7"\n`,
    expect:
      /^managers\.toml:4: netIface "wan": iface = "eth7": interface eth7 not found; this machine has: lo \(127\.0\.0\.1/,
  },
  {
    name: "bwConsR with a rate in bits",
    toml: `rule = "bw"\n[[bwConsR]]\nname = "bw"\nrate = "8 Mbit/s"\n`,
    expect: /^managers\.toml:4: bwConsR "bw": "rate": .*in bits/,
  },
];

for (const c of BROKEN) {
  Deno.test(`kinds through the loader: ${c.name} is refused at file:line`, async () => {
    assert.match(await configError(c.toml), c.expect);
  });
}

Deno.test("kinds through the loader: unknown keys are warned about", async () => {
  const loaded = await loadManagers(
    parseTomlText(
      "managers.toml",
      `rule = "lan"\n[[rangeIPM]]\nname = "lan"\ncidr = "10.0.0.0/8"\ncdir = "x"\n`,
    ),
  );
  assert.equal(loaded.warnings.length, 1);
  assert.match(loaded.warnings[0], /managers\.toml:5: .*"cdir".*"cidr"/);
});

const GATEWAY_TOML =
  `rule = "lan ∧ work ∧ ((staff ∧ up ∧ wan) ∨ (¬staff ∧ cu ∧ slow))"
jwtExpiration = "1000h"

[[sessionIPM]]
name = "sessions"
auth = "map"

[[rangeIPM]]
name = "lan"
cidr = "10.0.0.0/8"

[[timeSpan]]
name = "work"
days = ["mon-fri"]
from = "08:00"
to = "20:00"
timezone = "UTC"

[[groupIPM]]
name = "staff"
group = "staff"
userDBN = "map"

[[hostMatcher]]
name = "cu"
pattern = '(^|\\.)cu$'

[[parentProxy]]
name = "up"
proxyURL = "http://10.0.0.1:3128"

[[netIface]]
name = "wan"
iface = "lo"

[[bwConsR]]
name = "slow"
rate = "64 KiB/s"
${MAP}`;

function routeOf(d: Decision): unknown {
  assert.ok(d.allowed, `expected allowed, got ${JSON.stringify(d)}`);
  return d.route;
}

function reasonOf(d: Decision): string {
  assert.ok(!d.allowed, `expected a refusal, got ${JSON.stringify(d)}`);
  return d.reason;
}

Deno.test("kinds through the gateway: routes, meters and reasons by rule", async () => {
  const d = await PolicyDir.make(GATEWAY_TOML);
  try {
    const g = await d.open();
    d.clock.ms = Date.parse("2026-03-02T10:00:00Z"); // a Monday, 10:00 UTC
    await g.open("sessions", { ip: "10.0.0.5" }, {
      user: "user0",
      pass: "pass0",
    });
    await g.open("sessions", { ip: "10.0.0.6" }, {
      user: "user1",
      pass: "pass1",
    });

    // Staff: through the parent proxy, leaving from lo's address.
    const staff = g.decideSync(request("10.0.0.5", d.clock));
    assert.deepEqual(routeOf(staff), {
      kind: "parent",
      proxyUrl: "http://10.0.0.1:3128",
      localAddress: "127.0.0.1",
    });

    // Students: only .cu hosts, direct, at 64 KiB/s shared by their requests.
    const cu = g.decideSync(request("10.0.0.6", d.clock, "http://www.uh.cu/"));
    assert.deepEqual(routeOf(cu), { kind: "direct" });
    assert.ok(cu.allowed && cu.meter, "a bandwidth meter is attached");
    let waited = 0;
    for (let i = 0; i < 100 && waited === 0; i++) {
      waited = cu.meter.chunk(16 * 1024);
    }
    assert.ok(waited > 0, "the meter asks to wait once the burst is spent");
    const cu2 = g.decideSync(
      request("10.0.0.6", d.clock, "http://www.uh.cu/x"),
    );
    assert.ok(cu2.allowed && cu2.meter);
    assert.ok(
      cu2.meter.chunk(1) > 0,
      "a second request shares the emptied bucket",
    );
    assert.match(
      reasonOf(
        g.decideSync(request("10.0.0.6", d.clock, "http://example.org/")),
      ),
      /cu: example\.org does not match/,
    );

    assert.match(
      reasonOf(g.decideSync(request("10.0.0.7", d.clock))),
      /staff: nobody is logged in at 10\.0\.0\.7/,
    );

    // Outside the LAN, and outside the working hours.
    assert.match(
      reasonOf(g.decideSync(request("172.16.0.1", d.clock))),
      /lan: 172\.16\.0\.1 is not in 10\.0\.0\.0\/8/,
    );
    d.clock.ms = Date.parse("2026-03-07T10:00:00Z"); // Saturday
    assert.match(
      reasonOf(g.decideSync(request("10.0.0.5", d.clock))),
      /work: now is sat 10:00 in UTC, outside mon,tue,wed,thu,fri 08:00–20:00/,
    );

    const shown = g.describe("wan") as { localAddress: string };
    assert.equal(shown.localAddress, "127.0.0.1");
  } finally {
    await d.cleanup();
  }
});
