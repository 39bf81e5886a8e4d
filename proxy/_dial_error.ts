/**
 * The one error every dialer throws: `dial.ts` and the parent handshakes it
 * runs (`_parent_http.ts`, `_socks5.ts`). Its own file, which imports
 * nothing but a type, so that those handshakes need not import `dial.ts`
 * (which imports them).
 *
 * @module
 */
import type { DialFailureKind } from "./stats.ts";

/** Why a dial failed: the proxy answers 504 for a timeout, 502 otherwise. */
export class DialError extends Error {
  /** What failed, for the counters: a timeout unless told otherwise. */
  readonly kind: DialFailureKind;
  /**
   * `message` is for a person: what failed, where, what to check. `kind`
   * defaults to "timeout" when `timedOut`, else "other".
   */
  constructor(
    message: string,
    readonly timedOut: boolean,
    kind?: DialFailureKind,
  ) {
    super(message);
    this.name = "DialError";
    this.kind = timedOut ? "timeout" : kind ?? "other";
  }
}
