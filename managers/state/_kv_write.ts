/**
 * Writing to Deno KV: atomic operations split to the sizes Deno KV takes,
 * and a write tried again while another process holds the file's lock;
 * and the sizes its reads take. Private to this folder (the Deno KV store,
 * its counters and its usage history).
 *
 * @module
 */
import { sleep } from "../../proxy/timers.ts";

/** Keys read in one round trip (Deno KV's getMany takes 10). */
export const GET_BATCH = 10;
/** Entries read per round trip of a list (Deno KV's most). */
export const LIST_BATCH = 1000;

/** At most this many mutations per atomic operation (Deno KV allows 1000). */
const BATCH = 1000;
/** At most this many bytes of keys per atomic operation (Deno KV allows 81920). */
const BATCH_KEY_BYTES = 80_000;

/** The bytes of `s` in UTF-8, counted without encoding it. */
export function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length) {
      // A surrogate pair: 4 bytes for its 2 chars.
      n += 2;
      i++;
    } else n += 2;
  }
  return n;
}

/**
 * About the size of a key as Deno KV encodes it (a little more). Counted,
 * not encoded: a flush sizes thousands of keys.
 */
function keyBytes(key: Deno.KvKey): number {
  let n = 0;
  for (const part of key) {
    n += typeof part === "string" ? utf8Length(part) + 2 : 10;
  }
  return n;
}

/**
 * Splits keys into runs `[start, end)` that one atomic operation accepts:
 * at most {@link BATCH} of them (or `max`), and at most
 * {@link BATCH_KEY_BYTES} bytes.
 */
export function kvBatches(
  keys: readonly Deno.KvKey[],
  max = BATCH,
): [number, number][] {
  const out: [number, number][] = [];
  let start = 0;
  let bytes = 0;
  for (let i = 0; i < keys.length; i++) {
    const size = keyBytes(keys[i]);
    if (i > start && (i - start === max || bytes + size > BATCH_KEY_BYTES)) {
      out.push([start, i]);
      start = i;
      bytes = 0;
    }
    bytes += size;
  }
  if (start < keys.length) out.push([start, keys.length]);
  return out;
}

/** Tries of a write that SQLite answers with "database is locked". */
const LOCKED_TRIES = 20;

/**
 * Runs one write, again when SQLite answers "database is locked": another
 * process (or another Deno.Kv on the same file) held the write lock longer
 * than SQLite waits. A locked write did nothing, so trying it again after
 * a short random pause is safe, and gateways sharing the file do not
 * fail a flush or a login for it.
 */
export async function write<T>(op: () => Promise<T>): Promise<T> {
  for (let attempt = 1;; attempt++) {
    try {
      return await op();
    } catch (e) {
      const locked = e instanceof Error && /database is locked/.test(e.message);
      if (!locked || attempt >= LOCKED_TRIES) throw e;
      await sleep(2 + Math.random() * 10 * attempt);
    }
  }
}
