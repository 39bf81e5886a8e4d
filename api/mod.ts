/**
 * pmproxy's HTTPS API: the original's `POST /api/cmd` protocol and the web
 * pages, served by `Deno.serve` with TLS. The certificate is generated on
 * first start when the configured files are missing.
 *
 * ```ts
 * import { apiConfigFrom } from "./config.ts";
 * import { startApi } from "./mod.ts";
 * import { openGateway } from "../managers/mod.ts";
 *
 * const config = apiConfigFrom({ server: { addr: "127.0.0.1:4443" } }, {
 *   file: "server.toml",
 *   configDir: "/etc/pmproxy",
 * });
 * const gateway = await openGateway("/etc/pmproxy/managers.toml", {
 *   state: "/etc/pmproxy/state.kv",
 *   persistIntervalMs: config.persistIntervalMs,
 * });
 * const api = await startApi(config, gateway);
 * console.log(`API at ${api.url}`);
 * // ... later
 * await api.close();
 * ```
 *
 * @module
 */
import { type Gateway, normalizeIp } from "../managers/mod.ts";
import type { ApiConfig } from "./config.ts";
import { ensureCertificate } from "./certificate.ts";
import type { Context, Hono } from "hono";
import type { Assets } from "./app.ts";
import type { Health } from "./health.ts";
import type { ReloadReport } from "./cmd.ts";

export type { ApiConfig } from "./config.ts";
export {
  type BuildInfo,
  buildInfo,
  VERSION,
  versionLine,
} from "./build_info.ts";
export { CommandLineError, parseCommandLine } from "./command_line.ts";
export { MetricsRegistry, type ProxyCounters } from "./metrics.ts";
export { checkHealth, type Health, type HealthParts } from "./health.ts";
export type { ReloadReport } from "./cmd.ts";

/** A running API server. */
export interface RunningApi {
  /** The address it listens on (the real port when the config said 0). */
  addr: Deno.NetAddr;
  /** The URL of the listening socket, e.g. `https://127.0.0.1:4443/`. */
  url: string;
  /** The server's certificate (PEM), e.g. for clients to pin. */
  certPem: string;
  /** Stops accepting, ends open requests, and waits. */
  close(): Promise<void>;
}

/** Options of {@link startApi}. */
export interface StartApiOptions {
  /** Called once listening. */
  onListen?: (addr: Deno.NetAddr) => void;
  /** The web pages (default: the ones embedded from web/). */
  assets?: Assets;
  /** Where unexpected errors are reported (default `console.error`). */
  logError?: (message: string) => void;
  /**
   * Who is really behind a TCP peer, when something else knows better than
   * the socket: e.g. the proxy of this same process tunnelling a browser to
   * the API sees the browser's IP, while the API sees the proxy's. Answer
   * undefined to keep the peer's address (IPv4-mapped IPv6 normalised).
   */
  clientIpOf?: (peer: Deno.NetAddr) => string | undefined;
  /**
   * The proxy's port, for the PAC file (`/proxy.pac`, `/wpad.dat`): read
   * when a PAC is asked for, because the proxy starts after the API.
   * Without it (or while it answers undefined) there is no PAC file.
   */
  proxyPort?: () => number | undefined;
  /** The text of `GET /metrics` (see metrics.ts); no such page when absent. */
  metrics?: () => string | Promise<string>;
  /** The answer of `GET /healthz` (see health.ts); no such page when absent. */
  health?: () => Health;
  /** The `reload` command of `/api/cmd` (administrators); none when absent. */
  reload?: () => Promise<ReloadReport>;
}

/** The addresses a generated certificate should name for this config. */
function certificateHosts(config: ApiConfig): string[] {
  const hosts: string[] = [];
  if (!config.wildcard) hosts.push(config.hostname);
  try {
    hosts.push(new URL(config.publicUrl).hostname.replace(/^\[|\]$/g, ""));
  } catch {
    // validated by apiConfigFrom
  }
  if (config.wildcard) {
    try {
      for (const i of Deno.networkInterfaces()) {
        if (!i.address.startsWith("fe80:")) hosts.push(i.address);
      }
    } catch {
      // without --allow-sys the loopback names still cover local use
    }
  }
  return hosts;
}

/** The host of a URL without IPv6 brackets. */
function hostOf(url: string): string {
  return new URL(url).hostname.replace(/^\[|\]$/g, "");
}

