/**
 * Dialers: how the proxy reaches an origin for a {@link Route}: directly,
 * from a given source address, or through a parent proxy (HTTP or SOCKS5).
 *
 *   direct:        proxy -> origin
 *   HTTP parent:   proxy -> parent (CONNECT host:port, or the request in absolute form) -> origin
 *   SOCKS5 parent: proxy -> parent (SOCKS5 CONNECT host:port) -> origin
 *
 * One deadline covers everything: name lookup, TCP connect, and the parent's
 * handshake. A person reads the messages on the proxy's 502/504 page, so
 * each one names what failed and what to check.
 *
 * @module
 */
import type { Route } from "./policy.ts";
import { authority } from "./_target.ts";
import { closeQuietly, type Stream } from "./_io.ts";
import { DialError } from "./_dial_error.ts";
import type { DialFailureKind } from "./stats.ts";
import { after } from "./timers.ts";

// dial() throws it: its callers find it here.
export { DialError };

/** A connection made for one route. */
export interface Dialed {
  /** The byte stream: to the origin, or to an HTTP parent when {@link Dialed.viaHttpParent}. */
  conn: Stream;
  /**
   * For plain HTTP only: true when the connection goes to an HTTP parent
   * proxy, so the request must be written in absolute form.
   */
  viaHttpParent: boolean;
  /** For plain HTTP via an HTTP parent: the `Proxy-Authorization` value to send. */
  parentAuthorization?: string;
  /**
   * For the access log, as Squid 5 writes it: `HIER_DIRECT/1.2.3.4` (the
   * origin's address) or `FIRSTUP_PARENT/10.0.0.1` (the parent's).
   */
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

/** A parent proxy, from the route's `proxyUrl`. */
interface Parent {
  scheme: "http" | "socks5";
  /** Without brackets. */
  host: string;
  port: number;
  user?: string;
  pass?: string;
  /** `host:port` (brackets for IPv6) for messages; never the credentials. */
  label: string;
}

/**
 * Connects to `host:port` along `route`. Throws {@link DialError}, with
 * `timedOut` true when `options.timeoutMs` ran out.
 *
 * `target.host` is a name or an address without brackets (`::1`).
 *
 * @example
 * ```ts
 * const up = await dial(
 *   { kind: "parent", proxyUrl: "socks5://127.0.0.1:1080" },
 *   { host: "example.org", port: 443 },
 *   { timeoutMs: 10_000, purpose: "tunnel" },
 * );
 * up.hierarchy; // "FIRSTUP_PARENT/127.0.0.1"
 * ```
 */
export async function dial(
  route: Route,
  target: { host: string; port: number },
  options: DialOptions,
): Promise<Dialed> {
  const deadline = new AbortController();
  const timer = after(options.timeoutMs, () => deadline.abort());
  try {
    if (route.kind === "direct") {
      return await dialDirect(target, route.localAddress, {
        signal: deadline.signal,
        timeoutMs: options.timeoutMs,
      });
    }
    const parent = parseParent(route.proxyUrl);
    return await dialParent(parent, target, {
      ...options,
      localAddress: route.localAddress,
      signal: deadline.signal,
    });
  } finally {
    timer.cancel();
  }
}

interface Deadline {
  signal: AbortSignal;
  timeoutMs: number;
}

async function dialDirect(
  target: { host: string; port: number },
  localAddress: string | undefined,
  d: Deadline,
): Promise<Dialed> {
  const where = authority(target.host, target.port);
  try {
    const { conn, remoteIp } = await openTcp(target, localAddress, d.signal);
    return {
      conn,
      viaHttpParent: false,
      hierarchy: `HIER_DIRECT/${remoteIp}`,
    };
  } catch (e) {
    if (d.signal.aborted) {
      throw new DialError(
        `connecting to ${where} took longer than ${d.timeoutMs} ms`,
        true,
      );
    }
    throw new DialError(
      `cannot connect to ${where}${fromSource(localAddress, e)}`,
      false,
      failureKind(e),
    );
  }
}

async function dialParent(
  parent: Parent,
  target: { host: string; port: number },
  options: DialOptions & { localAddress?: string; signal: AbortSignal },
): Promise<Dialed> {
  const { signal, timeoutMs, localAddress } = options;
  // The parents' protocols load with the first parent dialed: most
  // gateways have none (tests/start_graph_test.ts).
  const http = await import("./_parent_http.ts");
  const socks = parent.scheme === "http"
    ? undefined
    : await import("./_socks5.ts");
  const where = authority(target.host, target.port);
  const kind = parent.scheme === "http" ? "parent proxy" : "SOCKS5 parent";
  let opened;
  try {
    opened = await openTcp(parent, localAddress, signal);
  } catch (e) {
    if (signal.aborted) {
      throw new DialError(
        `connecting to ${kind} ${parent.label} took longer than ${timeoutMs} ms; is the parent proxy running and reachable?`,
        true,
      );
    }
    const hint = isNameNotFound(e)
      ? "check the host name in the parent proxy's URL"
      : "is the parent proxy running?";
    throw new DialError(
      `cannot connect to ${kind} ${parent.label}${
        fromSource(localAddress, e)
      }; ${hint}`,
      false,
      "parent",
    );
  }
  // Squid logs the parent's address, as it logs the origin's.
  const hierarchy = `FIRSTUP_PARENT/${opened.remoteIp}`;
  const authorization = parent.user !== undefined
    ? http.basicAuthorization(parent.user, parent.pass ?? "")
    : undefined;
  let conn = opened.conn;

  if (parent.scheme === "http" && options.purpose === "http") {
    return {
      conn,
      viaHttpParent: true,
      parentAuthorization: authorization,
      hierarchy,
    };
  }

  // The handshake's reads do not take a signal: closing the socket when the
  // deadline passes is what ends them.
  const onAbort = () => closeQuietly(conn);
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    if (parent.scheme === "http") {
      conn = await http.httpConnect(conn, target, {
        authorization,
        parent: parent.label,
      });
    } else {
      await socks!.socks5Connect(conn, target, {
        user: parent.user,
        pass: parent.pass,
        parent: parent.label,
      });
    }
  } catch (e) {
    closeQuietly(conn);
    if (signal.aborted) {
      throw new DialError(
        `${kind} ${parent.label} did not open a connection to ${where} within ${timeoutMs} ms; is the parent proxy overloaded, or the destination slow?`,
        true,
      );
    }
    if (e instanceof DialError) throw new DialError(e.message, false, "parent");
    throw new DialError(
      `${kind} ${parent.label} dropped the connection while opening one to ${where}: ${
        describe(e)
      }`,
      false,
      "parent",
    );
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
  return { conn, viaHttpParent: false, hierarchy };
}

/** A TCP connection, bound to `localAddress` when one is given. */
async function openTcp(
  to: { host: string; port: number },
  localAddress: string | undefined,
  signal: AbortSignal,
): Promise<{ conn: Stream; remoteIp: string }> {
  if (localAddress) {
    // node:net, the one way to bind a source address, is loaded for the
    // first such route: a gateway without one never pays for it.
    const { connectFrom } = await import("./_node_socket.ts");
    const conn = await connectFrom({
      host: to.host,
      port: to.port,
      localAddress,
      signal,
    });
    return { conn, remoteIp: conn.remoteAddress };
  }
  const conn = await Deno.connect({ hostname: to.host, port: to.port, signal });
  conn.setNoDelay(true);
  return { conn, remoteIp: (conn.remoteAddr as Deno.NetAddr).hostname };
}

/** Parses `http://[user:pass@]host:port` or `socks5://...`; user and pass percent-decoded. */
function parseParent(proxyUrl: string): Parent {
  let url: URL;
  try {
    url = new URL(proxyUrl);
  } catch {
    throw new DialError(
      `the parent proxy URL ${
        hideCredentials(proxyUrl)
      } is not a URL; write it as http://host:port or socks5://host:port`,
      false,
      "parent",
    );
  }
  const scheme = url.protocol === "http:"
    ? "http"
    : url.protocol === "socks5:" || url.protocol === "socks5h:"
    ? "socks5"
    : undefined;
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  if (!scheme || !host) {
    throw new DialError(
      `the parent proxy URL ${
        hideCredentials(proxyUrl)
      } is not usable; write it as http://host:port or socks5://host:port`,
      false,
      "parent",
    );
  }
  // Without a port: the scheme's usual one (URL drops :80 for http).
  const port = url.port ? Number(url.port) : scheme === "http" ? 80 : 1080;
  const parent: Parent = { scheme, host, port, label: authority(host, port) };
  if (url.username || url.password) {
    try {
      parent.user = decodeURIComponent(url.username);
      parent.pass = decodeURIComponent(url.password);
    } catch {
      throw new DialError(
        `the credentials in the parent proxy URL for ${parent.label} have a bad %-escape`,
        false,
        "parent",
      );
    }
  }
  return parent;
}

function hideCredentials(proxyUrl: string): string {
  return JSON.stringify(proxyUrl.replace(/\/\/[^/@]*@/, "//\u2026@"));
}

/** `: why`, naming the source address when one was bound and it is the cause. */
function fromSource(localAddress: string | undefined, e: unknown): string {
  if (!localAddress) return `: ${describe(e)}`;
  const { code, syscall } = (e ?? {}) as { code?: unknown; syscall?: unknown };
  if (syscall === "bind" || code === "EADDRNOTAVAIL") {
    return ` from source address ${localAddress}: it cannot be bound (${code}); is ${localAddress} an address of this machine?`;
  }
  return ` from source address ${localAddress}: ${describe(e)}`;
}

/** A short reason from a Deno or node socket error. */
function describe(e: unknown): string {
  const code = (e as { code?: unknown })?.code;
  if (e instanceof Deno.errors.ConnectionRefused || code === "ECONNREFUSED") {
    return "connection refused";
  }
  if (e instanceof Deno.errors.ConnectionReset || code === "ECONNRESET") {
    return "connection reset";
  }
  if (e instanceof Deno.errors.AddrNotAvailable || code === "EADDRNOTAVAIL") {
    return "address not available";
  }
  if (isNameNotFound(e)) return "no such host name (DNS lookup failed)";
  if (code === "EHOSTUNREACH") return "host unreachable";
  if (code === "ENETUNREACH") return "network unreachable";
  return e instanceof Error ? e.message : String(e);
}

/** How a failed connect to an origin is counted (see stats.ts). */
function failureKind(e: unknown): DialFailureKind {
  const code = (e as { code?: unknown })?.code;
  if (e instanceof Deno.errors.ConnectionRefused || code === "ECONNREFUSED") {
    return "refused";
  }
  return isNameNotFound(e) ? "dns" : "other";
}

function isNameNotFound(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return code === "ENOTFOUND" || code === "EAI_AGAIN" ||
    code === "EAI_NONAME" ||
    (e instanceof Error && e.message.startsWith("failed to lookup address"));
}
