/**
 * A fake request context and a `fail` that throws a ConfigError, for the
 * unit tests of the manager kinds.
 *
 * @module
 */
import type { RequestFacts } from "../../proxy/policy.ts";
import {
  ConfigError,
  type EvalContext,
  type Grant,
} from "../../managers/types.ts";

/** An EvalContext over fixed facts, user and groups. */
export function fakeCtx(
  facts: Partial<RequestFacts> = {},
  options: { user?: string; groups?: Record<string, string[]> } = {},
): EvalContext {
  const full: RequestFacts = {
    clientIp: "127.0.0.1",
    time: new Date("2026-01-05T12:00:00Z"),
    method: "GET",
    url: "http://example.org/",
    host: "example.org",
    port: 80,
    ...facts,
  };
  return {
    facts: full,
    user: () => options.user,
    groups: (db) => options.groups?.[db] ?? [],
  };
}

/** An empty grant. */
export function emptyGrant(): Grant {
  return { meters: [] };
}

/** A `fail` that throws a ConfigError naming the key, at `managers.toml`. */
export function failAt(key: string, problem: string): never {
  throw new ConfigError({ file: "managers.toml" }, `${key}: ${problem}`);
}
