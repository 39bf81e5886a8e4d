/**
 * The access log: one {@link AccessRecord} per finished exchange, handed to
 * `policy.record`, with Squid-like result codes (`TCP_MISS/200`,
 * `TCP_TUNNEL/200`, `TCP_DENIED/403`, `NONE/400`, `TCP_MISS_ABORTED/200`).
 *
 * @module
 */
import type { AccessRecord, Policy } from "./policy.ts";

/** What one exchange gathered while it ran; finished by {@link logExchange}. */
export interface Exchange {
  start: number;
  time: Date;
  clientIp: string;
  method: string;
  url: string;
  user?: string;
  hierarchy: string;
  /** Squid result tag without status: TCP_MISS, TCP_TUNNEL, TCP_DENIED, NONE. */
  tag: string;
  status: number;
  /** Bytes sent to the client. */
  bytes: number;
  contentType?: string;
}

/** A fresh exchange record for a request read now. */
export function newExchange(clientIp: string, time: Date): Exchange {
  return {
    start: performance.now(),
    time,
    clientIp,
    method: "-",
    url: "-",
    hierarchy: "NONE/-",
    tag: "NONE",
    status: 0,
    bytes: 0,
  };
}

/** Hands the finished exchange to the policy's log; never throws. */
export function logExchange(policy: Policy, x: Exchange): void {
  if (!policy.record) return;
  const entry: AccessRecord = {
    time: x.time,
    elapsedMs: Math.round(performance.now() - x.start),
    clientIp: x.clientIp,
    result: `${x.tag}/${x.status}`,
    bytes: x.bytes,
    method: x.method,
    url: x.url,
    hierarchy: x.hierarchy,
  };
  if (x.user !== undefined) entry.user = x.user;
  if (x.contentType !== undefined) entry.contentType = x.contentType;
  try {
    policy.record(entry);
  } catch {
    // The log must never take the data path down.
  }
}
