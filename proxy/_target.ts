/**
 * Request targets: the absolute URL of a forwarded request and the
 * `host:port` authority of CONNECT, parsed by hand so the path goes upstream
 * byte for byte as the client wrote it (URL parsers re-encode).
 *
 * @module
 */

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

const HOST_CHARS = /^[a-z0-9._~!$&'()*+,;=%-]+$/;
const V6_CHARS = /^[0-9a-f:.]+(%[a-z0-9._~-]+)?$/;

/** Parses `host:port` / `[v6]:port` (port required unless `defaultPort`). */
export function parseAuthority(
  text: string,
  defaultPort?: number,
): { host: string; port: number } | string {
  const a = text.toLowerCase();
  let host: string;
  let rest: string;
  if (a.startsWith("[")) {
    const close = a.indexOf("]");
    if (close < 0) return `"${text}" has an unclosed IPv6 bracket`;
    host = a.slice(1, close);
    if (!V6_CHARS.test(host)) return `"${host}" is not an IPv6 address`;
    rest = a.slice(close + 1);
  } else {
    const colon = a.lastIndexOf(":");
    host = colon < 0 ? a : a.slice(0, colon);
    rest = colon < 0 ? "" : a.slice(colon);
    if (!HOST_CHARS.test(host)) return `"${text}" is not a valid host`;
  }
  let port = defaultPort;
  if (rest !== "") {
    if (!/^:\d{1,5}$/.test(rest)) return `"${text}" has an invalid port`;
    port = Number(rest.slice(1));
  }
  if (port === undefined) return `"${text}" has no port: write host:port`;
  if (port < 1 || port > 65535) return `"${text}" has a port out of range`;
  return { host, port };
}

/** Parses an absolute-form `http://…` target. Returns an error sentence otherwise. */
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
  let authority = url.slice(from, end);
  const at = authority.lastIndexOf("@");
  if (at >= 0) authority = authority.slice(at + 1); // user info is not sent on
  const hp = parseAuthority(authority, 80);
  if (typeof hp === "string") return hp;
  let path = url.slice(end);
  const hash = path.indexOf("#");
  if (hash >= 0) path = path.slice(0, hash);
  if (path === "") path = "/";
  else if (path[0] === "?") path = "/" + path;
  return { ...hp, authority: authority.toLowerCase(), path };
}
