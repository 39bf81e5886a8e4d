/**
 * The client commands word for word (the original README's scenario),
 * trust on first use, a changed certificate refused, `--ca`, renewal of an
 * expired secret, and readable errors. In-process, against the real HTTPS
 * API and the real Gateway (managers/, real Deno KV).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { CLIENT_COMMANDS, runClientCommand } from "../api/client_commands.ts";
import { adminManagers, openRealGateway } from "./helpers/api_real_gateway.ts";
import { startTestApi, type TestApi } from "./helpers/api_server.ts";
import { FakeGateway } from "./helpers/api_fake_gateway.ts";
import {
  type Caller,
  CommandError,
  type DiscoverResult,
} from "../managers/mod.ts";

interface Cli {
  work: string;
  knownServers: string;
  run(...args: string[]): Promise<{ code: number; out: string; err: string }>;
  cleanup(): Promise<void>;
}

async function makeCli(): Promise<Cli> {
  const work = await Deno.makeTempDir({ prefix: "pmproxy-cli-" });
  const knownServers = join(work, "known", "known_servers.json");
  return {
    work,
    knownServers,
    run: async (...args) => {
      const out: string[] = [];
      const err: string[] = [];
      const code = await runClientCommand(
        [...args, "--known-servers", knownServers],
        { cwd: work, out: (l) => out.push(l), err: (l) => err.push(l) },
      );
      return { code, out: out.join("\n"), err: err.join("\n") };
    },
    cleanup: () => Deno.remove(work, { recursive: true }),
  };
}

async function readSecret(cli: Cli) {
  return JSON.parse(await Deno.readTextFile(join(cli.work, "login.secret")));
}

/** The next reset as `status` prints it for the test gateways' 24h cycle. */
const NEXT_RESET =
  /^Next reset: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d) \(in (1 d 0 h|23 h 59 min)\)$/;

/**
 * `status` split into the original's four lines and the lines pmproxy adds
 * (the bar, a warning, the next reset).
 */
function statusLines(out: string): { original: string; added: string[] } {
  const lines = out.split("\n");
  return { original: lines.slice(0, 4).join("\n"), added: lines.slice(4) };
}

