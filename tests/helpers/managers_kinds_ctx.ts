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
import type { KindContext } from "../../managers/config/kind_context.ts";
import { parseSize } from "../../managers/values/units.ts";

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

/**
 * The {@link KindContext} a factory gets from the loader, for a table named
 * `name`: its `fail` is {@link failAt}, warnings are collected in
 * `warnings`, and `userDbNames` are the user databases the table may name
 * (default `["map"]`).
 */
export function kindCtx(
  name: string,
  options: { userDbs?: string[]; kind?: string; warnings?: string[] } = {},
): KindContext {
  const userDbNames = options.userDbs ?? ["map"];
  const warnings = options.warnings ?? [];
  return {
    file: "managers.toml",
    kind: options.kind ?? "test",
    name,
    fail: failAt,
    warn: (key, message) => warnings.push(`${key}: ${message}`),
    duration(key) {
      return failAt(key, "durations are not read by this test context");
    },
    size(key, value) {
      const bytes = parseSize(value as string | number);
      return typeof bytes === "string" ? failAt(key, bytes) : bytes;
    },
    userDb(key) {
      return failAt(key, "user databases are not built by this test context");
    },
    userDbNames,
    clock: () => new Date(),
    persistIntervalMs: 60_000,
    syncIntervalMs: 0,
    jwtExpirationMs: 86_400_000,
    onStart() {},
    onFlush() {},
    onClose() {},
  };
}
