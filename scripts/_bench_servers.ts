/**
 * The servers `deno task bench` measures against: the origin (nginx when
 * installed), the upload sink and the bare Deno relay (the platform's
 * ceiling, `_bench_relay.ts`), each in a process of its own, and the
 * reference proxies from Debian (squid, tinyproxy), each on a free port with
 * a private configuration in a temporary directory.
 *
 * @module
 */
import { join } from "node:path";
import { freePort } from "../tests/helpers/local_servers.ts";
import { PMPROXY_TASK } from "../tests/helpers/pmproxy_process.ts";

/** True when `cmd` is on the PATH. */
export function has(cmd: string): boolean {
  return new Deno.Command("sh", {
    args: ["-c", `command -v ${cmd}`],
    stdout: "null",
    stderr: "null",
  })
    .outputSync().success;
}

// ---------------------------------------------------------------------------
// Origins. nginx when installed: the reference figures were taken
// with it, and it leaves the two cores to the proxies. Otherwise a raw Deno
// origin in this process, which answers `/bytes/N` and `/1k` from one
// reused buffer.
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

/** Where the bench downloads from. */
export interface Origin {
  name: string;
  port: number;
  close(): Promise<void>;
}

function startDenoOrigin(): Origin {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    try {
      for await (const conn of listener) serveOrigin(conn);
    } catch { /* closed */ }
  })();
  return {
    name: "Deno origin (in the bench process)",
    port: (listener.addr as Deno.NetAddr).port,
    close: () => Promise.resolve(listener.close()),
  };
}

/**
 * nginx serving `/1k` and `/bytes/<size>` (a sparse file) from `tmp`, one
 * worker, no access log; undefined when nginx is not installed or does not
 * start.
 */
async function startNginx(
  tmp: string,
  size: number,
): Promise<Origin | undefined> {
  if (!has("nginx")) return undefined;
  const root = join(tmp, "nginx");
  await Deno.mkdir(join(root, "www", "bytes"), { recursive: true });
  // Started as root, nginx's workers run as an unprivileged user, who must
  // be able to read the files.
  for (const d of [tmp, root, join(root, "www"), join(root, "www", "bytes")]) {
    await Deno.chmod(d, 0o755);
  }
  await Deno.writeTextFile(join(root, "www", "1k"), "x".repeat(1024));
  const big = await Deno.open(join(root, "www", "bytes", String(size)), {
    create: true,
    write: true,
  });
  await big.truncate(size);
  big.close();
  const port = freePort();
  const temp = (name: string) => `${name}_temp_path ${join(root, name)};`;
  await Deno.writeTextFile(
    join(root, "nginx.conf"),
    [
      "worker_processes 1;",
      // Enough for the bench's idle tunnels (20,000 with --tunnels 20000).
      "worker_rlimit_nofile 65536;",
      "daemon off;",
      `pid ${join(root, "nginx.pid")};`,
      `error_log ${join(root, "error.log")};`,
      "events { worker_connections 32768; }",
      "http {",
      "  access_log off;",
      "  sendfile on;",
      "  tcp_nopush on;",
      "  keepalive_requests 10000000;",
      `  ${temp("client_body")} ${temp("proxy")} ${temp("fastcgi")}`,
      `  ${temp("uwsgi")} ${temp("scgi")}`,
      `  server { listen 127.0.0.1:${port}; root ${join(root, "www")}; }`,
      "}",
      "",
    ].join("\n"),
  );
  const child = new Deno.Command("nginx", {
    args: ["-c", join(root, "nginx.conf"), "-p", root],
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
    name: "nginx",
    port,
    close: async () => {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}

/** nginx when it can run here, else the Deno origin. */
export async function startOrigin(tmp: string, size: number): Promise<Origin> {
  return (await startNginx(tmp, size)) ?? startDenoOrigin();
}

/** A server of the bench in a process of its own (it prints its port). */
export interface Child extends Origin {
  pid: number;
}

/**
 * The upload rows' origin (`_bench_sink.ts`): a process that takes request
 * bodies and throws them away.
 */
export function startSink(): Promise<Child> {
  return startChild("_bench_sink.ts", "Deno sink (its own process)");
}

/**
 * The bare Deno relay (`_bench_relay.ts`), the platform's ceiling: CONNECT,
 * or a plain kept-alive connection spliced to the origin of its first
 * request.
 */
export function startBareRelay(): Promise<Child> {
  return startChild("_bench_relay.ts", "bare Deno relay");
}

/**
 * The floor of resident memory at start (`_bench_floor.ts`): a listener, an
 * HTTPS server with the certificate in `dir`, a Deno KV file there, a timer,
 * and with `npm` the npm package pmproxy reads its configuration with; run
 * with the flags and environment of `deno task pmproxy`, as the bench runs
 * pmproxy.
 */
export function startFloor(dir: string, npm: boolean): Promise<Child> {
  return startChild(
    "_bench_floor.ts",
    npm ? "Deno floor + npm" : "Deno floor",
    [
      ...PMPROXY_TASK.flags,
      "--config",
      new URL("../deno.json", import.meta.url).pathname,
    ],
    npm ? [dir, "--npm"] : [dir],
    PMPROXY_TASK.env,
  );
}

/** Runs `script` with `deno run` and `denoArgs`, until it prints its port. */
async function startChild(
  script: string,
  name: string,
  denoArgs: string[] = ["-A"],
  args: string[] = [],
  env: Record<string, string> = {},
): Promise<Child> {
  const child = new Deno.Command("deno", {
    args: [
      "run",
      ...denoArgs,
      new URL(`./${script}`, import.meta.url).pathname,
      ...args,
    ],
    env,
    stdout: "piped",
    stderr: "null",
    stdin: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!/listening on (\d+)/.test(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${script} did not start`);
    text += value;
  }
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  return {
    name,
    pid: child.pid,
    port: Number(/listening on (\d+)/.exec(text)![1]),
    close: async () => {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}

// ---------------------------------------------------------------------------
// Reference proxies from Debian, started on free ports with private configs.
/** A reference proxy started for the bench. */
export interface Reference {
  name: string;
  port: number;
  stop(): Promise<void>;
}

/** True once something accepts connections on `port` (10 s at most). */
export async function waitPort(port: number): Promise<boolean> {
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

/** Starts squid or tinyproxy on a free port; undefined when it cannot. */
export async function startReference(
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
