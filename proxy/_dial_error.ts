/**
 * The one error every dialer throws: `dial.ts` and the parent handshakes it
 * runs (`_parent_http.ts`, `_socks5.ts`). Its own file, which imports
 * nothing, so that those handshakes need not import `dial.ts` (which
 * imports them).
 *
 * @module
 */

/** Why a dial failed: the proxy answers 504 for a timeout, 502 otherwise. */
export class DialError extends Error {
  /** `message` is for a person: what failed, where, what to check. */
  constructor(message: string, readonly timedOut: boolean) {
    super(message);
    this.name = "DialError";
  }
}
