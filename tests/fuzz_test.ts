/**
 * Property-based tests (fast-check, seeded, bounded: a few thousand cases
 * each here; `deno task fuzz` runs the same properties 50 times longer,
 * `PMPROXY_FUZZ_SEED` changes the seed). Each parser that reads what
 * others wrote is held to one promise: a clean error of its own kind, or a
 * result that is valid, never another exception, a hang or a 500.
 *
 * - the request and response head parsers (proxy/http_head.ts): random
 *   bytes and mutations of valid heads, read through a Reader in random
 *   reads; an accepted head is well-formed and parses back to itself;
 * - the chunked decoder (proxy/body.ts, through copyBody and a Reader over
 *   an in-memory stream): random bytes, valid bodies split at every point,
 *   and mutations of them, compared with a decoder written from RFC 9112's
 *   grammar (tests/helpers/fuzz_kit.ts);
 * - the rule parser (rule/): only RuleErrors, and a rule that prints and
 *   parses back to itself;
 * - the configuration loaders: mutations of valid managers.toml and
 *   server.toml give errors that name their line;
 * - `/api/cmd` (the real Hono app over the real gateway): random JSON
 *   bodies never give a 500.
 *
 * Bugs the fuzzers found are fixed and kept as cases at the end.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type Field,
  HeadError,
  parseRequestHead,
  parseResponseHead,
  readHead,
  requestFraming,
  type RequestHead,
  responseFraming,
  type ResponseHead,
  serializeHead,
} from "../proxy/http_head.ts";
import { BodyError, copyBody } from "../proxy/body.ts";
import { Reader } from "../proxy/_io.ts";
import { parseRule, printRule, type Rule, RuleError } from "../rule/mod.ts";
import { loadManagers } from "../managers/config/loader.ts";
import { parseTomlText } from "../managers/config/toml_file.ts";
import { ConfigError } from "../managers/mod.ts";
import { apiConfigFrom } from "../api/config.ts";
import { stateConfigFrom } from "../managers/mod.ts";
import { proxyConfigFrom } from "../proxy/mod.ts";
import { createApp } from "../api/app.ts";
import { adminManagers, openRealGateway } from "./helpers/api_real_gateway.ts";
import { README_TOML } from "./helpers/managers_setup.ts";
import {
  bytesOf,
  chunkedBody,
  edits,
  latin1,
  memoryStream,
  mutate,
  params,
  referenceDechunk,
  splitAt,
  TCHARS,
  token,
} from "./helpers/fuzz_kit.ts";

/** Rejects when `p` has not settled within `ms`: a hang is a failure too. */
async function settles<T>(p: Promise<T>, ms = 2000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------- heads

const isTokenText = (s: string) =>
  s.length > 0 && [...s].every((c) => TCHARS.includes(c));

/** A field value as parsed: no control character but HTAB, no OWS at its ends. */
function assertValue(value: string, strict: boolean, what: string) {
  for (const c of value) {
    const code = c.charCodeAt(0);
    if (strict) {
      assert.ok(code === 9 || (code >= 32 && code !== 127), `${what}: ${code}`);
    } else assert.ok(code !== 0 && code !== 10 && code !== 13, what);
  }
  assert.ok(!/^[ \t]|[ \t]$/.test(value), `${what}: OWS kept`);
}

function assertFields(fields: Field[], strict: boolean) {
  for (const f of fields) {
    assert.ok(isTokenText(f.name), `name ${JSON.stringify(f.name)}`);
    assert.equal(f.lower, f.name.toLowerCase());
    assertValue(f.value, strict, f.name);
  }
  const lengths = fields.filter((f) => f.lower === "content-length");
  const codings = fields.filter((f) => f.lower === "transfer-encoding");
  assert.ok(lengths.length <= 1 && codings.length <= 1, "one of each");
  if (lengths.length === 1) assert.match(lengths[0].value, /^(0|[1-9]\d*)$/);
  if (codings.length === 1) assert.equal(codings[0].value, "chunked");
}

/** What an accepted request head must be. */
function assertRequest(h: RequestHead) {
  assert.ok(isTokenText(h.method), "method");
  assert.ok(h.target.length > 0);
  for (const c of h.target) {
    assert.ok(c.charCodeAt(0) > 32 && c.charCodeAt(0) !== 127, "target");
  }
  assert.ok(h.version === 10 || h.version === 11);
  assertFields(h.fields, true);
  const hosts = h.fields.filter((f) => f.lower === "host").length;
  assert.ok(h.version === 10 ? hosts <= 1 : hosts === 1, "one Host");
  const framing = requestFraming(h);
  if (framing.kind === "chunked") {
    assert.equal(h.version, 11);
    assert.ok(!h.fields.some((f) => f.lower === "content-length"));
  }
  if (framing.kind === "length") {
    assert.ok(Number.isSafeInteger(framing.length) && framing.length > 0);
  }
  // The normal form is a fixed point: written out and read again, the
  // same head.
  const again = parseRequestHead(
    serializeHead(
      `${h.method} ${h.target} HTTP/1.${h.version === 11 ? 1 : 0}`,
      h.fields,
    ),
    1000,
  );
  assert.deepEqual(again, h);
}

function assertResponse(h: ResponseHead) {
  assert.ok(h.status >= 100 && h.status <= 999);
  assert.ok(h.version === 10 || h.version === 11);
  assertFields(h.fields, false);
  const framing = responseFraming("GET", h);
  if (framing.kind === "chunked") assert.equal(h.version, 11);
  const again = parseResponseHead(
    serializeHead(
      `HTTP/1.${h.version === 11 ? 1 : 0} ${h.status} ${h.reason}`,
      h.fields,
    ),
  );
  assert.deepEqual(
    { ...again, reason: again.reason },
    { ...h, reason: h.reason },
  );
}

/**
 * Reads one head from `bytes` in the given reads and parses it: resolves
 * with the head, null for no head, or rejects only with HeadError.
 */
async function readParsed<T>(
  bytes: Uint8Array,
  cuts: number[],
  parse: (b: Uint8Array) => T,
  strict: boolean,
): Promise<T | null> {
  const reader = new Reader(memoryStream(splitAt(bytes, cuts)));
  try {
    const head = await settles(readHead(reader, 64 * 1024, strict));
    return head === null ? null : parse(head);
  } finally {
    reader.release();
  }
}

async function headCase(
  text: string,
  cuts: number[],
  side: "request" | "response",
): Promise<void> {
  try {
    const h = side === "request"
      ? await readParsed(
        bytesOf(text),
        cuts,
        (b) => parseRequestHead(b, 100),
        true,
      )
      : await readParsed(bytesOf(text), cuts, parseResponseHead, false);
    if (h === null) return;
    if (side === "request") assertRequest(h as RequestHead);
    else assertResponse(h as ResponseHead);
  } catch (e) {
    if (e instanceof HeadError) return;
    throw e;
  }
}

/** The characters and fragments that matter to a head parser. */
const HEAD_PIECES = [
  "\r\n",
  "\r",
  "\n",
  "\r\n\r\n",
  " ",
  "  ",
  "\t",
  ":",
  ",",
  ";",
  "\0",
  "\x0b",
  "\x0c",
  "\x7f",
  "\x85",
  "\xa0",
  "\xff",
  '"',
  "@",
  "[",
  "]",
  "%",
  "0",
  "9",
  "-1",
  "0x1",
  "HTTP/1.1",
  "HTTP/1.0",
  "HTTP/2.0",
  "Host: a\r\n",
  "Content-Length: 5\r\n",
  "Content-Length: 9007199254740993\r\n",
  "Transfer-Encoding: chunked\r\n",
  "Transfer-Encoding: gzip\r\n",
  "Transfer_Encoding: chunked\r\n",
  "chunked",
  ", chunked",
  "http://",
  "u:p@",
];

const headText = (alphabet: string[]) =>
  fc.string({ unit: fc.constantFrom(...alphabet), maxLength: 40 }).map((
    parts,
  ) => parts);

const headAlphabet = [
  ...HEAD_PIECES,
  "GET ",
  "http://a.test/ ",
  "X",
  "a",
  "HTTP/1.1 200 OK\r\n",
];

/** Cut points for the reads a text arrives in. */
const cuts = fc.array(fc.nat({ max: 400 }), { maxLength: 4 });

/** A valid request head, written in one of the forms the rules allow. */
const validRequest = fc.record({
  method: fc.constantFrom("GET", "POST", "PUT", "HEAD", "OPTIONS", "PATCH"),
  target: fc.constantFrom(
    "http://a.test/",
    "http://A.Test:8080/p?q=1",
    "http://[::1]:81/x",
    "http://a.test",
  ),
  version: fc.constantFrom("HTTP/1.1", "HTTP/1.0", "HTTP/1.2"),
  host: fc.constantFrom("a.test", "a.test:80", "", "[::1]:81"),
  body: fc.constantFrom(
    "",
    "Content-Length: 5\r\n",
    "Content-Length: 5, 5\r\n",
    "Transfer-Encoding: chunked\r\n",
    "Transfer-Encoding: CHUNKED\r\n",
  ),
  extra: fc.array(
    fc.tuple(
      token(10),
      fc.string({
        unit: fc.constantFrom("a", "Z", "1", " ", "\t", "\xe9", ",", ";", "="),
        maxLength: 12,
      }),
    ).map(([n, v]) => `${n}:${v}\r\n`),
    { maxLength: 4 },
  ),
}).map((r) =>
  `${r.method} ${r.target} ${r.version}\r\nHost: ${r.host}\r\n${r.body}` +
  r.extra.join("") + "\r\n"
);

const validResponse = fc.record({
  status: fc.constantFrom("200 OK", "204 No Content", "404", "101 Switching"),
  version: fc.constantFrom("HTTP/1.1", "HTTP/1.0"),
  body: fc.constantFrom(
    "",
    "Content-Length: 5\r\n",
    "Transfer-Encoding: chunked\r\n",
    "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
  ),
  extra: fc.array(
    fc.tuple(token(10), fc.string({ maxLength: 12 })).map(([n, v]) =>
      `${n}: ${v.replace(/[\r\n\0]/g, "")}\r\n`
    ),
    { maxLength: 4 },
  ),
}).map((r) =>
  `${r.version} ${r.status}\r\n${
    r.version === "HTTP/1.0"
      ? r.body.replace(/Transfer-Encoding.*\r\n/, "")
      : r.body
  }${r.extra.join("")}\r\n`
);

Deno.test("fuzz: request heads from random bytes give a HeadError or a valid head", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.uint8Array({ maxLength: 200 }).map(latin1),
        headText(headAlphabet).map((p) => p),
      ),
      cuts,
      (text, at) => headCase(text, at, "request"),
    ),
    params(4000),
  );
});

