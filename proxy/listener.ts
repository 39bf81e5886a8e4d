/**
 * The accept loop: takes connections, enforces the connection limit (503 and
 * close beyond it), survives running out of file descriptors (backs off and
 * keeps accepting), and shuts everything down on close().
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

/** A proxy that is listening. */
export interface RunningProxy {
  /** Where it listens (the real port when the configuration said 0). */
  addr: Deno.NetAddr;
  /** Stops listening, ends open connections and idle upstream connections. */
  close(): Promise<void>;
}

/** Options of {@link startProxy}. */
export interface StartOptions {
  /** The login page's address, shown on refusals and the proxy's own page. */
  loginUrl?: string;
}

const BUSY = errorResponse(
  503,
  "The proxy has too many connections open right now. Try again in a moment.",
  { close: true },
);

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
  const ctx: ProxyContext = {
    config,
    policy,
    loginUrl: options.loginUrl,
    pool: new UpstreamPool(
      config.poolMaxIdlePerOrigin,
      config.poolIdleTimeoutMs,
    ),
    tunnels: new Map(),
  };
  const clients = new Set<Client>();
  const tasks = new Set<Promise<void>>();
  let closing = false;
  let open = 0;

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
      } catch (e) {
        if (closing || e instanceof Deno.errors.BadResource) return;
        // Out of descriptors (or a transient accept error): wait a little,
        // so the connections that end free some, and keep serving.
        backoff = Math.min(backoff ? backoff * 2 : 10, 1000);
        if (!outOfDescriptors(e)) backoff = Math.min(backoff, 50);
        else if (Date.now() - warnedAt > 10_000) {
          warnedAt = Date.now();
          console.warn(
            `pmproxy: out of file descriptors (${open} client connections open); ` +
              `new connections wait. Raise the limit (ulimit -n, systemd LimitNOFILE) ` +
              `or lower [proxy.server] maxConnections.`,
          );
        }
        await new Promise((r) => setTimeout(r, backoff));
        continue;
      }
      if (open >= config.maxConnections) {
        track(
          writeAll(conn, BUSY).catch(() => {}).finally(() =>
            closeQuietly(conn)
          ),
        );
        continue;
      }
      try {
        conn.setNoDelay(true);
      } catch {
        // The peer already left; serveConnection will notice.
      }
      open++;
      const client = newClient(conn);
      clients.add(client);
      track(
        serveConnection(ctx, client).finally(() => {
          open--;
          clients.delete(client);
        }),
      );
    }
  };
  const loop = acceptLoop();

  return Promise.resolve({
    addr: listener.addr as Deno.NetAddr,
    async close() {
      if (closing) return;
      closing = true;
      closeQuietly(listener);
      await loop;
      for (const c of clients) c.abort();
      // Bounded: every task ends once its sockets are closed.
      for (let i = 0; i < 100 && tasks.size > 0; i++) {
        await Promise.allSettled([...tasks]);
      }
      ctx.pool.close();
    },
  });
}
