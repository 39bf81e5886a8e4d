/**
 * `GET /healthz`: whether this gateway can do its work, for a load
 * balancer or a supervisor: 200 when the proxy listens and the state store
 * works, 503 with the reason otherwise (and while a stop is under way).
 *
 * @module
 */
import type { StoreStatus } from "../managers/mod.ts";

/** The answer of a health check. */
export type Health = { ok: true } | { ok: false; reason: string };

/** What a health check looks at; a part not there yet is not fine. */
export interface HealthParts {
  /** The proxy: false once it stops listening (a stop, or accepting broke). */
  proxy?: { readonly listening: boolean };
  /** The state store. */
  store?: { status(): StoreStatus };
}

/** Checks the proxy's listener, then the state store. */
export function checkHealth(parts: HealthParts): Health {
  if (!parts.proxy) return { ok: false, reason: "the proxy is not started" };
  if (!parts.proxy.listening) {
    return {
      ok: false,
      reason:
        "the proxy does not accept connections (stopping, or its listener failed)",
    };
  }
  if (!parts.store) return { ok: false, reason: "no state store is open" };
  const status = parts.store.status();
  if (!status.ok) {
    return {
      ok: false,
      reason: `the state store fails: ${status.problem ?? "unknown problem"}`,
    };
  }
  return { ok: true };
}
