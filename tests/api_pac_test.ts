/**
 * The PAC file (api/pac.ts): `[api] pacDirect` entries (api/pac_direct.ts), the script run as
 * browsers run it (`FindProxyForURL(url, host)`, here through `new
 * Function`, with no PAC helper functions defined: the script needs none),
 * and `GET /proxy.pac`, `/wpad.dat` over the real HTTPS API.
 */
import assert from "node:assert/strict";
import { pacScript } from "../api/pac.ts";
import { type PacDirect, parsePacDirect } from "../api/pac_direct.ts";
import { FakeGateway } from "./helpers/api_fake_gateway.ts";
import { startTestApi } from "./helpers/api_server.ts";

type FindProxy = (url: string, host: string) => string;

/** Evaluates a PAC script and answers its FindProxyForURL. */
function load(script: string): FindProxy {
  return new Function(`${script}\nreturn FindProxyForURL;`)() as FindProxy;
}

function entries(...texts: string[]): PacDirect[] {
  return texts.map((t) => {
    const e = parsePacDirect(t);
    if (typeof e === "string") throw new Error(e);
    return e;
  });
}

Deno.test("pac: pacDirect entries: host names, *.suffixes, address ranges", () => {
  assert.deepEqual(parsePacDirect("Intranet.Example.org"), {
    kind: "host",
    host: "intranet.example.org",
  });
  assert.deepEqual(parsePacDirect("intranet.example.org."), {
    kind: "host",
    host: "intranet.example.org",
  });
  assert.deepEqual(parsePacDirect("*.example.org"), {
    kind: "suffix",
    suffix: ".example.org",
  });
  // A name written in Unicode matches the ASCII form browsers pass on.
  assert.deepEqual(parsePacDirect("*.Ñandú.cu"), {
    kind: "suffix",
    suffix: ".xn--and-6ma2c.cu",
  });
  const range = parsePacDirect("10.1.2.3/8");
  assert.ok(typeof range !== "string" && range.kind === "range");
  assert.equal(range.cidr.prefix, 104);
  const one = parsePacDirect("192.0.2.7");
  assert.ok(typeof one !== "string" && one.kind === "range");
  assert.equal(one.cidr.prefix, 128);
  const v6 = parsePacDirect("fd00::/8");
  assert.ok(typeof v6 !== "string" && v6.kind === "range");

  for (
    const [bad, why] of [
      ["", /empty/],
      ["a*b.example.org", /"\*" may only start an entry/],
      ["*.", /not a domain name/],
      ["*.exa mple.org", /not a domain name/],
      ["10.0.0.0/33", /prefix length/],
      ["10.0.0.256", /not an IP address/],
      ["user@example.org", /not a host name/],
      ["example.org?x", /not a host name/],
      ["-bad-.example.org", /not a host name/],
      ["gateway:8080", /not an IP address/],
    ] as const
  ) {
    const result = parsePacDirect(bad);
    assert.equal(typeof result, "string", bad);
    assert.match(result as string, why, bad);
  }
});

