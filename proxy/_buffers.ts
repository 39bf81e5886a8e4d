/**
 * Pooled read buffers. A connection starts with a small buffer and moves to a
 * big one only when a transfer fills the small one (bulk data), because
 * allocating two 256 KiB buffers per connection was measured to cost most of
 * the connection rate and ~270 MiB per 1,000 idle tunnels.
 *
 * @module
 */

/** Size of the buffer every connection starts with. */
export const SMALL = 16 * 1024;
/** Size a bulk transfer grows to (best measured relay throughput). */
export const BIG = 256 * 1024;

const small: Uint8Array[] = [];
const big: Uint8Array[] = [];
// Caps keep an idle proxy's memory bounded after a burst.
const MAX_SMALL = 1024;
const MAX_BIG = 64;

/** A buffer of exactly `SMALL` or `BIG` bytes, reused when one is free. */
export function takeBuffer(size: typeof SMALL | typeof BIG): Uint8Array {
  const free = size === BIG ? big : small;
  return free.pop() ?? new Uint8Array(size);
}

/** Gives a buffer back; other sizes (grown for a long head) are dropped. */
export function giveBuffer(buf: Uint8Array): void {
  if (buf.length === SMALL && small.length < MAX_SMALL) small.push(buf);
  else if (buf.length === BIG && big.length < MAX_BIG) big.push(buf);
}
