/**
 * `mapDB`: a user database written in `managers.toml`.
 *
 * ```toml
 * [mapDB]
 *   name = "map"
 *   [mapDB.userPass]
 *     user0 = "pass0"                     # plain, or a pbkdf2-sha256$... hash
 *   [mapDB.userGroups]                    # the README spells it userGroup
 *     user0 = ["group0"]
 * ```
 *
 * @module
 */
import { BadCredentials, type UserDb, type UserRecord } from "../types.ts";
import type { KindContext, Table } from "../config/kind_context.ts";
import {
  checkPasswordHash,
  isPasswordHash,
  verifyPassword,
} from "./password.ts";
import { optTable, pickKey } from "../config/table_fields.ts";
import { dottedKey } from "../config/toml_file.ts";

/** A `mapDB` user database. */
export class MapDb implements UserDb {
  readonly kind = "mapDB";
  /** In memory: asked at once for restored sessions. */
  readonly refresh = "at-start";

  constructor(
    readonly name: string,
    readonly userPass: Record<string, string>,
    readonly userGroups: Record<string, string[]>,
  ) {}

  async authenticate(user: string, pass: string): Promise<UserRecord> {
    const stored = Object.hasOwn(this.userPass, user)
      ? this.userPass[user]
      : undefined;
    // An unknown user costs the same hash as a wrong password: the time of
    // the answer tells nothing either.
    if (!(await verifyPassword(pass, stored ?? this.#decoy()))) {
      throw new BadCredentials();
    }
    if (stored === undefined) throw new BadCredentials();
    return this.#record(user);
  }

  /**
   * A stored password like the others, checked for users the file lacks:
   * a hash when the file has hashes (the same work), else a plain one.
   */
  #decoy(): string {
    for (const stored of Object.values(this.userPass)) {
      if (isPasswordHash(stored)) return stored;
    }
    return "\u0000 no such user";
  }

  lookup(user: string): Promise<UserRecord | undefined> {
    return Promise.resolve(
      Object.hasOwn(this.userPass, user) ? this.#record(user) : undefined,
    );
  }

  listUsers(): Promise<UserRecord[]> {
    return Promise.resolve(
      Object.keys(this.userPass).map((user) => this.#record(user)),
    );
  }

  #record(user: string): UserRecord {
    const groups = Object.hasOwn(this.userGroups, user)
      ? this.userGroups[user]
      : [];
    return { userName: user, name: user, groups: [...groups] };
  }

  show(): unknown {
    return {
      name: this.name,
      users: Object.keys(this.userPass),
      userGroups: this.userGroups,
    };
  }
}

/** Builds a `mapDB` from its table. */
export function mapDbFromTable(table: Table, ctx: KindContext): MapDb {
  const passes = optTable(table, "userPass", ctx.fail);
  if (!passes) {
    return ctx.fail(
      "userPass",
      `mapDB "${ctx.name}" has no users: add [${ctx.kind}.userPass] with lines like user0 = "pass0"`,
    );
  }
  // The parsed tables are checked in place and kept as they are: copying
  // them cost a tenth of the start at 100,000 users (--cpu-prof).
  for (const user of Object.keys(passes)) {
    const pass = passes[user];
    if (typeof pass !== "string") {
      ctx.fail(
        dottedKey("userPass", user),
        `the password of "${user}" must be a string in quotes`,
      );
    }
    const bad = checkPasswordHash(pass as string);
    if (bad) ctx.fail(dottedKey("userPass", user), bad);
  }
  const userPass = passes as Record<string, string>;
  const groupsKey = pickKey(table, ["userGroups", "userGroup"]) ??
    "userGroups";
  const groupsTable = optTable(table, groupsKey, ctx.fail) ?? {};
  for (const user of Object.keys(groupsTable)) {
    const groups = groupsTable[user];
    if (
      !Array.isArray(groups) || groups.some((g) => typeof g !== "string")
    ) {
      ctx.fail(
        dottedKey(groupsKey, user),
        `the groups of "${user}" must be a list of names like ["group0"]`,
      );
    }
    if (!Object.hasOwn(userPass, user)) {
      ctx.warn(
        dottedKey(groupsKey, user),
        `"${user}" has groups but no password in userPass; they cannot log in`,
      );
    }
  }
  const userGroups = groupsTable as Record<string, string[]>;
  return new MapDb(ctx.name, userPass, userGroups);
}