Deno.test("cli: the README scenario word for word", async () => {
  const real = await openRealGateway();
  const gw = real.gateway;
  const t = await startTestApi(gw);
  const cli = await makeCli();
  try {
    const before = await cli.run("d", t.origin);
    assert.equal(before.code, 0, before.err);
    assert.equal(before.out, "Match result: false\n[❌] sessions:sessionIPM");
    assert.match(
      before.err,
      new RegExp(
        `^Trusting ${t.origin} with certificate SHA-256 ([0-9A-F]{2}:){31}[0-9A-F]{2} \\(first contact\\)$`,
      ),
    );

    const login = await cli.run(
      "l",
      "-m",
      "sessions",
      t.origin,
      "user0",
      "pass0",
    );
    assert.equal(login.code, 0, login.err);
    assert.equal(login.err, "", "the server is known now: no notice");
    assert.match(login.out, /Logged in as user0/);
    const secret = await readSecret(cli);
    assert.deepEqual(Object.keys(secret), [
      "server",
      "sessionIPM",
      "dwnConsR",
      "bwConsR",
      "secret",
    ]);
    assert.equal(secret.server, t.origin);
    assert.equal(secret.sessionIPM, "sessions");
    assert.equal(secret.dwnConsR, "down");
    assert.equal(secret.bwConsR, "");
    assert.equal(
      await gw.check("sessions", { ip: "127.0.0.1", secret: secret.secret }),
      "user0",
    );

    const status = await cli.run("s");
    assert.equal(status.code, 0, status.err);
    const lines = statusLines(status.out);
    assert.equal(
      lines.original,
      "User: user0\nName: user0\nGroups: [group0]\nQuota: 1 GB Consumption: 0 B",
    );
    assert.equal(lines.added.length, 2, status.out);
    assert.equal(lines.added[0], "[--------------] 0 %");
    assert.match(lines.added[1], NEXT_RESET);

    const after = await cli.run("d");
    assert.equal(
      after.out,
      "Match result: true\n[✅] down:dwnConsR\n[✅] sessions:sessionIPM",
    );

    // Who is logged in where is for administrators (the original showed it
    // to anyone logged in).
    const users = await cli.run("lu");
    assert.equal(users.code, 1);
    assert.equal(
      users.err,
      "pmproxy: the list of logged users is for administrators; user0 is not one",
    );
    // A bare host:port means https.
    const bare = await cli.run("d", t.origin.replace("https://", ""));
    assert.equal(bare.code, 0, bare.err);
    assert.match(bare.out, /^Match result: true$/m);

    const show = await cli.run("sh", "down");
    assert.equal(show.code, 0, show.err);
    assert.equal(JSON.parse(show.out).groupQuota.group0, "1 GB");
    assert.match(show.out, /\n {2}"userDBN": "map"/, "pretty printed");

    const logout = await cli.run("o");
    assert.equal(logout.code, 0, logout.err);
    await assert.rejects(Deno.stat(join(cli.work, "login.secret")));
    assert.match((await cli.run("d", t.origin)).out, /^Match result: false$/m);

    // A session that already ended elsewhere: logout still tidies up.
    await cli.run("login", "-m", "sessions", t.origin, "user0", "pass0");
    const other = await makeCli();
    await other.run("login", "-m", "sessions", t.origin, "user0", "pass0");
    assert.equal((await other.run("o")).code, 0);
    await other.cleanup();
    const stale = await cli.run("o");
    assert.equal(stale.code, 0, stale.err);
    assert.match(stale.out, /already ended/);
    await assert.rejects(Deno.stat(join(cli.work, "login.secret")));

    const again = await cli.run("s");
    assert.equal(again.code, 1);
    assert.equal(
      again.err,
      "pmproxy: not logged in: run `pmproxy login -m sessions https://host:4443 USER PASS` first",
    );
  } finally {
    await t.close();
    await real.close();
    await cli.cleanup();
  }
});

Deno.test("cli: admin status of another user and reset; refusals in words", async () => {
  const real = await openRealGateway(adminManagers());
  const t = await startTestApi(real.gateway);
  const cli = await makeCli();
  const admin = await makeCli();
  try {
    await cli.run("login", "-m", "sessions", t.origin, "user0", "pass0");
    assert.match((await cli.run("status")).out, /Consumption: 0 B$/m);
    const denied = await cli.run("reset", "user0");
    assert.equal(denied.code, 1);
    assert.equal(denied.err, "pmproxy: user0 is not an administrator");
    const deniedStatus = await cli.run("status", "admin");
    assert.equal(deniedStatus.err, "pmproxy: user0 is not an administrator");

    const wrong = await cli.run(
      "login",
      "-m",
      "sessions",
      t.origin,
      "user0",
      "bad",
    );
    assert.equal(wrong.code, 1);
    assert.equal(wrong.err, "pmproxy: incorrect user name or password");
    const nobody = await cli.run(
      "login",
      "-m",
      "sessions",
      t.origin,
      "nobody",
      "x",
    );
    assert.equal(nobody.err, "pmproxy: incorrect user name or password");
    const noManager = await cli.run("lu", "-m", "nope");
    assert.match(noManager.err, /no manager "nope"/);

    // Same IP: the admin's login ends user0's session.
    const login = await admin.run(
      "login",
      "-m",
      "sessions",
      t.origin,
      "admin",
      "admin-pass",
    );
    assert.equal(login.code, 0, login.err);
    const stale = await cli.run("status");
    assert.equal(stale.code, 1);
    assert.equal(
      stale.err,
      "pmproxy: this secret is user0's, but admin is logged in at your IP address; log in again",
    );
    const adminSecret = (await readSecret(admin)).secret;
    await real.gateway.setConsumption("down", {
      ip: "127.0.0.1",
      secret: adminSecret,
    }, { user: "user0", bytes: 3 * 1024 * 1024 });
    const other = statusLines((await admin.run("status", "user0")).out);
    assert.equal(
      other.original,
      "User: user0\nName: user0\nGroups: [group0]\nQuota: 1 GB Consumption: 3 MB",
    );
    assert.equal(other.added[0], "[--------------] 0 %");
    const reset = await admin.run("r", "user0");
    assert.equal(reset.code, 0, reset.err);
    assert.match((await admin.run("s", "user0")).out, /Consumption: 0 B$/m);
    const users = await admin.run("lu");
    assert.equal(users.out, "127.0.0.1 - admin");
  } finally {
    await t.close();
    await real.close();
    await cli.cleanup();
    await admin.cleanup();
  }
});