Deno.test("fuzz: mutated valid request heads give a HeadError or a valid head", async () => {
  await fc.assert(
    fc.asyncProperty(
      validRequest,
      edits(HEAD_PIECES),
      cuts,
      (text, list, at) => headCase(mutate(text, list), at, "request"),
    ),
    params(5000),
  );
});

Deno.test("fuzz: response heads, random and mutated, give a HeadError or a valid head", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.uint8Array({ maxLength: 200 }).map(latin1),
        headText(headAlphabet),
        fc.tuple(validResponse, edits(HEAD_PIECES)).map(([t, l]) =>
          mutate(t, l)
        ),
      ),
      cuts,
      (text, at) => headCase(text, at, "response"),
    ),
    params(4000),
  );
});

// -------------------------------------------------------------- chunked

/** What copyBody made of a chunked body: its output, or its BodyError. */
type Outcome = { ok: string } | { error: string };

async function dechunked(
  reads: Uint8Array[],
  dechunk: boolean,
): Promise<Outcome> {
  const reader = new Reader(memoryStream(reads));
  const sink = memoryStream([]);
  try {
    await settles(copyBody(reader, sink, { kind: "chunked" }, { dechunk }));
    return { ok: latin1(sink.written()) };
  } catch (e) {
    if (e instanceof BodyError) return { error: e.message };
    throw e;
  } finally {
    reader.release();
  }
}

