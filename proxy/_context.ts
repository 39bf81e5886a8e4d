/**
 * What every handler shares: the running proxy's settings and state, and one
 * client connection's state.
 *
 * @module
 */
import type { Policy } from "./policy.ts";
import type { ProxyConfig } from "./config.ts";
import type { UpstreamPool } from "./upstream_pool.ts";
import { closeQuietly, type Reader, type Stream } from "./_io.ts";
import type { Watch } from "./_watchdog.ts";

/** The watch phase in which a timeout gives up the upstream only (→ 504). */
export const WAITING_FOR_UPSTREAM = "waiting for the upstream";

/** The running proxy. */
export interface ProxyContext {
  config: ProxyConfig;
  policy: Policy;
  loginUrl?: string;
  pool: UpstreamPool;
  /** Open tunnels per client address. */
  tunnels: Map<string, number>;
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
