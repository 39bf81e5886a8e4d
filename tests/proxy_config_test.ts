import assert from "node:assert/strict";
import { DEFAULT_PROXY_CONFIG, proxyConfigFrom } from "../proxy/mod.ts";

const site = {
  file: "/etc/pmproxy/server.toml",
  lineOf: (path: string[]) =>
    ({ "proxy": 10, "proxy.dialTimout": 11, "proxy.server.readTimeout": 14 })[
      path.join(".")
    ] as number | undefined,
};

Deno.test("an empty [proxy] gives the safe defaults", () => {
  const c = proxyConfigFrom({}, site);
  assert.deepEqual(c, { ...DEFAULT_PROXY_CONFIG });
  assert.equal(c.port, 8080);
  assert.equal(c.allInterfaces, true);
  assert.equal(c.maxHeaderBytes, 64 * 1024);
  assert.equal(c.maxHeaders, 100);
  assert.deepEqual(c.connectPorts, [443]);
});

Deno.test("the README's [proxy] table is read, fastOrStd ignored", () => {
  const c = proxyConfigFrom({
    dialTimeout: "10s",
    server: {
      readTimeout: "30s",
      writeTimeout: "20s",
      addr: ":8080",
      fastOrStd: false,
    },
  }, site);
  assert.equal(c.dialTimeoutMs, 10_000);
  assert.equal(c.readTimeoutMs, 30_000);
  assert.equal(c.writeTimeoutMs, 20_000);
  assert.equal(c.port, 8080);
  assert.equal(c.allInterfaces, true);
});

Deno.test("our limits, Go durations, sizes and addresses", () => {
  const c = proxyConfigFrom({
    dialTimeout: "1h30m",
    connectPorts: [443, 8443],
    maxTunnelsPerClient: 7,
    poolMaxIdlePerOrigin: 0,
    poolIdleTimeout: "500ms",
    server: {
      addr: "[::1]:3128",
      headerTimeout: "1.5s",
      idleTimeout: "2m",
      maxConnections: 5,
      maxHeaderBytes: "16 KiB",
      maxHeaders: 50,
      maxRequestBody: "10 MiB",
    },
  }, site);
  assert.equal(c.dialTimeoutMs, 5_400_000);
  assert.deepEqual(c.connectPorts, [443, 8443]);
  assert.equal(c.maxTunnelsPerClient, 7);
  assert.equal(c.poolMaxIdlePerOrigin, 0);
  assert.equal(c.poolIdleTimeoutMs, 500);
  assert.equal(c.hostname, "::1");
  assert.equal(c.port, 3128);
  assert.equal(c.allInterfaces, false);
  assert.equal(c.headerTimeoutMs, 1500);
  assert.equal(c.idleTimeoutMs, 120_000);
  assert.equal(c.maxConnections, 5);
  assert.equal(c.maxHeaderBytes, 16 * 1024);
  assert.equal(c.maxHeaders, 50);
  assert.equal(c.maxRequestBody, 10 * 1024 * 1024);
  assert.equal(proxyConfigFrom({ connectPorts: "*" }, site).connectPorts, "*");
  assert.equal(
    proxyConfigFrom({ server: { addr: "127.0.0.1:0" } }, site).hostname,
    "127.0.0.1",
  );
});

Deno.test("an unknown key names file:line and the nearest key", () => {
  assert.throws(
    () => proxyConfigFrom({ dialTimout: "5s" }, site),
    {
      message:
        '/etc/pmproxy/server.toml:11: [proxy] unknown key "dialTimout" (did you mean "dialTimeout"?)',
    },
  );
  assert.throws(
    () => proxyConfigFrom({ server: { readTimout: "5s" } }, site),
    /\[proxy\.server\] unknown key "readTimout" \(did you mean "readTimeout"\?\)/,
  );
});

Deno.test("a bad value names file:line, the key and how to write it", () => {
  assert.throws(
    () => proxyConfigFrom({ server: { readTimeout: "abc" } }, site),
    {
      message:
        '/etc/pmproxy/server.toml:14: [proxy.server] readTimeout: "abc" is not a duration: write it like "30s", "5m", "1h30m" or "500ms"',
    },
  );
  assert.throws(
    () => proxyConfigFrom({ server: { addr: "8080" } }, site),
    /addr: "8080" is not a listen address: write ":8080"/,
  );
  assert.throws(
    () => proxyConfigFrom({ connectPorts: [443, 70000] }, site),
    /connectPorts: .* is not a list of ports/,
  );
  assert.throws(
    () => proxyConfigFrom({ server: { maxConnections: -1 } }, site),
    /maxConnections: -1 is not a whole number/,
  );
  assert.throws(
    () => proxyConfigFrom({ server: { maxHeaderBytes: "lots" } }, site),
    /maxHeaderBytes: "lots" is not a size/,
  );
  assert.throws(
    () => proxyConfigFrom({ server: { maxRequestBody: "huge" } }, site),
    /maxRequestBody: "huge" is not a size/,
  );
  assert.throws(() => proxyConfigFrom("x", site), /\[proxy\] must be a table/);
});

Deno.test("shutdownTimeout: 10 s by default, a duration, 0 for no grace; a bad one names its line", () => {
  assert.equal(proxyConfigFrom({}, site).shutdownTimeoutMs, 10_000);
  assert.equal(
    proxyConfigFrom({ shutdownTimeout: "1m30s" }, site).shutdownTimeoutMs,
    90_000,
  );
  assert.equal(
    proxyConfigFrom({ shutdownTimeout: "0s" }, site).shutdownTimeoutMs,
    0,
  );
  assert.throws(
    () => proxyConfigFrom({ shutdownTimeout: "soon" }, site),
    /^Error: \/etc\/pmproxy\/server\.toml:10: \[proxy\] shutdownTimeout: "soon" is not a duration/,
  );
  assert.throws(
    () => proxyConfigFrom({ shutdownTimeout: 10 }, site),
    /\[proxy\] shutdownTimeout: 10 is not a duration: write it like "30s"/,
  );
  assert.throws(
    () => proxyConfigFrom({ shutdownTimout: "5s" }, site),
    /did you mean "shutdownTimeout"/,
  );
});
