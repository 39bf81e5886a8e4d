/**
 * IP addresses and CIDR ranges, for `rangeIPM` (matchers/) and `netIface`
 * (resources/); one of the value types of `managers.toml`.
 *
 * Every address is held as 16 bytes: an IPv4 address `a.b.c.d` is held as
 * its IPv4-mapped IPv6 form `::ffff:a.b.c.d`, and an IPv4 range `a.b.c.d/n`
 * as `::ffff:a.b.c.d/(96+n)`. So an IPv4 peer and the same peer seen by a
 * dual-stack socket as `::ffff:a.b.c.d` fall in the same ranges.
 *
 * @module
 */

/** A CIDR range, normalised (host bits cleared). */
export interface Cidr {
  /** 16 bytes. */
  readonly bytes: Uint8Array;
  /** Prefix length in the 128-bit space (IPv4 ranges: 96 + n). */
  readonly prefix: number;
  /** True when written as IPv4. */
  readonly v4: boolean;
}

/**
 * Reads `a.b.c.d` (each 0-255, no leading zeros) into out[at..at+4]
 * without allocating (a client address is read at every request).
 */
function parseV4Into(text: string, out: Uint8Array, at: number): boolean {
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 46; // a final "."
    if (c === 46 /* "." */) {
      if (digits === 0 || part === 4) return false;
      out[at + part++] = value;
      value = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && value === 0) return false; // a leading zero
      value = value * 10 + c - 48;
      if (value > 255) return false;
      digits++;
    } else {
      return false;
    }
  }
  return part === 4;
}

/**
 * One spelling per address: an IPv4-mapped IPv6 address (`::ffff:10.0.0.5`,
 * as a dual-stack socket shows an IPv4 client) is its IPv4 address, so a
 * login through one listener counts at the other. Other addresses are
 * answered as they are. No allocation unless the address is mapped.
 */
export function normalizeIp(ip: string): string {
  if (ip.length > 7 && ip.charCodeAt(0) === 58 /* ":" */) {
    const lower = ip.toLowerCase();
    if (lower.startsWith("::ffff:") && ip.includes(".")) return ip.slice(7);
  }
  return ip;
}

/**
 * Parses an IPv4 or IPv6 address (brackets and a `%zone` suffix allowed)
 * into 16 bytes, IPv4 as IPv4-mapped. Undefined when it is not an address.
 * `out` (16 bytes, overwritten) saves the allocation for a check that
 * does not keep the result.
 */
export function parseIp(
  text: string,
  out: Uint8Array = new Uint8Array(16),
): Uint8Array | undefined {
  let src = text;
  if (src.startsWith("[") && src.endsWith("]")) src = src.slice(1, -1);
  const zone = src.indexOf("%");
  if (zone >= 0) src = src.slice(0, zone);
  if (!src.includes(":")) {
    if (!parseV4Into(src, out, 12)) return undefined;
    out.fill(0, 0, 10);
    out[10] = 0xff;
    out[11] = 0xff;
    return out;
  }
  // IPv6: at most one "::"; an IPv4 tail takes two groups.
  const halves = src.split("::");
  if (halves.length > 2) return undefined;
  const groups: number[][] = [];
  for (let h = 0; h < halves.length; h++) {
    const half = halves[h];
    const g: number[] = [];
    if (half !== "") {
      const parts = half.split(":");
      for (let i = 0; i < parts.length; i++) {
        const p = parts[i];
        if (p.includes(".")) {
          // Only the very last part of the address may be an IPv4 tail.
          if (i !== parts.length - 1 || h !== halves.length - 1) {
            return undefined;
          }
          const v4 = new Uint8Array(4);
          if (!parseV4Into(p, v4, 0)) return undefined;
          g.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
        } else {
          if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return undefined;
          g.push(parseInt(p, 16));
        }
      }
    }
    groups.push(g);
  }
  let words: number[];
  if (groups.length === 1) {
    if (groups[0].length !== 8) return undefined;
    words = groups[0];
  } else {
    const fill = 8 - groups[0].length - groups[1].length;
    if (fill < 1) return undefined;
    words = [...groups[0], ...new Array(fill).fill(0), ...groups[1]];
  }
  for (let i = 0; i < 8; i++) {
    out[2 * i] = words[i] >> 8;
    out[2 * i + 1] = words[i] & 0xff;
  }
  return out;
}

/** True when the text is an IPv4 or IPv6 address. */
export function isIp(text: string): boolean {
  return parseIp(text) !== undefined;
}

/**
 * Parses `a.b.c.d/n` (n <= 32) or `x:y::z/n` (n <= 128). A bare address is a
 * range of that one address. Host bits are cleared (`10.1.2.3/8` is
 * `10.0.0.0/8`), as Go's `net.ParseCIDR` did. Answers an error sentence
 * (a string) when the text is not a range.
 */
export function parseCidr(text: string): Cidr | string {
  const form =
    `write an IPv4 or IPv6 range like "10.0.0.0/8", "192.168.1.0/24" or "2001:db8::/32"`;
  const src = text.trim();
  const slash = src.indexOf("/");
  const addrText = slash >= 0 ? src.slice(0, slash) : src;
  const bytes = parseIp(addrText);
  if (!bytes || addrText.startsWith("[")) {
    return `"${text}" is not a CIDR range: "${addrText}" is not an IP address; ${form}`;
  }
  const v4 = !addrText.includes(":");
  const max = v4 ? 32 : 128;
  let n = max;
  if (slash >= 0) {
    const p = src.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) {
      return `"${text}" is not a CIDR range: the prefix length after "/" must be a number from 0 to ${max} for ${
        v4 ? "IPv4" : "IPv6"
      }; ${form}`;
    }
    n = Number(p);
  }
  const prefix = v4 ? 96 + n : n;
  for (let bit = prefix; bit < 128; bit++) {
    bytes[bit >> 3] &= ~(0x80 >> (bit & 7));
  }
  return { bytes, prefix, v4 };
}

/** True when the 16-byte address is inside the range. */
export function cidrContains(cidr: Cidr, addr: Uint8Array): boolean {
  const whole = cidr.prefix >> 3;
  for (let i = 0; i < whole; i++) {
    if (addr[i] !== cidr.bytes[i]) return false;
  }
  const rest = cidr.prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff00 >> rest) & 0xff;
  return (addr[whole] & mask) === cidr.bytes[whole];
}

/** Prints a range as it would be written (`10.0.0.0/8`, `2001:db8::/32`). */
export function formatCidr(cidr: Cidr): string {
  const b = cidr.bytes;
  if (cidr.v4) {
    return `${b[12]}.${b[13]}.${b[14]}.${b[15]}/${cidr.prefix - 96}`;
  }
  const words: string[] = [];
  for (let i = 0; i < 8; i++) {
    words.push(((b[2 * i] << 8) | b[2 * i + 1]).toString(16));
  }
  // Compress the longest run of zero groups (at least two) to "::".
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (words[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === "0") j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const text = best < 0
    ? words.join(":")
    : `${words.slice(0, best).join(":")}::${
      words.slice(best + bestLen).join(":")
    }`;
  return `${text}/${cidr.prefix}`;
}
