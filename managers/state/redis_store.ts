/**
 * The state store on Redis (or Valkey): one state for several gateways on
 * several machines, with changes announced over pub/sub.
 *
 * ```toml
 * [state]
 *   url = "redis://pmproxy:secret@10.0.0.9:6379/0"  # rediss:// for TLS
 * ```
 *
 * ## The client
 *
 * node-redis (`@redis/client`, pinned in deno.json), chosen over ioredis
 * after measuring both here under Deno 2.9.6 against redis-server 7.0.15
 * on loopback. Both connect, run MULTI, pipelines, EVAL/EVALSHA, pub/sub
 * on a second connection, TLS (rediss:// with a private CA), reconnect
 * after a server restart and re-subscribe by themselves, and reject a
 * command at once while disconnected when their offline queue is off
 * (node-redis 0.3-0.5 ms, ioredis 0.5-0.8 ms). 10,000 HINCRBY, median of 6
 * runs after a first one: node-redis MULTI 74 ms, pipeline 57 ms (first run
 * 243/141 ms); ioredis MULTI 78 ms, pipeline 88 ms (first 211/120 ms).
 * Reconnect after a restart: node-redis 681 ms, ioredis 773 ms (backoff
 * capped at 1 s). node-redis because it has no dependencies (ioredis has
 * six), is promise-first with types, rejects commands in flight when the
 * connection drops instead of sending them again after the reconnect
 * (ioredis resends them by default: a MULTI of deltas could count twice),
 * and detects a hung server with a socket timeout and pings (3.7 s here).
 *
 * ## Keys
 *
 * All under the prefix `pmproxy:` (one installation per Redis database;
 * choose another database in the URL for another installation):
 *
 * | key | type | holds |
 * | --- | --- | --- |
 * | `pmproxy:jwtKey` | string | the signing key (32 bytes, binary) |
 * | `pmproxy:sessionIPM:{manager}:sessions` | hash | IP → the {@link StoredSession} as JSON |
 * | `pmproxy:sessionIPM:{manager}:writes` | string | how many writes the sessions hash has had (INCR with each, in the same MULTI or script): see {@link RedisStateStore.sessionsUnchanged} |
 * | `pmproxy:dwnConsR:{manager}:lastReset` | string | the last reset (ms, decimal) |
 * | `pmproxy:dwnConsR:{manager}:cons:{cycle}` | hash | user → bytes (integer, HINCRBY) of the cycle that began at `{cycle}` (ms) |
 * | `pmproxy:dwnConsR:{manager}:grants:{cycle}` | hash | user → bytes (integer, HINCRBY) granted for the cycle that began at `{cycle}` (ms) |
 * | `pmproxy:dwnConsR:{manager}:writes` | string | how many writes the manager's counters have had (INCR with each): see {@link RedisStateStore.countersUnchanged} |
 * | `pmproxy:dwnConsR:{manager}:cycles` | set | the `{cycle}`s that have a counter or grant hash, so old cycles are deleted without KEYS or SCAN |
 * | `pmproxy:managers:sessionIPM` | set | the names of the sessionIPMs that stored sessions (for export) |
 * | `pmproxy:managers:dwnConsR` | set | the names of the dwnConsRs that stored a last reset or counters |
 * | `pmproxy:usage:{manager}:{grain}:{start}` | hash | user → bytes (HINCRBY) of the usage history's bucket of that hour or day (`{grain}` is `hour` or `day`, `{start}` its start in ms); expires at the end of its retention |
 * | `pmproxy:usage:{manager}:{grain}s` | sorted set | the `{start}`s of that grain's buckets (score = start), trimmed to the retention at every write, so a period is read without KEYS or SCAN; expires with its latest bucket |
 * | `pmproxy:loginFailures:{key}` | hash | `count`, `last` (ms) of failed logins under an address or user name; expires |
 * | `pmproxy:changes` | channel | announced {@link StateChange}s |
 *
 * Counters are 64-bit integers in Redis; read back they are JavaScript
 * numbers, exact up to 2^53 bytes (8 PiB) per user and cycle.
 *
 * ## Atomicity
 *
 * Every conditional write is one Lua script (EVALSHA, EVAL after a
 * restart emptied the script cache), so gateways racing on one key cannot
 * both win: a session deleted or updated only over its own copy, the last
 * reset set when absent or moved forward only. Deltas are added with
 * HINCRBY in one script call per {@link CONS_BATCH} users.
 *
 * ## Announced changes
 *
 * A second connection subscribes to `pmproxy:changes`; each message is
 * `{"from": id, "change": …}` with the random id of the store object that
 * published it, so a gateway ignores its own. When the subscription's
 * connection comes back after a loss, listeners get `{ kind: "resync" }`
 * (messages sent meanwhile are lost; the gateway reads everything again).
 *
 * ## When Redis cannot be reached
 *
 * Commands are not queued while disconnected: each fails at once with an
 * error naming the store (never its password), so a flush keeps its deltas
 * for the next one instead of hanging. The client reconnects by itself
 * (backoff up to 1 s) and re-subscribes; the health ({@link StoreHealth})
 * tells once that the store is down and once that it is back. A server
 * that stops answering is given up after {@link SOCKET_TIMEOUT_MS}.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { Buffer } from "node:buffer";
import { isIP } from "node:net";
import { createClient, RESP_TYPES } from "@redis/client";
import type {
  LoginFailures,
  SessionAt,
  SessionIdentity,
  StateChange,
  StateStore,
  StoredSession,
  StoreInventory,
  StoreStatus,
  UsageBuckets,
  UsageEntry,
  UsageGrain,
  UsageRange,
} from "./store.ts";
import { compareUsage, storedSession, StoreWriteError } from "./store.ts";
import { StoreHealth } from "./_health.ts";
import { KnownWrites } from "./_known_writes.ts";
import type { WritePace } from "./pace.ts";
import { maskSecret, parseRedisUrl, type RedisLocation } from "./_redis_url.ts";
import { after, type Timer } from "../../proxy/timers.ts";

/**
 * Users' deltas added by one script call (a flush of up to this many is
 * atomic). Bounded, as the KV store's batches, so that the data path gets
 * the main thread between them (the scale bench's p99 during a flush of
 * 10,000 users: 3.2-7.5× outside it in one MULTI, 1.8-2.6× with MULTIs
 * of 250). A script of pairs rather than a MULTI of HINCRBYs: node-redis
 * makes and parses each command of a MULTI on the main thread, and the
 * script's arguments cost a third of that (10,000 users: 22-24 ms of main
 * thread in MULTIs of 250, 8-10 ms in scripts of 250, 4-8 in scripts of
 * 1,000).
 */
