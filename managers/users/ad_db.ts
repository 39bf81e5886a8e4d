/**
 * `adDB`: a user database over LDAP. Written for Active Directory as the
 * original was, and configurable for other directories (OpenLDAP).
 *
 * ```toml
 * # Active Directory, as the original: bind as user + suff.
 * [adDB]
 *   name = "ad"
 *   addr = "dc.corp.example:389"       # or "ldap://…", "ldaps://…"
 *   suff = "@corp.example"
 *   bdn = "DC=corp,DC=example"
 *   user = "reader@corp.example"       # service account (reads records)
 *   pass = "…"
 *
 * # OpenLDAP: find the user's DN with the service account, bind as it.
 * [adDB]
 *   name = "ldap"
 *   addr = "ldap://ldap.example.org"
 *   bdn = "ou=people,dc=example,dc=org"
 *   user = "cn=reader,dc=example,dc=org"
 *   pass = "…"
 *   bindAs = "dn"                      # "suffix" (default) or "dn"
 *   userFilter = "(&(objectClass=inetOrgPerson)(uid={user}))"
 *   nameAttr = "displayName"           # falls back to cn
 *   tls = "starttls"                   # "none", "ldaps", "starttls"
 *   caFile = "ldap-ca.pem"             # relative to managers.toml
 *   timeout = "5s"
 * ```
 *
 * Groups are the `CN=` of each `memberOf` value. Each call talks to the
 * directory with its own client, within `timeout`, and always unbinds.
 *
 * @module
 */
import { dirname, inDir } from "../config/paths.ts";
import type { Client } from "ldapts";
import { AD_DB_KEYS } from "./ad_db_keys.ts";
import { ldapts, loadLdapts } from "./_ldapts.ts";
import {
  BadCredentials,
  CommandError,
  type UserDb,
  type UserRecord,
} from "../types.ts";
import type { KindContext, Table } from "../config/kind_context.ts";
import { optString, refuseUnknown } from "../config/table_fields.ts";
import { fillFilter, groupNameOfDn, userAttrOfFilter } from "./_ldap_text.ts";
// The connection code (and node:net, node:tls with it) is loaded when a
// directory is first asked, not with the configuration.
import type { DirectoryTarget } from "./_ldap_session.ts";

/** How a user's password is checked. */
export type BindAs = "suffix" | "dn";

/** How the connection is protected. */
export type LdapTls = "none" | "ldaps" | "starttls";

/** The default user filter (Active Directory). */
export const AD_USER_FILTER = "(&(objectClass=user)(sAMAccountName={user}))";

/** The settings of an {@link AdDb}. */
export interface AdDbOptions {
  /** `addr` as written. */
  addr: string;
  /** The URL reached: `ldap://host:port` or `ldaps://host:port`. */
  url: string;
  /** Appended to the user name to bind (`bindAs = "suffix"`). */
  suff: string;
  /** Where users are searched. */
  bdn: string;
  /** The service account, or undefined to search anonymously. */
  user?: string;
  pass?: string;
  /** A search filter where `{user}` stands for the escaped user name. */
  userFilter: string;
  bindAs: BindAs;
  /** The attribute holding the full name (falls back to `cn`). */
  nameAttr: string;
  tls: LdapTls;
  /** `caFile` as written, and its PEM text. */
  caFile?: string;
  ca?: string;
  /** The longest one exchange with the directory may take. */
  timeoutMs: number;
}

/** Bind names that ldapts would take for a SASL mechanism, not a name. */
const SASL_NAMES = ["EXTERNAL", "PLAIN", "DIGEST-MD5", "SCRAM-SHA-1"];
const INVALID_CREDENTIALS = 49;
const NO_SUCH_OBJECT = 32;
const SIZE_LIMIT_EXCEEDED = 4;

type Entry = Record<string, unknown> & { dn: string };

function valuesOf(entry: Entry, attr: string): string[] {
  const key = Object.keys(entry).find((k) =>
    k.toLowerCase() === attr.toLowerCase()
  );
  if (key === undefined) return [];
  const raw = entry[key];
  const list = Array.isArray(raw) ? raw : [raw];
  return list.map((v) =>
    typeof v === "string" ? v : new TextDecoder().decode(v as Uint8Array)
  );
}

