/**
 * `dwnConsR`: a download quota. When the rule reaches it, it is true and
 * the request's download is counted against the user's quota.
 *
 * ```toml
 * [[dwnConsR]]
 *   name = "down"
 *   userDBN = "map"              # the user database whose groups count
 *   resetCycle = "24h"           # or "daily", "weekly", "monthly" (local midnight)
 *   # timezone = "America/Havana"  # for the calendar cycles; default: this machine's
 *   [dwnConsR.groupQuota]        # GroupQuota also accepted
 *     group0 = "1 GB"
 *   [dwnConsR.userQuota]         # optional: a user's own quota, instead of the groups'
 *     user1 = "5 GB"
 * ```
 *
 * The way sites run quotas (all optional; without them, the original's
 * behaviour):
 *
 * ```toml
 * [[dwnConsR]]
 *   name = "monthly"
 *   userDBN = "map"
 *   resetCycle = "monthly"       # "daily", "weekly" or "monthly" take:
 *   resetDay = 15                # monthly: 1-28, or "last" (default 1)
 *   # resetWeekday = "sun"       # weekly: "sun" ... "sat" (default "mon")
 *   resetTime = "06:00"          # local time of the reset (default "00:00")
 *   timezone = "America/Havana"
 *   overQuotaRate = "64 KiB/s"   # past the quota: slowed to this, not cut
 *   warnAt = "80%"               # warn from this share of the quota on
 *   countUploads = true          # bytes sent upstream count too (default false)
 *   [dwnConsR.groupQuota]
 *     students = "20 GB"
 *     staff = "1.5 TB"           # sizes up to petabytes: "5 TB", "1.5 PB"
 * ```
 *
 * - `overQuotaRate`: past the quota a user is neither cut nor refused: new
 *   requests are allowed and every transfer of theirs (plain HTTP and
 *   CONNECT, every connection) shares one token bucket of that rate (a
 *   burst of one second of it), until the reset. Consumption keeps
 *   counting. The API's user info says `overQuota: "slowed"`, the access
 *   log `TCP_MISS_SLOWED/200` for requests decided while slowed.
 * - `warnAt`: a percentage of the quota (grants included); from it on the
 *   user info says `warning: true` (the status page and `pmproxy status`
 *   warn).
 * - Grants (top-ups): an administrator's `pmproxy grant USER SIZE` (the
 *   API's `grant`) adds to that user's quota for the current cycle only,
 *   without touching consumption. Grants add up and end at the next reset.
 *   They are kept in the state store per cycle (so they survive restarts
 *   and gateways sharing it add them up), announced to the other gateways
 *   at once where the store announces changes (Redis), and read back at
 *   every flush.
 * - `resetDay`, `resetWeekday`, `resetTime`: where a calendar cycle's
 *   boundary falls, in `timezone`. A day the clocks skip the reset time
 *   (daylight-saving time) resets just after the jump; a time shown twice
 *   resets at the first.
 * - `countUploads`: bytes sent upstream (request bodies, the client's
 *   direction of tunnels) count against the same quota, with the same
 *   rules (cut, or slowed, past it).
 *
 * A user's quota is their `userQuota`, or else the sum of the quotas of
 * their groups, plus this cycle's grants. Consumption is every byte read
 * from upstream for requests that reached this manager (and with
 * `countUploads` every byte sent upstream). A chunk is accepted (and counted) while the
 * consumption before it is below the quota; the first chunk that finds the
 * consumption at or over the quota is stopped and not counted. So a
 * transfer goes over the quota by less than one chunk, like the original.
 * With several quotas on one request a chunk one of them stops is counted
 * by none of them.
 * A new request at or over quota is refused (or, with `overQuotaRate`,
 * allowed and slowed).
 *
 * Every `resetCycle` consumption returns to 0, at whole cycles counted from
 * the last reset (or at the calendar boundaries). The cycle is checked at
 * each request and each flush: one comparison.
 *
 * ## State
 *
 * In the state store (`../state/`): the last reset of the cycle, the
 * grants per user and cycle (atomic increments, gone with their cycle),
 * and one counter per user and cycle to which every gateway adds its
 * deltas with atomic increments every persist interval and on
 * flush/close. A new cycle
 * uses new counters, so a reset needs no rewrite of counters that other
 * gateways add to; old cycles' counters are deleted afterwards. The cycle
 * is rolled over once for the whole site (the store moves the last reset
 * forward only when no other gateway did).
 *
 * After each write the gateway reads the cycle's counters back, so several
 * gateways sharing one store see each other's traffic within one persist
 * interval; unless the store tells that nobody else wrote a counter since
 * its last read (`StateStore.countersUnchanged`: a lone gateway reads
 * nothing back). Between flushes, every `[state] syncInterval` (1 s), each
 * gateway also writes the counters of the users at 80 % of their quota or
 * more and reads back those of the users it carries traffic for, so it
 * stops them soon after their total over all gateways reaches the quota.
 * An administrator's `set` writes the absolute value and is announced to
 * the other gateways; traffic that they counted and had not written yet is
 * added on top of it.
 *
 * ## Usage history
 *
 * The same deltas, with each write of them (the flush and the near-quota
 * sync, never per request), are added to the usage history: bytes per user
 * per hour and per day of the manager's `timezone` (else this machine's),
 * kept `[state] historyHours` (48) and `historyDays` (400); months are
 * summed from the days when read (`_history.ts`). Bytes are attributed to
 * the hour they were written in, so they show at most one persist interval
 * late. A history write that fails is tried again with the next one; an
 * administrator's reset does not change the history (it records bytes
 * used, not the counter).
 *
 * ## How far over the quota a user can go
 *
 * One gateway stops a user's transfer at the first chunk that finds the
 * quota reached: less than one chunk over. Several gateways sharing one
 * store each enforce the total they know: their own bytes at once, the
 * others' as of their last read of that user's counter. So a user whose
 * traffic goes through G gateways at the same time goes over the quota by
 * at most G × B, B being the bytes one gateway carries for that user
 * between two writes of its counter (a persist interval's worth while
 * under 80 % of the quota, a sync interval's worth above). Example: 2
 * gateways, a user able to download 10 MB/s through each, syncInterval 1 s:
 * at most 2 × 10 MB = 20 MB over, once within 80 % of the quota.
 *
 * With `overQuotaRate` nobody is stopped: past the quota each gateway slows
 * the user down once it knows the total reached, so the same G × B is how
 * far over the quota a user still goes at full speed; afterwards at most G
 * × `overQuotaRate` (the buckets are per gateway, like `bwConsR`'s). The
 * quota every gateway enforces includes the grants it has read: a grant
 * is seen by the others within a second on Redis (announced), at their
 * next flush on a shared KV file.
 *
 * @module
 */
