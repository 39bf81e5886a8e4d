/**
 * Session secrets: JWT HS256 with the claims `user`, `ip` and `exp`
 * (seconds), signed and checked by Hono's JWT functions. Private to this
 * folder.
 *
 * The format is the one pmproxy always gave out (header
 * `{"alg":"HS256","typ":"JWT"}`, claims in the order user, ip, exp, the
 * installation's raw 32-byte key), so secrets signed before an upgrade
 * still verify after it.
 *
 * @module
 */
/**
 * Hono's JWT module, loaded at the first secret signed or checked rather
 * than at start: a gateway nobody logged in to yet does not need it, and
 * loading it costs resident memory. A static specifier keeps it in the
 * module graph of `deno compile` and `deno bundle`.
 */
let honoJwt: Promise<typeof import("hono/jwt")> | undefined;
const jwtFunctions = () => honoJwt ??= import("hono/jwt");

/** The claims of a session secret. */
export interface SessionClaims {
  user: string;
  ip: string;
  /** Expiry, seconds since the epoch. */
  exp: number;
}

/**
 * The header part of every secret we make. Only this spelling is accepted:
 * Hono would also take other spellings of an HS256 header, which we never
 * gave out.
 */
const HEADER = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/** Imported once per key: the key lives as long as its sessionIPM. */
const cryptoKeys = new WeakMap<Uint8Array, Promise<CryptoKey>>();

function cryptoKeyOf(key: Uint8Array): Promise<CryptoKey> {
  let found = cryptoKeys.get(key);
  if (!found) {
    // A CryptoKey, not a string: Hono would UTF-8-encode a string key, and
    // ours is 32 random bytes.
    found = crypto.subtle.importKey(
      "raw",
      // A copy over a plain ArrayBuffer, as WebCrypto's types want it.
      new Uint8Array(key),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign", "verify"],
    );
    cryptoKeys.set(key, found);
  }
  return found;
}

/** Signs the claims into a compact JWT. */
export async function signJwt(
  key: Uint8Array,
  claims: SessionClaims,
): Promise<string> {
  // A fresh object fixes the claims' order, hence the secret's bytes.
  const payload = { user: claims.user, ip: claims.ip, exp: claims.exp };
  const { sign } = await jwtFunctions();
  return await sign(payload, await cryptoKeyOf(key), "HS256");
}

/**
 * The claims of a correctly signed secret (expired or not), or undefined
 * when it is malformed or not signed with `key`.
 */
export async function verifyJwt(
  key: Uint8Array,
  token: string,
): Promise<SessionClaims | undefined> {
  if (!token.startsWith(`${HEADER}.`)) return undefined;
  const { verify } = await jwtFunctions();
  let claims;
  try {
    // Hono's own time checks are off: `renew` needs the claims of an
    // expired secret, and the callers judge `exp` by their (injectable)
    // clock.
    claims = await verify(token, await cryptoKeyOf(key), {
      alg: "HS256",
      exp: false,
      nbf: false,
      iat: false,
    });
  } catch {
    // Malformed, or not signed with this key (Hono's JwtToken* errors).
    return undefined;
  }
  if (
    typeof claims?.user !== "string" || typeof claims.ip !== "string" ||
    typeof claims.exp !== "number"
  ) {
    return undefined;
  }
  return { user: claims.user, ip: claims.ip, exp: claims.exp };
}
