/**
 * The real Gateway (managers/mod.ts `openGateway`) over a temp config dir
 * and a real Deno KV file, for api/ tests.
 *
 * @module
 */
import { join } from "node:path";
import { openGateway } from "../../managers/mod.ts";

import { adminManagersToml, README_MANAGERS_TOML } from "./config_dir.ts";

/** The original README's managers.toml, word for word. */
export const README_MANAGERS = README_MANAGERS_TOML;

/** The README's managers plus an admin (and a given secret lifetime). */
export function adminManagers(jwtExpiration = "1h"): string {
  return adminManagersToml({ jwtExpiration });
}

/** A real gateway in a temp dir. */
export interface RealGateway {
  gateway: Awaited<ReturnType<typeof openGateway>>;
  dir: string;
  /** Closes the gateway (saving state) and removes the dir. */
  close(): Promise<void>;
}

/** Opens the real gateway over `managersToml` (default: the README's). */
export async function openRealGateway(
  managersToml: string = README_MANAGERS,
): Promise<RealGateway> {
  const dir = await Deno.makeTempDir({ prefix: "pmproxy-api-gw-" });
  await Deno.writeTextFile(join(dir, "managers.toml"), managersToml);
  const gateway = await openGateway(join(dir, "managers.toml"), {
    state: join(dir, "state.kv"),
    persistIntervalMs: 60_000,
  });
  return {
    gateway,
    dir,
    close: async () => {
      await gateway.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}
