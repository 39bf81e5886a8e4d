/**
 * `netIface`: a resource. When the rule reaches it, the request leaves this
 * machine from one of its addresses (the proxy binds that source address
 * before connecting); it is always true.
 *
 * ```toml
 * [[netIface]]
 *   name = "wan2"
 *   iface = "eth1"          # an interface name, or an address of this machine
 *   # addr = "192.0.2.7"    # or give the address itself
 * ```
 *
 * The interface's address is found once, at load time, with
 * `Deno.networkInterfaces()`: its first IPv4 address, else its first IPv6
 * address that is not link-local. With a parent proxy reached before it,
 * the connection to the parent leaves from that address.
 *
 * @module
 */
import type { EvalContext, Grant, Manager } from "../types.ts";
import { isIp, normalizeIp } from "../values/ip.ts";
import { optString, type Table } from "../config/table_fields.ts";
import type { KindContext } from "../config/kind_context.ts";

/** One address of one interface, as `Deno.networkInterfaces()` lists it. */
export interface InterfaceAddress {
  /** Interface name (`eth0`). */
  name: string;
  /** Address family. */
  family: "IPv4" | "IPv6";
  /** The address, without prefix length. */
  address: string;
}

/** A `netIface` manager. */
export class NetIface implements Manager {
  readonly kind = "netIface";

  /** Requests reaching it leave from `localAddress`. */
  constructor(
    readonly name: string,
    /** What the configuration said (`eth1` or an address). */
    readonly iface: string,
    /** The source address bound for the requests it gets. */
    readonly localAddress: string,
  ) {}

  evaluate(_ctx: EvalContext, grant: Grant): boolean {
    const route = grant.route;
    grant.route = route?.kind === "parent"
      ? {
        kind: "parent",
        proxyUrl: route.proxyUrl,
        localAddress: this.localAddress,
      }
      : { kind: "direct", localAddress: this.localAddress };
    return true;
  }

  explain(): string {
    return this.iface === this.localAddress
      ? `connections leave from ${this.localAddress}`
      : `connections leave from ${this.localAddress} (${this.iface})`;
  }

  show(): unknown {
    return {
      name: this.name,
      iface: this.iface,
      localAddress: this.localAddress,
    };
  }
}

/**
 * The source address for an interface name or an address, among `list`.
 * Answers an error sentence when there is none.
 */
export function resolveInterface(
  iface: string,
  list: InterfaceAddress[],
): string {
  const names = [...new Set(list.map((a) => a.name))];
  const has = names.length
    ? `this machine has: ${
      names.map((n) =>
        `${n} (${
          list.filter((a) => a.name === n).map((a) =>
            a.address
          ).join(", ")
        })`
      ).join(", ")
    }`
    : "this machine lists no interfaces";
  if (isIp(iface)) {
    const bare = iface.replace(/^\[|\]$/g, "");
    const found = list.find((a) => sameIp(a.address, bare));
    if (!found) {
      throw new Error(
        `address ${bare} is not an address of this machine, so no connection can leave from it; ${has}`,
      );
    }
    return bare;
  }
  const mine = list.filter((a) => a.name === iface);
  if (mine.length === 0) {
    throw new Error(
      `interface ${iface} not found; ${has}`,
    );
  }
  const v4 = mine.find((a) => a.family === "IPv4");
  const v6 = mine.find((a) =>
    a.family === "IPv6" && !/^fe[89ab]/i.test(a.address)
  );
  const chosen = v4 ?? v6;
  if (!chosen) {
    throw new Error(
      `interface ${iface} has no usable address (only ${
        mine.map((a) => a.address).join(", ")
      }); give an address with addr = "…", or pick another interface: ${has}`,
    );
  }
  return chosen.address;
}

function sameIp(a: string, b: string): boolean {
  return normalizeIp(a).toLowerCase() === normalizeIp(b).toLowerCase();
}

/** This machine's interfaces, or an error sentence without the permission. */
function machineInterfaces(): InterfaceAddress[] {
  try {
    return Deno.networkInterfaces();
  } catch (e) {
    throw new Error(
      `cannot list this machine's network interfaces (${
        e instanceof Error ? e.message : e
      }); run with --allow-sys or give the address itself with addr = "…"`,
    );
  }
}

/**
 * Builds a `netIface` from its table; `ctx.fail` throws the error for a key.
 * `interfaces` replaces `Deno.networkInterfaces()` (for tests).
 */
export function netIfaceFromTable(
  table: Table,
  ctx: KindContext,
  options: { interfaces?: InterfaceAddress[] } = {},
): NetIface {
  const { name, fail } = ctx;
  const iface = optString(table, "iface", fail, `iface = "eth0"`);
  const addr = optString(table, "addr", fail, `addr = "192.0.2.7"`);
  if (iface !== undefined && addr !== undefined) {
    fail(
      "addr",
      `netIface "${name}" has both "iface" and "addr"; keep one of them`,
    );
  }
  const given = (addr ?? iface)?.trim();
  const key = addr !== undefined ? "addr" : "iface";
  if (given === undefined) {
    return fail(
      "iface",
      `netIface "${name}" needs "iface" (an interface name such as "eth0") or "addr" (an address of this machine)`,
    );
  }
  if (key === "addr" && !isIp(given)) {
    fail(key, `"addr" = "${given}" is not an IPv4 or IPv6 address`);
  }
  try {
    const list = options.interfaces ?? machineInterfaces();
    return new NetIface(name, given, resolveInterface(given, list));
  } catch (e) {
    return fail(
      key,
      `${key} = "${given}": ${e instanceof Error ? e.message : String(e)}`,
    );
  }
}
