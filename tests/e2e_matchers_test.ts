/**
 * Matchers end to end through a real proxy and real curl: rangeIPM told
 * apart by two loopback source addresses, and timeSpan with an injected
 * clock (the policy runs in this process so the test can move its clock;
 * everything else is real: sockets, KV file, curl).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { makeConfigDir } from "./helpers/config_dir.ts";
import { startPmproxy } from "./helpers/pmproxy_process.ts";
import { curl, startOrigin } from "./helpers/origin.ts";
import { openGateway } from "../managers/mod.ts";
import { proxyConfigFrom, startProxy } from "../proxy/mod.ts";

Deno.test("rangeIPM: 127.0.0.2 is in the range and browses, 127.0.0.1 is not and is refused", async () => {
  const origin = startOrigin();
  const dir = await makeConfigDir(`rule = "lab"
[[rangeIPM]]
name = "lab"
cidr = "127.0.0.2/32"
`);
  const server = await startPmproxy(dir);
  const proxy = `http://127.0.0.1:${server.proxyPort}`;
  try {
    const inside = await curl([
      "--interface",
      "127.0.0.2",
      "-x",
      proxy,
      `${origin.url}/hello`,
    ]);
    assert.equal(inside.body, "hello\n", inside.stderr);
    const outside = await curl([
      "--interface",
      "127.0.0.1",
      "-x",
      proxy,
      "-w",
      "\n%{http_code}",
      `${origin.url}/hello`,
    ]);
    assert.match(outside.body, /127\.0\.0\.1 is not in 127\.0\.0\.2\/32/);
    assert.match(outside.body, /403$/);
  } finally {
    await server.stop();
    await origin.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("timeSpan: working hours allow, the weekend refuses, by the policy's clock", async () => {
  const origin = startOrigin();
  const dir = await makeConfigDir(`rule = "work"
[[timeSpan]]
name = "work"
days = ["mon-fri"]
from = "08:00"
to = "20:00"
timezone = "UTC"
`);
  let now = Date.parse("2026-11-25T10:00:00Z"); // a Wednesday
  const gateway = await openGateway(join(dir, "managers.toml"), {
    state: join(dir, "state.kv"),
    persistIntervalMs: 0,
    clock: () => new Date(now),
  });
  // The proxy stamps each request with the real time; the policy decides by
  // its own clock, which the test moves.
  const policy = {
    decide: (facts: Parameters<typeof gateway.decide>[0]) =>
      gateway.decide({ ...facts, time: new Date(now) }),
  };
  const proxy = await startProxy(
    proxyConfigFrom({ server: { addr: "127.0.0.1:0" } }, {
      file: "server.toml",
    }),
    policy,
  );
  const url = `http://127.0.0.1:${proxy.addr.port}`;
  try {
    const weekday = await curl(["-x", url, `${origin.url}/hello`]);
    assert.equal(weekday.body, "hello\n", weekday.stderr);
    now = Date.parse("2026-11-25T21:30:00Z"); // Wednesday evening
    const evening = await curl([
      "-x",
      url,
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      `${origin.url}/hello`,
    ]);
    assert.equal(evening.body, "403");
    now = Date.parse("2026-11-28T10:00:00Z"); // Saturday
    const saturday = await curl([
      "-x",
      url,
      "-w",
      "\n%{http_code}",
      `${origin.url}/hello`,
    ]);
    assert.match(saturday.body, /work: now is sat 10:00/);
    assert.match(saturday.body, /403$/);
  } finally {
    await proxy.close();
    await gateway.close();
    await origin.close();
    await Deno.remove(dir, { recursive: true });
  }
});
