/**
 * The API client: the original's error bodies in words (anything else
 * shown raw), and a timeout for a server that never answers.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ApiClient, describeErrorBody } from "../api/client.ts";
import { FakeGateway } from "./helpers/api_fake_gateway.ts";
import { startTestApi } from "./helpers/api_server.ts";

function words(body: string): string {
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(body);
  } catch {
    json = undefined;
  }
  return describeErrorBody(body, json);
}

Deno.test("client: the original's error shapes in words", () => {
  assert.equal(
    words(`{"message":"Incorrect password"}\n`),
    "Incorrect password",
  );
  assert.equal(
    words(`{"Mng":"nope","Cmd":"get"}\n`),
    `the server has no manager "nope" answering "get" (see the rule and managers.toml)`,
  );
  assert.equal(
    words(`{"Logged":"","Decrypted":"user0"}\n`),
    "this secret is user0's, but nobody is logged in at your IP address; log in again",
  );
  assert.equal(
    words(`{"User":"nobody","DB":"map"}\n`),
    `unknown user "nobody" in the user database "map"`,
  );
  assert.equal(words(`{"User":"user0"}\n`), "user0 is not an administrator");
  assert.equal(words(`{"IP":"10.0.0.1"}`), "nobody is logged in at 10.0.0.1");
  assert.equal(words(`{"Result":false}`), "the rules evaluated to false");
  assert.equal(words(`{"Quota":"1.0 GB"}`), "quota reached: 1.0 GB");
  assert.equal(words(`{"other":1}`), `{"other":1}`);
  assert.equal(words("plain failure\n"), "plain failure");
  assert.equal(words(""), "(empty answer)");
});

Deno.test("client: a server that never answers is given up after the timeout", async () => {
  const gw = new FakeGateway();
  const stuck = Promise.withResolvers<string>();
  const t = await startTestApi(gw);
  const dir = await Deno.makeTempDir({ prefix: "pmproxy-client-" });
  const client = new ApiClient(t.origin, {
    knownServersFile: join(dir, "known.json"),
    notice: () => {},
    timeoutMs: 300,
  });
  try {
    // Answered: the certificate is learnt and pinned.
    await client.cmd({ cmd: "discover", manager: "rules" });
    gw.open = () => stuck.promise;
    await assert.rejects(
      client.cmd({
        cmd: "open",
        manager: "sessions",
        cred: { user: "user0", pass: "pass0" },
      }),
      /no answer from https:\/\/127\.0\.0\.1:\d+ within 0\.3s/,
    );
  } finally {
    client.close();
    stuck.resolve("never used");
    await t.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/** Runs openssl in `dir`; throws with its stderr when it fails. */
async function openssl(dir: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd: dir }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
}

Deno.test("client: a pinned certificate is not bypassed by a CA the system trusts", async () => {
  // The impostor's certificate is issued for 127.0.0.1 by a CA that Deno
  // trusts (DENO_CERT, as a public or corporate CA would be); the client
  // pins another certificate and must refuse before sending anything.
  const dir = await Deno.makeTempDir({ prefix: "pmproxy-pin-" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  await openssl(
    dir,
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-subj",
    "/CN=trusted CA",
    "-days",
    "2",
  );
  await openssl(
    dir,
    "req",
    ...ec,
    "-keyout",
    "srv.key",
    "-out",
    "srv.csr",
    "-subj",
    "/CN=127.0.0.1",
  );
  await Deno.writeTextFile(join(dir, "ext"), "subjectAltName=IP:127.0.0.1\n");
  await openssl(
    dir,
    "x509",
    "-req",
    "-in",
    "srv.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "srv.pem",
    "-days",
    "2",
    "-extfile",
    "ext",
  );
  await openssl(
    dir,
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "pin.key",
    "-out",
    "pin.pem",
    "-subj",
    "/CN=127.0.0.1",
    "-addext",
    "subjectAltName=IP:127.0.0.1",
    "-days",
    "2",
  );
  await Deno.writeTextFile(
    join(dir, "child.ts"),
    `import { ApiClient } from ${
      JSON.stringify(import.meta.resolve("../api/client.ts"))
    };
let received = 0;
const server = Deno.serve({
  hostname: "127.0.0.1", port: 0, onListen() {},
  cert: Deno.readTextFileSync("srv.pem"), key: Deno.readTextFileSync("srv.key"),
}, () => { received++; return new Response("impostor"); });
const client = new ApiClient("https://127.0.0.1:" + server.addr.port, { caFile: "pin.pem" });
try {
  console.log("answered: " + await client.cmd({ cmd: "discover", manager: "rules" }));
} catch (e) {
  console.log("refused: " + (e as Error).message);
}
client.close();
await server.shutdown();
console.log("requests received: " + received);
`,
  );
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "child.ts"],
      cwd: dir,
      env: { DENO_CERT: join(dir, "ca.pem"), NO_COLOR: "1" },
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    assert.match(
      text,
      /^refused: the certificate of https:\/\/127\.0\.0\.1:\d+ \(SHA-256 [0-9A-F:]+\) is not the one in pin\.pem/,
    );
    assert.match(text, /requests received: 0\n$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