/** The client IP of a request: the resolver's answer, else the TCP peer. */
function viaResolver(
  resolve: (peer: Deno.NetAddr) => string | undefined,
): (c: Context) => string {
  return (c) => {
    const peer = (c.env as Deno.ServeHandlerInfo<Deno.NetAddr>).remoteAddr;
    return normalizeIp(resolve(peer) ?? peer.hostname);
  };
}

/** A failure to listen, in words: what, where, what to do. */
function listenError(e: unknown, config: ApiConfig): Error {
  const where = `the API address "${config.addr}" ([api.server] addr)`;
  if (e instanceof Deno.errors.AddrInUse) {
    return new Error(
      `${where} is in use by another program: stop it or choose another addr in server.toml`,
    );
  }
  if (e instanceof Deno.errors.PermissionDenied) {
    return new Error(
      `no permission to listen on ${where}: ports below 1024 need root or CAP_NET_BIND_SERVICE`,
    );
  }
  if (e instanceof Deno.errors.AddrNotAvailable) {
    return new Error(
      `${where} is not an address of this machine: choose one it has, or ":${config.port}" for all`,
    );
  }
  const message = e instanceof Error ? e.message : String(e);
  if (/certificate|private key|pem|tls/i.test(message)) {
    return new Error(
      `cannot use ${config.httpsCert} and ${config.httpsKey} for TLS (${message}): ` +
        `fix them, or remove both to have a new self-signed pair generated`,
    );
  }
  return new Error(`cannot listen on ${where}: ${message}`);
}

/**
 * Starts the HTTPS API for `gateway` as `config` says. Generates and writes
 * the certificate and key when either file is missing.
 */
export async function startApi(
  config: ApiConfig,
  gateway: Gateway,
  options: StartApiOptions = {},
): Promise<RunningApi> {
  const { certPem, keyPem } = await ensureCertificate(
    config.httpsCert,
    config.httpsKey,
    { hosts: certificateHosts(config) },
  );
  // The app (Hono, the pages, their catalogues, the console) is loaded at
  // the first request, not at start: a gateway that is never asked costs
  // about 2.5 MiB less resident memory. The specifiers are static so that
  // `deno compile` and `deno bundle` still include them.
  let app: Promise<Hono> | undefined;
  const appOnce = () =>
    app ??= Promise.all([
      import("./app.ts"),
      options.assets ?? import("../web/assets.ts").then((m) => m.assets),
    ]).then(([{ createApp }, assets]) =>
      createApp(gateway, {
        assets,
        excludedRoutes: config.excludedRoutes,
        webStaticFilesDir: config.webStaticFilesDir,
        logError: options.logError,
        readTimeoutMs: config.readTimeoutMs,
        clientIp: options.clientIpOf
          ? viaResolver(options.clientIpOf)
          : undefined,
        pac: options.proxyPort && {
          proxyPort: options.proxyPort,
          proxyHost: config.publicUrlSet ? hostOf(config.publicUrl) : undefined,
          ownHosts: certificateHosts(config),
          direct: config.pacDirect,
        },
        metrics: options.metrics,
        metricsAllow: config.metricsAllow,
        health: options.health,
        reload: options.reload,
      })
    );
  const listening = Promise.withResolvers<Deno.NetAddr>();
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname: config.hostname,
      port: config.port,
      cert: certPem,
      key: keyPem,
      onListen: (addr) => listening.resolve(addr),
      onError: (err) => {
        (options.logError ?? console.error)(
          `pmproxy: API: unexpected error: ${
            err instanceof Error ? err.message : err
          }`,
        );
        return new Response(
          JSON.stringify({ message: "internal error" }) + "\n",
          { status: 500, headers: { "Content-Type": "application/json" } },
        );
      },
    }, async (req, info) => (await appOnce()).fetch(req, info));
  } catch (e) {
    throw listenError(e, config);
  }
  const addr = await listening.promise;
  options.onListen?.(addr);
  let host = addr.hostname;
  if (config.wildcard) {
    host = new URL(config.publicUrl).hostname.replace(/^\[|\]$/g, "");
  }
  const shown = host.includes(":") ? `[${host}]` : host;
  return {
    addr,
    url: `https://${shown}:${addr.port}/`,
    certPem,
    close: async () => {
      await server.shutdown();
    },
  };
}
