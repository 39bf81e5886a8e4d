/**
 * `groupIPM`: true when the user of the request (logged in at the client IP,
 * or authenticated by `Proxy-Authorization`) belongs to a group in a user
 * database.
 *
 * ```toml
 * [[groupIPM]]
 *   name = "teachers"
 *   group = "teachers"
 *   userDBN = "ad"
 * ```
 *
 * Nobody logged in: false.
 *
 * @module
 */
import type { EvalContext, Grant, Manager } from "../types.ts";
import {
  needString,
  needUserDbName,
  type Table,
} from "../config/table_fields.ts";
import type { KindContext } from "../config/kind_context.ts";

/** A `groupIPM` manager. */
export class GroupIpm implements Manager {
  readonly kind = "groupIPM";

  /** True for users of `userDBN` in `group`. */
  constructor(
    readonly name: string,
    readonly group: string,
    readonly userDBN: string,
  ) {}

  evaluate(ctx: EvalContext, _grant: Grant): boolean {
    if (ctx.user() === undefined) return false;
    return ctx.groups(this.userDBN).includes(this.group);
  }

  whyFalse(ctx: EvalContext): string {
    const user = ctx.user();
    return user === undefined
      ? `${this.name}: nobody is logged in at ${ctx.facts.clientIp}`
      : `${this.name}: ${user} is not in group "${this.group}"`;
  }

  explain(ctx: EvalContext, value: boolean): string {
    return value
      ? `${ctx.user()} is in group "${this.group}" of ${this.userDBN}`
      : this.whyFalse(ctx);
  }

  show(): unknown {
    return { name: this.name, group: this.group, userDBN: this.userDBN };
  }
}

/**
 * Builds a `groupIPM` from its table; `ctx.fail` throws the error for a key.
 * `userDbs`, when given, are the names of the configured user databases.
 */
export function groupIpmFromTable(table: Table, ctx: KindContext): GroupIpm {
  const fail = ctx.fail;
  const group = needString(table, "group", fail, `group = "staff"`);
  const db = needString(table, "userDBN", fail, `userDBN = "map"`);
  needUserDbName("userDBN", db, ctx.userDbNames, fail);
  return new GroupIpm(ctx.name, group, db);
}