Deno.test("cli: wrong usage exits 2 with the usage", async () => {
  const cli = await makeCli();
  try {
    const noM = await cli.run("login", "https://x:1", "u", "p");
    assert.equal(noM.code, 2);
    assert.match(noM.err, /-m SESSIONMGR/);
    const flag = await cli.run("status", "--bogus");
    assert.equal(flag.code, 2);
    assert.match(flag.err, /bogus/);
    const extra = await cli.run("logout", "now");
    assert.equal(extra.code, 2);
    const http = await cli.run("d", "http://localhost:4443");
    assert.equal(http.code, 1);
    assert.match(http.err, /HTTPS/);
  } finally {
    await cli.cleanup();
  }
});

Deno.test("cli: trust on first use, pinned after, a new certificate is refused with both fingerprints", async () => {
  const real = await openRealGateway();
  const gw = real.gateway;
  const dir = await Deno.makeTempDir({ prefix: "pmproxy-cli-api-" });
  let t: TestApi = await startTestApi(gw, { dir });
  const port = t.api.addr.port;
  const cli = await makeCli();
  try {
    const first = await cli.run("d", t.origin);
    assert.equal(first.code, 0, first.err);
    const fp = /SHA-256 ([0-9A-F:]+) \(first contact\)/.exec(first.err)?.[1];
    assert.ok(fp, first.err);
    const known = JSON.parse(await Deno.readTextFile(cli.knownServers));
    assert.equal(known[t.origin].sha256, fp);
    assert.equal(known[t.origin].pem, t.api.certPem.trim() + "\n");

    const second = await cli.run("d", t.origin);
    assert.equal(second.code, 0, second.err);
    assert.equal(second.err, "");

    // Same address, new certificate: refused, both fingerprints named.
    await t.close();
    await Deno.remove(join(dir, "cert.pem"));
    t = await startTestApi(gw, { dir, port });
    const changed = await cli.run("d", t.origin);
    assert.equal(changed.code, 1);
    const now = /now ([0-9A-F:]+);/.exec(changed.err)?.[1];
    assert.ok(now && now !== fp, changed.err);
    assert.equal(
      changed.err,
      `pmproxy: the certificate of ${t.origin} changed: pinned SHA-256 ${fp}, now ${now}; ` +
        `if this is expected, remove the entry from ${cli.knownServers}`,
    );
    assert.equal(changed.out, "", "nothing was sent to the impostor");

    // --ca pins a given certificate instead of the known one.
    const ca = await cli.run("d", t.origin, "--ca", join(dir, "cert.pem"));
    assert.equal(ca.code, 0, ca.err);
    assert.match(ca.out, /^Match result: false/);
    const otherCa = join(cli.work, "other.pem");
    await Deno.writeTextFile(otherCa, known[t.origin].pem);
    const wrongCa = await cli.run("d", t.origin, "--ca", otherCa);
    assert.equal(wrongCa.code, 1);
    assert.match(wrongCa.err, new RegExp(`not the one in ${otherCa}`));
    assert.ok(wrongCa.err.includes(fp) && wrongCa.err.includes(now!));
  } finally {
    await t.close();
    await real.close();
    await cli.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: an unreachable server is named", async () => {
  const cli = await makeCli();
  // A port nobody listens on: bind one, then free it.
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  try {
    const res = await cli.run("d", `https://127.0.0.1:${port}`);
    assert.equal(res.code, 1);
    assert.match(res.err, /cannot reach 127\.0\.0\.1:\d+: ECONNREFUSED/);
  } finally {
    await cli.cleanup();
  }
});

Deno.test("cli: an expired secret is renewed by itself and login.secret updated", async () => {
  const real = await openRealGateway(adminManagers("1s"));
  const t = await startTestApi(real.gateway);
  const cli = await makeCli();
  try {
    const login = await cli.run(
      "login",
      "-m",
      "sessions",
      t.origin,
      "user0",
      "pass0",
    );
    assert.equal(login.code, 0, login.err);
    const old = (await readSecret(cli)).secret;
    // Wait (bounded) until the server itself says the secret expired.
    let expired = false;
    for (let i = 0; i < 50 && !expired; i++) {
      await new Promise((r) => setTimeout(r, 100));
      try {
        await real.gateway.check("sessions", { ip: "127.0.0.1", secret: old });
      } catch (e) {
        expired = /expired/.test(String((e as Error).message));
      }
    }
    assert.ok(expired, "the secret expired");
    const status = await cli.run("status");
    assert.equal(status.code, 0, status.err);
    assert.equal(
      statusLines(status.out).original,
      "User: user0\nName: user0\nGroups: [group0]\nQuota: 1 GB Consumption: 0 B",
    );
    const renewed = (await readSecret(cli)).secret;
    assert.notEqual(renewed, old);
    assert.equal(
      await real.gateway.check("sessions", {
        ip: "127.0.0.1",
        secret: renewed,
      }),
      "user0",
    );
  } finally {
    await t.close();
    await real.close();
    await cli.cleanup();
  }
});

Deno.test("cli: the API is reached directly even when HTTPS_PROXY is set", async () => {
  const real = await openRealGateway();
  const t = await startTestApi(real.gateway);
  const cli = await makeCli();
  // A "proxy" that answers everything with 502: if used, discover fails.
  const proxy = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("proxy", { status: 502 }),
  );
  const saved = ["HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"].map((
    k,
  ) => [k, Deno.env.get(k)] as const);
  try {
    for (const [k] of saved) Deno.env.delete(k);
    Deno.env.set("HTTPS_PROXY", `http://127.0.0.1:${proxy.addr.port}`);
    const res = await cli.run("d", t.origin);
    assert.equal(res.code, 0, res.err);
    assert.match(res.out, /^Match result: false/);
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) Deno.env.delete(k);
      else Deno.env.set(k, v);
    }
    await proxy.shutdown();
    await t.close();
    await real.close();
    await cli.cleanup();
  }
});

