/**
 * The bench's configurations of pmproxy beside the README's: the rule of 50
 * managers of the policy row, and what a decision costs the policy.
 *
 * @module
 */
import { join } from "node:path";
import { openGateway } from "../managers/mod.ts";
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

/**
 * What deciding one request costs the policy, in µs: `managers.toml` text
 * `toml` loaded as `serve` loads it (its `accessLog` line dropped: no log
 * is written here), user0 logged in at 127.0.0.1 when it has sessions,
 * then `decide` and one chunk metered, many times, in this process.
 */
export async function decisionCostUs(toml: string): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "pmproxy-decide-" });
  try {
    const file = join(dir, "managers.toml");
    await Deno.writeTextFile(file, toml.replace(/^accessLog = .*\n/m, ""));
    const gateway = await openGateway(file, {
      state: join(dir, "state.kv"),
      persistIntervalMs: 0,
      syncIntervalMs: 0,
    });
    try {
      if (/\[\[sessionIPM\]\]/.test(toml)) {
        await gateway.open("sessions", { ip: "127.0.0.1" }, {
          user: "user0",
          pass: "pass0",
        });
      }
      const once = () => {
        const d = gateway.decide({
          clientIp: "127.0.0.1",
          time: new Date(),
          method: "GET",
          url: "http://127.0.0.1:8080/1k",
          host: "127.0.0.1",
          port: 8080,
        });
        if (d instanceof Promise || !d.allowed) {
          throw new Error(`the bench's request is not allowed by ${file}`);
        }
        d.meter?.chunk(1200);
      };
      // Warmed up first, as the JIT would be after a while of traffic.
      for (let i = 0; i < 50_000; i++) once();
      const n = 200_000;
      const t0 = performance.now();
      for (let i = 0; i < n; i++) once();
      return (performance.now() - t0) * 1000 / n;
    } finally {
      await gateway.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
