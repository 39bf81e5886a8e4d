/**
 * The fail2ban filter in scripts/fail2ban/pmproxy.conf matches the lines
 * pmproxy writes for failed and throttled logins, and only those, with a
 * real fail2ban-regex (Debian's fail2ban). The lines come from a real
 * gateway refusing logins, not from a copy of the format.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { PolicyDir, README_TOML } from "./helpers/managers_setup.ts";

const FILTER = fileURLToPath(
  new URL("../scripts/fail2ban/pmproxy.conf", import.meta.url),
);

async function installed(): Promise<boolean> {
  try {
    await new Deno.Command("fail2ban-regex", { args: ["--version"] }).output();
    return true;
  } catch {
    return false;
  }
}

Deno.test({
  name:
    "fail2ban: the filter matches every failed and throttled login line, with its address",
  ignore: !(await installed()),
  fn: async () => {
    // Capture what the gateway writes on standard error.
    const lines: string[] = [];
    const warn = console.warn;
    console.warn = (...args: unknown[]) => lines.push(args.join(" "));
    const d = await PolicyDir.make(README_TOML);
    try {
      const g = await d.open();
      for (let i = 0; i < 7; i++) {
        await g.open("sessions", { ip: "10.9.8.7" }, {
          user: i % 2 ? "user0" : `guess${i}`,
          pass: "wrong",
        }).catch(() => {});
      }
      await g.open("sessions", { ip: "10.0.0.5" }, {
        user: "user0",
        pass: "pass0",
      });
    } finally {
      console.warn = warn;
      await d.cleanup();
    }
    const attempts = lines.filter((l) => /login (failed|throttled)/.test(l));
    assert.ok(attempts.length >= 7, lines.join("\n"));
    assert.ok(attempts.some((l) => /throttled/.test(l)), attempts.join("\n"));
    const log = await Deno.makeTempFile({ suffix: ".log" });
    try {
      // As the journal shows them, with a time stamp and the unit's name.
      const text = [
        ...attempts.map((l) => `Dec  1 10:00:00 gw pmproxy[42]: ${l}`),
        "Dec  1 10:00:01 gw pmproxy[42]: pmproxy: proxy listening on 0.0.0.0:8080",
        'Dec  1 10:00:02 gw pmproxy[42]: pmproxy: warning: a user="x" address=10.1.1.1 line',
      ].join("\n") + "\n";
      await Deno.writeTextFile(log, text);
      const out = await new Deno.Command("fail2ban-regex", {
        args: ["--print-all-matched", log, FILTER],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const report = new TextDecoder().decode(out.stdout);
      assert.equal(out.code, 0, report + new TextDecoder().decode(out.stderr));
      const matched =
        /Lines: \d+ lines, \d+ ignored, (\d+) matched, (\d+) missed/
          .exec(report);
      assert.ok(matched, report);
      assert.equal(Number(matched[1]), attempts.length, report);
      assert.equal(Number(matched[2]), 2, report);
      assert.match(report, /10\.9\.8\.7/);
      assert.doesNotMatch(report, /\|\s+10\.1\.1\.1/);
    } finally {
      await Deno.remove(log);
    }
  },
});