/** An `adDB` user database. */
export class AdDb implements UserDb {
  readonly kind = "adDB";
  readonly #o: AdDbOptions;
  readonly #target: DirectoryTarget;
  readonly #userAttr: string | undefined;

  constructor(readonly name: string, options: AdDbOptions) {
    this.#o = options;
    this.#target = {
      url: options.url,
      tls: options.tls,
      ca: options.ca,
      timeoutMs: options.timeoutMs,
    };
    this.#userAttr = userAttrOfFilter(options.userFilter);
  }

  /**
   * Checks the password by binding to the directory and answers the
   * user's record. Throws {@link BadCredentials} for a wrong password or
   * an unknown user (the same answer), or a {@link CommandError} saying
   * the directory cannot be reached or refused the service account.
   */
  authenticate(user: string, pass: string): Promise<UserRecord> {
    if (user === "") return Promise.reject(this.#unknown());
    // An empty password would be an "unauthenticated bind", which many
    // directories (Active Directory among them) answer with success.
    if (pass === "") return Promise.reject(this.#incorrect());
    return this.#talk(async (client) => {
      if (this.#o.bindAs === "dn" || this.#o.user !== undefined) {
        await this.#bindService(client);
        const entry = await this.#find(client, user);
        if (!entry) throw this.#unknown();
        const bindName = this.#o.bindAs === "dn"
          ? entry.dn
          : user + this.#o.suff;
        await this.#bindUser(client, bindName, pass);
        return this.#record(user, entry);
      }
      // Suffix binding without a service account: the user's own bind
      // reads the record.
      await this.#bindUser(client, user + this.#o.suff, pass);
      const entry = await this.#find(client, user);
      if (!entry) throw this.#unknown();
      return this.#record(user, entry);
    });
  }

  /**
   * The user's record read with the service account (anonymously without
   * one); undefined when the directory has no such user. Throws a
   * {@link CommandError} when the directory cannot be reached.
   */
  lookup(user: string): Promise<UserRecord | undefined> {
    if (user === "") return Promise.resolve(undefined);
    return this.#talk(async (client) => {
      await this.#bindService(client);
      const entry = await this.#find(client, user);
      return entry ? this.#record(user, entry) : undefined;
    });
  }

  /**
   * True when a service account (`user`/`pass`) reads the records; without
   * one, `lookup` searches anonymously, which many directories refuse or
   * answer with nothing.
   */
  get hasServiceAccount(): boolean {
    return this.#o.user !== undefined;
  }

  /** Asked in the background, and only with a service account. */
  get refresh(): "in-background" | "never" {
    return this.hasServiceAccount ? "in-background" : "never";
  }

  /**
   * The configuration, without the service account: neither its password
   * nor its name (a directory's credentials are shown to nobody).
   */
  show(): unknown {
    const o = this.#o;
    return {
      name: this.name,
      addr: o.addr,
      url: o.url,
      suff: o.suff,
      bdn: o.bdn,
      serviceAccount: o.user !== undefined,
      userFilter: o.userFilter,
      bindAs: o.bindAs,
      nameAttr: o.nameAttr,
      tls: o.tls,
      caFile: o.caFile ?? "",
      timeout: `${o.timeoutMs / 1000}s`,
    };
  }

  async #talk<T>(steps: (client: Client) => Promise<T>): Promise<T> {
    const { UnreachableError, withDirectory } = await import(
      "./_ldap_session.ts"
    );
    try {
      return await withDirectory(this.#target, steps);
    } catch (e) {
      if (e instanceof CommandError) throw e;
      if (e instanceof UnreachableError) {
        throw new CommandError({
          message: `${e.message}; try again later or tell the administrator`,
        });
      }
      if (e instanceof ldapts().ResultCodeError) {
        throw new CommandError({
          message:
            `the directory at ${this.#o.url} answered: ${e.message}; tell the administrator (adDB "${this.name}")`,
        });
      }
      throw e;
    }
  }

  #unknown(): CommandError {
    return new BadCredentials();
  }

  #incorrect(): CommandError {
    return new BadCredentials();
  }

  async #bindService(client: Client): Promise<void> {
    const { user, pass } = this.#o;
    if (user === undefined) return; // anonymous search
    try {
      await client.bind(user, pass ?? "");
    } catch (e) {
      if (!(e instanceof ldapts().ResultCodeError)) throw e;
      throw new CommandError({
        message:
          `the directory at ${this.#o.url} refused the service account "${user}" of adDB "${this.name}": ${e.message}; check "user" and "pass" in [adDB] (tell the administrator)`,
      });
    }
  }

  async #bindUser(
    client: Client,
    bindName: string,
    pass: string,
  ): Promise<void> {
    if (SASL_NAMES.includes(bindName)) throw this.#unknown();
    try {
      await client.bind(bindName, pass);
    } catch (e) {
      if (!(e instanceof ldapts().ResultCodeError)) throw e;
      if (e.code === INVALID_CREDENTIALS) throw this.#incorrect();
      throw new CommandError({
        message:
          `the directory at ${this.#o.url} refused the login of "${bindName}": ${e.message}; tell the administrator (adDB "${this.name}")`,
      });
    }
  }

  async #find(client: Client, user: string): Promise<Entry | undefined> {
    const attributes = [this.#o.nameAttr, "cn", "memberOf"];
    if (this.#userAttr) attributes.push(this.#userAttr);
    let entries: Entry[];
    try {
      const found = await client.search(this.#o.bdn, {
        scope: "sub",
        filter: fillFilter(this.#o.userFilter, user),
        attributes,
        sizeLimit: 2,
      });
      entries = found.searchEntries as Entry[];
    } catch (e) {
      if (!(e instanceof ldapts().ResultCodeError)) throw e;
      if (e.code === SIZE_LIMIT_EXCEEDED) throw this.#ambiguous(user);
      if (e.code === NO_SUCH_OBJECT) {
        throw new CommandError({
          message:
            `the directory at ${this.#o.url} has no entry "${this.#o.bdn}" to search (bdn of adDB "${this.name}"), or ${
              this.#o.user === undefined
                ? "anonymous searches may not see it: set a service account with user and pass"
                : `the service account "${this.#o.user}" may not read it`
            }; tell the administrator`,
        });
      }
      throw new CommandError({
        message:
          `the directory at ${this.#o.url} refused to search for "${user}": ${e.message}; tell the administrator (adDB "${this.name}")`,
      });
    }
    if (entries.length > 1) throw this.#ambiguous(user);
    return entries[0];
  }

  #ambiguous(user: string): CommandError {
    return new CommandError({
      message:
        `the directory at ${this.#o.url} has more than one entry for "${user}" under "${this.#o.bdn}" with the filter ${this.#o.userFilter}; tell the administrator (adDB "${this.name}")`,
    });
  }

  #record(user: string, entry: Entry): UserRecord {
    // The directory compares names ignoring case; its spelling is the one
    // kept, so that "Alice" and "alice" are one account for quotas.
    const stored = this.#userAttr
      ? valuesOf(entry, this.#userAttr).find((v) =>
        v.toLowerCase() === user.toLowerCase()
      )
      : undefined;
    const name = valuesOf(entry, this.#o.nameAttr)[0] ??
      valuesOf(entry, "cn")[0];
    const groups: string[] = [];
    for (const dn of valuesOf(entry, "memberOf")) {
      const g = groupNameOfDn(dn);
      if (g !== undefined && !groups.includes(g)) groups.push(g);
    }
    const userName = stored ?? user;
    return { userName, name: name || userName, groups };
  }
}

