/**
 * `hostMatcher`: true when the requested host matches a regular expression.
 *
 * ```toml
 * [[hostMatcher]]
 *   name = "cuba"
 *   pattern = '(^|\.)cu$'   # a JavaScript RegExp, single quotes keep the backslashes
 *   # matchPort = true      # test "host:port" instead of the host alone
 *   # ignoreCase = true     # the "i" flag
 * ```
 *
 * Exactly what is tested: the pattern, compiled once by JavaScript's
 * `RegExp` (no flags unless `ignoreCase = true`; not anchored, so write `^`
 * and `$` where you mean them), is tested against the requested host name
 * as the proxy parsed it from the request (`facts.host`): for `GET
 * http://WWW.Example.cu:8080/x` and for `CONNECT www.example.cu:443` that
 * is `www.example.cu` — in lower case (the proxy lowers it), no scheme, no
 * port, no path, and an IPv6 address without brackets (`2001:db8::1`).
 * With `matchPort = true` it is tested against `host:port` instead
 * (`www.example.cu:443`, `[2001:db8::1]:443`). So write letters in the
 * pattern in lower case.
 *
 * The original matched the whole URL; a pattern containing `://` can never
 * match a host and is refused at load time.
 *
 * @module
 */
import type { EvalContext, Grant, Manager } from "../types.ts";
import { needString, optBool, type Table } from "../config/table_fields.ts";
import type { KindContext } from "../config/kind_context.ts";

/** A `hostMatcher` manager. */
export class HostMatcher implements Manager {
  readonly kind = "hostMatcher";

  /** Tests `pattern` against the host (and port, with `matchPort`). */
  constructor(
    readonly name: string,
    readonly pattern: RegExp,
    readonly matchPort = false,
  ) {}

  /**
   * The last host (and port) tested and the answer: a page's requests go
   * to a few hosts, so most requests skip the regular expression.
   */
  #lastHost: string | undefined = undefined;
  #lastPort = 0;
  #lastMatch = false;

  /** True when the host (and port, with `matchPort`) matches. */
  matches(host: string, port: number): boolean {
    if (
      host === this.#lastHost && (!this.matchPort || port === this.#lastPort)
    ) {
      return this.#lastMatch;
    }
    const match = this.#test(host, port);
    this.#lastHost = host;
    this.#lastPort = port;
    this.#lastMatch = match;
    return match;
  }

  #test(host: string, port: number): boolean {
    if (!this.matchPort) return this.pattern.test(host);
    const h = host.includes(":") ? `[${host}]` : host;
    return this.pattern.test(`${h}:${port}`);
  }

  evaluate(ctx: EvalContext, _grant: Grant): boolean {
    return this.matches(ctx.facts.host, ctx.facts.port);
  }

  whyFalse(ctx: EvalContext): string {
    return `${this.name}: ${
      this.matchPort ? `${ctx.facts.host}:${ctx.facts.port}` : ctx.facts.host
    } does not match ${this.pattern}`;
  }

  explain(ctx: EvalContext, value: boolean): string {
    return value
      ? `${
        this.matchPort ? `${ctx.facts.host}:${ctx.facts.port}` : ctx.facts.host
      } matches ${this.pattern}`
      : this.whyFalse(ctx);
  }

  show(): unknown {
    return {
      name: this.name,
      pattern: this.pattern.source,
      matchPort: this.matchPort,
      ignoreCase: this.pattern.ignoreCase,
    };
  }
}

/**
 * Compiles a pattern, or answers why not: the RegExp engine's reason and
 * the 1-based column where the pattern stops being valid (one past its
 * longest valid beginning, which is where the engine gave up or the group
 * or class that is never closed opens).
 */
export function compileHostPattern(
  pattern: string,
  flags = "",
): RegExp | { reason: string; column: number } {
  try {
    return new RegExp(pattern, flags);
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    // "Invalid regular expression: /a(/: Unterminated group" → the last part.
    const reason = message.slice(message.lastIndexOf(": ") + 2) || message;
    let valid = 0;
    for (let k = pattern.length - 1; k >= 0; k--) {
      try {
        new RegExp(pattern.slice(0, k), flags);
        valid = k;
        break;
      } catch {
        // Not valid yet: a shorter beginning.
      }
    }
    return { reason, column: valid + 1 };
  }
}

/**
 * Builds a `hostMatcher` from its table; `ctx.fail` throws the error for a key.
 */
export function hostMatcherFromTable(
  table: Table,
  ctx: KindContext,
): HostMatcher {
  const { name, fail } = ctx;
  const pattern = needString(
    table,
    "pattern",
    fail,
    `pattern = '(^|\\.)example\\.org$'`,
  );
  const matchPort = optBool(table, "matchPort", fail) ?? false;
  const ignoreCase = optBool(table, "ignoreCase", fail) ?? false;
  if (pattern.includes("://")) {
    fail(
      "pattern",
      `pattern '${pattern}' contains "://" but is tested against the host name only (like "www.example.org", no scheme, port or path); write e.g. '(^|\\.)example\\.org$'`,
    );
  }
  const re = compileHostPattern(pattern, ignoreCase ? "i" : "");
  if (!(re instanceof RegExp)) {
    fail(
      "pattern",
      `pattern '${pattern}' is not a valid JavaScript regular expression: ${re.reason} (at column ${re.column} of the pattern: ${
        JSON.stringify(pattern.slice(re.column - 1, re.column + 9))
      })`,
    );
  }
  return new HostMatcher(name, re as RegExp, matchPort);
}
