/**
 * pmproxy's command line: `serve` (the default) runs the proxy and the HTTPS
 * API; `check-config` validates the configuration; the client commands
 * (`discover`, `login`, `logout`, `logged-users`, `status`, `usage`,
 * `reset`, `show`) talk to a running server's API.
 *
 * ```sh
 * pmproxy                          # serve with $HOME/.config/pmproxy
 * pmproxy serve --config-dir /etc/pmproxy
 * pmproxy check-config --config-dir /etc/pmproxy
 * pmproxy login -m sessions https://gateway:4443 user0 pass0
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import {
  openStdoutLog,
  openSyslog,
  proxyConfigFrom,
  startProxy,
} from "./proxy/mod.ts";
import {
  checkManagersFile,
  ConfigError,
  exportState,
  hashPassword,
  importState,
  type ListenAddress,
  openGateway,
  openStateStore,
  readTomlFile,
  stateConfigFrom,
  textLines,
  withCaptivePortal,
  writeDefaultManagersFile,
} from "./managers/mod.ts";
import { apiConfigFrom } from "./api/config.ts";
import { startApi } from "./api/mod.ts";
import { CLIENT_COMMANDS, runClientCommand } from "./api/client_commands.ts";

// Registered first thing: without signal listeners Deno itself can panic
// when file descriptors run out (platform facts), and `serve` must save
// accounting on SIGINT/SIGTERM. Other commands just end; a second signal
// during shutdown ends at once.
const stopRequested = Promise.withResolvers<string>();
let serving = false;
let stopping = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => {
    if (!serving || stopping) Deno.exit(130);
    stopping = true;
    stopRequested.resolve(signal);
  });
}

const VERSION = "0.1.0";

const USAGE =
  `pmproxy ${VERSION}: an HTTP/HTTPS gateway proxy with rules, sessions and quotas

Usage:
  pmproxy [serve] [--config-dir DIR] [--state PATH|URL]
      Runs the proxy and the HTTPS API. With no configuration in DIR
      (default $HOME/.config/pmproxy) a safe default is written first.
      --state: where sessions and consumption are kept (default
      DIR/state.kv; redis://host:6379/0 to share them between gateways;
      [state] url in server.toml; --kv is its older name).
  pmproxy check-config [--config-dir DIR]
      Validates server.toml and managers.toml without starting.
  pmproxy state export [--config-dir DIR] [--state PATH|URL] > state.jsonl
  pmproxy state import [--config-dir DIR] [--state PATH|URL] [--merge] < state.jsonl
      Moves sessions, consumption, last resets and the signing key between
      stores (a Deno KV file and Redis, either way) as JSON lines. Import
      refuses a store that already holds state unless --merge.
  pmproxy hash-password
      Reads a password on standard input, prints its hash for mapDB.userPass.
  pmproxy discover|d [URL]
  pmproxy login|l -m SESSIONMGR URL USER PASS
  pmproxy logout|o
  pmproxy logged-users|lu [-m MGR]
  pmproxy status|s [-m MGR] [USER]
  pmproxy usage|u [-m MGR] [--user USER | --all] [--since DATE] [--by hour|day|month] [--csv]
  pmproxy reset|r USER
  pmproxy show|sh MGR
      Client commands: talk to a server's API (see README.md).
`;

const DEFAULT_SERVER_TOML =
  `# pmproxy server configuration (the original's format).
# Durations are Go-style ("30s", "5m", "1h30m"); paths are relative to this directory.

[api]
  httpsCert = "cert.pem"
  httpsKey = "key.pem"
  webStaticFilesDir = "staticFiles"
  # How often download consumption is written to the state store.
  persistInterval = "1m"
  [api.server]
    addr = ":4443"
    readTimeout = "30s"
    writeTimeout = "20s"

[proxy]
  dialTimeout = "10s"
  [proxy.server]
    addr = ":8080"
    readTimeout = "30s"
    writeTimeout = "20s"
`;

function defaultConfigDir(): string {
  const home = Deno.env.get("HOME") ?? ".";
  return join(home, ".config", "pmproxy");
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** Writes the default configuration files that are missing; never overwrites. */
async function ensureConfig(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const serverPath = join(dir, "server.toml");
  if (!(await exists(serverPath))) {
    await Deno.writeTextFile(serverPath, DEFAULT_SERVER_TOML);
    console.log(`pmproxy: wrote the default ${serverPath}`);
  }
  const managersPath = join(dir, "managers.toml");
  if (!(await exists(managersPath))) {
    const admin = await writeDefaultManagersFile(managersPath);
    console.log(
      `pmproxy: wrote the default ${managersPath} (login required, daily quota)`,
    );
    console.log(
      `pmproxy: administrator account: user "${admin.user}", password "${admin.password}"` +
        ` (shown once; stored hashed)`,
    );
  }
}

