/**
 * The accept loop: takes connections, enforces the connection limit (503,
 * then a short drain and close beyond it), survives running out of file
 * descriptors (backs off and keeps accepting), and stops: gracefully on
 * shutdown() (no new connections, every connection closed after the answer
 * it gets next, transfers and tunnels given time to end), at once on
 * close().
 *
 * @module
 */
import type { Policy } from "./policy.ts";
import type { ProxyConfig } from "./config.ts";
import { UpstreamPool } from "./upstream_pool.ts";
import { closeQuietly, writeAll } from "./_io.ts";
import { errorResponse } from "./error_pages.ts";
import { newClient, serveConnection } from "./connection.ts";
import type { Client, ProxyContext } from "./_context.ts";
import type { LogSink } from "./log_sinks.ts";
import type { AccessLogFormat } from "./access_log.ts";
import { newProxyStats, type ProxyStats } from "./stats.ts";
import { after, sleep, type Timer } from "./timers.ts";

/** A proxy that is listening. */
export interface RunningProxy {
  /** Where it listens (the real port when the configuration said 0). */
  addr: Deno.NetAddr;
  /** Its counters (see stats.ts), read by whoever exposes them. */
  readonly stats: ProxyStats;
  /** True while it accepts connections (not once stopping, nor if accepting broke). */
  readonly listening: boolean;
  /**
   * Stops gracefully: stops listening at once; a kept-alive connection
   * gets `Connection: close` on its next answer and ends after it; open
   * transfers and tunnels go on for up to `graceMs` (default: the
   * configuration's `shutdownTimeout`), then whatever is left is closed as
   * by {@link close}. Resolves when every connection has ended.
   */
  shutdown(options?: { graceMs?: number }): Promise<void>;
  /** Stops listening, ends open connections and idle upstream connections. */
  close(): Promise<void>;
  /**
   * A live reload: requests read from now on follow `change.config`
   * (limits, timeouts, `connectPorts`) and are logged to `change.accessLog`
   * in `change.accessLogFormat`; connections and tunnels already open
   * carry on. What cannot change without listening again (the address)
   * or without a new upstream pool is kept as it was; answers a sentence
   * for each such change, for the caller to say a restart applies it.
   */
  reconfigure(change: ProxyChange): string[];
}

/** What {@link RunningProxy.reconfigure} changes; absent parts stay. */
export interface ProxyChange {
  config?: ProxyConfig;
  accessLog?: LogSink;
  accessLogFormat?: AccessLogFormat;
}

/** Options of {@link startProxy}. */
export interface StartOptions {
  /** The login page's address, shown on refusals and the proxy's own page. */
  loginUrl?: string;
  /**
   * Where the access log goes, one line per finished exchange in Squid's
   * native format (see access_log.ts): `openStdoutLog()` or `openSyslog()`.
   * No log when absent. The caller closes it, after {@link RunningProxy.close}.
   */
  accessLog?: LogSink;
  /** The access log's format: Squid's native lines (default) or JSON lines. */
  accessLogFormat?: AccessLogFormat;
}

const BUSY = errorResponse(
  503,
  "The proxy has too many connections open right now. Try again in a moment.",
  { close: true },
);

// A refused connection is read (and what comes dropped) for a short while
// after the 503: a socket closed with the request unread is reset, and the
// reset can destroy the 503 before the client reads it, or fail the
// client's upload so that it never looks. Bounded in time, bytes and count,
// so an overload does not hold many more sockets than the limit.
const DRAIN_MS = 1000;
const DRAIN_BYTES = 64 * 1024;
const MAX_DRAINING = 64;
// Shared by every drain: what is read into it is never looked at.
const drainBuf = new Uint8Array(16 * 1024);

/**
 * Answers 503 on a connection beyond the limit, half-closes it, then reads
 * and drops what the client still sends (bounded) before closing it.
 */