export const CONS_BATCH = 500;
/** Sessions checked and written by one script call. */
const SESSION_BATCH = 500;
/** Users read by one HMGET. */
const READ_BATCH = 1000;
/** How long one connection attempt may take (ms). */
const CONNECT_TIMEOUT_MS = 1000;
/** The longest wait between reconnection attempts (ms). */
const MAX_BACKOFF_MS = 1000;
/** How often an idle connection is checked with PING (ms). */
const PING_INTERVAL_MS = 1000;
/** A connection that receives nothing this long is dropped (ms). */
const SOCKET_TIMEOUT_MS = 3000;
/** How long {@link RedisStateStore.open} waits for the first connection (ms). */
const OPEN_TIMEOUT_MS = 5000;

const PREFIX = "pmproxy:";
/** The key of the signing key. */
export const REDIS_JWT_KEY = `${PREFIX}jwtKey`;
/** The channel of announced changes. */
export const CHANGES_CHANNEL = `${PREFIX}changes`;
const SESSION_MANAGERS = `${PREFIX}managers:sessionIPM`;
const QUOTA_MANAGERS = `${PREFIX}managers:dwnConsR`;

function sessionsKey(manager: string): string {
  return `${PREFIX}sessionIPM:${manager}:sessions`;
}

function sessionWritesKey(manager: string): string {
  return `${PREFIX}sessionIPM:${manager}:writes`;
}

function lastResetKey(manager: string): string {
  return `${PREFIX}dwnConsR:${manager}:lastReset`;
}

function consKey(manager: string, cycle: number): string {
  return `${PREFIX}dwnConsR:${manager}:cons:${cycle}`;
}

function grantsKey(manager: string, cycle: number | string): string {
  return `${PREFIX}dwnConsR:${manager}:grants:${cycle}`;
}

function consWritesKey(manager: string): string {
  return `${PREFIX}dwnConsR:${manager}:writes`;
}

function cyclesKey(manager: string): string {
  return `${PREFIX}dwnConsR:${manager}:cycles`;
}

function usageKey(manager: string, grain: UsageGrain, start: number): string {
  return `${PREFIX}usage:${manager}:${grain}:${start}`;
}

function usageIndexKey(manager: string, grain: UsageGrain): string {
  return `${PREFIX}usage:${manager}:${grain}s`;
}

/** A Lua script and its SHA-1, for EVALSHA. */
interface Script {
  source: string;
  sha: string;
}

function script(source: string): Script {
  return { source, sha: createHash("sha1").update(source).digest("hex") };
}

/**
 * KEYS[1] the cycle's counters hash, KEYS[2] the set of quota managers,
 * KEYS[3] the manager's set of cycles, KEYS[4] its counters' writes
 * counter. ARGV: manager, cycle, then (user, bytes) pairs. Adds each
 * user's bytes (HINCRBY); answers the writes counter after its INCR, then
 * the positions (1-based) of the users whose counter could not be added
 * to (not an integer, say), the others being added.
 */
const ADD_COUNTERS = script(`
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[2])
local out = {redis.call('INCR', KEYS[4])}
for i = 3, #ARGV, 2 do
  local r = redis.pcall('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  if type(r) == 'table' and r.err then out[#out + 1] = (i - 1) / 2 end
end
return out
`);

/**
 * For G grains (hour, day), KEYS[2k-1] the bucket's hash and KEYS[2k] the
 * grain's index of buckets. ARGV: G, then per grain its bucket, the score
 * at and below which older buckets leave the index, and when both keys
 * expire (ms); then (user, bytes) pairs. Adds each user's bytes to each
 * bucket; answers the positions (1-based) of the users not added to every
 * bucket.
 */