function isLoopback(host: string): boolean {
  return host === "localhost" || /^127\./.test(host) || host === "[::1]" ||
    host === "::1";
}

/** `addr` (`host:port` or a URL) and `tls` → the URL and the protection. */
function parseAddr(
  addr: string,
  tlsWritten: string | undefined,
  ctx: KindContext,
): { url: string; tls: LdapTls; host: string } {
  const example =
    `"ldap.example.org:389", "ldap://ldap.example.org" or "ldaps://ldap.example.org:636"`;
  if (
    tlsWritten !== undefined &&
    !["none", "ldaps", "starttls"].includes(tlsWritten)
  ) {
    ctx.fail(
      "tls",
      `"tls" = "${tlsWritten}" is not one of "none", "ldaps", "starttls"`,
    );
  }
  const hasScheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(addr);
  const scheme = hasScheme
    ? addr.slice(0, addr.indexOf(":")).toLowerCase()
    : tlsWritten === "ldaps"
    ? "ldaps"
    : "ldap";
  if (scheme !== "ldap" && scheme !== "ldaps") {
    ctx.fail(
      "addr",
      `"addr" = "${addr}": the scheme must be ldap:// or ldaps://; write for example ${example}`,
    );
  }
  let parsed: URL;
  try {
    parsed = new URL(hasScheme ? addr : `${scheme}://${addr}`);
  } catch {
    return ctx.fail(
      "addr",
      `"addr" = "${addr}" is not a host:port or an LDAP URL; write for example ${example}`,
    );
  }
  if (parsed.username !== "" || parsed.password !== "") {
    // Not echoed: the address would show the password in the error.
    ctx.fail(
      "addr",
      `"addr" must not hold a user or a password; put the service account in "user" and "pass" and write the address like ${example}`,
    );
  }
  if (
    parsed.hostname === "" || (parsed.pathname !== "" &&
      parsed.pathname !== "/") ||
    parsed.search !== ""
  ) {
    ctx.fail(
      "addr",
      `"addr" = "${addr}" must name only a host and a port (put the base DN in "bdn"); write for example ${example}`,
    );
  }
  const tls: LdapTls = (tlsWritten as LdapTls | undefined) ??
    (scheme === "ldaps" ? "ldaps" : "none");
  if (scheme === "ldaps" && tls !== "ldaps") {
    ctx.fail(
      "tls",
      `"tls" = "${tls}" does not fit "addr" = "${addr}", which is LDAPS; remove "tls" or use an ldap:// address`,
    );
  }
  if (scheme === "ldap" && hasScheme && tls === "ldaps") {
    ctx.fail(
      "tls",
      `"tls" = "ldaps" does not fit "addr" = "${addr}"; write the address as ldaps://…`,
    );
  }
  const port = parsed.port || (scheme === "ldaps" ? "636" : "389");
  return {
    url: `${scheme}://${parsed.hostname}:${port}`,
    tls,
    host: parsed.hostname,
  };
}

