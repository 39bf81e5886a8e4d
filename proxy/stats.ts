/**
 * The data path's counters: one plain object per running proxy
 * (`RunningProxy.stats`), whose number fields the handlers increment in
 * place. Nothing here allocates, looks anything up by a label or formats
 * anything: whoever exposes the counters (the API's `/metrics`) reads the
 * fields and adds the labels when it is asked.
 *
 * ```ts
 * const proxy = await startProxy(config, policy);
 * proxy.stats.requestsAllowed; // requests the policy let through so far
 * ```
 *
 * @module
 */

/** What a finished exchange came to, for the access log and the counters. */
export type Outcome =
  /** The policy allowed it (or it was the proxy's own page). */
  | "allowed"
  /** The rule refused it (or a CONNECT to a port not allowed). */
  | "refused"
  /** A download quota is reached. */
  | "quota"
  /** Proxy credentials are required (407). */
  | "auth"
  /** The proxy could not serve it: a bad request, an upstream that failed. */
  | "error";

/** Why a dial failed, as the counters tell it apart. */
export type DialFailureKind =
  /** The deadline (`dialTimeout`) ran out. */
  | "timeout"
  /** The origin refused the connection. */
  | "refused"
  /** The host name did not resolve. */
  | "dns"
  /** The parent proxy could not be reached or would not connect. */
  | "parent"
  /** Anything else (unreachable network, a source address that cannot be bound). */
  | "other";

/** The counters and gauges of one running proxy; see the module documentation. */
export interface ProxyStats {
  /** Finished exchanges by {@link Outcome}. */
  requestsAllowed: number;
  requestsRefused: number;
  requestsQuota: number;
  requestsAuth: number;
  requestsError: number;
  /** Bytes read from upstream connections (heads, bodies, tunnels). */
  bytesFromUpstream: number;
  /** Bytes written to upstream connections (heads, bodies, tunnels). */
  bytesToUpstream: number;
  /** Client connections open now. */
  clientConnections: number;
  /** Client connections accepted so far (those refused at the limit too). */
  connectionsAccepted: number;
  /** Tunnels (CONNECT, upgraded connections) open now. */
  tunnels: number;
  /** Failed dials by {@link DialFailureKind}. */
  dialTimeouts: number;
  dialRefused: number;
  dialDns: number;
  dialParent: number;
  dialOther: number;
  /** Upstreams that did not answer within `responseTimeout` (504). */
  responseTimeouts: number;
}

/** Fresh counters, all zero. */
export function newProxyStats(): ProxyStats {
  return {
    requestsAllowed: 0,
    requestsRefused: 0,
    requestsQuota: 0,
    requestsAuth: 0,
    requestsError: 0,
    bytesFromUpstream: 0,
    bytesToUpstream: 0,
    clientConnections: 0,
    connectionsAccepted: 0,
    tunnels: 0,
    dialTimeouts: 0,
    dialRefused: 0,
    dialDns: 0,
    dialParent: 0,
    dialOther: 0,
    responseTimeouts: 0,
  };
}

/** Exchanges finished so far, whatever they came to. */
export function finishedRequests(stats: ProxyStats): number {
  return stats.requestsAllowed + stats.requestsRefused + stats.requestsQuota +
    stats.requestsAuth + stats.requestsError;
}

/** Counts one finished exchange by its outcome. */
export function countOutcome(stats: ProxyStats, outcome: Outcome): void {
  switch (outcome) {
    case "allowed":
      stats.requestsAllowed++;
      break;
    case "refused":
      stats.requestsRefused++;
      break;
    case "quota":
      stats.requestsQuota++;
      break;
    case "auth":
      stats.requestsAuth++;
      break;
    default:
      stats.requestsError++;
  }
}

/** Counts one failed dial by its kind. */
export function countDialFailure(
  stats: ProxyStats,
  kind: DialFailureKind,
): void {
  switch (kind) {
    case "timeout":
      stats.dialTimeouts++;
      break;
    case "refused":
      stats.dialRefused++;
      break;
    case "dns":
      stats.dialDns++;
      break;
    case "parent":
      stats.dialParent++;
      break;
    default:
      stats.dialOther++;
  }
}
