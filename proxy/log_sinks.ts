/**
 * Where the access log's lines go:
 *
 * - standard output ({@link openStdoutLog}), the default;
 * - a file ({@link openFileLog}, `accessLog` in `managers.toml`), opened
 *   again by {@link LogSink.reopen} (SIGUSR1) after logrotate renamed it;
 * - syslog ({@link openSyslog}, `syslogAddr`), over UDP or TCP, in the
 *   format of RFC 3164 (the original's) or RFC 5424.
 *
 * Standard output and files are written in batches (a write per line costs
 * a third of the proxy's time under load). No sink blocks or throws: a lost
 * line is a lost line, never a refused request (the original refused every
 * request when no local syslog socket was there).
 *
 * @module
 */
import { after, type Timer } from "./timers.ts";
import type { SyslogOptions } from "./syslog.ts";

/** A destination for log lines. */
export interface LogSink {
  send(message: string): void;
  /** Writes what is pending and lets go of the destination. */
  close(): void | Promise<void>;
  /**
   * Opens the destination again (a file logrotate renamed: the next lines
   * go to a new file at the configured path). Absent where it means nothing.
   */
  reopen?(): void;
}

/**
 * Opens a sender to the syslog server at `addr` (see proxy/syslog.ts, which
 * is loaded here, at the first one: a gateway that logs to a file or to
 * standard output does not hold it). Rejects with an Error for an address
 * that is not one.
 */
export async function openSyslog(
  addr: string,
  options: SyslogOptions = {},
): Promise<LogSink> {
  const { syslogSink } = await import("./syslog.ts");
  return syslogSink(addr, options);
}

const utf8 = new TextEncoder();

/**
 * Lines gathered and handed to `write` at most every `flushMs` or when 64
 * KiB are waiting, and at `flush()`.
 */
function batched(
  write: (bytes: Uint8Array) => void,
  flushMs: number,
): { send(line: string): void; flush(): void } {
  let pending: string[] = [];
  let size = 0;
  let timer: Timer | undefined;
  const flush = () => {
    timer?.cancel();
    timer = undefined;
    if (pending.length === 0) return;
    const bytes = utf8.encode(pending.join("\n") + "\n");
    pending = [];
    size = 0;
    write(bytes);
  };
  return {
    send(line: string) {
      pending.push(line);
      size += line.length + 1;
      if (size >= 64 * 1024) return flush();
      timer ??= after(flushMs, flush);
    },
    flush,
  };
}

function writeAllSync(
  file: { writeSync(p: Uint8Array): number },
  p: Uint8Array,
) {
  let off = 0;
  while (off < p.length) off += file.writeSync(p.subarray(off));
}

/**
 * Lines to standard output, gathered and written at most every `flushMs`
 * (default 100 ms) or when 64 KiB are waiting, and at `close()`. A crash
 * loses at most the last `flushMs` of lines.
 */
export function openStdoutLog(options: { flushMs?: number } = {}): LogSink {
  const lines = batched((bytes) => {
    try {
      writeAllSync(Deno.stdout, bytes);
    } catch { /* standard output is gone: nothing to log to */ }
  }, options.flushMs ?? 100);
  return { send: lines.send, close: lines.flush };
}

/** Options of {@link openFileLog}. */
export interface FileLogOptions {
  /** Default 100 ms (see {@link openStdoutLog}). */
  flushMs?: number;
  /** Told when the file cannot be written or opened again (default: standard error). */
  warn?: (message: string) => void;
}

/**
 * Lines appended to the file at `path` (created with mode 0640 when
 * missing), in batches as {@link openStdoutLog} writes them. `reopen()`
 * writes what is pending to the file open now, then opens `path` again:
 * after logrotate renamed the file, the next lines go to a new one. Throws
 * at once, with what to do, when the file cannot be opened.
 */
export function openFileLog(
  path: string,
  options: FileLogOptions = {},
): LogSink {
  const warn = options.warn ??
    ((m: string) => console.error(`pmproxy: warning: ${m}`));
  const open = () =>
    Deno.openSync(path, { append: true, create: true, mode: 0o640 });
  let file: Deno.FsFile | undefined;
  try {
    file = open();
  } catch (e) {
    throw new Error(
      `the access log file ${path} cannot be opened: ${
        (e as Error).message
      }; create its directory and let pmproxy write there, or change accessLog in managers.toml`,
    );
  }
  // The first failure is told, not every batch after it.
  let failing = false;
  const failed = (what: string, e: unknown) => {
    if (!failing) {
      warn(
        `the access log file ${path}: ${what}: ${
          (e as Error).message
        }; lines are lost until it works again`,
      );
    }
    failing = true;
  };
  const lines = batched((bytes) => {
    if (file === undefined) {
      try {
        file = open();
      } catch (e) {
        return failed("cannot open it again", e);
      }
    }
    try {
      writeAllSync(file, bytes);
      failing = false;
    } catch (e) {
      failed("cannot write", e);
    }
  }, options.flushMs ?? 100);
  const closeFile = () => {
    try {
      file?.close();
    } catch { /* already closed */ }
    file = undefined;
  };
  return {
    send: lines.send,
    close() {
      lines.flush();
      closeFile();
    },
    reopen() {
      lines.flush();
      closeFile();
      try {
        file = open();
        failing = false;
      } catch (e) {
        failed("cannot open it again", e);
      }
    },
  };
}

/** One sink that sends every line to each of `sinks` (a file and syslog, say). */
export function teeLogs(sinks: LogSink[]): LogSink {
  if (sinks.length === 1) return sinks[0];
  return {
    send(line: string) {
      for (const s of sinks) s.send(line);
    },
    async close() {
      for (const s of sinks) await s.close();
    },
    reopen() {
      for (const s of sinks) s.reopen?.();
    },
  };
}
