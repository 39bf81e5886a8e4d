/**
 * Tunnels: CONNECT, and connections upgraded after a 101 (WebSocket). Once a
 * tunnel is up the proxy only pumps bytes (see relay.ts) and meters what
 * comes from upstream.
 *
 * @module
 */
import type { Decision } from "./policy.ts";
import { dial, DialError } from "./dial.ts";
import { Reader, writeAll } from "./_io.ts";
import { relay } from "./relay.ts";
import { dialFailure, errorResponse } from "./error_pages.ts";
import { type Client, type ProxyContext, sendToClient } from "./_context.ts";
import type { Exchange } from "./access_log.ts";
import { countDialFailure } from "./stats.ts";

const ESTABLISHED = new TextEncoder().encode(
  "HTTP/1.1 200 Connection established\r\n\r\n",
);

type Allowed = Extract<Decision, { allowed: true }>;

/**
 * Counts a tunnel for the client's address; false (and nothing counted) when
 * the client already has as many as allowed.
 */
export function openTunnelSlot(ctx: ProxyContext, ip: string): boolean {
  const n = ctx.tunnels.get(ip) ?? 0;
  if (n >= ctx.config.maxTunnelsPerClient) return false;
  ctx.tunnels.set(ip, n + 1);
  ctx.stats.tunnels++;
  return true;
}

/** Gives back a slot taken by {@link openTunnelSlot}. */
export function closeTunnelSlot(ctx: ProxyContext, ip: string): void {
  const n = (ctx.tunnels.get(ip) ?? 1) - 1;
  ctx.stats.tunnels--;
  if (n <= 0) ctx.tunnels.delete(ip);
  else ctx.tunnels.set(ip, n);
}

/**
 * client -> proxy (CONNECT host:port) -> origin (direct, or via the parent
 *   the route names: dial() makes the parent's own CONNECT or SOCKS5 hop)
 *
 * The client connection is consumed: after a tunnel nothing else can be
 * read from it, so the caller closes it.
 */
export async function tunnelConnect(
  ctx: ProxyContext,
  client: Client,
  target: { host: string; port: number },
  decision: Allowed,
  x: Exchange,
): Promise<void> {
  if (!openTunnelSlot(ctx, client.ip)) {
    await answer(
      client,
      x,
      503,
      `Too many tunnels are open from ${client.ip} (at most ${ctx.config.maxTunnelsPerClient}); close some connections and retry.`,
      ctx,
    );
    return;
  }
  // Once the tunnel is up, holdTunnel owns the slot (and gives it back).
  let held: Promise<void> | undefined;
  try {
    let dialed;
    try {
      dialed = await dial(decision.route, target, {
        timeoutMs: ctx.config.dialTimeoutMs,
        purpose: "tunnel",
      });
    } catch (e) {
      if (!(e instanceof DialError)) throw e;
      countDialFailure(ctx.stats, e.kind);
      const failed = dialFailure(e);
      x.tag = "TCP_TUNNEL";
      await answer(client, x, failed.status, failed.message, ctx);
      return;
    }
    x.hierarchy = dialed.hierarchy;
    // The policy may want to know which of our sockets carries this client
    // (the gateway's own API reached through the proxy).
    const local = dialed.conn.localAddr;
    const up = new Reader(dialed.conn);
    up.meter = decision.meter;
    // What the client sends up is metered as it is read, the bytes sent
    // with the CONNECT head included (the client connection ends with the
    // tunnel, so its reader's meter is never used for anything else).
    const upMeter = decision.upMeter;
    if (upMeter) {
      if (client.reader.buffered > 0) upMeter.chunk(client.reader.buffered);
      client.reader.meter = upMeter;
    }
    client.upstream = dialed.conn;
    let upstreamClosed: (() => void) | undefined;
    try {
      if (decision.onUpstream && local?.transport === "tcp") {
        upstreamClosed = decision.onUpstream(local);
      }
    } catch {
      // A failing policy hook only loses what it wanted to know; the tunnel
      // goes on, and its sockets are closed as usual below (none leaks).
    }
    // Tunnels may idle for long (WebSocket, IMAP IDLE): no inactivity limit,
    // but TCP keep-alive lets the kernel find a peer that vanished.
    client.watch.arm(0, "tunnel");
    keepAlive(client.conn);
    keepAlive(dialed.conn);
    client.reader.watch = undefined;
    // Returned, not awaited: this frame (the target, the decision, the
    // dialled connection's facts) is let go while the tunnel is held.
    held = holdTunnel(ctx, client, { up, x, upstreamClosed });
    return held;
  } finally {
    if (held === undefined) closeTunnelSlot(ctx, client.ip);
  }
}

/**
 * client <-> proxy <-> origin, once the tunnel is up: says so to the
 * client, pumps both ways until both end, then counts and closes
 * everything and gives the client's tunnel slot back. It holds only what
 * that needs.
 */
async function holdTunnel(
  ctx: ProxyContext,
  client: Client,
  held: { up: Reader; x: Exchange; upstreamClosed: (() => void) | undefined },
): Promise<void> {
  const { up, x } = held;
  try {
    await writeAll(client.conn, ESTABLISHED);
    x.bytes += ESTABLISHED.length;
    x.tag = "TCP_TUNNEL";
    x.status = 200;
    const moved = await relay(client.reader, up);
    x.bytes += moved.down;
    ctx.stats.bytesToUpstream += moved.up;
    if (moved.stopped) x.tag = "TCP_TUNNEL_ABORTED";
  } finally {
    ctx.stats.bytesFromUpstream += up.bytesRead;
    client.reader.meter = undefined;
    client.abort();
    up.release();
    client.upstream = undefined;
    held.upstreamClosed?.();
    closeTunnelSlot(ctx, client.ip);
  }
}

/**
 * client -> proxy (GET, Upgrade: websocket) -> origin (101 Switching Protocols)
 *   then both sides speak the new protocol through the proxy as a tunnel.
 *
 * Called after the 101 head was written to the client. Bytes either side
 * already sent after its head are in the readers and go first.
 */
export async function tunnelUpgrade(
  ctx: ProxyContext,
  client: Client,
  upstream: Reader,
  x: Exchange,
): Promise<void> {
  const counted = openTunnelSlot(ctx, client.ip);
  client.watch.arm(0, "upgraded tunnel");
  keepAlive(client.conn);
  keepAlive(upstream.conn);
  client.reader.watch = undefined;
  upstream.watch = undefined;
  try {
    if (!counted) return; // over the limit: closing is the answer
    // Its bytes are counted with the exchange it came from (forward.ts):
    // they go through the same readers.
    const moved = await relay(client.reader, upstream);
    x.bytes += moved.down;
    if (moved.stopped) x.tag = "TCP_MISS_ABORTED";
  } finally {
    if (counted) closeTunnelSlot(ctx, client.ip);
    client.abort();
  }
}

function keepAlive(conn: unknown) {
  try {
    (conn as Partial<Deno.TcpConn>).setKeepAlive?.(true);
  } catch {
    // Not a TCP socket, or already closed: nothing to keep alive.
  }
}

async function answer(
  client: Client,
  x: Exchange,
  status: number,
  message: string,
  ctx: ProxyContext,
) {
  const page = errorResponse(status, message, {
    close: true,
    loginUrl: status === 503 ? undefined : ctx.loginUrl,
  });
  x.status = status;
  x.outcome = "error";
  await sendToClient(client, x, page);
}
