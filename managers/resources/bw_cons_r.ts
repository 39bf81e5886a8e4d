/**
 * `bwConsR`: a resource. When the rule reaches it, the request's download is
 * limited to a rate shared by all the connections of the same user; it is
 * always true.
 *
 * ```toml
 * [[bwConsR]]
 *   name = "slow"
 *   rate = "512 KiB/s"       # base 1024; "1 MB/s", or a number of bytes per second
 *   # burst = "1 MiB"        # default: one second of rate
 *   # userDBN = "map"        # shown by `show`; the user is the request's user
 * ```
 *
 * One token bucket per user (the one logged in at the client IP or
 * authenticated by `Proxy-Authorization`); a request without a user is
 * limited per client IP. Every byte read from upstream takes a token; the
 * bucket refills at `rate` by the time elapsed, up to `burst`. When the
 * tokens run out the proxy is told how many milliseconds to wait before
 * reading more. No timers: refilling is computed at each chunk.
 *
 * @module
 */
import type { Meter } from "../../proxy/policy.ts";
import { type EvalContext, GO_ON, type Grant, type Manager } from "../types.ts";
import { formatSize, parseSize } from "../values/units.ts";
import {
  needUserDbName,
  optString,
  type Table,
} from "../config/table_fields.ts";
import type { KindContext } from "../config/kind_context.ts";

/**
 * A token bucket that is a {@link Meter}: `chunk(n)` takes n tokens (the
 * bytes were read already, so the balance may go below zero) and answers
 * 0 (go on) while the balance is >= 0, else the milliseconds until it is
 * back to 0. No allocation per chunk.
 */
export class TokenBucket implements Meter {
  #tokens: number;
  #last: number;
  /** `now()` of the last chunk, for pruning idle buckets. */
  lastUsed: number;

  /** A full bucket. */
  constructor(
    /** Bytes per second. */
    readonly rate: number,
    /** Most tokens the bucket holds (bytes). */
    readonly burst: number,
    /** A clock in milliseconds (default `performance.now`). */
    readonly now: () => number = () => performance.now(),
  ) {
    this.#tokens = burst;
    this.#last = now();
    this.lastUsed = this.#last;
  }

  /** Tokens now (bytes; negative while in debt). */
  get tokens(): number {
    this.#refill();
    return this.#tokens;
  }

  /** True when the bucket is full (as good as a new one). */
  get full(): boolean {
    return this.tokens >= this.burst;
  }

