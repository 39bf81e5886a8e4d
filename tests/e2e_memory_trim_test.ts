/**
 * The memory trim in the real server: a burst of tunnels grows the heap,
 * and once the burst is over the server gives memory back by itself and
 * says so on standard error; with `[proxy] memoryTrim = false` it does not.
 * (What that is worth, in MiB per 1,000 tunnels, is the bench's row.)
 *
 * @module
 */
import assert from "node:assert/strict";
import { makeConfigDir } from "./helpers/config_dir.ts";
import { type Pmproxy, startPmproxy } from "./helpers/pmproxy_process.ts";

const TUNNELS = 3000;

/** An origin that takes connections and keeps them, saying nothing. */
function silentOrigin() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  (async () => {
    for await (const c of listener) held.push(c);
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close() {
      listener.close();
      for (const c of held) c.close();
    },
  };
}

/** Opens `n` tunnels through the server, each answered 200. */
async function openTunnels(server: Pmproxy, port: number, n: number) {
  const conns: Deno.Conn[] = [];
  const buf = new Uint8Array(256);
  const head = new TextEncoder().encode(
    `CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`,
  );
  for (let i = 0; i < n; i++) {
    const c = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.proxyPort,
    });
    conns.push(c);
    await c.write(head);
    const got = await c.read(buf);
    assert(got !== null, `tunnel ${i} was closed`);
    assert.match(new TextDecoder().decode(buf.subarray(0, got)), / 200 /);
  }
  return conns;
}

const TRIM =
  /pmproxy: memory trim: the heap went from ([\d.]+) to ([\d.]+) MiB/;

for (const on of [true, false]) {
  Deno.test(`memory trim in the server: ${on ? "a burst of tunnels is followed by a trim" : "memoryTrim = false: none"}`, async () => {
    const origin = silentOrigin();
    const dir = await makeConfigDir('rule = "true"\n', {
      proxy: `maxTunnelsPerClient = ${TUNNELS + 10}${
        on ? "" : "\nmemoryTrim = false"
      }`,
    });
    const server = await startPmproxy(dir);
    const conns: Deno.Conn[] = [];
    try {
      conns.push(...await openTunnels(server, origin.port, TUNNELS));
      // The trimmer looks every 2 s and waits for a quiet look: a trim
      // comes within three, four looks at most.
      const deadline = Date.now() + (on ? 12_000 : 8_000);
      while (!TRIM.test(server.stderr()) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
      }
      const trim = TRIM.exec(server.stderr());
      if (on) {
        assert(trim, `no trim within 12 s:\n${server.stderr()}`);
        assert(Number(trim[2]) < Number(trim[1]), trim[0]);
      } else {
        assert.equal(trim, null, server.stderr());
      }
    } finally {
      // Both ends close, so the tunnels end before the server stops.
      for (const c of conns) c.close();
      origin.close();
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    }
  });
}
