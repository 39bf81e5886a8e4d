/**
 * The `[api]` table of server.toml: defaults, the README's example, paths
 * relative to the configuration directory, and errors with file:line and
 * the nearest known key.
 */
import assert from "node:assert/strict";
import { apiConfigFrom } from "../api/config.ts";
import { ConfigError } from "../managers/types.ts";
import { parseTomlText } from "../managers/config/toml_file.ts";

const site = {
  file: "/etc/pmproxy/server.toml",
  configDir: "/etc/pmproxy",
  lineOf: (path: string[]) => path.length * 10,
};

Deno.test("api config: the README's [api] table", () => {
  const c = apiConfigFrom({
    excludedRoutes: ["/about"],
    httpsCert: "cert.pem",
    httpsKey: "key.pem",
    webStaticFilesDir: "staticFiles",
    persistInterval: "5m",
    server: {
      readTimeout: "30s",
      writeTimeout: "20s",
      addr: ":4443",
      fastOrStd: false,
    },
  }, site);
  assert.deepEqual(c.excludedRoutes, ["/about"]);
  assert.equal(c.httpsCert, "/etc/pmproxy/cert.pem");
  assert.equal(c.httpsKey, "/etc/pmproxy/key.pem");
  assert.equal(c.webStaticFilesDir, "/etc/pmproxy/staticFiles");
  assert.equal(c.persistIntervalMs, 300_000);
  assert.equal(c.readTimeoutMs, 30_000);
  assert.equal(c.writeTimeoutMs, 20_000);
  assert.equal(c.addr, ":4443");
  assert.equal(c.hostname, "::");
  assert.equal(c.port, 4443);
  assert.equal(c.wildcard, true);
  assert.equal(c.publicUrl, `https://${Deno.hostname()}:4443/`);
});

Deno.test("api config: defaults, specific addresses, publicUrl", () => {
  const d = apiConfigFrom(undefined, site);
  assert.equal(d.persistIntervalMs, 300_000);
  assert.equal(d.addr, ":4443");
  assert.equal(d.httpsCert, "/etc/pmproxy/cert.pem");
  assert.equal(d.webStaticFilesDir, undefined);
  assert.deepEqual(d.excludedRoutes, []);

  const v4 = apiConfigFrom({ server: { addr: "10.0.0.1:9443" } }, site);
  assert.equal(v4.hostname, "10.0.0.1");
  assert.equal(v4.wildcard, false);
  assert.equal(v4.publicUrl, "https://10.0.0.1:9443/");
  const v6 = apiConfigFrom({ server: { addr: "[::1]:9443" } }, site);
  assert.equal(v6.hostname, "::1");
  assert.equal(v6.publicUrl, "https://[::1]:9443/");
  const any4 = apiConfigFrom({ server: { addr: "0.0.0.0:1" } }, site);
  assert.equal(any4.hostname, "0.0.0.0");
  assert.equal(any4.wildcard, true);

  const pub = apiConfigFrom({
    publicUrl: "https://gw.example.org:4443/",
    httpsCert: "/abs/c.pem",
  }, site);
  assert.equal(pub.publicUrl, "https://gw.example.org:4443/");
  assert.equal(pub.httpsCert, "/abs/c.pem");
});

function configError(table: unknown): ConfigError {
  try {
    apiConfigFrom(table, site);
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e;
  }
  assert.fail("no error");
}

Deno.test("api config: mistakes name the file, the line and what to do", () => {
  const typo = configError({ persistIntervall: "5m" });
  assert.match(
    typo.message,
    /^\/etc\/pmproxy\/server\.toml:20: unknown key "persistIntervall" in \[api\]; did you mean "persistInterval"\?/,
  );
  const serverTypo = configError({ server: { adr: ":1" } });
  assert.match(
    serverTypo.message,
    /server\.toml:30: .*"adr".*\[api\.server\].*"addr"/,
  );
  assert.match(
    configError({ persistInterval: "five minutes" }).message,
    /server\.toml:20: persistInterval: "five minutes" is not a duration/,
  );
  assert.match(
    configError({ server: { addr: "4443" } }).message,
    /addr "4443" is not an address/,
  );
  assert.match(
    configError({ excludedRoutes: "/about" }).message,
    /excludedRoutes must be a list/,
  );
  assert.match(
    configError({ publicUrl: "http://x/" }).message,
    /publicUrl "http:\/\/x\/" is not an https URL/,
  );
  assert.match(
    configError({ server: { fastOrStd: "yes" } }).message,
    /fastOrStd must be true or false/,
  );
  assert.match(
    configError({ httpsCert: 5 }).message,
    /httpsCert must be a string/,
  );
  assert.match(
    configError({ persistInterval: "0s" }).message,
    /longer than 0/,
  );
});

