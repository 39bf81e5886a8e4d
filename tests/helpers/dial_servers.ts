/**
 * Servers for the dialer tests: small TCP servers written here (echo, peer
 * reporter, silent parent, fake CONNECT parent) and the real parents
 * `tinyproxy` and `microsocks` started as child processes on free ports.
 *
 * @module
 */
import { freePort } from "./local_servers.ts";

/** A running test server. */
export interface TestServer {
  port: number;
  /** Stops it and closes every connection it holds. */
  close(): Promise<void>;
}

/**
 * A TCP server on `hostname` (default 127.0.0.1) running `handle` for each
 * connection; errors in handlers are ignored (the client sees the close).
 */
export function startTcpServer(
  handle: (conn: Deno.TcpConn) => Promise<void>,
  options: { hostname?: string } = {},
): TestServer {
  const listener = Deno.listen({
    hostname: options.hostname ?? "127.0.0.1",
    port: 0,
  });
  const conns = new Set<Deno.TcpConn>();
  const tasks = new Set<Promise<void>>();
  const accepting = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      const task = handle(conn).catch(() => {}).finally(() => {
        conns.delete(conn);
        try {
          conn.close();
        } catch { /* closed by the handler */ }
      });
      tasks.add(task);
      task.finally(() => tasks.delete(task));
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* already closed */ }
      }
      await accepting;
      await Promise.all([...tasks]);
    },
  };
}

/** Echoes every byte back; sends `greeting` first when given; half-closes after the client's FIN. */
export function startEcho(
  options: { greeting?: string; hostname?: string } = {},
): TestServer {
  return startTcpServer(async (conn) => {
    if (options.greeting) {
      await conn.write(new TextEncoder().encode(options.greeting));
    }
    const buf = new Uint8Array(64 * 1024);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      let at = 0;
      while (at < n) at += await conn.write(buf.subarray(at, n));
    }
    await conn.closeWrite();
  }, options);
}

/** Writes the client's address (`ip\n`) and closes. */
export function startPeerReporter(
  options: { hostname?: string } = {},
): TestServer {
  return startTcpServer(async (conn) => {
    const peer = conn.remoteAddr as Deno.NetAddr;
    await conn.write(new TextEncoder().encode(`${peer.hostname}\n`));
  }, options);
}

/** Accepts, reads whatever comes, and never answers. */
export function startSilent(): TestServer {
  return startTcpServer(async (conn) => {
    const buf = new Uint8Array(4096);
    while (await conn.read(buf) !== null) { /* say nothing */ }
  });
}

/** A parent that answers any head with `reply` in one write, then echoes. */
export function startScriptedParent(reply: string): TestServer {
  return startTcpServer(async (conn) => {
    const buf = new Uint8Array(4096);
    let seen = "";
    while (!seen.includes("\r\n\r\n")) {
      const n = await conn.read(buf);
      if (n === null) return;
      seen += new TextDecoder().decode(buf.subarray(0, n));
    }
    await conn.write(new TextEncoder().encode(reply));
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      await conn.write(buf.subarray(0, n));
    }
  });
}

/** A running parent proxy process. */
export interface ParentProcess {
  port: number;
  /** Kills the process and removes its files. */
  stop(): Promise<void>;
}

/** Throws a message naming the apt package when `binary` is not installed. */
export async function requireBinary(binary: string, pkg = binary) {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin").split(":")) {
    try {
      await Deno.stat(`${dir}/${binary}`);
      return;
    } catch { /* look further */ }
  }
  throw new Error(
    `${binary} is not installed; these tests need it as a real parent proxy: run apt-get install ${pkg}`,
  );
}

async function waitAccepting(
  port: number,
  child: Deno.ChildProcess,
  name: string,
) {
  let exited = false;
  child.status.then(() => exited = true);
  for (let i = 0; i < 100; i++) {
    if (exited) break;
    try {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      c.close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  try {
    child.kill("SIGKILL");
  } catch { /* already gone */ }
  const out = await child.output();
  const text = new TextDecoder().decode(out.stderr) +
    new TextDecoder().decode(out.stdout);
  throw new Error(`${name} did not accept on 127.0.0.1:${port}: ${text}`);
}

async function stopChild(child: Deno.ChildProcess) {
  try {
    child.kill("SIGTERM");
  } catch { /* already gone */ }
  await child.output();
}

/** tinyproxy on 127.0.0.1 allowing 127.0.0.1, with Basic auth when `auth` is given. */
export async function startTinyproxy(
  options: { auth?: { user: string; pass: string } } = {},
): Promise<ParentProcess> {
  await requireBinary("tinyproxy");
  const dir = await Deno.makeTempDir({ prefix: "dial_tinyproxy_" });
  const port = freePort();
  const lines = [
    `Port ${port}`,
    `Listen 127.0.0.1`,
    `Timeout 30`,
    `Allow 127.0.0.1`,
    `MaxClients 20`,
    `PidFile "${dir}/tinyproxy.pid"`,
    `LogFile "${dir}/tinyproxy.log"`,
    `LogLevel Info`,
  ];
  if (options.auth) {
    lines.push(`BasicAuth ${options.auth.user} ${options.auth.pass}`);
  }
  await Deno.writeTextFile(`${dir}/tinyproxy.conf`, lines.join("\n") + "\n");
  const child = new Deno.Command("tinyproxy", {
    args: ["-d", "-c", `${dir}/tinyproxy.conf`],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  try {
    await waitAccepting(port, child, "tinyproxy");
  } catch (e) {
    await Deno.remove(dir, { recursive: true });
    throw e;
  }
  return {
    port,
    async stop() {
      await stopChild(child);
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** microsocks on 127.0.0.1, requiring user/password when `auth` is given. */
export async function startMicrosocks(
  options: { auth?: { user: string; pass: string } } = {},
): Promise<ParentProcess> {
  await requireBinary("microsocks");
  const port = freePort();
  const args = ["-i", "127.0.0.1", "-p", String(port)];
  if (options.auth) {
    args.push("-u", options.auth.user, "-P", options.auth.pass);
  }
  const child = new Deno.Command("microsocks", {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  await waitAccepting(port, child, "microsocks");
  return { port, stop: () => stopChild(child) };
}

/**
 * A listener whose accept queue is full, so that a new connect hangs (the
 * kernel drops the SYN): the way to test a connect timeout on loopback.
 * Fills the queue with connections it holds until one does not complete
 * within 100 ms (at most 4,000 tries).
 */
export async function startUnreachable(): Promise<TestServer> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const held: Deno.Conn[] = [];
  const close = () => {
    for (const c of held) c.close();
    listener.close();
    return Promise.resolve();
  };
  for (let i = 0; i < 4000; i++) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), 100);
    try {
      held.push(
        await Deno.connect({
          hostname: "127.0.0.1",
          port,
          signal: abort.signal,
        }),
      );
    } catch {
      if (abort.signal.aborted) return { port, close };
      throw new Error("filling the accept queue failed");
    } finally {
      clearTimeout(timer);
    }
  }
  await close();
  throw new Error("the accept queue never filled after 4000 connections");
}
