/**
 * Password hashing for user databases: PBKDF2-SHA256 through WebCrypto,
 * stored as `pbkdf2-sha256$<iterations>$<salt base64>$<hash base64>`.
 * A stored password that is not such a hash is a plain password (the
 * original's `mapDB`); both compare in constant time.
 *
 * ```ts
 * const stored = await hashPassword("s3cret");
 * await verifyPassword("s3cret", stored); // true
 * ```
 *
 * @module
 */

const PREFIX = "pbkdf2-sha256";
/** Iterations of new hashes. */
export const PBKDF2_ITERATIONS = 100_000;
const encoder = new TextEncoder();

function toBase64(bytes: Uint8Array): string {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text);
}

function fromBase64(text: string): Uint8Array | undefined {
  try {
    return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
}

/**
 * Hashes computed at the same time, at most: a flood of logins queues
 * here instead of taking every core from the proxy.
 */
export const HASHES_AT_ONCE = 2;
/** Logins waiting for a hash, at most; more are refused as busy. */
export const HASHES_WAITING = 1000;

let running = 0;
const waiting: (() => void)[] = [];

/** Hashes being computed and waiting now (for tests and metrics). */
export function hashingLoad(): { running: number; waiting: number } {
  return { running, waiting: waiting.length };
}

/** The password hashing is saturated: try again later. */
export class HashingBusy extends Error {
  constructor() {
    super("too many logins are being checked right now; try again shortly");
    this.name = "HashingBusy";
  }
}

async function derive(
  pass: string,
  salt: Uint8Array,
  iterations: number,
): Promise<Uint8Array> {
  if (running >= HASHES_AT_ONCE) {
    if (waiting.length >= HASHES_WAITING) throw new HashingBusy();
    await new Promise<void>((resolve) => waiting.push(resolve));
  }
  running++;
  try {
    return await deriveNow(pass, salt, iterations);
  } finally {
    running--;
    waiting.shift()?.();
  }
}

async function deriveNow(
  pass: string,
  salt: Uint8Array,
  iterations: number,
): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(pass),
    "PBKDF2",
    false,
    ["deriveBits"],
  );
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-256", salt: salt as BufferSource, iterations },
    key,
    256,
  );
  return new Uint8Array(bits);
}

/** Hashes a password for storing (random 16-byte salt). */
export async function hashPassword(pass: string): Promise<string> {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const hash = await derive(pass, salt, PBKDF2_ITERATIONS);
  return `${PREFIX}$${PBKDF2_ITERATIONS}$${toBase64(salt)}$${toBase64(hash)}`;
}

/** True when `stored` is a hash made by {@link hashPassword}. */
export function isPasswordHash(stored: string): boolean {
  return stored.startsWith(`${PREFIX}$`);
}

/**
 * Why a stored hash is malformed, or undefined when it is well formed (or a
 * plain password). For configuration checks.
 */
export function checkPasswordHash(stored: string): string | undefined {
  if (!isPasswordHash(stored)) return undefined;
  const parts = stored.split("$");
  const iterations = Number(parts[1]);
  if (
    parts.length !== 4 || !Number.isSafeInteger(iterations) ||
    iterations < 1 || !fromBase64(parts[2]) || !fromBase64(parts[3])
  ) {
    return `a password starting with "${PREFIX}$" must read ${PREFIX}$<iterations>$<salt base64>$<hash base64>; write a new one with pmproxy's default file or as plain text`;
  }
  return undefined;
}

/** Compares two byte strings in time that depends only on their lengths. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

/** Checks `pass` against a stored hash or plain password. */
export async function verifyPassword(
  pass: string,
  stored: string,
): Promise<boolean> {
  if (!isPasswordHash(stored)) {
    // Digests first, so the comparison does not reveal the length.
    const [a, b] = await Promise.all([
      crypto.subtle.digest("SHA-256", encoder.encode(pass)),
      crypto.subtle.digest("SHA-256", encoder.encode(stored)),
    ]);
    return constantTimeEqual(new Uint8Array(a), new Uint8Array(b));
  }
  const parts = stored.split("$");
  const salt = fromBase64(parts[2] ?? "");
  const want = fromBase64(parts[3] ?? "");
  const iterations = Number(parts[1]);
  if (!salt || !want || !Number.isSafeInteger(iterations) || iterations < 1) {
    return false;
  }
  return constantTimeEqual(await derive(pass, salt, iterations), want);
}
