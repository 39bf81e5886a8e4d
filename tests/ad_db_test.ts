/**
 * `adDB` against a real OpenLDAP slapd (tests/helpers/slapd.ts): login by
 * DN with full name and groups, wrong password, unknown user, filter
 * injection, searches with and without a service account, an unreachable
 * and a silent server, LDAPS and StartTLS with a test CA; and its
 * configuration read by the real loader of `managers.toml`.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { parseTomlText } from "../managers/config/toml_file.ts";
import { loadManagers } from "../managers/config/loader.ts";
import {
  CommandError,
  ConfigError,
  LOGIN_FAILED,
  type UserDb,
} from "../managers/types.ts";
import {
  escapeFilterValue,
  fillFilter,
  groupNameOfDn,
  userAttrOfFilter,
} from "../managers/users/_ldap_text.ts";
import { adDbToml, type Slapd, startSlapd } from "./helpers/slapd.ts";

const OPENLDAP_FILTER = "(&(objectClass=inetOrgPerson)(uid={user}))";

/** Loads a managers.toml holding `[adDB]` with these lines; answers it. */
async function loadAdDb(
  lines: string,
  file = "/nonexistent/managers.toml",
): Promise<{ db: UserDb; warnings: string[] }> {
  const text = `rule = "true"\n[adDB]\n  name = "ldap"\n${lines}\n`;
  const loaded = await loadManagers(parseTomlText(file, text));
  const db = loaded.userDbs.get("ldap");
  assert.ok(db, "the adDB was not loaded");
  return { db, warnings: loaded.warnings };
}

/** The adDB lines reaching `ldap` by DN with the administrator as reader. */
function dnLines(ldap: Slapd, extra = ""): string {
  return `  addr = "${ldap.url}"
  bdn = "${ldap.peopleDn}"
  user = "${ldap.rootDn}"
  pass = "${ldap.rootPw}"
  bindAs = "dn"
  userFilter = "${OPENLDAP_FILTER}"
  timeout = "5s"
${extra}`;
}

async function commandError(
  p: Promise<unknown>,
): Promise<CommandError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof CommandError, `expected a CommandError, got ${e}`);
    return e;
  }
  assert.fail("expected a CommandError, got success");
}

async function configError(
  lines: string,
  ...patterns: RegExp[]
): Promise<string> {
  let caught: unknown;
  try {
    await loadAdDb(lines);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof ConfigError, `expected ConfigError: ${caught}`);
  for (const p of patterns) assert.match(caught.message, p);
  return caught.message;
}

// ------------------------------------------------------------ text helpers

Deno.test("adDB text: filter values are escaped as RFC 4515 says", () => {
  assert.equal(escapeFilterValue("*)(uid=*"), "\\2a\\29\\28uid=\\2a");
  assert.equal(escapeFilterValue("a\\b\0c"), "a\\5cb\\00c");
  assert.equal(escapeFilterValue("José Ñ"), "José Ñ");
  assert.equal(
    fillFilter(OPENLDAP_FILTER, "x)(|(uid=*"),
    "(&(objectClass=inetOrgPerson)(uid=x\\29\\28|\\28uid=\\2a))",
  );
  assert.equal(userAttrOfFilter(OPENLDAP_FILTER), "uid");
  assert.equal(
    userAttrOfFilter("(&(objectClass=user)(sAMAccountName={user}))"),
    "sAMAccountName",
  );
  assert.equal(userAttrOfFilter("(mail={user}@corp)"), undefined);
});

Deno.test("adDB text: group names are the CN of memberOf DNs", () => {
  assert.equal(
    groupNameOfDn("CN=Domain Users,CN=Users,DC=corp,DC=example"),
    "Domain Users",
  );
  assert.equal(groupNameOfDn("cn=staff,ou=groups,dc=example,dc=org"), "staff");
  assert.equal(groupNameOfDn("cn=R\\2cD,ou=groups"), "R,D");
  assert.equal(groupNameOfDn("CN=Smith\\, J,OU=x"), "Smith, J");
  assert.equal(groupNameOfDn("cn=caf\\c3\\a9,ou=g"), "café");
  assert.equal(groupNameOfDn("ou=people,dc=example"), undefined);
});