/**
 * Builds an `adDB` from its table in `managers.toml`. A missing, misspelt or
 * wrong-typed key is a ConfigError at that key (unknown keys too: a
 * misspelt `tls` or `caFile` must not quietly weaken the connection).
 */
export async function adDbFromTable(
  table: Table,
  ctx: KindContext,
): Promise<AdDb> {
  // The LDAP client is loaded for the first adDB (see _ldapts.ts).
  await loadLdapts();
  refuseUnknown(table, ["name", ...AD_DB_KEYS], "", ctx.fail);
  const str = (key: string, example: string) =>
    optString(table, key, ctx.fail, example);
  const addr = str("addr", `addr = "ldap.example.org:389"`) ??
    ctx.fail(
      "addr",
      `adDB "${ctx.name}" needs "addr", the directory's address: add addr = "ldap.example.org:389" (or an ldap:// or ldaps:// URL)`,
    );
  const bdn = str("bdn", `bdn = "DC=corp,DC=example"`) ??
    ctx.fail(
      "bdn",
      `adDB "${ctx.name}" needs "bdn", the base DN to search users under: add bdn = "DC=corp,DC=example"`,
    );
  const suffValue = table.suff;
  if (suffValue !== undefined && typeof suffValue !== "string") {
    ctx.fail("suff", `"suff" must be a string in quotes like "@corp.example"`);
  }
  const suff = (suffValue as string | undefined) ?? "";
  const user = str("user", `user = "reader@corp.example"`);
  const pass = str("pass", `pass = "…"`);
  if (user !== undefined && pass === undefined) {
    ctx.fail(
      "user",
      `the service account "user" has no "pass"; add pass = "…" (or remove "user" to search anonymously)`,
    );
  }
  if (pass !== undefined && user === undefined) {
    ctx.fail(
      "pass",
      `"pass" is set without "user"; add the service account's name as user = "…"`,
    );
  }
  const bindAs = str("bindAs", `bindAs = "dn"`) ?? "suffix";
  if (bindAs !== "suffix" && bindAs !== "dn") {
    ctx.fail(
      "bindAs",
      `"bindAs" = "${bindAs}" is not "suffix" (bind as the user name + suff, as Active Directory) or "dn" (find the user's DN, bind as it)`,
    );
  }
  const userFilter = str(
    "userFilter",
    `userFilter = "(&(objectClass=inetOrgPerson)(uid={user}))"`,
  ) ?? AD_USER_FILTER;
  if (!userFilter.includes("{user}")) {
    ctx.fail(
      "userFilter",
      `"userFilter" must contain {user} where the user name goes, for example "(&(objectClass=inetOrgPerson)(uid={user}))"`,
    );
  }
  try {
    ldapts().FilterParser.parseString(fillFilter(userFilter, "x"));
  } catch (e) {
    ctx.fail(
      "userFilter",
      `"userFilter" = "${userFilter}" is not an LDAP filter (${
        e instanceof Error ? e.message : e
      }); write it like "(&(objectClass=inetOrgPerson)(uid={user}))"`,
    );
  }
  const nameAttr = str("nameAttr", `nameAttr = "displayName"`) ??
    "displayName";
  if (!/^[A-Za-z][A-Za-z0-9-]*$/.test(nameAttr)) {
    ctx.fail(
      "nameAttr",
      `"nameAttr" = "${nameAttr}" is not an attribute name; write for example "displayName" or "cn"`,
    );
  }
  const tlsWritten = str("tls", `tls = "starttls"`);
  const { url, tls, host } = parseAddr(addr, tlsWritten, ctx);
  const caFile = str("caFile", `caFile = "ldap-ca.pem"`);
  let ca: string | undefined;
  if (caFile !== undefined) {
    if (tls === "none") {
      ctx.warn(
        "caFile",
        `"caFile" is not used: the connection to ${url} is not encrypted (set tls = "starttls" or use ldaps://)`,
      );
    }
    const path = inDir(dirname(ctx.file), caFile);
    try {
      ca = await Deno.readTextFile(path);
    } catch (e) {
      ctx.fail(
        "caFile",
        `cannot read "caFile" ${path}: ${
          e instanceof Error ? e.message : e
        }; write the path of a PEM file with the directory's CA certificate`,
      );
    }
    if (!ca!.includes("-----BEGIN CERTIFICATE-----")) {
      ctx.fail(
        "caFile",
        `"caFile" ${path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`,
      );
    }
  }
  if (tls === "none" && !isLoopback(host)) {
    ctx.warn(
      "addr",
      `passwords go to ${url} unencrypted; set tls = "starttls" or use an ldaps:// address`,
    );
  }
  if (bindAs === "suffix" && suff === "" && table.suff === undefined) {
    ctx.warn(
      "suff",
      `no "suff": users bind with their bare name; Active Directory needs suff = "@corp.example" (or use bindAs = "dn")`,
    );
  }
  const timeoutMs = ctx.duration("timeout", "5s")!;
  if (timeoutMs <= 0) {
    ctx.fail("timeout", `"timeout" must be longer than 0, like "5s"`);
  }
  return new AdDb(ctx.name, {
    addr,
    url,
    suff,
    bdn,
    user,
    pass,
    userFilter,
    bindAs: bindAs as BindAs,
    nameAttr,
    tls,
    caFile,
    ca,
    timeoutMs,
  });
}
