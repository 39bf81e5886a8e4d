/**
 * Pooled read buffers. A connection starts with a small buffer and moves to a
 * big one only when a transfer fills the small one (bulk data), because
 * allocating two 256 KiB buffers per connection was measured to cost most of
 * the connection rate and ~270 MiB per 1,000 idle tunnels.
 *
 * @module
 */

/**
 * Size of the buffer a tunnel's directions wait with: most tunnels sit idle
 * (a kept-alive TLS connection), and a read that fills it moves up to
 * `SMALL`, then `BIG`. Small messages of a quiet tunnel (a TLS alert, an
 * HTTP/2 PING, keystrokes over SSH) fit; anything larger costs one read
 * more, once, on the way up. 128 rather than 512 bytes: 0.75 KiB less for
 * each tunnel held (both directions), with no change in bulk throughput.
 */
export const TINY = 128;
/** Size of the buffer every connection starts with. */
export const SMALL = 16 * 1024;
/** Size a bulk transfer grows to (best measured relay throughput). */
export const BIG = 256 * 1024;

const tiny: Uint8Array[] = [];
const small: Uint8Array[] = [];
const big: Uint8Array[] = [];
// Caps keep an idle proxy's memory bounded after a burst.
const MAX_TINY = 4096;
const MAX_SMALL = 1024;
const MAX_BIG = 64;

// Big buffers made here: a buffer grown for a long head may happen to be
// BIG bytes long, but it is not counted as one of ours.
const bigMade = new WeakSet<Uint8Array>();
let bigOut = 0;

/** A buffer of exactly `TINY`, `SMALL` or `BIG` bytes, reused when one is free. */
export function takeBuffer(
  size: typeof TINY | typeof SMALL | typeof BIG,
): Uint8Array {
  if (size === TINY) return tiny.pop() ?? new Uint8Array(TINY);
  if (size === SMALL) return small.pop() ?? new Uint8Array(SMALL);
  bigOut++;
  let buf = big.pop();
  if (buf === undefined) bigMade.add(buf = new Uint8Array(BIG));
  return buf;
}

/** Gives a buffer back; other sizes (grown for a long head) are dropped. */
export function giveBuffer(buf: Uint8Array): void {
  if (buf.length === TINY) {
    if (tiny.length < MAX_TINY) tiny.push(buf);
  } else if (buf.length === SMALL) {
    if (small.length < MAX_SMALL) small.push(buf);
  } else if (buf.length === BIG && bigMade.has(buf)) {
    bigOut--;
    if (big.length < MAX_BIG) big.push(buf);
  }
}

/**
 * Forgets a buffer that cannot be given back (a read may still write into
 * it): it is left to the garbage collector, and no longer counted as out.
 */
export function dropBuffer(buf: Uint8Array): void {
  if (buf.length === BIG && bigMade.has(buf)) {
    bigMade.delete(buf);
    bigOut--;
  }
}

/** How many big buffers are in use right now (for tests and stats). */
export function bigBuffersOut(): number {
  return bigOut;
}
