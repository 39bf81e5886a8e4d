/**
 * The captive-portal exception: a tunnel to the gateway's own API (its
 * login page) is always let through, as captive portals do, so a browser
 * that sends everything through the proxy can log in before it may browse.
 * While such a tunnel is open the API is told who is behind it, so it sees
 * the browser's address, not the proxy's.
 *
 * @module
 */
import type { Decision, Policy, RequestFacts } from "../proxy/policy.ts";

/** Options of {@link withCaptivePortal}. */
export interface CaptivePortalOptions {
  /** The port the API listens on. */
  apiPort: number;
  /** The API's public URL (`[api] publicUrl`); its host is one of ours. */
  publicUrl: string;
  /**
   * Filled while a tunnel to the API is open: our end of it
   * (`address|port`, as the API sees its peer) -> the client's IP.
   */
  behind: Map<string, string>;
  /** This machine's names and addresses (default: asked of Deno). */
  ownHosts?: Iterable<string>;
}

/** This machine's host name, `localhost` and its interfaces' addresses. */
function machineHosts(): string[] {
  const hosts = ["localhost", Deno.hostname().toLowerCase()];
  for (const iface of Deno.networkInterfaces()) hosts.push(iface.address);
  return hosts;
}

/**
 * The policy the proxy asks: `policy`'s, except for a CONNECT to the API's
 * port on one of this machine's names or addresses, which is allowed
 * directly and reported in `behind` while it lasts.
 */
export function withCaptivePortal(
  policy: Policy,
  options: CaptivePortalOptions,
): Policy {
  const own = new Set(options.ownHosts ?? machineHosts());
  try {
    own.add(
      new URL(options.publicUrl).hostname.replace(/^\[|\]$/g, "")
        .toLowerCase(),
    );
  } catch { /* validated with the API's configuration */ }
  const { apiPort, behind } = options;
  return {
    decide(facts: RequestFacts): Decision | Promise<Decision> {
      if (
        facts.method !== "CONNECT" || facts.port !== apiPort ||
        !own.has(facts.host)
      ) {
        return policy.decide(facts);
      }
      return {
        allowed: true,
        route: { kind: "direct" },
        onUpstream(local) {
          const key = `${local.hostname}|${local.port}`;
          behind.set(key, facts.clientIp);
          return () => behind.delete(key);
        },
      };
    },
  };
}
