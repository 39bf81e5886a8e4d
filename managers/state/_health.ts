/**
 * How a store's operations are going: ok, or the last problem. The first
 * failure after a success is told once (a store that is down fails every
 * few seconds; the log should say so once, and once again when it is back).
 * Private to this folder.
 *
 * @module
 */
import type { StoreStatus } from "./store.ts";

/** Tracks one store's health; see the module documentation. */
export class StoreHealth {
  #problem?: string;

  constructor(
    readonly description: string,
    readonly warn: (message: string) => void = (m) =>
      console.warn(`pmproxy: warning: ${m}`),
  ) {}

  /** Runs `op`, noting whether it worked. Rethrows its error. */
  async run<T>(what: string, op: () => Promise<T>): Promise<T> {
    try {
      const result = await op();
      this.ok();
      return result;
    } catch (e) {
      this.failed(what, e);
      throw e;
    }
  }

  /** An operation worked. */
  ok(): void {
    if (this.#problem === undefined) return;
    this.#problem = undefined;
    this.warn(`the state store (${this.description}) works again`);
  }

  /** An operation failed. */
  failed(what: string, e: unknown): void {
    const first = this.#problem === undefined;
    const message = e instanceof Error ? e.message : String(e);
    // A write's error may already say what failed (StoreWriteError).
    this.#problem = message.startsWith(`${what} failed: `)
      ? message
      : `${what} failed: ${message}`;
    if (first) {
      this.warn(
        `the state store (${this.description}): ${this.#problem}; requests are decided from memory and what is not written is kept for later`,
      );
    }
  }

  status(): StoreStatus {
    return this.#problem === undefined
      ? { ok: true }
      : { ok: false, problem: this.#problem };
  }
}
