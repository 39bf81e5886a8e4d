/**
 * Moving pmproxy's state between stores (a Deno KV file and Redis, either
 * way, or any two {@link StateStore}s): `pmproxy state export` writes what
 * a store holds as JSON lines, `pmproxy state import` reads them into
 * another. Only the store's interface is used, so it works between any two
 * backends; the managers are the ones found in the store.
 *
 * One JSON object per line, its `type` first:
 *
 * ```jsonl
 * {"type":"signingKey","key":"<32 bytes, base64>"}
 * {"type":"lastReset","manager":"down","at":1772409600000}
 * {"type":"consumption","manager":"down","cycle":1772409600000,"user":"user0","bytes":52428800}
 * {"type":"grant","manager":"down","cycle":1772409600000,"user":"user0","bytes":524288000}
 * {"type":"session","manager":"sessions","ip":"10.0.0.5","session":{"user":"user0","record":{…},"groups":{…},"opened":1772445600000,"lastUsed":1772449200000}}
 * ```
 *
 * - `signingKey`: the key that signs session secrets, so that secrets made
 *   before the move still check;
 * - `lastReset`: a `dwnConsR`'s last reset (ms since the epoch);
 * - `consumption`: a user's counter in the cycle that began at `cycle`
 *   (only the current cycle, the one at the manager's last reset, is
 *   exported: older ones are garbage waiting to be deleted);
 * - `grant`: what an administrator granted a user on top of their quota in
 *   the cycle that began at `cycle` (the current cycle only, as counters);
 * - `session`: a `sessionIPM`'s session at `ip`, as stored.
 *
 * Import reads and checks the whole input before it writes anything (a
 * broken line is reported with its number and nothing is written), then:
 *
 * - into an empty store (no signing key, sessions or last resets): writes
 *   everything as it was;
 * - into a store that already holds state: refuses, unless `merge`. With
 *   `merge` the store's own signing key stays (secrets made with the
 *   imported one must be renewed by logging in again; the summary says
 *   so); the later of the two last resets stays; counters of that cycle
 *   are added to the store's (counters of a cycle that is over are
 *   skipped), and so are grants; a session replaces the store's session
 *   at the same IP, and the store's other sessions stay.
 *
 * @module
 */
import type { SessionAt, StateStore, StoredSession } from "./store.ts";

/** One line of an export; see the module documentation. */
export type StateLine =
  | { type: "signingKey"; key: string }
  | { type: "lastReset"; manager: string; at: number }
  | {
    type: "consumption";
    manager: string;
    cycle: number;
    user: string;
    bytes: number;
  }
  | { type: "session"; manager: string; ip: string; session: StoredSession }
  | {
    type: "grant";
    manager: string;
    cycle: number;
    user: string;
    bytes: number;
  };

/** What an import wrote. */
export interface ImportSummary {
  /** Whether the imported signing key was stored, or the store's kept. */
  signingKey: "stored" | "kept" | "none";
  lastResets: number;
  counters: number;
  sessions: number;
  /** Users whose grants were added. */
  grants: number;
  /** Counters (and grants) of a cycle that is over in the store, not written. */
  skipped: number;
  /** What the person running the import should know. */
  warnings: string[];
}

function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