/** The reference's verdict on `text`, as copyBody would give it. */
function expected(text: string, dechunk: boolean): "error" | string {
  const r = referenceDechunk(text);
  if (r === null) return "error";
  return dechunk ? r.data : text.slice(0, r.end);
}

async function assertAsReference(
  text: string,
  reads: Uint8Array[],
  dechunk: boolean,
): Promise<void> {
  const got = await dechunked(reads, dechunk);
  const want = expected(text, dechunk);
  const label = JSON.stringify(text);
  if (want === "error") assert.ok("error" in got, `accepted ${label}`);
  else {
    assert.ok("ok" in got, `${label}: ${"error" in got ? got.error : ""}`);
    assert.equal(got.ok, want, label);
  }
}

const CHUNK_PIECES = [
  "\r\n",
  "\r",
  "\n",
  " ",
  "\t",
  ";",
  "=",
  '"',
  "\\",
  ":",
  "0",
  "f",
  "F",
  "x",
  "-",
  "+",
  "\0",
  "\x7f",
  "\xff",
  "0\r\n\r\n",
  "ffffffffffffffff",
];

Deno.test("fuzz: random chunked bodies give a BodyError or what the grammar gives", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.uint8Array({ maxLength: 120 }).map(latin1),
        fc.string({
          unit: fc.constantFrom(...CHUNK_PIECES, "a", "1", "X: y"),
          maxLength: 40,
        }),
      ),
      cuts,
      fc.boolean(),
      (text, at, dechunk) =>
        assertAsReference(text, splitAt(bytesOf(text), at), dechunk),
    ),
    params(4000),
  );
});

