/**
 * The client's known-servers file: the certificate each API server showed
 * on first contact, keyed by origin (`https://host:port`).
 *
 * @module
 */
import { dirname, join } from "node:path";

/** One remembered server certificate. */
export interface KnownServer {
  /** SHA-256 of the DER certificate, `AB:CD:…`. */
  sha256: string;
  /** The certificate, PEM. */
  pem: string;
  /** When it was first seen (ISO 8601). */
  since: string;
}

/** The default file: `$PMPROXY_KNOWN_SERVERS` or `$HOME/.config/pmproxy/known_servers.json`. */
export function defaultKnownServersFile(): string {
  const env = Deno.env.get("PMPROXY_KNOWN_SERVERS");
  if (env) return env;
  const home = Deno.env.get("HOME") ?? ".";
  return join(home, ".config", "pmproxy", "known_servers.json");
}

/** Reads the file; a missing file is an empty list. */
export async function readKnownServers(
  file: string,
): Promise<Record<string, KnownServer>> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return {};
    throw e;
  }
  try {
    const data = JSON.parse(text);
    if (typeof data === "object" && data !== null && !Array.isArray(data)) {
      return data as Record<string, KnownServer>;
    }
  } catch {
    // reported below
  }
  throw new Error(
    `${file} is not a known-servers file (a JSON object); fix or remove it`,
  );
}

/** Adds or replaces one server's entry. */
export async function rememberServer(
  file: string,
  origin: string,
  entry: KnownServer,
): Promise<void> {
  const all = await readKnownServers(file);
  all[origin] = entry;
  await Deno.mkdir(dirname(file), { recursive: true });
  await Deno.writeTextFile(file, JSON.stringify(all, null, 2) + "\n");
}
