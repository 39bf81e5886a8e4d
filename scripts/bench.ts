/**
 * `deno task bench`: measures the proxy against references started in the
 * same run, and prints ratios (never asserts on time).
 *
 * - bulk download of a large body: direct, through a bare Deno relay (the
 *   platform's ceiling), through pmproxy as plain HTTP and as a CONNECT
 *   tunnel, and through squid / tinyproxy when they are installed;
 * - 1 KiB requests on kept-alive connections (wrk, when installed);
 * - one new connection per request (ab, when installed);
 * - resident memory of 1,000 idle tunnels.
 *
 * pmproxy runs as the real server (child process) with the rule
 * `sessions ∧ down` and a quota attached, logged in from 127.0.0.1; a
 * second one with `rule = "true"` ("pmproxy true") shows what the rule and
 * quota machinery cost.
 *
 * Options: `--size MiB` (default 512), `--quick` (smaller runs),
 * `--tunnels N` idle tunnels to hold (default 1000).
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

function has(cmd: string): boolean {
  return new Deno.Command("sh", {
    args: ["-c", `command -v ${cmd}`],
    stdout: "null",
    stderr: "null",
  })
    .outputSync().success;
}

// ---------------------------------------------------------------------------
// A raw origin: answers every request with `/bytes/N` or `/1k` from one
// reused buffer, so the origin is never the bottleneck.
const BLOCK = new Uint8Array(256 * 1024).fill(120);
const enc = new TextEncoder();

async function serveOrigin(conn: Deno.TcpConn) {
  const buf = new Uint8Array(16 * 1024);
  let pending = "";
  // Head and body go out in separate writes: without this, Nagle's algorithm
  // and delayed ACKs add 40 ms to every small answer.
  conn.setNoDelay(true);
  let open = true;
  try {
    while (open) {
      const n = await conn.read(buf);
      if (n === null) break;
      pending += new TextDecoder().decode(buf.subarray(0, n));
      let end;
      while ((end = pending.indexOf("\r\n\r\n")) >= 0) {
        const head = pending.slice(0, end);
        pending = pending.slice(end + 4);
        const path = head.split(" ")[1] ?? "/";
        // HTTP/1.0 without keep-alive (ab): the answer ends with the connection.
        const http10 = /^[^\r\n]* HTTP\/1\.0\r?$/m.test(head.split("\n")[0]) &&
          !/^connection: *keep-alive/im.test(head);
        if (http10) open = false;
        const m = /\/bytes\/(\d+)/.exec(path);
        const size = m ? Number(m[1]) : 1024;
        await conn.write(
          enc.encode(
            `HTTP/1.1 200 OK\r\nContent-Length: ${size}\r\nContent-Type: application/octet-stream\r\n\r\n`,
          ),
        );
        let left = size;
        while (left > 0) {
          const k = Math.min(left, BLOCK.length);
          let off = 0;
          while (off < k) off += await conn.write(BLOCK.subarray(off, k));
          left -= k;
        }
      }
    }
  } catch { /* client went away */ }
  try {
    conn.close();
  } catch { /* closed */ }
}

function startOrigin(): { port: number; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    try {
      for await (const conn of listener) serveOrigin(conn);
    } catch { /* closed */ }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close: () => listener.close(),
  };
}

// ---------------------------------------------------------------------------
// A bare Deno relay: CONNECT only, manual read loop with 256 KiB buffers, no
// policy and no parsing beyond the first line: the platform's ceiling.
async function pump(from: Deno.Conn, to: Deno.Conn) {
  const buf = new Uint8Array(256 * 1024);
  try {
    for (;;) {
      const n = await from.read(buf);
      if (n === null) break;
      let off = 0;
      while (off < n) off += await to.write(buf.subarray(off, n));
    }
    await to.closeWrite();
  } catch { /* peer gone */ }
}

function startBareRelay(): { port: number; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    try {
      for await (const client of listener) {
        (async () => {
          const buf = new Uint8Array(4096);
          const n = await client.read(buf);
          if (n === null) return client.close();
          const line = new TextDecoder().decode(buf.subarray(0, n)).split(" ");
          const [host, port] = line[1].split(":");
          const up = await Deno.connect({ hostname: host, port: Number(port) });
          await client.write(
            enc.encode("HTTP/1.1 200 Connection established\r\n\r\n"),
          );
          await Promise.all([pump(client, up), pump(up, client)]);
          client.close();
          up.close();
        })().catch(() => {});
      }
    } catch { /* closed */ }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close: () => listener.close(),
  };
}

