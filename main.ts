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
 * pmproxy --version
 * ```
 *
 * While serving, the access log goes to standard output (or a file, or
 * syslog: managers.toml); start-up messages, warnings and errors go to
 * standard error. Signals: SIGTERM or SIGINT stops gracefully (a second
 * one stops at once), SIGHUP reloads ({@link onReload}), SIGUSR1 opens the
 * access log file again (logrotate).
 *
 * @module
 */
import {
  finishedRequests,
  type LogSink,
  openFileLog,
  openStdoutLog,
  openSyslog,
  proxyConfigFrom,
  startMemoryTrim,
  startProxy,
  teeLogs,
} from "./proxy/mod.ts";
import {
  basename,
  checkManagersFile,
  ConfigError,
  hashPassword,
  join,
  type ListenAddress,
  type LoadedManagers,
  loadStateMigration,
  openGateway,
  openStateStore,
  readTomlFile,
  stateConfigFrom,
  withCaptivePortal,
  writeDefaultManagersFile,
} from "./managers/mod.ts";
import { apiConfigFrom } from "./api/config.ts";
import {
  buildInfo,
  checkHealth,
  CommandLineError,
  type HealthParts,
  MetricsRegistry,
  parseCommandLine,
  type ReloadReport,
  startApi,
  VERSION,
  versionLine,
} from "./api/mod.ts";
import { after, type Timer } from "./proxy/timers.ts";

// Registered first thing: without signal listeners Deno itself can panic
// when file descriptors run out (platform facts), and `serve` must save
// accounting before any signal ends it: SIGINT, SIGTERM and SIGQUIT stop
// it (other commands just end). While serving, the first signal stops
// gracefully, a second stops at once (state is still saved), a third ends
// the process without waiting for anything. SIGHUP reloads and SIGUSR1
// reopens the log (registered by `serve`); SIGUSR2 and SIGALRM, whose
// default is to end the process, are told and ignored.
const stopRequested = Promise.withResolvers<string>();
const stopNow = Promise.withResolvers<void>();
let serving = false;
let stopSignals = 0;
for (const signal of ["SIGUSR2", "SIGALRM"] as const) {
  Deno.addSignalListener(signal, () => {
    if (serving) console.error(`pmproxy: ${signal} ignored`);
  });
}
for (const signal of ["SIGINT", "SIGTERM", "SIGQUIT"] as const) {
  Deno.addSignalListener(signal, () => {
    if (!serving) Deno.exit(130);
    stopSignals++;
    if (stopSignals === 1) stopRequested.resolve(signal);
    else if (stopSignals === 2) stopNow.resolve();
    else Deno.exit(130);
  });
}

/**
 * SIGHUP while serving: a live reload (see {@link liveReload}). Never
 * ends the server; before `serve` is up it is ignored.
 */
let onReload: () => void = () => {};

const USAGE =
  `pmproxy ${VERSION}: an HTTP/HTTPS gateway proxy with rules, sessions and quotas