import {
  CommandError,
  type EvalContext,
  GO_ON,
  type Grant,
  type Manager,
  type QuotaMeter,
  STOP,
} from "../types.ts";
import type { KindContext, Table } from "../config/kind_context.ts";
import { formatSize } from "../values/units.ts";
import {
  optBool,
  optString,
  optTable,
  pickKey,
} from "../config/table_fields.ts";
import {
  type CalendarOptions,
  formatResetTime,
  parseResetCycle,
  parseResetDay,
  parseResetTime,
  parseResetWeekday,
  type ResetCycle,
} from "./_reset_cycle.ts";
import { parseRate, TokenBucket } from "../resources/bw_cons_r.ts";
import { dottedKey } from "../config/toml_file.ts";
import {
  DEFAULT_HISTORY_RETENTION,
  type HistoryRetention,
  type StateStore,
  StoreWriteError,
} from "../state/store.ts";
import type { UsageBy, UsageReport } from "../types.ts";
import { checkZone, machineZone, WEEKDAYS } from "../values/zone.ts";
import { UsageCalendar } from "./_history.ts";
import { every, type Timer } from "../../proxy/timers.ts";

/**
 * The share of the quota from which a user's counter is synced with the
 * store every sync interval, not only every persist interval.
 */
export const NEAR_QUOTA = 0.8;

/**
 * One user's consumption under one dwnConsR; it is also the meter of their
 * requests (one object per user, reused: no allocation per chunk).
 */
export class Account implements QuotaMeter {
  /** Bytes consumed in this cycle (what the store has plus `pending`). */
  cons = 0;
  /** Bytes counted here and not yet written to the store. */
  pending = 0;
  /** The user's quota (own or groups'), refreshed at each request. */
  quota = 0;
  /** Bytes granted on top of `quota` in this cycle (top-ups); 0 after a reset. */
  granted = 0;
  /**
   * With `overQuotaRate`: the bucket that slows the user down past the
   * quota, shared by all their transfers; undefined: they are cut.
   */
  slowdown: TokenBucket | undefined = undefined;
  /** When this gateway last wrote the user's bytes (ms; -1: never). */
  lastWritten = -1;
  readonly stopReason = "quota reached";

  /** The quota in force: the user's quota plus this cycle's grants. */
  get limit(): number {
    return this.quota + this.granted;
  }

  chunk(bytes: number): number {
    if (this.cons >= this.quota + this.granted) {
      const slowdown = this.slowdown;
      if (slowdown === undefined) return STOP;
      // Past the quota and slowed: the bytes still count.
      this.cons += bytes;
      this.pending += bytes;
      return slowdown.chunk(bytes);
    }
    this.cons += bytes;
    this.pending += bytes;
    return GO_ON;
  }

  /**
   * True when `chunk` would stop now. Several meters on one request ask
   * this of every quota first, so a chunk one quota stops is counted by
   * none (see `resources/combined_meter.ts`).
   */
  wouldStop(): boolean {
    return this.slowdown === undefined &&
      this.cons >= this.quota + this.granted;
  }

  /** Takes back a chunk `chunk` counted, when another meter stopped it. */
  refund(bytes: number): void {
    this.cons -= bytes;
    this.pending -= bytes;
  }
}

/** A `dwnConsR` manager. */
export class DwnConsR implements Manager {
  readonly kind = "dwnConsR";
  #accounts = new Map<string, Account>();
  #lastReset: number;
  #nextReset: number;
  #store?: StateStore;
  /** The manager a live reload replaces, until `start` takes its state. */
  #adopted?: DwnConsR;
  #syncTimer?: Timer;
  /** A near-quota sync is queued or running: the timer adds no other. */
  #syncing = false;
  /** KV work, one after the other. */
  #chain: Promise<void> = Promise.resolve();
  /** The usage history's hours, days and months. */
  readonly #calendar: UsageCalendar;
  /** History deltas not written yet (a failed write keeps them here). */
  #historyPending = new Map<string, number>();

