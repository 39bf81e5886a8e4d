/**
 * The access log's lines in Squid's native `access.log` format, as the
 * original wrote them:
 *
 * ```
 * time.ms elapsed client result/status bytes method URL user hierarchy/peer type
 * 1764064012.345     12 10.0.0.5 TCP_MISS/200 1534 GET http://example.org/ user0 DIRECT/93.184.216.34 text/html
 * ```
 *
 * @module
 */
import type { AccessRecord } from "../proxy/policy.ts";

/** Formats one finished exchange as a Squid native access.log line. */
export function formatAccessLine(entry: AccessRecord): string {
  const seconds = (entry.time.getTime() / 1000).toFixed(3);
  return [
    seconds,
    String(entry.elapsedMs).padStart(6),
    entry.clientIp,
    entry.result,
    entry.bytes,
    entry.method,
    entry.url,
    entry.user || "-",
    entry.hierarchy,
    entry.contentType || "-",
  ].join(" ");
}
