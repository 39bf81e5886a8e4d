/**
 * A live reload of the real server (a child process): `pmproxy reload`
 * while a slow download and a CONNECT tunnel are open (both go on intact;
 * the new quota shows in `status` and applies to the next request); a
 * broken file keeps the running configuration and the error names its
 * line; SIGHUP reloads as `systemctl reload` does; `--watch` reloads when
 * a file changes; a changed listen address is named as needing a restart.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { adminManagersToml, makeConfigDir } from "./helpers/config_dir.ts";
import {
  type Pmproxy,
  runPmproxy,
  startPmproxy,
} from "./helpers/pmproxy_process.ts";
import { curl, type Origin, startOrigin } from "./helpers/origin.ts";
import { RawClient } from "./helpers/proxy_kit.ts";
import { echoOrigin, slowOrigin } from "./helpers/slow_origins.ts";

const MiB = 1024 * 1024;

interface Site {
  dir: string;
  server: Pmproxy;
  origin: Origin;
  /** The CLI as user0 and as admin, each with its own login.secret. */
  user(...args: string[]): ReturnType<typeof runPmproxy>;
  admin(...args: string[]): ReturnType<typeof runPmproxy>;
  /** Rewrites managers.toml. */
  write(toml: string): Promise<void>;
  get(bytes: number): Promise<{ code: number; size: number }>;
  close(): Promise<void>;
}

async function start(quota: string, args: string[] = []): Promise<Site> {
  const dir = await makeConfigDir(adminManagersToml({ quota }));
  const userDir = await Deno.makeTempDir({ prefix: "pmproxy-user-" });
  const adminDir = await Deno.makeTempDir({ prefix: "pmproxy-admin-" });
  const env = { PMPROXY_KNOWN_SERVERS: join(adminDir, "known.json") };
  const server = await startPmproxy(dir, { args });
  const origin = startOrigin();
  const site: Site = {
    dir,
    server,
    origin,
    user: (...a) => runPmproxy(a, { cwd: userDir, env }),
    admin: (...a) => runPmproxy(a, { cwd: adminDir, env }),
    write: (toml) => Deno.writeTextFile(join(dir, "managers.toml"), toml),
    get: async (bytes) => {
      const out = await curl([
        "-x",
        `http://127.0.0.1:${server.proxyPort}`,
        "-o",
        "/dev/null",
        "-w",
        "%{size_download}",
        `${origin.url}/bytes/${bytes}`,
      ]);
      return { code: out.code, size: Number(out.body) };
    },
    close: async () => {
      await server.stop();
      await origin.close();
      for (const d of [dir, userDir, adminDir]) {
        await Deno.remove(d, { recursive: true });
      }
    },
  };
  const u = await site.user(
    "login",
    "-m",
    "sessions",
    server.apiUrl,
    "user0",
    "pass0",
  );
  assert.equal(u.code, 0, u.stderr);
  const a = await site.admin(
    "login",
    "-m",
    "sessions",
    server.apiUrl,
    "admin",
    "admin-pass",
  );
  assert.equal(a.code, 0, a.stderr);
  return site;
}

/** user0's quota as `pmproxy status` prints it. */
async function quotaOf(site: Site): Promise<string> {
  const s = await site.admin("status", "user0");
  assert.equal(s.code, 0, s.stderr);
  return /Quota: (\S+ \S+)/.exec(s.stdout)?.[1] ?? s.stdout;
}

