/**
 * `rangeIPM`: true when the client's IP address is inside a CIDR range.
 *
 * ```toml
 * [[rangeIPM]]
 *   name = "lan"
 *   cidr = "10.0.0.0/8"     # or "2001:db8::/32"; a bare address is that one address
 * ```
 *
 * IPv4 and IPv6 both work. A client that a dual-stack socket shows as an
 * IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) is in the IPv4 ranges of its
 * IPv4 address. Every range lives in one 128-bit space where IPv4 is
 * `::ffff:0:0/96`, so `::/0` holds every client, IPv4 ones included.
 *
 * @module
 */
import type { EvalContext, Grant, Manager } from "../types.ts";
import {
  type Cidr,
  cidrContains,
  formatCidr,
  parseCidr,
  parseIp,
} from "../values/ip.ts";
import { needString, type Table } from "../config/table_fields.ts";
import type { KindContext } from "../config/kind_context.ts";

/**
 * The client address last parsed, and its bytes: every rangeIPM a request
 * reaches asks about the same address, and a client's next requests too,
 * so it is parsed once rather than once per range.
 */
let lastIp: string | undefined = undefined;
let lastBytes: Uint8Array | undefined = undefined;
const scratch = new Uint8Array(16);

function clientBytes(ip: string): Uint8Array | undefined {
  if (ip !== lastIp) {
    lastBytes = parseIp(ip, scratch);
    lastIp = ip;
  }
  return lastBytes;
}

/** A `rangeIPM` manager. */
export class RangeIpm implements Manager {
  readonly kind = "rangeIPM";

  /** A range named `name` in the rule. */
  constructor(readonly name: string, readonly cidr: Cidr) {}

  /** True when the address (IPv4, IPv6 or IPv4-mapped) is in the range. */
  contains(ip: string): boolean {
    const bytes = clientBytes(ip);
    return bytes !== undefined && cidrContains(this.cidr, bytes);
  }

  evaluate(ctx: EvalContext, _grant: Grant): boolean {
    return this.contains(ctx.facts.clientIp);
  }

  whyFalse(ctx: EvalContext): string {
    return `${this.name}: ${ctx.facts.clientIp} is not in ${
      formatCidr(this.cidr)
    }`;
  }

  explain(ctx: EvalContext, value: boolean): string {
    return value
      ? `${ctx.facts.clientIp} is in ${formatCidr(this.cidr)}`
      : this.whyFalse(ctx);
  }

  show(): unknown {
    return { name: this.name, cidr: formatCidr(this.cidr) };
  }
}

/** Builds a `rangeIPM` from its table; `ctx.fail` throws the error for a key. */
export function rangeIpmFromTable(table: Table, ctx: KindContext): RangeIpm {
  const { name, fail } = ctx;
  const text = needString(table, "cidr", fail, `cidr = "10.0.0.0/8"`);
  const cidr = parseCidr(text);
  if (typeof cidr === "string") return fail("cidr", `cidr = ${cidr}`);
  return new RangeIpm(name, cidr);
}
