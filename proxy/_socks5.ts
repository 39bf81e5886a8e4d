/**
 * The client side of a SOCKS5 handshake (RFC 1928) with optional
 * username/password authentication (RFC 1929), over an open connection to
 * the parent. After it, the connection is a byte stream to the target.
 *
 * Every read asks for exactly the bytes the protocol announces, so bytes the
 * target sends right after the reply (a server greeting) stay unread in the
 * connection for the caller.
 *
 * @module
 */
import { DialError } from "./_dial_error.ts";
import { type Stream, writeAll } from "./_io.ts";

/** Credentials and a name for messages. */
export interface Socks5Options {
  /** Percent-decoded user name, when the parent's URL has one. */
  user?: string;
  /** Percent-decoded password. */
  pass?: string;
  /** `host:port` of the parent, for messages. */
  parent: string;
}

const NO_AUTH = 0x00;
const USER_PASS = 0x02;
const NO_ACCEPTABLE = 0xff;
const CMD_CONNECT = 0x01;
const ATYP_IPV4 = 0x01;
const ATYP_DOMAIN = 0x03;
const ATYP_IPV6 = 0x04;

/** RFC 1928 §6 reply codes, worded for a person reading a 502 page. */
const REPLIES: Record<number, string> = {
  0x01: "general SOCKS server failure",
  0x02: "connection not allowed by the parent's rules",
  0x03: "network unreachable",
  0x04: "host unreachable",
  0x05: "connection refused by destination",
  0x06: "TTL expired (the destination did not answer in time)",
  0x07: "command not supported",
  0x08: "address type not supported",
};

/** The reply code that means the parent gave up waiting: a gateway timeout. */
const TTL_EXPIRED = 0x06;

const encoder = new TextEncoder();

/**
 * Asks the SOCKS5 parent on `conn` to connect to `target`. Throws
 * {@link DialError} when the parent refuses; I/O errors propagate as they are.
 */
export async function socks5Connect(
  conn: Stream,
  target: { host: string; port: number },
  options: Socks5Options,
): Promise<void> {
  const { parent } = options;
  const withAuth = options.user !== undefined;
  await writeAll(
    conn,
    Uint8Array.of(5, ...(withAuth ? [2, NO_AUTH, USER_PASS] : [1, NO_AUTH])),
  );
  const [version, method] = await readExact(conn, 2, parent);
  if (version !== 5) {
    throw new DialError(
      `parent proxy ${parent} is not a SOCKS5 proxy (it answered version ${version}); check the scheme of its URL`,
      false,
    );
  }
  if (method === USER_PASS && withAuth) {
    await authenticate(conn, options);
  } else if (method === NO_ACCEPTABLE) {
    throw new DialError(
      withAuth
        ? `SOCKS5 parent ${parent} accepts neither no authentication nor user/password`
        : `SOCKS5 parent ${parent} requires authentication; put user:password@ in its URL`,
      false,
    );
  } else if (method !== NO_AUTH) {
    throw new DialError(
      `SOCKS5 parent ${parent} chose authentication method ${method}, which was not offered`,
      false,
    );
  }

  await writeAll(conn, connectRequest(target));
  const head = await readExact(conn, 4, parent);
  if (head[0] !== 5) {
    throw new DialError(
      `SOCKS5 parent ${parent} sent a malformed reply (version ${head[0]})`,
      false,
    );
  }
  const rep = head[1];
  if (rep !== 0) {
    const why = REPLIES[rep] ?? `unknown reply code ${rep}`;
    throw new DialError(
      `SOCKS5 parent ${parent} answered: ${why}`,
      rep === TTL_EXPIRED,
    );
  }
  // The bound address is of no use to us, but it must be consumed.
  const atyp = head[3];
  let rest: number;
  if (atyp === ATYP_IPV4) rest = 4 + 2;
  else if (atyp === ATYP_IPV6) rest = 16 + 2;
  else if (atyp === ATYP_DOMAIN) {
    rest = (await readExact(conn, 1, parent))[0] + 2;
  } else {
    throw new DialError(
      `SOCKS5 parent ${parent} sent a reply with unknown address type ${atyp}`,
      false,
    );
  }
  await readExact(conn, rest, parent);
}