async function readServerConfig(dir: string) {
  const server = await readTomlFile(join(dir, "server.toml"));
  for (const key of Object.keys(server.data)) {
    if (key !== "api" && key !== "proxy" && key !== "state") {
      throw new ConfigError(
        { file: server.file, line: server.lineOf([key]) },
        `unknown section "${key}": server.toml has [api], [proxy] and [state]`,
      );
    }
  }
  const site = { file: server.file, configDir: dir, lineOf: server.lineOf };
  return {
    api: apiConfigFrom(server.data.api ?? {}, site),
    proxy: proxyConfigFrom(server.data.proxy ?? {}, site),
    state: stateConfigFrom(server.data.state, site),
  };
}

/**
 * Where the proxy listens, for the open-rule check of managers.toml: an
 * empty host when `addr` named none (every interface).
 */
function proxyListenOf(
  proxy: { hostname: string; port: number; allInterfaces: boolean },
): ListenAddress {
  return {
    hostname: proxy.allInterfaces ? "" : proxy.hostname,
    port: proxy.port,
  };
}

async function serve(dir: string, state: string | undefined): Promise<number> {
  serving = true;
  await ensureConfig(dir);
  const config = await readServerConfig(dir);
  const gateway = await openGateway(join(dir, "managers.toml"), {
    state: state ?? config.state.url ?? join(dir, "state.kv"),
    persistIntervalMs: config.api.persistIntervalMs,
    syncIntervalMs: config.state.syncIntervalMs,
    history: config.state.history,
    loginUrl: config.api.publicUrl,
    proxyListen: proxyListenOf(config.proxy),
  });
  for (const warning of gateway.warnings) {
    console.warn(`pmproxy: warning: ${warning}`);
  }
  // The access log (Squid native format) goes to syslog when managers.toml
  // names a syslog server, else to standard output.
  const syslogAddr = gateway.config.syslogAddr;
  const accessLog = syslogAddr ? openSyslog(syslogAddr) : openStdoutLog();
  const behind = new Map<string, string>();
  // The PAC file names the proxy's port; the proxy starts after the API
  // (its captive-portal exception needs the API's port), so the API reads
  // the port when a PAC is asked for.
  const proxyListening: { port?: number } = {};
  const api = await startApi(config.api, gateway, {
    clientIpOf: (peer) => behind.get(`${peer.hostname}|${peer.port}`),
    proxyPort: () => proxyListening.port,
  });
  // A browser that sends everything through the proxy must reach the
  // login page before it is logged in.
  const policy = withCaptivePortal(gateway, {
    apiPort: api.addr.port,
    publicUrl: config.api.publicUrl,
    behind,
  });
  const proxy = await startProxy(config.proxy, policy, {
    loginUrl: config.api.publicUrl,
    accessLog,
  });
  proxyListening.port = proxy.addr.port;
  console.log(
    `pmproxy: proxy listening on ${proxy.addr.hostname}:${proxy.addr.port}`,
  );
  console.log(
    `pmproxy: API listening on ${api.addr.hostname}:${api.addr.port} (${api.url})`,
  );
  const signal = await stopRequested.promise;
  console.log(`pmproxy: ${signal} received, saving state and stopping`);
  await proxy.close();
  await api.close();
  await gateway.close();
  accessLog.close();
  console.log("pmproxy: stopped");
  return 0;
}

async function checkConfig(dir: string): Promise<number> {
  const config = await readServerConfig(dir);
  const { warnings } = await checkManagersFile(join(dir, "managers.toml"), {
    proxyListen: proxyListenOf(config.proxy),
  });
  for (const warning of warnings) console.warn(`pmproxy: warning: ${warning}`);
  console.log(`pmproxy: the configuration in ${dir} is valid`);
  return 0;
}

/**
 * The state store of `state export|import`: the flag, else server.toml's
 * [state] url when the file exists, else DIR/state.kv.
 */
async function stateLocation(
  dir: string,
  flag: string | undefined,
): Promise<string> {
  if (flag !== undefined) return flag;
  if (await exists(join(dir, "server.toml"))) {
    const url = (await readServerConfig(dir)).state.url;
    if (url !== undefined) return url;
  }
  return join(dir, "state.kv");
}

