/**
 * The bench's bare Deno relay, in a process of its own (so that its CPU time
 * can be read apart from the bench's): the platform's ceiling, no policy
 * and no parsing beyond the first request line. A CONNECT gets its
 * `200 Connection established`; a plain request (`GET http://host:port/…`)
 * is sent on as it came to the host it names, and from then on the two
 * connections are spliced: every later request on the kept-alive connection
 * goes to the same origin unread. Both directions are pumped by manual read
 * loops over 256 KiB buffers. It prints `listening on PORT` once it listens.
 *
 * ```sh
 * deno run -A scripts/_bench_relay.ts
 * ```
 *
 * @module
 */
const enc = new TextEncoder();
const ESTABLISHED = enc.encode("HTTP/1.1 200 Connection established\r\n\r\n");

async function writeAll(to: Deno.Conn, p: Uint8Array): Promise<void> {
  let off = 0;
  while (off < p.length) off += await to.write(p.subarray(off));
}

async function pump(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(256 * 1024);
  try {
    for (;;) {
      const n = await from.read(buf);
      if (n === null) break;
      await writeAll(to, buf.subarray(0, n));
    }
    await to.closeWrite();
  } catch { /* a peer is gone */ }
}

async function serve(client: Deno.TcpConn): Promise<void> {
  client.setNoDelay(true);
  const buf = new Uint8Array(16 * 1024);
  const n = await client.read(buf);
  if (n === null) return client.close();
  const first = buf.subarray(0, n);
  const line = new TextDecoder().decode(first.subarray(0, first.indexOf(10)))
    .split(" ");
  const connect = line[0] === "CONNECT";
  const authority = connect ? line[1] : new URL(line[1]).host;
  const [host, port] = authority.split(":");
  const up = await Deno.connect({
    hostname: host,
    port: Number(port || 80),
  });
  up.setNoDelay(true);
  if (connect) await writeAll(client, ESTABLISHED);
  else await writeAll(up, first);
  await Promise.all([pump(client, up), pump(up, client)]);
  client.close();
  up.close();
}

if (import.meta.main) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  console.log(`listening on ${(listener.addr as Deno.NetAddr).port}`);
  for await (const client of listener) serve(client).catch(() => {});
}
