/**
 * The two-gateway row of `deno task bench`: two pmproxy processes on one
 * Redis (`[state] url`) against one pmproxy on a Deno KV file, each with
 * the README's rule and a quota, logged in from 127.0.0.1 (once, on the
 * first gateway: the second sees the login through Redis):
 *
 * - requests per second: the same 32 kept-alive connections (wrk) split
 *   over the two gateways, or all to the one, in interleaved rounds;
 * - bulk: two downloads at once, one through each gateway, or both
 *   through the one; the sum of their speeds;
 * - the flush of 10,000 dirty counters (and sessions' last use) to each
 *   backend, in main-thread and wall time (see `measureFlush` in
 *   _bench_scale.ts; `--scale` adds the p99 during flushes under load).
 *
 * @module
 */
import { join } from "node:path";
import {
  adminManagersToml,
  makeConfigDir,
} from "../tests/helpers/config_dir.ts";
import {
  type Pmproxy,
  runPmproxy,
  startPmproxy,
} from "../tests/helpers/pmproxy_process.ts";
import { startRedis } from "../tests/helpers/redis_server.ts";
import { curlSpeed, wrk, type WrkResult } from "./_bench_tools.ts";
import { makeScaleSite, measureFlush } from "./_bench_scale.ts";

/** Options of {@link runGateways}. */
export interface GatewaysOptions {
  /** The origin's port (`/1k`, `/bytes/<size>`). */
  origin: number;
  /** The bulk download's size in bytes. */
  size: number;
  /** A scratch directory. */
  work: string;
  quick: boolean;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
}

/** Runs the two-gateway row, printing as it goes. */
export async function runGateways(options: GatewaysOptions): Promise<void> {
  const redis = await startRedis().catch((e) => {
    console.log(`two gateways on one Redis: skipped (${e.message})`);
    return undefined;
  });
  if (!redis) return;
  const managers = `accessLog = "access.log"\n${
    adminManagersToml({ quota: "1000 GB" })
  }`;
  const onRedis = {
    tail: `[state]\n  url = "${redis.url}"\n`,
  };
  const dirs = [
    await makeConfigDir(managers, onRedis),
    await makeConfigDir(managers, onRedis),
    await makeConfigDir(managers),
  ];
  const servers: Pmproxy[] = [];
  try {
    for (const d of dirs) servers.push(await startPmproxy(d));
    const [a, b, kv] = servers;
    for (const s of [a, kv]) {
      const out = await runPmproxy(
        ["login", "-m", "sessions", s.apiUrl, "user0", "pass0"],
        {
          cwd: options.work,
          env: {
            PMPROXY_KNOWN_SERVERS: join(options.work, `gw-${s.apiPort}.json`),
          },
        },
      );
      if (out.code !== 0) throw new Error(`login failed: ${out.stderr}`);
    }
    // B sees A's login within a second (pub/sub).
    await new Promise((r) => setTimeout(r, 1500));

    const small = `http://127.0.0.1:${options.origin}/1k`;
    const seconds = options.quick ? 3 : 6;
    const rounds = options.quick ? 1 : 3;
    for (const s of servers) await wrk(s.proxyPort, small, { seconds: 1 });
    const two: { rps: number; p99: number }[] = [];
    const one: { rps: number; p99: number }[] = [];
    for (let round = 0; round < rounds; round++) {
      const [ra, rb] = await Promise.all(
        [a, b].map((s) =>
          wrk(s.proxyPort, small, { seconds, connections: 16, threads: 1 })
        ),
      );
      if (ra && rb) {
        two.push({ rps: ra.rps + rb.rps, p99: Math.max(ra.p99, rb.p99) });
      }
      const rk: WrkResult | undefined = await wrk(kv.proxyPort, small, {
        seconds,
      });
      if (rk) one.push({ rps: rk.rps, p99: rk.p99 });
    }
    console.log(
      `two gateways on one Redis against one on a Deno KV file (medians of ${rounds} rounds):`,
    );
    if (two.length && one.length) {
      const r2 = median(two.map((r) => r.rps));
      const r1 = median(one.map((r) => r.rps));
      console.log(
        `  1 KiB on 32 kept-alive connections: two on Redis ${
          r2.toFixed(0)
        } req/s (p99 ${
          median(two.map((r) => r.p99)).toFixed(2)
        } ms), one on KV ${r1.toFixed(0)} req/s (p99 ${
          median(one.map((r) => r.p99)).toFixed(2)
        } ms): ×${(r2 / r1).toFixed(2)}`,
      );
    } else console.log("  wrk not installed or failed: requests skipped");

    const big = `http://127.0.0.1:${options.origin}/bytes/${options.size}`;
    const pair = async (ports: number[]) =>
      (await Promise.all(
        ports.map((p) =>
          curlSpeed(big, ["-x", `http://127.0.0.1:${p}`], options.size)
        ),
      )).reduce((x, y) => x + y, 0);
    const bulkTwo: number[] = [];
    const bulkOne: number[] = [];
    for (let round = 0; round < rounds; round++) {
      bulkTwo.push(await pair([a.proxyPort, b.proxyPort]));
      bulkOne.push(await pair([kv.proxyPort, kv.proxyPort]));
    }
    const b2 = median(bulkTwo);
    const b1 = median(bulkOne);
    console.log(
      `  two downloads of ${
        options.size / 1048576
      } MiB at once: through the two on Redis ${
        b2.toFixed(0)
      } MiB/s, both through the one on KV ${b1.toFixed(0)} MiB/s: ×${
        (b2 / b1).toFixed(2)
      }`,
    );
  } finally {
    for (const s of servers) await s.stop();
    for (const d of dirs) await Deno.remove(d, { recursive: true });
  }

  // The flush of 10,000 dirty counters to each backend.
  const n = 10_000;
  for (
    const [name, state] of [["Deno KV file", undefined], [
      "Redis",
      `${redis.url.replace(/\/\d+$/, "")}/5`,
    ]] as const
  ) {
    const site = await makeScaleSite(n, n, { state });
    try {
      const cost = await measureFlush(site, options.quick ? 2 : 4);
      const [due, ...between] = cost.flushes;
      console.log(
        `  flush of ${n} dirty counters to ${name}: ${
          median(between.map((f) => f.mainMs)).toFixed(0)
        } ms main thread, ${
          median(between.map((f) => f.wallMs)).toFixed(0)
        } ms wall; with every session's last use due too: ${
          due.mainMs.toFixed(0)
        }/${due.wallMs.toFixed(0)} ms (near-quota sync meanwhile: ${
          cost.syncMainMsPerSecond.toFixed(1)
        } ms main thread per second)`,
      );
    } finally {
      await Deno.remove(site.dir, { recursive: true });
    }
  }
  await redis.close();
}