Usage:
  pmproxy [serve] [--config-dir DIR] [--state PATH|URL] [--watch]
      Runs the proxy and the HTTPS API. With no configuration in DIR
      (default $HOME/.config/pmproxy) a safe default is written first.
      SIGHUP (systemctl reload) or 'pmproxy reload' reloads both files
      without dropping a connection; --watch reloads when they change.
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
  pmproxy --version
      Prints the version and the commit it was built from.
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
    console.error(`pmproxy: wrote the default ${serverPath}`);
  }
  const managersPath = join(dir, "managers.toml");
  if (!(await exists(managersPath))) {
    const admin = await writeDefaultManagersFile(managersPath);
    console.error(
      `pmproxy: wrote the default ${managersPath} (login required, daily quota)`,
    );
    console.error(
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

/**
 * The access log's destinations as managers.toml names them: a file,
 * syslog, both, or standard output when neither.
 */
async function openAccessLog(config: LoadedManagers): Promise<LogSink> {
  const sinks: LogSink[] = [];
  if (config.accessLog) sinks.push(openFileLog(config.accessLog));
  if (config.syslogAddr) {
    sinks.push(
      await openSyslog(config.syslogAddr, { format: config.syslogFormat }),
    );
  }
  return sinks.length > 0 ? teeLogs(sinks) : openStdoutLog();
}

/** What a reload changes, kept by `serve`. */
interface Running {
  dir: string;
  server: Awaited<ReturnType<typeof readServerConfig>>;
  gateway: Awaited<ReturnType<typeof openGateway>>;
  proxy: Awaited<ReturnType<typeof startProxy>>;
  accessLog: LogSink;
  /** The access log settings `accessLog` was opened with. */
  loggedWith: string;
  metrics: MetricsRegistry;
}

/** The access log's settings of managers.toml, to tell when they changed. */
function logSettings(c: LoadedManagers): string {
  return JSON.stringify([
    c.accessLog,
    c.syslogAddr,
    c.syslogFormat,
    c.accessLogFormat,
  ]);
}

/** What differs between two tables, as `section.key` names. */
function changedKeys(
  section: string,
  was: Record<string, unknown>,
  now: Record<string, unknown>,
): string[] {
  const keys = new Set([...Object.keys(was), ...Object.keys(now)]);
  return [...keys].filter((k) =>
    JSON.stringify(was[k]) !== JSON.stringify(now[k])
  ).map((k) => `[${section}] ${k}`);
}

/**
 * A live reload of both files: server.toml is read first and managers.toml
 * loaded next, and nothing changes unless both load (the error names the
 * file, line and column). Then requests decided from now on follow the new
 * rule and managers (sessions and counters carry over), the proxy's new
 * limits, timeouts and `connectPorts`, and the new access log settings;
 * connections and tunnels already open carry on untouched. What needs the
 * sockets to be opened again (addresses, the certificate, the API's other
 * settings, the state store) is named as needing a restart.
 */
async function liveReload(r: Running): Promise<ReloadReport> {
  let server: Running["server"];
  let warnings: string[];
  try {
    server = await readServerConfig(r.dir);
    ({ warnings } = await r.gateway.reload());
  } catch (e) {
    r.metrics.countReload("error");
    const error = e instanceof Error ? e.message : String(e);
    console.error(
      `pmproxy: reload refused, the running configuration stays: ${error}`,
    );
    return { ok: false, error, warnings: [], needsRestart: [] };
  }
  const needsRestart = r.proxy.reconfigure({ config: server.proxy });
  const { persistIntervalMs: was, ...apiWas } = r.server.api;
  const { persistIntervalMs: now, ...apiNow } = server.api;
  if (now !== was) r.gateway.setPersistInterval(now);
  needsRestart.push(
    ...changedKeys("api", apiWas, apiNow),
    ...changedKeys("state", { ...r.server.state }, { ...server.state }),
  );
  r.server = server;
  const loaded = r.gateway.config;
  if (logSettings(loaded) !== r.loggedWith) {
    try {
      const next = await openAccessLog(loaded);
      r.proxy.reconfigure({
        accessLog: next,
        accessLogFormat: loaded.accessLogFormat,
      });
      const old = r.accessLog;
      r.accessLog = next;
      r.loggedWith = logSettings(loaded);
      await old.close();
    } catch (e) {
      needsRestart.push(
        `the new access log cannot be opened (${
          e instanceof Error ? e.message : e
        }); lines go where they went`,
      );
    }
  }
  r.metrics.countReload("ok");
  for (const w of warnings) console.warn(`pmproxy: warning: ${w}`);
  for (const n of needsRestart) {
    console.warn(`pmproxy: reload: needs a restart: ${n}`);
  }
  console.error("pmproxy: configuration reloaded");
  return { ok: true, warnings, needsRestart };
}

/** Reloads when server.toml or managers.toml changes (`serve --watch`). */
function watchConfig(dir: string, reload: () => void): Deno.FsWatcher {
  const watcher = Deno.watchFs(dir, { recursive: false });
  const names = new Set(["server.toml", "managers.toml"]);
  let timer: Timer | undefined;
  (async () => {
    for await (const event of watcher) {
      if (!event.paths.some((p) => names.has(basename(p)))) continue;
      // Editors write a file in several steps: wait for the last one.
      timer?.cancel();
      timer = after(300, reload);
    }
  })().catch(() => {});
  return watcher;
}

async function serve(
  dir: string,
  state: string | undefined,
  options: { watch: boolean } = { watch: false },
): Promise<number> {
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
  let accessLog: LogSink;
  try {
    accessLog = await openAccessLog(gateway.config);
  } catch (e) {
    await gateway.close();
    throw e;
  }
  // Told at the first scrape: from the source that asks git, which a
  // start need not wait for.
  const metrics = new MetricsRegistry(buildInfo);
  metrics.gateway = gateway;
  const health: HealthParts = { store: gateway.store };
  const behind = new Map<string, string>();
  // The PAC file names the proxy's port; the proxy starts after the API
  // (its captive-portal exception needs the API's port), so the API reads
  // the port when a PAC is asked for.
  const proxyListening: { port?: number } = {};
  // Reloads (SIGHUP, `pmproxy reload`, --watch) one after the other, once
  // everything runs.
  const current: { running?: Running } = {};
  let reloads: Promise<ReloadReport> = Promise.resolve({
    ok: true,
    warnings: [],
    needsRestart: [],
  });
  const reload = (): Promise<ReloadReport> =>
    reloads = reloads.then(() =>
      current.running ? liveReload(current.running) : {
        ok: false,
        error: "pmproxy is still starting; try again in a moment",
        warnings: [],
        needsRestart: [],
      }
    );
  const api = await startApi(config.api, gateway, {
    clientIpOf: (peer) => behind.get(`${peer.hostname}|${peer.port}`),
    proxyPort: () => proxyListening.port,
    metrics: () => metrics.render(),
    health: () => checkHealth(health),
    reload,
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
    accessLogFormat: gateway.config.accessLogFormat,
  });
  proxyListening.port = proxy.addr.port;
  metrics.proxy = proxy.stats;
  health.proxy = proxy;
  // The admin console's live figures, from the same counters as /metrics.
  gateway.useProxyFigures(() => {
    const s = proxy.stats;
    return {
      clientConnections: s.clientConnections,
      tunnels: s.tunnels,
      requests: finishedRequests(s),
    };
  });
  const r: Running = {
    dir,
    server: config,
    gateway,
    proxy,
    accessLog,
    loggedWith: logSettings(gateway.config),
    metrics,
  };
  current.running = r;
  // What a burst of connections grew is given back once it is over.
  const trim = startMemoryTrim({
    activity: () =>
      proxy.stats.connectionsAccepted + finishedRequests(proxy.stats),
    enabled: () => r.server.proxy.memoryTrim,
    onTrim: ({ beforeBytes, afterBytes, ms }) =>
      console.error(
        `pmproxy: memory trim: the heap went from ${mib(beforeBytes)} to ${
          mib(afterBytes)
        } MiB in a ${ms.toFixed(0)} ms pause ([proxy] memoryTrim)`,
      ),
  });
  onReload = () => {
    console.error("pmproxy: SIGHUP received: reloading the configuration");
    reload();
  };
  Deno.addSignalListener("SIGHUP", () => onReload());
  // logrotate renamed the file: the next lines go to a new one.
  Deno.addSignalListener("SIGUSR1", () => r.accessLog.reopen?.());
  const watcher = options.watch
    ? watchConfig(dir, () => {
      console.error("pmproxy: the configuration files changed: reloading");
      reload();
    })
    : undefined;
  console.error(
    `pmproxy: proxy listening on ${proxy.addr.hostname}:${proxy.addr.port}`,
  );
  console.error(
    `pmproxy: API listening on ${api.addr.hostname}:${api.addr.port} (${api.url})`,
  );
  const signal = await stopRequested.promise;
  console.error(
    `pmproxy: ${signal} received, stopping: no new connections; open transfers and tunnels have ${
      config.proxy.shutdownTimeoutMs / 1000
    } s ([proxy] shutdownTimeout) to end; ${signal} again stops at once; then saving state`,
  );
  await Promise.race([
    proxy.shutdown(),
    stopNow.promise.then(() => {
      console.error(`pmproxy: ${signal} again: closing every connection now`);
      return proxy.close();
    }),
  ]);
  watcher?.close();
  trim.stop();
  await reloads;
  await api.close();
  console.error("pmproxy: saving state");
  await gateway.close();
  await r.accessLog.close();
  console.error("pmproxy: stopped");
  return 0;
}

/** Bytes as MiB with one decimal. */
function mib(bytes: number): string {
  return (bytes / (1024 * 1024)).toFixed(1);
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
  const { exportState, importState, textLines } = await loadStateMigration();
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
      `pmproxy: imported into ${store.description}: signing key ${summary.signingKey}, ${summary.lastResets} last resets, ${summary.counters} counters, ${summary.sessions} sessions, ${summary.grants} grants`,
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

/** The commands this file runs itself; any other word may be a client's. */
const SERVER_COMMANDS = ["serve", "state", "check-config", "hash-password"];

async function main(args: string[]): Promise<number> {
  // The client commands (and their TLS client) are loaded only for them: a
  // server does not hold them in memory.
  if (
    args.length > 0 && !SERVER_COMMANDS.includes(args[0]) &&
    !args[0].startsWith("-")
  ) {
    const { CLIENT_COMMANDS, runClientCommand } = await import(
      "./api/client_commands.ts"
    );
    if (CLIENT_COMMANDS.includes(args[0])) return await runClientCommand(args);
  }
  const { values, positionals } = parseCommandLine(args, {
    "config-dir": { type: "string" },
    kv: { type: "string" },
    state: { type: "string" },
    merge: { type: "boolean" },
    watch: { type: "boolean" },
    help: { type: "boolean", short: "h" },
    version: { type: "boolean" },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values.version) {
    console.log(versionLine());
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
      return await serve(dir, values.state ?? values.kv, {
        watch: values.watch ?? false,
      });
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
  } else if (e instanceof CommandLineError) {
    console.error(`pmproxy: ${e.message}\n\n${USAGE}`);
    Deno.exit(2);
  } else {
    console.error(`pmproxy: ${e instanceof Error ? e.message : String(e)}`);
  }
  Deno.exit(1);
}
