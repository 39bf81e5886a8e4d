/**
 * Request targets: the absolute URL of a forwarded request and the
 * `host:port` authority of CONNECT, parsed by hand so the path goes upstream
 * byte for byte as the client wrote it (URL parsers re-encode).
 *
 * An authority must be well-formed (RFC 3986 §3.2): a reg-name of
 * unreserved, sub-delims and `%HH` characters, an IPv4 address, or an IPv6
 * address in brackets; a port of digits in 1..65535. An `http` URI with
 * userinfo (`http://user:pass@host/`) is refused (RFC 9110 §4.2.4): it is
 * deprecated, and a classic way to show one host and reach another.
 *
 * @module
 */
/** `host:port` with brackets around an IPv6 literal, as a request line needs. */
export function authority(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/**
 * True when `text` is an IPv6 address in its text forms (RFC 4291 §2.2):
 * eight groups of 1 to 4 hex digits, `::` once for a run of zero groups,
 * and the last two groups maybe as an IPv4 address. (By hand rather than
 * node:net's isIPv6: the data path loads no node:net for it.)
 */
export function isIPv6(text: string): boolean {
  let s = text;
  // An IPv4 address at the end stands for the last two groups.
  const lastColon = s.lastIndexOf(":");
  if (lastColon < 0) return false;
  if (s.indexOf(".", lastColon) >= 0) {
    if (!isIPv4(s.slice(lastColon + 1))) return false;
    s = s.slice(0, lastColon + 1) + "0:0";
  }
  const double = s.indexOf("::");
  if (double < 0) {
    const parts = s.split(":");
    return parts.length === 8 && parts.every(isHexGroup);
  }
  if (s.indexOf("::", double + 1) >= 0) return false;
  // "::" stands for one or more zero groups between what is on its sides.
  const head = s.slice(0, double);
  const tail = s.slice(double + 2);
  const before = head === "" ? [] : head.split(":");
  const after = tail === "" ? [] : tail.split(":");
  return before.every(isHexGroup) && after.every(isHexGroup) &&
    before.length + after.length <= 7;
}

function isHexGroup(g: string): boolean {
  return g.length >= 1 && g.length <= 4 && /^[0-9a-fA-F]+$/.test(g);
}

function isIPv4(text: string): boolean {
  const parts = text.split(".");
  if (parts.length !== 4) return false;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return false;
    if (p.length > 1 && p[0] === "0") return false;
  }
  return true;
}

/** Where a request goes. */
export interface Target {
  /** Host name or address, lower-case, without brackets. */
  host: string;
  port: number;
  /** `host[:port]` as it belongs in a Host header (brackets kept). */
  authority: string;
  /** Origin-form path and query (`/` when empty). */
  path: string;
}

const HOST_CHARS = /^(?:[a-z0-9._~!$&'()*+,;=-]|%[0-9a-f]{2})+$/;
const V6_ZONE = /^%[a-z0-9._~-]+$/;

/** A well-formed authority, as {@link parseAuthority} found it. */
interface Authority {
  host: string;
  port: number;
  /** The text in lower case. */
  lower: string;
}

/**
 * Authorities already found well-formed, by text, for the two ways they
 * are read (a URL's or Host's, port 80 by default; CONNECT's, port
 * required): every request has two (its target's and its Host), and a
 * client's next requests the same ones, so each is checked once. Emptied
 * when full, so it stays small whatever clients send.
 */
const seen80 = new Map<string, Authority>();
const seenNoDefault = new Map<string, Authority>();
const SEEN_MAX = 256;

/** Parses `host:port` / `[v6]:port` (port required unless `defaultPort`). */
export function parseAuthority(
  text: string,
  defaultPort?: number,
): { host: string; port: number } | string {
  const a = authorityOf(text, defaultPort);
  return typeof a === "string" ? a : { host: a.host, port: a.port };
}

function authorityOf(text: string, defaultPort?: number): Authority | string {
  const cache = defaultPort === 80
    ? seen80
    : defaultPort === undefined
    ? seenNoDefault
    : undefined;
  const known = cache?.get(text);
  if (known !== undefined) return known;
  const found = checkAuthority(text, defaultPort);
  if (cache !== undefined && typeof found !== "string") {
    if (cache.size >= SEEN_MAX) cache.clear();
    cache.set(text, found);
  }
  return found;
}

function checkAuthority(
  text: string,
  defaultPort?: number,
): Authority | string {
  const a = text.toLowerCase();
  let host: string;
  let rest: string;
  if (a.startsWith("[")) {
    const close = a.indexOf("]");
    if (close < 0) return `"${text}" has an unclosed IPv6 bracket`;
    host = a.slice(1, close);
    const zone = host.indexOf("%");
    if (
      !isIPv6(zone < 0 ? host : host.slice(0, zone)) ||
      (zone >= 0 && !V6_ZONE.test(host.slice(zone)))
    ) return `"${host}" is not an IPv6 address`;
    rest = a.slice(close + 1);
  } else {
    const colon = a.lastIndexOf(":");
    host = colon < 0 ? a : a.slice(0, colon);
    rest = colon < 0 ? "" : a.slice(colon);
    if (!HOST_CHARS.test(host)) return `"${text}" is not a valid host`;
  }
  let port = defaultPort;
  // An empty port is the default one (RFC 3986 §3.2.3), where there is one.
  if (rest !== "" && !(rest === ":" && defaultPort !== undefined)) {
    if (!/^:\d{1,5}$/.test(rest)) return `"${text}" has an invalid port`;
    port = Number(rest.slice(1));
  }
  if (port === undefined) return `"${text}" has no port: write host:port`;
  if (port < 1 || port > 65535) return `"${text}" has a port out of range`;
  return { host, port, lower: a };
}

/** Parses an absolute-form `http://...` target. Returns an error sentence otherwise. */
export function parseHttpUrl(url: string): Target | string {
  const sep = url.indexOf("://");
  const scheme = sep > 0 ? url.slice(0, sep).toLowerCase() : "";
  if (scheme === "https") {
    return "https:// URLs go through the proxy with CONNECT; set this proxy as the HTTPS proxy too";
  }
  if (scheme !== "http") {
    return `"${url.slice(0, 40)}" is not an http:// URL`;
  }
  const from = sep + 3;
  let end = url.length;
  for (let i = from; i < url.length; i++) {
    const c = url.charCodeAt(i);
    if (c === 47 || c === 63 || c === 35) {
      end = i;
      break;
    }
  }
  const authority = url.slice(from, end);
  if (authority.includes("@")) {
    return "an http:// URL cannot carry a user name or password (user@host); remove it";
  }
  const hp = authorityOf(authority, 80);
  if (typeof hp === "string") return hp;
  let path = url.slice(end);
  const hash = path.indexOf("#");
  if (hash >= 0) path = path.slice(0, hash);
  if (path === "") path = "/";
  else if (path[0] === "?") path = "/" + path;
  return { host: hp.host, port: hp.port, authority: hp.lower, path };
}
