/**
 * `deno task bench --scale`: how pmproxy's cost grows with the number of
 * users, sessions and dirty consumption counters (10,000, then 100,000).
 *
 * For each size N a site is made: a mapDB of N users, the README's rule
 * `sessions ∧ down` with a quota, the access log to a file, and N sessions
 * at N distinct loopback addresses (127.10.0.0 upwards) with their
 * counters. The sessions are written straight into the state store through
 * its seam (`StateStore.saveSession`, `addConsumption`: what a login and a
 * flush write), before the server starts: logging 100,000 users in over
 * the API would measure the login, not the scale.
 *
 * What is measured, against the same site with one session (the same
 * database, one session, its traffic from one address over as many
 * connections), each in rounds that interleave the two:
 *
 * - requests per second and p99 through the real server (`_bench_load.ts`
 *   sends them, each connection from its own address), and the proxy's CPU
 *   time per request (/proc/PID/stat): first with a flush every 5 s, so
 *   that each round holds flushes for the next row, then again at
 *   `persistInterval = "1m"`, what the server.toml pmproxy writes says, for
 *   what N sessions cost the requests themselves;
 * - the p99 of the requests that overlapped a flush against the p99 of the
 *   others: the bench reads the server's flush histogram
 *   (`pmproxy_state_flush_duration_seconds` on `/metrics`) every 50 ms,
 *   which places each flush within that; at both intervals (at "5s" the
 *   pace gives up after 2.5 s, at "1m" a flush is paced all through);
 * - the flush of N dirty counters (and the sessions' last use) in main-thread
 *   time and wall time: the gateway opened in the bench's own process the way
 *   `serve` opens it, N requests decided and metered, then
 *   `GatewayRuntime.flush()` timed, with the main thread's CPU time read from
 *   the kernel (/proc/PID/task/PID/sched) around it; and the near-quota sync
 *   that runs every second meanwhile;
 * - a restart: from starting the process to the first request answered
 *   through the proxy, with N sessions to restore (and with none);
 * - memory per open session: the server's V8 heap after full garbage
 *   collections (read over the inspector) and its resident size, with N
 *   sessions against the same site with none, divided by N.
 *
 * @module
 */
import { join } from "node:path";
import { connect } from "node:net";
import { openGateway, openStateStore } from "../managers/mod.ts";
import type { Policy } from "../proxy/policy.ts";
import {
  loopbackServerToml,
  startPmproxy,
} from "../tests/helpers/pmproxy_process.ts";
import type { Pmproxy } from "../tests/helpers/pmproxy_process.ts";
import { clientAddress, type LoadResult, ONE_ADDRESS } from "./_bench_load.ts";
import { Inspector } from "./_bench_inspector.ts";
import { cpuSeconds, mainThreadMs, rssKiB } from "./_bench_tools.ts";

/** The rule and managers of a scale site: the README's, N users. */
export function scaleManagersToml(users: number): string {
  const lines = [
    `accessLog = "access.log"`,
    `rule = "sessions ∧ down"`,
    `admins = ["admin"]`,
    ``,
    `[[sessionIPM]]`,
    `name = "sessions"`,
    `auth = "map"`,
    ``,
    `[[dwnConsR]]`,
    `name = "down"`,
    `userDBN = "map"`,
    `resetCycle = "24h"`,
    `[dwnConsR.groupQuota]`,
    `group0 = "1000 GB"`,
    `staff = "1 GB"`,
    ``,
    `[mapDB]`,
    `name = "map"`,
    `[mapDB.userPass]`,
    `admin = "admin-pass"`,
  ];
  for (let i = 0; i < users; i++) lines.push(`u${i} = "p${i}"`);
  lines.push(`[mapDB.userGroups]`, `admin = ["staff"]`);
  for (let i = 0; i < users; i++) lines.push(`u${i} = ["group0"]`);
  return lines.join("\n") + "\n";
}

/** A configuration directory of N users, some of them logged in. */
export interface ScaleSite {
  dir: string;
  users: number;
  sessions: number;
  /** The state store's location (the KV file, or a Redis URL). */
  state: string;
  /** The address of the first session (or of the first client). */
  firstAddress: string;
}

