/**
 * The policy's counters: one plain object per gateway
 * (`GatewayRuntime.stats`), whose number fields are incremented in place
 * where things happen (a login refused, a flush of the state store), and a
 * histogram of flush durations. Whoever exposes them (the API's
 * `/metrics`) reads them with `GatewayRuntime.snapshot()` and adds the
 * names and labels.
 *
 * ```ts
 * gateway.stats.loginFailures++;  // a login whose credentials were wrong
 * gateway.stats.loginThrottles++; // a login refused for coming too often
 * ```
 *
 * @module
 */

/**
 * Counts of observations at or below each bound (cumulative, as
 * Prometheus wants them), their sum and their number.
 */
export class Histogram {
  /** Observations <= `bounds[i]`, for each i. */
  readonly counts: number[];
  sum = 0;
  count = 0;

  /** `bounds` in increasing order (seconds, for a duration). */
  constructor(readonly bounds: readonly number[]) {
    this.counts = bounds.map(() => 0);
  }

  /** Adds one observation. */
  observe(value: number): void {
    this.sum += value;
    this.count++;
    for (let i = 0; i < this.bounds.length; i++) {
      if (value <= this.bounds[i]) this.counts[i]++;
    }
  }
}

/** Bounds of the flush-duration histogram, in seconds. */
export const FLUSH_SECONDS: readonly number[] = Object.freeze([
  0.001,
  0.005,
  0.01,
  0.05,
  0.1,
  0.5,
  1,
  5,
  10,
  30,
]);

/** The gateway's counters; see the module documentation. */
export interface GatewayStats {
  /** Logins over the API refused: wrong password, unknown user. */
  loginFailures: number;
  /** Proxy credentials (`Proxy-Authorization`) found wrong. */
  proxyAuthFailures: number;
  /**
   * Logins refused because they came too often (login throttling
   * increments it).
   */
  loginThrottles: number;
  /** Flushes to the state store, by how long they took. */
  flushSeconds: Histogram;
  /** Flushes that failed (part of what they had to write is kept for the next). */
  flushErrors: number;
}

/** Fresh counters, all zero. */
export function newGatewayStats(): GatewayStats {
  return {
    loginFailures: 0,
    proxyAuthFailures: 0,
    loginThrottles: 0,
    flushSeconds: new Histogram(FLUSH_SECONDS),
    flushErrors: 0,
  };
}

/** What the gateway shows of itself at one moment, for the metrics. */
export interface GatewaySnapshot {
  stats: Readonly<GatewayStats>;
  /** Open sessions by `sessionIPM`. */
  sessions: { manager: string; open: number }[];
  /** Bytes consumed in the current cycle by `dwnConsR` (every user, all gateways' as last read). */
  quotas: { manager: string; bytes: number }[];
  /** The state store's health. */
  store: { ok: boolean; problem?: string };
}