// ------------------------------------------------------------ configuration

Deno.test("adDB config: addresses, defaults and show without the password", async () => {
  const { db, warnings } = await loadAdDb(`  addr = "dc.corp.example:3268"
  suff = "@corp.example"
  bdn = "DC=corp,DC=example"
  user = "reader@corp.example"
  pass = "s3cret"`);
  assert.equal(db.kind, "adDB");
  assert.equal(db.name, "ldap");
  const shown = db.show() as Record<string, unknown>;
  assert.equal(shown.url, "ldap://dc.corp.example:3268");
  assert.equal(shown.bindAs, "suffix");
  assert.equal(
    shown.userFilter,
    "(&(objectClass=user)(sAMAccountName={user}))",
  );
  assert.equal(shown.nameAttr, "displayName");
  assert.equal(shown.tls, "none");
  assert.equal(shown.timeout, "5s");
  // The service account's name and password are shown to nobody.
  assert.equal(shown.serviceAccount, true);
  assert.equal(shown.user, undefined);
  assert.doesNotMatch(JSON.stringify(shown), /reader@corp\.example/);
  assert.ok(!JSON.stringify(shown).includes("s3cret"), "show leaks pass");
  assert.ok(
    warnings.some((w) =>
      /managers\.toml:4: passwords go to .* unencrypted/.test(w)
    ),
    `expected a warning about clear-text passwords: ${warnings}`,
  );

  const ldaps = await loadAdDb(`  addr = "ldaps://dc.corp.example"
  bdn = "DC=corp,DC=example"
  suff = "@corp.example"`);
  const s2 = ldaps.db.show() as Record<string, unknown>;
  assert.equal(s2.url, "ldaps://dc.corp.example:636");
  assert.equal(s2.tls, "ldaps");
  assert.equal(s2.serviceAccount, false);
  assert.deepEqual(ldaps.warnings, []);

  const hostLdaps = await loadAdDb(`  addr = "127.0.0.1:1636"
  bdn = "dc=x"
  suff = "@x"
  tls = "ldaps"`);
  assert.equal(
    (hostLdaps.db.show() as Record<string, unknown>).url,
    "ldaps://127.0.0.1:1636",
  );
});

