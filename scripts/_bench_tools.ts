/**
 * The measuring tools of `deno task bench`: curl for bulk downloads and
 * uploads, wrk for kept-alive requests (saturated and paced), ab for one new
 * connection per request, and /proc for resident memory and CPU time. Each
 * answers undefined when its tool is not installed.
 *
 * @module
 */
import { has } from "./_bench_servers.ts";

const enc = new TextEncoder();

/** curl's download speed in MiB/s; throws unless exactly `size` bytes came. */
export async function curlSpeed(
  url: string,
  proxyArgs: string[],
  size: number,
): Promise<number> {
  const out = await new Deno.Command("curl", {
    args: [
      "-sS",
      "-o",
      "/dev/null",
      "-w",
      "%{speed_download} %{size_download}",
      ...proxyArgs,
      url,
    ],
  }).output();
  const [speed, got] = new TextDecoder().decode(out.stdout).split(" ").map(
    Number,
  );
  if (!out.success || got !== size) {
    throw new Error(
      `curl ${proxyArgs.join(" ")} ${url} failed: ${
        new TextDecoder().decode(out.stderr)
      }`,
    );
  }
  return speed / (1024 * 1024);
}

/**
 * curl's upload speed in MiB/s for a PUT of the file `file` (`size` bytes)
 * to `url`; throws unless it all went and the answer was 2xx.
 */
export async function curlUpload(
  url: string,
  proxyArgs: string[],
  options: { file: string; size: number },
): Promise<number> {
  const out = await new Deno.Command("curl", {
    args: [
      "-sS",
      "-f",
      "-T",
      options.file,
      "-o",
      "/dev/null",
      "-w",
      "%{speed_upload} %{size_upload}",
      ...proxyArgs,
      url,
    ],
  }).output();
  const [speed, sent] = new TextDecoder().decode(out.stdout).split(" ").map(
    Number,
  );
  if (!out.success || sent !== options.size) {
    throw new Error(
      `curl -T ${proxyArgs.join(" ")} ${url} failed: ${
        new TextDecoder().decode(out.stderr)
      }`,
    );
  }
  return speed / (1024 * 1024);
}

/** What one wrk run saw. */
export interface WrkResult {
  rps: number;
  /** Requests completed. */
  requests: number;
  /** Latency percentiles in milliseconds. */
  p50: number;
  p99: number;
  /** Answers that were not 2xx or 3xx. */
  errors: number;
}

function millis(value: string, unit: string): number {
  const v = Number(value);
  return unit === "us" ? v / 1000 : unit === "s" ? v * 1000 : v;
}

/**
 * `wrk -t2` (or `threads`) on `connections` kept-alive connections through the proxy at
 * `proxyPort`, asking for the absolute URL `target`. With `pauseMs`, each
 * connection waits that long after every answer (wrk's `delay()`), so two
 * proxies can be compared at about the same offered load instead of each at
 * its own saturation.
 */
export async function wrk(
  proxyPort: number,
  target: string,
  options: {
    seconds: number;
    connections?: number;
    pauseMs?: number;
    /** wrk's threads (default 2). */
    threads?: number;
  },
): Promise<WrkResult | undefined> {
  if (!has("wrk")) return undefined;
  const script = await Deno.makeTempFile({ suffix: ".lua" });
  const lines = [`wrk.path = "${target}"`];
  if (options.pauseMs) {
    lines.push(`function delay() return ${options.pauseMs} end`);
  }
  await Deno.writeTextFile(script, lines.join("\n") + "\n");
  const out = await new Deno.Command("wrk", {
    args: [
      `-t${options.threads ?? 2}`,
      `-c${options.connections ?? 32}`,
      `-d${options.seconds}s`,
      "--latency",
      "-s",
      script,
      `http://127.0.0.1:${proxyPort}`,
    ],
  }).output();
  await Deno.remove(script);
  const text = new TextDecoder().decode(out.stdout);
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(text);
  const total = /(\d+) requests in/.exec(text);
  const p50 = /50%\s+([\d.]+)(us|ms|s)/.exec(text);
  const p99 = /99%\s+([\d.]+)(us|ms|s)/.exec(text);
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(text);
  if (!rps || !p50 || !p99 || !total) return undefined;
  return {
    rps: Number(rps[1]),
    requests: Number(total[1]),
    p50: millis(p50[1], p50[2]),
    p99: millis(p99[1], p99[2]),
    errors: errors ? Number(errors[1]) : 0,
  };
}

