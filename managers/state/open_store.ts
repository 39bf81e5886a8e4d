/**
 * Opens the state store a location names: `redis://` or `rediss://` (a
 * Redis server shared by several gateways), else a Deno KV file path (the
 * default, `state.kv` in the configuration directory) or a KV Connect URL
 * (`https://...`, one writer).
 *
 * @module
 */
import type { StateStore } from "./store.ts";
import { KvStateStore } from "./kv_store.ts";
import { isRedisUrl } from "./_redis_url.ts";

/** Opens the store at `location`; see the module documentation. */
export async function openStateStore(location: string): Promise<StateStore> {
  if (isRedisUrl(location)) {
    // Loaded only when used: a gateway on a KV file does not pay for the
    // Redis client at every start.
    const { RedisStateStore } = await import("./redis_store.ts");
    return await RedisStateStore.open(location);
  }
  if (typeof Deno.openKv !== "function") {
    throw new Error(
      `the state store ${location} is a Deno KV file, and Deno KV is off: run pmproxy with --unstable-kv (deno task start and the compiled binary have it)`,
    );
  }
  return await KvStateStore.open(location);
}
