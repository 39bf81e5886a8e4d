/**
 * Dialers: how the proxy reaches an origin for a {@link Route}: directly,
 * from a given source address, or through a parent proxy (HTTP or SOCKS5).
 *
 * @module
 */
import type { Route } from "./policy.ts";

/** The byte stream to upstream; a `Deno.Conn` is one. */
export interface Upstream {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  closeWrite(): Promise<void>;
  close(): void;
}

/** A connection made for one route. */
export interface Dialed {
  conn: Upstream;
  /**
   * For plain HTTP only: true when the connection goes to an HTTP parent
   * proxy, so the request must be written in absolute form.
   */
  viaHttpParent: boolean;
  /** For plain HTTP via an HTTP parent: the `Proxy-Authorization` value to send. */
  parentAuthorization?: string;
  /** For the access log: `DIRECT/1.2.3.4` or `FIRST_UP_PARENT/host`. */
  hierarchy: string;
}

/** Options of {@link dial}. */
export interface DialOptions {
  /** Give up after this many milliseconds (DNS + TCP + parent handshake). */
  timeoutMs: number;
  /**
   * `tunnel`: the caller needs a raw byte stream to host:port (CONNECT,
   * upgrades), so an HTTP parent is asked with CONNECT.
   * `http`: the caller will write an HTTP request itself.
   */
  purpose: "tunnel" | "http";
}

/** Why a dial failed: the proxy answers 504 for a timeout, 502 otherwise. */
export class DialError extends Error {
  constructor(message: string, readonly timedOut: boolean) {
    super(message);
    this.name = "DialError";
  }
}

/** Connects to `host:port` along `route`. Throws {@link DialError}. */
export async function dial(
  route: Route,
  target: { host: string; port: number },
  options: DialOptions,
): Promise<Dialed> {
  if (route.kind !== "direct" || route.localAddress) {
    throw new DialError(`route ${route.kind} is not supported yet`, false);
  }
  const timer = AbortSignal.timeout(options.timeoutMs);
  try {
    const conn = await Deno.connect({
      hostname: target.host,
      port: target.port,
      signal: timer,
    });
    conn.setNoDelay(true);
    const remote = conn.remoteAddr as Deno.NetAddr;
    return {
      conn,
      viaHttpParent: false,
      hierarchy: `DIRECT/${remote.hostname}`,
    };
  } catch (e) {
    if (timer.aborted) {
      throw new DialError(
        `connecting to ${target.host}:${target.port} took longer than ${options.timeoutMs} ms`,
        true,
      );
    }
    throw new DialError(
      `cannot connect to ${target.host}:${target.port}: ${
        (e as Error).message
      }`,
      false,
    );
  }
}