Deno.test("cli: a certificate that does not name the host is explained", async () => {
  const real = await openRealGateway();
  const t = await startTestApi(real.gateway, { addr: ":0" });
  const cli = await makeCli();
  try {
    // 127.0.0.2 is loopback too, but the generated certificate names
    // 127.0.0.1, ::1, localhost, this host and its interfaces' addresses.
    const res = await cli.run("d", `https://127.0.0.2:${t.api.addr.port}`);
    assert.equal(res.code, 1);
    assert.match(
      res.err,
      /certificate of https:\/\/127\.0\.0\.2:\d+ does not name "127\.0\.0\.2" \(it names .*localhost.*127\.0\.0\.1.*\): connect by a name it covers/,
    );
  } finally {
    await t.close();
    await real.close();
    await cli.cleanup();
  }
});

/** The usage the client commands print, word for word. */
const USAGE = `Client commands (they talk to a pmproxy server's API):
  pmproxy discover|d [URL]          what the rule reaches for you now
  pmproxy login|l -m SESSIONMGR URL USER PASS
                                    log in; writes ./login.secret
  pmproxy logout|o                  log out; removes ./login.secret
  pmproxy logged-users|lu [-m MGR]  who is logged in where
  pmproxy status|s [-m MGR] [USER]  quota and consumption (USER: admins)
  pmproxy usage|u [-m MGR] [--user USER | --all] [--since DATE] [--by hour|day|month] [--csv]
                                    usage history (another user's or --all: admins)
  pmproxy reset|r [-m MGR] USER     set USER's consumption to 0 (admins)
  pmproxy grant|g [-m MGR] USER SIZE
                                    add SIZE to USER's quota until the reset (admins)
  pmproxy explain|x [--ip IP] [--user USER] [--at TIME] URL
                                    why the rule allows or refuses URL (admins)
  pmproxy reload                    reload the server's configuration files (admins)
  pmproxy show|sh MGR [URL]         a manager's configuration
Options: --known-servers FILE (default $PMPROXY_KNOWN_SERVERS or
  $HOME/.config/pmproxy/known_servers.json), --ca FILE (pin this
  certificate instead of trusting the first one seen).`;

