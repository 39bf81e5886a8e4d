/**
 * What the PAC file (`./pac.ts`) sends DIRECT besides plain names and
 * loopback: the entries of `[api] pacDirect`, read with `server.toml` at
 * start, and the gateway's own host. A host name matches itself,
 * `*.example.org` every name under `example.org`, and an address range (or
 * one address) hosts written as IP addresses.
 *
 * ```ts
 * import { parsePacDirect } from "./pac_direct.ts";
 * const lan = parsePacDirect("10.0.0.0/8"); // { kind: "range", cidr }
 * const bad = parsePacDirect("intra*net"); // a sentence: what to write
 * ```
 *
 * @module
 */
import { type Cidr, parseCidr } from "../managers/mod.ts";

/** One entry of `[api] pacDirect`, or a host of the gateway itself. */
export type PacDirect =
  | { kind: "host"; host: string }
  | { kind: "suffix"; suffix: string }
  | { kind: "range"; cidr: Cidr };

const LABEL = "[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?";
const HOST_NAME = new RegExp(`^${LABEL}(?:\\.${LABEL})*$`);

/**
 * A host name lower case and in its ASCII (punycode) form, as browsers
 * hand it to `FindProxyForURL`; undefined when it is not a host name.
 */
function asciiHost(text: string): string | undefined {
  // Letters, digits, "-", "_" and dots only: the URL parser below would
  // otherwise read "user@host" or "host?x" as "host".
  if (!/^[\p{L}\p{N}_.-]+$/u.test(text)) return undefined;
  let host: string;
  try {
    host = new URL(`http://${text}/`).hostname;
  } catch {
    return undefined;
  }
  if (host.endsWith(".")) host = host.slice(0, -1);
  if (host.length > 253 || !HOST_NAME.test(host)) return undefined;
  return host;
}

/**
 * Reads one `pacDirect` entry. Answers an error sentence (a string) that
 * says what to write instead when it is none of the three forms.
 */
export function parsePacDirect(text: string): PacDirect | string {
  const forms =
    `write a host name ("intranet.example.org"), a domain suffix ("*.example.org") or an address range ("10.0.0.0/8", "fd00::/8")`;
  const entry = text.trim();
  if (entry === "") return `an empty pacDirect entry; ${forms}`;
  if (entry.includes("/") || entry.includes(":") || /^[\d.]+$/.test(entry)) {
    const cidr = parseCidr(entry);
    if (typeof cidr === "string") return `pacDirect: ${cidr}`;
    return { kind: "range", cidr };
  }
  if (entry.startsWith("*.")) {
    const domain = asciiHost(entry.slice(2));
    if (domain === undefined) {
      return `pacDirect entry "${text}": "${
        entry.slice(2)
      }" is not a domain name; ${forms}`;
    }
    return { kind: "suffix", suffix: `.${domain}` };
  }
  if (entry.includes("*")) {
    return `pacDirect entry "${text}": "*" may only start an entry, as in "*.example.org"; ${forms}`;
  }
  const host = asciiHost(entry);
  if (host === undefined) {
    return `pacDirect entry "${text}" is not a host name; ${forms}`;
  }
  return { kind: "host", host };
}

/** A host of the gateway itself as a DIRECT entry (an address is a range of one). */
export function ownHost(host: string): PacDirect | undefined {
  const bare = host.replace(/^\[|\]$/g, "");
  const cidr = parseCidr(bare);
  if (typeof cidr !== "string") return { kind: "range", cidr };
  const name = asciiHost(bare);
  return name === undefined ? undefined : { kind: "host", host: name };
}
