/**
 * Reading the fields of one manager's table (`[[rangeIPM]]`, ...) with
 * errors that say which key is wrong and what to write instead. Used by the
 * factory of every kind (`config/kinds.ts`).
 *
 * @module
 */
import { nearestKey } from "./toml_file.ts";

/**
 * Throws a configuration error about `key` (a dotted path inside the
 * manager's table, such as `"cidr"` or `"span.active"`). The caller's loader
 * adds the file and line.
 */
export type Fail = (key: string, problem: string) => never;

/** A TOML table as smol-toml gives it. */
export type Table = Record<string, unknown>;

function typeName(value: unknown): string {
  if (Array.isArray(value)) return "an array";
  if (value instanceof Date) return "a date";
  if (value === null) return "null";
  if (typeof value === "object") return "a table";
  if (typeof value === "bigint") return "a number";
  return `a ${typeof value}`;
}

/** The first of `keys` present in the table (for accepted spellings). */
export function pickKey(table: Table, keys: string[]): string | undefined {
  return keys.find((k) => table[k] !== undefined);
}

/** A required non-empty string. */
export function needString(
  table: Table,
  key: string,
  fail: Fail,
  example: string,
): string {
  const value = table[key];
  if (value === undefined) {
    return fail(key, `"${key}" is missing; add it, for example ${example}`);
  }
  if (typeof value !== "string" || value.trim() === "") {
    return fail(
      key,
      `"${key}" must be a non-empty string, not ${
        typeName(value)
      }; for example ${example}`,
    );
  }
  return value;
}

/** An optional string. */
export function optString(
  table: Table,
  key: string,
  fail: Fail,
  example: string,
): string | undefined {
  if (table[key] === undefined) return undefined;
  return needString(table, key, fail, example);
}

/** An optional boolean (`true`/`false`, not a string). */
export function optBool(
  table: Table,
  key: string,
  fail: Fail,
): boolean | undefined {
  const value = table[key];
  if (value === undefined) return undefined;
  if (typeof value !== "boolean") {
    return fail(
      key,
      `"${key}" must be true or false (without quotes), not ${typeName(value)}`,
    );
  }
  return value;
}

/** An optional whole number >= 0. */
export function optCount(
  table: Table,
  key: string,
  fail: Fail,
): number | undefined {
  const value = table[key];
  if (value === undefined) return undefined;
  const n = typeof value === "bigint" ? Number(value) : value;
  if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) {
    return fail(
      key,
      `"${key}" must be a whole number \u2265 0 (without quotes), not ${
        typeof value === "string" ? `"${value}"` : typeName(value)
      }`,
    );
  }
  return n;
}

/** An optional table. */
export function optTable(
  table: Table,
  key: string,
  fail: Fail,
): Table | undefined {
  const value = table[key];
  if (value === undefined) return undefined;
  if (
    typeof value !== "object" || value === null || Array.isArray(value) ||
    value instanceof Date
  ) {
    return fail(key, `"${key}" must be a table, not ${typeName(value)}`);
  }
  return value as Table;
}

/**
 * Refuses keys of a nested table that are not known, naming the nearest
 * known key (a misspelt key would otherwise be ignored).
 */
export function refuseUnknown(
  table: Table,
  known: string[],
  prefix: string,
  fail: Fail,
): void {
  for (const key of Object.keys(table)) {
    if (known.includes(key)) continue;
    const near = nearestKey(key, known);
    fail(
      `${prefix}${key}`,
      `unknown key "${prefix}${key}"${
        near ? `; did you mean "${prefix}${near}"?` : ""
      } Known keys here: ${known.join(", ")}`,
    );
  }
}

/**
 * Fails at `key` when `name` is not one of the configured user databases
 * `dbs`, listing them (or saying to configure one).
 */
export function needUserDbName(
  key: string,
  name: string,
  dbs: readonly string[],
  fail: Fail,
): void {
  if (dbs.includes(name)) return;
  fail(
    key,
    `"${key}" = "${name}" names no user database; ${
      dbs.length
        ? `the configured ones are: ${dbs.join(", ")}`
        : "configure a [mapDB] or [adDB] first"
    }`,
  );
}