Deno.test("api config: pacDirect lists hosts, *.suffixes and ranges; a wrong one names its line", () => {
  const c = apiConfigFrom({
    pacDirect: [
      "intranet.example.org",
      "*.Example.org",
      "10.0.0.0/8",
      "fd00::/8",
    ],
  }, site);
  assert.deepEqual(c.pacDirect.map((e) => e.kind), [
    "host",
    "suffix",
    "range",
    "range",
  ]);
  assert.deepEqual(c.pacDirect[1], { kind: "suffix", suffix: ".example.org" });
  assert.deepEqual(apiConfigFrom({}, site).pacDirect, []);
  assert.equal(apiConfigFrom({}, site).publicUrlSet, false);
  assert.equal(
    apiConfigFrom({ publicUrl: "https://gw.example.org/" }, site).publicUrlSet,
    true,
  );

  assert.match(
    configError({ pacDirect: "10.0.0.0/8" }).message,
    /^\/etc\/pmproxy\/server\.toml:20: pacDirect must be a list of host names, domain suffixes and address ranges/,
  );
  assert.match(
    configError({ pacDirect: [10] }).message,
    /server\.toml:20: pacDirect must be a list/,
  );
  assert.match(
    configError({ pacDirect: ["ok.example.org", "10.0.0.0/40"] }).message,
    /^\/etc\/pmproxy\/server\.toml:20: pacDirect: "10\.0\.0\.0\/40" is not a CIDR range: the prefix length/,
  );
  assert.match(
    configError({ pacDirect: ["intra*.example.org"] }).message,
    /server\.toml:20: pacDirect entry "intra\*\.example\.org": "\*" may only start an entry, as in "\*\.example\.org"/,
  );
  assert.match(
    configError({ pacDirect: ["bad host"] }).message,
    /pacDirect entry "bad host" is not a host name; write a host name/,
  );
  assert.match(
    configError({ pacDirects: [] }).message,
    /unknown key "pacDirects" in \[api\]; did you mean "pacDirect"\?/,
  );
});

Deno.test("api config: pacDirect's line in a real server.toml", () => {
  const toml = parseTomlText(
    "/etc/pmproxy/server.toml",
    `[api]\n  httpsCert = "cert.pem"\n  pacDirect = ["ok.example.org", "*.*.bad"]\n`,
  );
  try {
    apiConfigFrom(toml.data.api, { ...site, lineOf: toml.lineOf });
    assert.fail("no error");
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    assert.match(
      e.message,
      /^\/etc\/pmproxy\/server\.toml:3: pacDirect entry "\*\.\*\.bad"/,
    );
  }
});
Deno.test("api config: metricsAllow, a list of ranges or addresses; wrong ones name the line", () => {
  assert.deepEqual(apiConfigFrom({}, site).metricsAllow, []);
  const c = apiConfigFrom({
    metricsAllow: ["10.0.0.0/24", "192.168.1.5", "2001:db8::/32"],
  }, site);
  assert.deepEqual(
    c.metricsAllow.map((r) => [r.prefix, r.v4]),
    [[120, true], [128, true], [32, false]],
  );
  assert.match(
    configError({ metricsAllow: "10.0.0.0/8" }).message,
    /^\/etc\/pmproxy\/server\.toml:20: metricsAllow must be a list of address ranges, e\.g\. \["10\.0\.0\.0\/24"/,
  );
  assert.match(
    configError({ metricsAllow: ["10.0.0.0/33"] }).message,
    /^\/etc\/pmproxy\/server\.toml:20: metricsAllow: "10\.0\.0\.0\/33" is not a CIDR range: the prefix length/,
  );
  assert.match(
    configError({ metricsAllow: ["prometheus.lan"] }).message,
    /server\.toml:20: metricsAllow: "prometheus\.lan" is not a CIDR range/,
  );
  assert.match(
    configError({ metricsAllow: [10] }).message,
    /server\.toml:20: metricsAllow: 10 is not an address range in quotes/,
  );
  assert.match(
    configError({ metricAllow: [] }).message,
    /did you mean "metricsAllow"/,
  );
});