const NOT_LOGGED_IN =
  "pmproxy: not logged in: run `pmproxy login -m sessions https://host:4443 USER PASS` first";

Deno.test("cli: help, wrong usage and local refusals word for word (no server needed)", async () => {
  const cli = await makeCli();
  try {
    // main.ts runs these words as client commands.
    assert.deepEqual(CLIENT_COMMANDS, [
      "discover",
      "d",
      "login",
      "l",
      "logout",
      "o",
      "logged-users",
      "lu",
      "status",
      "s",
      "usage",
      "u",
      "reset",
      "r",
      "grant",
      "g",
      "explain",
      "x",
      "reload",
      "show",
      "sh",
    ]);
    for (const help of [["s", "-h"], ["discover", "--help"]]) {
      assert.deepEqual(await cli.run(...help), {
        code: 0,
        out: USAGE,
        err: "",
      });
    }
    const usage: [string[], string][] = [
      [["bogus"], `unknown client command "bogus"`],
      [["reset"], "reset needs one USER: pmproxy reset [-m MGR] USER"],
      [["r", "a", "b"], "reset needs one USER: pmproxy reset [-m MGR] USER"],
      [["show"], "show needs a manager name: pmproxy show MGR [URL]"],
      [
        ["sh", "a", "b", "c"],
        `unexpected argument "c"; usage: pmproxy show MGR [URL]`,
      ],
      [
        ["login", "-m", "x", "u"],
        "login needs URL, USER and PASS: pmproxy login -m SESSIONMGR URL USER PASS",
      ],
      [
        ["l", "https://x:1", "u", "p"],
        "login needs the session manager: pmproxy login -m SESSIONMGR URL USER PASS (e.g. -m sessions)",
      ],
      [
        ["d", "a", "b"],
        `unexpected argument "b"; usage: pmproxy discover [URL]`,
      ],
      [
        ["status", "a", "b"],
        `unexpected argument "b"; usage: pmproxy status [-m MGR] [USER]`,
      ],
      [
        ["logged-users", "x"],
        `unexpected argument "x"; usage: pmproxy logged-users [-m MGR]`,
      ],
      [["o", "now"], `unexpected argument "now"; usage: pmproxy logout`],
    ];
    for (const [args, message] of usage) {
      assert.deepEqual(await cli.run(...args), {
        code: 2,
        out: "",
        err: `pmproxy: ${message}\n\n${USAGE}`,
      }, args.join(" "));
    }
    // The commands that need a login say how to get one.
    for (const args of [["o"], ["lu"], ["s"], ["r", "u"]]) {
      assert.deepEqual(await cli.run(...args), {
        code: 1,
        out: "",
        err: NOT_LOGGED_IN,
      }, args.join(" "));
    }
    const file = join(cli.work, "login.secret");
    await Deno.writeTextFile(file, "junk");
    assert.deepEqual(await cli.run("s"), {
      code: 1,
      out: "",
      err: `pmproxy: ${file} is not a login file; remove it and log in again`,
    });
    // A login that found no download quota: status and reset need -m.
    await Deno.writeTextFile(
      file,
      JSON.stringify({ server: "https://127.0.0.1:1", secret: "x" }),
    );
    for (const args of [["status"], ["reset", "u"]]) {
      assert.deepEqual(await cli.run(...args), {
        code: 1,
        out: "",
        err:
          "pmproxy: no download quota manager is known for this login: name one with -m MGR",
      }, args.join(" "));
    }
  } finally {
    await cli.cleanup();
  }
});