Deno.test("fuzz: valid chunked bodies split at every point give exactly their bytes", async () => {
  await fc.assert(
    fc.asyncProperty(chunkedBody(), async (body) => {
      const bytes = bytesOf(body.text + "NEXT");
      for (let cut = 0; cut <= bytes.length; cut++) {
        const reads = splitAt(bytes, [cut]);
        const data = await dechunked(reads, true);
        assert.deepEqual(data, { ok: body.data }, `cut at ${cut}`);
        const passed = await dechunked(splitAt(bytes, [cut]), false);
        assert.deepEqual(passed, { ok: body.text }, `cut at ${cut}`);
      }
    }),
    params(1000),
  );
});

Deno.test("fuzz: mutated chunked bodies, split at every point, agree with the grammar", async () => {
  await fc.assert(
    fc.asyncProperty(
      chunkedBody(),
      edits(CHUNK_PIECES),
      fc.boolean(),
      async (body, list, dechunk) => {
        const text = mutate(body.text, list);
        const bytes = bytesOf(text);
        for (let cut = 0; cut <= bytes.length; cut++) {
          await assertAsReference(text, splitAt(bytes, [cut]), dechunk);
        }
      },
    ),
    params(1500),
  );
});

// ---------------------------------------------------------------- rules

/** A rule's structure, without the columns of its names. */
function shape(rule: Rule): unknown {
  switch (rule.kind) {
    case "const":
      return rule.value;
    case "name":
      return rule.name;
    case "not":
      return ["not", shape(rule.operand)];
    case "binary":
      return [rule.op, shape(rule.left), shape(rule.right)];
  }
}

/** Parses `text`: a RuleError, or a rule that prints and parses back to itself. */
function ruleCase(text: string) {
  let rule: Rule;
  try {
    rule = parseRule(text);
  } catch (e) {
    if (!(e instanceof RuleError)) throw e;
    const length = Array.from(text).length;
    assert.ok(
      Number.isInteger(e.column) && e.column >= 1 && e.column <= length + 1,
      `column ${e.column} of ${length}`,
    );
    return;
  }
  for (const ascii of [false, true]) {
    const printed = printRule(rule, { ascii });
    const again = parseRule(printed);
    assert.deepEqual(shape(again), shape(rule), printed);
    assert.equal(printRule(again, { ascii }), printed);
  }
}

