/**
 * Open rules: a rule that lets a request through while nothing in it knows
 * who the client is makes the gateway an open proxy. The loader
 * (`loader.ts`) asks {@link findOpenPath} about every rule and, knowing
 * where the proxy listens, warns (loopback, one address) or refuses (every
 * interface, unless `allowOpenProxy = true`).
 *
 * A manager identifies the client when it is true only for someone known:
 * a `sessionIPM` (a session opened from the client's address, or proxy
 * credentials with `proxyAuth`), a `rangeIPM` (the client's address is in a
 * range the site chose) and a `groupIPM` (it needs a user). The rule is open
 * when, with every identifying manager false, some values of the other names
 * make it true: matchers such as `timeSpan` or `hostMatcher` may be true or
 * false, resource managers (`dwnConsR`, `bwConsR`, `parentProxy`,
 * `netIface`) are always true.
 *
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseRule } from "../../rule/mod.ts";
 * import { describeOpenPath, findOpenPath } from "./open_rule.ts";
 *
 * const kinds = new Map([["sessions", "sessionIPM"], ["night", "timeSpan"]]);
 * const path = findOpenPath(parseRule("night or sessions"), (n) => kinds.get(n));
 * assert.equal(
 *   describeOpenPath("night or sessions", path!),
 *   'rule "night or sessions" lets a request through when sessions is false: nobody is identified; it relies on night (timeSpan) being true',
 * );
 * assert.equal(findOpenPath(parseRule("sessions and night"), (n) => kinds.get(n)), undefined);
 * ```
 *
 * @module
 */
import { evaluate, type Rule, ruleNames } from "../../rule/mod.ts";
import { cidrContains, parseCidr, parseIp } from "../values/ip.ts";

/** Manager kinds that are true only for a client they know. */
export const IDENTIFYING_KINDS: readonly string[] = [
  "sessionIPM",
  "rangeIPM",
  "groupIPM",
];

/** Manager kinds that are always true in the rule (resources). */
export const ALWAYS_TRUE_KINDS: readonly string[] = [
  "dwnConsR",
  "bwConsR",
  "parentProxy",
  "netIface",
];

/** One manager an open path goes through, besides the identifying ones. */
export interface PathStep {
  name: string;
  /** Its kind; undefined when the caller did not know it. */
  kind: string | undefined;
  /** Its value on the path. */
  value: boolean;
  /** True for a resource manager, whose value is always true. */
  always: boolean;
}

/** How a request gets through a rule without being identified. */
export interface OpenPath {
  /** The identifying managers of the rule (all false on the path), in order. */
  unidentified: string[];
  /** The other managers evaluation reaches on the path, in order. */
  reliesOn: PathStep[];
}

/**
 * Answers how `rule` lets a request through with every identifying manager
 * false, or undefined when it cannot (the rule is closed). `kindOf` gives
 * the kind of a name (a name it does not know counts as a matcher that may
 * be true or false).
 *
 * The search evaluates the rule with the identifying managers false and
 * the resources true, and tries the values of the other matchers only for
 * those evaluation reaches, false first, backtracking on the last one
 * chosen: so the path found names only the matchers it needs. The cost
 * doubles with each matcher reached, and a rule names a handful.
 */
export function findOpenPath(
  rule: Rule,
  kindOf: (name: string) => string | undefined,
): OpenPath | undefined {
  const unidentified: string[] = [];
  for (const { name } of ruleNames(rule)) {
    const kind = kindOf(name);
    if (
      kind !== undefined && IDENTIFYING_KINDS.includes(kind) &&
      !unidentified.includes(name)
    ) {
      unidentified.push(name);
    }
  }
  // The values chosen for free matchers, in the order evaluation reached
  // them. Evaluation is deterministic, so a run with the same choices
  // reaches the same matchers in the same order.
  const choices: { name: string; value: boolean }[] = [];
  for (;;) {
    const values = new Map<string, boolean>();
    const reliesOn: PathStep[] = [];
    let next = 0;
    const valueOf = (name: string): boolean => {
      const kind = kindOf(name);
      if (kind !== undefined && IDENTIFYING_KINDS.includes(kind)) return false;
      let value = values.get(name);
      if (value === undefined) {
        const always = kind !== undefined && ALWAYS_TRUE_KINDS.includes(kind);
        if (always) {
          value = true;
        } else {
          if (next === choices.length) choices.push({ name, value: false });
          value = choices[next++].value;
        }
        values.set(name, value);
        reliesOn.push({ name, kind, value, always });
      }
      return value;
    };
    if (evaluate(rule, valueOf)) return { unidentified, reliesOn };
    // Closed for these choices: flip the last choice still false (later
    // ones are all true and every combination under them was tried).
    while (choices.length > 0 && choices[choices.length - 1].value) {
      choices.pop();
    }
    if (choices.length === 0) return undefined;
    choices[choices.length - 1].value = true;
  }
}