  #refill(): void {
    const t = this.now();
    const elapsed = t - this.#last;
    this.#last = t;
    if (elapsed > 0) {
      this.#tokens = Math.min(
        this.burst,
        this.#tokens + elapsed * this.rate / 1000,
      );
    }
  }

  /** Takes `bytes` tokens; 0 or the milliseconds to wait. */
  chunk(bytes: number): number {
    this.#refill();
    this.lastUsed = this.#last;
    this.#tokens -= bytes;
    if (this.#tokens >= 0) return GO_ON;
    return Math.max(1, Math.ceil(-this.#tokens * 1000 / this.rate));
  }
}

/** Buckets beyond this many are pruned of the idle, full ones. */
const PRUNE_AT = 4096;
/** A full bucket unused this long (ms) can be dropped. */
const IDLE_MS = 60_000;

/** A `bwConsR` manager. */
export class BwConsR implements Manager {
  readonly kind = "bwConsR";
  #buckets = new Map<string, TokenBucket>();
  readonly #now: () => number;

  /** A limit of `rate` bytes per second per user. */
  constructor(
    readonly name: string,
    /** Bytes per second. */
    readonly rate: number,
    readonly options: {
      /** Bytes; default one second of rate. */
      burst?: number;
      userDBN?: string;
      /** Clock in milliseconds for the buckets (default `performance.now`). */
      now?: () => number;
    } = {},
  ) {
    this.#now = options.now ?? (() => performance.now());
  }

  /** Bucket size in bytes. */
  get burst(): number {
    return this.options.burst ?? this.rate;
  }

  /**
   * The meter shared by every request of that user (or of that client IP
   * when `user` is undefined); made once and reused.
   */
  meterFor(user: string | undefined, clientIp: string): TokenBucket {
    const key = user !== undefined ? `u:${user}` : `ip:${clientIp}`;
    let bucket = this.#buckets.get(key);
    if (!bucket) {
      if (this.#buckets.size >= PRUNE_AT) this.#prune();
      bucket = new TokenBucket(this.rate, this.burst, this.#now);
      this.#buckets.set(key, bucket);
    }
    return bucket;
  }

  /** How many users/IPs have a bucket now. */
  get size(): number {
    return this.#buckets.size;
  }

  // A full bucket unused for a while behaves exactly like a new one, so it
  // can go; a bucket still in debt must stay or its user would get a fresh
  // burst.
  #prune(): void {
    const t = this.#now();
    for (const [key, b] of this.#buckets) {
      if (t - b.lastUsed >= IDLE_MS && b.full) this.#buckets.delete(key);
    }
  }

  /**
   * A live reload: with the same rate and burst, the users' buckets go on
   * (a user in debt does not get a fresh burst); with another, new buckets
   * (open transfers keep the old rate).
   */
  adopt(previous: Manager): void {
    if (
      !(previous instanceof BwConsR) || previous.rate !== this.rate ||
      previous.burst !== this.burst
    ) return;
    this.#buckets = previous.#buckets;
  }

  evaluate(ctx: EvalContext, grant: Grant): boolean {
    grant.meters.push(this.meterFor(ctx.user(), ctx.facts.clientIp));
    return true;
  }

  explain(ctx: EvalContext): string {
    const user = ctx.user();
    return `downloads limited to ${formatSize(this.rate)}/s, shared by ${
      user === undefined
        ? `every connection from ${ctx.facts.clientIp}`
        : `${user}'s connections`
    }`;
  }

  show(): unknown {
    return {
      name: this.name,
      rate: `${formatSize(this.rate)}/s`,
      burst: formatSize(this.burst),
      ...(this.options.userDBN ? { userDBN: this.options.userDBN } : {}),
    };
  }
}

/**
 * Parses a rate such as `"512 KiB/s"`, `"1 MB/s"` or a number of bytes per
 * second. Answers an error sentence when it is not one.
 */
export function parseRate(value: unknown): number | string {
  const form =
    `write a rate like "512 KiB/s", "2 MB/s" (base 1024) or a number of bytes per second`;
  let n: number | string;
  if (typeof value === "number" || typeof value === "bigint") {
    n = parseSize(Number(value));
  } else if (typeof value === "string") {
    const text = value.trim();
    if (/bit/i.test(text) || /[\d\skKmMgGtT]bps$/.test(text)) {
      return `"${value}" is in bits; bwConsR rates are in bytes: ${form}`;
    }
    n = parseSize(text.replace(/\s*(\/\s*s|\/\s*sec|\/\s*second|ps)$/i, ""));
  } else {
    return `the rate must be a string or a number; ${form}`;
  }
  if (typeof n === "string") return `"${value}" is not a rate; ${form}`;
  if (n <= 0) return `the rate must be more than 0; ${form}`;
  return n;
}

/**
 * Builds a `bwConsR` from its table; `ctx.fail` throws the error for a key.
 * `now` is the buckets' clock (for tests).
 */
export function bwConsRFromTable(
  table: Table,
  ctx: KindContext,
  options: { now?: () => number } = {},
): BwConsR {
  const { name, fail } = ctx;
  if (table.rate === undefined) {
    fail("rate", `"rate" is missing; add it, for example rate = "512 KiB/s"`);
  }
  const rate = parseRate(table.rate);
  if (typeof rate === "string") return fail("rate", `"rate": ${rate}`);
  let burst: number | undefined;
  if (table.burst !== undefined) {
    const raw = table.burst;
    const b = typeof raw === "string" || typeof raw === "number"
      ? parseSize(raw)
      : typeof raw === "bigint"
      ? parseSize(Number(raw))
      : "not a size";
    if (typeof b === "string" || b <= 0) {
      fail(
        "burst",
        `"burst" must be a size more than 0 like "1 MiB" (the most a user may download at once after a pause)`,
      );
    }
    burst = b as number;
  }
  const userDBN = optString(table, "userDBN", fail, `userDBN = "map"`);
  if (userDBN !== undefined) {
    needUserDbName("userDBN", userDBN, ctx.userDbNames, fail);
  }
  return new BwConsR(name, rate, { burst, userDBN, now: options.now });
}
