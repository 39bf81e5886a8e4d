/**
 * The origin of the bench's upload rows: a process of its own (so that it
 * does not share a thread with the bare relay in the bench's process) that
 * takes request bodies framed by Content-Length, throws them away and
 * answers `200` with an empty body. It prints `listening on PORT` once it
 * listens.
 *
 * ```sh
 * deno run -A scripts/_bench_sink.ts
 * ```
 *
 * @module
 */
const OK = new TextEncoder().encode(
  "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
);
const CRLFCRLF = [13, 10, 13, 10];

/** Index just past the head's empty line in `buf[0, n)`, or -1. */
function headEnd(buf: Uint8Array, n: number): number {
  for (let i = 3; i < n; i++) {
    if (
      buf[i] === CRLFCRLF[3] && buf[i - 1] === CRLFCRLF[2] &&
      buf[i - 2] === CRLFCRLF[1] && buf[i - 3] === CRLFCRLF[0]
    ) return i + 1;
  }
  return -1;
}

async function serve(conn: Deno.TcpConn): Promise<void> {
  const buf = new Uint8Array(256 * 1024);
  conn.setNoDelay(true);
  try {
    let have = 0;
    for (;;) {
      let end = headEnd(buf, have);
      while (end < 0) {
        const n = await conn.read(buf.subarray(have));
        if (n === null) return;
        have += n;
        end = headEnd(buf, have);
      }
      const head = new TextDecoder().decode(buf.subarray(0, end));
      const m = /\r\ncontent-length: *(\d+)/i.exec(head);
      let left = m ? Number(m[1]) : 0;
      // Body bytes that came with the head.
      const extra = Math.min(left, have - end);
      left -= extra;
      const rest = have - end - extra;
      buf.copyWithin(0, end + extra, have);
      have = rest;
      while (left > 0) {
        const n = await conn.read(buf.subarray(0, Math.min(buf.length, left)));
        if (n === null) return;
        left -= n;
      }
      let off = 0;
      while (off < OK.length) off += await conn.write(OK.subarray(off));
    }
  } catch {
    // The client went away.
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

if (import.meta.main) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  console.log(`listening on ${(listener.addr as Deno.NetAddr).port}`);
  for await (const conn of listener) serve(conn);
}