/** `pmproxy state export|import`: see USAGE and managers/state/migrate.ts. */
async function stateCommand(
  action: string | undefined,
  dir: string,
  options: { state?: string; merge: boolean },
): Promise<number> {
  if (action !== "export" && action !== "import") {
    console.error(
      `pmproxy: state needs "export" or "import"${
        action === undefined ? "" : `, not "${action}"`
      }\n\n${USAGE}`,
    );
    return 2;
  }
  const location = await stateLocation(dir, options.state);
  const isUrl = /^[a-z][a-z0-9+.-]*:\/\//i.test(location);
  // Opening a Deno KV file makes it: an export must not make an empty one.
  if (action === "export" && !isUrl && !(await exists(location))) {
    console.error(
      `pmproxy: state export: there is no state store at ${location}; give --state PATH|URL or --config-dir DIR`,
    );
    return 1;
  }
  const store = await openStateStore(location);
  try {
    if (action === "export") {
      const out = Deno.stdout.writable.getWriter();
      const enc = new TextEncoder();
      let lines = 0;
      let chunk = "";
      for await (const line of exportState(store)) {
        chunk += JSON.stringify(line) + "\n";
        lines++;
        if (chunk.length > 64 * 1024) {
          await out.write(enc.encode(chunk));
          chunk = "";
        }
      }
      if (chunk !== "") await out.write(enc.encode(chunk));
      out.releaseLock();
      console.error(
        `pmproxy: exported ${lines} lines from ${store.description}`,
      );
      return 0;
    }
    const summary = await importState(store, textLines(Deno.stdin.readable), {
      merge: options.merge,
    });
    for (const warning of summary.warnings) {
      console.warn(`pmproxy: warning: ${warning}`);
    }
    console.error(
      `pmproxy: imported into ${store.description}: signing key ${summary.signingKey}, ${summary.lastResets} last resets, ${summary.counters} counters, ${summary.sessions} sessions`,
    );
    return 0;
  } finally {
    await store.close();
  }
}

async function printPasswordHash(): Promise<number> {
  const input = new TextDecoder().decode(
    await new Response(Deno.stdin.readable).arrayBuffer(),
  );
  const password = input.replace(/\r?\n$/, "");
  if (password === "") {
    console.error(
      "pmproxy: hash-password: give the password on standard input",
    );
    return 2;
  }
  console.log(await hashPassword(password));
  return 0;
}

async function main(args: string[]): Promise<number> {
  if (args.length > 0 && CLIENT_COMMANDS.includes(args[0])) {
    return await runClientCommand(args);
  }
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      "config-dir": { type: "string" },
      kv: { type: "string" },
      state: { type: "string" },
      merge: { type: "boolean" },
      help: { type: "boolean", short: "h" },
      version: { type: "boolean" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values.version) {
    console.log(`pmproxy ${VERSION}`);
    return 0;
  }
  const dir = values["config-dir"] ?? defaultConfigDir();
  const command = positionals[0] ?? "serve";
  // `state` takes its action as a second word.
  const words = command === "state" ? 2 : 1;
  if (positionals.length > words) {
    console.error(
      `pmproxy: unexpected argument "${positionals[words]}"\n\n${USAGE}`,
    );
    return 2;
  }
  if (values.kv !== undefined && values.state !== undefined) {
    console.error(
      `pmproxy: give the state store once: --state (or its older name --kv), not both`,
    );
    return 2;
  }
  if (values.merge && command !== "state") {
    console.error(`pmproxy: --merge is for "state import"\n\n${USAGE}`);
    return 2;
  }
  switch (command) {
    case "serve":
      return await serve(dir, values.state ?? values.kv);
    case "state":
      return await stateCommand(positionals[1], dir, {
        state: values.state ?? values.kv,
        merge: values.merge === true,
      });
    case "check-config":
      return await checkConfig(dir);
    case "hash-password":
      return await printPasswordHash();
    default:
      console.error(`pmproxy: unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

try {
  Deno.exit(await main(Deno.args));
} catch (e) {
  if (e instanceof ConfigError) {
    console.error(`pmproxy: configuration error: ${e.message}`);
  } else if (
    e instanceof TypeError &&
    (e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")
  ) {
    console.error(`pmproxy: ${e.message}\n\n${USAGE}`);
    Deno.exit(2);
  } else {
    console.error(`pmproxy: ${e instanceof Error ? e.message : String(e)}`);
  }
  Deno.exit(1);
}