const ADD_USAGE = script(`
local g = tonumber(ARGV[1])
for k = 1, g do
  local index = KEYS[2 * k]
  redis.call('ZADD', index, ARGV[3 * k - 1], ARGV[3 * k - 1])
  redis.call('ZREMRANGEBYSCORE', index, '-inf', ARGV[3 * k])
  redis.call('PEXPIREAT', index, ARGV[3 * k + 1])
end
local bad = {}
local first = 3 * g + 2
for i = first, #ARGV, 2 do
  local failed = false
  for k = 1, g do
    local r = redis.pcall('HINCRBY', KEYS[2 * k - 1], ARGV[i], ARGV[i + 1])
    if type(r) == 'table' and r.err then failed = true end
  end
  if failed then bad[#bad + 1] = (i - first) / 2 + 1 end
end
for k = 1, g do redis.call('PEXPIREAT', KEYS[2 * k - 1], ARGV[3 * k + 1]) end
return bad
`);

/**
 * KEYS[1] sessions hash, KEYS[2] its writes counter. ARGV: ip, user,
 * opened, unusedSince ("" for none). Deletes the session at ip only when it
 * is that user's, opened at that time, and (with unusedSince) last used at
 * or before it. Answers { deleted (1 or 0), the counter after its INCR }.
 */
const DELETE_SESSION_IF = script(`
local w = redis.call('INCR', KEYS[2])
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return {0, w} end
local s = cjson.decode(v)
if s.user ~= ARGV[2] or tonumber(s.opened) ~= tonumber(ARGV[3]) then return {0, w} end
if ARGV[4] ~= '' and (tonumber(s.lastUsed) or 0) > tonumber(ARGV[4]) then return {0, w} end
redis.call('HDEL', KEYS[1], ARGV[1])
return {1, w}
`);

/**
 * KEYS[1] sessions hash, KEYS[2] its writes counter. ARGV: groups of (ip,
 * user, opened, lastUsed, head), head being the session's JSON without
 * lastUsed and without its closing brace. Writes each over its own stored
 * copy only, with the later last use; answers the counter after its INCR,
 * then ip, lastUsed pairs of those written. The JSON is completed here
 * rather than re-encoded, since cjson would turn an empty list of groups
 * into an object.
 */
const UPDATE_SESSIONS = script(`
local out = {redis.call('INCR', KEYS[2])}
for i = 1, #ARGV, 5 do
  local ip = ARGV[i]
  local v = redis.call('HGET', KEYS[1], ip)
  if v then
    local s = cjson.decode(v)
    if s.user == ARGV[i + 1] and tonumber(s.opened) == tonumber(ARGV[i + 2]) then
      local stored = tonumber(s.lastUsed) or 0
      local mine = tonumber(ARGV[i + 3]) or 0
      local last = stored
      if mine > last then last = mine end
      local text = string.format('%.0f', last)
      redis.call('HSET', KEYS[1], ip, ARGV[i + 4] .. ',"lastUsed":' .. text .. '}')
      out[#out + 1] = ip
      out[#out + 1] = text
    end
  end
end
return out
`);

/**
 * KEYS[1] last reset, KEYS[2] the set of quota managers. ARGV: value,
 * manager. Sets the last reset when there is none; answers the stored one.
 */
const INIT_LAST_RESET = script(`
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1])
  v = ARGV[1]
end
redis.call('SADD', KEYS[2], ARGV[2])
return v
`);

/**
 * KEYS[1] last reset, KEYS[2] the set of quota managers. ARGV: value,
 * manager. Moves the last reset forward to value unless it is already at
 * or after it; answers the stored one.
 */
const ADVANCE_LAST_RESET = script(`
local v = redis.call('GET', KEYS[1])
if v and tonumber(v) >= tonumber(ARGV[1]) then return v end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return ARGV[1]
`);

/**
 * KEYS[1] the failures hash. ARGV: now, forget (ms). Counts one more
 * failure at now, to be forgotten `forget` ms after; answers count.
 */
const RECORD_FAILURE = script(`
local n = redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('HSET', KEYS[1], 'last', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return n
`);

function failuresKey(key: string): string {
  return `${PREFIX}loginFailures:${key}`;
}

type Client = ReturnType<typeof createClient>;
type Multi = ReturnType<Client["multi"]>;

/** Options of {@link RedisStateStore.open}. */
export interface RedisStoreOptions {
  /** This store object's id in announced changes (default: random). */
  id?: string;
  /** How long `open` waits for the first connection (ms). */
  openTimeoutMs?: number;
  /** Where the store's health is told (default: a warning on stderr). */
  warn?: (message: string) => void;
}

function parseSession(text: string): StoredSession | undefined {
  try {
    const v = JSON.parse(text);
    if (
      typeof v === "object" && v !== null && typeof v.user === "string" &&
      typeof v.opened === "number"
    ) return v as StoredSession;
  } catch {
    // A value pmproxy did not write: not a session.
  }
  return undefined;
}

function isChange(v: unknown): v is StateChange {
  if (typeof v !== "object" || v === null) return false;
  const c = v as Record<string, unknown>;
  if (c.kind === "session") {
    return typeof c.manager === "string" && typeof c.ip === "string";
  }
  if (c.kind === "consumption" || c.kind === "grant") {
    return typeof c.manager === "string" && typeof c.user === "string";
  }
  return false;
}