  constructor(
    readonly name: string,
    readonly options: {
      userDBN: string;
      /** Without one, consumption returns to 0 only when an admin sets it. */
      cycle?: ResetCycle;
      /** Group -> bytes. */
      groupQuota: Record<string, number>;
      /** User -> bytes (instead of their groups' sum). */
      userQuota?: Record<string, number>;
      clock: () => Date;
      /**
       * How often users near their quota are synced with the store (ms;
       * 0 or absent: only with the flush).
       */
      syncIntervalMs?: number;
      /** Past the quota, slowed to this many bytes per second (not cut). */
      overQuotaRate?: number;
      /** The share of the quota (0-1) from which the user is warned. */
      warnAt?: number;
      /** Bytes sent upstream count against the quota too. */
      countUploads?: boolean;
      /** The clock of the slowdown buckets, in ms (default `performance.now`). */
      now?: () => number;
      /**
       * The time zone of the usage history's hours, days and months and of
       * the next reset shown to users (default: this machine's).
       */
      zone?: string;
      /** How long the usage history is kept (default 48 hours, 400 days). */
      history?: HistoryRetention;
    },
  ) {
    this.#calendar = new UsageCalendar(options.zone ?? machineZone());
    const now = options.clock().getTime();
    this.#lastReset = options.cycle ? options.cycle.current(now, now) : now;
    this.#nextReset = options.cycle
      ? options.cycle.next(this.#lastReset)
      : Infinity;
  }

  /** The user database whose groups count. */
  get userDBN(): string {
    return this.options.userDBN;
  }

  /** The last reset (ms since the epoch). */
  get lastReset(): number {
    return this.#lastReset;
  }

  /** The next reset (ms since the epoch; Infinity without a cycle). */
  get nextReset(): number {
    return this.#nextReset;
  }

  /** The user's quota in bytes for these groups. */
  quotaOf(user: string, groups: readonly string[]): number {
    const own = this.options.userQuota;
    if (own && Object.hasOwn(own, user)) return own[user];
    let sum = 0;
    const table = this.options.groupQuota;
    for (let i = 0; i < groups.length; i++) {
      if (Object.hasOwn(table, groups[i])) sum += table[groups[i]];
    }
    return sum;
  }

  /** The account of that user (made at first use). */
  account(user: string): Account {
    let acc = this.#accounts.get(user);
    if (!acc) {
      acc = new Account();
      acc.slowdown = this.#slowdown();
      this.#accounts.set(user, acc);
    }
    return acc;
  }

  /** Consumption of that user now, in bytes. */
  consumptionOf(user: string, now?: number): number {
    this.checkCycle(now ?? this.options.clock().getTime());
    return this.#accounts.get(user)?.cons ?? 0;
  }

  /**
   * Bytes consumed in the current cycle by every user known here (what
   * other gateways sharing the store counted too, as last read).
   */
  consumedBytes(now?: number): number {
    this.checkCycle(now ?? this.options.clock().getTime());
    let sum = 0;
    for (const acc of this.#accounts.values()) sum += acc.cons;
    return sum;
  }

  /** Resets when a cycle boundary has passed. One comparison otherwise. */
  checkCycle(now: number): void {
    if (now >= this.#nextReset) this.#resetAt(now);
  }

  #resetAt(now: number): void {
    const cycle = this.options.cycle!;
    const last = cycle.current(now, this.#lastReset);
    if (last > this.#lastReset) {
      this.#lastReset = last;
      for (const acc of this.#accounts.values()) {
        acc.cons = 0;
        acc.pending = 0;
        acc.granted = 0;
      }
      this.#enqueue(() => this.#writeReset(last));
    }
    this.#nextReset = cycle.next(this.#lastReset);
    // A clock far behind the stored last reset must not reset again and
    // again; the next boundary is always after now here.
    if (this.#nextReset <= now) this.#nextReset = now + 1;
  }

  /** When consumption returns to 0 next, for messages. */
  resetNote(): string {
    return Number.isFinite(this.#nextReset)
      ? `resets at ${new Date(this.#nextReset).toISOString()}`
      : "an administrator can reset it";
  }

  /** The sentence of a refused request. */
  quotaReachedReason(
    user: string,
    acc: { readonly cons: number; readonly quota: number },
  ): string {
    if (acc.quota === 0) {
      return `Quota reached: ${user} has no download quota under "${this.name}" (none of their groups has one in groupQuota); ask an administrator`;
    }
    return `Quota reached: consumption ${formatSize(acc.cons)} of quota ${
      formatSize(acc.quota)
    } for ${user} (${this.resetNote()})`;
  }

  evaluate(ctx: EvalContext, grant: Grant): boolean {
    this.checkCycle(ctx.facts.time.getTime());
    const user = ctx.user();
    if (ctx.explaining && user !== undefined) {
      // A question, not a request: no account made, nothing attached.
      const known = this.#accounts.get(user);
      const cons = known?.cons ?? 0;
      const quota = this.quotaOf(user, ctx.groups(this.options.userDBN)) +
        (known?.granted ?? 0);
      if (cons >= quota && this.options.overQuotaRate === undefined) {
        grant.refusal ??= {
          status: 403,
          reason: this.quotaReachedReason(user, { cons, quota }),
        };
      }
      return true;
    }
    if (user === undefined) {
      grant.refusal ??= {
        status: 403,
        reason:
          `${this.name}: the download quota needs a logged-in user; nobody is logged in at ${ctx.facts.clientIp}`,
      };
      return true;
    }
    const acc = this.account(user);
    acc.quota = this.quotaOf(user, ctx.groups(this.options.userDBN));
    if (acc.cons >= acc.quota + acc.granted) {
      if (acc.slowdown === undefined) {
        grant.refusal ??= {
          status: 403,
          reason: this.quotaReachedReason(user, {
            cons: acc.cons,
            quota: acc.limit,
          }),
        };
        return true;
      }
      // Past the quota with overQuotaRate: allowed, slowed by the meter.
      grant.note = "slowed";
    }
    grant.meters.push(acc);
    if (this.options.countUploads) (grant.upMeters ??= []).push(acc);
    return true;
  }

  explain(ctx: EvalContext): string {
    const user = ctx.user();
    if (user === undefined) {
      return `needs a logged-in user; nobody is logged in at ${ctx.facts.clientIp}`;
    }
    const known = this.#accounts.get(user);
    const granted = known?.granted ?? 0;
    const quota = this.quotaOf(user, ctx.groups(this.options.userDBN)) +
      granted;
    const cons = known?.cons ?? 0;
    const rate = this.options.overQuotaRate;
    const reached = cons < quota
      ? ""
      : rate === undefined
      ? " (quota reached)"
      : ` (quota reached: slowed to ${formatSize(rate)}/s)`;
    return `${formatSize(cons)} of ${formatSize(quota)}${
      granted > 0 ? ` (${formatSize(granted)} granted)` : ""
    } used by ${user}${reached}, ${this.resetNote()}`;
  }

  show(): unknown {
    // As of now: a boundary passed since the last request counts.
    this.checkCycle(this.options.clock().getTime());
    const quotas = (t: Record<string, number>) =>
      Object.fromEntries(Object.entries(t).map(([k, v]) => [k, formatSize(v)]));
    const out: Record<string, unknown> = {
      name: this.name,
      userDBN: this.options.userDBN,
      resetCycle: this.options.cycle?.text ?? "",
      groupQuota: quotas(this.options.groupQuota),
      lastReset: new Date(this.#lastReset).toISOString(),
    };
    if (this.options.userQuota) {
      out.userQuota = quotas(this.options.userQuota);
    }
    Object.assign(out, this.#showSites());
    return out;
  }

  // ---------------------------------- the way sites run quotas (issue 11)

  /** `overQuotaRate` in bytes per second, if any. */
  get overQuotaRate(): number | undefined {
    return this.options.overQuotaRate;
  }

  /** `warnAt` as a share of the quota (0-1), if any. */
  get warnAt(): number | undefined {
    return this.options.warnAt;
  }

  /** A new account's slowdown bucket: one second of burst, then the rate. */
  #slowdown(): TokenBucket | undefined {
    const rate = this.options.overQuotaRate;
    if (rate === undefined) return undefined;
    return new TokenBucket(rate, rate, this.options.now);
  }

  /**
   * After a live reload: the accounts taken over get this manager's
   * slowdown (a bucket of the same rate goes on, so a user in debt gets no
   * fresh burst).
   */
  #useRate(): void {
    const rate = this.options.overQuotaRate;
    for (const acc of this.#accounts.values()) {
      if (rate === undefined) acc.slowdown = undefined;
      else if (acc.slowdown?.rate !== rate) acc.slowdown = this.#slowdown();
    }
  }

  /** Where that user stands now under this manager (for the API). */
  status(user: string, groups: readonly string[], now: number): QuotaStatus {
    this.checkCycle(now);
    const acc = this.#accounts.get(user);
    const quota = this.quotaOf(user, groups);
    const granted = acc?.granted ?? 0;
    const limit = quota + granted;
    const cons = acc?.cons ?? 0;
    const warnAt = this.options.warnAt;
    const out: QuotaStatus = {
      quota,
      granted,
      limit,
      cons,
      warning: warnAt !== undefined && cons >= limit * warnAt,
      nextReset: this.#nextReset,
    };
    if (cons >= limit) {
      out.overQuota = this.options.overQuotaRate === undefined
        ? "refused"
        : "slowed";
    }
    return out;
  }

  /**
   * Grants a user `bytes` more for the current cycle (an administrator's
   * top-up): added to the store's grants of this cycle at once, and other
   * gateways sharing the store are told. Answers the user's grants of the
   * cycle now. Consumption is not touched; the next reset ends them.
   */
  grant(user: string, bytes: number): Promise<number> {
    this.checkCycle(this.options.clock().getTime());
    return this.#enqueue(async () => {
      const epoch = this.#lastReset;
      const acc = this.account(user);
      const store = this.#store;
      if (!store) {
        acc.granted += bytes;
        return;
      }
      const total = await store.addGrant(this.name, epoch, user, bytes);
      // A reset meanwhile ended the grant with its cycle.
      if (epoch === this.#lastReset) acc.granted = total;
      try {
        await store.publish({ kind: "grant", manager: this.name, user });
      } catch {
        // The others read it at their next flush.
      }
    }).then(() => this.#accounts.get(user)?.granted ?? 0);
  }

  /** Another gateway sharing the store granted that user more: read it. */
  async grantChanged(user: string): Promise<void> {
    const epoch = this.#lastReset;
    const grants = await this.#store!.readGrants(this.name, epoch, [user]);
    if (epoch !== this.#lastReset) return;
    this.account(user).granted = grants.get(user) ?? 0;
  }

  /** Sets every account's grants to the store's of that cycle. */
  async #reloadGrants(epoch: number): Promise<void> {
    const grants = await this.#store!.readGrants(this.name, epoch);
    if (epoch !== this.#lastReset) return;
    for (const [user, bytes] of grants) this.account(user).granted = bytes;
    for (const [user, acc] of this.#accounts) {
      if (!grants.has(user)) acc.granted = 0;
    }
  }

  /** The keys of this section as `show` prints them. */
  #showSites(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    const at = this.options.cycle?.at;
    if (at) {
      if (at.day !== undefined) out.resetDay = at.day;
      if (at.weekday !== undefined) {
        out.resetWeekday = WEEKDAYS[at.weekday];
      }
      out.resetTime = formatResetTime(at.minutes);
      out.timezone = at.zone;
    }
    if (Number.isFinite(this.#nextReset)) {
      out.nextReset = new Date(this.#nextReset).toISOString();
    }
    const rate = this.options.overQuotaRate;
    if (rate !== undefined) out.overQuotaRate = `${formatSize(rate)}/s`;
    const warnAt = this.options.warnAt;
    if (warnAt !== undefined) out.warnAt = `${formatPercent(warnAt)}%`;
    out.countUploads = this.options.countUploads === true;
    return out;
  }

  // ------------------------------------------------------------ the store

  #enqueue(work: () => Promise<void>): Promise<void> {
    const run = this.#chain.then(work);
    // A failed write must not block the ones after it; the caller of this
    // one still sees its error.
    this.#chain = run.catch((e) => {
      // A store that cannot be reached was told once by its health.
      if (this.#store?.status().ok === false) return;
      console.error(`pmproxy: dwnConsR "${this.name}": ${e}`);
    });
    return run;
  }

  /**
   * A live reload: takes the accounts (the meters of open transfers count
   * into them) and the cycle's last reset of the manager this one
   * replaces, once its queued writes are done. A changed `resetCycle`
   * takes effect at its next boundary after now; the counter goes on.
   */
  adopt(previous: Manager): void {
    if (!(previous instanceof DwnConsR)) return;
    this.#adopted = previous;
  }

  /** Restores the last reset and this cycle's consumption from the store. */
  async start(store: StateStore): Promise<void> {
    this.#store = store;
    const now = this.options.clock().getTime();
    const cycle = this.options.cycle;
    const previous = this.#adopted;
    this.#adopted = undefined;
    if (previous) {
      await previous.#chain;
      // The same map: an account the replaced manager makes until the
      // switch (a request decided meanwhile) is this one's too.
      this.#accounts = previous.#accounts;
      this.#lastReset = previous.#lastReset;
      this.#useRate();
    }
    this.#lastReset = await store.initLastReset(this.name, this.#lastReset);
    this.#nextReset = !cycle
      ? Infinity
      : previous
      ? cycle.next(cycle.current(now, this.#lastReset))
      : cycle.next(this.#lastReset);
    this.checkCycle(now);
    await this.#chain;
    await this.#reload(this.#lastReset);
    await store.deleteOtherCycles(this.name, this.#lastReset);
    const syncMs = this.options.syncIntervalMs ?? 0;
    if (syncMs > 0) {
      this.#syncTimer = every(syncMs, () => {
        if (this.#syncing) return;
        this.#syncing = true;
        this.#enqueue(() => this.#sync()).catch(() => {
          // Told by #enqueue; the deltas stay pending for the next try.
        }).finally(() => this.#syncing = false);
      });
    }
  }

  /** Stops the near-quota sync (the gateway's last flush follows). */
  stop(): Promise<void> {
    this.#syncTimer?.cancel();
    return this.#chain;
  }

  /**
   * Between flushes, for gateways sharing the store: writes the deltas of
   * the users near their quota (at {@link NEAR_QUOTA} of it or more, as
   * this gateway knows), and reads back the counters of every user this
   * gateway counted bytes for since its last write. So each
   * gateway sees the others' traffic of the users it carries within one
   * sync interval, and the others see its traffic of a user near the quota
   * as soon. Nothing is written or read while nobody downloads.
   */
  async #sync(): Promise<void> {
    const store = this.#store;
    if (!store) return;
    this.checkCycle(this.options.clock().getTime());
    const epoch = this.#lastReset;
    // One pass over the accounts' values (every second, over every user
    // known here): anybody counted since the last write, anybody near?
    let active = false;
    let near = false;
    for (const acc of this.#accounts.values()) {
      if (acc.pending === 0) continue;
      active = true;
      const limit = acc.quota + acc.granted;
      if (limit > 0 && acc.cons >= limit * NEAR_QUOTA) near = true;
    }
    if (!active) return;
    const deltas = new Map<string, number>();
    if (near) {
      for (const [user, acc] of this.#accounts) {
        const limit = acc.quota + acc.granted;
        if (acc.pending > 0 && limit > 0 && acc.cons >= limit * NEAR_QUOTA) {
          deltas.set(user, acc.pending);
          acc.pending = 0;
        }
      }
    }
    if (deltas.size > 0) {
      try {
        await store.addConsumption(this.name, epoch, deltas);
      } catch (e) {
        this.#keepUnwritten(epoch, e, deltas);
        this.#historyOfWritten(deltas, e);
        throw e;
      }
      this.#historyOfWritten(deltas);
      // The history of what was written (kept for later if this fails).
      await this.#writeHistory(store);
    }
    // Nobody else wrote a counter since this gateway last read them: what
    // it knows is what is stored, and there is nothing to read back.
    if (await store.countersUnchanged(this.name, epoch)) return;
    // The users counted here since the last write: those just written,
    // and those with bytes pending.
    const users = [...deltas.keys()];
    for (const [user, acc] of this.#accounts) {
      if (acc.pending > 0 && !deltas.has(user)) users.push(user);
    }
    const counters = await store.readConsumption(this.name, epoch, users);
    if (epoch !== this.#lastReset) return;
    for (const user of users) {
      const acc = this.account(user);
      acc.cons = (counters.get(user) ?? 0) + acc.pending;
    }
  }

  /** Deltas a failed write did not write go back to pending (same cycle). */
  #keepUnwritten(
    epoch: number,
    e: unknown,
    deltas: ReadonlyMap<string, number>,
  ): void {
    if (epoch !== this.#lastReset) return;
    const unwritten = e instanceof StoreWriteError
      ? e.unwritten as Map<string, number>
      : deltas;
    for (const [user, bytes] of unwritten) {
      this.account(user).pending += bytes;
    }
  }

  /** Writes the deltas counted since the last write. */
  flush(): Promise<void> {
    this.checkCycle(this.options.clock().getTime());
    return this.#enqueue(() => this.#persist());
  }

  async #persist(): Promise<void> {
    const store = this.#store;
    if (!store) return;
    const epoch = this.#lastReset;
    const deltas = new Map<string, number>();
    for (const [user, acc] of this.#accounts) {
      if (acc.pending > 0) {
        deltas.set(user, acc.pending);
        acc.pending = 0;
      }
    }
    if (deltas.size > 0) {
      try {
        await store.addConsumption(this.name, epoch, deltas);
      } catch (e) {
        // Not written: keep it for the next flush (same cycle only).
        this.#keepUnwritten(epoch, e, deltas);
        this.#historyOfWritten(deltas, e);
        throw e;
      }
      this.#historyOfWritten(deltas);
    }
    // A reset while writing: the counters read back would be the old cycle's.
    if (epoch === this.#lastReset) {
      // Only when another gateway wrote a counter since this one last read
      // them is there anything to read back.
      if (!(await store.countersUnchanged(this.name, epoch))) {
        await this.#reloadCounters(epoch);
      }
      await this.#reloadGrants(epoch);
    }
    // The history of what was written, and of earlier writes that failed.
    await this.#writeHistory(store);
  }

  /** Sets memory to the store's counters of that cycle plus what is pending. */
  async #reload(epoch: number): Promise<void> {
    await this.#reloadCounters(epoch);
    if (epoch !== this.#lastReset) return;
    await this.#reloadGrants(epoch);
  }

  async #reloadCounters(epoch: number): Promise<void> {
    const counters = await this.#store!.readConsumption(this.name, epoch);
    if (epoch !== this.#lastReset) return;
    for (const [user, bytes] of counters) {
      const acc = this.account(user);
      acc.cons = bytes + acc.pending;
    }
    for (const [user, acc] of this.#accounts) {
      if (!counters.has(user)) acc.cons = acc.pending;
    }
  }

  /**
   * Another gateway sharing the store set that user's consumption (an
   * administrator's reset): take the stored counter, plus what this gateway
   * counted and has not written yet.
   */
  async consumptionChanged(user: string): Promise<void> {
    const epoch = this.#lastReset;
    const counters = await this.#store!.readConsumption(this.name, epoch, [
      user,
    ]);
    if (epoch !== this.#lastReset) return;
    const acc = this.account(user);
    acc.cons = (counters.get(user) ?? 0) + acc.pending;
  }

  async #writeReset(last: number): Promise<void> {
    const store = this.#store;
    if (!store) return;
    await store.advanceLastReset(this.name, last);
    await store.deleteOtherCycles(this.name, this.#lastReset);
  }

  /**
   * Sets a user's consumption in this cycle (an administrator's `set`;
   * 0 resets it). Written to the store at once, and other gateways sharing
   * the store are told.
   */
  setConsumption(user: string, bytes: number): Promise<void> {
    this.checkCycle(this.options.clock().getTime());
    return this.#enqueue(async () => {
      const acc = this.account(user);
      acc.cons = bytes;
      acc.pending = 0;
      const store = this.#store;
      if (!store) return;
      await store.setConsumption(this.name, this.#lastReset, user, bytes);
      try {
        await store.publish({ kind: "consumption", manager: this.name, user });
      } catch {
        // The others see it at their next reconcile.
      }
    });
  }

  // ------------------------------------------------------ usage history

  /**
   * The deltas a consumption write added (all of `deltas`, or those a
   * failed write `e` did not leave unwritten) go to the history's next
   * write: the history records what the counters record.
   */
  #historyOfWritten(deltas: ReadonlyMap<string, number>, e?: unknown): void {
    const unwritten = e === undefined
      ? undefined
      : e instanceof StoreWriteError
      ? e.unwritten as Map<string, number>
      : deltas;
    const now = this.options.clock().getTime();
    for (const [user, bytes] of deltas) {
      if (unwritten?.has(user)) continue;
      this.#historyPending.set(
        user,
        (this.#historyPending.get(user) ?? 0) + bytes,
      );
      this.account(user).lastWritten = now;
    }
  }

  /**
   * Adds the pending history deltas to the hour and the day of now. What
   * is not written stays pending for the next write; the error is thrown
   * (the caller's flush reports it).
   */
  async #writeHistory(store: StateStore): Promise<void> {
    if (this.#historyPending.size === 0) return;
    const keep = this.options.history ?? DEFAULT_HISTORY_RETENTION;
    const pending = this.#historyPending;
    this.#historyPending = new Map();
    if (keep.hours === 0 && keep.days === 0) return;
    const at = this.#calendar.bucketsAt(this.options.clock().getTime(), keep);
    try {
      await store.addUsage(this.name, pending, at);
    } catch (e) {
      const unwritten = e instanceof StoreWriteError
        ? e.unwritten as Map<string, number>
        : pending;
      for (const [user, bytes] of unwritten) {
        this.#historyPending.set(
          user,
          (this.#historyPending.get(user) ?? 0) + bytes,
        );
      }
      throw e;
    }
  }

  /** The time zone of the history's periods and of the next reset. */
  get zone(): string {
    return this.#calendar.zone;
  }

  /** `t` as an ISO 8601 time in {@link zone} (for the next reset). */
  isoLocal(t: number): string {
    return this.#calendar.isoLocal(t);
  }

  /**
   * The usage history of one user (or of every user) by hour, day or
   * month, from `since` (default: as far back as it is kept) to `until`
   * (default: the end of the current period). Periods before the
   * retention are not read, even where the store still has them.
   */
  async usage(
    query: {
      user?: string;
      since?: number | string;
      until?: number | string;
      by: UsageBy;
    },
  ): Promise<UsageReport> {
    const store = this.#store;
    const cal = this.#calendar;
    const { by } = query;
    const now = this.options.clock().getTime();
    const time = (key: "since" | "until"): number | undefined => {
      const v = query[key];
      if (v === undefined || typeof v === "number") return v;
      // Words for the status page's charts: from the start of today or of
      // the cycle, until the end of today or the next reset.
      if (v === "today") {
        const start = cal.dayStart(now);
        return key === "since" ? start : cal.nextPeriod("day", start);
      }
      if (v === "cycle") {
        if (key === "since") return this.#lastReset;
        if (Number.isFinite(this.#nextReset)) return this.#nextReset;
        return undefined;
      }
      const t = cal.parseTime(v);
      if (t === undefined) {
        throw new CommandError({
          message:
            `${key} "${v}" is not a time: write it like 2026-05-01, 2026-05-01T10:00 (both in ${cal.zone}), 2026-05-01T10:00:00Z, today or cycle`,
        });
      }
      return t;
    };
    const since = time("since");
    const until = time("until");
    const grain = by === "hour" ? "hour" : "day";
    const keep = this.options.history ?? DEFAULT_HISTORY_RETENTION;
    const oldest = cal.oldestKept(grain, now, keep);
    const to = until ?? cal.nextPeriod(by, cal.periodStart(by, now));
    const wanted = since === undefined ? oldest : cal.periodStart(by, since);
    const from = Math.max(wanted, oldest);
    const report: UsageReport = {
      manager: this.name,
      ...(query.user !== undefined ? { user: query.user } : {}),
      by,
      zone: cal.zone,
      from,
      to,
      periods: cal.periods(
        by,
        by === "month" ? cal.monthStart(from) : from,
        to,
      ),
      entries: [],
    };
    if (!store || from >= to) return report;
    const read = await store.readUsage(this.name, {
      grain,
      from,
      to,
      user: query.user,
    });
    const entries = by === "month" ? cal.rollUpMonths(read) : read;
    report.entries = entries.filter((e) => e.bytes > 0);
    return report;
  }

  /** The users with an account in this cycle, with their consumption. */
  *accounts(): IterableIterator<[string, number]> {
    this.checkCycle(this.options.clock().getTime());
    for (const [user, acc] of this.#accounts) yield [user, acc.cons];
  }

  /** When this gateway last wrote that user's bytes (ms), if it did. */
  lastWrittenOf(user: string): number | undefined {
    const at = this.#accounts.get(user)?.lastWritten ?? -1;
    return at < 0 ? undefined : at;
  }
}

/** A user's quota as `status` and the pages show it. */
export interface QuotaStatus {
  /** The user's own or groups' quota (bytes). */
  quota: number;
  /** This cycle's grants (bytes). */
  granted: number;
  /** `quota + granted`: the quota in force. */
  limit: number;
  /** Consumption in this cycle (bytes). */
  cons: number;
  /** At or past `warnAt` of the limit (false without `warnAt`). */
  warning: boolean;
  /** At or over the limit: slowed (`overQuotaRate`) or refused. */
  overQuota?: "slowed" | "refused";
  /** The next reset (ms since the epoch; Infinity without a cycle). */
  nextReset: number;
}

/** Builds a `dwnConsR` from its table. */
export function dwnConsRFromTable(table: Table, ctx: KindContext): DwnConsR {
  const userDBN = optString(table, "userDBN", ctx.fail, `userDBN = "map"`);
  if (userDBN === undefined) {
    return ctx.fail(
      "userDBN",
      `dwnConsR "${ctx.name}" needs "userDBN", the user database whose groups have quotas; for example userDBN = "${
        ctx.userDbNames[0] ?? "map"
      }"`,
    );
  }
  ctx.userDb("userDBN", userDBN);
  const timezone = optString(table, "timezone", ctx.fail, `timezone = "UTC"`);
  const badZone = timezone === undefined ? undefined : checkZone(timezone);
  if (badZone) ctx.fail("timezone", badZone);
  const cycleText = optString(
    table,
    "resetCycle",
    ctx.fail,
    `resetCycle = "24h"`,
  );
  const calendar = calendarOptions(table, ctx, cycleText);
  let cycle: ResetCycle | undefined;
  if (cycleText !== undefined) {
    const parsed = parseResetCycle(cycleText, timezone, calendar);
    if (typeof parsed === "string") {
      return ctx.fail(
        timezone && /zone/.test(parsed) ? "timezone" : "resetCycle",
        parsed,
      );
    }
    cycle = parsed;
  } else {
    ctx.warn(
      "resetCycle",
      `dwnConsR "${ctx.name}" has no "resetCycle": consumption never returns to 0 by itself (add e.g. resetCycle = "24h")`,
    );
  }
  const quotaKey = pickKey(table, ["groupQuota", "GroupQuota"]) ?? "groupQuota";
  const groupTable = optTable(table, quotaKey, ctx.fail);
  if (!groupTable) {
    ctx.warn(
      "groupQuota",
      `dwnConsR "${ctx.name}" has no [dwnConsR.groupQuota]: every user's quota is 0`,
    );
  }
  const sizes = (key: string, t: Table) => {
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(t)) {
      out[k] = ctx.size(dottedKey(key, k), v);
    }
    return out;
  };
  const groupQuota = sizes(quotaKey, groupTable ?? {});
  const userTable = optTable(table, "userQuota", ctx.fail);
  const userQuota = userTable ? sizes("userQuota", userTable) : undefined;
  const manager = new DwnConsR(ctx.name, {
    userDBN,
    cycle,
    groupQuota,
    userQuota,
    clock: ctx.clock,
    syncIntervalMs: ctx.syncIntervalMs,
    ...sitesOptions(table, ctx),
    zone: timezone,
    history: ctx.history,
  });
  ctx.onStart((store) => manager.start(store));
  ctx.onFlush(() => manager.flush());
  ctx.onClose(() => manager.stop());
  return manager;
}

// ------------------------------------ the way sites run quotas (issue 11)

/** 80 for 0.8, 85.5 for 0.855. */
function formatPercent(share: number): string {
  return String(Math.round(share * 1000) / 10);
}

/**
 * `resetDay`, `resetWeekday` and `resetTime`, checked against the cycle
 * they belong to (a day of the month means nothing to a weekly cycle).
 */
function calendarOptions(
  table: Table,
  ctx: KindContext,
  cycleText: string | undefined,
): CalendarOptions {
  const cycle = cycleText?.trim();
  const out: CalendarOptions = {};
  const only = (key: string, kind: string, example: string) => {
    if (cycle === kind) return;
    ctx.fail(
      key,
      `"${key}" is for resetCycle = "${kind}"${
        cycle === undefined ? "" : `, not "${cycle}"`
      }; for example resetCycle = "${kind}" with ${example}`,
    );
  };
  if (table.resetDay !== undefined) {
    only("resetDay", "monthly", "resetDay = 15");
    const day = parseResetDay(table.resetDay);
    if (typeof day === "string") return ctx.fail("resetDay", day);
    out.day = day.day;
  }
  if (table.resetWeekday !== undefined) {
    only("resetWeekday", "weekly", `resetWeekday = "sun"`);
    const weekday = parseResetWeekday(table.resetWeekday);
    if (typeof weekday === "string") return ctx.fail("resetWeekday", weekday);
    out.weekday = weekday;
  }
  if (table.resetTime !== undefined) {
    if (cycle !== "daily" && cycle !== "weekly" && cycle !== "monthly") {
      ctx.fail(
        "resetTime",
        `"resetTime" is for the calendar cycles ("daily", "weekly", "monthly")${
          cycle === undefined ? "" : `, not "${cycle}"`
        }: a duration resets at whole cycles from the last reset; for example resetCycle = "daily" with resetTime = "06:00"`,
      );
    }
    const minutes = parseResetTime(table.resetTime);
    if (typeof minutes === "string") return ctx.fail("resetTime", minutes);
    out.minutes = minutes;
  }
  return out;
}

/** `overQuotaRate`, `warnAt` and `countUploads`. */
function sitesOptions(
  table: Table,
  ctx: KindContext,
): { overQuotaRate?: number; warnAt?: number; countUploads?: boolean } {
  const out: {
    overQuotaRate?: number;
    warnAt?: number;
    countUploads?: boolean;
  } = {};
  if (table.overQuotaRate !== undefined) {
    const rate = parseRate(table.overQuotaRate);
    if (typeof rate === "string") {
      return ctx.fail(
        "overQuotaRate",
        `"overQuotaRate" (how fast a user past the quota may go on): ${rate}`,
      );
    }
    out.overQuotaRate = rate;
  }
  if (table.warnAt !== undefined) {
    const v = table.warnAt;
    const m = typeof v === "string"
      ? /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(v)
      : null;
    const percent = m ? Number(m[1]) : NaN;
    if (!(percent > 0 && percent <= 100)) {
      return ctx.fail(
        "warnAt",
        `"warnAt" must be a percentage of the quota above 0 % and at most 100 %, in quotes; for example warnAt = "80%"`,
      );
    }
    out.warnAt = percent / 100;
  }
  const uploads = optBool(table, "countUploads", ctx.fail);
  if (uploads !== undefined) out.countUploads = uploads;
  return out;
}
