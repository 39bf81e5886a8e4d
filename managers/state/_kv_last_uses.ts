/**
 * The sessions' last use on Deno KV, in packs: when only a session's last
 * use moved (a flush writes it once it moved 5 minutes), it is written to
 * the pack of its IP, not as its whole stored session again. A flush of
 * 10,000 sessions' last use then writes 256 values, not 10,000 sessions
 * (each of those was a mutation and a serialization of the whole session:
 * 120 ms of the main thread at 10,000, 1 s at 100,000).
 *
 * Key: `["sessionIPM", manager, "lastUsePacks", pack]`: a `Map` from IP to
 * {@link LastUse}, `[opened, lastUsed]` (ms): the last use of the session
 * opened then at that IP. A reader takes it for the stored session at that
 * IP when the login times are the same and it is later than the session's
 * own `lastUsed` (what its login or its last whole write stored). An entry
 * stays after its session ends (one per IP ever used, 30 bytes or so), and
 * the next login's last use at that IP replaces it.
 *
 * A write reads the packs of its IPs, puts in its last uses (the later one
 * when another gateway's is there; an entry of a later login at that IP is
 * kept, and that session is not written) and writes them back with a check
 * of each, with the sessions' `writes` key (kv_store.ts); a check that
 * fails (another gateway wrote one of them) reads those packs again.
 * Gateways sharing a file must all run this version or a later one: an
 * older one reads no pack, and would end sessions used through the others
 * as idle.
 *
 * Private to this folder (kv_store.ts reads and writes sessions through
 * it).
 *
 * @module
 */
import type { WritePace } from "./pace.ts";
import {
  byPack,
  type Combine,
  type Grouped,
  merge,
  PACK_TRIES,
  packOf,
  readPacks,
  readPacksInto,
  writePacks,
} from "./_kv_packs.ts";

/** A session's last use as packed: when it was opened, when last used (ms). */
export type LastUse = [opened: number, lastUsed: number];

function packsPrefix(manager: string): Deno.KvKey {
  return ["sessionIPM", manager, "lastUsePacks"];
}

/** The key of the pack the last use of a session at `ip` goes to. */
export function lastUseKey(manager: string, ip: string): Deno.KvKey {
  return [...packsPrefix(manager), packOf(ip)];
}

function isLastUse(v: unknown): v is LastUse {
  return Array.isArray(v) && v.length === 2 && typeof v[0] === "number" &&
    typeof v[1] === "number";
}

/**
 * The last use a pack (`value`, as stored) holds for the session at `ip`
 * opened at `opened`, if any.
 */
export function lastUseIn(
  value: unknown,
  ip: string,
  opened: number,
): number | undefined {
  if (!(value instanceof Map)) return undefined;
  const v = value.get(ip);
  return isLastUse(v) && v[0] === opened ? v[1] : undefined;
}

/**
 * The later of `had` (what the pack holds at that IP) and `v`: a later
 * login's entry is kept, an earlier one's replaced, the same login's the
 * later last use.
 */
const LATER: Combine<LastUse> = {
  combine(had, v) {
    if (!isLastUse(had) || had[0] < v[0]) return v;
    if (had[0] > v[0]) return had;
    return had[1] >= v[1] ? had : v;
  },
  // The IP's string is counted by entryBytes; an array of two numbers.
  valueBytes: 40,
};

/** A session whose last use is written (see the module doc). */
export interface LastUseWrite {
  ip: string;
  opened: number;
  lastUsed?: number;
}

/** The sessions' last uses of a {@link KvStateStore}'s database. */
export class KvLastUses {
  constructor(
    readonly kv: Deno.Kv,
    readonly pace: () => WritePace | undefined,
  ) {}

