/**
 * The captive-portal exception (`managers/captive_portal.ts`): a tunnel to
 * the gateway's own API is let through before login, and the API is told
 * who is behind it.
 */
import assert from "node:assert/strict";
import { withCaptivePortal } from "../managers/mod.ts";
import type { Decision, Policy, RequestFacts } from "../proxy/policy.ts";

const refuseAll: Policy = {
  decide: () => ({ allowed: false, status: 403, reason: "no" }),
};

function facts(method: string, host: string, port: number): RequestFacts {
  return {
    clientIp: "10.0.0.7",
    time: new Date(),
    method,
    url: method === "CONNECT" ? `${host}:${port}` : `http://${host}:${port}/`,
    host,
    port,
  };
}

Deno.test("captive portal: only a tunnel to the API's port on one of our hosts passes, and tells who is behind it", async () => {
  const behind = new Map<string, string>();
  const policy = withCaptivePortal(refuseAll, {
    apiPort: 4443,
    publicUrl: "https://gateway.example.org:4443/",
    behind,
    ownHosts: ["localhost", "10.0.0.1"],
  });
  const allowed = (await policy.decide(
    facts("CONNECT", "gateway.example.org", 4443),
  )) as Extract<Decision, { allowed: true }>;
  assert.equal(allowed.allowed, true);
  assert.deepEqual(allowed.route, { kind: "direct" });
  const end = allowed.onUpstream!({
    transport: "tcp",
    hostname: "127.0.0.1",
    port: 50123,
  });
  assert.deepEqual([...behind], [["127.0.0.1|50123", "10.0.0.7"]]);
  end();
  assert.equal(behind.size, 0);
  assert.equal(
    (await policy.decide(facts("CONNECT", "10.0.0.1", 4443))).allowed,
    true,
  );
  // Another port, another host, or a plain request: the gateway decides.
  for (
    const f of [
      facts("CONNECT", "10.0.0.1", 443),
      facts("CONNECT", "example.org", 4443),
      facts("GET", "10.0.0.1", 4443),
    ]
  ) {
    assert.equal((await policy.decide(f)).allowed, false, f.url);
  }
});
