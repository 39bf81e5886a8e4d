/**
 * What a manager may ask about the request being decided: its facts, and
 * its user (the session at the client IP, or the proxy credentials' user),
 * found at the first question and only then.
 *
 * @module
 */
import type { RequestFacts } from "../proxy/policy.ts";
import type { EvalContext } from "./types.ts";
import type { Session, SessionIpm } from "./sessions/session_ipm.ts";

/** The EvalContext of one request; the user is found at first use. */
export class RequestContext implements EvalContext {
  #resolved = false;
  #session?: Session;
  constructor(
    readonly facts: RequestFacts,
    readonly sessions: readonly SessionIpm[],
    /** Set when the rule is explained rather than a request decided. */
    readonly explaining?: { assumedUser?: string },
  ) {}
  #resolve(): Session | undefined {
    if (!this.#resolved) {
      this.#resolved = true;
      const now = this.facts.time.getTime();
      const creds = this.facts.proxyAuth;
      if (creds) {
        for (const s of this.sessions) {
          const found = s.proxySession(creds, now);
          if (found) {
            this.#session = found;
            return found;
          }
        }
      }
      for (const s of this.sessions) {
        const found = s.sessionAt(this.facts.clientIp, now);
        if (found) {
          this.#session = found;
          break;
        }
      }
    }
    return this.#session;
  }
  user(): string | undefined {
    return this.#resolve()?.user;
  }
  groups(userDb: string): string[] {
    return this.#resolve()?.groups[userDb] ?? [];
  }
}
