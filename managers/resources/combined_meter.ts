/**
 * The one meter a request gets when the rule attached several (quotas,
 * bandwidth limits): STOP from any of them stops, else the longest wait.
 *
 * @module
 */
import type { Meter } from "../../proxy/policy.ts";
import { isQuotaMeter, type QuotaMeter, STOP } from "../types.ts";

/**
 * Several meters as one. A stopped chunk is counted by none: every quota
 * ({@link QuotaMeter}) is asked first whether it would stop the chunk, and
 * only then does each meter count it; should a meter that cannot be asked
 * beforehand stop it, the quotas that counted it take it back. Which
 * meters are quotas is found once, here; no allocation per chunk.
 */
export class CombinedMeter implements Meter {
  stopReason?: string;
  /** The quotas among the meters. */
  readonly #quotas: QuotaMeter[];
  /** For each meter, itself when it is a quota, else undefined. */
  readonly #asQuota: (QuotaMeter | undefined)[];

  constructor(readonly meters: Meter[]) {
    this.#asQuota = meters.map((m) => isQuotaMeter(m) ? m : undefined);
    this.#quotas = meters.filter(isQuotaMeter);
  }

  chunk(bytes: number): number {
    const quotas = this.#quotas;
    for (let i = 0; i < quotas.length; i++) {
      if (quotas[i].wouldStop()) {
        this.stopReason = quotas[i].stopReason;
        return STOP;
      }
    }
    const meters = this.meters;
    let wait = 0;
    for (let i = 0; i < meters.length; i++) {
      const r = meters[i].chunk(bytes);
      if (r === STOP) {
        for (let j = 0; j < i; j++) this.#asQuota[j]?.refund(bytes);
        this.stopReason = meters[i].stopReason;
        return STOP;
      }
      if (r > wait) wait = r;
    }
    return wait;
  }
}
