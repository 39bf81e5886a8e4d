/**
 * The manager kinds beyond sessions and quotas end to end: a real
 * `pmproxy serve`, a real origin, real curl. rangeIPM and hostMatcher
 * allow or refuse, parentProxy chains two gateways (plain HTTP and
 * CONNECT), netIface binds the source address, bwConsR throttles.
 */
import assert from "node:assert/strict";
import { makeConfigDir } from "./helpers/config_dir.ts";
import { type Pmproxy, startPmproxy } from "./helpers/pmproxy_process.ts";
import { curl, type Origin, startOrigin } from "./helpers/origin.ts";

interface Gateway {
  dir: string;
  server: Pmproxy;
  proxy: string;
}

async function gateway(managersToml: string): Promise<Gateway> {
  // loopbackServerToml allows CONNECT to every port (the origin's is free).
  const dir = await makeConfigDir(managersToml);
  try {
    const server = await startPmproxy(dir);
    return { dir, server, proxy: `http://127.0.0.1:${server.proxyPort}` };
  } catch (e) {
    await Deno.remove(dir, { recursive: true });
    throw e;
  }
}

async function stop(g: Gateway | undefined): Promise<void> {
  if (!g) return;
  await g.server.stop();
  await Deno.remove(g.dir, { recursive: true });
}

async function status(proxy: string, url: string, extra: string[] = []) {
  const r = await curl([
    ...extra,
    "-x",
    proxy,
    "-o",
    "/dev/null",
    "-w",
    "%{http_code}",
    url,
  ]);
  return r.body;
}

const LOCAL = `
[[rangeIPM]]
name = "lan"
cidr = "127.0.0.0/8"

[[hostMatcher]]
name = "local"
pattern = '^127\\.0\\.0\\.1$'
`;

Deno.test("e2e kinds: rangeIPM and hostMatcher allow and refuse", async () => {
  const origin = startOrigin();
  let g: Gateway | undefined;
  try {
    g = await gateway(`rule = "lan ∧ local"\n${LOCAL}`);
    const ok = await curl(["-x", g.proxy, `${origin.url}/hello`]);
    assert.equal(ok.body, "hello\n", ok.stderr);
    assert.equal(
      await status(g.proxy, `http://localhost:${origin.port}/hello`),
      "403",
      "the host localhost does not match",
    );
    const page = await curl([
      "-x",
      g.proxy,
      `http://localhost:${origin.port}/hello`,
    ]);
    assert.match(page.body, /local: localhost does not match/);
  } finally {
    await stop(g);
    await origin.close();
  }
  let outside: Gateway | undefined;
  try {
    outside = await gateway(
      `rule = "far"\n[[rangeIPM]]\nname = "far"\ncidr = "10.0.0.0/8"\n`,
    );
    assert.equal(await status(outside.proxy, "http://127.0.0.1:9/"), "403");
  } finally {
    await stop(outside);
  }
});

Deno.test("e2e kinds: parentProxy chains two gateways, for HTTP and CONNECT", async () => {
  const origin = startOrigin();
  let parent: Gateway | undefined;
  let child: Gateway | undefined;
  try {
    // The parent only lets 127.0.0.1 through: a request for "localhost"
    // refused with the parent's reason proves the child went through it.
    parent = await gateway(`rule = "lan ∧ local"\n${LOCAL}`);
    child = await gateway(`rule = "lan ∧ up ∧ wan"
[[rangeIPM]]
name = "lan"
cidr = "127.0.0.0/8"
[[parentProxy]]
name = "up"
proxyURL = "${parent.proxy}"
[[netIface]]
name = "wan"
iface = "lo"
`);
    const ok = await curl(["-x", child.proxy, `${origin.url}/hello`]);
    assert.equal(ok.body, "hello\n", ok.stderr);
    const tunnel = await curl(["-p", "-x", child.proxy, `${origin.url}/hello`]);
    assert.equal(tunnel.body, "hello\n", tunnel.stderr);
    const refused = await curl([
      "-x",
      child.proxy,
      `http://localhost:${origin.port}/hello`,
    ]);
    assert.match(
      refused.body,
      /local: localhost does not match/,
      "refused by the parent",
    );
  } finally {
    await stop(child);
    await stop(parent);
    await origin.close();
  }
});

Deno.test("e2e kinds: bwConsR throttles a download to its rate", async () => {
  const origin: Origin = startOrigin();
  let g: Gateway | undefined;
  try {
    g = await gateway(`rule = "lan ∧ slow"
[[rangeIPM]]
name = "lan"
cidr = "127.0.0.0/8"
[[bwConsR]]
name = "slow"
rate = "256 KiB/s"
`);
    // 1 MiB at 256 KiB/s after a 256 KiB burst: about 3 s. It cannot be
    // faster than the bucket allows; it may be slower on a busy machine.
    const started = performance.now();
    const r = await curl([
      "-x",
      g.proxy,
      "-o",
      "/dev/null",
      "-w",
      "%{size_download}",
      `${origin.url}/bytes/1048576`,
    ]);
    const seconds = (performance.now() - started) / 1000;
    assert.equal(r.body, "1048576", r.stderr);
    assert.ok(
      seconds >= 2,
      `1 MiB took ${seconds.toFixed(2)} s, not throttled`,
    );
    // Two downloads at once from the same address share one bucket: 2 ×
    // 512 KiB from an (about) empty bucket take about 4 s, not 2 s.
    const both = performance.now();
    const proxy = g.proxy;
    const two = await Promise.all([1, 2].map(() =>
      curl([
        "-x",
        proxy,
        "-o",
        "/dev/null",
        "-w",
        "%{size_download}",
        `${origin.url}/bytes/524288`,
      ])
    ));
    const shared = (performance.now() - both) / 1000;
    assert.deepEqual(two.map((r) => r.body), ["524288", "524288"]);
    assert.ok(
      shared >= 3,
      `2 × 512 KiB took ${
        shared.toFixed(2)
      } s: the connections did not share the rate`,
    );
  } finally {
    await stop(g);
    await origin.close();
  }
});
