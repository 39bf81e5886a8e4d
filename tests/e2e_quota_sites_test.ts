/**
 * Quotas the way sites run them, end to end with real curl: past the
 * quota with `overQuotaRate` a download goes on at that rate and a second
 * one shares it (plain HTTP and a CONNECT tunnel), the access log and
 * `status` say so; `warnAt` crossed in `status`; uploads counted with
 * `countUploads` (a body and a tunnel); a grant lets a user at the quota
 * browse again and ends at the reset (the policy in this process so that
 * the test moves its clock, as the timeSpan test does; the proxy, the API,
 * the client commands, curl and the KV file are real).
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
import { openGateway } from "../managers/mod.ts";
import { proxyConfigFrom, startProxy } from "../proxy/mod.ts";
import { startTestApi } from "./helpers/api_server.ts";
import { runClientCommand } from "../api/client_commands.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

/** user0 in group0 (the quota under test), admin in staff. */
function managersToml(keys: string, quota = "1 MB"): string {
  return adminManagersToml({ jwtExpiration: null, dwnConsR: keys, quota });
}

interface Setup {
  origin: Origin;
  server: Pmproxy;
  proxy: string;
  cli(...args: string[]): ReturnType<typeof runPmproxy>;
  cleanup(): Promise<void>;
}

async function setup(keys: string): Promise<Setup> {
  const dir = await makeConfigDir(managersToml(keys), {
    persistInterval: "200ms",
  });
  const work = await Deno.makeTempDir({ prefix: "pmproxy-client-" });
  const env = { PMPROXY_KNOWN_SERVERS: join(work, "known_servers.json") };
  const origin = startOrigin();
  const server = await startPmproxy(dir);
  const s: Setup = {
    origin,
    server,
    proxy: `http://127.0.0.1:${server.proxyPort}`,
    cli: (...args) => runPmproxy(args, { cwd: work, env }),
    cleanup: async () => {
      await server.stop();
      await origin.close();
      for (const d of [dir, work]) await Deno.remove(d, { recursive: true });
    },
  };
  const login = await s.cli(
    "login",
    "-m",
    "sessions",
    server.apiUrl,
    "user0",
    "pass0",
  );
  assert.equal(login.code, 0, login.stderr);
  return s;
}