async function waitFor(what: string, ok: () => Promise<boolean>, ms = 5000) {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) assert.fail(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

Deno.test("reload: a new quota while a slow download and a tunnel are open; both finish intact, the quota applies next", async () => {
  // The admin and user0 both come from 127.0.0.1: one IP, one session. So
  // the admin logs in last, and user0's traffic is the admin's session
  // here; the quota under test is the admins' group's ("staff").
  const site = await start("1 MB");
  const slow = slowOrigin(20, 100);
  const echo = echoOrigin();
  try {
    const toml = (staff: string) =>
      adminManagersToml({ quota: "1 MB" }).replace(
        'staff = "1 GB"',
        `staff = "${staff}"`,
      );
    await site.write(toml("1 MB"));
    const first = await site.admin("reload");
    assert.equal(first.code, 0, first.stdout + first.stderr);

    // A download and a tunnel under way.
    const download = curl([
      "-x",
      `http://127.0.0.1:${site.server.proxyPort}`,
      "-o",
      "/dev/null",
      "-w",
      "%{size_download}",
      `http://127.0.0.1:${slow.origin.port}/slow`,
    ]);
    await slow.started;
    const tunnel = await RawClient.open(site.server.proxyPort);
    const target = `127.0.0.1:${echo.port}`;
    await tunnel.send(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
    await tunnel.readUntil((t) => t.includes("\r\n\r\n"));
    assert.match(tunnel.text, /^HTTP\/1\.1 200 /);

    // The admins' quota goes from 1 MB to 3 MB.
    await site.write(toml("3 MB"));
    const reload = await site.admin("reload");
    assert.equal(reload.code, 0, reload.stderr);
    assert.match(reload.stdout, /^Reloaded\.$/m);

    // The tunnel carries on, and the download completes whole.
    await tunnel.send("after the reload");
    await tunnel.readUntil((t) => t.endsWith("after the reload"));
    tunnel.close();
    const done = await download;
    assert.equal(done.code, 0, done.stderr);
    assert.equal(Number(done.body), 20 * 20_000);

    // The new quota shows and applies to the counter as it stands: the
    // admin (this address's session) downloads 1.5 MB more, which the old
    // 1 MB quota would have cut.
    const admin = await site.admin("status");
    assert.match(admin.stdout, /^Quota: 3 MB Consumption: /m);
    const more = await site.get(1.5 * MiB);
    assert.equal(more.code, 0);
    assert.equal(more.size, 1.5 * MiB);
  } finally {
    await slow.origin.close();
    await echo.close();
    await site.close();
  }
});

Deno.test("reload: a broken file changes nothing; pmproxy reload says where and exits 1; SIGHUP reloads", async () => {
  const site = await start("1 GB");
  try {
    const good = adminManagersToml({ quota: "1 GB" });
    await site.write(
      good.replace('rule = "sessions ∧ down"', 'rule = "sessions ∧ nobody"'),
    );
    const refused = await site.admin("reload");
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /pmproxy: reload refused, the running configuration stays: .*managers\.toml:1: rule: "nobody" at column 12 has no manager/,
    );
    assert.match(
      site.server.stderr(),
      /pmproxy: reload refused, the running configuration stays: .*managers\.toml:1/,
    );
    // The running configuration serves on.
    assert.equal((await site.get(1000)).size, 1000);

    // SIGHUP (systemctl reload) reads the files again.
    await site.write(good.replace('group0 = "1 GB"', 'group0 = "5 GB"'));
    site.server.signal("SIGHUP");
    await waitFor(
      "the new quota after SIGHUP",
      async () => (await quotaOf(site)) === "5 GB",
    );
    assert.match(site.server.stderr(), /configuration reloaded/);

    // A changed listen address cannot apply without a restart: it says so.
    const server = await Deno.readTextFile(join(site.dir, "server.toml"));
    await Deno.writeTextFile(
      join(site.dir, "server.toml"),
      server.replace(
        /\[proxy\.server\]\n\s*addr = "127\.0\.0\.1:0"/,
        '[proxy.server]\n    addr = "127.0.0.1:1"\n    idleTimeout = "9s"',
      ),
    );
    const moved = await site.admin("reload");
    assert.equal(moved.code, 0, moved.stderr);
    assert.match(
      moved.stdout,
      /^Needs a restart: \[proxy\.server\] addr changed/m,
    );
    assert.equal((await site.get(1000)).size, 1000, "still listening");
  } finally {
    await site.close();
  }
});

Deno.test("reload: --watch reloads when managers.toml changes", async () => {
  const site = await start("1 GB", ["--watch"]);
  try {
    await site.write(
      adminManagersToml({ quota: "1 GB" }).replace(
        'group0 = "1 GB"',
        'group0 = "7 GB"',
      ),
    );
    await waitFor(
      "the new quota after the edit",
      async () => (await quotaOf(site)) === "7 GB",
    );
  } finally {
    await site.close();
  }
});
