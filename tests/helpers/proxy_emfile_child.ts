/**
 * Child process for the out-of-descriptors test: runs a proxy (allow all,
 * a fake policy: the proxy defines the seam) and prints its port. Started
 * under a low open-files limit by tests/proxy_limits_test.ts.
 *
 * @module
 */
import { proxyConfigFrom, startProxy } from "../../proxy/mod.ts";

// Deno was measured to panic on EMFILE unless signal listeners exist.
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
Deno.addSignalListener("SIGINT", () => Deno.exit(0));
const config = proxyConfigFrom(
  { server: { addr: "127.0.0.1:0" } },
  { file: "test" },
);
const proxy = await startProxy(config, {
  decide: () => ({ allowed: true, route: { kind: "direct" } }),
});
console.log(proxy.addr.port);
