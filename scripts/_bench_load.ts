/**
 * The traffic generator of `deno task bench --scale` (and of the rows that
 * need requests from many client addresses): kept-alive HTTP/1.1 requests
 * through a proxy, each connection bound to its own loopback source address
 * (127.x.y.z), because the gateway's sessions are tied to the TCP peer's
 * address. wrk cannot bind a source address; node:net's `connect({
 * localAddress })` can, so this runs as its own process (a child of the
 * bench, so that its work is not the bench's) and prints what it measured
 * as one JSON line.
 *
 * How it loads the proxy: `--connections C` kept-alive connections, the
 * i-th from address i of `--addresses N` (all from {@link ONE_ADDRESS}
 * with `--one-address`, unbound: a source address bound before connecting
 * takes no port a closed connection still holds in TIME_WAIT, so one such
 * address replacing connections ran out of ports at about 300 a second);
 * `--inflight F` requests in flight at once, each sent on
 * the next idle connection in turn, so every connection (and so every
 * address) is used once per C requests. With N > C a connection that has
 * carried `--rotate-after R` requests is closed and replaced by one from
 * the next address not used yet, so all N addresses are reached. The
 * same run with `--one-address` gives the same pattern from one address.
 *
 * ```sh
 * deno run -A scripts/_bench_load.ts --proxy-port 8080 \
 *   --url http://127.0.0.1:8081/1k --addresses 10000 --connections 10000 \
 *   --inflight 64 --seconds 10 --timeline /tmp/t.f64
 * ```
 *
 * `--timeline FILE` writes every measured request as two float64s: when it
 * was sent (ms since the epoch) and its latency (ms), for the bench to tell
 * requests that overlapped a flush from the others.
 *
 * @module
 */
import { connect, type Socket } from "node:net";
import { parseArgs } from "node:util";

/**
 * The address of `--one-address`: the kernel's own choice of source for a
 * connection to 127.0.0.1, so its connections are not bound.
 */
export const ONE_ADDRESS = "127.0.0.1";

