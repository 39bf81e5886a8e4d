/**
 * Open rules (managers/config/open_rule.ts): which rules let a request
 * through with nobody identified, the path named, where the proxy listens,
 * and the loader's warning or refusal (`allowOpenProxy`).
 */
import assert from "node:assert/strict";
import { evaluate, parseRule } from "../rule/mod.ts";
import {
  describeOpenPath,
  findOpenPath,
  judgeOpenRule,
  listenScope,
  type OpenPath,
} from "../managers/config/open_rule.ts";
import { loadManagers } from "../managers/config/loader.ts";
import { parseTomlText } from "../managers/config/toml_file.ts";
import { ConfigError } from "../managers/mod.ts";

/** The kinds of the names the rules below use. */
const KINDS = new Map([
  ["sessions", "sessionIPM"],
  ["lan", "rangeIPM"],
  ["wifi", "groupIPM"],
  ["night", "timeSpan"],
  ["day", "timeSpan"],
  ["site", "hostMatcher"],
  ["down", "dwnConsR"],
  ["bw", "bwConsR"],
  ["parent", "parentProxy"],
  ["wan", "netIface"],
]);

function pathOf(rule: string): OpenPath | undefined {
  return findOpenPath(parseRule(rule), (name) => KINDS.get(name));
}

function message(rule: string): string {
  const path = pathOf(rule);
  assert.ok(path, `${rule} should be open`);
  return describeOpenPath(rule, path);
}

const CLOSED = [
  "sessions",
  "false",
  "sessions ∧ down",
  "lan ∨ sessions",
  "sessions ∧ down ∧ bw ∧ parent ∧ wan",
  "(night ∨ site) ∧ (lan ∨ wifi)",
  "(sessions ∧ night) ∨ (lan ∧ day)",
  "¬¬sessions",
  "¬(¬sessions ∨ night)",
  "sessions ≢ lan",
  "night ∧ ¬night",
  "night ≢ night",
  "down ⇒ sessions",
  "sessions ⇐ down",
  "(night ⇒ sessions) ∧ (¬night ⇒ lan)",
  "wifi and not site",
];

for (const rule of CLOSED) {
  Deno.test(`open rule: "${rule}" is closed`, () => {
    assert.equal(pathOf(rule), undefined);
  });
}

const OPEN: { rule: string; expect: string }[] = [
  {
    rule: "true",
    expect:
      'rule "true" lets a request through without any manager that identifies the client (a sessionIPM, rangeIPM or groupIPM): nobody is identified',
  },
  {
    rule: "sessions ∨ true",
    expect:
      'rule "sessions ∨ true" lets a request through when sessions is false: nobody is identified',
  },
  {
    rule: "¬sessions",
    expect:
      'rule "¬sessions" lets a request through when sessions is false: nobody is identified',
  },
  {
    rule: "night ∨ sessions",
    expect:
      'rule "night ∨ sessions" lets a request through when sessions is false: nobody is identified; it relies on night (timeSpan) being true',
  },
  {
    rule: "(sessions ∧ down) ∨ (night ∧ down)",
    expect:
      'rule "(sessions ∧ down) ∨ (night ∧ down)" lets a request through when sessions is false: nobody is identified; it relies on night (timeSpan) being true and down (dwnConsR, always true)',
  },
  {
    // Outside the night anyone goes: night must be false.
    rule: "night ⇒ sessions",
    expect:
      'rule "night ⇒ sessions" lets a request through when sessions is false: nobody is identified; it relies on night (timeSpan) being false',
  },
  {
    // ⇒ does not look at its right side when the left is false.
    rule: "sessions ⇒ night",
    expect:
      'rule "sessions ⇒ night" lets a request through when sessions is false: nobody is identified',
  },
  {
    rule: "sessions ⇐ site",
    expect:
      'rule "sessions ⇐ site" lets a request through when sessions is false: nobody is identified; it relies on site (hostMatcher) being false',
  },
  {
    rule: "sessions ≡ lan",
    expect:
      'rule "sessions ≡ lan" lets a request through when sessions and lan are false: nobody is identified',
  },
  {
    rule: "¬(sessions ∨ lan) ∧ down",
    expect:
      'rule "¬(sessions ∨ lan) ∧ down" lets a request through when sessions and lan are false: nobody is identified; it relies on down (dwnConsR, always true)',
  },
  {
    rule: "(wifi ∧ bw) ∨ (lan ∧ down) ∨ parent",
    expect:
      'rule "(wifi ∧ bw) ∨ (lan ∧ down) ∨ parent" lets a request through when wifi and lan are false: nobody is identified; it relies on parent (parentProxy, always true)',
  },
  {
    // Both values of night are tried: the first gets nowhere.
    rule: "(night ∧ sessions) ∨ (¬night ∧ site ∧ wan)",
    expect:
      'rule "(night ∧ sessions) ∨ (¬night ∧ site ∧ wan)" lets a request through when sessions is false: nobody is identified; it relies on night (timeSpan) being false, site (hostMatcher) being true and wan (netIface, always true)',
  },
  {
    rule: "night ≡ night",
    expect:
      'rule "night ≡ night" lets a request through without any manager that identifies the client (a sessionIPM, rangeIPM or groupIPM): nobody is identified; it relies on night (timeSpan) being false',
  },
  {
    rule: "not lan or sessions",
    expect:
      'rule "not lan or sessions" lets a request through when lan and sessions are false: nobody is identified',
  },
];

