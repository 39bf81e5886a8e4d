/**
 * A minimal syslog sender (RFC 3164 over UDP) for the access log, used when
 * `managers.toml` sets `syslogAddr`. Sending never blocks or throws: a lost
 * datagram is a lost log line, never a refused request (the original
 * refused every request when no local syslog socket was there).
 *
 * @module
 */
import { createSocket } from "node:dgram";

const MONTHS = [
  "Jan",
  "Feb",
  "Mar",
  "Apr",
  "May",
  "Jun",
  "Jul",
  "Aug",
  "Sep",
  "Oct",
  "Nov",
  "Dec",
];
/** Facility daemon (3), severity informational (6). */
const PRI = 3 * 8 + 6;

/** A syslog destination. */
export interface SyslogSender {
  send(message: string): void;
  close(): void;
}

/**
 * Opens a sender to `addr` (`host:port`, `[v6]:port`, or a host with the
 * default port 514).
 */
export function openSyslog(
  addr: string,
  options: { tag?: string } = {},
): SyslogSender {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(addr) ??
    /^([^:]+)(?::(\d+))?$/.exec(addr);
  if (!m) {
    throw new Error(
      `syslogAddr "${addr}" is not host:port (e.g. "127.0.0.1:514")`,
    );
  }
  const host = m[1];
  const port = Number(m[2] ?? 514);
  const socket = createSocket(host.includes(":") ? "udp6" : "udp4");
  socket.on("error", () => {/* a log line is lost, nothing more */});
  socket.unref();
  const tag = `${options.tag ?? "pmproxy"}[${Deno.pid}]`;
  const hostname = Deno.hostname();
  return {
    send(message: string) {
      const d = new Date();
      const stamp = `${MONTHS[d.getMonth()]} ${
        String(d.getDate()).padStart(2)
      } ${d.toTimeString().slice(0, 8)}`;
      socket.send(
        `<${PRI}>${stamp} ${hostname} ${tag}: ${message}`,
        port,
        host,
      );
    },
    close() {
      try {
        socket.close();
      } catch { /* already closed */ }
    },
  };
}
