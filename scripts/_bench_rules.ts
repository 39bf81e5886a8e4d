/**
 * The bench's configurations of pmproxy beside the README's: the rule of 50
 * managers of the policy row.
 *
 * @module
 */
import { adminManagersToml } from "../tests/helpers/config_dir.ts";

/**
 * `managers.toml` with a rule of 50 managers of five kinds, all true for
 * the bench's requests (from 127.0.0.1 to 127.0.0.1, logged in as user0),
 * so that every request reaches all of them: `sessions ∧ down ∧ net0 ∧
 * day0 ∧ host0 ∧ group0 ∧ …` (12 each of rangeIPM, timeSpan, hostMatcher
 * and groupIPM), logging to `access.log`.
 */
export function fiftyManagersToml(): string {
  const names: string[] = ["sessions", "down"];
  const tables: string[] = [];
  for (let i = 0; i < 12; i++) {
    names.push(`net${i}`, `day${i}`, `host${i}`, `group${i}`);
    tables.push(
      `[[rangeIPM]]\nname = "net${i}"\ncidr = "127.0.0.0/${8 + i}"\n`,
      `[[timeSpan]]\nname = "day${i}"\nfrom = "00:00"\nto = "24:00"\n`,
      `[[hostMatcher]]\nname = "host${i}"\npattern = '^127\\.0\\.0\\.1$'\n`,
      `[[groupIPM]]\nname = "group${i}"\ngroup = "group0"\nuserDBN = "map"\n`,
    );
  }
  const base = adminManagersToml({ quota: "1000 GB" }).replace(
    /^rule = .*$/m,
    `rule = "${names.join(" ∧ ")}"`,
  );
  return `accessLog = "access.log"\n${base}\n${tables.join("\n")}`;
}