function listOf(names: string[]): string {
  if (names.length <= 1) return names.join("");
  return `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
}

/**
 * The sentence that names the path: `rule "sessions or true" lets a request
 * through when sessions is false: nobody is identified`, with the managers
 * it relies on.
 */
export function describeOpenPath(ruleText: string, path: OpenPath): string {
  const ids = path.unidentified;
  const when = ids.length === 0
    ? "without any manager that identifies the client (a sessionIPM, rangeIPM or groupIPM)"
    : `when ${listOf(ids)} ${ids.length === 1 ? "is" : "are"} false`;
  const steps = path.reliesOn.map((step) => {
    const kind = step.kind ?? "matcher";
    return step.always
      ? `${step.name} (${kind}, always true)`
      : `${step.name} (${kind}) being ${step.value}`;
  });
  return `rule ${
    JSON.stringify(ruleText)
  } lets a request through ${when}: nobody is identified${
    steps.length > 0 ? `; it relies on ${listOf(steps)}` : ""
  }`;
}

/** Where the proxy listens, as `[proxy.server] addr` says. */
export interface ListenAddress {
  /** The host part; empty for every interface (`":8080"`). */
  hostname: string;
  port: number;
}

/** Who can reach a listening address. */
export type ListenScope = "every interface" | "loopback" | "one address";

const LOOPBACK_V4 = parseCidr("127.0.0.0/8");

/**
 * `"every interface"` for an empty host, `0.0.0.0` and `::`; `"loopback"`
 * for `localhost`, 127.0.0.0/8 and `::1`; `"one address"` otherwise.
 */
export function listenScope(hostname: string): ListenScope {
  if (hostname === "") return "every interface";
  if (hostname.toLowerCase() === "localhost") return "loopback";
  const bytes = parseIp(hostname);
  if (bytes === undefined) return "one address";
  const v4 = bytes.slice(0, 12).every((b, i) => b === (i < 10 ? 0 : 0xff));
  if (v4 && bytes.slice(12).every((b) => b === 0)) return "every interface";
  if (!v4 && bytes.every((b) => b === 0)) return "every interface";
  if (typeof LOOPBACK_V4 !== "string" && cidrContains(LOOPBACK_V4, bytes)) {
    return "loopback";
  }
  if (bytes.slice(0, 15).every((b) => b === 0) && bytes[15] === 1) {
    return "loopback";
  }
  return "one address";
}

/** `addr` as it would be written in server.toml. */
export function formatListen(listen: ListenAddress): string {
  const host = listen.hostname.includes(":") && !listen.hostname.startsWith("[")
    ? `[${listen.hostname}]`
    : listen.hostname;
  return `${host}:${listen.port}`;
}

/** Options of {@link judgeOpenRule}. */
export interface JudgeOptions {
  /** Where the proxy listens. */
  listen: ListenAddress;
  /** `allowOpenProxy` of managers.toml. */
  allowOpenProxy: boolean;
}

/**
 * What to say about an open rule, given where the proxy listens: `fatal`
 * on every interface without `allowOpenProxy` (anyone who reaches the
 * gateway could use it), a warning otherwise.
 */
export function judgeOpenRule(
  ruleText: string,
  path: OpenPath,
  options: JudgeOptions,
): { fatal: boolean; message: string } {
  const problem = describeOpenPath(ruleText, path);
  const addr = formatListen(options.listen);
  switch (listenScope(options.listen.hostname)) {
    case "loopback":
      return {
        fatal: false,
        message:
          `${problem}; the proxy listens on loopback only (${addr}), so only this machine can use it that way`,
      };
    case "one address":
      return {
        fatal: false,
        message:
          `${problem}; whoever reaches ${addr} can use the proxy without logging in`,
      };
    case "every interface":
      if (options.allowOpenProxy) {
        return {
          fatal: false,
          message:
            `${problem}; the proxy listens on every interface (${addr}) and allowOpenProxy = true lets anyone who reaches it use it`,
        };
      }
      return {
        fatal: true,
        message:
          `${problem}, and the proxy listens on every interface (${addr}), so anyone who reaches it could use it as an open proxy. ` +
          `Make the rule identify the client (e.g. rule = "sessions \u2227 down"), listen on loopback only ([proxy.server] addr = "127.0.0.1:${options.listen.port}" in server.toml), ` +
          `or, if an open proxy is what you want, add allowOpenProxy = true at the top of this file`,
      };
  }
}