async function refuse(conn: Deno.Conn, draining: Set<Deno.Conn>) {
  if (draining.size >= MAX_DRAINING) {
    // Too many being drained already: answer and close at once.
    await writeAll(conn, BUSY).catch(() => {});
    closeQuietly(conn);
    return;
  }
  draining.add(conn);
  // Also bounds the 503's own write, for a client that reads nothing.
  const timer = after(DRAIN_MS, () => closeQuietly(conn));
  try {
    await writeAll(conn, BUSY);
    await conn.closeWrite();
    for (let got = 0; got < DRAIN_BYTES;) {
      const n = await conn.read(drainBuf);
      if (n === null) break;
      got += n;
    }
  } catch {
    // Reset, or closed by the timer or shutdown: nothing more to do.
  } finally {
    timer.cancel();
    draining.delete(conn);
    closeQuietly(conn);
  }
}

function listen(config: ProxyConfig): Deno.TcpListener {
  if (config.allInterfaces) {
    // "::" takes IPv6 and IPv4 clients on a dual-stack host; hosts without
    // IPv6, or whose "::" sockets are IPv6-only, get every IPv4 interface.
    try {
      if (!ipv6OnlyByDefault()) {
        return Deno.listen({ hostname: "::", port: config.port });
      }
    } catch {
      // No IPv6 here.
    }
    return Deno.listen({ hostname: "0.0.0.0", port: config.port });
  }
  return Deno.listen({ hostname: config.hostname, port: config.port });
}

/** True when a "::" socket would take IPv6 clients only (Linux sysctl). */
function ipv6OnlyByDefault(): boolean {
  try {
    return Deno.readTextFileSync("/proc/sys/net/ipv6/bindv6only").trim() ===
      "1";
  } catch {
    return false;
  }
}

function outOfDescriptors(e: unknown): boolean {
  const m = String((e as Error)?.message ?? e);
  return m.includes("os error 24") || m.includes("os error 23") ||
    m.includes("Too many open files");
}

/**
 * Starts the proxy on `config`'s address, asking `policy` about every
 * request. Resolves once it listens.
 */