const RULE_PIECES = [
  " ",
  "(",
  ")",
  "¬",
  "∧",
  "∨",
  "⇒",
  "⇐",
  "≡",
  "≢",
  "and",
  "or",
  "not",
  "&&",
  "||",
  "&",
  "|",
  "!",
  "~",
  "=>",
  "<=",
  "==",
  "!=",
  "=",
  "<",
  ">",
  "true",
  "false",
  "a",
  "b1",
  "_x",
  "é",
  "𝒳",
  "down.0",
  "a-b",
  "1",
  ".",
  "-",
  "\u0000",
  "\u200b",
  "\ud800",
];

const ruleTree: fc.Arbitrary<Rule> = fc.letrec((tie) => ({
  rule: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.boolean().map((value): Rule => ({ kind: "const", value })),
    fc.constantFrom("a", "b", "sessions", "down0", "é_1", "x.y-z").map(
      (name): Rule => ({ kind: "name", name, column: 1 }),
    ),
    tie("rule").map((operand): Rule => ({
      kind: "not",
      operand: operand as Rule,
    })),
    fc.tuple(
      fc.constantFrom(
        "and",
        "or",
        "implies",
        "follows",
        "equiv",
        "differs",
      ) as fc.Arbitrary<"and">,
      tie("rule"),
      tie("rule"),
    ).map(([op, left, right]): Rule => ({
      kind: "binary",
      op,
      left: left as Rule,
      right: right as Rule,
    })),
  ),
})).rule;

Deno.test("fuzz: random rule texts give a RuleError or a rule that prints back to itself", () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.string({ unit: "grapheme", maxLength: 30 }),
        fc.string({ unit: fc.constantFrom(...RULE_PIECES), maxLength: 20 }),
      ),
      ruleCase,
    ),
    params(4000),
  );
});

Deno.test("fuzz: mutated valid rules give a RuleError or a rule that prints back to itself", () => {
  fc.assert(
    fc.property(
      ruleTree,
      fc.boolean(),
      edits(RULE_PIECES, 0x2fff),
      (rule, ascii, list) => ruleCase(mutate(printRule(rule, { ascii }), list)),
    ),
    params(4000),
  );
});

Deno.test("fuzz: any rule tree prints to a text that parses to the same tree", () => {
  fc.assert(
    fc.property(ruleTree, fc.boolean(), (rule, ascii) => {
      const printed = printRule(rule, { ascii });
      assert.deepEqual(shape(parseRule(printed)), shape(rule), printed);
    }),
    params(3000),
  );
});

// --------------------------------------------------------------- config

/** Every kind but adDB (which needs a directory) in one managers.toml. */
const EVERY_KIND =
  `rule = "lan ∧ day ∧ staff ∧ web ∧ (sessions ∧ down ∧ slow ∧ up ∧ out)"
admins = ["u"]
jwtExpiration = "1h"
[[sessionIPM]]
name = "sessions"
auth = "map"
idleTimeout = "30m"
[[dwnConsR]]
name = "down"
userDBN = "map"
resetCycle = "daily"
timezone = "UTC"
[dwnConsR.groupQuota]
g = "1 GB"
[dwnConsR.userQuota]
u = "2 GB"
[[rangeIPM]]
name = "lan"
cidr = "10.0.0.0/8"
[[timeSpan]]
name = "day"
days = ["mon", "tue"]
from = "08:00"
to = "17:00"
timezone = "UTC"
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
proxyURL = "socks5://a:b@10.0.0.1:1080"
[[netIface]]
name = "out"
addr = "127.0.0.1"
[mapDB]
name = "map"
[mapDB.userPass]
u = "p"
[mapDB.userGroup]
u = ["g"]
`;

