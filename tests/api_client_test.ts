/**
 * The client's reading of the original's error bodies: every shape the
 * original's client knew is put in words; anything else is shown raw.
 */
import assert from "node:assert/strict";
import { describeErrorBody } from "../api/client.ts";

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
