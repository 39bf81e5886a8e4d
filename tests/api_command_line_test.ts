/** The command-line reader, against node:util's strict parseArgs. */
import assert from "node:assert/strict";
import { parseArgs } from "node:util";
import fc from "fast-check";
import { CommandLineError, parseCommandLine } from "../api/command_line.ts";

const OPTIONS = {
  "config-dir": { type: "string" },
  manager: { type: "string", short: "m" },
  watch: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  csv: { type: "boolean", short: "c" },
} as const;

/** What node:util reads, or "error". */
function nodeReads(args: string[]) {
  try {
    const { values, positionals } = parseArgs({
      args,
      options: OPTIONS,
      allowPositionals: true,
      strict: true,
    });
    return { values: { ...values }, positionals };
  } catch {
    return "error";
  }
}

/** What ours reads, or "error" (always a CommandLineError). */
function oursReads(args: string[]) {
  try {
    return parseCommandLine(args, OPTIONS);
  } catch (e) {
    assert(e instanceof CommandLineError, String(e));
    return "error";
  }
}

Deno.test("command line: reads every command line as node:util's strict parseArgs does, and refuses what it refuses", () => {
  const word = fc.constantFrom(
    "serve",
    "/etc/pmproxy",
    "-",
    "--",
    "--config-dir",
    "--config-dir=/x",
    "--config-dir=",
    "--watch",
    "--watch=yes",
    "--help",
    "--nope",
    "-h",
    "-hc",
    "-m",
    "-mdwn",
    "-hm",
    "-hmdwn",
    "-x",
    "-hx",
    "dwn",
  );
  fc.assert(
    fc.property(fc.array(word, { maxLength: 6 }), (args) => {
      const node = nodeReads(args);
      const ours = oursReads(args);
      if (node === "error" || ours === "error") {
        assert.equal(ours, node, args.join(" "));
      } else {
        assert.deepEqual(ours.values, node.values, args.join(" "));
        assert.deepEqual(ours.positionals, node.positionals, args.join(" "));
      }
    }),
    { numRuns: 5000, seed: 14 },
  );
});

Deno.test("command line: its mistakes say which word and how to mend it", () => {
  const message = (args: string[]) => {
    try {
      parseCommandLine(args, OPTIONS);
    } catch (e) {
      return (e as Error).message;
    }
    return "no error";
  };
  assert.match(message(["--nope"]), /unknown option "--nope"/);
  assert.match(message(["-hx"]), /unknown option "-x"/);
  assert.match(
    message(["--config-dir"]),
    /option "--config-dir" needs a value$/,
  );
  assert.match(
    message(["--config-dir", "-h"]),
    /needs a value, not "-h" \(write --config-dir=-h for a value/,
  );
  assert.match(message(["-m", "-x"]), /\(write -m-x for a value/);
  assert.match(message(["--watch=yes"]), /option "--watch" takes no value/);
});