async function status(s: Setup): Promise<string> {
  const r = await s.cli("status");
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

/** Downloads `bytes` through the proxy (`-p`: through a CONNECT tunnel). */
async function fetchBytes(
  s: Setup,
  bytes: number,
  extra: string[] = [],
): Promise<{ code: number; size: number; seconds: number; stderr: string }> {
  const t0 = performance.now();
  const r = await curl([
    ...extra,
    "-x",
    s.proxy,
    "-o",
    "/dev/null",
    "-w",
    "%{size_download}",
    `${s.origin.url}/bytes/${bytes}`,
  ]);
  return {
    code: r.code,
    size: Number(r.body),
    seconds: (performance.now() - t0) / 1000,
    stderr: r.stderr,
  };
}

async function logged(s: Setup, line: RegExp): Promise<void> {
  for (let i = 0; i < 50 && !line.test(s.server.output()); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.match(s.server.output(), line);
}

/**
 * The quota reached, then one download past it and two at once, timed:
 * 256 KiB/s with a burst of 256 KiB. They can go no faster than the bucket
 * allows; on a busy machine they may go slower, but they go on.
 */
async function slowedPastTheQuota(s: Setup, extra: string[]): Promise<void> {
  const reach = await fetchBytes(s, MiB, extra);
  assert.equal(reach.code, 0, `the crossing is not cut: ${reach.stderr}`);
  assert.equal(reach.size, MiB);
  const before = await status(s);
  assert.match(before, /^\[#{14}\] 100 %$/m);
  assert.match(before, /^Over quota: slowed to 256 KB\/s until the reset$/m);

  // 1 MiB: 256 KiB of burst, then 768 KiB at 256 KiB/s: about 3 s.
  const one = await fetchBytes(s, MiB, extra);
  assert.equal(one.code, 0, one.stderr);
  assert.equal(one.size, MiB, "not cut");
  assert.ok(
    one.seconds >= 2,
    `1 MiB past the quota took ${one.seconds.toFixed(2)} s: not slowed`,
  );
  assert.ok(one.seconds < 15, `${one.seconds.toFixed(2)} s: stalled`);

  // Two at once share the user's one bucket: 2 × 512 KiB take about 3 s
  // (1 s each with a bucket of their own).
  const t0 = performance.now();
  const two = await Promise.all(
    [1, 2].map(() => fetchBytes(s, 512 * KiB, extra)),
  );
  const shared = (performance.now() - t0) / 1000;
  assert.deepEqual(two.map((r) => r.size), [512 * KiB, 512 * KiB]);
  assert.ok(
    shared >= 2,
    `2 × 512 KiB took ${
      shared.toFixed(2)
    } s: the connections did not share the rate`,
  );
  // Consumption counts on past the quota.
  const after = await status(s);
  const cons = /Consumption: (\d+(?:\.\d)?) MB$/m.exec(after);
  assert.ok(cons && Number(cons[1]) >= 3, after);
}

Deno.test("overQuotaRate: past the quota a plain download goes on at the rate and a second one shares it; status and the access log say so", async () => {
  const s = await setup('overQuotaRate = "256 KiB/s"');
  try {
    await slowedPastTheQuota(s, []);
    // A request decided while slowed is logged with one more tag.
    await logged(
      s,
      /^\d+\.\d{3} +\d+ 127\.0\.0\.1 TCP_MISS_SLOWED\/200 \d+ GET http:\/\/127\.0\.0\.1:\d+\/bytes\/524288 user0 HIER_DIRECT\/127\.0\.0\.1 /m,
    );
  } finally {
    await s.cleanup();
  }
});

Deno.test("overQuotaRate: past the quota a CONNECT tunnel goes on at the rate and a second one shares it", async () => {
  const s = await setup('overQuotaRate = "256 KiB/s"');
  try {
    await slowedPastTheQuota(s, ["-p"]);
    await logged(
      s,
      /^\d+\.\d{3} +\d+ 127\.0\.0\.1 TCP_TUNNEL_SLOWED\/200 \d+ CONNECT 127\.0\.0\.1:\d+ user0 HIER_DIRECT\/127\.0\.0\.1 /m,
    );
  } finally {
    await s.cleanup();
  }
});

Deno.test("warnAt: status shows the bar, and the warning once the user is past it", async () => {
  const s = await setup('warnAt = "50%"');
  try {
    const first = await fetchBytes(s, 300 * KiB);
    assert.equal(first.code, 0, first.stderr);
    const below = await status(s);
    assert.match(below, /^\[####----------\] 29 %$/m);
    assert.doesNotMatch(below, /Warning/);
    assert.match(below, /^Next reset: \S+Z \(in (1 d 0 h|23 h 59 min)\)$/m);
    await fetchBytes(s, 300 * KiB);
    const past = await status(s);
    assert.match(past, /^\[########------\] 58 %$/m);
    assert.match(
      past,
      /^Warning: past 50 % of the quota \(42\d(\.\d)? KB left\)$/m,
    );
  } finally {
    await s.cleanup();
  }
});

Deno.test("countUploads: request bodies (curl -T, --data-binary) and a tunnel's client direction count against the quota; at the quota an upload is stopped", async () => {
  const s = await setup("countUploads = true");
  const dir = await Deno.makeTempDir({ prefix: "pmproxy-upload-" });
  const file = join(dir, "upload.bin");
  await Deno.writeFile(file, new Uint8Array(300 * KiB).fill(117));
  const consumption = async () => {
    const m = /Consumption: (\d+(?:\.\d)?) KB$/m.exec(await status(s));
    assert.ok(m, "consumption in KB");
    return Number(m[1]);
  };
  try {
    const put = await curl([
      "-x",
      s.proxy,
      "-T",
      file,
      `${s.origin.url}/upload`,
    ]);
    assert.equal(put.body, `${300 * KiB}\n`, put.stderr);
    const afterPut = await consumption();
    assert.ok(afterPut >= 300 && afterPut < 302, `${afterPut} KB`);
    const post = await curl([
      "-x",
      s.proxy,
      "--data-binary",
      `@${file}`,
      `${s.origin.url}/upload`,
    ]);
    assert.equal(post.body, `${300 * KiB}\n`, post.stderr);
    const afterPost = await consumption();
    assert.ok(afterPost >= 600 && afterPost < 603, `${afterPost} KB`);
    // Through a CONNECT tunnel: the client's direction counts too.
    const tunnel = await curl([
      "-p",
      "-x",
      s.proxy,
      "--data-binary",
      `@${file}`,
      `${s.origin.url}/upload`,
    ]);
    assert.equal(tunnel.body, `${300 * KiB}\n`, tunnel.stderr);
    const afterTunnel = await consumption();
    assert.ok(afterTunnel >= 900 && afterTunnel < 905, `${afterTunnel} KB`);
    // 300 KiB more crosses the 1 MB quota: the body is stopped on its way.
    const cut = await curl([
      "-x",
      s.proxy,
      "-w",
      "\n%{http_code}",
      "--data-binary",
      `@${file}`,
      `${s.origin.url}/upload`,
    ]);
    assert.doesNotMatch(cut.body, new RegExp(`^${300 * KiB}$`, "m"));
    // curl reads the 403 page; should the proxy's close reach it while it is
    // still sending, it says the sending or receiving failed instead.
    if (cut.code === 0) {
      assert.match(cut.body, /request body was stopped: quota reached/);
      assert.match(cut.body, /403$/);
    } else {
      // Cut mid-body: curl sees the connection end (52: no answer at all, 55
      // or 56: while sending or receiving).
      assert.ok(
        [52, 55, 56].includes(cut.code),
        `curl: ${cut.code} ${cut.stderr}`,
      );
    }
    const refused = await curl([
      "-x",
      s.proxy,
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      `${s.origin.url}/hello`,
    ]);
    assert.equal(refused.body, "403");
  } finally {
    await Deno.remove(dir, { recursive: true });
    await s.cleanup();
  }
});

Deno.test("grant: a user at the quota browses again after `pmproxy grant`, status shows it, and it ends at the reset", async () => {
  const origin = startOrigin();
  const dir = await makeConfigDir(managersToml("", "1 MB"));
  let now = Date.parse("2026-03-02T10:00:00Z");
  const gateway = await openGateway(join(dir, "managers.toml"), {
    state: join(dir, "state.kv"),
    persistIntervalMs: 0,
    clock: () => new Date(now),
  });
  // The proxy stamps each request with the real time; the policy decides
  // by its own clock, which the test moves.
  const proxy = await startProxy(
    proxyConfigFrom({ server: { addr: "127.0.0.1:0" } }, {
      file: "server.toml",
    }),
    {
      decide: (facts: Parameters<typeof gateway.decide>[0]) =>
        gateway.decide({ ...facts, time: new Date(now) }),
    },
  );
  const api = await startTestApi(gateway);
  const work = await Deno.makeTempDir({ prefix: "pmproxy-admin-" });
  const cli = async (...args: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runClientCommand(
      [...args, "--known-servers", join(work, "known_servers.json")],
      { cwd: work, out: (l) => out.push(l), err: (l) => err.push(l) },
    );
    return { code, out: out.join("\n"), err: err.join("\n") };
  };
  // user0 browses from 127.0.0.2; the administrator's client is 127.0.0.1.
  await gateway.open("sessions", { ip: "127.0.0.2" }, {
    user: "user0",
    pass: "pass0",
  });
  const browse = (path: string) =>
    curl([
      "--interface",
      "127.0.0.2",
      "-x",
      `http://127.0.0.1:${proxy.addr.port}`,
      "-o",
      "/dev/null",
      "-w",
      "%{http_code} %{size_download}",
      `${origin.url}${path}`,
    ]);
  try {
    const cut = await browse(`/bytes/${2 * MiB}`);
    assert.notEqual(cut.code, 0, "cut at the quota");
    assert.match(
      (await browse("/hello")).body,
      /^403 /,
      "refused at the quota",
    );

    assert.equal(
      (await cli("login", "-m", "sessions", api.origin, "admin", "admin-pass"))
        .code,
      0,
    );
    const refused = await cli("grant", "user0", "lots");
    assert.equal(refused.code, 2);
    assert.match(refused.err, /"lots" is not a size/);
    const granted = await cli("grant", "user0", "2 MB");
    assert.equal(granted.code, 0, granted.err);
    // Consumption is the quota and at most the chunk that found it reached.
    assert.match(
      granted.out,
      /^Granted 2 MB to user0 under down until the next reset \(2026-03-03T10:00:00Z\)\nQuota: 1 MB \+ 2 MB granted Consumption: 1(\.[0-2])? MB$/,
    );
    assert.equal((await browse("/hello")).body, "200 6", "browsing again");
    const shown = await cli("status", "user0");
    assert.equal(shown.code, 0, shown.err);
    assert.match(
      shown.out,
      /^Quota: 1 MB \+ 2 MB granted Consumption: 1(\.[0-2])? MB$/m,
    );
    assert.match(shown.out, /^\[####----------\] 3[3-9] %$/m);
    assert.match(
      shown.out,
      // The policy's clock is not this machine's: the time until it may be
      // left out.
      /^Next reset: 2026-03-03T10:00:00Z( \(in [^)]+\))?; grants end then$/m,
    );
    // The grant's bytes, then cut again.
    const more = await browse(`/bytes/${3 * MiB}`);
    assert.notEqual(more.code, 0);
    const size = Number(more.body.split(" ")[1]);
    assert.ok(size > 1.5 * MiB && size < 2.3 * MiB, `${size} bytes`);

    // The reset: consumption and grants end together.
    now += 24 * 3600_000;
    const next = await cli("status", "user0");
    assert.match(next.out, /^Quota: 1 MB Consumption: 0 B$/m);
    assert.doesNotMatch(next.out, /granted/);
    const fresh = await browse(`/bytes/${2 * MiB}`);
    assert.notEqual(fresh.code, 0, "the 1 MB quota again, without the grant");
    const freshSize = Number(fresh.body.split(" ")[1]);
    // The chunk that reaches the quota still goes: one read, at most
    // 256 KiB (it once came to 1.21 MiB).
    assert.ok(freshSize < MiB + 256 * 1024, `${freshSize} bytes`);
  } finally {
    await api.close();
    await proxy.close();
    await gateway.close();
    await origin.close();
    await Deno.remove(work, { recursive: true });
    await Deno.remove(dir, { recursive: true });
  }
});
