/**
 * Temporary configuration directories for end-to-end tests.
 *
 * @module
 */
import { join } from "node:path";
import { loopbackServerToml } from "./pmproxy_process.ts";

/** The original README's managers.toml, word for word (with `rule` and `userGroup`). */
export const README_MANAGERS_TOML = `rule = "sessions ∧ down"

[[sessionIPM]]
	name = "sessions"
	auth = "map"

[[dwnConsR]]
	name = "down"
	userDBN = "map"
	resetCycle = "24h"
	[dwnConsR.groupQuota]
		group0 = "1 GB"

[mapDB]
	name = "map"
	[mapDB.userPass]
		user0 = "pass0"
	[mapDB.userGroup]
		user0 = ["group0"]
`;

/**
 * The README's managers plus an administrator (`admin`/`admin-pass` in the
 * group `staff`, 1 GB), with user0's quota, the reset cycle and the secrets'
 * lifetime to choose (`null`: no `jwtExpiration` line, the gateway's
 * default), another `rule`, more keys for the `[[dwnConsR]]` (`dwnConsR`,
 * lines such as `timezone = "UTC"`) and more managers (`managers`, tables
 * placed before the `[mapDB]`).
 */
export function adminManagersToml(
  options: {
    quota?: string;
    resetCycle?: string;
    jwtExpiration?: string | null;
    rule?: string;
    dwnConsR?: string;
    managers?: string;
  } = {},
): string {
  const jwt = options.jwtExpiration === null
    ? ""
    : `jwtExpiration = "${options.jwtExpiration ?? "1h"}"\n`;
  return `rule = "${options.rule ?? "sessions ∧ down"}"
admins = ["admin"]
${jwt}
[[sessionIPM]]
name = "sessions"
auth = "map"

[[dwnConsR]]
name = "down"
userDBN = "map"
resetCycle = "${options.resetCycle ?? "24h"}"
${options.dwnConsR ? `${options.dwnConsR}\n` : ""}[dwnConsR.groupQuota]
group0 = "${options.quota ?? "1 GB"}"
staff = "1 GB"
${options.managers ? `\n${options.managers}\n` : ""}
[mapDB]
name = "map"
[mapDB.userPass]
user0 = "pass0"
admin = "admin-pass"
[mapDB.userGroups]
user0 = ["group0"]
admin = ["staff"]
`;
}

/** Makes a temp dir with server.toml (loopback, free ports) and managers.toml. */
export async function makeConfigDir(
  managersToml: string,
  server: Parameters<typeof loopbackServerToml>[0] = {},
): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "pmproxy-test-" });
  await Deno.writeTextFile(
    join(dir, "server.toml"),
    loopbackServerToml(server),
  );
  await Deno.writeTextFile(join(dir, "managers.toml"), managersToml);
  return dir;
}