// ---------------------------------------------------------------------------
// Reference proxies from Debian, started on free ports with private configs.
interface Reference {
  name: string;
  port: number;
  stop(): Promise<void>;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function waitPort(port: number): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return true;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return false;
}

async function startReference(
  name: "squid" | "tinyproxy",
  tmp: string,
): Promise<Reference | undefined> {
  if (!has(name)) return undefined;
  const port = freePort();
  const conf = join(tmp, `${name}.conf`);
  let args: string[];
  if (name === "squid") {
    const logs = join(tmp, "squid-logs");
    await Deno.mkdir(logs, { mode: 0o777 });
    await Deno.chmod(logs, 0o777);
    await Deno.chmod(tmp, 0o755);
    await Deno.writeTextFile(
      conf,
      [
        `http_port 127.0.0.1:${port}`,
        "http_access allow all",
        "cache deny all",
        // Both proxies log every request (pmproxy to its standard output).
        // (squid writes it as its unprivileged user: see logs below)
        `access_log stdio:${join(tmp, "squid-logs", "access.log")} squid`,
        `cache_log ${join(tmp, "squid-cache.log")}`,
        `pid_filename ${join(tmp, "squid.pid")}`,
        `coredump_dir ${tmp}`,
        "shutdown_lifetime 0 seconds",
        "",
      ].join("\n"),
    );
    args = ["-N", "-f", conf];
  } else {
    await Deno.writeTextFile(
      conf,
      [
        `Port ${port}`,
        "Listen 127.0.0.1",
        "Allow 127.0.0.1",
        "MaxClients 2000",
        "LogLevel Critical",
        `PidFile "${join(tmp, "tinyproxy.pid")}"`,
        "",
      ].join("\n"),
    );
    args = ["-d", "-c", conf];
  }
  const child = new Deno.Command(name, {
    args,
    stdout: "null",
    stderr: "null",
    stdin: "null",
  }).spawn();
  if (!(await waitPort(port))) {
    try {
      child.kill("SIGKILL");
    } catch { /* it had already exited */ }
    await child.status;
    return undefined;
  }
  return {
    name,
    port,
    stop: async () => {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}

// ---------------------------------------------------------------------------
async function curlSpeed(url: string, proxyArgs: string[]): Promise<number> {
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
  const [speed, size] = new TextDecoder().decode(out.stdout).split(" ").map(
    Number,
  );
  if (!out.success || size !== SIZE) {
    throw new Error(
      `curl ${proxyArgs.join(" ")} ${url} failed: ${
        new TextDecoder().decode(out.stderr)
      }`,
    );
  }
  return speed / (1024 * 1024);
}

async function best(runs: number, f: () => Promise<number>): Promise<number> {
  let top = 0;
  for (let i = 0; i < runs; i++) top = Math.max(top, await f());
  return top;
}

async function wrkRps(
  proxyPort: number,
  target: string,
): Promise<{ rps: number; p99: string } | undefined> {
  if (!has("wrk")) return undefined;
  const script = await Deno.makeTempFile({ suffix: ".lua" });
  await Deno.writeTextFile(script, `wrk.path = "${target}"\n`);
  const out = await new Deno.Command("wrk", {
    args: [
      "-t2",
      "-c32",
      `-d${quick ? 3 : 8}s`,
      "--latency",
      "-s",
      script,
      `http://127.0.0.1:${proxyPort}`,
    ],
  }).output();
  await Deno.remove(script);
  const text = new TextDecoder().decode(out.stdout);
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(text);
  const p99 = /99%\s+([\d.]+\w+)/.exec(text);
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(text);
  if (!rps) return undefined;
  if (errors) console.log(`  (wrk saw ${errors[1]} non-2xx answers)`);
  return { rps: Number(rps[1]), p99: p99?.[1] ?? "?" };
}

async function abRps(
  proxy: string | undefined,
  target: string,
): Promise<number | undefined> {
  if (!has("ab")) return undefined;
  const args = ["-q", "-n", quick ? "5000" : "20000", "-c", "32"];
  if (proxy) args.push("-X", proxy);
  args.push(target);
  const out = await new Deno.Command("ab", { args }).output();
  const text = new TextDecoder().decode(out.stdout);
  const rps = /Requests per second:\s+([\d.]+)/.exec(text);
  const failed = /Non-2xx responses:\s+(\d+)/.exec(text);
  if (failed) console.log(`  (ab saw ${failed[1]} non-2xx answers)`);
  return rps ? Number(rps[1]) : undefined;
}

function rssKiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

function pmproxyPid(port: number): number | undefined {
  // The child is `deno run … main.ts serve`; find it by its listening port.
  const out = new Deno.Command("sh", {
    args: [
      "-c",
      `ss -ltnpH 'sport = :${port}' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2`,
    ],
  }).outputSync();
  const pid = Number(new TextDecoder().decode(out.stdout).trim());
  return pid > 0 ? pid : undefined;
}

async function idleTunnels(
  proxyPort: number,
  originPort: number,
  count: number,
): Promise<number | undefined> {
  const pid = pmproxyPid(proxyPort);
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
  await new Promise((r) => setTimeout(r, 500));
  const after = rssKiB(pid);
  for (const c of conns) c.close();
  return (after - before) / 1024;
}

// ---------------------------------------------------------------------------
const origin = startOrigin();
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
const work = await Deno.makeTempDir({ prefix: "pmproxy-bench-" });
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

  const bigUrl = `http://127.0.0.1:${origin.port}/bytes/${SIZE}`;
  const runs = quick ? 1 : 3;
  console.log(
    `bulk download of ${SIZE / 1024 / 1024} MiB (best of ${runs}, MiB/s):`,
  );
  const direct = await best(runs, () => curlSpeed(bigUrl, []));
  const bare = await best(
    runs,
    () => curlSpeed(bigUrl, ["-p", "-x", `http://127.0.0.1:${relay.port}`]),
  );
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
    row(
      `${p.name} plain HTTP`,
      await best(runs, () => curlSpeed(bigUrl, ["-x", url])),
    );
    row(
      `${p.name} CONNECT`,
      await best(runs, () => curlSpeed(bigUrl, ["-p", "-x", url])),
    );
  }

  const small = `http://127.0.0.1:${origin.port}/1k`;
  console.log("1 KiB requests on 32 kept-alive connections (wrk):");
  for (const p of proxies) {
    const k = await wrkRps(p.port, small);
    if (k) {
      console.log(
        `  ${p.name.padEnd(12)} ${
          k.rps.toFixed(0).padStart(7)
        } req/s   p99 ${k.p99}`,
      );
    } else console.log(`  ${p.name}: wrk not installed or failed, skipped`);
  }
  console.log("1 KiB requests, one new connection each (ab -c32):");
  const abDirect = await abRps(undefined, small);
  if (abDirect) {
    console.log(
      `  ${"direct".padEnd(12)} ${abDirect.toFixed(0).padStart(7)} req/s`,
    );
  }
  for (const p of proxies) {
    const r = await abRps(`127.0.0.1:${p.port}`, small);
    if (r && abDirect) {
      console.log(
        `  ${p.name.padEnd(12)} ${r.toFixed(0).padStart(7)} req/s   ×direct ${
          (r / abDirect).toFixed(2)
        }`,
      );
    } else console.log(`  ${p.name}: ab not installed or failed, skipped`);
  }

  const count = Number(values.tunnels ?? (quick ? 300 : 1000));
  const idle = await idleTunnels(server.proxyPort, origin.port, count);
  if (idle !== undefined) {
    console.log(
      `idle tunnels: pmproxy grew ${
        idle.toFixed(1)
      } MiB resident for ${count} tunnels`,
    );
  }
} finally {
  await server?.stop();
  await bareRule?.stop();
  for (const ref of references) await ref.stop();
  origin.close();
  relay.close();
  await Deno.remove(dir, { recursive: true });
  await Deno.remove(bareDir, { recursive: true });
  await Deno.remove(work, { recursive: true });
}
