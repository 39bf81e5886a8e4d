/**
 * `pmproxy usage` against the real HTTPS API and the real gateway (real
 * Deno KV file): one's own usage by day, hour and month, as lines and as
 * CSV, another user's and every user's for administrators, and the
 * mistakes it tells apart (wrong --by, --user with --all, not an admin).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runClientCommand } from "../api/client_commands.ts";
import { openRealGateway } from "./helpers/api_real_gateway.ts";
import { adminManagersToml } from "./helpers/config_dir.ts";
import { startTestApi } from "./helpers/api_server.ts";

/** The quota's days are UTC days, whatever this machine's zone. */
const MANAGERS = adminManagersToml({ dwnConsR: 'timezone = "UTC"' });

Deno.test("cli: usage by day, hour and month, as lines and CSV; another user's for admins", async () => {
  const real = await openRealGateway(MANAGERS);
  const gw = real.gateway;
  const t = await startTestApi(gw);
  const work = await Deno.makeTempDir({ prefix: "pmproxy-cli-usage-" });
  const known = join(work, "known_servers.json");
  const run = async (...args: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runClientCommand([...args, "--known-servers", known], {
      cwd: work,
      out: (l) => out.push(l),
      err: (l) => err.push(l),
    });
    return { code, out, err: err.join("\n") };
  };
  try {
    // Bytes of admin (another address) and of user0 (the CLI's, 127.0.0.1).
    await gw.open("sessions", { ip: "10.0.0.9" }, {
      user: "admin",
      pass: "admin-pass",
    });
    const login = await run(
      "login",
      "-m",
      "sessions",
      t.origin,
      "user0",
      "pass0",
    );
    assert.equal(login.code, 0, login.err);
    for (
      const [ip, bytes] of [["127.0.0.1", 3 * 1024 ** 2], [
        "10.0.0.9",
        512,
      ]] as const
    ) {
      const d = gw.decideSync({
        clientIp: ip,
        time: new Date(),
        method: "GET",
        url: "http://example.org/",
        host: "example.org",
        port: 80,
      });
      assert.ok(d.allowed && d.meter, JSON.stringify(d));
      d.meter.chunk(bytes);
    }
    await gw.flush();
    const today = new Date().toISOString().slice(0, 10);
    const hour = new Date().toISOString().slice(11, 13);

    const days = await run("usage");
    assert.equal(days.code, 0, days.err);
    assert.deepEqual(days.out, [
      "Usage of user0 under down by day (UTC)",
      `${today}  3 MB`,
      "Total: 3 MB",
    ]);
    const hours = await run("u", "--by", "hour", "--since", today);
    assert.deepEqual(hours.out.slice(1), [
      `${today} ${hour}:00  3 MB`,
      "Total: 3 MB",
    ]);
    const months = await run("usage", "--by", "month");
    assert.equal(months.out[1], `${today.slice(0, 7)}  3 MB`);
    const csv = await run("usage", "--csv", "-m", "down");
    assert.deepEqual(csv.out, [
      "start,user,bytes",
      `${today}T00:00:00Z,user0,${3 * 1024 ** 2}`,
    ]);
    const future = await run("usage", "--since", "2999-01-01");
    assert.deepEqual(future.out, [
      "Usage of user0 under down by day (UTC)",
      "No usage in this period.",
    ]);

    // Not an admin: one's own only.
    const refused = await run("usage", "--user", "admin");
    assert.equal(refused.code, 1);
    assert.match(refused.err, /^pmproxy: .*user0/);
    assert.equal((await run("usage", "--all")).code, 1);

    // Mistakes of the command line.
    const week = await run("usage", "--by", "week");
    assert.equal(week.code, 2);
    assert.match(week.err, /--by "week": give hour, day or month/);
    const both = await run("usage", "--all", "--user", "x");
    assert.equal(both.code, 2);
    assert.match(both.err, /give --user or --all, not both/);
    const when = await run("usage", "--since", "last year");
    assert.equal(when.code, 1);
    assert.match(when.err, /since "last year" is not a time/);

    // An administrator: another user's and everyone's.
    assert.equal(
      (await run("login", "-m", "sessions", t.origin, "admin", "admin-pass"))
        .code,
      0,
    );
    const theirs = await run("usage", "--user", "user0");
    assert.deepEqual(theirs.out.slice(0, 2), [
      "Usage of user0 under down by day (UTC)",
      `${today}  3 MB`,
    ]);
    const all = await run("usage", "--all");
    assert.deepEqual(all.out, [
      "Usage of every user under down by day (UTC)",
      `${today}  admin  512 B`,
      `${today}  user0  3 MB`,
      "Total: 3 MB",
    ]);
  } finally {
    await t.close();
    await real.close();
    await Deno.remove(work, { recursive: true });
  }
});
