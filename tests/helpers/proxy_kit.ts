/**
 * Test kit for the proxy: a fake Policy, raw-socket clients and origins.
 *
 * The fake Policy is legitimate here: proxy/ defines the seam
 * (proxy/policy.ts), and these tests exercise the data path on its own side
 * of it. The real policy (managers/) is tested through the same seam in its
 * own tests and end to end in the e2e tests.
 *
 * @module
 */
import {
  type Decision,
  GO_ON,
  type LogSink,
  type Meter,
  type Policy,
  type ProxyConfig,
  proxyConfigFrom,
  type RequestFacts,
  type RunningProxy,
  startProxy,
  STOP,
} from "../../proxy/mod.ts";

/**
 * One access log line as the proxy wrote it (Squid native format, see
 * proxy/access_log.ts), split into its fields. The user is taken to have no
 * space in it (the tests' users do not).
 */
export interface LoggedExchange {
  /** The whole line. */
  line: string;
  clientIp: string;
  /** `TCP_MISS/200` and the like. */
  result: string;
  bytes: number;
  method: string;
  url: string;
  /** Undefined where the line has `-`. */
  user?: string;
  hierarchy: string;
  /** Undefined where the line has `-`. */
  contentType?: string;
}

const SQUID_LINE =
  /^\d+\.\d{3} +\d+ (\S+) (\S+) (\d+) (\S+) (\S+) (\S+) (\S+) (.*)$/;

/** Splits a Squid native line; a line that does not parse keeps `line` only. */
export function parseAccessLine(line: string): LoggedExchange {
  const m = SQUID_LINE.exec(line);
  if (!m) {
    return {
      line,
      clientIp: "",
      result: `unparsed: ${line}`,
      bytes: 0,
      method: "",
      url: "",
      hierarchy: "",
    };
  }
  const e: LoggedExchange = {
    line,
    clientIp: m[1],
    result: m[2],
    bytes: Number(m[3]),
    method: m[4],
    url: m[5],
    hierarchy: m[7],
  };
  if (m[6] !== "-") e.user = m[6];
  if (m[8] !== "-") e.contentType = m[8];
  return e;
}

/**
 * A fake policy that records what it was asked, and an access log sink
 * (handed to the proxy by {@link startTestProxy}) that keeps what was logged.
 */
export interface FakePolicy extends Policy {
  facts: RequestFacts[];
  /** The access log's lines, parsed, in the order they were written. */
  records: LoggedExchange[];
  /** The sink that fills {@link FakePolicy.records}. */
  accessLog: LogSink;
}

/** A policy answering `decide` (default: allow direct). */
export function fakePolicy(
  decide: (f: RequestFacts) => Decision | Promise<Decision> = () => ({
    allowed: true,
    route: { kind: "direct" },
  }),
): FakePolicy {
  const p: FakePolicy = {
    facts: [],
    records: [],
    decide(f) {
      p.facts.push(f);
      return decide(f);
    },
    accessLog: {
      send(line) {
        p.records.push(parseAccessLine(line));
      },
      close() {},
    },
  };
  return p;
}

/** A meter that lets `limit` bytes through, then says STOP. */
export function quotaMeter(limit: number): Meter & { seen: number } {
  const m = {
    seen: 0,
    stopReason: "quota reached",
    chunk(n: number) {
      m.seen += n;
      return m.seen > limit ? STOP : GO_ON;
    },
  };
  return m;
}

/** A meter that asks to wait `ms` after every chunk. */
export function throttleMeter(ms: number): Meter & { calls: number } {
  const m = {
    calls: 0,
    chunk(_n: number) {
      m.calls++;
      return ms;
    },
  };
  return m;
}

