/**
 * Session secrets: JWT HS256 with the claims `user`, `ip` and `exp`
 * (seconds), signed and checked synchronously (the API's `check` is
 * synchronous). Private to this folder.
 *
 * @module
 */
import { createHmac, timingSafeEqual } from "node:crypto";

/** The claims of a session secret. */
export interface SessionClaims {
  user: string;
  ip: string;
  /** Expiry, seconds since the epoch. */
  exp: number;
}

const HEADER = base64url(
  new TextEncoder().encode(JSON.stringify({ alg: "HS256", typ: "JWT" })),
);

function base64url(bytes: Uint8Array): string {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64url(text: string): Uint8Array {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

function mac(key: Uint8Array, data: string): Uint8Array {
  return new Uint8Array(createHmac("sha256", key).update(data).digest());
}

/** Signs the claims into a compact JWT. */
export function signJwt(key: Uint8Array, claims: SessionClaims): string {
  const body = base64url(new TextEncoder().encode(JSON.stringify(claims)));
  const data = `${HEADER}.${body}`;
  return `${data}.${base64url(mac(key, data))}`;
}

/**
 * The claims of a correctly signed secret (expired or not), or undefined
 * when it is malformed or not signed with `key`.
 */
export function verifyJwt(
  key: Uint8Array,
  token: string,
): SessionClaims | undefined {
  const parts = token.split(".");
  if (parts.length !== 3 || parts[0] !== HEADER) return undefined;
  try {
    const want = mac(key, `${parts[0]}.${parts[1]}`);
    const got = fromBase64url(parts[2]);
    if (got.length !== want.length || !timingSafeEqual(got, want)) {
      return undefined;
    }
    const claims = JSON.parse(
      new TextDecoder().decode(fromBase64url(parts[1])),
    );
    if (
      typeof claims?.user !== "string" || typeof claims.ip !== "string" ||
      typeof claims.exp !== "number"
    ) {
      return undefined;
    }
    return claims as SessionClaims;
  } catch {
    return undefined;
  }
}