const SERVER_TOML = `[api]
  httpsCert = "cert.pem"
  httpsKey = "key.pem"
  webStaticFilesDir = "staticFiles"
  persistInterval = "1m"
  publicUrl = "https://gateway.test:4443/"
  [api.server]
    addr = ":4443"
    readTimeout = "30s"
    writeTimeout = "20s"

[proxy]
  dialTimeout = "10s"
  responseTimeout = "1m"
  connectPorts = [443, 8443]
  maxTunnelsPerClient = 100
  [proxy.server]
    addr = ":8080"
    readTimeout = "30s"
    writeTimeout = "20s"
    maxConnections = 1000
    maxHeaderBytes = "64 KiB"
    maxRequestBody = "10 MB"

[state]
  url = "redis://127.0.0.1:6379/0"
  syncInterval = "1s"
`;

/** Values and lines that matter to the loaders. */
const CONFIG_PIECES = [
  '""',
  '"0"',
  "0",
  "-1",
  "1e400",
  "nan",
  "inf",
  "true",
  "[]",
  "{}",
  "[[]]",
  '["x", 1]',
  '"-5m"',
  '"999999999999 GB"',
  '"1 XB"',
  '"24h"',
  '"1 GB"',
  '"abc"',
  '"10.0.0.0/33"',
  '"::1"',
  '"http://"',
  '"socks5://"',
  '"25:00"',
  '"Mars/Olympus"',
  '"sessions ∨ true"',
  '"(a"',
  '"x ∧ y"',
  "1979-05-27T07:32:00Z",
  "\n[sessionIPM]\n",
  "\n[[mapDB]]\n",
  '\nname = "map"\n',
  "\n[api]\n",
  "\n[proxy.server]\n",
  "\n[state]\n",
  "\n[x]\n",
  "=",
  '"',
  "'",
  "[",
  "]",
  ".",
  "\n",
  "#",
];

/** A loader error is a ConfigError at a line (or, from proxy/, names one). */
function assertConfigError(e: unknown, file: string): void {
  if (e instanceof ConfigError) {
    assert.ok(
      typeof e.site.line === "number" && e.site.line >= 1,
      `no line: ${e.message}`,
    );
    return;
  }
  // proxy/ imports nothing of ours, so [proxy] errors are plain Errors
  // whose message starts with file:line.
  assert.ok(e instanceof Error, String(e));
  assert.match(
    e.message,
    new RegExp(`^${file}:\\d+: `),
    `${e.name}: ${e.message}`,
  );
}

Deno.test("fuzz: mutated managers.toml files load or give a ConfigError with a line", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(README_TOML, EVERY_KIND),
      edits(CONFIG_PIECES, 0x7f),
      async (base, list) => {
        const text = mutate(base, list);
        try {
          await loadManagers(parseTomlText("managers.toml", text));
        } catch (e) {
          if (e instanceof ConfigError && e.site.line !== undefined) return;
          assert.fail(
            `${e instanceof Error ? e.stack : e}\nfor:\n${text}`,
          );
        }
      },
    ),
    params(3000),
  );
});