/** Requests per second with one new connection each (ab -c32). */
export async function abRps(
  proxy: string | undefined,
  target: string,
  options: { requests: number },
): Promise<number | undefined> {
  if (!has("ab")) return undefined;
  const args = ["-q", "-n", String(options.requests), "-c", "32"];
  if (proxy) args.push("-X", proxy);
  args.push(target);
  const out = await new Deno.Command("ab", { args }).output();
  const text = new TextDecoder().decode(out.stdout);
  const rps = /Requests per second:\s+([\d.]+)/.exec(text);
  const failed = /Non-2xx responses:\s+(\d+)/.exec(text);
  if (failed) console.log(`  (ab saw ${failed[1]} non-2xx answers)`);
  return rps ? Number(rps[1]) : undefined;
}

/** Clock ticks per second of /proc's times (USER_HZ: 100 on Linux). */
const TICKS = 100;

/**
 * CPU time a process has used so far, every thread, user and system, in
 * seconds (/proc/PID/stat; 10 ms resolution).
 */
export function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // The fields after the command name (which may hold spaces), from state.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

/**
 * CPU time the main thread of a process has used so far, in ms, to the
 * nanosecond (the scheduler's own sum, /proc/PID/task/PID/sched). For Deno
 * that is the JavaScript thread: what delays requests.
 */
export function mainThreadMs(pid: number): number {
  const sched = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/sched`);
  const m = /se\.sum_exec_runtime\s*:\s*([\d.]+)/.exec(sched);
  if (!m) {
    throw new Error(`no sum_exec_runtime in /proc/${pid}/task/${pid}/sched`);
  }
  return Number(m[1]);
}

/** Resident memory of a process, in KiB. */
export function rssKiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

/** The pid of the process listening on `port`. */
export function listenerPid(port: number): number | undefined {
  // pmproxy is `deno run … main.ts serve` and squid runs with -N (one
  // process): find either by its listening port.
  const out = new Deno.Command("sh", {
    args: [
      "-c",
      `ss -ltnpH 'sport = :${port}' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2`,
    ],
  }).outputSync();
  const pid = Number(new TextDecoder().decode(out.stdout).trim());
  return pid > 0 ? pid : undefined;
}

/**
 * Opens `count` CONNECT tunnels through the proxy and holds them idle;
 * answers the proxy's resident growth in MiB, measured `atMs` after the
 * last one is up (default 0.5 s and 5 s: at once, and held as the issue's
 * figures were; each instant's growth in order). `whileHeld` runs while
 * they are held, after the last measure.
 */
export async function idleTunnels(
  proxyPort: number,
  originPort: number,
  count: number,
  options: { whileHeld?: () => Promise<void>; atMs?: number[] } = {},
): Promise<number[] | undefined> {
  const pid = listenerPid(proxyPort);
  if (!pid) return undefined;
  const before = rssKiB(pid);
  const conns: Deno.Conn[] = [];
  const buf = new Uint8Array(1024);
  for (let i = 0; i < count; i++) {
    const c = await Deno.connect({ hostname: "127.0.0.1", port: proxyPort });
    await c.write(
      enc.encode(
        `CONNECT 127.0.0.1:${originPort} HTTP/1.1\r\nHost: 127.0.0.1:${originPort}\r\n\r\n`,
      ),
    );
    const n = await c.read(buf);
    if (
      n === null ||
      !new TextDecoder().decode(buf.subarray(0, n)).includes(" 200 ")
    ) {
      throw new Error(
        `tunnel ${i} refused: ${
          n === null ? "closed" : new TextDecoder().decode(buf.subarray(0, n))
        }`,
      );
    }
    conns.push(c);
  }
  const growth: number[] = [];
  let waited = 0;
  for (const at of options.atMs ?? [500, 5000]) {
    await new Promise((r) => setTimeout(r, Math.max(0, at - waited)));
    waited = Math.max(waited, at);
    growth.push((rssKiB(pid) - before) / 1024);
  }
  await options.whileHeld?.();
  for (const c of conns) c.close();
  return growth;
}
