/**
 * Runs the real pmproxy executable's command line as a child process: from
 * source (`main.ts`), or from the bundle named by `PMPROXY_BUNDLE` (what
 * `deno task bundle` writes), so the same tests exercise what ships.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { join } from "node:path";

const REPO = fileURLToPath(new URL("../../", import.meta.url));

/**
 * deno.json's `pmproxy` task, `DENO_NO_UPDATE_CHECK=1 deno run -A
 * --unstable-kv --no-code-cache main.ts`: its environment and the flags of
 * its `deno run`, so that tests and benches run pmproxy as an admin's `deno
 * task pmproxy` does.
 */
export const PMPROXY_TASK: { env: Record<string, string>; flags: string[] } =
  (() => {
    const config = JSON.parse(Deno.readTextFileSync(join(REPO, "deno.json")));
    const words = String(config.tasks.pmproxy).split(/\s+/);
    const deno = words.indexOf("deno");
    const env = Object.fromEntries(
      words.slice(0, deno).map((w) => w.split("=", 2)),
    );
    const flags = words.slice(deno + 2, words.indexOf("main.ts"));
    return { env, flags };
  })();

/**
 * The `deno` arguments that run pmproxy with `args`; `denoArgs` go to
 * `deno run` itself (`--inspect`, `--v8-flags=…`).
 */
function entryArgs(args: string[], denoArgs: string[] = []): string[] {
  const bundle = Deno.env.get("PMPROXY_BUNDLE");
  if (bundle) {
    return [
      "run",
      ...PMPROXY_TASK.flags,
      ...denoArgs,
      "--no-config",
      bundle,
      ...args,
    ];
  }
  return [
    "run",
    ...PMPROXY_TASK.flags,
    ...denoArgs,
    "--config",
    join(REPO, "deno.json"),
    join(REPO, "main.ts"),
    ...args,
  ];
}

/** A running `pmproxy serve`. */
export interface Pmproxy {
  proxyPort: number;
  apiPort: number;
  apiUrl: string;
  /** Its process id. */
  pid: number;
  /** Everything printed so far (stdout and stderr, as it came). */
  output(): string;
  /** What it printed on standard output so far (the access log by default). */
  stdout(): string;
  /** What it printed on standard error so far (start-up, warnings, errors). */
  stderr(): string;
  /** Sends `signal` without waiting (nothing once it has exited). */
  signal(signal: Deno.Signal): void;
  /** Settles with the exit code when it has exited and its output is read. */
  exited: Promise<number>;
  /** Stops it with SIGTERM (or `signal`) and waits; answers the exit code. */
  stop(signal?: Deno.Signal): Promise<number>;
}

/** Server config on loopback with ports chosen by the system. */
export function loopbackServerToml(
  extra: {
    persistInterval?: string;
    proxy?: string;
    api?: string;
    /** Lines of `[proxy.server]` (limits, timeouts). */
    proxyServer?: string;
    /** Lines after everything else (a `[state]` table). */
    tail?: string;
    /**
     * The API's port, when its public URL must be the one it listens on
     * (a browser follows the pages' links); else a free one, found after.
     */
    apiPort?: number;
    /** The proxy's `[proxy.server] addr` (default `127.0.0.1:0`). */
    proxyAddr?: string;
  } = {},
): string {
  return `[api]
  httpsCert = "cert.pem"
  httpsKey = "key.pem"
  persistInterval = "${extra.persistInterval ?? "1s"}"
  publicUrl = "https://127.0.0.1:${extra.apiPort ?? 4443}/"
  ${extra.api ?? ""}
  [api.server]
    addr = "127.0.0.1:${extra.apiPort ?? 0}"

[proxy]
  dialTimeout = "2s"
  # Test origins listen on free ports, so tunnels must be allowed to any port.
  connectPorts = "*"
  ${extra.proxy ?? ""}
  [proxy.server]
    addr = "${extra.proxyAddr ?? "127.0.0.1:0"}"
    ${extra.proxyServer ?? ""}
${extra.tail ?? ""}
`;
}

/**
 * Starts `pmproxy serve --config-dir dir` and waits until both servers
 * listen (it prints their addresses). Throws with the output if it exits.
 */
export async function startPmproxy(
  dir: string,
  options: {
    env?: Record<string, string>;
    args?: string[];
    /** Arguments of `deno run` itself (`--inspect=127.0.0.1:0`, `--v8-flags=…`). */
    denoArgs?: string[];
    timeoutMs?: number;
  } = {},
): Promise<Pmproxy> {
  const child = new Deno.Command("deno", {
    args: entryArgs(
      ["serve", "--config-dir", dir, ...(options.args ?? [])],
      options.denoArgs,
    ),
    env: { ...PMPROXY_TASK.env, ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const streams = { stdout: "", stderr: "" };
  const pump = async (
    stream: ReadableStream<Uint8Array>,
    which: "stdout" | "stderr",
  ) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      const part = decoder.decode(chunk, { stream: true });
      text += part;
      streams[which] += part;
    }
  };
  const pumps = Promise.all([
    pump(child.stdout, "stdout"),
    pump(child.stderr, "stderr"),
  ]);
  let exited: Deno.CommandStatus | undefined;
  const status = child.status.then((s) => (exited = s));
  const done = Promise.all([status, pumps]).then(([s]) => s.code);
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  for (;;) {
    // Start-up lines go to standard error, never among the access log's.
    const proxy = /proxy listening on [^\s]*:(\d+)/.exec(streams.stderr);
    const api = /API listening on [^\s]*:(\d+) \(([^)]*)\)/.exec(
      streams.stderr,
    );
    if (proxy && api) {
      const signal = (sig: Deno.Signal) => {
        try {
          if (!exited) child.kill(sig);
        } catch {
          // It has just exited.
        }
      };
      return {
        proxyPort: Number(proxy[1]),
        apiPort: Number(api[1]),
        apiUrl: `https://127.0.0.1:${api[1]}`,
        pid: child.pid,
        output: () => text,
        stdout: () => streams.stdout,
        stderr: () => streams.stderr,
        signal,
        exited: done,
        stop: async (sig: Deno.Signal = "SIGTERM") => {
          signal(sig);
          return await done;
        },
      };
    }
    if (exited || Date.now() > deadline) {
      if (!exited) child.kill("SIGKILL");
      await status;
      await pumps;
      throw new Error(`pmproxy did not start (exit ${exited?.code}):\n${text}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Runs a pmproxy command to its end (e.g. a client command). */
export async function runPmproxy(
  args: string[],
  options: { cwd?: string; env?: Record<string, string>; stdin?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command("deno", {
    args: entryArgs(args),
    cwd: options.cwd,
    env: { ...PMPROXY_TASK.env, ...options.env },
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const out = await child.output();
  const decoder = new TextDecoder();
  return {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
}
