/**
 * The proxy auto-configuration file (PAC) that `GET /proxy.pac` and
 * `GET /wpad.dat` answer: a JavaScript function `FindProxyForURL(url,
 * host)` that browsers run for every request, sending it to pmproxy's proxy
 * or `DIRECT`.
 *
 * DIRECT: plain host names (no dot: the intranet's short names),
 * `localhost` and loopback addresses, the gateway's own API (its login page
 * must be reachable before login), and the entries of `[api] pacDirect`:
 *
 * ```toml
 * [api]
 *   pacDirect = ["intranet.example.org", "*.example.org", "10.0.0.0/8", "fd00::/8"]
 * ```
 *
 * A host name matches itself; `*.example.org` matches every name under
 * `example.org` (not `example.org` itself: list it too); an address range
 * (or one address) matches hosts written as IP addresses.
 *
 * The script uses plain JavaScript only (ES3, no PAC helper functions such
 * as `isInNet` or `dnsResolve`): old PAC engines run it, and it never
 * resolves names. Resolving would stall every page load where the clients'
 * DNS cannot answer for outside names (behind a gateway it often cannot:
 * the proxy resolves them), so ranges match addresses only, and names are
 * matched by name.
 *
 * The entries are read by `./pac_direct.ts`, at start, with `server.toml`;
 * this module loads with the API's app, at its first request.
 *
 * @example
 * ```ts
 * import { pacScript } from "./pac.ts";
 * import { parsePacDirect } from "./pac_direct.ts";
 * const lan = parsePacDirect("10.0.0.0/8");
 * if (typeof lan === "string") throw new Error(lan);
 * const js = pacScript({ proxyHost: "gateway.lan", proxyPort: 8080, direct: [lan] });
 * ```
 *
 * @module
 */
import { type Cidr, formatCidr, parseCidr } from "../managers/mod.ts";
import type { PacDirect } from "./pac_direct.ts";

/** Options of {@link pacScript}. */
export interface PacOptions {
  /** The proxy's host as clients reach it (a name or an address). */
  proxyHost: string;
  /** The proxy's port. */
  proxyPort: number;
  /** What goes DIRECT besides plain names and loopback. */
  direct: PacDirect[];
}

/** The content type browsers expect of a PAC file. */
export const PAC_TYPE = "application/x-ns-proxy-autoconfig";

/** How an entry reads in the script's comments. */
function describe(entry: PacDirect): string {
  switch (entry.kind) {
    case "host":
      return entry.host;
    case "suffix":
      return `*${entry.suffix}`;
    case "range":
      return formatCidr(entry.cidr);
  }
}

