/**
 * The loader of managers.toml: every accepted spelling, the README example,
 * warnings for unknown keys (with line and suggestion), and errors with
 * file:line(:column) for syntax, rule, duplicates, durations and sizes.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadManagers } from "../managers/config/loader.ts";
import { parseTomlText } from "../managers/config/toml_file.ts";
import {
  checkManagersFile,
  ConfigError,
  nearestKey,
  readTomlFile,
  writeDefaultManagersFile,
} from "../managers/mod.ts";
import { DwnConsR } from "../managers/quotas/dwn_cons_r.ts";
import { MapDb } from "../managers/users/map_db.ts";
import { SessionIpm } from "../managers/sessions/session_ipm.ts";
import { README_TOML } from "./helpers/managers_setup.ts";
import { randomPassword } from "../managers/config/default_file.ts";

function load(text: string) {
  return loadManagers(parseTomlText("managers.toml", text));
}

async function configError(text: string): Promise<ConfigError> {
  try {
    await load(text);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${e}`);
    return e;
  }
  assert.fail("expected a ConfigError");
}

Deno.test("config: the original README's example loads (rule, userGroup)", async () => {
  const loaded = await load(README_TOML);
  assert.deepEqual(loaded.warnings, []);
  assert.equal(loaded.ruleText, "sessions ∧ down");
  assert.ok(loaded.managers.get("sessions") instanceof SessionIpm);
  const down = loaded.managers.get("down");
  assert.ok(down instanceof DwnConsR);
  assert.equal(down.quotaOf("user0", ["group0"]), 1024 ** 3);
  const map = loaded.userDbs.get("map");
  assert.ok(map instanceof MapDb);
  assert.deepEqual((await map.lookup("user0"))?.groups, ["group0"]);
  assert.equal(loaded.jwtExpirationMs, 24 * 3600_000, "default 24h");
});

Deno.test("config: the code's spellings (rules, userGroups, GroupQuota, Span) load too", async () => {
  const loaded = await load(`rules = "sessions ∧ down ∧ night"
jwtExpiration = "1h"
admins = ["user0"]
syslogAddr = "127.0.0.1:514"
[[sessionIPM]]
name = "sessions"
auth = "map"
[[dwnConsR]]
name = "down"
userDBN = "map"
resetCycle = "24h"
[dwnConsR.GroupQuota]
group0 = "512 MB"
[[timeSpan]]
name = "night"
[timeSpan.Span]
allTime = true
[[mapDB]]
name = "map"
[mapDB.userPass]
user0 = "pass0"
[mapDB.userGroups]
user0 = ["group0"]
`);
  assert.deepEqual(loaded.warnings, []);
  assert.equal(loaded.ruleText, "sessions ∧ down ∧ night");
  assert.equal(loaded.jwtExpirationMs, 3600_000);
  assert.deepEqual(loaded.admins, ["user0"]);
  assert.equal(loaded.syslogAddr, "127.0.0.1:514");
  const down = loaded.managers.get("down") as DwnConsR;
  assert.equal(down.quotaOf("user0", ["group0"]), 512 * 1024 ** 2);
  const map = loaded.userDbs.get("map")!;
  assert.deepEqual((await map.lookup("user0"))?.groups, ["group0"]);
});

Deno.test("config: every kind of the registry loads from one file", async () => {
  const loaded = await load(
    `rule = "lan ∧ day ∧ staff ∧ web ∧ (sessions ∧ down ∧ slow ∧ up ∧ out)"
[[sessionIPM]]
name = "sessions"
auth = "map"
[[dwnConsR]]
name = "down"
userDBN = "map"
resetCycle = "daily"
timezone = "UTC"
[dwnConsR.groupQuota]
g = "1 GB"
[[rangeIPM]]
name = "lan"
cidr = "10.0.0.0/8"
[[timeSpan]]
name = "day"
[timeSpan.span]
allTime = true
[[groupIPM]]
name = "staff"
group = "g"
userDBN = "map"
[[hostMatcher]]
name = "web"
pattern = "example"
[[bwConsR]]
name = "slow"
rate = "1 MB/s"
[[parentProxy]]
name = "up"
proxyURL = "http://10.0.0.1:3128"
[[netIface]]
name = "out"
addr = "127.0.0.1"
[mapDB]
name = "map"
[mapDB.userPass]
u = "p"
`,
  );
  assert.deepEqual(
    [...loaded.managers.values()].map((m) => `${m.name}:${m.kind}`).sort(),
    [
      "day:timeSpan",
      "down:dwnConsR",
      "lan:rangeIPM",
      "out:netIface",
      "sessions:sessionIPM",
      "slow:bwConsR",
      "staff:groupIPM",
      "up:parentProxy",
      "web:hostMatcher",
    ],
  );
});

Deno.test("config: unknown keys are warnings with file:line and the nearest key", async () => {
  const text = README_TOML.replace(
    'resetCycle = "24h"',
    'resetCicle = "24h"\n\tresetCycle = "24h"',
  ).replace(
    'rule = "sessions ∧ down"',
    'rule = "sessions ∧ down"\nadmin = ["user0"]',
  );
  const loaded = await load(text);
  assert.equal(loaded.warnings.length, 2, loaded.warnings.join("\n"));
  assert.match(
    loaded.warnings[0],
    /^managers\.toml:2: unknown key "admin" \(did you mean "admins"\?\)/,
  );
  assert.match(
    loaded.warnings[1],
    /^managers\.toml:11: unknown key "resetCicle" in dwnConsR "down" \(did you mean "resetCycle"\?\)/,
  );
});

Deno.test("config: a manager not in the rule is a warning", async () => {
  const loaded = await load(
    README_TOML + '\n[[rangeIPM]]\nname = "lan"\ncidr = "10.0.0.0/8"\n',
  );
  assert.equal(loaded.warnings.length, 1);
  assert.match(
    loaded.warnings[0],
    /managers\.toml:21: rangeIPM "lan" is not in the rule/,
  );
});

Deno.test("config: a TOML syntax error names line and column and the reason", async () => {
  const e = await configError(
    'rule = "sessions ∧ down"\n[[sessionIPM]\nname = "sessions"\n',
  );
  assert.equal(e.site.line, 2);
  assert.equal(e.site.column, 14);
  assert.match(
    e.message,
    /^managers\.toml:2:14: TOML syntax error: expected end of table array/,
  );
});

Deno.test("config: a rule name without a manager names its column and the known ones", async () => {
  const e = await configError(
    README_TOML.replace('"sessions ∧ down"', '"sessions ∧ dwn"'),
  );
  assert.equal(
    e.message,
    'managers.toml:1: rule: "dwn" at column 12 has no manager; known: sessions, down (did you mean "down"?)',
  );
});

Deno.test("config: the rule's line is found when it is not the first (the index of lines is made on first use)", async () => {
  const e = await configError(
    "# the site's rule\n\n" +
      README_TOML.replace('"sessions ∧ down"', '"sessions ∧ dwn"'),
  );
  assert.match(e.message, /^managers\.toml:3: rule: "dwn" at column 12 /);
});

Deno.test("config: a rule that does not parse says where and why", async () => {
  const e = await configError(
    README_TOML.replace('"sessions ∧ down"', '"sessions ∧ down ∨ sessions"'),
  );
  assert.match(
    e.message,
    /^managers\.toml:1: rule: at column \d+: .*parenthes/,
  );
});

Deno.test("config: a missing rule is an error, not an open proxy", async () => {
  const e = await configError(README_TOML.replace(/^rule = .*$/m, ""));
  assert.match(e.message, /^managers\.toml:1: there is no rule/);
  const both = await configError('rules = "down"\n' + README_TOML);
  assert.match(both.message, /both "rule" and "rules"/);
});

Deno.test("config: duplicate names are errors at the second one", async () => {
  const e = await configError(
    README_TOML + '\n[[rangeIPM]]\nname = "down"\ncidr = "10.0.0.0/8"\n',
  );
  assert.match(
    e.message,
    /^managers\.toml:22: rangeIPM "down": the name "down" is used twice \(also by a dwnConsR\)/,
  );
  const db = await configError(
    README_TOML.replace("[mapDB]", "[[mapDB]]").replace(
      "\t[mapDB.userPass]",
      "\t[mapDB.userPass]",
    ) + '\n[[mapDB]]\nname = "map"\n[mapDB.userPass]\nu = "p"\n',
  );
  assert.match(db.message, /a second user database is named "map"/);
  // The API could not tell these apart: "rules" is the rule itself, and
  // show answers a manager before a user database of the same name.
  const rules = await configError(
    README_TOML.replaceAll('"sessions', '"rules'),
  );
  assert.match(
    rules.message,
    /^managers\.toml:4: sessionIPM "rules": "rules" names the rule itself in the API/,
  );
  const both = await configError(
    README_TOML + '\n[[rangeIPM]]\nname = "map"\ncidr = "10.0.0.0/8"\n',
  );
  assert.match(
    both.message,
    /^managers\.toml:22: rangeIPM "map": the name "map" is also the name of a user database/,
  );
});

Deno.test("config: bad sizes and durations name the key and its line", async () => {
  const size = await configError(
    README_TOML.replace('group0 = "1 GB"', 'group0 = "1 gigabyte"'),
  );
  assert.match(
    size.message,
    /^managers\.toml:12: dwnConsR "down": groupQuota\.group0: "1 gigabyte" is not a size/,
  );
  const cycle = await configError(
    README_TOML.replace('resetCycle = "24h"', 'resetCycle = "a day"'),
  );
  assert.match(
    cycle.message,
    /^managers\.toml:10: dwnConsR "down": "a day" is not a duration.*"daily"/,
  );
  const jwt = await configError('jwtExpiration = "0s"\n' + README_TOML);
  assert.match(
    jwt.message,
    /^managers\.toml:1: jwtExpiration: it must be more than 0/,
  );
  const idle = await configError(
    README_TOML.replace('auth = "map"', 'auth = "map"\n\tidleTimeout = "soon"'),
  );
  assert.match(
    idle.message,
    /^managers\.toml:6: sessionIPM "sessions": "idleTimeout": "soon" is not a duration/,
  );
});

Deno.test("config: errors at keys with a dot in their name point at that key's line", async () => {
  const toml = `rule = "sessions ∧ down"
[[sessionIPM]]
name = "sessions"
auth = "map"
[[dwnConsR]]
name = "down"
userDBN = "map"
resetCycle = "24h"
[dwnConsR.groupQuota]
"dept.it" = "1 GB"
"dept.hr" = "lots"
[mapDB]
name = "map"
[mapDB.userPass]
"john.doe" = "pass0"
"jane.roe" = 5
[mapDB.userGroups]
"john.doe" = ["dept.it"]
`;
  const pass = await configError(toml);
  assert.match(
    pass.message,
    /^managers\.toml:16: mapDB "map": the password of "jane\.roe" must be a string/,
  );
  const size = await configError(toml.replace("= 5", '= "pass1"'));
  assert.match(
    size.message,
    /^managers\.toml:11: dwnConsR "down": groupQuota\."dept\.hr": "lots" is not a size/,
  );
  const loaded = await load(
    toml.replace('"lots"', '"1 GB"').replace("= 5", '= "pass1"'),
  );
  const down = loaded.managers.get("down") as DwnConsR;
  assert.equal(down.quotaOf("john.doe", ["dept.it"]), 1024 ** 3);
  const warned = await load(
    toml.replace('"lots"', '"1 GB"').replace("= 5", '= "pass1"') +
      '"no.body" = ["dept.it"]\n',
  );
  assert.match(
    warned.warnings.join("\n"),
    /^managers\.toml:19: "no\.body" has groups but no password/m,
  );
});

Deno.test("config: a user database that does not exist is named with the known ones", async () => {
  const e = await configError(
    README_TOML.replace('auth = "map"', 'auth = "ldap"'),
  );
  assert.match(
    e.message,
    /^managers\.toml:5: sessionIPM "sessions": "auth" = "ldap" names no user database; the configured ones are: map/,
  );
  const noName = await configError(
    README_TOML.replace('\tname = "down"\n', ""),
  );
  assert.match(
    noName.message,
    /^managers\.toml:7: a \[\[dwnConsR\]\] table needs a name/,
  );
});

Deno.test("config: nearestKey suggests close keys only", () => {
  assert.equal(
    nearestKey("resetCicle", ["resetCycle", "userDBN"]),
    "resetCycle",
  );
  assert.equal(nearestKey("groupquota", ["groupQuota"]), "groupQuota");
  assert.equal(nearestKey("zzz", ["resetCycle", "userDBN"]), undefined);
});

Deno.test("config: lineOf finds keys, tables and arrays of tables", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "server.toml");
    await Deno.writeTextFile(
      path,
      '[api]\n  persistInterval = "5m"\n  [api.server]\n    addr = ":4443"\n[proxy]\n  [proxy.server]\n    addr = ":8080"\n',
    );
    const file = await readTomlFile(path);
    assert.equal(file.lineOf(["proxy", "server", "addr"]), 7);
    assert.equal(file.lineOf(["api", "server"]), 3);
    assert.equal(file.lineOf(["api", "persistInterval"]), 2);
    assert.equal(file.lineOf(["nope"]), undefined);
    const readme = parseTomlText("m.toml", README_TOML);
    assert.equal(readme.lineOf(["dwnConsR", "0", "resetCycle"]), 10);
    assert.equal(readme.lineOf(["mapDB", "userGroup", "user0"]), 19);
    await assert.rejects(
      () => readTomlFile(join(dir, "missing.toml")),
      /missing\.toml: the file does not exist/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("config: the administrator's first password is 16 letters and digits, never a word a command line takes for an option", () => {
  const firsts = new Set<string>();
  const seen = new Set<string>();
  for (let i = 0; i < 5000; i++) {
    const p = randomPassword();
    assert.match(p, /^[A-Za-z0-9]{16}$/);
    firsts.add(p[0]);
    for (const c of p) seen.add(c);
  }
  // Every one of the 62 can come, first too.
  assert.equal(seen.size, 62);
  assert.equal(firsts.size, 62);
});

Deno.test("config: the default file is safe, readable, loads, and stores the password hashed", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "managers.toml");
    const admin = await writeDefaultManagersFile(path);
    assert.equal(admin.user, "admin");
    assert.match(admin.password, /^[A-Za-z0-9]{16}$/);
    const text = await Deno.readTextFile(path);
    assert.ok(!text.includes(admin.password));
    assert.match(text, /admin = "pbkdf2-sha256\$/);
    assert.match(text, /^# /m);
    assert.deepEqual((await checkManagersFile(path)).warnings, []);
    const loaded = await loadManagers(await readTomlFile(path));
    assert.equal(loaded.ruleText, "sessions ∧ down");
    assert.deepEqual(loaded.admins, ["admin"]);
    const down = loaded.managers.get("down") as DwnConsR;
    assert.equal(down.quotaOf("admin", ["admins"]), 10 * 1024 ** 3);
    assert.equal(down.quotaOf("x", ["users"]), 1024 ** 3);
    const db = loaded.userDbs.get("local")!;
    assert.equal(
      (await db.authenticate("admin", admin.password)).userName,
      "admin",
    );
    await assert.rejects(
      () => writeDefaultManagersFile(path),
      "never overwrites",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("config: the access log's keys: a file (relative to the file's directory), syslog over UDP or TCP, formats", async () => {
  const defaults = await load(README_TOML);
  assert.equal(defaults.accessLog, undefined);
  assert.equal(defaults.syslogAddr, undefined);
  assert.equal(defaults.accessLogFormat, "squid");
  assert.equal(defaults.syslogFormat, "rfc3164");
  const all = await loadManagers(parseTomlText(
    "/etc/pmproxy/managers.toml",
    `accessLog = "logs/access.log"
accessLogFormat = "json"
syslogAddr = "tcp://logs.example.org:6514"
syslogFormat = "rfc5424"
` + README_TOML,
  ));
  assert.deepEqual(all.warnings, []);
  assert.equal(all.accessLog, "/etc/pmproxy/logs/access.log");
  assert.equal(all.accessLogFormat, "json");
  assert.equal(all.syslogAddr, "tcp://logs.example.org:6514");
  assert.equal(all.syslogFormat, "rfc5424");
  const absolute = await load(
    'accessLog = "/var/log/pmproxy/access.log"\n' + README_TOML,
  );
  assert.equal(absolute.accessLog, "/var/log/pmproxy/access.log");
  for (
    const addr of ["127.0.0.1:514", "[::1]:514", "udp://syslog", "loghost"]
  ) {
    const ok = await load(`syslogAddr = "${addr}"\n` + README_TOML);
    assert.equal(ok.syslogAddr, addr);
  }
});

Deno.test("config: a wrong access log key is an error at its line, saying what to write", async () => {
  const cases: [string, RegExp][] = [
    [
      'accessLogFormat = "combined"',
      /^managers\.toml:2: accessLogFormat = "combined" is not one of "squid", "json"/,
    ],
    [
      'syslogFormat = "5424"',
      /^managers\.toml:2: syslogFormat = "5424" is not one of "rfc3164", "rfc5424"/,
    ],
    [
      'syslogAddr = "http://logs:514"',
      /^managers\.toml:2: syslogAddr = "http:\/\/logs:514" is not a syslog server: write "host:port" \(UDP\), "udp:\/\/host:port" or "tcp:\/\/host:port"/,
    ],
    [
      'syslogAddr = "logs:99999"',
      /^managers\.toml:2: syslogAddr = "logs:99999" is not a syslog server/,
    ],
    ["syslogAddr = 514", /^managers\.toml:2: syslogAddr = 514 is not/],
    [
      "accessLog = true",
      /^managers\.toml:2: accessLog must be a file path in quotes/,
    ],
  ];
  for (const [line, expected] of cases) {
    const e = await configError(`# the access log\n${line}\n` + README_TOML);
    assert.match(e.message, expected, line);
  }
});
