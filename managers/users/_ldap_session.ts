/**
 * One conversation with a directory, bounded in time: `withDirectory`
 * opens its own `ldapts` client (plain, LDAPS, or upgraded by StartTLS),
 * runs the caller's steps, and always unbinds and closes the sockets, even
 * when the server never answers. Private to this folder.
 *
 * @module
 */
import net from "node:net";
import tls from "node:tls";
import type { Client } from "ldapts";
import { ldapts } from "./_ldapts.ts";
import { CommandError } from "../types.ts";
import { after, type Timer } from "../../proxy/timers.ts";

/** How to reach a directory. */
export interface DirectoryTarget {
  /** `ldap://host:port` or `ldaps://host:port`. */
  url: string;
  /** `"none"`, `"ldaps"` (the URL is ldaps://) or `"starttls"`. */
  tls: "none" | "ldaps" | "starttls";
  /** PEM certificates to trust instead of the system's (from `caFile`). */
  ca?: string;
  /** The longest a whole conversation may take (ms). */
  timeoutMs: number;
}

/** The directory could not be reached, or did not answer in time. */
export class UnreachableError extends Error {
  constructor(readonly url: string, readonly reason: string) {
    super(`cannot reach the directory at ${url}: ${reason}`);
    this.name = "UnreachableError";
  }
}

function isIp(host: string): boolean {
  return net.isIP(host) !== 0;
}

/** The TLS options verifying the server's certificate for `host`. */
function tlsOptions(
  host: string,
  ca: string | undefined,
): tls.ConnectionOptions {
  return {
    host,
    // SNI takes a name, never an address; node verifies against `host`.
    servername: isIp(host) ? undefined : host,
    ca,
    rejectUnauthorized: true,
  };
}

function reasonOf(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    const first = e.message.split("\n").at(-1)?.trim() || e.name;
    return typeof code === "string" && !first.includes(code)
      ? `${first} (${code})`
      : first;
  }
  return String(e);
}

/**
 * Runs `steps` on a fresh client connected to `target`. Errors the server
 * answers (an LDAP result code) are passed on as they are; anything else
 * (refused, reset, TLS failure, no answer within `timeoutMs`) becomes an
 * {@link UnreachableError}. The client is always unbound and its sockets
 * destroyed.
 */
export async function withDirectory<T>(
  target: DirectoryTarget,
  steps: (client: Client) => Promise<T>,
): Promise<T> {
  const url = new URL(target.url);
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const sockets: net.Socket[] = [];
  const keep = <S extends net.Socket>(s: S): S => {
    sockets.push(s);
    return s;
  };
  const client = new (ldapts().Client)({
    url: target.url,
    connectTimeout: target.timeoutMs,
    timeout: target.timeoutMs,
    // Given tlsOptions, ldapts speaks TLS from the start: LDAPS only.
    tlsOptions: target.tls === "ldaps"
      ? tlsOptions(host, target.ca)
      : undefined,
    // Kept so that a server which never answers can be cut off below.
    createConnection: ((port: number, h: string) =>
      keep(net.connect(port, h))) as typeof net.connect,
    createSecureConnection: ((...args: unknown[]) =>
      keep(
        (tls.connect as (...a: unknown[]) => tls.TLSSocket)(...args),
      )) as typeof tls.connect,
  });
  let timer: Timer | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = after(
      target.timeoutMs,
      () =>
        reject(
          new UnreachableError(
            target.url,
            `no answer within ${target.timeoutMs / 1000} s`,
          ),
        ),
    );
  });
  const work = (async () => {
    if (target.tls === "starttls") {
      await client.startTLS(tlsOptions(host, target.ca));
    }
    return await steps(client);
  })();
  // The loser of the race must not become an unhandled rejection.
  work.catch(() => {});
  try {
    return await Promise.race([work, deadline]);
  } catch (e) {
    if (
      e instanceof ldapts().ResultCodeError || e instanceof UnreachableError ||
      e instanceof CommandError
    ) throw e;
    throw new UnreachableError(target.url, reasonOf(e));
  } finally {
    timer?.cancel();
    // Unbind politely, but never wait long for it.
    let unbindTimer: Timer | undefined;
    await Promise.race([
      client.unbind().catch(() => {}),
      new Promise<void>((r) => unbindTimer = after(1000, r)),
    ]);
    unbindTimer?.cancel();
    for (const s of sockets) s.destroy();
  }
}