function fromBase64(text: string): Uint8Array {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/**
 * Everything `store` holds, as lines (signing key, then each quota
 * manager's last reset and counters, then each session manager's sessions).
 */
export async function* exportState(
  store: StateStore,
): AsyncGenerator<StateLine> {
  const inventory = await store.inventory();
  if (inventory.signingKey) {
    yield { type: "signingKey", key: toBase64(inventory.signingKey) };
  }
  const quotas = [...inventory.lastResets].sort(([a], [b]) =>
    a < b ? -1 : a > b ? 1 : 0
  );
  for (const [manager, at] of quotas) {
    yield { type: "lastReset", manager, at };
    const counters = [...await store.readConsumption(manager, at)].sort(
      ([a], [b]) => a < b ? -1 : a > b ? 1 : 0,
    );
    for (const [user, bytes] of counters) {
      yield { type: "consumption", manager, cycle: at, user, bytes };
    }
    const grants = [...await store.readGrants(manager, at)].sort(
      ([a], [b]) => a < b ? -1 : a > b ? 1 : 0,
    );
    for (const [user, bytes] of grants) {
      yield { type: "grant", manager, cycle: at, user, bytes };
    }
  }
  for (const manager of inventory.sessionManagers.toSorted()) {
    for (const { ip, ...session } of await store.listSessions(manager)) {
      yield { type: "session", manager, ip, session };
    }
  }
}

/** The lines of a byte stream (UTF-8), without their line breaks. */
export async function* textLines(
  stream: ReadableStream<Uint8Array>,
): AsyncGenerator<string> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    let at: number;
    while ((at = rest.indexOf("\n")) >= 0) {
      yield rest.slice(0, at).replace(/\r$/, "");
      rest = rest.slice(at + 1);
    }
  }
  if (rest !== "") yield rest.replace(/\r$/, "");
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const isName = (v: unknown): v is string => typeof v === "string" && v !== "";
const isTime = (v: unknown): v is number =>
  typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

/** Checks one parsed line; answers what is wrong, or the line. */
function checkLine(v: unknown): StateLine | string {
  if (!isObject(v)) return "not a JSON object";
  switch (v.type) {
    case "signingKey": {
      if (typeof v.key !== "string") return `"key" must be base64 text`;
      let key: Uint8Array;
      try {
        key = fromBase64(v.key);
      } catch {
        return `"key" is not base64`;
      }
      if (key.length !== 32) {
        return `"key" must be 32 bytes, not ${key.length}`;
      }
      return { type: "signingKey", key: v.key };
    }
    case "lastReset":
      if (!isName(v.manager)) return `"manager" must be a name`;
      if (!isTime(v.at)) return `"at" must be a time in ms`;
      return { type: "lastReset", manager: v.manager, at: v.at };
    case "consumption":
      if (!isName(v.manager)) return `"manager" must be a name`;
      if (!isTime(v.cycle)) return `"cycle" must be a time in ms`;
      if (typeof v.user !== "string") return `"user" must be a user name`;
      if (!isTime(v.bytes)) return `"bytes" must be a whole number`;
      return {
        type: "consumption",
        manager: v.manager,
        cycle: v.cycle,
        user: v.user,
        bytes: v.bytes,
      };
    case "grant":
      if (!isName(v.manager)) return `"manager" must be a name`;
      if (!isTime(v.cycle)) return `"cycle" must be a time in ms`;
      if (typeof v.user !== "string") return `"user" must be a user name`;
      if (!isTime(v.bytes)) return `"bytes" must be a whole number`;
      return {
        type: "grant",
        manager: v.manager,
        cycle: v.cycle,
        user: v.user,
        bytes: v.bytes,
      };
    case "session": {
      if (!isName(v.manager)) return `"manager" must be a name`;
      if (!isName(v.ip)) return `"ip" must be an address`;
      const s = v.session;
      if (
        !isObject(s) || typeof s.user !== "string" || !isTime(s.opened) ||
        !isObject(s.record) || !isObject(s.groups) ||
        (s.lastUsed !== undefined && !isTime(s.lastUsed))
      ) {
        return `"session" must hold user, record, groups, opened and lastUsed as exported`;
      }
      return {
        type: "session",
        manager: v.manager,
        ip: v.ip,
        session: s as unknown as StoredSession,
      };
    }
    default:
      return `unknown "type" ${
        JSON.stringify(v.type)
      } (known: signingKey, lastReset, consumption, grant, session)`;
  }
}

/** Reads and checks every line; throws naming the first bad one. */
async function readAll(
  lines: AsyncIterable<string> | Iterable<string>,
): Promise<StateLine[]> {
  const out: StateLine[] = [];
  let n = 0;
  for await (const text of lines) {
    n++;
    if (text.trim() === "") continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw new Error(
        `line ${n}: not JSON (${
          e instanceof Error ? e.message : e
        }); nothing was imported`,
      );
    }
    const line = checkLine(parsed);
    if (typeof line === "string") {
      throw new Error(`line ${n}: ${line}; nothing was imported`);
    }
    out.push(line);
  }
  return out;
}

