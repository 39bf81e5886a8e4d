/**
 * Opens the state store a location names: a Deno KV file path (the
 * default, `state.kv` in the configuration directory) or a KV Connect URL
 * (`https://…`, one writer).
 *
 * @module
 */
import type { StateStore } from "./store.ts";
import { KvStateStore } from "./kv_store.ts";

/** Opens the store at `location`; see the module documentation. */
export async function openStateStore(location: string): Promise<StateStore> {
  return await KvStateStore.open(location);
}
