/**
 * `deno task bench`: measures the proxy against references started in the
 * same run, and prints ratios (never asserts on time).
 *
 * - bulk download of a large body: direct, through a bare Deno relay (the
 *   platform's ceiling), through pmproxy as plain HTTP and as a CONNECT
 *   tunnel, and through squid / tinyproxy when they are installed;
 * - 1 KiB requests on 32 kept-alive connections (wrk, when installed), each
 *   proxy first warmed up, then measured at its own saturation and at a
 *   paced load (each connection pauses after every answer), which compares
 *   latency at about the same offered load; in rounds that interleave the
 *   proxies, reporting medians;
 * - one new connection per request (ab, when installed);
 * - and, measured first, on freshly started processes: resident memory of
 *   idle tunnels (pmproxy and squid).
 *
 * The origin is nginx when installed (as for the reference figures),
 * else a raw Deno origin inside this process.
 *
 * pmproxy runs as the real server (child process) with the rule
 * `sessions ∧ down` and a quota attached, logged in from 127.0.0.1; a
 * second one with `rule = "true"` ("pmproxy true") shows what the rule and
 * quota machinery cost.
 *
 * Options: `--size MiB` (default 512), `--quick` (smaller runs),
 * `--tunnels N` idle tunnels to hold (default 5000, 1000 with `--quick`).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import {
  adminManagersToml,
  makeConfigDir,
} from "../tests/helpers/config_dir.ts";
import {
  Pmproxy,
  runPmproxy,
  startPmproxy,
} from "../tests/helpers/pmproxy_process.ts";
import {
  type Reference,
  startBareRelay,
  startOrigin,
  startReference,
} from "./_bench_servers.ts";
import {
  abRps,
  best,
  curlSpeed,
  idleTunnels,
  wrk,
  type WrkResult,
} from "./_bench_tools.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    size: { type: "string" },
    quick: { type: "boolean" },
    tunnels: { type: "string" },
  },
});
const quick = values.quick ?? false;
const SIZE = Number(values.size ?? (quick ? 128 : 512)) * 1024 * 1024;
/** Each connection's pause after every answer in the paced runs. */
const PAUSES_MS = [2, 1];

