/**
 * What every handler shares: the running proxy's settings and state, and one
 * client connection's state.
 *
 * @module
 */
import type { Policy } from "./policy.ts";
import type { ProxyConfig } from "./config.ts";
import type { UpstreamPool } from "./upstream_pool.ts";
import { closeQuietly, type Reader, type Stream, writeAll } from "./_io.ts";
import type { AccessLogFormat, Exchange } from "./access_log.ts";
import type { LogSink } from "./log_sinks.ts";
import type { ProxyStats } from "./stats.ts";
import type { Watch } from "./_watchdog.ts";

/** The watch phase in which a timeout gives up the upstream only (-> 504). */
export const WAITING_FOR_UPSTREAM = "waiting for the upstream";

/**
 * The watch phase in which the client's request body is awaited: a timeout
 * gives up the upstream only (-> 408 when the client went silent).
 */
export const READING_BODY = "request body";

/** The running proxy. */
export interface ProxyContext {
  config: ProxyConfig;
  policy: Policy;
  /** Where each exchange's access log line goes; none when undefined. */
  accessLog: LogSink | undefined;
  /** How its lines are written. */
  accessLogFormat: AccessLogFormat;
  /** The counters the handlers increment (see stats.ts). */
  stats: ProxyStats;
  /**
   * True once a graceful stop began: no connection is kept alive after
   * the answer it is given next.
   */
  draining: boolean;
  loginUrl?: string;
  pool: UpstreamPool;
  /** Open tunnels per client address. */
  tunnels: Map<string, number>;
  /**
   * Told by serveConnection when a client connection has ended (a callback
   * rather than a promise chain per connection: less for every connection
   * to allocate and keep alive).
   */
  clientEnded(client: Client): void;
}

/** One client connection. */
export class Client {
  /** The upstream socket in use for the current exchange, if any. */
  upstream: Stream | undefined = undefined;
  constructor(
    readonly conn: Deno.Conn,
    readonly reader: Reader,
    readonly ip: string,
    readonly watch: Watch,
  ) {}

  /** Ends the connection and its current upstream (shutdown, timeouts). */
  abort(): void {
    closeQuietly(this.conn);
    closeQuietly(this.upstream);
  }
}

/**
 * Writes one whole answer of ours (a page of error_pages.ts, all HTML) to
 * the client and counts it for the access log. False when the client has
 * left: there is nobody to tell, so the caller just ends the exchange.
 */
export async function sendToClient(
  client: Client,
  x: Exchange,
  bytes: Uint8Array,
): Promise<boolean> {
  x.contentType = "text/html";
  try {
    await writeAll(client.conn, bytes);
    x.bytes += bytes.length;
    return true;
  } catch {
    return false;
  }
}