/** Starts a proxy on 127.0.0.1:0 with `server`/`proxy` table overrides. */
export async function startTestProxy(
  policy: Policy,
  table: Record<string, unknown> = {},
  loginUrl = "https://gateway.test:4443/",
): Promise<RunningProxy & { config: ProxyConfig; url: string }> {
  const t = { ...table } as Record<string, unknown>;
  t.server = { addr: "127.0.0.1:0", ...(t.server as object ?? {}) };
  const config = proxyConfigFrom(t, { file: "server.toml" });
  // A fake policy brings the access log sink that keeps its records.
  const accessLog = (policy as Partial<FakePolicy>).accessLog;
  const p = await startProxy(config, policy, { loginUrl, accessLog });
  return Object.assign(p, {
    config,
    url: `http://127.0.0.1:${p.addr.port}`,
  });
}

const dec = new TextDecoder("latin1");
const enc = new TextEncoder();

/** A raw client connection with simple reading helpers. */
export class RawClient {
  text = "";
  closed = false;
  #buf = new Uint8Array(64 * 1024);
  constructor(readonly conn: Deno.TcpConn) {}

  static async open(port: number): Promise<RawClient> {
    return new RawClient(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  async send(s: string | Uint8Array): Promise<void> {
    const b = typeof s === "string" ? enc.encode(s) : s;
    let at = 0;
    while (at < b.length) at += await this.conn.write(b.subarray(at));
  }

  /** Reads until `pred(text)` holds or the peer closes; bounded by `ms`. */
  async readUntil(
    pred: (text: string) => boolean = () => false,
    ms = 5000,
  ): Promise<string> {
    const timer = setTimeout(() => this.close(), ms);
    try {
      while (!pred(this.text) && !this.closed) {
        let n: number | null = null;
        try {
          n = await this.conn.read(this.#buf);
        } catch {
          n = null;
        }
        if (n === null) {
          this.closed = true;
          break;
        }
        this.text += dec.decode(this.#buf.subarray(0, n));
      }
    } finally {
      clearTimeout(timer);
    }
    return this.text;
  }

  close(): void {
    this.closed = true;
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }
}

/** A raw TCP origin: `handle` gets each connection; counts connections. */
export interface RawOrigin {
  port: number;
  connections: number;
  close(): Promise<void>;
}

/** Starts a raw origin on 127.0.0.1 on a free port. */
export function startRawOrigin(
  handle: (conn: Deno.TcpConn, index: number) => Promise<void>,
): RawOrigin {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.TcpConn>();
  const tasks: Promise<void>[] = [];
  const origin: RawOrigin = {
    port: (listener.addr as Deno.NetAddr).port,
    connections: 0,
    async close() {
      try {
        listener.close();
      } catch { /* closed */ }
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await loop;
      await Promise.allSettled(tasks);
    },
  };
  const loop = (async () => {
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch {
        return;
      }
      conns.add(conn);
      const i = origin.connections++;
      tasks.push(
        handle(conn, i).catch(() => {}).finally(() => {
          conns.delete(conn);
          try {
            conn.close();
          } catch { /* closed */ }
        }),
      );
    }
  })();
  return origin;
}

/** Reads one request head from a raw connection (bytes after it are returned too). */
export async function readRequestHead(
  conn: Deno.Conn,
  already = "",
): Promise<{ head: string; rest: string } | null> {
  let text = already;
  const buf = new Uint8Array(16 * 1024);
  for (let i = 0; i < 10_000; i++) {
    const end = text.indexOf("\r\n\r\n");
    if (end >= 0) {
      return { head: text.slice(0, end + 4), rest: text.slice(end + 4) };
    }
    const n = await conn.read(buf);
    if (n === null) return null;
    text += dec.decode(buf.subarray(0, n));
  }
  return null;
}

/** Writes all of a string or bytes. */
export async function writeText(conn: Deno.Conn, s: string | Uint8Array) {
  const b = typeof s === "string" ? enc.encode(s) : s;
  let at = 0;
  while (at < b.length) at += await conn.write(b.subarray(at));
}

/** Runs curl with args; returns status, stdout, stderr. */
export async function curl(
  args: string[],
): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command("curl", {
    args: ["-sS", "-m", "10", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: r.code,
    out: new TextDecoder().decode(r.stdout),
    err: new TextDecoder().decode(r.stderr),
  };
}
