/**
 * The bench's floor for resident memory at start: a Deno process that opens
 * what every pmproxy opens at start and nothing more, in a process of its
 * own. It listens on a TCP port (the proxy), serves HTTPS with the
 * certificate in `DIR` (the API), opens a Deno KV file there (the state
 * store) and keeps a timer (the counters' flush) as pmproxy keeps its
 * timers, on the runtime's own timer (proxy/timers.ts: the global
 * `setInterval` would load a part of the Node layer, about 2-3 MiB
 * resident, that pmproxy does not load). With `--npm` it also loads
 * the TOML parser pmproxy reads its configuration with, an npm package: the
 * first npm package (or `node:` module) loads more of Deno's Node
 * compatibility layer. It prints `listening on PORT` once all of that is
 * open, and idles.
 *
 * ```sh
 * DENO_NO_UPDATE_CHECK=1 deno run -A --unstable-kv --no-code-cache \
 *   scripts/_bench_floor.ts DIR [--npm]
 * ```
 *
 * @module
 */
import { every } from "../proxy/timers.ts";

Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
Deno.addSignalListener("SIGINT", () => Deno.exit(0));

const [dir, flag] = Deno.args;
if (!dir) throw new Error("usage: _bench_floor.ts DIR [--npm]");
const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
(async () => {
  for await (const conn of listener) conn.close();
})();
const api = Deno.serve({
  hostname: "127.0.0.1",
  port: 0,
  cert: await Deno.readTextFile(`${dir}/cert.pem`),
  key: await Deno.readTextFile(`${dir}/key.pem`),
  onListen() {},
}, () => new Response("floor\n"));
const kv = await Deno.openKv(`${dir}/floor.kv`);
await kv.get(["floor"]);
every(10_000, () => kv.get(["floor"]));
if (flag === "--npm") {
  const { parse } = await import("smol-toml");
  if (parse('floor = "yes"').floor !== "yes") throw new Error("smol-toml?");
}
console.log(`listening on ${(listener.addr as Deno.NetAddr).port}`);
await api.finished;