Deno.test("fuzz: mutated server.toml files load or give an error with a line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pmproxy-fuzz-" });
  try {
    fc.assert(
      fc.property(edits(CONFIG_PIECES, 0x7f), (list) => {
        const text = mutate(SERVER_TOML, list);
        try {
          const toml = parseTomlText("server.toml", text);
          const site = {
            file: "server.toml",
            configDir: dir,
            lineOf: toml.lineOf,
          };
          apiConfigFrom(toml.data.api ?? {}, site);
          proxyConfigFrom(toml.data.proxy ?? {}, site);
          stateConfigFrom(toml.data.state, site);
        } catch (e) {
          try {
            assertConfigError(e, "server.toml");
          } catch (failed) {
            throw new Error(`${(failed as Error).message}\nfor:\n${text}`);
          }
        }
      }),
      params(3000),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ------------------------------------------------------------------ api

/** JSON values that mean something to /api/cmd, and any others. */
function cmdBodies(secrets: string[]): fc.Arbitrary<string> {
  const text = fc.oneof(
    fc.constantFrom(
      "",
      "rules",
      "sessions",
      "down",
      "map",
      "nosuch",
      "user0",
      "admin",
      "pass0",
      "__proto__",
      "constructor",
      "toString",
    ),
    fc.string({ maxLength: 12 }),
  );
  const value = fc.oneof(
    { weight: 4, arbitrary: text },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
  );
  const body = fc.record({
    cmd: fc.oneof(
      fc.constantFrom(
        "discover",
        "open",
        "close",
        "get",
        "getOther",
        "set",
        "renew",
        "check",
        "show",
      ),
      value,
    ),
    manager: value,
    secret: fc.oneof(fc.constantFrom(...secrets), value),
    cred: fc.oneof(
      fc.record({ user: value, pass: value }, { requiredKeys: [] }),
      value,
    ),
    info: fc.oneof(
      fc.record({
        userName: value,
        bytesCons: fc.oneof(
          fc.constantFrom(0, -1, 1.5, 2 ** 53, 1e308, 100),
          value,
        ),
      }, { requiredKeys: [] }),
      value,
    ),
  }, { requiredKeys: [] });
  return fc.oneof(
    { weight: 6, arbitrary: body.map((b) => JSON.stringify(b)) },
    { weight: 1, arbitrary: fc.json({ maxDepth: 3 }) },
    { weight: 1, arbitrary: fc.string({ maxLength: 30 }) },
  );
}

Deno.test("fuzz: /api/cmd answers random JSON bodies, never with a 500", async () => {
  const real = await openRealGateway(adminManagers());
  const errors: string[] = [];
  let ip = "127.0.0.1";
  const app = createApp(real.gateway, {
    clientIp: () => ip,
    logError: (m) => errors.push(m),
  });
  const post = (body: string) =>
    app.request("/api/cmd", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body,
    });
  try {
    // An admin logged in from one address, a user from another: the
    // bodies may carry their secrets, and reach the commands behind them.
    const secretOf = async (from: string, user: string, pass: string) => {
      ip = from;
      const res = await post(JSON.stringify({
        cmd: "open",
        manager: "sessions",
        cred: { user, pass },
      }));
      assert.equal(res.status, 200);
      return await res.text();
    };
    const admin = await secretOf("10.1.2.3", "admin", "admin-pass");
    const user = await secretOf("127.0.0.1", "user0", "pass0");
    await fc.assert(
      fc.asyncProperty(
        cmdBodies([admin, user, "x.y.z", ""]),
        fc.constantFrom("127.0.0.1", "10.1.2.3", "::1", "::ffff:10.0.0.1"),
        async (body, from) => {
          ip = from;
          const res = await settles(Promise.resolve(post(body)));
          const text = await res.text();
          assert.notEqual(res.status, 500, `${body} -> ${text}`);
          assert.deepEqual(errors, [], body);
        },
      ),
      params(3000),
    );
  } finally {
    await real.close();
  }
});

// ---------------------------------------------- cases the fuzzers found

Deno.test("fuzz regression: a managers.toml without a rule names line 1, where the rule goes", async () => {
  // Found by the managers.toml property: `#` inserted before `rule`.
  const text = "#" + README_TOML;
  const e = await loadManagers(parseTomlText("managers.toml", text)).then(
    () => undefined,
    (e) => e,
  );
  assert.ok(e instanceof ConfigError, String(e));
  assert.equal(e.site.line, 1);
  assert.match(e.message, /^managers\.toml:1: there is no rule/);
});

Deno.test("fuzz regression: a table made only by its sub-table's header is named at that header's line", async () => {
  // Found by the managers.toml property: `[[dwnConsR]]` mistyped as
  // `[[DwnConsR]]` leaves `[dwnConsR.groupQuota]` to make a `dwnConsR`
  // table without a name, which had no line.
  const text = README_TOML.replace("[[dwnConsR]]", "[[DwnConsR]]");
  const e = await loadManagers(parseTomlText("managers.toml", text)).then(
    () => undefined,
    (e) => e,
  );
  assert.ok(e instanceof ConfigError, String(e));
  const header =
    text.split("\n").findIndex((l) => l.includes("[dwnConsR.groupQuota]")) + 1;
  assert.equal(e.site.line, header, e.message);
  assert.match(e.message, /a \[dwnConsR\] table needs a name/);
});