Deno.test("pac: FindProxyForURL sends what it should DIRECT and the rest to the proxy", () => {
  const find = load(pacScript({
    proxyHost: "gateway.lan",
    proxyPort: 8080,
    direct: [
      ...entries("gateway.lan", "intranet.example.org", "*.corp.example"),
      ...entries("10.0.0.0/8", "192.0.2.7", "fd00::/8"),
    ],
  }));
  const PROXY = "PROXY gateway.lan:8080";
  const cases: [string, string][] = [
    // plain names and loopback
    ["printer", "DIRECT"],
    ["localhost", "DIRECT"],
    ["app.localhost", "DIRECT"],
    ["127.0.0.1", "DIRECT"],
    ["127.8.9.10", "DIRECT"],
    ["::1", "DIRECT"],
    ["[::1]", "DIRECT"],
    ["0:0:0:0:0:0:0:1", "DIRECT"],
    // the gateway and the listed hosts, by name
    ["gateway.lan", "DIRECT"],
    ["GATEWAY.LAN", "DIRECT"],
    ["gateway.lan.", "DIRECT"],
    ["intranet.example.org", "DIRECT"],
    ["www.intranet.example.org", PROXY],
    ["example.org", PROXY],
    // suffixes: names under it, not the domain itself
    ["a.corp.example", "DIRECT"],
    ["b.a.corp.example", "DIRECT"],
    ["corp.example", PROXY],
    ["evilcorp.example", PROXY],
    // ranges: addresses, IPv4 and IPv6
    ["10.200.3.4", "DIRECT"],
    ["11.0.0.1", PROXY],
    ["192.0.2.7", "DIRECT"],
    ["192.0.2.8", PROXY],
    ["fd12:3456::1", "DIRECT"],
    ["[fd12:3456::1]", "DIRECT"],
    ["fe00::1", PROXY],
    ["2001:db8::1", PROXY],
    ["::ffff:10.1.1.1", "DIRECT"],
    // not addresses: never matched as ranges
    ["10.0.0.1.example.org", PROXY],
    ["010.0.0.1", PROXY],
    ["www.example.org", PROXY],
  ];
  for (const [host, want] of cases) {
    assert.equal(find(`http://${host}/x`, host), want, host);
  }
});

Deno.test("pac: an IPv6 proxy is written in brackets; the script is ES3", () => {
  const script = pacScript({
    proxyHost: "[2001:db8::5]",
    proxyPort: 3128,
    direct: [],
  });
  assert.equal(
    load(script)("http://example.org/", "example.org"),
    "PROXY [2001:db8::5]:3128",
  );
  // Old PAC engines (JScript) know no let, const, arrow functions or
  // template strings.
  const code = script.replace(/\/\/.*$/gm, "");
  assert.doesNotMatch(code, /\b(let|const|class)\s/);
  assert.doesNotMatch(code, /=>|`/);
  assert.match(script, /^\/\/ pmproxy: proxy auto-configuration/);
});

Deno.test("pac: GET /proxy.pac and /wpad.dat name the proxy and the API", async () => {
  let proxyPort: number | undefined;
  const t = await startTestApi(new FakeGateway(), {
    table: { pacDirect: ["*.example.org"] },
    proxyPort: () => proxyPort,
  });
  try {
    const early = await t.get("/proxy.pac");
    assert.equal(early.status, 404, "no proxy listening yet: no PAC");
    proxyPort = 3128;
    for (const path of ["/proxy.pac", "/wpad.dat"]) {
      const res = await t.get(path);
      assert.equal(res.status, 200, path);
      assert.equal(
        res.headers.get("content-type"),
        "application/x-ns-proxy-autoconfig",
      );
      const find = load(res.text);
      // No publicUrl in server.toml: the host the PAC was asked from.
      assert.equal(
        find("http://example.com/", "example.com"),
        "PROXY 127.0.0.1:3128",
      );
      assert.equal(
        find("http://www.example.org/", "www.example.org"),
        "DIRECT",
      );
    }
  } finally {
    await t.close();
  }

  const named = await startTestApi(new FakeGateway(), {
    table: { publicUrl: "https://gateway.example.net:4443/" },
    proxyPort: () => 8080,
  });
  try {
    const find = load((await named.get("/wpad.dat")).text);
    assert.equal(
      find("http://example.com/", "example.com"),
      "PROXY gateway.example.net:8080",
    );
    // The API's own host goes DIRECT: its login page comes before login.
    assert.equal(
      find("https://gateway.example.net:4443/", "gateway.example.net"),
      "DIRECT",
    );
  } finally {
    await named.close();
  }

  const none = await startTestApi(new FakeGateway());
  try {
    assert.equal((await none.get("/proxy.pac")).status, 404);
  } finally {
    await none.close();
  }
});
