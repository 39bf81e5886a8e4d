/**
 * Failed logins slow further tries down: counted per source address and
 * per user name in the state store (so they hold across restarts and
 * across gateways sharing a store), each try past a few failures must wait
 * twice as long as the one before, up to a cap. An address guessing is
 * held back up to 15 minutes; a user name only up to a minute, so a person
 * logging in correctly from another address is not locked out by someone
 * guessing their account elsewhere for long. A correct login forgets the
 * failures of its address and of its user name.
 *
 * The same throttle serves logins through the API and `Proxy-Authorization`
 * credentials. When the store cannot be asked, failures are still counted
 * in memory. Private to this folder.
 *
 * @module
 */
import type { LoginFailures, StateStore } from "../state/store.ts";

/** How one kind of key (address, user name) is throttled. */
export interface ThrottleRule {
  /** Failures allowed before any wait. */
  free: number;
  /** The wait after the first failure past `free` (ms); it doubles after. */
  firstMs: number;
  /** The longest wait (ms). */
  capMs: number;
}

/** Per source address. */
export const ADDRESS_RULE: ThrottleRule = {
  free: 5,
  firstMs: 1000,
  capMs: 15 * 60_000,
};

/** Per user name, whatever the address. */
export const USER_RULE: ThrottleRule = {
  free: 10,
  firstMs: 1000,
  capMs: 60_000,
};

/** How long a try must wait after `f` failures under `rule` (ms). */
export function waitAfter(f: LoginFailures, rule: ThrottleRule): number {
  if (f.count <= rule.free) return 0;
  const doublings = Math.min(f.count - rule.free - 1, 30);
  return Math.min(rule.capMs, rule.firstMs * 2 ** doublings);
}

/** The throttle of a gateway's logins; see the module documentation. */
export class LoginThrottle {
  /** Failures seen here, for when the store cannot be asked. */
  readonly #local = new Map<string, LoginFailures>();
  #store?: StateStore;

  constructor(
    readonly clock: () => Date,
    readonly rules: { address: ThrottleRule; user: ThrottleRule } = {
      address: ADDRESS_RULE,
      user: USER_RULE,
    },
  ) {}

  /** Counts in `store` from now on. */
  use(store: StateStore): void {
    this.#store = store;
  }

  #keys(ip: string, user: string): [string, ThrottleRule][] {
    return [
      [`addr:${ip}`, this.rules.address],
      [`user:${user.toLowerCase()}`, this.rules.user],
    ];
  }

  async #failures(key: string): Promise<LoginFailures | undefined> {
    try {
      const stored = await this.#store?.loginFailures(key);
      if (stored) return stored;
    } catch {
      // The store is down: what this gateway saw.
    }
    return this.#local.get(key);
  }

  /**
   * How long a login of `user` from `ip` must still wait (ms; 0: it may be
   * tried now).
   */
  async retryAfterMs(ip: string, user: string): Promise<number> {
    const now = this.clock().getTime();
    let wait = 0;
    for (const [key, rule] of this.#keys(ip, user)) {
      const f = await this.#failures(key);
      if (!f) continue;
      wait = Math.max(wait, f.last + waitAfter(f, rule) - now);
    }
    return Math.max(0, wait);
  }

  /** A failed login of `user` from `ip`. */
  async failed(ip: string, user: string): Promise<void> {
    const now = this.clock().getTime();
    for (const [key, rule] of this.#keys(ip, user)) {
      const forgetMs = rule.capMs * 2;
      const local = this.#local.get(key);
      const counted = {
        count: (local && now - local.last < forgetMs ? local.count : 0) + 1,
        last: now,
      };
      this.#local.set(key, counted);
      try {
        const stored = await this.#store?.recordLoginFailure(key, {
          now,
          forgetMs,
        });
        if (stored) this.#local.set(key, stored);
      } catch {
        // Counted here; the store gets the next one.
      }
    }
    if (this.#local.size > 10_000) this.#prune(now);
  }

  /** A correct login of `user` from `ip`: their failures are forgotten. */
  async succeeded(ip: string, user: string): Promise<void> {
    for (const [key] of this.#keys(ip, user)) {
      this.#local.delete(key);
      try {
        await this.#store?.clearLoginFailures(key);
      } catch {
        // Forgotten when they expire.
      }
    }
  }

  #prune(now: number): void {
    for (const [key, f] of this.#local) {
      if (now - f.last > 2 * this.rules.address.capMs) this.#local.delete(key);
    }
  }
}