Deno.test("cli: every command answers the same to its name and to its alias", async () => {
  const real = await openRealGateway(adminManagers());
  const t = await startTestApi(real.gateway);
  const cli = await makeCli();
  try {
    // The first contact's notice is printed once: get it out of the way.
    assert.equal((await cli.run("discover", t.origin)).code, 0);
    const pairs: [string[], string[]][] = [
      [["discover", t.origin], ["d", t.origin]],
      [
        ["login", "-m", "sessions", t.origin, "admin", "admin-pass"],
        ["l", "-m", "sessions", t.origin, "admin", "admin-pass"],
      ],
      [["show", "down", t.origin], ["sh", "down", t.origin]],
      [["discover"], ["d"]],
      [["logged-users"], ["lu"]],
      [["status"], ["s"]],
      [["status", "user0"], ["s", "user0"]],
      [["reset", "user0"], ["r", "user0"]],
      // The server of the login.
      [["show", "down"], ["sh", "down"]],
    ];
    for (const [long, short] of pairs) {
      // The time to the next reset may tick over a minute between the two.
      const minutes = <T extends { out: string }>(r: T): T => ({
        ...r,
        out: r.out.replace(/\(in [^)]*\)$/m, "(in …)"),
      });
      const a = minutes(await cli.run(...long));
      const b = minutes(await cli.run(...short));
      assert.equal(a.code, 0, `${long.join(" ")}: ${a.err}`);
      assert.deepEqual(b, a, `${short[0]} is ${long[0]}`);
    }
    assert.equal(
      statusLines((await cli.run("status")).out).original,
      "User: admin\nName: admin\nGroups: [staff]\nQuota: 1 GB Consumption: 0 B",
    );
    assert.equal(
      (await cli.run("reset", "user0")).out,
      "Consumption of user0 under down set to 0 B",
    );
    assert.equal(
      (await cli.run(
        "login",
        "-m",
        "sessions",
        t.origin,
        "admin",
        "admin-pass",
      ))
        .out,
      `Logged in as admin at ${t.origin} through sessions (quota: down)`,
    );
    assert.deepEqual(await cli.run("logout"), {
      code: 0,
      out: `Logged out from ${t.origin}`,
      err: "",
    });
    await cli.run("l", "-m", "sessions", t.origin, "admin", "admin-pass");
    assert.deepEqual(await cli.run("o"), {
      code: 0,
      out: `Logged out from ${t.origin}`,
      err: "",
    });
  } finally {
    await t.close();
    await real.close();
    await cli.cleanup();
  }
});

/** A gateway whose discover fails once somebody is logged in. */
class DiscoverFailsAfterLogin extends FakeGateway {
  override discover(caller: Caller): DiscoverResult {
    if (this.sessions.has(caller.ip)) {
      throw new CommandError({ message: "the rule cannot be evaluated" });
    }
    return super.discover(caller);
  }
}

Deno.test("cli: a login whose discover fails keeps the session and says status needs -m", async () => {
  const gateway = new DiscoverFailsAfterLogin();
  const t = await startTestApi(gateway);
  const cli = await makeCli();
  try {
    assert.equal((await cli.run("d", t.origin)).code, 0);
    const login = await cli.run(
      "login",
      "-m",
      "sessions",
      t.origin,
      "user0",
      "pass0",
    );
    assert.deepEqual(login, {
      code: 0,
      out: `Logged in as user0 at ${t.origin} through sessions`,
      err:
        "pmproxy: logged in, but discover failed (the rule cannot be evaluated); status will need -m MGR",
    });
    const secret = await readSecret(cli);
    assert.equal(secret.dwnConsR, "");
    assert.equal(secret.sessionIPM, "sessions");
    assert.equal(gateway.sessions.get("127.0.0.1")?.secret, secret.secret);
    assert.equal(
      (await cli.run("s")).err,
      "pmproxy: no download quota manager is known for this login: name one with -m MGR",
    );
    // A gateway that sends only the original's fields: the bar, nothing more.
    assert.deepEqual(await cli.run("s", "-m", "down"), {
      code: 0,
      out:
        "User: user0\nName: user0\nGroups: [group0]\nQuota: 1 GB Consumption: 0 B\n[--------------] 0 %",
      err: "",
    });
  } finally {
    await t.close();
    await cli.cleanup();
  }
});
