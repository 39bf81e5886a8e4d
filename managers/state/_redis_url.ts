/**
 * Reading a state store's Redis URL, and keeping its password out of every
 * message. Private to this folder.
 *
 * `redis://[user:pass@]host[:port][/db]`, or `rediss://` for TLS, with one
 * optional query parameter: `?ca=FILE`, a PEM file of the certificate
 * authority that signed the server's certificate (a private CA; without it
 * the system's trusted authorities are used).
 *
 * @module
 */

/** Where a Redis server is and how to log in to it. */
export interface RedisLocation {
  tls: boolean;
  host: string;
  port: number;
  db: number;
  username?: string;
  password?: string;
  /** A PEM file of the CA that signed the server's certificate. */
  caFile?: string;
  /** The URL without user and password, for messages. */
  safe: string;
}

const FORM = "redis://[user:pass@]host:port/db (rediss:// for TLS)";

/**
 * `url` with any `user:pass@` replaced by `***@`, for messages about a
 * location that may carry a password (even one that does not parse).
 */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#]*@/i, "$1***@");
}

/** True for `redis://` and `rediss://` locations. */
export function isRedisUrl(location: string): boolean {
  return /^rediss?:\/\//i.test(location);
}

/** Reads a `redis://` or `rediss://` URL; throws a message without the password. */
export function parseRedisUrl(url: string): RedisLocation {
  const shown = redactUrl(url);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`the state store URL ${shown} is not a URL; use ${FORM}`);
  }
  const scheme = u.protocol.toLowerCase();
  if (scheme !== "redis:" && scheme !== "rediss:") {
    throw new Error(
      `the state store URL ${shown} is not redis://; use ${FORM}`,
    );
  }
  const host = u.hostname.replace(/^\[|\]$/g, "");
  if (host === "") {
    throw new Error(`the state store URL ${shown} has no host; use ${FORM}`);
  }
  const port = u.port === "" ? 6379 : Number(u.port);
  const path = u.pathname.replace(/^\//, "");
  const db = path === "" ? 0 : Number(path);
  if (!/^\d*$/.test(path) || !Number.isSafeInteger(db)) {
    throw new Error(
      `the state store URL ${shown}: "/${path}" is not a database number; use ${FORM}`,
    );
  }
  let caFile: string | undefined;
  for (const [key, value] of u.searchParams) {
    if (key === "ca" && value !== "") {
      caFile = value;
      continue;
    }
    throw new Error(
      `the state store URL ${shown}: unknown parameter "${key}" (known: ca=FILE, the PEM file of a private CA for rediss://)`,
    );
  }
  const tls = scheme === "rediss:";
  if (caFile !== undefined && !tls) {
    throw new Error(
      `the state store URL ${shown}: ca= is for rediss:// (TLS) only`,
    );
  }
  const decode = (s: string) => s === "" ? undefined : decodeURIComponent(s);
  const hostPart = host.includes(":") ? `[${host}]` : host;
  const query = caFile === undefined ? "" : `?ca=${encodeURIComponent(caFile)}`;
  return {
    tls,
    host,
    port,
    db,
    username: decode(u.username),
    password: decode(u.password),
    caFile,
    safe: `${tls ? "rediss" : "redis"}://${hostPart}:${port}/${db}${query}`,
  };
}

/** `text` with every appearance of `secret` (also URL-encoded) masked. */
export function maskSecret(text: string, secret: string | undefined): string {
  if (!secret) return text;
  let out = text.split(secret).join("***");
  const encoded = encodeURIComponent(secret);
  if (encoded !== secret) out = out.split(encoded).join("***");
  return out;
}
