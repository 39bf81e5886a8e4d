/**
 * The text of LDAP that `adDB` writes and reads: escaping a value inside a
 * search filter (RFC 4515), the group name of a `memberOf` DN (RFC 4514),
 * and the attribute a user filter compares the user name with. Private to this
 * folder.
 *
 * @module
 */

/**
 * Escapes `value` for use inside a search filter (RFC 4515 §3): `*`, `(`,
 * `)`, `\` and NUL become `\2a`, `\28`, `\29`, `\5c`, `\00`, so user input
 * like `*)(uid=*` is matched literally and cannot change the filter.
 */
export function escapeFilterValue(value: string): string {
  let out = "";
  for (const ch of value) {
    switch (ch) {
      case "*":
        out += "\\2a";
        break;
      case "(":
        out += "\\28";
        break;
      case ")":
        out += "\\29";
        break;
      case "\\":
        out += "\\5c";
        break;
      case "\0":
        out += "\\00";
        break;
      default:
        out += ch;
    }
  }
  return out;
}

/** The filter with every `{user}` replaced by the escaped user name. */
export function fillFilter(template: string, user: string): string {
  return template.replaceAll("{user}", escapeFilterValue(user));
}

/**
 * The attribute that `template` compares with `{user}` (`uid` in
 * `(&(objectClass=inetOrgPerson)(uid={user}))`), or undefined.
 */
export function userAttrOfFilter(template: string): string | undefined {
  return /\(\s*([A-Za-z][A-Za-z0-9-]*)\s*=\s*\{user\}\s*\)/.exec(template)?.[1];
}

/**
 * The value of the first RDN of `dn` when its attribute is `cn`, with
 * RFC 4514 escapes undone: `CN=Domain Users,CN=Users,DC=corp` →
 * `Domain Users`, `cn=R\2cD,ou=groups` → `R,D`. Undefined otherwise.
 */
export function groupNameOfDn(dn: string): string | undefined {
  const m = /^\s*cn\s*=/i.exec(dn);
  if (!m) return undefined;
  const bytes: number[] = [];
  const enc = new TextEncoder();
  let i = m[0].length;
  while (i < dn.length) {
    const ch = dn[i];
    if (ch === "," || ch === "+" || ch === ";") break;
    if (ch === "\\" && i + 1 < dn.length) {
      const hex = dn.slice(i + 1, i + 3);
      if (/^[0-9a-fA-F]{2}$/.test(hex)) {
        bytes.push(parseInt(hex, 16));
        i += 3;
      } else {
        bytes.push(...enc.encode(dn[i + 1]));
        i += 2;
      }
      continue;
    }
    const cp = dn.codePointAt(i)!;
    const s = String.fromCodePoint(cp);
    bytes.push(...enc.encode(s));
    i += s.length;
  }
  const value = new TextDecoder().decode(new Uint8Array(bytes)).trim();
  return value === "" ? undefined : value;
}