Deno.test("adDB config: wrong keys and values are errors naming the key and line", async () => {
  const base = `  addr = "ldap://127.0.0.1:389"\n  bdn = "dc=example,dc=org"\n`;
  await configError(`${base}  tsl = "starttls"`, /:6\b/, /"tsl"/, /"tls"/);
  await configError(`${base}  timeout = 5`, /:6\b/, /timeout/);
  await configError(`  addr = 389\n  bdn = "dc=x"`, /:4\b/, /"addr"/);
  await configError(`  bdn = "dc=x"`, /"addr"/, /the directory's address/);
  await configError(`  addr = "ldap://h"`, /"bdn"/);
  await configError(`${base}  bindAs = "upn"`, /"bindAs"/, /"dn"/);
  await configError(`${base}  userFilter = "(uid=alice)"`, /\{user\}/);
  await configError(
    `${base}  userFilter = "(uid={user}"`,
    /not an LDAP filter/,
  );
  await configError(`${base}  user = "cn=reader"`, /"user"/, /no "pass"/);
  await configError(`${base}  pass = "x"`, /"pass"/, /without "user"/);
  await configError(`${base}  tls = "ssl"`, /"tls"/, /"starttls"/);
  await configError(
    `  addr = "ldaps://h"\n  bdn = "dc=x"\n  tls = "starttls"`,
    /"tls"/,
    /LDAPS/,
  );
  await configError(`  addr = "http://h"\n  bdn = "dc=x"`, /ldap:\/\//);
  await configError(
    `  addr = "ldap://h/dc=example"\n  bdn = "dc=x"`,
    /only a host and a port/,
  );
  for (const addr of ["ldap://:s3cret@h", "ldap://reader:s3cret@h"]) {
    await configError(
      `  addr = "${addr}"\n  bdn = "dc=x"`,
      /"addr" must not hold a user or a password/,
    );
    await assert.rejects(
      () => loadAdDb(`  addr = "${addr}"\n  bdn = "dc=x"`),
      (e: Error) => !e.message.includes("s3cret"),
    );
  }
  await configError(`${base}  nameAttr = "display name"`, /"nameAttr"/);
  await configError(
    `${base}  tls = "starttls"\n  caFile = "no-such-ca.pem"`,
    /caFile/,
    /cannot read/,
  );
});

// ------------------------------------------------------------ unreachable

Deno.test("adDB: a closed port gives a clear error, not a hang", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const { db } = await loadAdDb(`  addr = "127.0.0.1:${port}"
  bdn = "dc=example,dc=org"
  bindAs = "dn"
  userFilter = "${OPENLDAP_FILTER}"`);
  const e = await commandError(db.authenticate("alice", "pw"));
  assert.match(
    e.message,
    new RegExp(
      `^cannot reach the directory at ldap://127\\.0\\.0\\.1:${port}: .+; try again later or tell the administrator`,
    ),
  );
  assert.match(e.message, /ECONNREFUSED|refused/i);
  const e2 = await commandError(db.lookup("alice"));
  assert.match(e2.message, /^cannot reach the directory/);
});

Deno.test("adDB: a server that accepts and never answers is cut off at the timeout", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const c of listener) held.push(c); // read nothing, answer nothing
  })();
  try {
    for (const tls of ["none", "starttls"]) {
      const { db } = await loadAdDb(`  addr = "ldap://127.0.0.1:${port}"
  bdn = "dc=example,dc=org"
  bindAs = "dn"
  tls = "${tls}"
  userFilter = "${OPENLDAP_FILTER}"
  timeout = "300ms"`);
      const e = await commandError(db.authenticate("alice", "pw"));
      assert.match(
        e.message,
        /^cannot reach the directory at ldap:\/\/127\.0\.0\.1:\d+: .*(no answer within 0\.3 s|timeout)/i,
      );
    }
  } finally {
    listener.close();
    await accepting.catch(() => {});
    for (const c of held) {
      try {
        c.close();
      } catch { /* closed by the client already */ }
    }
  }
});

// ------------------------------------------------------------ real slapd

Deno.test("slapd helper: says what to install when slapd is missing", async () => {
  const empty = await Deno.makeTempDir();
  try {
    await assert.rejects(
      startSlapd({ binDir: empty }),
      /slapd is missing.*apt-get install .*slapd ldap-utils/,
    );
  } finally {
    await Deno.remove(empty, { recursive: true });
  }
});

