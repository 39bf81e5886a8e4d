/**
 * The memory of `Proxy-Authorization: Basic` credentials a user database
 * has answered about, so that a `sessionIPM` with `proxyAuth = true` asks
 * the database once, not at every request: credentials it accepted are
 * trusted for five minutes, credentials it refused are refused for 30 s (a
 * client retrying them, or guessing, does not reach the database at every
 * request). Only a SHA-256 digest of user and password is kept, compared in
 * constant time. At most 10,000 users are remembered each way. Private to this
 * folder.
 *
 * @module
 */
import type { ProxyCredentials } from "../../proxy/policy.ts";

/** How long checked proxy credentials are trusted without asking the database again. */
const PROXY_AUTH_TTL_MS = 5 * 60_000;
/** At most this many users' proxy credentials are remembered. */
const PROXY_AUTH_MAX = 10_000;
/**
 * Wrong proxy credentials are remembered this long, so a client retrying
 * them (or guessing) does not reach the user database at every request.
 */
const PROXY_REFUSED_TTL_MS = 30_000;

/**
 * node:crypto, for synchronous SHA-256 and constant-time comparison: loaded
 * by {@link ProxyAuthCache.ready} before the first credentials are
 * remembered, not at start (node:crypto costs about 5 MiB of resident
 * memory, and only `proxyAuth = true` needs it). A static specifier keeps
 * it in the module graph of `deno compile` and `deno bundle`.
 */
let nodeCrypto: typeof import("node:crypto") | undefined;

function crypto(): typeof import("node:crypto") {
  // Unreachable without ready(): digests exist only for remembered entries.
  if (!nodeCrypto) throw new Error("ProxyAuthCache: ready() was not awaited");
  return nodeCrypto;
}

function digestOf(creds: ProxyCredentials): Uint8Array {
  return new Uint8Array(
    crypto().createHash("sha256").update(`${creds.user}\u0000${creds.pass}`)
      .digest(),
  );
}

function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  return crypto().timingSafeEqual(a, b);
}

interface Checked<T> {
  digest: Uint8Array;
  /** What the accepted credentials gave (the manager's session). */
  value: T;
  until: number;
}

/**
 * Proxy credentials checked recently, by user name: what accepted ones
 * gave (`T`), and which were refused. Times are ms since the epoch.
 */
export class ProxyAuthCache<T> {
  /** Credentials the database accepted, by user name. */
  readonly #checked = new Map<string, Checked<T>>();
  /** User name -> digest and expiry of credentials the database refused. */
  readonly #refused = new Map<string, { digest: Uint8Array; until: number }>();

  /**
   * Loads what digests need; awaited before credentials are checked, so
   * that {@link refuse} and {@link accept} (and then the synchronous
   * lookups) find it.
   */
  async ready(): Promise<void> {
    nodeCrypto ??= await import("node:crypto");
  }

  /**
   * What these credentials gave when accepted within the last five
   * minutes; undefined when not checked, expired or another password
   * (synchronous: no database access).
   */
  accepted(creds: ProxyCredentials, now: number): T | undefined {
    const checked = this.#checked.get(creds.user);
    if (!checked || checked.until <= now) return undefined;
    const digest = digestOf(creds);
    if (!timingSafeEqual(digest, checked.digest)) return undefined;
    return checked.value;
  }

  /** True when the database refused these very credentials in the last 30 s. */
  refusedRecently(creds: ProxyCredentials, now: number): boolean {
    const refused = this.#refused.get(creds.user);
    if (!refused) return false;
    if (refused.until <= now) {
      this.#refused.delete(creds.user);
      return false;
    }
    return timingSafeEqual(digestOf(creds), refused.digest);
  }

  /**
   * Remembers that the database refused these credentials (a wrong
   * password or an unknown user, not a database that could not be asked).
   */
  refuse(creds: ProxyCredentials, now: number): void {
    if (this.#refused.size >= PROXY_AUTH_MAX) this.#refused.clear();
    this.#refused.set(creds.user, {
      digest: digestOf(creds),
      until: now + PROXY_REFUSED_TTL_MS,
    });
  }

  /**
   * Remembers that the database accepted these credentials, and what they
   * give, for five minutes. When full, expired entries go first, then all.
   */
  accept(creds: ProxyCredentials, value: T, now: number): void {
    if (this.#checked.size >= PROXY_AUTH_MAX) {
      for (const [user, c] of this.#checked) {
        if (c.until <= now) this.#checked.delete(user);
      }
      if (this.#checked.size >= PROXY_AUTH_MAX) this.#checked.clear();
    }
    this.#checked.set(creds.user, {
      digest: digestOf(creds),
      until: now + PROXY_AUTH_TTL_MS,
      value,
    });
  }
}
