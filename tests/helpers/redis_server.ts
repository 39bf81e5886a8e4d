/**
 * A real Redis server for tests: `startRedis()` runs `redis-server` on a
 * free loopback port with no persistence (`--save ''`), in a temporary
 * directory, optionally with a password and TLS (a certificate made by
 * the `openssl` command, signed by a test CA). It can be stopped and
 * started again on the same port, as an outage.
 *
 * ```ts
 * const missing = await redisMissing();   // a message, when not installed
 * Deno.test({ name: "…", ignore: missing !== undefined, fn: async () => {
 *   await using redis = await startRedis({ password: "s3cret" });
 *   // redis.url = "redis://:s3cret@127.0.0.1:PORT/0"
 *   await redis.stop();    // an outage
 *   await redis.start();   // back, same port
 * } });
 * ```
 *
 * Needs Debian's `redis-server` (`.ci/run` installs it).
 *
 * @module
 */
import { join } from "node:path";
import { accepts, freePort, makeTestCertificates } from "./local_servers.ts";

const REDIS_SERVER = "redis-server";
const INSTALL_HINT = "apt-get install -y --no-install-recommends redis-server";

/** Options of {@link startRedis}. */
export interface RedisOptions {
  /** `requirepass`: the URL carries it as `:PASSWORD@`. */
  password?: string;
  /**
   * Serve TLS only (`--tls-port`), with a certificate for 127.0.0.1 signed
   * by a test CA (`caFile`); the URL is then `rediss://…?ca=FILE`.
   */
  tls?: boolean;
}

/** A running (or stopped) test Redis. */
export interface RedisServer extends AsyncDisposable {
  port: number;
  /** `redis://[:password@]127.0.0.1:PORT/0` (`rediss://…?ca=…` with tls). */
  url: string;
  /** The test CA's PEM file, with tls. */
  caFile?: string;
  /**
   * Stops the server (the port is free afterwards). With `keepData`, it
   * saves its data first (`SHUTDOWN SAVE`), as a Redis with persistence
   * does, and the next `start` loads it; without, it comes back empty.
   */
  stop(options?: { keepData?: boolean }): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  /** Runs `redis-cli` against it with these arguments; answers stdout. */
  cli(...args: string[]): Promise<string>;
  /** Stops it and removes its directory. */
  close(): Promise<void>;
}

/**
 * Undefined when `redis-server` can run here; else the message a skipped
 * test prints.
 */
export async function redisMissing(): Promise<string | undefined> {
  try {
    const { success } = await new Deno.Command(REDIS_SERVER, {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).output();
    if (success) return undefined;
  } catch {
    // not installed
  }
  return `skipped: redis-server is not installed (${INSTALL_HINT}); .ci/run installs it, so CI never skips these`;
}

async function run(cmd: string, args: string[]): Promise<string> {
  const { code, stdout, stderr } = await new Deno.Command(cmd, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  if (code !== 0) {
    throw new Error(
      `${cmd} ${args.join(" ")} exited with ${code}: ${dec.decode(stderr)}`,
    );
  }
  return dec.decode(stdout);
}

/** Starts a private redis-server; see the module documentation. */
export async function startRedis(
  options: RedisOptions = {},
): Promise<RedisServer> {
  const missing = await redisMissing();
  if (missing) throw new Error(missing);
  const dir = await Deno.makeTempDir({ prefix: "pmproxy-redis-" });
  const tls = options.tls === true;
  if (tls) await makeTestCertificates(dir);
  let port = freePort();
  const args = () => [
    "--save",
    "",
    "--appendonly",
    "no",
    "--bind",
    "127.0.0.1",
    "--dir",
    dir,
    "--logfile",
    join(dir, "redis.log"),
    "--daemonize",
    "no",
    ...(options.password ? ["--requirepass", options.password] : []),
    ...(tls
      ? [
        "--port",
        "0",
        "--tls-port",
        String(port),
        "--tls-cert-file",
        join(dir, "server.pem"),
        "--tls-key-file",
        join(dir, "server.key"),
        "--tls-ca-cert-file",
        join(dir, "ca.pem"),
        "--tls-auth-clients",
        "no",
      ]
      : ["--port", String(port)]),
  ];
  let child: Deno.ChildProcess | undefined;
  const spawn = async (): Promise<boolean> => {
    const c = new Deno.Command(REDIS_SERVER, {
      args: args(),
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    let exited = false;
    c.status.then(() => exited = true);
    for (let i = 0; i < 200 && !exited; i++) {
      if (await accepts(port)) {
        child = c;
        return true;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    if (!exited) c.kill("SIGKILL");
    await c.status;
    return false;
  };
  let started = false;
  // A free port can be taken between choosing and binding it: retry.
  for (let attempt = 0; attempt < 5 && !started; attempt++) {
    if (attempt > 0) port = freePort();
    started = await spawn();
  }
  if (!started) {
    const log = await Deno.readTextFile(join(dir, "redis.log")).catch(() => "");
    await Deno.remove(dir, { recursive: true });
    throw new Error(`redis-server did not start:\n${log}`);
  }
  const auth = options.password
    ? `:${encodeURIComponent(options.password)}@`
    : "";
  const caFile = tls ? join(dir, "ca.pem") : undefined;
  const url = tls
    ? `rediss://${auth}127.0.0.1:${port}/0?ca=${encodeURIComponent(caFile!)}`
    : `redis://${auth}127.0.0.1:${port}/0`;
  const cli = (...cliArgs: string[]) =>
    run("redis-cli", [
      "-h",
      "127.0.0.1",
      "-p",
      String(port),
      ...(tls ? ["--tls", "--cacert", caFile!] : []),
      ...(options.password
        ? ["--no-auth-warning", "-a", options.password]
        : []),
      ...cliArgs,
    ]);
  const stop = async (how: { keepData?: boolean } = {}) => {
    const c = child;
    child = undefined;
    if (!c) return;
    if (how.keepData) {
      // The server closes the connection as it exits: no answer to wait for.
      await cli("SHUTDOWN", "SAVE").catch(() => "");
    } else {
      await Deno.remove(join(dir, "dump.rdb")).catch(() => {});
      try {
        c.kill("SIGTERM");
      } catch { /* already gone */ }
    }
    await c.status;
  };
  const start = async () => {
    if (child) return;
    if (!(await spawn())) {
      throw new Error(`redis-server did not start again on port ${port}`);
    }
  };
  let closed: Promise<void> | undefined;
  const close = () =>
    closed ??= (async () => {
      await stop();
      await Deno.remove(dir, { recursive: true });
    })();
  return {
    port,
    url,
    caFile,
    stop,
    start,
    cli,
    close,
    [Symbol.asyncDispose]: close,
  };
}