/**
 * Makes a site of `users` users whose first `sessions` are logged in at
 * `clientAddress(i)` (with `options.oneAddress`, the one session at
 * `ONE_ADDRESS`, the reference of one address), each with a counter;
 * state in `dir/state.kv`, or at `options.state` (a Redis URL, with
 * `[state] url` in server.toml).
 */
export async function makeScaleSite(
  users: number,
  sessions: number,
  options: {
    state?: string;
    persistInterval?: string;
    oneAddress?: boolean;
  } = {},
): Promise<ScaleSite> {
  const firstAddress = options.oneAddress ? ONE_ADDRESS : clientAddress(0);
  const dir = await Deno.makeTempDir({ prefix: "pmproxy-scale-" });
  const state = options.state ?? join(dir, "state.kv");
  await Deno.writeTextFile(
    join(dir, "server.toml"),
    loopbackServerToml({
      persistInterval: options.persistInterval ?? "5s",
      // 10,000 kept-alive client connections and their upstream pool.
      proxyServer: "maxConnections = 30000",
      tail: options.state ? `[state]\n  url = "${options.state}"\n` : "",
    }),
  );
  await Deno.writeTextFile(
    join(dir, "managers.toml"),
    scaleManagersToml(users),
  );
  const store = await openStateStore(state);
  try {
    await store.signingKey();
    // The quota's cycle began an hour ago; the gateway takes it from here.
    const cycle = await store.initLastReset("down", Date.now() - 3600_000);
    // Logged in an hour ago, last used ten minutes ago: their next use is
    // written by the next flush (a last use is written once it moved 5
    // minutes; see managers/sessions/session_ipm.ts).
    const now = Date.now() - 600_000;
    const opened = now - 3000_000;
    let next = 0;
    // Logins are written one by one, as the API writes them; 64 at a time
    // keeps the setup of 100,000 within a minute.
    const worker = async () => {
      while (next < sessions) {
        const i = next++;
        const user = `u${i}`;
        await store.saveSession("sessions", {
          ip: i === 0 ? firstAddress : clientAddress(i),
          user,
          record: { userName: user, name: user, groups: ["group0"] },
          groups: { map: ["group0"] },
          opened,
          lastUsed: now,
        });
      }
    };
    await Promise.all(Array.from({ length: 64 }, worker));
    const counters = new Map<string, number>();
    for (let i = 0; i < sessions; i++) counters.set(`u${i}`, 1024 * 1024);
    await store.addConsumption("down", cycle, counters);
  } finally {
    await store.close();
  }
  return { dir, users, sessions, state, firstAddress };
}

/** The facts of one request from client number `i`. */
export function facts(i: number, now: Date) {
  return {
    clientIp: clientAddress(i),
    time: now,
    method: "GET",
    url: "http://127.0.0.1/1k",
    host: "127.0.0.1",
    port: 80,
  };
}

/** One request from each of the `n` clients, decided and metered (1 KiB). */
function dirty(policy: Policy, n: number): void {
  const now = new Date();
  for (let i = 0; i < n; i++) {
    const d = policy.decide(facts(i, now));
    if (d instanceof Promise || !d.allowed) {
      throw new Error(`request ${i} not allowed: ${JSON.stringify(d)}`);
    }
    d.meter?.chunk(1024);
  }
}

/** What one in-process flush took. */
export interface FlushCost {
  wallMs: number;
  mainMs: number;
}

/**
 * Opens the site's gateway in this process (as `serve` does, no persist
 * timer), and measures `rounds` flushes of `site.sessions` dirty counters:
 * the first with every session's last use due to be written too (as
 * {@link makeScaleSite} left them), the others with none due (a flush
 * writes a last use once it moved 5 minutes); then the near-quota sync's
 * main-thread time per second while they are dirty (no flush meanwhile).
 */
