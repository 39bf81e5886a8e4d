/**
 * `explain`: evaluates the rule for facts an administrator gives (a URL,
 * and optionally a client IP, a user taken as logged in there, a time)
 * without making a request, and says, for each manager the evaluation
 * reaches in order, its value and why, the resources that would be
 * attached, and the answer. Nothing is marked as used and nothing is
 * counted.
 *
 * @module
 */
import { evaluate } from "../rule/mod.ts";
import type { RequestFacts } from "../proxy/policy.ts";
import type {
  ExplainQuery,
  ExplainStep,
  Explanation,
  Grant,
  Manager,
} from "./types.ts";
import type { LoadedManagers } from "./config/loader.ts";
import type { SessionIpm } from "./sessions/session_ipm.ts";
import { RequestContext } from "./request_context.ts";

const RESOURCE_KINDS = new Set([
  "dwnConsR",
  "bwConsR",
  "parentProxy",
  "netIface",
]);

/** The facts of a query, as the proxy would see the request. */
function factsOf(query: ExplainQuery, ip: string): RequestFacts {
  const text = query.url.trim();
  const connect = !text.includes("://") && /:\d+$/.test(text);
  let host = text;
  let port = 80;
  try {
    const u = new URL(
      connect
        ? `https://${text}`
        : text.includes("://")
        ? text
        : `http://${text}`,
    );
    host = u.hostname.replace(/^\[|\]$/g, "").toLowerCase();
    port = u.port ? Number(u.port) : u.protocol === "https:" ? 443 : 80;
  } catch {
    // Not a URL: taken as a host name, as discover does.
  }
  return {
    clientIp: ip,
    time: query.at ?? new Date(),
    method: connect ? "CONNECT" : "GET",
    url: text,
    host,
    port,
  };
}

/** What the explanation needs of the running gateway. */
export interface ExplainInput {
  loaded: LoadedManagers;
  sessions: readonly SessionIpm[];
  /**
   * The assumed user's groups by user database, looked up beforehand
   * (evaluation is synchronous).
   */
  assumedGroups?: Record<string, string[]>;
}

/** Explains `query` with the loaded rule and managers. */
export function explainRule(
  input: ExplainInput,
  query: ExplainQuery & { ip: string },
): Explanation {
  const facts = factsOf(query, query.ip);
  const assumedUser = query.user;
  const base = new RequestContext(facts, input.sessions, { assumedUser });
  const groups = input.assumedGroups ?? {};
  const ctx = assumedUser === undefined ? base : {
    facts,
    explaining: base.explaining,
    user: () => assumedUser,
    groups: (db: string) => groups[db] ?? [],
  };
  const grant: Grant = { meters: [] };
  const steps: ExplainStep[] = [];
  const reached: Manager[] = [];
  const allowedByRule = evaluate(input.loaded.rule, (name) => {
    const m = input.loaded.managers.get(name)!;
    const refusedBefore = grant.refusal;
    const value = m.evaluate(ctx, grant);
    const refusedHere = grant.refusal !== refusedBefore;
    steps.push({
      name,
      kind: m.kind,
      value,
      ok: value && !refusedHere,
      why: m.explain?.(ctx, value) ??
        (value ? `${name} is true` : m.whyFalse?.(ctx) ?? `${name} is false`),
    });
    if (!reached.includes(m)) reached.push(m);
    return value;
  });
  const allowed = allowedByRule && grant.refusal === undefined;
  const user = ctx.user();
  return {
    facts: {
      ip: facts.clientIp,
      ...(user !== undefined ? { user } : {}),
      time: facts.time.toISOString(),
      method: facts.method,
      host: facts.host,
      port: facts.port,
    },
    allowed,
    ...(allowed ? {} : {
      reason: grant.refusal?.reason ??
        `the rule is false for this request`,
    }),
    steps,
    resources: reached.filter((m) => RESOURCE_KINDS.has(m.kind)).map((m) => ({
      name: m.name,
      kind: m.kind,
      why: m.explain?.(ctx, true) ?? `${m.name} is attached`,
    })),
    route: grant.route ?? { kind: "direct" },
  };
}
