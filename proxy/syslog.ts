/**
 * The access log to a syslog server (`syslogAddr` in `managers.toml`), over
 * UDP or TCP, in the format of RFC 3164 (the original's) or RFC 5424.
 * Loaded by log_sinks.ts's `openSyslog` when a sink is opened, not at start.
 *
 * @module
 */
import type { Socket } from "node:dgram";
import { sleep } from "./timers.ts";

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

/**
 * A sender of lines to a syslog server: a log_sinks.ts `LogSink` (this
 * file does not import that one: log_sinks.ts loads this one).
 */
export interface SyslogSink {
  send(message: string): void;
  close(): void | Promise<void>;
}

/** Which syslog message format: the BSD one (default) or RFC 5424's. */
export type SyslogFormat = "rfc3164" | "rfc5424";

/** Options of {@link syslogSink}. */
export interface SyslogOptions {
  /** The APP-NAME / tag (default `pmproxy`). */
  tag?: string;
  /** Default `rfc3164`, as the original wrote. */
  format?: SyslogFormat;
}

/** A syslog server's address, parsed. */
export interface SyslogTarget {
  transport: "udp" | "tcp";
  /** Without brackets. */
  host: string;
  port: number;
}

/**
 * Parses `host:port`, `[v6]:port` or a host alone (port 514), optionally
 * after `udp://` (the default) or `tcp://`. Answers a sentence saying what
 * to write when it is none of these.
 */
export function parseSyslogAddr(addr: string): SyslogTarget | string {
  const scheme = /^([a-z]+):\/\//i.exec(addr);
  let transport: "udp" | "tcp" = "udp";
  let rest = addr;
  if (scheme) {
    const s = scheme[1].toLowerCase();
    if (s !== "udp" && s !== "tcp") {
      return `syslogAddr "${addr}": "${
        scheme[1]
      }://" is not a transport: write udp://host:port or tcp://host:port`;
    }
    transport = s;
    rest = addr.slice(scheme[0].length);
  }
  const m = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(rest) ??
    /^([^:/\s[\]]+)(?::(\d{1,5}))?$/.exec(rest);
  const port = Number(m?.[2] ?? 514);
  if (!m || port < 1 || port > 65535) {
    return `syslogAddr "${addr}" is not host:port: write e.g. "127.0.0.1:514" (UDP) or "tcp://logs.example.org:514"`;
  }
  return { transport, host: m[1], port };
}

/**
 * Opens a sender to `addr` (see {@link parseSyslogAddr}). Throws an Error
 * for an address that is none of those.
 *
 * Over TCP, an RFC 5424 message is framed by its length (RFC 6587 octet
 * counting), an RFC 3164 one ends with a newline; a connection that fails
 * is made again after a pause, and lines sent meanwhile wait (at most 1
 * MiB of them; beyond, they are lost).
 */
export function syslogSink(
  addr: string,
  options: SyslogOptions = {},
): SyslogSink {
  const target = parseSyslogAddr(addr);
  if (typeof target === "string") throw new Error(target);
  const format = options.format ?? "rfc3164";
  const appName = options.tag ?? "pmproxy";
  const hostname = Deno.hostname();
  const message = (text: string): string => {
    const d = new Date();
    if (format === "rfc5424") {
      // VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG
      return `<${PRI}>1 ${d.toISOString()} ${hostname} ${appName} ${Deno.pid} access - ${text}`;
    }
    const stamp = `${MONTHS[d.getMonth()]} ${String(d.getDate()).padStart(2)} ${
      d.toTimeString().slice(0, 8)
    }`;
    return `<${PRI}>${stamp} ${hostname} ${appName}[${Deno.pid}]: ${text}`;
  };
  if (target.transport === "tcp") {
    const frame = format === "rfc5424"
      ? (m: string) => `${utf8.encode(m).length} ${m}`
      : (m: string) => `${m}\n`;
    return tcpSyslog(target, (text) => frame(message(text)));
  }
  // node:dgram is loaded here, not at start: node's compatibility layer
  // costs resident memory that a gateway without UDP syslog need not pay.
  // Lines sent before it is there wait for it (a moment, at most
  // UDP_WAITING lines); a close meanwhile sends them before closing. The
  // specifier is static so that `deno compile` and `deno bundle` keep it.
  let socket: Socket | undefined;
  let waiting: string[] = [];
  let closed = false;
  const closeSocket = () => {
    try {
      socket?.close();
    } catch { /* already closed */ }
  };
  import("node:dgram").then(({ createSocket }) => {
    socket = createSocket(target.host.includes(":") ? "udp6" : "udp4");
    socket.on("error", () => {/* a log line is lost, nothing more */});
    socket.unref();
    for (const m of waiting) socket.send(m, target.port, target.host);
    waiting = [];
    if (closed) closeSocket();
  });
  return {
    send(text: string) {
      const m = message(text);
      if (socket) socket.send(m, target.port, target.host);
      else if (!closed && waiting.length < UDP_WAITING) waiting.push(m);
    },
    close() {
      closed = true;
      if (socket) closeSocket();
    },
  };
}

/** Most UDP syslog lines kept while node:dgram is being loaded. */
const UDP_WAITING = 10_000;

const utf8 = new TextEncoder();
/** Most bytes of syslog lines kept while the TCP connection is down. */
const TCP_BACKLOG = 1024 * 1024;
const TCP_RETRY_MS = 1000;
const TCP_RETRY_MAX_MS = 30_000;

/** Syslog over one TCP connection, made when needed and again after a failure. */
function tcpSyslog(
  target: SyslogTarget,
  framed: (text: string) => string,
): SyslogSink {
  let queue: string[] = [];
  let queued = 0;
  let conn: Deno.TcpConn | undefined;
  let running: Promise<void> | undefined;
  let retryMs = 0;
  let closed = false;

  const drop = () => {
    try {
      conn?.close();
    } catch { /* already closed */ }
    conn = undefined;
  };
  // One writer at a time; it ends when the queue is empty.
  const run = async () => {
    while (queue.length > 0) {
      if (retryMs > 0) {
        if (closed) return;
        await sleep(retryMs);
      }
      const batch = queue.join("");
      try {
        conn ??= await Deno.connect({
          hostname: target.host,
          port: target.port,
        });
        // A log server that is down must not keep the process alive.
        conn.unref();
        // Taken only now: lines wait in the queue while there is no
        // connection, and the batch goes whole or, on failure, is lost.
        queue = [];
        queued = 0;
        const bytes = utf8.encode(batch);
        for (let at = 0; at < bytes.length;) {
          at += await conn.write(bytes.subarray(at));
        }
        retryMs = 0;
      } catch {
        drop();
        retryMs = Math.min(
          retryMs ? retryMs * 2 : TCP_RETRY_MS,
          TCP_RETRY_MAX_MS,
        );
      }
    }
  };
  const kick = () => {
    running ??= run().finally(() => running = undefined);
  };
  return {
    send(text: string) {
      if (closed) return;
      const line = framed(text);
      if (queued + line.length > TCP_BACKLOG) return;
      queue.push(line);
      queued += line.length;
      kick();
    },
    async close() {
      closed = true;
      // What is queued goes out when the connection is up; a server that
      // is down, or slow to answer, is not waited for long.
      if (retryMs === 0 && running) {
        await Promise.race([running, sleep(2000)]);
      }
      drop();
    },
  };
}
