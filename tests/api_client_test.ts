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
    await client.cmd({ cmd: "show", manager: "rules" });
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
