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
 * A user's quota is their `userQuota`, or else the sum of the quotas of
 * their groups. Consumption is every byte read from upstream for requests
 * that reached this manager. A chunk is accepted (and counted) while the
 * consumption before it is below the quota; the first chunk that finds the
 * consumption at or over the quota is stopped and not counted. So a
 * transfer goes over the quota by less than one chunk, like the original.
 * With several quotas on one request a chunk one of them stops is counted
 * by none of them.
 * A new request at or over quota is refused.
 *
 * Every `resetCycle` consumption returns to 0, at whole cycles counted from
 * the last reset (or at the calendar boundaries). The cycle is checked at
 * each request and each flush: one comparison.
 *
 * ## State
 *
 * In the state store (`../state/`): the last reset of the cycle, and one
 * counter per user and cycle to which every gateway adds its deltas with
 * atomic increments every persist interval and on flush/close. A new cycle
 * uses new counters, so a reset needs no rewrite of counters that other
 * gateways add to; old cycles' counters are deleted afterwards. The cycle
 * is rolled over once for the whole site (the store moves the last reset
 * forward only when no other gateway did).
 *
 * After each write the gateway reads the cycle's counters back, so several
 * gateways sharing one store see each other's traffic within one persist
 * interval. Between flushes, every `[state] syncInterval` (1 s), each
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
import { optString, optTable, pickKey } from "../config/table_fields.ts";
import { parseResetCycle, type ResetCycle } from "./_reset_cycle.ts";
import { dottedKey } from "../config/toml_file.ts";
import {
  DEFAULT_HISTORY_RETENTION,
  type HistoryRetention,
  type StateStore,
  StoreWriteError,
} from "../state/store.ts";
import type { UsageBy, UsageReport } from "../types.ts";
import { checkZone, machineZone } from "../values/zone.ts";
import { UsageCalendar } from "./_history.ts";

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
  /** The user's quota, refreshed at each request. */
  quota = 0;
  readonly stopReason = "quota reached";

  chunk(bytes: number): number {
    if (this.cons >= this.quota) return STOP;
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
    return this.cons >= this.quota;
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
  #syncTimer?: ReturnType<typeof setInterval>;
  /** A near-quota sync is queued or running: the timer adds no other. */
  #syncing = false;
  /** KV work, one after the other. */
  #chain: Promise<void> = Promise.resolve();
  /** The usage history's hours, days and months. */
  readonly #calendar: UsageCalendar;
  /** History deltas not written yet (a failed write keeps them here). */
  #historyPending = new Map<string, number>();
  /** When this gateway last wrote each user's bytes (ms), for "last seen". */
  #lastWritten = new Map<string, number>();

  constructor(
    readonly name: string,
    readonly options: {
      userDBN: string;
      /** Without one, consumption returns to 0 only when an admin sets it. */
      cycle?: ResetCycle;
      /** Group → bytes. */
      groupQuota: Record<string, number>;
      /** User → bytes (instead of their groups' sum). */
      userQuota?: Record<string, number>;
      clock: () => Date;
      /**
       * How often users near their quota are synced with the store (ms;
       * 0 or absent: only with the flush).
       */
      syncIntervalMs?: number;
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
      this.#accounts.set(user, acc);
    }
    return acc;
  }

  /** Consumption of that user now, in bytes. */
  consumptionOf(user: string, now?: number): number {
    this.checkCycle(now ?? this.options.clock().getTime());
    return this.#accounts.get(user)?.cons ?? 0;
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
      const cons = this.#accounts.get(user)?.cons ?? 0;
      const quota = this.quotaOf(user, ctx.groups(this.options.userDBN));
      if (cons >= quota) {
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
    if (acc.cons >= acc.quota) {
      grant.refusal ??= {
        status: 403,
        reason: this.quotaReachedReason(user, acc),
      };
      return true;
    }
    grant.meters.push(acc);
    return true;
  }

  explain(ctx: EvalContext): string {
    const user = ctx.user();
    if (user === undefined) {
      return `needs a logged-in user; nobody is logged in at ${ctx.facts.clientIp}`;
    }
    const quota = this.quotaOf(user, ctx.groups(this.options.userDBN));
    const cons = this.#accounts.get(user)?.cons ?? 0;
    return `${formatSize(cons)} of ${formatSize(quota)} used by ${user}${
      cons >= quota ? " (quota reached)" : ""
    }, ${this.resetNote()}`;
  }

  show(): unknown {
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
    const every = this.options.syncIntervalMs ?? 0;
    if (every > 0) {
      this.#syncTimer = setInterval(() => {
        if (this.#syncing) return;
        this.#syncing = true;
        this.#enqueue(() => this.#sync()).catch(() => {
          // Told by #enqueue; the deltas stay pending for the next try.
        }).finally(() => this.#syncing = false);
      }, every);
      Deno.unrefTimer(this.#syncTimer);
    }
  }

  /** Stops the near-quota sync (the gateway's last flush follows). */
  stop(): Promise<void> {
    clearInterval(this.#syncTimer);
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
    const active: string[] = [];
    const deltas = new Map<string, number>();
    for (const [user, acc] of this.#accounts) {
      if (acc.pending === 0) continue;
      active.push(user);
      if (acc.quota > 0 && acc.cons >= acc.quota * NEAR_QUOTA) {
        deltas.set(user, acc.pending);
        acc.pending = 0;
      }
    }
    if (active.length === 0) return;
    if (deltas.size > 0) {
      try {
        await store.addConsumption(this.name, epoch, deltas);
      } catch (e) {
        this.#keepUnwritten(epoch, e, deltas);
        this.#historyOfWritten(deltas, e);
        throw e;
      }
      this.#historyOfWritten(deltas);
    }
    const counters = await store.readConsumption(this.name, epoch, active);
    if (epoch !== this.#lastReset) return;
    for (const user of active) {
      const acc = this.account(user);
      acc.cons = (counters.get(user) ?? 0) + acc.pending;
    }
    // The history of what was written (kept for later if this fails).
    if (deltas.size > 0) await this.#writeHistory(store);
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
    if (epoch === this.#lastReset) await this.#reload(epoch);
    // The history of what was written, and of earlier writes that failed.
    await this.#writeHistory(store);
  }

  /** Sets memory to the store's counters of that cycle plus what is pending. */
  async #reload(epoch: number): Promise<void> {
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
      this.#lastWritten.set(user, now);
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
    return this.#lastWritten.get(user);
  }
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
  let cycle: ResetCycle | undefined;
  if (cycleText !== undefined) {
    const parsed = parseResetCycle(cycleText, timezone);
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
    zone: timezone,
    history: ctx.history,
  });
  ctx.onStart((store) => manager.start(store));
  ctx.onFlush(() => manager.flush());
  ctx.onClose(() => manager.stop());
  return manager;
}