  /** Every last use packed for `manager`'s sessions, by IP. */
  async readAll(manager: string): Promise<Map<string, LastUse>> {
    const out = new Map<string, LastUse>();
    await readPacks(this.kv, packsPrefix(manager), undefined, (_, entry) => {
      if (!(entry.value instanceof Map)) return;
      for (const [ip, v] of entry.value as Map<string, unknown>) {
        if (isLastUse(v)) out.set(ip, v);
      }
    }, () => this.pace()?.between());
    return out;
  }

  /**
   * Puts the last uses of `sessions` (each stored as this store last saw
   * it: same user and login time) in their packs. `commit` makes the
   * atomic write (kv_store.ts's, which adds the sessions' `writes` key).
   * Answers, by IP, the last use now packed for those written (the later
   * one when another gateway's was there), and the IPs left out: their
   * pack is full, or a later login at that IP is packed.
   */
  async write(
    manager: string,
    sessions: readonly LastUseWrite[],
    commit: (
      build: (op: Deno.AtomicOperation) => void,
    ) => Promise<Deno.KvCommitResult | Deno.KvCommitError>,
  ): Promise<{ written: Map<string, number>; left: string[] }> {
    const mine = new Map<string, LastUse>();
    for (const s of sessions) mine.set(s.ip, [s.opened, s.lastUsed ?? 0]);
    const users = byPack(mine.keys());
    const packs = [...users.keys()].sort((a, b) => a - b);
    const read = await this.#read(manager, packs);
    const written = new Map<string, number>();
    const left: string[] = [];
    const full = await writePacks<LastUse>({
      packs,
      users,
      merge: (pack) => merge([read.get(pack)!], users.get(pack)!, mine, LATER),
      values: (merged) => merged.values ? 1 : 0,
      commit: async (group) => {
        for (let attempt = 1;; attempt++) {
          const res = await commit((op) => {
            for (const { merged } of group) {
              if (!merged.values) continue;
              const entry = merged.entries[0];
              op.check(entry).set(entry.key, merged.values[0]);
            }
          });
          if (res.ok) {
            this.#answer(group, users, mine, written, left);
            return group.flatMap((x) => x.merged.left);
          }
          if (attempt >= PACK_TRIES) {
            throw new Error(
              "the last uses' packs keep changing (other gateways write them)",
            );
          }
          // Only this group's packs again: the later groups merge into
          // what was read at first.
          const fresh = await this.#read(manager, group.map((x) => x.pack));
          for (const x of group) {
            x.merged = merge(
              [fresh.get(x.pack)!],
              users.get(x.pack)!,
              mine,
              LATER,
            );
          }
        }
      },
      failed: (e) => e instanceof Error ? e : new Error(String(e)),
      between: () => this.pace()?.between(),
    });
    left.push(...full);
    return { written, left };
  }

  /**
   * What a written group's packs now hold of `mine`'s sessions: each one's
   * last use in `written`, or its IP in `left` when a later login's is
   * there (those whose pack is full are the group's `merged.left`).
   */
  #answer(
    group: readonly Grouped<LastUse>[],
    users: ReadonlyMap<number, string[]>,
    mine: ReadonlyMap<string, LastUse>,
    written: Map<string, number>,
    left: string[],
  ): void {
    for (const { pack, merged } of group) {
      if (!merged.values) continue; // all of them left out: full
      const skipped = merged.left.length > 0 ? new Set(merged.left) : null;
      const now = merged.values[0];
      for (const ip of users.get(pack)!) {
        if (skipped?.has(ip)) continue;
        const v = now.get(ip);
        const m = mine.get(ip)!;
        // Mostly what this write put in; else the same login's later one.
        if (v === m) written.set(ip, m[1]);
        else if (isLastUse(v) && v[0] === m[0]) written.set(ip, v[1]);
        else left.push(ip);
      }
    }
  }

  /** The packs `packs` (a null value where none is stored). */
  #read(
    manager: string,
    packs: readonly number[],
  ): Promise<Map<number, Deno.KvEntryMaybe<unknown>>> {
    return readPacksInto(
      this.kv,
      packsPrefix(manager),
      packs,
      () => this.pace()?.between(),
    );
  }
}
