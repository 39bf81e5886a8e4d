/**
 * The `managers.toml` written when there is none: never an open proxy.
 * Login required, one administrator with a random password (stored
 * hashed), a daily download quota.
 *
 * @module
 */
import { hashPassword } from "../users/password.ts";

const PASSWORD_CHARS =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/**
 * 16 letters and digits (95 bits), drawn evenly. No `-` or `_`: a
 * password that starts with `-` reads as an option on a command line
 * (`pmproxy login ... admin -x...`).
 */
export function randomPassword(): string {
  let out = "";
  while (out.length < 16) {
    for (const b of crypto.getRandomValues(new Uint8Array(16))) {
      // 248 = 4 × 62: the bytes above it would favour the first chars.
      if (b < 248 && out.length < 16) out += PASSWORD_CHARS[b % 62];
    }
  }
  return out;
}

/** The text of the default file for that password hash. */
export function defaultManagersToml(user: string, passHash: string): string {
  return `# pmproxy managers: the rule that allows or forbids each request, and the
# managers it names. Written by pmproxy because there was no managers.toml.
#
# The rule: a request goes through when its client IP has an open session
# (log in at the web page or with \`pmproxy login\`) and it counts against the
# user's download quota. Operators: \u2227 \u2228 ¬ \u21d2 \u21d0 \u2261 \u2262 (or and or not => <= == !=).
rule = "sessions \u2227 down"

# How long a login secret is valid before the client renews it.
jwtExpiration = "24h"

# Users with administrator rights (see others' consumption, reset it).
admins = ["${user}"]

# Sessions: the client IP of a person who logged in through this manager.
[[sessionIPM]]
  name = "sessions"
  auth = "local"

# Download quota: the sum of the quotas of the user's groups, back to zero
# every resetCycle. Sizes are base 1024 ("1 GB" = 1073741824 bytes).
[[dwnConsR]]
  name = "down"
  userDBN = "local"
  resetCycle = "24h"
  [dwnConsR.groupQuota]
    admins = "10 GB"
    users = "1 GB"

# The users. A password is plain text or a pbkdf2-sha256$\u2026 hash; to add a
# user, add a line under userPass and one under userGroups.
[mapDB]
  name = "local"
  [mapDB.userPass]
    ${user} = "${passHash}"
  [mapDB.userGroups]
    ${user} = ["admins"]
`;
}

/**
 * Writes the default `managers.toml` at `path` (failing if it exists) and
 * answers the administrator's user name and password, to be shown once.
 */
export async function writeDefaultManagersFile(
  path: string,
): Promise<{ user: string; password: string }> {
  const user = "admin";
  const password = randomPassword();
  const text = defaultManagersToml(user, await hashPassword(password));
  await Deno.writeTextFile(path, text, { createNew: true, mode: 0o600 });
  return { user, password };
}