// The script's functions, ES3: no let/const, no arrow functions, no
// Array.prototype.indexOf (JScript-based engines lack them). Addresses are
// 16 numbers, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d), as pmproxy's
// rangeIPM holds them, so one comparison serves both families.
const FUNCTIONS = `
// a.b.c.d as 4 numbers, or null.
function pmproxyV4(text) {
  var parts = text.split("."), out = [], i, n;
  if (parts.length !== 4) return null;
  for (i = 0; i < 4; i++) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(parts[i])) return null;
    n = parseInt(parts[i], 10);
    if (n > 255) return null;
    out.push(n);
  }
  return out;
}

// "x:y:z" (maybe ending in a.b.c.d) as 16-bit numbers, or null.
function pmproxyWords(text) {
  var words = [], parts, i, v4;
  if (text === "") return words;
  parts = text.split(":");
  for (i = 0; i < parts.length; i++) {
    if (i === parts.length - 1 && parts[i].indexOf(".") >= 0) {
      v4 = pmproxyV4(parts[i]);
      if (v4 === null) return null;
      words.push(v4[0] * 256 + v4[1], v4[2] * 256 + v4[3]);
    } else {
      if (!/^[0-9a-f]{1,4}$/.test(parts[i])) return null;
      words.push(parseInt(parts[i], 16));
    }
  }
  return words;
}

// An IPv4 or IPv6 address as 16 numbers, or null for a host name.
function pmproxyAddress(host) {
  var v4, at, head, tail, words, fill, out = [], i;
  if (host.indexOf(":") < 0) {
    v4 = pmproxyV4(host);
    if (v4 === null) return null;
    return [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255].concat(v4);
  }
  if (host.indexOf("%") >= 0) host = host.substring(0, host.indexOf("%"));
  at = host.indexOf("::");
  if (at >= 0 && host.indexOf("::", at + 1) >= 0) return null;
  head = pmproxyWords(at >= 0 ? host.substring(0, at) : host);
  tail = pmproxyWords(at >= 0 ? host.substring(at + 2) : "");
  if (head === null || tail === null) return null;
  fill = 8 - head.length - tail.length;
  if (at >= 0 ? fill < 1 : fill !== 0) return null;
  words = head;
  for (i = 0; i < fill; i++) words.push(0);
  words = words.concat(tail);
  for (i = 0; i < 8; i++) out.push(Math.floor(words[i] / 256), words[i] % 256);
  return out;
}

// True when the address is inside [bytes, prefix length].
function pmproxyInRange(address, range) {
  var bytes = range[0], prefix = range[1], whole = Math.floor(prefix / 8);
  var rest = prefix % 8, mask, i;
  for (i = 0; i < whole; i++) if (address[i] !== bytes[i]) return false;
  if (rest === 0) return true;
  mask = 256 - Math.pow(2, 8 - rest);
  return (address[whole] & mask) === (bytes[whole] & mask);
}

function FindProxyForURL(url, host) {
  var h = String(host).toLowerCase(), address, i, s;
  if (h.charAt(0) === "[") h = h.substring(1, h.length - 1);
  if (h.charAt(h.length - 1) === ".") h = h.substring(0, h.length - 1);
  // A plain name (no dot) is on the local network.
  if (h.indexOf(".") < 0 && h.indexOf(":") < 0) return "DIRECT";
  if (h === "localhost" || pmproxyEndsWith(h, ".localhost")) return "DIRECT";
  for (i = 0; i < PMPROXY_HOSTS.length; i++) {
    if (h === PMPROXY_HOSTS[i]) return "DIRECT";
  }
  for (i = 0; i < PMPROXY_SUFFIXES.length; i++) {
    if (pmproxyEndsWith(h, PMPROXY_SUFFIXES[i])) return "DIRECT";
  }
  address = pmproxyAddress(h);
  if (address !== null) {
    for (i = 0; i < PMPROXY_RANGES.length; i++) {
      if (pmproxyInRange(address, PMPROXY_RANGES[i])) return "DIRECT";
    }
  }
  return PMPROXY_PROXY;
}

function pmproxyEndsWith(text, end) {
  return text.length > end.length &&
    text.substring(text.length - end.length) === end;
}
`;

/** Loopback, always DIRECT: the browser's own machine. */
const LOOPBACK = ["127.0.0.0/8", "::1/128"];

/**
 * The PAC script: every request to the proxy at `proxyHost:proxyPort`
 * except the DIRECT ones (see the module's documentation). No `DIRECT`
 * fallback after the proxy: a browser that could not reach the proxy would
 * otherwise leave the gateway's rules and quotas behind without a word.
 */
export function pacScript(options: PacOptions): string {
  const hosts: string[] = [];
  const suffixes: string[] = [];
  const ranges: string[] = [];
  const listed: string[] = [];
  const loopback = LOOPBACK.map((r): PacDirect => ({
    kind: "range",
    cidr: parseCidr(r) as Cidr,
  }));
  const entries = [...loopback, ...options.direct];
  for (const entry of entries) {
    // The gateway's own hosts often repeat pacDirect's or each other.
    if (listed.includes(describe(entry))) continue;
    listed.push(describe(entry));
    if (entry.kind === "host") hosts.push(JSON.stringify(entry.host));
    if (entry.kind === "suffix") suffixes.push(JSON.stringify(entry.suffix));
    if (entry.kind === "range") {
      ranges.push(
        `[[${[...entry.cidr.bytes].join(", ")}], ${entry.cidr.prefix}]`,
      );
    }
  }
  const bare = options.proxyHost.replace(/^\[|\]$/g, "");
  const shown = bare.includes(":") ? `[${bare}]` : bare;
  const proxy = `PROXY ${shown}:${options.proxyPort}`;
  return `// pmproxy: proxy auto-configuration (PAC).
// Every request goes to the proxy ${shown}:${options.proxyPort}, except
// plain host names (no dot), localhost and these, which go DIRECT:
// ${listed.join(", ")}
// Generated by the gateway's API; [api] pacDirect in server.toml adds
// DIRECT entries.

var PMPROXY_PROXY = ${JSON.stringify(proxy)};
var PMPROXY_HOSTS = [${hosts.join(", ")}];
var PMPROXY_SUFFIXES = [${suffixes.join(", ")}];
// [address as 16 bytes (IPv4 as ::ffff:a.b.c.d), prefix length]
var PMPROXY_RANGES = [
  ${ranges.join(",\n  ")}
];
${FUNCTIONS}`;
}
