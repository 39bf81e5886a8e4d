/**
 * Where the access log's lines go: standard output, written in batches (a
 * write per line costs a third of the proxy's time under load), or a
 * minimal syslog sender (RFC 3164 over UDP) when `managers.toml` sets
 * `syslogAddr`. Neither blocks nor throws: a lost line is a lost line,
 * never a refused request (the original refused every request when no local
 * syslog socket was there).
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

/** A destination for log lines. */
export interface LogSink {
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
): LogSink {
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

/**
 * Lines to standard output, gathered and written at most every `flushMs`
 * (default 100 ms) or when 64 KiB are waiting, and at `close()`. A crash
 * loses at most the last `flushMs` of lines.
 */
export function openStdoutLog(options: { flushMs?: number } = {}): LogSink {
  const encoder = new TextEncoder();
  let pending: string[] = [];
  let size = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    if (pending.length === 0) return;
    const bytes = encoder.encode(pending.join("\n") + "\n");
    pending = [];
    size = 0;
    try {
      let off = 0;
      while (off < bytes.length) {
        off += Deno.stdout.writeSync(bytes.subarray(off));
      }
    } catch { /* standard output is gone: nothing to log to */ }
  };
  return {
    send(line: string) {
      pending.push(line);
      size += line.length + 1;
      if (size >= 64 * 1024) return flush();
      if (timer === undefined) {
        timer = setTimeout(flush, options.flushMs ?? 100);
        Deno.unrefTimer(timer);
      }
    },
    close: flush,
  };
}