/** The state store on a Redis server; see the module documentation. */
export class RedisStateStore implements StateStore {
  readonly announcesChanges = true;
  pace?: WritePace;
  readonly description: string;
  /** This store object's id in the changes it announces. */
  readonly id: string;
  readonly #location: RedisLocation;
  readonly #health: StoreHealth;
  /** Commands. */
  readonly #cmd: Client;
  /** The same connection's commands, answering strings as bytes. */
  readonly #bin: Client;
  /** The subscription to {@link CHANGES_CHANNEL}. */
  readonly #sub: Client;
  readonly #listeners = new Set<(change: StateChange) => void>();
  /** The writes counters (of sessions, of counters) this store is in step with. */
  readonly #writes = new KnownWrites();
  /** The last connection error, for the message of a command refused meanwhile. */
  #lastError?: string;
  /** The subscription was lost and is back: listeners must resync. */
  #resyncOwed = false;
  /** A change came while nobody listened: the first listener resyncs. */
  #unheard = false;
  /** True once `open` has connected; before, failures are `open`'s to tell. */
  #opened = false;
  #closing = false;

  private constructor(
    location: RedisLocation,
    ca: string | undefined,
    options: RedisStoreOptions,
  ) {
    this.#location = location;
    this.description = `Redis at ${location.safe}`;
    this.id = options.id ?? crypto.randomUUID();
    this.#health = new StoreHealth(this.description, options.warn);
    const socket = {
      host: location.host,
      port: location.port,
      connectTimeout: CONNECT_TIMEOUT_MS,
      socketTimeout: SOCKET_TIMEOUT_MS,
      // Keep trying, every second at most: a store that comes back is
      // caught up without a restart.
      reconnectStrategy: (retries: number) =>
        Math.min(100 * 2 ** Math.min(retries, 10), MAX_BACKOFF_MS),
      ...(location.tls
        ? {
          tls: true as const,
          ca,
          // The name the certificate must carry; an IP address is checked
          // against the certificate's IP entries instead.
          ...(isIP(location.host) ? {} : { servername: location.host }),
        }
        : {}),
    };
    this.#cmd = createClient({
      socket,
      username: location.username,
      password: location.password,
      database: location.db,
      // A command while disconnected fails at once instead of waiting in
      // a queue: a flush must fail and keep its deltas, not hang.
      disableOfflineQueue: true,
      pingInterval: PING_INTERVAL_MS,
    }) as Client;
    this.#bin = this.#cmd.withTypeMapping({
      [RESP_TYPES.BLOB_STRING]: Buffer,
    }) as unknown as Client;
    this.#sub = this.#cmd.duplicate() as Client;
    this.#cmd.on(
      "error",
      (e: unknown) => this.#connectionFailed("the connection", e),
    );
    this.#sub.on(
      "error",
      (e: unknown) =>
        this.#connectionFailed("listening for other gateways' changes", e),
    );
    this.#cmd.on("ready", () => this.#readyAgain());
    this.#sub.on("ready", () => {
      // Resubscribed before "ready"; what was published meanwhile is lost.
      if (this.#opened) this.#resyncOwed = true;
      this.#readyAgain();
    });
  }

  /**
   * Connects to the Redis server at `url` (`redis://[user:pass@]host:port/db`,
   * `rediss://` for TLS, `?ca=FILE` for a private CA) and subscribes to the
   * announced changes. Throws, naming the server without its password,
   * when it cannot be reached within a few seconds.
   */
  static async open(
    url: string,
    options: RedisStoreOptions = {},
  ): Promise<RedisStateStore> {
    const location = parseRedisUrl(url);
    let ca: string | undefined;
    if (location.caFile !== undefined) {
      try {
        ca = await Deno.readTextFile(location.caFile);
      } catch (e) {
        throw new Error(
          `the state store URL ${location.safe}: cannot read the CA file ${location.caFile}: ${
            e instanceof Error ? e.message : e
          }`,
        );
      }
    }
    const store = new RedisStateStore(location, ca, options);
    await store.#connect(options.openTimeoutMs ?? OPEN_TIMEOUT_MS);
    return store;
  }

  async #connect(timeoutMs: number): Promise<void> {
    let timer: Timer | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = after(
        timeoutMs,
        () => reject(new Error("no answer in time")),
      );
    });
    try {
      const connecting = (async () => {
        await this.#cmd.connect();
        await this.#sub.connect();
        await this.#sub.subscribe(
          CHANGES_CHANNEL,
          (message: string) => this.#received(message),
        );
      })();
      connecting.catch(() => {}); // settled after the deadline: not unhandled
      await Promise.race([connecting, deadline]);
      this.#opened = true;
    } catch (e) {
      const why = this.#lastError ?? this.#message(e);
      this.#closing = true;
      this.#cmd.destroy();
      this.#sub.destroy();
      throw new Error(
        `cannot connect to the state store, ${this.description}: ${why}; check that Redis runs there and that the URL, user and password are right`,
      );
    } finally {
      timer?.cancel();
    }
  }

  /** An error's message, with the password masked. */
  #message(e: unknown): string {
    const text = e instanceof Error ? e.message : String(e);
    return maskSecret(text, this.#location.password);
  }

  #connectionFailed(what: string, e: unknown): void {
    this.#lastError = this.#message(e);
    if (!this.#opened || this.#closing) return;
    this.#health.failed(
      what,
      new Error(`${this.description}: ${this.#lastError}`),
    );
  }

  #readyAgain(): void {
    if (!this.#opened || this.#closing) return;
    if (!this.#cmd.isReady || !this.#sub.isReady) return;
    this.#health.ok();
    // Told once both connections are back, so that the reading it starts
    // can work.
    if (this.#resyncOwed) {
      this.#resyncOwed = false;
      this.#tell({ kind: "resync" });
    }
  }

  /** The error of a command refused while disconnected. */
  #offline(): Error {
    return new Error(
      `${this.description} cannot be reached${
        this.#lastError ? ` (${this.#lastError})` : ""
      }; pmproxy reconnects by itself`,
    );
  }

  /** An error as the store throws it: naming the store, without the password. */
  #wrap(e: unknown): Error {
    if (e instanceof StoreWriteError) return e;
    const message = this.#message(e);
    if (message.startsWith(this.description)) return new Error(message);
    return new Error(`${this.description}: ${message}`);
  }

  /**
   * Runs one operation, failing at once while disconnected (unless `op`
   * checks that itself, to say what it did not write); notes health.
   */
  async #run<T>(
    what: string,
    op: () => Promise<T>,
    checkFirst = true,
  ): Promise<T> {
    try {
      if (checkFirst && !this.#cmd.isReady) throw this.#offline();
      const result = await op();
      if (this.#sub.isReady) this.#health.ok();
      return result;
    } catch (e) {
      const error = this.#wrap(e);
      this.#health.failed(what, error);
      throw error;
    }
  }

  async #eval(s: Script, keys: string[], args: string[]): Promise<unknown> {
    const how = { keys, arguments: args };
    try {
      return await this.#cmd.evalSha(s.sha, how);
    } catch (e) {
      // A restarted server has forgotten the script.
      if (!(e instanceof Error) || !e.message.startsWith("NOSCRIPT")) throw e;
      return await this.#cmd.eval(s.source, how);
    }
  }

  status(): StoreStatus {
    return this.#health.status();
  }

  // ----------------------------------------------------------- secrets

  signingKey(options: { initial?: Uint8Array } = {}): Promise<Uint8Array> {
    return this.#run("reading the signing key", async () => {
      const initial = options.initial ??
        crypto.getRandomValues(new Uint8Array(32));
      // Set once for the whole site: whoever sets it first wins, the
      // others read it.
      await this.#cmd.set(REDIS_JWT_KEY, Buffer.from(initial), { NX: true });
      const key = await this.#bin.get(REDIS_JWT_KEY) as unknown;
      if (!(key instanceof Uint8Array)) {
        throw new Error(`${REDIS_JWT_KEY} vanished right after it was set`);
      }
      return new Uint8Array(key);
    });
  }

  inventory(): Promise<StoreInventory> {
    return this.#run("reading what is stored", async () => {
      const key = await this.#bin.get(REDIS_JWT_KEY) as unknown;
      const sessionManagers: string[] = [];
      for (const name of await this.#cmd.sMembers(SESSION_MANAGERS)) {
        if (await this.#cmd.hLen(sessionsKey(String(name))) > 0) {
          sessionManagers.push(String(name));
        }
      }
      const lastResets = new Map<string, number>();
      for (const name of await this.#cmd.sMembers(QUOTA_MANAGERS)) {
        const v = await this.#cmd.get(lastResetKey(String(name)));
        if (v !== null) lastResets.set(String(name), Number(v));
      }
      const out: StoreInventory = { sessionManagers, lastResets };
      if (key instanceof Uint8Array) out.signingKey = new Uint8Array(key);
      return out;
    });
  }

  // ---------------------------------------------------------- sessions

  /**
   * True while the manager's counters' writes counter is what this store
   * last knew since it read all of that cycle's counters: every add and
   * set adds 1 to it in the same script or MULTI, so nobody else wrote a
   * counter since and there is nothing to read back (a lone gateway's
   * flush and near-quota sync read nothing). Other gateways' deltas are
   * not announced: after any of their writes, this is false and the
   * counters are read back. A writer that does not count (a gateway of
   * an older version, during a rolling upgrade) is seen at the next whole
   * read, within 5 minutes ({@link KnownWrites}).
   */
  countersUnchanged(manager: string, cycle: number): Promise<boolean> {
    return this.#unchanged(
      "reading consumption",
      consWritesKey(manager),
      String(cycle),
    );
  }

  /** True while the counter at `key` is the count known in `scope`. */
  #unchanged(what: string, key: string, scope = ""): Promise<boolean> {
    const known = this.#writes.at(key, scope);
    if (known === undefined) return Promise.resolve(false);
    return this.#run(what, async () => {
      const now = await this.#cmd.get(key);
      return now !== null && Number(now) === known;
    });
  }

  /**
   * The hash at `hash` read whole, in one MULTI with the writes counter
   * at `writes` that guards it: the hash is as of that count.
   */
  async #readCounted(
    hash: string,
    writes: string,
    scope?: string,
  ): Promise<Record<string, string>> {
    const [count, all] = await this.#cmd.multi().get(writes).hGetAll(hash)
      .exec() as unknown as [string | null, Record<string, string>];
    this.#writes.read(writes, count, scope);
    return all;
  }

  /**
   * Runs the MULTI `m` with 1 added to the writes counter at `writes`, last;
   * answers the replies of its other commands.
   */
  async #execCounted(m: Multi, writes: string): Promise<unknown[]> {
    m.incr(writes);
    const replies = await m.exec() as unknown[];
    this.#writes.wrote(writes, replies.pop());
    return replies;
  }

  /**
   * True while the sessions' writes counter is what this store last knew:
   * every write of a session (a login, a logout, a last use) adds 1 to it
   * in the same MULTI or script, so nobody else wrote one since the last
   * list and a lone gateway's flush need not list them all again. Changes
   * are also announced; this is the reconcile for a missed announcement,
   * and it still lists after any other gateway's write. A writer that
   * does not count (a gateway of an older version) is seen through its
   * announcements, and its last uses at the next whole read, within 5
   * minutes ({@link KnownWrites}).
   */
  sessionsUnchanged(manager: string): Promise<boolean> {
    return this.#unchanged("reading the sessions", sessionWritesKey(manager));
  }

  listSessions(manager: string): Promise<SessionAt[]> {
    return this.#run("reading the sessions", async () => {
      const all = await this.#readCounted(
        sessionsKey(manager),
        sessionWritesKey(manager),
      );
      const out: SessionAt[] = [];
      for (const [ip, text] of Object.entries(all)) {
        const s = parseSession(String(text));
        if (s) out.push({ ...s, ip });
      }
      return out;
    });
  }

  getSession(
    manager: string,
    ip: string,
  ): Promise<StoredSession | undefined> {
    return this.#run("reading a session", async () => {
      const text = await this.#cmd.hGet(sessionsKey(manager), ip);
      return text === null ? undefined : parseSession(String(text));
    });
  }

  saveSession(
    manager: string,
    session: SessionAt,
    options: { deleteIp?: string } = {},
  ): Promise<void> {
    return this.#run("saving a session", async () => {
      const key = sessionsKey(manager);
      const m = this.#cmd.multi();
      const old = options.deleteIp;
      if (old !== undefined && old !== session.ip) m.hDel(key, old);
      m.hSet(key, session.ip, JSON.stringify(storedSession(session)));
      m.sAdd(SESSION_MANAGERS, manager);
      await this.#execCounted(m, sessionWritesKey(manager));
    });
  }

  deleteSession(
    manager: string,
    ip: string,
    options: { only?: SessionIdentity } = {},
  ): Promise<boolean> {
    return this.#run("deleting a session", async () => {
      const key = sessionsKey(manager);
      const writes = sessionWritesKey(manager);
      const only = options.only;
      if (!only) {
        const [n] = await this.#execCounted(
          this.#cmd.multi().hDel(key, ip),
          writes,
        );
        return Number(n) > 0;
      }
      const [deleted, after] = await this.#eval(
        DELETE_SESSION_IF,
        [key, writes],
        [
          ip,
          only.user,
          String(only.opened),
          only.unusedSince === undefined ? "" : String(only.unusedSince),
        ],
      ) as [number, number];
      this.#writes.wrote(writes, after);
      return Number(deleted) === 1;
    });
  }

  /**
   * The same as {@link updateSessions} here: the server's script rewrites
   * each session, 500 a call, and the gateway sends little.
   */
  updateLastUses(
    manager: string,
    sessions: readonly SessionAt[],
  ): Promise<Map<string, number>> {
    return this.updateSessions(manager, sessions);
  }

  updateSessions(
    manager: string,
    sessions: readonly SessionAt[],
  ): Promise<Map<string, number>> {
    return this.#run("writing the sessions' last use", async () => {
      const key = sessionsKey(manager);
      const writes = sessionWritesKey(manager);
      const written = new Map<string, number>();
      for (let start = 0; start < sessions.length; start += SESSION_BATCH) {
        await this.pace?.between();
        const args: string[] = [];
        for (const s of sessions.slice(start, start + SESSION_BATCH)) {
          const { lastUsed: _, ...rest } = storedSession(s);
          const head = JSON.stringify(rest).slice(0, -1);
          args.push(
            s.ip,
            s.user,
            String(s.opened),
            String(s.lastUsed ?? 0),
            head,
          );
        }
        const reply = await this.#eval(UPDATE_SESSIONS, [key, writes], args) as
          | unknown[]
          | null;
        const [after, ...pairs] = reply ?? [];
        this.#writes.wrote(writes, after);
        for (let i = 0; i + 1 < pairs.length; i += 2) {
          written.set(String(pairs[i]), Number(pairs[i + 1]));
        }
      }
      return written;
    });
  }

  // ------------------------------------------------------------ logins

  loginFailures(key: string): Promise<LoginFailures | undefined> {
    return this.#run("reading failed logins", async () => {
      const v = await this.#cmd.hGetAll(failuresKey(key)) as Record<
        string,
        string
      >;
      if (v.count === undefined) return undefined;
      return { count: Number(v.count), last: Number(v.last ?? 0) };
    });
  }

  recordLoginFailure(
    key: string,
    options: { now: number; forgetMs: number },
  ): Promise<LoginFailures> {
    return this.#run("counting a failed login", async () => {
      const n = await this.#eval(RECORD_FAILURE, [failuresKey(key)], [
        String(options.now),
        String(Math.max(1, Math.ceil(options.forgetMs))),
      ]);
      return { count: Number(n), last: options.now };
    });
  }

  clearLoginFailures(key: string): Promise<void> {
    return this.#run("forgetting failed logins", async () => {
      await this.#cmd.del(failuresKey(key));
    });
  }

  // ------------------------------------------------------------ quotas

  initLastReset(manager: string, value: number): Promise<number> {
    return this.#run("reading the last reset", async () => {
      const v = await this.#eval(
        INIT_LAST_RESET,
        [lastResetKey(manager), QUOTA_MANAGERS],
        [String(value), manager],
      );
      return Number(v);
    });
  }

  advanceLastReset(manager: string, value: number): Promise<number> {
    return this.#run("writing a reset", async () => {
      const v = await this.#eval(
        ADVANCE_LAST_RESET,
        [lastResetKey(manager), QUOTA_MANAGERS],
        [String(value), manager],
      );
      return Number(v);
    });
  }

  /**
   * Adds the deltas with HINCRBY, {@link CONS_BATCH} users per call of a
   * script. A call is applied whole, so on failure the deltas of its batch
   * and of the batches after it are unwritten (a counter that is not an
   * integer leaves only that user's unwritten). The one case where a delta
   * counts twice: the connection drops after Redis ran the script and
   * before its reply arrived; the deltas are then reported unwritten and
   * added again at the next flush.
   */
  addConsumption(
    manager: string,
    cycle: number,
    deltas: ReadonlyMap<string, number>,
  ): Promise<void> {
    return this.#run("adding consumption", async () => {
      const entries = [...deltas];
      const writes = consWritesKey(manager);
      const keys = [
        consKey(manager, cycle),
        QUOTA_MANAGERS,
        cyclesKey(manager),
        writes,
      ];
      await this.#addPairs(
        "adding consumption",
        entries,
        ADD_COUNTERS,
        keys,
        [manager, String(cycle)],
        writes,
      );
    }, false);
  }

  /**
   * Runs `script` once per {@link CONS_BATCH} entries (paced), with
   * `head` then the batch's (user, bytes) pairs as its arguments; the
   * script answers the 1-based positions of the users it could not add
   * to, after the writes counter at `counted` when there is one. Throws a
   * StoreWriteError with what is unwritten: those users, or the whole
   * batch when the call failed, and the batches after it.
   */
  async #addPairs(
    what: string,
    entries: [string, number][],
    script: Script,
    keys: string[],
    head: string[],
    counted?: string,
  ): Promise<void> {
    for (let start = 0; start < entries.length; start += CONS_BATCH) {
      await this.pace?.between();
      const batch = entries.slice(start, start + CONS_BATCH);
      const args = [...head];
      for (const [user, bytes] of batch) args.push(user, String(bytes));
      let bad: number[];
      try {
        if (!this.#cmd.isReady) throw this.#offline();
        bad = (await this.#eval(script, keys, args) as number[] | null ?? [])
          .map(Number);
        if (counted !== undefined) this.#writes.wrote(counted, bad.shift());
      } catch (e) {
        throw new StoreWriteError(
          `${what} failed: ${this.#wrap(e).message}`,
          new Map(entries.slice(start)),
          { cause: e },
        );
      }
      if (bad.length === 0) continue;
      const unwritten = new Map<string, number>();
      for (const i of bad) unwritten.set(batch[i - 1][0], batch[i - 1][1]);
      for (const [user, bytes] of entries.slice(start + batch.length)) {
        unwritten.set(user, bytes);
      }
      throw new StoreWriteError(
        `the counters of ${bad.length} of ${batch.length} users could not be added to (not integers?)`,
        unwritten,
      );
    }
  }

  readConsumption(
    manager: string,
    cycle: number,
    users?: readonly string[],
  ): Promise<Map<string, number>> {
    return this.#run(
      "reading consumption",
      () =>
        this.#readCounters(consKey(manager, cycle), users, {
          key: consWritesKey(manager),
          scope: String(cycle),
        }),
    );
  }

  setConsumption(
    manager: string,
    cycle: number,
    user: string,
    bytes: number,
  ): Promise<void> {
    return this.#run("setting consumption", async () => {
      const m = this.#cmd.multi();
      m.hSet(consKey(manager, cycle), user, String(bytes));
      m.sAdd(cyclesKey(manager), String(cycle));
      m.sAdd(QUOTA_MANAGERS, manager);
      await this.#execCounted(m, consWritesKey(manager));
    });
  }

  deleteOtherCycles(manager: string, keep: number): Promise<void> {
    return this.#run("deleting old cycles", async () => {
      const cycles = cyclesKey(manager);
      const old = (await this.#cmd.sMembers(cycles)).map(String)
        .filter((c) => c !== String(keep));
      if (old.length === 0) return;
      // A gateway still adding to an old cycle puts it back in the set;
      // it goes at the next call.
      const m = this.#cmd.multi();
      for (const c of old) m.del(`${PREFIX}dwnConsR:${manager}:cons:${c}`);
      for (const c of old) m.del(grantsKey(manager, c));
      m.sRem(cycles, old);
      await m.exec();
    });
  }

  // ------------------------------------------------------------ grants

  addGrant(
    manager: string,
    cycle: number,
    user: string,
    bytes: number,
  ): Promise<number> {
    return this.#run("adding a grant", async () => {
      const m = this.#cmd.multi();
      m.sAdd(QUOTA_MANAGERS, manager);
      m.sAdd(cyclesKey(manager), String(cycle));
      m.hIncrBy(grantsKey(manager, cycle), user, bytes);
      const replies = await m.exec();
      return Number(replies[2]);
    });
  }

  readGrants(
    manager: string,
    cycle: number,
    users?: readonly string[],
  ): Promise<Map<string, number>> {
    return this.#run(
      "reading grants",
      () => this.#readCounters(grantsKey(manager, cycle), users),
    );
  }

  /**
   * The integer fields of a hash of counters by user (all, or `users`).
   * All are read with the writes counter `counted` guards them with, when
   * there is one, in one MULTI: they are as of that count.
   */
  async #readCounters(
    key: string,
    users?: readonly string[],
    counted?: { key: string; scope: string },
  ): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    if (!users) {
      const all = counted
        ? await this.#readCounted(key, counted.key, counted.scope)
        : await this.#cmd.hGetAll(key) as Record<string, string>;
      for (const [user, bytes] of Object.entries(all)) {
        out.set(user, Number(bytes));
      }
      return out;
    }
    for (let start = 0; start < users.length; start += READ_BATCH) {
      await this.pace?.between();
      const part = users.slice(start, start + READ_BATCH);
      if (part.length === 0) continue;
      const values = await this.#cmd.hmGet(key, [...part]);
      for (let i = 0; i < part.length; i++) {
        const v = values[i];
        if (v !== null && v !== undefined) out.set(part[i], Number(v));
      }
    }
    return out;
  }

  // ----------------------------------------------------------- history

  /**
   * Adds the deltas to the hour's and the day's hashes with HINCRBY,
   * {@link CONS_BATCH} users per call of a script, which also sets each
   * hash to expire at the end of its retention and trims the index of
   * buckets. A failure leaves unwritten what {@link addConsumption} would
   * (the same one case of bytes counted twice).
   */
  addUsage(
    manager: string,
    deltas: ReadonlyMap<string, number>,
    at: UsageBuckets,
  ): Promise<void> {
    return this.#run("adding to the usage history", async () => {
      const grains: [UsageGrain, number, number][] = [];
      if (at.keepHourMs > 0) grains.push(["hour", at.hour, at.keepHourMs]);
      if (at.keepDayMs > 0) grains.push(["day", at.day, at.keepDayMs]);
      if (grains.length === 0) return;
      const entries = [...deltas];
      const keys: string[] = [];
      const head = [String(grains.length)];
      for (const [grain, bucket, keep] of grains) {
        keys.push(
          usageKey(manager, grain, bucket),
          usageIndexKey(manager, grain),
        );
        head.push(String(bucket), String(bucket - keep), String(bucket + keep));
      }
      await this.#addPairs(
        "adding to the usage history",
        entries,
        ADD_USAGE,
        keys,
        head,
      );
    }, false);
  }

  readUsage(manager: string, range: UsageRange): Promise<UsageEntry[]> {
    return this.#run("reading the usage history", async () => {
      const out: UsageEntry[] = [];
      if (range.to <= range.from) return out;
      const { grain, user } = range;
      const starts = (await this.#cmd.zRangeByScore(
        usageIndexKey(manager, grain),
        range.from,
        `(${range.to}`,
      )).map(Number);
      // Sent together: node-redis pipelines the commands of one tick.
      if (user !== undefined) {
        const values = await Promise.all(
          starts.map((start) =>
            this.#cmd.hGet(usageKey(manager, grain, start), user)
          ),
        );
        starts.forEach((start, i) => {
          const v = values[i];
          if (v !== null && v !== undefined) {
            out.push({ start, user, bytes: Number(v) });
          }
        });
        return out;
      }
      const hashes = await Promise.all(
        starts.map((start) =>
          this.#cmd.hGetAll(usageKey(manager, grain, start)) as Promise<
            Record<string, string>
          >
        ),
      );
      starts.forEach((start, i) => {
        for (const [u, bytes] of Object.entries(hashes[i])) {
          out.push({ start, user: u, bytes: Number(bytes) });
        }
      });
      return out.sort(compareUsage);
    });
  }

  // ----------------------------------------------------------- changes

  publish(change: StateChange): Promise<void> {
    if (change.kind === "resync") return Promise.resolve();
    return this.#run("announcing a change", async () => {
      await this.#cmd.publish(
        CHANGES_CHANNEL,
        JSON.stringify({ from: this.id, change }),
      );
    });
  }

  #received(message: string): void {
    let parsed: { from?: unknown; change?: unknown };
    try {
      parsed = JSON.parse(message);
    } catch {
      return; // not ours
    }
    if (parsed.from === this.id || !isChange(parsed.change)) return;
    this.#tell(parsed.change);
  }

  #tell(change: StateChange): void {
    if (this.#listeners.size === 0) {
      this.#unheard = true;
      return;
    }
    for (const listener of [...this.#listeners]) {
      try {
        listener(change);
      } catch (e) {
        console.error(`pmproxy: a listener of the state store's changes: ${e}`);
      }
    }
  }

  subscribe(listener: (change: StateChange) => void): () => void {
    this.#listeners.add(listener);
    if (this.#unheard) {
      // Announced while nobody listened (a gateway starting up).
      this.#unheard = false;
      queueMicrotask(() => {
        if (this.#listeners.has(listener)) listener({ kind: "resync" });
      });
    }
    return () => {
      this.#listeners.delete(listener);
    };
  }

  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    this.#listeners.clear();
    const end = async (c: Client) => {
      try {
        if (c.isReady) await c.close();
        else c.destroy();
      } catch {
        c.destroy();
      }
    };
    await Promise.all([end(this.#sub), end(this.#cmd)]);
  }
}