/** The loopback address of client number `i` (127.10.0.0 upwards). */
export function clientAddress(i: number): string {
  return `127.${10 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
}

/** What a run measured (the JSON line printed). */
export interface LoadResult {
  requests: number;
  seconds: number;
  rps: number;
  /** Latency percentiles in ms. */
  p50: number;
  p99: number;
  /** Answers that were not 200. */
  errors: number;
  /** Connections that failed or closed under a request. */
  broken: number;
  /** Distinct addresses that carried a measured request. */
  addresses: number;
}

const CRLFCRLF = Buffer.from("\r\n\r\n");

/** One kept-alive connection and the answer it is reading. */
interface Conn {
  sock: Socket;
  address: number;
  ready: boolean;
  busy: boolean;
  dead: boolean;
  served: number;
  sentAt: number;
  /** Bytes of the answer still to come (-1: its head is not complete). */
  left: number;
  head: Buffer | undefined;
  /** The answer being read is a 200. */
  ok: boolean;
}

function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      "proxy-port": { type: "string" },
      url: { type: "string" },
      addresses: { type: "string", default: "1" },
      "one-address": { type: "boolean", default: false },
      connections: { type: "string", default: "64" },
      inflight: { type: "string", default: "32" },
      seconds: { type: "string", default: "10" },
      warmup: { type: "string", default: "1" },
      "rotate-after": { type: "string", default: "0" },
      timeline: { type: "string" },
    },
  });
  const port = Number(values["proxy-port"]);
  const url = values.url!;
  const addresses = Number(values.addresses);
  const oneAddress = values["one-address"];
  const connections = Number(values.connections);
  const inflight = Number(values.inflight);
  const seconds = Number(values.seconds);
  const warmup = Number(values.warmup);
  const rotateAfter = Number(values["rotate-after"]);
  const host = new URL(url).host;
  const request = Buffer.from(
    `GET ${url} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: pmproxy-bench\r\n\r\n`,
  );

  const conns: Conn[] = [];
  let nextAddress = 0;
  let turn = 0;
  let measuring = false;
  let stopped = false;
  let requests = 0;
  let errors = 0;
  let broken = 0;
  const seen = new Uint8Array(addresses);
  // Latencies in µs as a histogram up to 10 s (one bucket per 10 µs).
  const buckets = new Uint32Array(1_000_001);
  const timeline: number[] = [];
  const origin = performance.timeOrigin;

  const open = (slot: number, address: number) => {
    const c: Conn = {
      sock: connect({
        host: "127.0.0.1",
        port,
        ...(oneAddress ? {} : { localAddress: clientAddress(address) }),
      }),
      address: oneAddress ? 0 : address,
      ready: false,
      busy: false,
      dead: false,
      served: 0,
      sentAt: 0,
      left: -1,
      head: undefined,
      ok: true,
    };
    c.sock.setNoDelay(true);
    conns[slot] = c;
    c.sock.on("connect", () => {
      c.ready = true;
      if (!stopped) dispatch();
    });
    c.sock.on("data", (d: Buffer) => onData(slot, c, d));
    const gone = () => {
      if (c.dead) return;
      c.dead = true;
      if (c.busy) {
        broken++;
        c.busy = false;
        if (!stopped) {
          // Its request is lost: another goes on another connection.
          inFlight--;
          dispatch();
        }
      }
      if (!stopped && conns[slot] === c) open(slot, takeAddress());
    };
    c.sock.on("error", gone);
    c.sock.on("close", gone);
  };

  const takeAddress = () => {
    const a = nextAddress;
    nextAddress = (nextAddress + 1) % addresses;
    return a;
  };

  let inFlight = 0;
  const dispatch = () => {
    while (inFlight < inflight && !stopped) {
      // The next idle connection in turn.
      let found = -1;
      for (let k = 0; k < conns.length; k++) {
        const i = (turn + k) % conns.length;
        const c = conns[i];
        if (c.ready && !c.busy && !c.dead) {
          found = i;
          break;
        }
      }
      if (found < 0) return;
      turn = (found + 1) % conns.length;
      const c = conns[found];
      c.busy = true;
      c.left = -1;
      c.head = undefined;
      c.sentAt = performance.now();
      inFlight++;
      c.sock.write(request);
    }
  };

  const finish = (slot: number, c: Conn, ok: boolean) => {
    const latency = performance.now() - c.sentAt;
    c.busy = false;
    inFlight--;
    c.served++;
    if (measuring) {
      requests++;
      if (!ok) errors++;
      seen[c.address] = 1;
      buckets[Math.min(1_000_000, Math.round(latency * 100))]++;
      timeline.push(origin + c.sentAt, latency);
    }
    if (rotateAfter > 0 && c.served >= rotateAfter && !stopped) {
      // Replaced by a connection from the next address.
      c.dead = true;
      c.sock.destroy();
      open(slot, takeAddress());
    }
    dispatch();
  };

  const onData = (slot: number, c: Conn, d: Buffer) => {
    if (!c.busy) return;
    if (c.left < 0) {
      const head = c.head ? Buffer.concat([c.head, d]) : d;
      const end = head.indexOf(CRLFCRLF);
      if (end < 0) {
        c.head = head;
        return;
      }
      const text = head.subarray(0, end).toString("latin1");
      c.ok = text.startsWith("HTTP/1.1 200");
      const m = /\r\ncontent-length: *(\d+)/i.exec(text);
      const length = m ? Number(m[1]) : 0;
      c.left = length - (head.length - end - 4);
      c.head = undefined;
      if (c.left <= 0) finish(slot, c, c.ok);
      return;
    }
    c.left -= d.length;
    if (c.left <= 0) finish(slot, c, c.ok);
  };

  for (let i = 0; i < connections; i++) open(i, takeAddress());

  return new Promise((resolve) => {
    // Connections are opened at once; the warm-up lets them all connect
    // and the proxy's JIT settle before anything is measured.
    setTimeout(() => {
      measuring = true;
      const t0 = performance.now();
      setTimeout(async () => {
        measuring = false;
        stopped = true;
        const elapsed = (performance.now() - t0) / 1000;
        const pct = (q: number) => {
          const want = Math.ceil(requests * q);
          let sum = 0;
          for (let i = 0; i < buckets.length; i++) {
            sum += buckets[i];
            if (sum >= want) return i / 100;
          }
          return Infinity;
        };
        let distinct = 0;
        for (const s of seen) distinct += s;
        const result: LoadResult = {
          requests,
          seconds: elapsed,
          rps: requests / elapsed,
          p50: pct(0.5),
          p99: pct(0.99),
          errors,
          broken,
          addresses: distinct,
        };
        if (values.timeline) {
          await Deno.writeFile(
            values.timeline,
            new Uint8Array(new Float64Array(timeline).buffer),
          );
        }
        console.log(JSON.stringify(result));
        for (const c of conns) c?.sock.destroy();
        resolve();
      }, seconds * 1000);
    }, warmup * 1000);
  });
}

if (import.meta.main) {
  await main();
  Deno.exit(0);
}