export function startProxy(
  config: ProxyConfig,
  policy: Policy,
  options: StartOptions = {},
): Promise<RunningProxy> {
  let listener: Deno.TcpListener;
  try {
    listener = listen(config);
  } catch (e) {
    const where = `${
      config.allInterfaces ? "" : config.hostname
    }:${config.port}`;
    return Promise.reject(
      new Error(
        `the proxy cannot listen on "${where}": ${(e as Error).message}; ` +
          `change [proxy.server] addr in server.toml or stop what uses that port`,
      ),
    );
  }
  const stats = newProxyStats();
  const ctx: ProxyContext = {
    config,
    policy,
    accessLog: options.accessLog,
    accessLogFormat: options.accessLogFormat ?? "squid",
    stats,
    draining: false,
    loginUrl: options.loginUrl,
    pool: new UpstreamPool(
      config.poolMaxIdlePerOrigin,
      config.poolIdleTimeoutMs,
    ),
    tunnels: new Map(),
    clientEnded(client) {
      clients.delete(client);
      stats.clientConnections = clients.size;
      if (clients.size === 0 && allEnded.length > 0) {
        for (const resolve of allEnded.splice(0)) resolve();
      }
    },
  };
  const clients = new Set<Client>();
  /** Waiting for the last client connection to end. */
  const allEnded: (() => void)[] = [];
  const draining = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  let closing = false;
  let accepting = true;

  const track = (p: Promise<void>) => {
    tasks.add(p);
    p.finally(() => tasks.delete(p));
  };

  const acceptLoop = async () => {
    let backoff = 0;
    let warnedAt = 0;
    while (!closing) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
        backoff = 0;
        stats.connectionsAccepted++;
      } catch (e) {
        if (closing || e instanceof Deno.errors.BadResource) {
          accepting = false;
          return;
        }
        // Out of descriptors (or a transient accept error): wait a little,
        // so the connections that end free some, and keep serving.
        backoff = Math.min(backoff ? backoff * 2 : 10, 1000);
        if (!outOfDescriptors(e)) backoff = Math.min(backoff, 50);
        else if (Date.now() - warnedAt > 10_000) {
          warnedAt = Date.now();
          console.warn(
            `pmproxy: out of file descriptors (${clients.size} client connections open); ` +
              `new connections wait. Raise the limit (ulimit -n, systemd LimitNOFILE) ` +
              `or lower [proxy.server] maxConnections.`,
          );
        }
        await sleep(backoff);
        continue;
      }
      if (clients.size >= ctx.config.maxConnections) {
        track(refuse(conn, draining));
        continue;
      }
      try {
        conn.setNoDelay(true);
      } catch {
        // The peer already left; serveConnection will notice.
      }
      const client = newClient(conn);
      clients.add(client);
      stats.clientConnections = clients.size;
      // It never rejects, and tells ctx.clientEnded when it is done.
      serveConnection(ctx, client);
    }
  };
  const loop = acceptLoop().finally(() => accepting = false);
  let closed: Promise<void> | undefined;

  const stopAccepting = async () => {
    closing = true;
    closeQuietly(listener);
    await loop;
    for (const c of draining) closeQuietly(c);
  };
  const allGone = () =>
    clients.size === 0
      ? Promise.resolve()
      : new Promise<void>((resolve) => allEnded.push(resolve));

  const close = () =>
    closed ??= (async () => {
      await stopAccepting();
      for (const c of clients) c.abort();
      for (const c of draining) closeQuietly(c);
      // Every client ends once its sockets are closed.
      await allGone();
      // Bounded: every task ends once its sockets are closed.
      for (let i = 0; i < 100 && tasks.size > 0; i++) {
        await Promise.allSettled([...tasks]);
      }
      ctx.pool.close();
    })();

  return Promise.resolve({
    addr: listener.addr as Deno.NetAddr,
    stats,
    get listening() {
      return accepting && !closing;
    },
    async shutdown(opts: { graceMs?: number } = {}) {
      if (closed) return await closed;
      ctx.draining = true;
      await stopAccepting();
      const graceMs = opts.graceMs ?? ctx.config.shutdownTimeoutMs;
      let timer: Timer | undefined;
      await Promise.race([
        allGone(),
        new Promise<void>((resolve) => timer = after(graceMs, resolve)),
      ]);
      timer?.cancel();
      await close();
    },
    close,
    reconfigure(change: ProxyChange): string[] {
      const notes: string[] = [];
      const next = change.config;
      if (next) {
        const was = ctx.config;
        if (
          next.hostname !== was.hostname || next.port !== was.port ||
          next.allInterfaces !== was.allInterfaces
        ) {
          notes.push(
            `[proxy.server] addr changed: the proxy goes on listening on the old address until a restart`,
          );
        }
        if (
          next.poolMaxIdlePerOrigin !== was.poolMaxIdlePerOrigin ||
          next.poolIdleTimeoutMs !== was.poolIdleTimeoutMs
        ) {
          notes.push(
            `the upstream pool's settings (poolMaxIdlePerOrigin, poolIdleTimeout) apply after a restart`,
          );
        }
        // The address stays what the listener has: config is read per use.
        ctx.config = {
          ...next,
          hostname: was.hostname,
          port: was.port,
          allInterfaces: was.allInterfaces,
          poolMaxIdlePerOrigin: was.poolMaxIdlePerOrigin,
          poolIdleTimeoutMs: was.poolIdleTimeoutMs,
        };
      }
      if (change.accessLog) ctx.accessLog = change.accessLog;
      if (change.accessLogFormat) ctx.accessLogFormat = change.accessLogFormat;
      return notes;
    },
  });
}
