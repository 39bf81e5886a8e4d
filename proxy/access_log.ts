/**
 * The access log: one line per finished exchange in Squid's native
 * `access.log` format, as the original wrote them, handed to the
 * {@link LogSink} given to `startProxy` (standard output or syslog, see
 * log_sinks.ts):
 *
 * ```
 * time.ms elapsed client result/status bytes method URL user hierarchy/peer type
 * 1764064012.345     12 10.0.0.5 TCP_MISS/200 1534 GET http://example.org/ user0 DIRECT/93.184.216.34 text/html
 * ```
 *
 * Result codes are Squid's: `TCP_MISS/200`, `TCP_TUNNEL/200`,
 * `TCP_DENIED/403`, `NONE/400`, `TCP_MISS_ABORTED/200`. The user is the one
 * the policy's decision named; the decision's note is one more tag
 * (`TCP_MISS_SLOWED/200`, `TCP_TUNNEL_SLOWED/200`: past the quota, slowed).
 *
 * @module
 */
import type { LogSink } from "./log_sinks.ts";

/** What one exchange gathered while it ran; finished by {@link logExchange}. */
export interface Exchange {
  /** `performance.now()` when the request head was read. */
  start: number;
  time: Date;
  clientIp: string;
  method: string;
  url: string;
  /** The user the decision accounted the request to. */
  user?: string;
  /** The decision's note (`slowed`), added to the result code. */
  note?: string;
  /** `DIRECT/1.2.3.4`, `FIRST_UP_PARENT/host`, or `NONE/-`. */
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

/**
 * Formats one finished exchange as a Squid native access.log line;
 * `elapsedMs` is the time from its request head to its end.
 */
export function formatAccessLine(x: Exchange, elapsedMs: number): string {
  const seconds = (x.time.getTime() / 1000).toFixed(3);
  const elapsed = String(elapsedMs).padStart(6);
  const user = x.user || "-";
  const type = x.contentType || "-";
  // A note is one more tag of the result code (TCP_MISS_SLOWED/200), the
  // way Squid adds _ABORTED: analysers read the code as one word.
  const tag = x.note
    ? `${x.tag}_${x.note.toUpperCase().replace(/\W/g, "_")}`
    : x.tag;
  return `${seconds} ${elapsed} ${x.clientIp} ${tag}/${x.status} ${x.bytes} ` +
    `${x.method} ${x.url} ${user} ${x.hierarchy} ${type}`;
}

/** Writes the finished exchange's line to `sink` (none: no log); never throws. */
export function logExchange(sink: LogSink | undefined, x: Exchange): void {
  if (sink === undefined) return;
  try {
    sink.send(formatAccessLine(x, Math.round(performance.now() - x.start)));
  } catch {
    // The log must never take the data path down.
  }
}