Deno.test("adDB against a real slapd", async (t) => {
  await using ldap = await startSlapd({ tls: true });
  await ldap.addUser("alice", "alice-pw", "Alice Liddell", ["staff", "wifi"]);
  await ldap.addUser("bob", "bob-pw", "Bob Builder", ["staff"]);
  await ldap.addUser("carol", "carol-pw", "Carol C", []);

  const { db } = await loadAdDb(dnLines(ldap));

  await t.step("login by DN: full name and two groups", async () => {
    const rec = await db.authenticate("alice", "alice-pw");
    assert.deepEqual(rec, {
      userName: "alice",
      name: "Alice Liddell",
      groups: ["staff", "wifi"],
    });
    assert.deepEqual(await db.authenticate("bob", "bob-pw"), {
      userName: "bob",
      name: "Bob Builder",
      groups: ["staff"],
    });
    assert.deepEqual(await db.authenticate("carol", "carol-pw"), {
      userName: "carol",
      name: "Carol C",
      groups: [],
    });
  });

  await t.step("the directory's spelling of the name is kept", async () => {
    const rec = await db.authenticate("ALICE", "alice-pw");
    assert.equal(rec.userName, "alice");
  });

  await t.step("wrong or empty password", async () => {
    const e = await commandError(db.authenticate("alice", "bob-pw"));
    assert.deepEqual(e.body, { message: LOGIN_FAILED });
    const empty = await commandError(db.authenticate("alice", ""));
    assert.deepEqual(empty.body, { message: LOGIN_FAILED });
  });

  await t.step("unknown user", async () => {
    // The same answer as a wrong password: nobody learns who exists.
    const e = await commandError(db.authenticate("mallory", "x"));
    assert.deepEqual(e.body, { message: LOGIN_FAILED });
    assert.equal(await db.lookup("mallory"), undefined);
  });

  await t.step("filter injection is matched literally", async () => {
    for (const evil of ["*)(uid=*", "*", "al*", "alice)(uid=bob", "\\2a"]) {
      const e = await commandError(db.authenticate(evil, "alice-pw"));
      assert.deepEqual(e.body, { message: LOGIN_FAILED }, evil);
      assert.equal(await db.lookup(evil), undefined, evil);
    }
  });

  await t.step("lookup with the service account", async () => {
    assert.deepEqual(await db.lookup("alice"), {
      userName: "alice",
      name: "Alice Liddell",
      groups: ["staff", "wifi"],
    });
  });

  await t.step("a user account as service account; nameAttr cn", async () => {
    const { db: other } = await loadAdDb(`  addr = "${ldap.url}"
  bdn = "${ldap.baseDn}"
  user = "uid=bob,${ldap.peopleDn}"
  pass = "bob-pw"
  bindAs = "dn"
  nameAttr = "cn"
  userFilter = "${OPENLDAP_FILTER}"`);
    assert.deepEqual(await other.lookup("alice"), {
      userName: "alice",
      name: "Alice Liddell",
      groups: ["staff", "wifi"],
    });
  });

  await t.step("a refused service account is reported as such", async () => {
    const { db: bad } = await loadAdDb(`  addr = "${ldap.url}"
  bdn = "${ldap.peopleDn}"
  user = "${ldap.rootDn}"
  pass = "not-the-password"
  bindAs = "dn"
  userFilter = "${OPENLDAP_FILTER}"`);
    const e = await commandError(bad.authenticate("alice", "alice-pw"));
    assert.match(
      e.message,
      /refused the service account "cn=admin,dc=example,dc=org" of adDB "ldap".*check "user" and "pass"/,
    );
  });

  await t.step(
    "anonymous search sees nothing here: a clear error",
    async () => {
      const { db: anon } = await loadAdDb(`  addr = "${ldap.url}"
  bdn = "${ldap.peopleDn}"
  bindAs = "dn"
  userFilter = "${OPENLDAP_FILTER}"`);
      const e = await commandError(anon.authenticate("alice", "alice-pw"));
      assert.match(e.message, /anonymous searches may not see it/);
      assert.match(e.message, /service account/);
    },
  );

  await t.step("bindAs suffix binds as user + suff", async () => {
    // slapd takes only DNs as simple-bind names, so "alice@example.org"
    // is refused as a name: this shows the bind name used, and the error.
    const { db: ad } = await loadAdDb(`  addr = "${ldap.url}"
  bdn = "${ldap.peopleDn}"
  suff = "@example.org"
  userFilter = "${OPENLDAP_FILTER}"`);
    const e = await commandError(ad.authenticate("alice", "alice-pw"));
    assert.match(
      e.message,
      /refused the login of "alice@example\.org".*tell the administrator/,
    );
    const { db: withReader } = await loadAdDb(`  addr = "${ldap.url}"
  bdn = "${ldap.peopleDn}"
  suff = "@example.org"
  user = "${ldap.rootDn}"
  pass = "${ldap.rootPw}"
  userFilter = "${OPENLDAP_FILTER}"`);
    const unknown = await commandError(withReader.authenticate("zed", "x"));
    assert.deepEqual(unknown.body, { message: LOGIN_FAILED });
    const e2 = await commandError(withReader.authenticate("alice", "pw"));
    assert.match(e2.message, /refused the login of "alice@example\.org"/);
  });

  await t.step("the helper's adDbToml tables load and log in", async () => {
    for (const tls of ["none", "ldaps", "starttls"] as const) {
      const text = `rule = "true"\n${adDbToml(ldap, "dir", { tls })}`;
      const loaded = await loadManagers(
        parseTomlText("/x/managers.toml", text),
      );
      const dir = loaded.userDbs.get("dir")!;
      assert.equal(
        (await dir.authenticate("bob", "bob-pw")).name,
        "Bob Builder",
      );
    }
  });

  await t.step("several logins at once, each on its own client", async () => {
    const names = ["alice", "bob", "carol", "alice", "bob", "mallory"];
    const results = await Promise.allSettled(
      names.map((n) => db.authenticate(n, n === "mallory" ? "x" : `${n}-pw`)),
    );
    for (let i = 0; i < names.length - 1; i++) {
      const r = results[i];
      assert.equal(r.status, "fulfilled", names[i]);
      assert.equal(
        (r as PromiseFulfilledResult<{ userName: string }>).value.userName,
        names[i],
      );
    }
    assert.equal(results[5].status, "rejected");
  });

  await t.step("LDAPS with the test CA", async () => {
    const { db: secure } = await loadAdDb(
      `  addr = "${ldap.ldapsUrl}"
  bdn = "${ldap.peopleDn}"
  user = "${ldap.rootDn}"
  pass = "${ldap.rootPw}"
  bindAs = "dn"
  userFilter = "${OPENLDAP_FILTER}"
  caFile = "ca.pem"`,
      join(ldap.dir, "managers.toml"),
    );
    assert.equal((secure.show() as Record<string, unknown>).tls, "ldaps");
    const rec = await secure.authenticate("alice", "alice-pw");
    assert.deepEqual(rec.groups, ["staff", "wifi"]);
    const e = await commandError(secure.authenticate("alice", "nope"));
    assert.deepEqual(e.body, { message: LOGIN_FAILED });
  });

  await t.step("StartTLS with the test CA", async () => {
    const { db: secure } = await loadAdDb(
      dnLines(ldap, `  tls = "starttls"\n  caFile = "${ldap.caFile}"`),
    );
    const rec = await secure.authenticate("bob", "bob-pw");
    assert.deepEqual(rec, {
      userName: "bob",
      name: "Bob Builder",
      groups: ["staff"],
    });
    // slapd saw bob's password only inside TLS (ssf = security strength).
    const bobBind =
      /BIND dn="uid=bob,ou=people,dc=example,dc=org" mech=SIMPLE .*ssf=(\d+)/g;
    let ssf: string[] = [];
    for (let i = 0; i < 50 && ssf.length === 0; i++) {
      ssf = [...ldap.log().matchAll(bobBind)].map((m) => m[1]);
      if (ssf.length === 0) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(
      ssf.length > 0,
      `no bind of bob in the slapd log:\n${ldap.log()}`,
    );
    assert.notEqual(ssf.at(-1), "0", "the StartTLS bind was not encrypted");
    assert.match(ldap.log(), /STARTTLS/);
  });

  await t.step("TLS without trusting the CA is refused", async () => {
    const { db: untrusting } = await loadAdDb(`  addr = "${ldap.ldapsUrl}"
  bdn = "${ldap.peopleDn}"
  user = "${ldap.rootDn}"
  pass = "${ldap.rootPw}"
  bindAs = "dn"
  userFilter = "${OPENLDAP_FILTER}"`);
    const e = await commandError(untrusting.authenticate("alice", "alice-pw"));
    assert.match(e.message, /^cannot reach the directory at ldaps:/);
    assert.match(e.message, /certificate/i);
    const { db: st } = await loadAdDb(dnLines(ldap, `  tls = "starttls"`));
    const e2 = await commandError(st.authenticate("alice", "alice-pw"));
    assert.match(e2.message, /^cannot reach the directory at ldap:/);
  });
});