for (const c of OPEN) {
  Deno.test(`open rule: "${c.rule}" is open and the path is named`, () => {
    assert.equal(message(c.rule), c.expect);
  });
}

Deno.test("open rule: the path found makes the rule true", () => {
  // Values the path gives, checked by the rule's own evaluation.
  for (const { rule } of OPEN) {
    const path = pathOf(rule)!;
    const values = new Map(path.reliesOn.map((s) => [s.name, s.value]));
    const allowed = evaluate(parseRule(rule), (name) => {
      if (path.unidentified.includes(name)) return false;
      const value = values.get(name);
      assert.ok(
        value !== undefined,
        `${rule}: ${name} reached, not on the path`,
      );
      return value;
    });
    assert.equal(allowed, true, rule);
  }
});

Deno.test("open rule: a name of unknown kind may be true or false", () => {
  const path = findOpenPath(parseRule("mystery ∧ ¬other"), () => undefined);
  assert.deepEqual(path, {
    unidentified: [],
    reliesOn: [
      { name: "mystery", kind: undefined, value: true, always: false },
      { name: "other", kind: undefined, value: false, always: false },
    ],
  });
});

Deno.test("open rule: many matchers are searched without trying every value", () => {
  // 24 time spans around the session: each value tried ends the
  // evaluation soon, so the search is not 2^24 evaluations.
  const names = Array.from({ length: 24 }, (_, i) => `t${i}`);
  const kinds = (name: string) =>
    name === "sessions" ? "sessionIPM" : "timeSpan";
  const closed = `(${names.join(" ∨ ")}) ∧ sessions`;
  assert.equal(findOpenPath(parseRule(closed), kinds), undefined);
  const open = `(${names.join(" ∧ ")}) ∨ sessions`;
  assert.equal(findOpenPath(parseRule(open), kinds)?.reliesOn.length, 24);
});

Deno.test("open rule: who can reach a listening address", () => {
  for (const host of ["", "0.0.0.0", "::", "[::]", "0:0:0:0:0:0:0:0"]) {
    assert.equal(listenScope(host), "every interface", host);
  }
  for (
    const host of [
      "127.0.0.1",
      "127.1.2.3",
      "::1",
      "[::1]",
      "localhost",
      "LOCALHOST",
      "::ffff:127.0.0.1",
    ]
  ) {
    assert.equal(listenScope(host), "loopback", host);
  }
  for (const host of ["10.0.0.1", "192.0.2.2", "fd00::2", "gateway.lan"]) {
    assert.equal(listenScope(host), "one address", host);
  }
});

