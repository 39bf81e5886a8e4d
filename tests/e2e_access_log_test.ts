/**
 * The access log end to end: Squid native lines on standard output by
 * default, and to a syslog server (a real UDP socket in the test) when
 * managers.toml sets `syslogAddr`.
 */
import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { makeConfigDir } from "./helpers/config_dir.ts";
import { startPmproxy } from "./helpers/pmproxy_process.ts";
import { curl, startOrigin } from "./helpers/origin.ts";

// Squid native: time.ms elapsed client result/status bytes method URL user hierarchy type
const SQUID_LINE =
  /^\d+\.\d{3} +\d+ 127\.0\.0\.1 TCP_MISS\/200 \d+ GET http:\/\/127\.0\.0\.1:\d+\/hello - HIER_DIRECT\/127\.0\.0\.1 /m;
/^\d+\.\d{3} +\d+ 127\.0\.0\.1 TCP_DENIED\/403 \d+ GET http:\/\/127\.0\.0\.1:\d+\/other /m;

function managers(extra: string): string {
  return `${extra}
rule = "local ∧ ¬other"
[[rangeIPM]]
name = "local"
cidr = "127.0.0.0/8"
[[hostMatcher]]
name = "other"
pattern = "^nowhere$"
`;
}

Deno.test("access log: Squid lines on standard output", async () => {
  const origin = startOrigin();
  const dir = await makeConfigDir(
    managers("").replace(
      'pattern = "^nowhere$"',
      'pattern = "^127\\\\.0\\\\.0\\\\.2$"',
    ),
  );
  const server = await startPmproxy(dir);
  try {
    const ok = await curl([
      "-x",
      `http://127.0.0.1:${server.proxyPort}`,
      `${origin.url}/hello`,
    ]);
    assert.equal(ok.body, "hello\n", ok.stderr);
    for (let i = 0; i < 50 && !SQUID_LINE.test(server.stdout()); i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(server.stdout(), SQUID_LINE);
    // Standard output is the access log's alone: start-up lines go to
    // standard error.
    assert.doesNotMatch(server.stdout(), /pmproxy: /);
    assert.match(server.stderr(), /pmproxy: proxy listening on /);
  } finally {
    await server.stop();
    await origin.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("access log: to syslog when syslogAddr is set, refusals too", async () => {
  const origin = startOrigin();
  const received: string[] = [];
  const socket = createSocket("udp4");
  socket.on("message", (msg) => received.push(msg.toString()));
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  const port = socket.address().port;
  const dir = await makeConfigDir(
    managers(`syslogAddr = "127.0.0.1:${port}"`).replace(
      'pattern = "^nowhere$"',
      'pattern = "other"',
    ),
  );
  const server = await startPmproxy(dir);
  try {
    const proxy = `http://127.0.0.1:${server.proxyPort}`;
    await curl(["-x", proxy, `${origin.url}/hello`]);
    // A refused request is logged too. The host "other" cannot be dialled,
    // but the rule refuses it before any dial.
    const refused = await curl([
      "-x",
      proxy,
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      "http://other/x",
    ]);
    assert.equal(refused.body, "403");
    for (let i = 0; i < 50 && received.length < 2; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const all = received.join("\n");
    assert.match(
      all,
      /^<30>\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ pmproxy\[\d+\]: /m,
    );
    assert.match(all.replace(/^<30>.*?pmproxy\[\d+\]: /gm, ""), SQUID_LINE);
    assert.match(all, /TCP_DENIED\/403 \d+ GET http:\/\/other\/x/);
    assert.doesNotMatch(
      server.output(),
      /TCP_MISS/,
      "not on standard output as well",
    );
  } finally {
    await server.stop();
    await origin.close();
    socket.close();
    await Deno.remove(dir, { recursive: true });
  }
});