const work = await Deno.makeTempDir({ prefix: "pmproxy-bench-" });
const origin = await startOrigin(work, SIZE);
const relay = startBareRelay();
// The loopback server.toml already allows tunnels to every port.
// pmproxy logs every request to its standard output (the default, in
// batches), squid to a file.
// All the bench's tunnels come from one address: lift the per-client cap.
const dir = await makeConfigDir(
  adminManagersToml({ quota: "1000 GB" }),
  {
    proxy: "maxTunnelsPerClient = 100000",
  },
);
// The same proxy with `rule = "true"`: what the rule and quota machinery cost.
const bareDir = await makeConfigDir('rule = "true"\n');
const references: Reference[] = [];
let server: Pmproxy | undefined;
let bareRule: Pmproxy | undefined;
try {
  server = await startPmproxy(dir);
  bareRule = await startPmproxy(bareDir);
  const login = await runPmproxy([
    "login",
    "-m",
    "sessions",
    server.apiUrl,
    "user0",
    "pass0",
  ], {
    cwd: work,
    env: { PMPROXY_KNOWN_SERVERS: join(work, "known.json") },
  });
  if (login.code !== 0) {
    throw new Error(`login failed: ${login.stderr}${login.stdout}`);
  }
  // Idle tunnels first, each on a freshly started process that is then
  // started again for the loads below: a heap that once held thousands of
  // tunnels stays grown for a while, which would hide what tunnels cost and
  // tax what comes after. (tinyproxy is left out: it serves each client from
  // a pool of processes.)
  const count = Number(values.tunnels ?? (quick ? 1000 : 5000));
  console.log(`idle tunnels, ${count} held at once (resident growth):`);
  const tunnelRow = (name: string, mib: number | undefined) =>
    console.log(
      mib === undefined
        ? `  ${name}: its process was not found, skipped`
        : `  ${name.padEnd(12)} ${mib.toFixed(1).padStart(7)} MiB   ${
          (mib * 1000 / count).toFixed(1).padStart(6)
        } MiB per 1,000`,
    );
  tunnelRow("pmproxy", await idleTunnels(server.proxyPort, origin.port, count));
  await server.stop();
  // The login is kept in Deno KV and restored.
  server = await startPmproxy(dir);
  const tunnelsTmp = join(work, "tunnels");
  await Deno.mkdir(tunnelsTmp);
  const squidForTunnels = await startReference("squid", tunnelsTmp);
  if (squidForTunnels) {
    try {
      tunnelRow(
        "squid",
        await idleTunnels(squidForTunnels.port, origin.port, count),
      );
    } finally {
      await squidForTunnels.stop();
    }
  }
  for (const name of ["squid", "tinyproxy"] as const) {
    const ref = await startReference(name, work);
    if (ref) references.push(ref);
    else {console.log(
        `${name}: not installed or did not start; its rows are skipped`,
      );}
  }
  const proxies = [
    { name: "pmproxy", port: server.proxyPort },
    { name: "pmproxy true", port: bareRule.proxyPort },
    ...references,
  ];
  console.log(`origin: ${origin.name}`);

  const bigUrl = `http://127.0.0.1:${origin.port}/bytes/${SIZE}`;
  const runs = quick ? 1 : 3;
  console.log(
    `bulk download of ${SIZE / 1024 / 1024} MiB (best of ${runs}, MiB/s):`,
  );
  const speed = (args: string[]) =>
    best(runs, () => curlSpeed(bigUrl, args, SIZE));
  const direct = await speed([]);
  const bare = await speed(["-p", "-x", `http://127.0.0.1:${relay.port}`]);
  const row = (name: string, v: number) =>
    console.log(
      `  ${name.padEnd(28)} ${v.toFixed(0).padStart(6)}   ×direct ${
        (v / direct).toFixed(2)
      }   ×bare relay ${(v / bare).toFixed(2)}`,
    );
  row("direct", direct);
  row("bare Deno relay (CONNECT)", bare);
  for (const p of proxies) {
    const url = `http://127.0.0.1:${p.port}`;
    row(`${p.name} plain HTTP`, await speed(["-x", url]));
    row(`${p.name} CONNECT`, await speed(["-p", "-x", url]));
  }

  const small = `http://127.0.0.1:${origin.port}/1k`;
  const seconds = quick ? 3 : 6;
  const rounds = quick ? 1 : 3;
  console.log(
    `1 KiB requests on 32 kept-alive connections (wrk, ${seconds} s each, after a warm-up run; medians of ${rounds} rounds):`,
  );
  const squidName = references.find((r) => r.name === "squid")?.name;
  // One table per load: each proxy at its own saturation, then paced at
  // PAUSES (every connection waits that long after each answer), which
  // offers about the same load to every proxy that can carry it.
  const loads: { title: string; pauseMs?: number }[] = [
    { title: "saturated" },
    ...PAUSES_MS.map((ms) => ({
      title: `paced: ${ms} ms pause after every answer`,
      pauseMs: ms,
    })),
  ];
  // Every proxy gets the same warm-up: pmproxy's JIT compiles its hot paths
  // during the first second, which is not what a gateway that runs for
  // months feels like.
  for (const p of proxies) await wrk(p.port, small, { seconds: quick ? 1 : 2 });
  // Rounds interleave the proxies, so a slow spell of the machine (other
  // tenants, the 2 cores shared with wrk and nginx) falls on all of them
  // rather than on whichever ran then.
  const results = loads.map(() => new Map<string, (WrkResult | undefined)[]>());
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < loads.length; i++) {
      for (const p of proxies) {
        const r = await wrk(p.port, small, {
          seconds,
          pauseMs: loads[i].pauseMs,
        });
        if (r?.errors) console.log(`  (wrk saw ${r.errors} non-2xx answers)`);
        // Kept by round (a failed run too), so rounds line up across proxies.
        const seen = results[i].get(p.name) ?? [];
        seen[round] = r;
        results[i].set(p.name, seen);
      }
    }
  }
  const median = (xs: number[]) => {
    const sorted = [...xs].sort((a, b) => a - b);
    return sorted[Math.floor((sorted.length - 1) / 2)];
  };
  const ratio = (v: number | undefined, ref: number | undefined) =>
    v !== undefined && ref ? (v / ref).toFixed(2) : "-";
  const ms = (v: number) => v.toFixed(2).padStart(6);
  for (let i = 0; i < loads.length; i++) {
    const squid = squidName ? results[i].get(squidName) : undefined;
    const squidRuns = squid?.filter((r) => r !== undefined) ?? [];
    console.log(`  ${loads[i].title}:`);
    console.log(
      `    ${"proxy".padEnd(12)} ${"req/s".padStart(7)} ${"p50".padStart(6)} ${
        "p99".padStart(6)
      } ${"req/s×squid".padStart(11)} ${"p99×squid".padStart(10)}   ${
        rounds > 1 ? "p99×squid by round" : ""
      }`,
    );
    for (const p of proxies) {
      const byRun = results[i].get(p.name) ?? [];
      const rs = byRun.filter((r) => r !== undefined);
      if (rs.length === 0) {
        console.log(`    ${p.name}: wrk not installed or failed, skipped`);
        continue;
      }
      const rps = median(rs.map((r) => r.rps));
      const p99 = median(rs.map((r) => r.p99));
      const byRound = squid && rounds > 1
        ? byRun.map((r, k) => ratio(r?.p99, squid[k]?.p99)).join(" ")
        : "";
      console.log(
        `    ${p.name.padEnd(12)} ${rps.toFixed(0).padStart(7)} ${
          ms(median(rs.map((r) => r.p50)))
        } ${ms(p99)} ${
          ratio(
            rps,
            squidRuns.length ? median(squidRuns.map((r) => r.rps)) : undefined,
          )
            .padStart(11)
        } ${
          ratio(
            p99,
            squidRuns.length ? median(squidRuns.map((r) => r.p99)) : undefined,
          )
            .padStart(10)
        }   ${byRound}`,
      );
    }
  }
  console.log(
    "  (latencies in ms; p99×squid below 1 is better than squid's)",
  );

  console.log("1 KiB requests, one new connection each (ab -c32):");
  const requests = quick ? 5000 : 20000;
  const abDirect = await abRps(undefined, small, { requests });
  if (abDirect) {
    console.log(
      `  ${"direct".padEnd(12)} ${abDirect.toFixed(0).padStart(7)} req/s`,
    );
  }
  for (const p of proxies) {
    const r = await abRps(`127.0.0.1:${p.port}`, small, { requests });
    if (r && abDirect) {
      console.log(
        `  ${p.name.padEnd(12)} ${r.toFixed(0).padStart(7)} req/s   ×direct ${
          (r / abDirect).toFixed(2)
        }`,
      );
    } else console.log(`  ${p.name}: ab not installed or failed, skipped`);
  }
} finally {
  await server?.stop();
  await bareRule?.stop();
  for (const ref of references) await ref.stop();
  await origin.close();
  relay.close();
  await Deno.remove(dir, { recursive: true });
  await Deno.remove(bareDir, { recursive: true });
  await Deno.remove(work, { recursive: true });
}
