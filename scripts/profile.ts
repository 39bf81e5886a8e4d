/**
 * `deno task profile`: the profiles behind the bench's figures, taken of
 * the real server under the bench's loads, so that a change is made where
 * the time or the memory goes (README: Development).
 *
 * ```sh
 * deno task profile cpu keepalive     # V8 CPU profile under wrk, top functions
 * deno task profile cpu newconn       # … under ab (a new connection per request)
 * deno task profile cpu keepalive --rule fifty   # the bench's rule of 50 managers
 * deno task profile perf keepalive    # perf record: the CPU by binary and symbol
 * deno task profile gc keepalive      # --trace-gc: collections and their pauses
 * deno task profile alloc keepalive   # where the garbage is allocated (sampling)
 * deno task profile heap tunnels      # a heap snapshot with 1,000 idle tunnels
 * deno task profile heap start        # a heap snapshot of a gateway just started
 * ```
 *
 * The server is `pmproxy serve` from source with `--inspect` (for cpu and
 * heap; the profile is taken over the inspector, so that only the load is
 * sampled, not the start), logging to a file, with the README's rule and a
 * quota, logged in (`--rule true` or `--rule fifty` for the bench's other
 * two). Profiles go to `--out DIR` (default a temporary directory): open
 * `.cpuprofile` and `.heapsnapshot` files in Chrome's DevTools.
 *
 * `perf` samples the server process, all its threads, with Linux `perf
 * record` (Debian's linux-perf), with V8's `--perf-basic-prof` so that JIT
 * code has names. It counts CPU time only, where the V8 profile counts wall
 * time (a thread waiting for a core shows there as time in the op it waits
 * in), and it splits the time between the deno binary, the kernel and
 * JavaScript. A JavaScript function's line is that of the JavaScript Deno
 * emitted for the module, not of the .ts. V8 leaves its map of names in
 * `/tmp/perf-PID.map`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import {
  adminManagersToml,
  makeConfigDir,
} from "../tests/helpers/config_dir.ts";
import { runPmproxy, startPmproxy } from "../tests/helpers/pmproxy_process.ts";
import { startOrigin } from "./_bench_servers.ts";
import { abRps, idleTunnels, wrk } from "./_bench_tools.ts";
import {
  bigStrings,
  heapGrowth,
  type HeapSummary,
  Inspector,
  largestKinds,
  summarizeSnapshot,
  topAllocations,
  topFunctions,
} from "./_bench_inspector.ts";
import { fiftyManagersToml } from "./_bench_rules.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    rule: { type: "string", default: "readme" },
    seconds: { type: "string", default: "10" },
    out: { type: "string" },
    top: { type: "string", default: "40" },
    interval: { type: "string", default: "100" },
  },
});
const [what, load] = positionals;
// `start` is a gateway just started, before any load: only its heap.
if (
  !["cpu", "perf", "gc", "heap", "alloc"].includes(what ?? "") ||
  (load === "start" && what !== "heap")
) {
  console.error(
    "usage: deno task profile cpu|perf|gc|heap|alloc keepalive|newconn|tunnels|start [--rule readme|true|fifty] [--seconds N] [--out DIR] (start: heap only)",
  );
  Deno.exit(2);
}
const seconds = Number(values.seconds);
const out = values.out ??
  await Deno.makeTempDir({ prefix: "pmproxy-profile-" });
await Deno.mkdir(out, { recursive: true });
const work = await Deno.makeTempDir({ prefix: "pmproxy-profile-work-" });
const origin = await startOrigin(work, 1024 * 1024);
const toml = values.rule === "true"
  ? 'accessLog = "access.log"\nrule = "true"\n'
  : values.rule === "fifty"
  ? fiftyManagersToml()
  : `accessLog = "access.log"\n${adminManagersToml({ quota: "1000 GB" })}`;
const dir = await makeConfigDir(toml, {
  proxy: "maxTunnelsPerClient = 100000",
});
// The first start makes the API's certificate (loading the X.509 code),
// which no later start does: the start looked at is a second one.
if (load === "start") await (await startPmproxy(dir)).stop();
const server = await startPmproxy(dir, {
  denoArgs: what === "gc"
    ? ["--v8-flags=--trace-gc"]
    : what === "perf"
    ? ["--v8-flags=--perf-basic-prof"]
    : ["--inspect=127.0.0.1:0"],
});
try {
  // A gateway just started is looked at before any request: no login.
  if (values.rule !== "true" && load !== "start") {
    const login = await runPmproxy(
      ["login", "-m", "sessions", server.apiUrl, "user0", "pass0"],
      { cwd: work, env: { PMPROXY_KNOWN_SERVERS: join(work, "known.json") } },
    );
    if (login.code !== 0) throw new Error(`login failed: ${login.stderr}`);
  }
  const small = `http://127.0.0.1:${origin.port}/1k`;
  const run = async () => {
    if (load === "newconn") {
      console.log(
        `ab: ${
          (await abRps(`127.0.0.1:${server.proxyPort}`, small, {
            requests: seconds * 3000,
          }))?.toFixed(0)
        } req/s`,
      );
    } else if (load === "tunnels") {
      console.log(
        `tunnels: ${
          (await idleTunnels(server.proxyPort, origin.port, 1000))?.map((m) =>
            m.toFixed(1)
          ).join(" MiB after 0.5 s, ")
        } MiB held 5 s: resident growth for 1,000`,
      );
    } else {
      const r = await wrk(server.proxyPort, small, { seconds });
      console.log(`wrk: ${r?.rps.toFixed(0)} req/s, p99 ${r?.p99} ms`);
    }
  };
  // Warm-up: the JIT compiles the hot paths first.
  if (load !== "tunnels" && load !== "start") {
    await wrk(server.proxyPort, small, { seconds: 2 });
  }
  if (what === "cpu") {
    const inspector = await Inspector.attach(server.stderr());
    await inspector.startProfile(Number(values.interval));
    await run();
    const profile = await inspector.stopProfile();
    inspector.close();
    const file = join(out, `${load}-${values.rule}.cpuprofile`);
    await Deno.writeTextFile(file, JSON.stringify(profile));
    console.log(`self time, top ${values.top} (${file}):`);
    console.log(topFunctions(profile, Number(values.top)).join("\n"));
  } else if (what === "perf") {
    const file = join(out, `${load}-${values.rule}.perf.data`);
    const record = new Deno.Command("perf", {
      args: ["record", "-F", "1999", "-p", String(server.pid), "-o", file],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    await run();
    // perf record ends on SIGINT, as after Ctrl-C, writes its file and
    // exits non-zero all the same: what it says tells whether it wrote.
    record.kill("SIGINT");
    const said = new TextDecoder().decode((await record.output()).stderr);
    if (!said.includes("Captured and wrote")) {
      throw new Error(`perf record failed: ${said}`);
    }
    for (const sort of ["dso", "sym"]) {
      const report = await new Deno.Command("perf", {
        args: ["report", "-i", file, "--no-children", "--sort", sort],
        stdout: "piped",
        stderr: "piped",
      }).output();
      if (!report.success) {
        throw new Error(
          `perf report failed: ${new TextDecoder().decode(report.stderr)}`,
        );
      }
      const rows = new TextDecoder().decode(report.stdout).split("\n")
        .filter((l) => l.trim() !== "" && !l.startsWith("#"));
      console.log(
        `share of CPU samples by ${
          sort === "dso" ? "binary" : "symbol"
        } (${file}):`,
      );
      console.log(rows.slice(0, Number(values.top)).join("\n"));
    }
  } else if (what === "alloc") {
    const inspector = await Inspector.attach(server.stderr());
    await inspector.startAllocationSampling(1024);
    await run();
    const profile = await inspector.stopAllocationSampling();
    inspector.close();
    const file = join(out, `${load}-${values.rule}.heapprofile`);
    await Deno.writeTextFile(file, JSON.stringify(profile));
    console.log(`bytes allocated by call site, top ${values.top} (${file}):`);
    console.log(topAllocations(profile, Number(values.top)).join("\n"));
  } else if (what === "heap" && load === "start") {
    const inspector = await Inspector.attach(server.stderr());
    const used = await inspector.heapUsedAfterGc();
    const text = await inspector.heapSnapshot();
    inspector.close();
    const file = join(out, "start.heapsnapshot");
    await Deno.writeTextFile(file, text);
    console.log(
      `heap of a gateway just started: ${
        (used / 1048576).toFixed(2)
      } MiB used after a full collection (${file})`,
    );
    console.log(
      largestKinds(summarizeSnapshot(text), Number(values.top)).join("\n"),
    );
    console.log("strings of 2 KiB or more, by what they hold:");
    console.log(largestKinds(bigStrings(text)).join("\n"));
  } else if (what === "heap") {
    if (load !== "tunnels") {
      throw new Error("heap snapshots: of tunnels, or at start");
    }
    // The snapshot is taken while the tunnels are held.
    // One before them too (a snapshot collects garbage first), so that
    // what one tunnel holds is the difference.
    const inspector = await Inspector.attach(server.stderr());
    const before = summarizeSnapshot(await inspector.heapSnapshot());
    let after: HeapSummary | undefined;
    const held = idleTunnels(server.proxyPort, origin.port, 1000, {
      atMs: [500],
      whileHeld: async () => {
        const file = join(out, "tunnels.heapsnapshot");
        const text = await inspector.heapSnapshot();
        await Deno.writeTextFile(file, text);
        after = summarizeSnapshot(text);
        console.log(`heap snapshot with 1,000 tunnels held: ${file}`);
      },
    });
    console.log(`${(await held)?.[0].toFixed(1)} MiB resident growth`);
    console.log(`JavaScript heap per tunnel (self sizes, top ${values.top}):`);
    console.log(
      heapGrowth(before, after!, 1000, Number(values.top)).join("\n"),
    );
    inspector.close();
  } else {
    // V8 prints its trace on standard output (the access log goes to a file).
    const before = server.stdout().length;
    await run();
    const lines = server.stdout().slice(before).split("\n").filter((l) =>
      /Scavenge|Mark-Compact|Minor/.test(l)
    );
    const pauses = (kind: RegExp) =>
      lines.filter((l) => kind.test(l)).map((l) =>
        Number(/, ([\d.]+) \/ [\d.]+ ms/.exec(l)?.[1] ?? NaN)
      ).filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
    for (
      const [name, re] of [["young (scavenge)", /Scavenge|Minor/], [
        "full (mark-compact)",
        /Mark-Compact/,
      ]] as const
    ) {
      const p = pauses(re);
      const sum = p.reduce((a, b) => a + b, 0);
      console.log(
        `${name}: ${p.length} in ${seconds} s, ${
          sum.toFixed(0)
        } ms in all, median ${
          (p[Math.floor(p.length / 2)] ?? 0).toFixed(2)
        } ms, max ${(p[p.length - 1] ?? 0).toFixed(2)} ms`,
      );
    }
    const file = join(out, `${load}-${values.rule}.trace-gc.txt`);
    await Deno.writeTextFile(file, lines.join("\n"));
    console.log(`(${file})`);
  }
} finally {
  await server.stop();
  await origin.close();
  await Deno.remove(dir, { recursive: true });
  await Deno.remove(work, { recursive: true });
}