Deno.test("open rule: refused on every interface unless allowOpenProxy, else a warning", () => {
  const path = pathOf("sessions ∨ true")!;
  const every = judgeOpenRule("sessions ∨ true", path, {
    listen: { hostname: "", port: 8080 },
    allowOpenProxy: false,
  });
  assert.equal(every.fatal, true);
  assert.match(
    every.message,
    /^rule "sessions ∨ true" lets a request through when sessions is false: nobody is identified, and the proxy listens on every interface \(:8080\).*allowOpenProxy = true/,
  );
  assert.match(every.message, /"127\.0\.0\.1:8080"/);
  const allowed = judgeOpenRule("sessions ∨ true", path, {
    listen: { hostname: "0.0.0.0", port: 3128 },
    allowOpenProxy: true,
  });
  assert.equal(allowed.fatal, false);
  assert.match(allowed.message, /every interface \(0\.0\.0\.0:3128\)/);
  const loopback = judgeOpenRule("sessions ∨ true", path, {
    listen: { hostname: "::1", port: 8080 },
    allowOpenProxy: false,
  });
  assert.equal(loopback.fatal, false);
  assert.match(loopback.message, /loopback only \(\[::1\]:8080\)/);
  const one = judgeOpenRule("sessions ∨ true", path, {
    listen: { hostname: "10.0.0.1", port: 8080 },
    allowOpenProxy: false,
  });
  assert.equal(one.fatal, false);
  assert.match(one.message, /whoever reaches 10\.0\.0\.1:8080/);
});

const OPEN_TOML = `# an open proxy
admins = ["user0"]
rule = "sessions ∨ true"
[[sessionIPM]]
name = "sessions"
auth = "map"
[mapDB]
name = "map"
[mapDB.userPass]
user0 = "pass0"
`;

function load(text: string, hostname?: string) {
  return loadManagers(parseTomlText("managers.toml", text), {
    proxyListen: hostname === undefined ? undefined : { hostname, port: 8080 },
  });
}

Deno.test("open rule through the loader: every interface is refused at the rule's line", async () => {
  for (const hostname of ["", "0.0.0.0", "::"]) {
    const error = await load(OPEN_TOML, hostname).then(
      () => assert.fail(`loaded on "${hostname}"`),
      (e) => e,
    );
    assert.ok(error instanceof ConfigError, String(error));
    assert.match(
      error.message,
      /^managers\.toml:3: rule "sessions ∨ true" lets a request through when sessions is false: nobody is identified, and the proxy listens on every interface.*add allowOpenProxy = true at the top of this file$/,
    );
  }
});

Deno.test("open rule through the loader: allowOpenProxy = true loads with a warning", async () => {
  const loaded = await load(`allowOpenProxy = true\n${OPEN_TOML}`, "");
  assert.equal(loaded.allowOpenProxy, true);
  assert.equal(loaded.warnings.length, 1, loaded.warnings.join("\n"));
  assert.match(
    loaded.warnings[0],
    /^managers\.toml:4: rule "sessions ∨ true" lets a request through when sessions is false: nobody is identified; the proxy listens on every interface \(:8080\) and allowOpenProxy = true/,
  );
});

Deno.test("open rule through the loader: loopback is a warning, a closed rule is silent", async () => {
  const loaded = await load(OPEN_TOML, "127.0.0.1");
  assert.equal(loaded.allowOpenProxy, false);
  assert.equal(loaded.warnings.length, 1, loaded.warnings.join("\n"));
  assert.match(loaded.warnings[0], /^managers\.toml:3: .*loopback only/);
  const closed = await load(
    OPEN_TOML.replace("sessions ∨ true", "sessions"),
    "",
  );
  assert.deepEqual(closed.warnings, []);
  assert.equal(closed.openPath, undefined);
});

Deno.test("open rule through the loader: without the listen address only openPath tells", async () => {
  const loaded = await load(OPEN_TOML);
  assert.deepEqual(loaded.warnings, []);
  assert.deepEqual(loaded.openPath, {
    unidentified: ["sessions"],
    reliesOn: [],
  });
});

Deno.test("open rule through the loader: allowOpenProxy must be a boolean", async () => {
  const error = await load(`allowOpenProxy = "yes"\n${OPEN_TOML}`, "").then(
    () => assert.fail("loaded"),
    (e) => e,
  );
  assert.ok(error instanceof ConfigError, String(error));
  assert.match(
    error.message,
    /^managers\.toml:1: allowOpenProxy must be true or false/,
  );
});