export async function measureFlush(
  site: ScaleSite,
  rounds: number,
): Promise<{ flushes: FlushCost[]; syncMainMsPerSecond: number }> {
  const gateway = await openGateway(join(site.dir, "managers.toml"), {
    state: site.state,
    persistIntervalMs: 0,
    syncIntervalMs: 1000,
  });
  const flushes: FlushCost[] = [];
  try {
    for (let r = 0; r < rounds; r++) {
      dirty(gateway, site.sessions);
      const m0 = mainThreadMs(Deno.pid);
      const t0 = performance.now();
      await gateway.flush();
      flushes.push({
        wallMs: performance.now() - t0,
        mainMs: mainThreadMs(Deno.pid) - m0,
      });
    }
    // The sync runs every second while counters are dirty.
    dirty(gateway, site.sessions);
    const m0 = mainThreadMs(Deno.pid);
    await new Promise((r) => setTimeout(r, 3000));
    const syncMainMsPerSecond = (mainThreadMs(Deno.pid) - m0) / 3;
    return { flushes, syncMainMsPerSecond };
  } finally {
    await gateway.close();
  }
}

/**
 * One GET of `url` through the proxy at `port` from `address`; answers the
 * status (0 when the connection failed).
 */
export function probe(
  port: number,
  address: string,
  url: string,
): Promise<number> {
  return new Promise((resolve) => {
    const sock = connect({ host: "127.0.0.1", port, localAddress: address });
    let text = "";
    const done = (status: number) => {
      sock.destroy();
      resolve(status);
    };
    sock.on(
      "connect",
      () =>
        sock.write(
          `GET ${url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
        ),
    );
    sock.on("data", (d: Uint8Array) => {
      text += new TextDecoder().decode(d);
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      if (m) done(Number(m[1]));
    });
    sock.on("error", () => done(0));
    sock.on("close", () => done(0));
  });
}

/**
 * Starts the site's server and answers it with the time from the start of
 * the process to the first request answered through the proxy from the
 * site's first address as it should be: 200 when that client has a
 * session, else the refusal (the second of a restart's two halves; the
 * stop's final flush is timed by the caller).
 */
export async function startServing(
  site: ScaleSite,
  url: string,
  options: { denoArgs?: string[] } = {},
): Promise<{ server: Pmproxy; ms: number }> {
  const t0 = performance.now();
  const server = await startPmproxy(site.dir, {
    denoArgs: options.denoArgs,
    timeoutMs: 120_000,
  });
  for (;;) {
    const status = await probe(server.proxyPort, site.firstAddress, url);
    if (status === (site.sessions > 0 ? 200 : 403)) break;
    if (performance.now() - t0 > 120_000) {
      await server.stop();
      throw new Error(`the restarted server answers ${status}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return { server, ms: performance.now() - t0 };
}

/** A flush the server did, as the poller of its metrics placed it. */
interface FlushWindow {
  /** Epoch ms: it began no earlier than `from` and ended by `to`. */
  from: number;
  to: number;
  seconds: number;
}

/**
 * Reads the server's flush histogram every `everyMs` until stopped, and
 * answers the window of each flush it saw end.
 */
export function watchFlushes(
  server: Pmproxy,
  dir: string,
  everyMs = 50,
): { stop(): Promise<FlushWindow[]> } {
  const cert = Deno.readTextFileSync(join(dir, "cert.pem"));
  const client = Deno.createHttpClient({ caCerts: [cert] });
  const windows: FlushWindow[] = [];
  let running = true;
  const sample = async () => {
    const res = await fetch(`${server.apiUrl}/metrics`, { client });
    const text = await res.text();
    const num = (name: string) =>
      Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);
    return {
      at: Date.now(),
      count: num("pmproxy_state_flush_duration_seconds_count"),
      sum: num("pmproxy_state_flush_duration_seconds_sum"),
    };
  };
  const loop = (async () => {
    let last = await sample();
    while (running) {
      await new Promise((r) => setTimeout(r, everyMs));
      const now = await sample();
      if (now.count > last.count) {
        const seconds = (now.sum - last.sum) / (now.count - last.count);
        windows.push({
          from: last.at - seconds * 1000 * (now.count - last.count),
          to: now.at,
          seconds,
        });
      }
      last = now;
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      client.close();
      return windows;
    },
  };
}

/** p99 of latencies (ms). */
function p99(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const sorted = Float64Array.from(xs).sort();
  return sorted[
    Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)
  ];
}

/**
 * The p99 of the requests of `timeline` that overlapped one of `windows`
 * against that of the others.
 */
export function p99AroundFlushes(
  timeline: Float64Array,
  windows: FlushWindow[],
): { during: number; outside: number; duringCount: number } {
  const during: number[] = [];
  const outside: number[] = [];
  for (let k = 0; k < timeline.length; k += 2) {
    const sent = timeline[k];
    const latency = timeline[k + 1];
    const overlaps = windows.some((w) =>
      sent <= w.to && sent + latency >= w.from
    );
    (overlaps ? during : outside).push(latency);
  }
  return {
    during: p99(during),
    outside: p99(outside),
    duringCount: during.length,
  };
}

/** Options of {@link runLoad}. */
export interface LoadOptions {
  url: string;
  addresses: number;
  oneAddress: boolean;
  connections: number;
  inflight: number;
  seconds: number;
  warmup: number;
  rotateAfter: number;
}

/**
 * Runs `_bench_load.ts` against the proxy at `port`; answers what it
 * measured and its timeline (sent at, latency: pairs of float64).
 */
export async function runLoad(
  port: number,
  options: LoadOptions,
): Promise<{ result: LoadResult; timeline: Float64Array }> {
  const timelineFile = await Deno.makeTempFile({ suffix: ".f64" });
  const out = await new Deno.Command("deno", {
    args: [
      "run",
      "-A",
      new URL("./_bench_load.ts", import.meta.url).pathname,
      "--proxy-port",
      String(port),
      "--url",
      options.url,
      "--addresses",
      String(options.addresses),
      ...(options.oneAddress ? ["--one-address"] : []),
      "--connections",
      String(options.connections),
      "--inflight",
      String(options.inflight),
      "--seconds",
      String(options.seconds),
      "--warmup",
      String(options.warmup),
      "--rotate-after",
      String(options.rotateAfter),
      "--timeline",
      timelineFile,
    ],
    stderr: "inherit",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (!out.success || text === "") {
    throw new Error(`the load generator failed (exit ${out.code}): ${text}`);
  }
  const bytes = await Deno.readFile(timelineFile);
  await Deno.remove(timelineFile);
  return {
    result: JSON.parse(text.split("\n").pop()!) as LoadResult,
    timeline: new Float64Array(bytes.buffer, 0, bytes.length / 8),
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
}

/** Options of {@link runScale}. */
export interface ScaleOptions {
  /** The sizes to measure (10,000 and 100,000). */
  sizes: number[];
  /** The origin's 1 KiB URL. */
  url: string;
  /** Where state goes: a Deno KV file (default) or a Redis server's URL base (`redis://127.0.0.1:PORT`). */
  redis?: string;
  quick: boolean;
}

/** Runs the scale rows for each size, printing as it goes. */
export async function runScale(options: ScaleOptions): Promise<void> {
  const backend = options.redis ? "Redis" : "Deno KV file";
  let db = 1;
  const stateOf = () => options.redis ? `${options.redis}/${db++}` : undefined;
  for (const n of options.sizes) {
    console.log(
      `scale: ${
        n.toLocaleString("en")
      } users, sessions and dirty counters (${backend}):`,
    );
    const t0 = performance.now();
    const full = await makeScaleSite(n, n, { state: stateOf() });
    const one = await makeScaleSite(n, 1, {
      state: stateOf(),
      oneAddress: true,
    });
    const none = await makeScaleSite(n, 0, { state: stateOf() });
    console.log(
      `  (sites written in ${((performance.now() - t0) / 1000).toFixed(0)} s)`,
    );
    try {
      await scaleRows(full, one, none, options);
    } finally {
      for (const s of [full, one, none]) {
        await Deno.remove(s.dir, { recursive: true });
      }
    }
  }
}

async function scaleRows(
  full: ScaleSite,
  one: ScaleSite,
  none: ScaleSite,
  options: ScaleOptions,
): Promise<void> {
  const n = full.sessions;
  const url = options.url;
  // The flush, in this process.
  const cost = await measureFlush(full, options.quick ? 2 : 4);
  const [due, ...between] = cost.flushes;
  console.log(
    `  flush of ${n} dirty counters (and their usage history): ${
      median(between.map((f) => f.mainMs)).toFixed(0)
    } ms of main-thread time (target ≤ 200), ${
      median(between.map((f) => f.wallMs)).toFixed(0)
    } ms wall (medians of ${between.length}); with every session's last use due too (once per 5 minutes): ${
      due.mainMs.toFixed(0)
    } ms main, ${due.wallMs.toFixed(0)} ms wall`,
  );
  console.log(
    `  near-quota sync while they are dirty: ${
      cost.syncMainMsPerSecond.toFixed(1)
    } ms of main-thread time per second`,
  );

  // Restarts, and memory per session (over the inspector).
  const inspect = ["--inspect=127.0.0.1:0"];
  const starts: Record<string, number[]> = { full: [], none: [] };
  const heap: Record<string, number[]> = { full: [], none: [] };
  const rss: Record<string, number[]> = { full: [], none: [] };
  const stops: number[] = [];
  for (let round = 0; round < (options.quick ? 1 : 2); round++) {
    for (const [name, site] of [["full", full], ["none", none]] as const) {
      const { server, ms } = await startServing(site, url, {
        denoArgs: inspect,
      });
      starts[name].push(ms);
      const inspector = await Inspector.attach(server.stderr());
      heap[name].push(await inspector.heapUsedAfterGc());
      rss[name].push(rssKiB(server.pid) * 1024);
      inspector.close();
      const s0 = performance.now();
      await server.stop();
      if (name === "full") stops.push(performance.now() - s0);
    }
  }
  console.log(
    `  restart with ${n} sessions: ${
      median(starts.full).toFixed(0)
    } ms from start to the first request served (target ≤ 2000; with no session: ${
      median(starts.none).toFixed(0)
    } ms); the stop before it (final flush): ${median(stops).toFixed(0)} ms`,
  );
  const perHeap = (median(heap.full) - median(heap.none)) / n;
  const perRss = (median(rss.full) - median(rss.none)) / n;
  console.log(
    `  memory per open session: ${
      perHeap.toFixed(0)
    } B of V8 heap after GC (target ≤ 1024), ${
      perRss.toFixed(0)
    } B resident (heap ${
      (median(heap.full) / 1048576).toFixed(1)
    } MiB with ${n}, ${
      (median(heap.none) / 1048576).toFixed(1)
    } MiB with none)`,
  );

  // Requests per second: N sessions from N addresses against one session
  // from one address, rounds interleaved.
  const connections = Math.min(n, 10_000);
  const load: LoadOptions = {
    url,
    addresses: n,
    oneAddress: false,
    connections,
    inflight: 64,
    seconds: options.quick ? 8 : 20,
    warmup: 4,
    rotateAfter: n > connections ? 1 : 0,
  };
  const fast = await loadRounds(full, one, load, url, options);
  console.log(
    `  requests on ${connections} kept-alive connections${
      load.rotateAfter
        ? " (each replaced after one request, from the next address)"
        : ""
    }, ${load.inflight} in flight, persistInterval "5s" (a flush every 5 s; the flush rows above measure them):`,
  );
  printRounds(fast.runs, n, "");
  printFlushP99(fast.flushP99, "target ≤ 1.2");
  // The same rounds at the interval a new site's server.toml has: what n
  // sessions cost a gateway's requests, with its flushes 12 times rarer.
  for (const site of [full, one]) {
    const file = join(site.dir, "server.toml");
    const text = await Deno.readTextFile(file);
    const usual = text.replace(
      /persistInterval = "[^"]*"/,
      'persistInterval = "1m"',
    );
    if (usual === text) throw new Error(`${file}: no persistInterval`);
    await Deno.writeTextFile(file, usual);
  }
  const slow = await loadRounds(full, one, load, url, options);
  const flushes = slow.flushP99.reduce((sum, f) => sum + f.count, 0);
  console.log(
    `  the same at persistInterval "1m", as the server.toml pmproxy writes (${flushes} flush${
      flushes === 1 ? "" : "es"
    } in all its ${n}-session rounds):`,
  );
  printRounds(slow.runs, n, " (target ≥ 0.95)");
  // A flush at "1m" is paced over up to 10 s, not cut short at 2.5 s as
  // at "5s": the p99 during it is what a site with that interval sees.
  printFlushP99(slow.flushP99, "– : no flush in that round");
}

/** A round's p99 of the requests during its flushes and outside them. */
interface FlushP99 {
  during: number;
  outside: number;
  count: number;
}

/** Prints each round's p99 during a flush against outside it. */
function printFlushP99(rounds: FlushP99[], note: string): void {
  console.log(
    `    p99 during a flush ×outside: ${
      rounds.map((f) => f.count ? (f.during / f.outside).toFixed(2) : "–")
        .join(" ")
    } by round (${note}; ${
      rounds.map((f) =>
        f.count
          ? `${f.count} flushes, ${f.during.toFixed(1)}/${
            f.outside.toFixed(1)
          } ms`
          : `${f.outside.toFixed(1)} ms outside`
      ).join("; ")
    })`,
  );
}

/** Each round's figures of one server (see {@link loadRounds}). */
interface Round {
  rps: number;
  p99: number;
  cpuUs: number;
}

/**
 * Starts `full` and `one`, runs a warm-up on each, then rounds of `load`
 * that interleave them (`full` from its many addresses, `one` from one),
 * and stops them: each one's rounds, and the p99 of `full`'s requests
 * during its flushes against the others', by round.
 */
async function loadRounds(
  full: ScaleSite,
  one: ScaleSite,
  load: LoadOptions,
  url: string,
  options: ScaleOptions,
): Promise<{
  runs: Record<"full" | "one", Round[]>;
  flushP99: FlushP99[];
}> {
  const a = (await startServing(full, url)).server;
  const b = (await startServing(one, url)).server;
  const runs: Record<"full" | "one", Round[]> = { full: [], one: [] };
  const flushP99: FlushP99[] = [];
  try {
    // A warm-up run on each, not measured, long enough for flushes: a
    // gateway's hot paths (the flush's too) are compiled by the JIT first.
    for (const [server, oneAddress] of [[a, false], [b, true]] as const) {
      await runLoad(server.proxyPort, {
        ...load,
        oneAddress,
        seconds: options.quick ? 4 : 12,
      });
    }
    for (let round = 0; round < (options.quick ? 1 : 3); round++) {
      for (const [name, server] of [["full", a], ["one", b]] as const) {
        const watcher = watchFlushes(
          server,
          name === "full" ? full.dir : one.dir,
        );
        const c0 = cpuSeconds(server.pid);
        const { result, timeline } = await runLoad(server.proxyPort, {
          ...load,
          oneAddress: name === "one",
        });
        const cpu = cpuSeconds(server.pid) - c0;
        const windows = await watcher.stop();
        if (result.errors || result.broken) {
          console.log(
            `  (${name}: ${result.errors} non-200 answers, ${result.broken} broken connections)`,
          );
        }
        // The CPU time covers the warm-up too: per request of the whole run.
        const all = result.requests * (load.seconds + load.warmup) /
          load.seconds;
        runs[name].push({
          rps: result.rps,
          p99: result.p99,
          cpuUs: cpu * 1e6 / all,
        });
        if (name === "full") {
          const around = p99AroundFlushes(timeline, windows);
          flushP99.push({
            during: around.during,
            outside: around.outside,
            count: windows.length,
          });
        }
      }
    }
  } finally {
    await a.stop();
    await b.stop();
  }
  return { runs, flushP99 };
}

/** Prints each server's medians and the ratio of their requests per second. */
function printRounds(
  runs: Record<"full" | "one", Round[]>,
  n: number,
  target: string,
): void {
  for (
    const [name, label] of [["full", `${n} sessions`], [
      "one",
      "1 session",
    ]] as const
  ) {
    const rs = runs[name];
    console.log(
      `    ${label.padEnd(16)} ${
        median(rs.map((r) => r.rps)).toFixed(0).padStart(7)
      } req/s  p99 ${
        median(rs.map((r) => r.p99)).toFixed(2).padStart(6)
      } ms  CPU ${
        median(rs.map((r) => r.cpuUs)).toFixed(1).padStart(5)
      } µs/request   by round: ${rs.map((r) => r.rps.toFixed(0)).join(" ")}`,
    );
  }
  const ratio = median(runs.full.map((r) => r.rps)) /
    median(runs.one.map((r) => r.rps));
  console.log(
    `    req/s with ${n} sessions ×1 session: ${ratio.toFixed(3)}${target}`,
  );
}
