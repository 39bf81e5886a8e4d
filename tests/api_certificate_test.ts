/**
 * The generated API certificate: a leaf (CA:FALSE, serverAuth) naming
 * localhost and 127.0.0.1, verified by real curl (`--cacert`) and by Deno
 * (`caCerts`); the key file is private; existing files are kept.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ensureCertificate } from "../api/certificate.ts";
import { apiConfigFrom } from "../api/config.ts";
import { startApi } from "../api/mod.ts";
import { FakeGateway } from "./helpers/api_fake_gateway.ts";
import { startTestApi } from "./helpers/api_server.ts";

async function run(cmd: string, args: string[], stdin?: string) {
  const child = new Deno.Command(cmd, {
    args,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await child.output();
  const d = new TextDecoder();
  return {
    code: out.code,
    stdout: d.decode(out.stdout),
    stderr: d.decode(out.stderr),
  };
}

Deno.test("certificate: generated once as an ECDSA P-256 leaf with the right names", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pmproxy-cert-" });
  try {
    const cert = join(dir, "sub", "cert.pem");
    const key = join(dir, "sub", "key.pem");
    const first = await ensureCertificate(cert, key, { hosts: ["10.1.2.3"] });
    assert.equal(first.generated, true);
    assert.equal((await Deno.stat(key)).mode! & 0o777, 0o600);
    assert.equal(await Deno.readTextFile(cert), first.certPem);
    const again = await ensureCertificate(cert, key);
    assert.equal(again.generated, false);
    assert.equal(again.certPem, first.certPem);

    const text = await run("openssl", ["x509", "-noout", "-text", "-in", cert]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /ASN1 OID: prime256v1/);
    assert.match(text.stdout, /ecdsa-with-SHA256/);
    assert.match(text.stdout, /CA:FALSE/);
    assert.match(text.stdout, /Digital Signature/);
    assert.match(text.stdout, /TLS Web Server Authentication/);
    assert.match(text.stdout, /DNS:localhost/);
    assert.match(text.stdout, new RegExp(`DNS:${Deno.hostname()}`));
    assert.match(text.stdout, /IP Address:127\.0\.0\.1/);
    assert.match(text.stdout, /IP Address:0:0:0:0:0:0:0:1/);
    assert.match(text.stdout, /IP Address:10\.1\.2\.3/);
    const keyText = await run("openssl", ["pkey", "-noout", "-in", key]);
    assert.equal(keyText.code, 0, keyText.stderr);
    assert.match(await Deno.readTextFile(key), /^-----BEGIN PRIVATE KEY-----/);

    // A missing key means a new pair (both files rewritten).
    await Deno.remove(key);
    const fresh = await ensureCertificate(cert, key);
    assert.equal(fresh.generated, true);
    assert.notEqual(fresh.certPem, first.certPem);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("certificate: the running API verifies with curl --cacert and Deno caCerts", async () => {
  const t = await startTestApi(new FakeGateway());
  try {
    const body = JSON.stringify({ cmd: "discover", manager: "rules" });
    for (const host of ["127.0.0.1", "localhost"]) {
      const res = await run("curl", [
        "-sS",
        "--max-time",
        "20",
        "--cacert",
        t.certFile,
        "--resolve",
        `localhost:${t.api.addr.port}:127.0.0.1`,
        "-d",
        body,
        `https://${host}:${t.api.addr.port}/api/cmd`,
      ]);
      assert.equal(res.code, 0, `${host}: ${res.stderr}`);
      assert.match(res.stdout, /"result":"false"/);
    }
    // Without the certificate curl refuses: the check is real.
    const refused = await run("curl", [
      "-sS",
      "--max-time",
      "20",
      "-d",
      body,
      `${t.origin}/api/cmd`,
    ]);
    assert.notEqual(refused.code, 0);

    const client = Deno.createHttpClient({
      caCerts: [await Deno.readTextFile(t.certFile)],
    });
    try {
      const res = await fetch(`${t.origin}/api/cmd`, {
        method: "POST",
        body,
        client,
      });
      assert.equal(res.status, 200);
      await res.body?.cancel();
    } finally {
      client.close();
    }
    await assert.rejects(
      fetch(`${t.origin}/api/cmd`, { method: "POST", body }),
    );
  } finally {
    await t.close();
  }
});

Deno.test("startApi: a broken certificate and a busy address are said plainly", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pmproxy-cert-bad-" });
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const config = (addr: string) =>
      apiConfigFrom({ server: { addr } }, {
        file: "server.toml",
        configDir: dir,
      });
    await assert.rejects(
      startApi(config(`127.0.0.1:${busy.addr.port}`), new FakeGateway()),
      /is in use by another program/,
    );
    await Deno.writeTextFile(join(dir, "cert.pem"), "not a certificate");
    await assert.rejects(
      startApi(config("127.0.0.1:0"), new FakeGateway()),
      /cannot use .*cert\.pem and .*key\.pem for TLS.*remove both/,
    );
  } finally {
    busy.close();
    await Deno.remove(dir, { recursive: true });
  }
});