async function authenticate(conn: Stream, options: Socks5Options) {
  const user = encoder.encode(options.user ?? "");
  const pass = encoder.encode(options.pass ?? "");
  if (user.length > 255 || pass.length > 255) {
    throw new DialError(
      `the user name and password for SOCKS5 parent ${options.parent} must be at most 255 bytes each`,
      false,
    );
  }
  const msg = new Uint8Array(3 + user.length + pass.length);
  msg[0] = 1;
  msg[1] = user.length;
  msg.set(user, 2);
  msg[2 + user.length] = pass.length;
  msg.set(pass, 3 + user.length);
  await writeAll(conn, msg);
  const [, status] = await readExact(conn, 2, options.parent);
  if (status !== 0) {
    throw new DialError(
      `SOCKS5 parent ${options.parent} rejected the user name and password; check the credentials in its URL`,
      false,
    );
  }
}

/** `VER CMD RSV ATYP DST.ADDR DST.PORT`, with the address as literal or name. */
function connectRequest(target: { host: string; port: number }): Uint8Array {
  const v4 = parseIpv4(target.host);
  const v6 = v4 ? undefined : parseIpv6(target.host);
  let addr: number[];
  if (v4) addr = [ATYP_IPV4, ...v4];
  else if (v6) addr = [ATYP_IPV6, ...v6];
  else {
    const name = encoder.encode(target.host);
    if (name.length > 255) {
      throw new DialError(
        `host name ${
          target.host.slice(0, 40)
        }\u2026 is too long for SOCKS5 (at most 255 bytes)`,
        false,
      );
    }
    addr = [ATYP_DOMAIN, name.length, ...name];
  }
  return Uint8Array.of(
    5,
    CMD_CONNECT,
    0,
    ...addr,
    target.port >> 8,
    target.port & 0xff,
  );
}

/** Four bytes for a dotted-quad literal, else undefined. */
export function parseIpv4(s: string): number[] | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  const bytes = m.slice(1).map(Number);
  return bytes.every((b) => b <= 255) ? bytes : undefined;
}

/** Sixteen bytes for an IPv6 literal (no brackets; `::`, IPv4 tail, zone ignored), else undefined. */
export function parseIpv6(s: string): number[] | undefined {
  if (!s.includes(":")) return undefined;
  const addr = s.replace(/%.*$/, "");
  const halves = addr.split("::");
  if (halves.length > 2) return undefined;
  const words = (part: string): number[] | undefined => {
    if (part === "") return [];
    const out: number[] = [];
    const groups = part.split(":");
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i];
      if (i === groups.length - 1 && g.includes(".")) {
        const v4 = parseIpv4(g);
        if (!v4) return undefined;
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(g)) {
        out.push(parseInt(g, 16));
      } else return undefined;
    }
    return out;
  };
  const left = words(halves[0]);
  const right = halves.length === 2 ? words(halves[1]) : [];
  if (!left || !right) return undefined;
  let all: number[];
  if (halves.length === 2) {
    const gap = 8 - left.length - right.length;
    if (gap < 1) return undefined;
    all = [...left, ...new Array(gap).fill(0), ...right];
  } else all = left;
  if (all.length !== 8) return undefined;
  return all.flatMap((w) => [w >> 8, w & 0xff]);
}

async function readExact(
  conn: Stream,
  n: number,
  parent: string,
): Promise<Uint8Array> {
  const buf = new Uint8Array(n);
  let at = 0;
  while (at < n) {
    const k = await conn.read(buf.subarray(at));
    if (k === null) {
      throw new DialError(
        `SOCKS5 parent ${parent} closed the connection during the handshake; check that it is a SOCKS5 proxy and that it accepts this client`,
        false,
      );
    }
    at += k;
  }
  return buf;
}