/** What the store already holds, in words; empty when it holds nothing. */
async function heldBy(store: StateStore): Promise<string[]> {
  const inv = await store.inventory();
  const held: string[] = [];
  if (inv.signingKey) held.push("a signing key");
  for (const m of inv.sessionManagers) held.push(`sessions of "${m}"`);
  for (const m of inv.lastResets.keys()) held.push(`the quota "${m}"`);
  return held;
}

/**
 * Reads exported lines into `store`; see the module documentation for
 * what happens to a store that already holds state (`options.merge`).
 */
export async function importState(
  store: StateStore,
  lines: AsyncIterable<string> | Iterable<string>,
  options: { merge?: boolean } = {},
): Promise<ImportSummary> {
  const all = await readAll(lines);
  const merge = options.merge === true;
  const held = await heldBy(store);
  if (held.length > 0 && !merge) {
    throw new Error(
      `${store.description} already holds ${
        held.join(", ")
      }; import into an empty store, or give --merge to add to it (its signing key stays, the later last reset stays, counters are added, sessions at the same IP are replaced)`,
    );
  }
  const summary: ImportSummary = {
    signingKey: "none",
    lastResets: 0,
    counters: 0,
    sessions: 0,
    grants: 0,
    skipped: 0,
    warnings: [],
  };
  for (const line of all) {
    if (line.type !== "signingKey") continue;
    const key = fromBase64(line.key);
    const stored = await store.signingKey({ initial: key });
    const same = stored.length === key.length &&
      stored.every((b, i) => b === key[i]);
    summary.signingKey = same ? "stored" : "kept";
    if (!same) {
      summary.warnings.push(
        `${store.description} kept its own signing key: secrets made before the move do not check there; their users log in again`,
      );
    }
  }
  // The stored last reset of each quota manager after this import.
  const lastReset = new Map<string, number>();
  for (const line of all) {
    if (line.type !== "lastReset") continue;
    const at = merge
      ? await store.advanceLastReset(line.manager, line.at)
      : await store.initLastReset(line.manager, line.at);
    lastReset.set(line.manager, at);
    summary.lastResets++;
  }
  const current = (await store.inventory()).lastResets;
  // Counters go into the store's current cycle only: a gateway reads no other.
  const deltas = new Map<
    string,
    { cycle: number; byUser: Map<string, number> }
  >();
  for (const line of all) {
    if (line.type !== "consumption") continue;
    const at = lastReset.get(line.manager) ?? current.get(line.manager);
    if (at !== line.cycle) {
      summary.skipped++;
      continue;
    }
    let batch = deltas.get(line.manager);
    if (!batch) {
      deltas.set(line.manager, batch = { cycle: at, byUser: new Map() });
    }
    const { byUser } = batch;
    byUser.set(line.user, (byUser.get(line.user) ?? 0) + line.bytes);
  }
  for (const [manager, { cycle, byUser }] of deltas) {
    await store.addConsumption(manager, cycle, byUser);
    summary.counters += byUser.size;
  }
  for (const line of all) {
    if (line.type !== "grant") continue;
    const at = lastReset.get(line.manager) ?? current.get(line.manager);
    if (at !== line.cycle) {
      summary.skipped++;
      continue;
    }
    await store.addGrant(line.manager, at, line.user, line.bytes);
    summary.grants++;
  }
  if (summary.skipped > 0) {
    summary.warnings.push(
      `${summary.skipped} counters or grants of a cycle that is over in ${store.description} were not imported`,
    );
  }
  for (const line of all) {
    if (line.type !== "session") continue;
    const session: SessionAt = { ...line.session, ip: line.ip };
    await store.saveSession(line.manager, session);
    summary.sessions++;
  }
  return summary;
}
