/**
 * The words of a command line: `--name value`, `--name=value`, `--flag`,
 * short forms (`-m MGR`, `-mMGR`, `-h`), `--` before positionals that
 * start with a dash, and every other word a positional. Strict, as
 * node:util's `parseArgs` with `strict: true`: an unknown option, a
 * missing value or a value given to a flag is a {@link CommandLineError}.
 *
 * pmproxy's own rather than node:util's, because loading any `node:`
 * module makes the runtime set up its Node layer, about 4 MiB resident
 * that a gateway otherwise never needs, and `serve` reads its command line
 * at every start.
 *
 * ```ts
 * import { parseCommandLine } from "./command_line.ts";
 * const { values, positionals } = parseCommandLine(
 *   ["serve", "--config-dir", "/etc/pmproxy", "--watch"],
 *   { "config-dir": { type: "string" }, watch: { type: "boolean" } },
 * );
 * // values: { "config-dir": "/etc/pmproxy", watch: true }; positionals: ["serve"]
 * ```
 *
 * @module
 */

/** One option: a string that takes a value, or a flag. */
export interface OptionSpec {
  type: "string" | "boolean";
  /** Its one-letter form (`m` for `-m`). */
  short?: string;
}

/** The values found, by option name; absent when not given. */
export type OptionValues<O extends Record<string, OptionSpec>> = {
  [K in keyof O]?: O[K]["type"] extends "string" ? string : boolean;
};

/** A mistake in the command line (the message says which word). */
export class CommandLineError extends Error {}

/**
 * Reads `args` against `options`. A later value of the same option
 * replaces an earlier one. Throws {@link CommandLineError}.
 */
export function parseCommandLine<O extends Record<string, OptionSpec>>(
  args: string[],
  options: O,
): { values: OptionValues<O>; positionals: string[] } {
  const values: Record<string, string | boolean> = {};
  const positionals: string[] = [];
  const byShort = new Map<string, string>();
  for (const [name, spec] of Object.entries(options)) {
    if (spec.short) byShort.set(spec.short, name);
  }
  const has = (name: string) => Object.hasOwn(options, name);
  for (let i = 0; i < args.length; i++) {
    const word = args[i];
    if (word === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (word.startsWith("--")) {
      const eq = word.indexOf("=");
      const name = word.slice(2, eq < 0 ? undefined : eq);
      if (!has(name)) {
        throw new CommandLineError(
          unknown(word.slice(0, eq < 0 ? undefined : eq)),
        );
      }
      if (options[name].type === "boolean") {
        if (eq >= 0) {
          throw new CommandLineError(`option "--${name}" takes no value`);
        }
        values[name] = true;
      } else if (eq >= 0) {
        values[name] = word.slice(eq + 1);
      } else {
        values[name] = valueAfter(args, i++, `--${name}`);
      }
      continue;
    }
    if (word.startsWith("-") && word.length > 1) {
      // `-hv` (flags together) or `-mMGR` / `-m MGR`.
      for (let j = 1; j < word.length; j++) {
        const name = byShort.get(word[j]);
        if (name === undefined) {
          throw new CommandLineError(unknown(`-${word[j]}`));
        }
        if (options[name].type === "boolean") {
          values[name] = true;
          continue;
        }
        values[name] = j + 1 < word.length
          ? word.slice(j + 1)
          : valueAfter(args, i++, `-${word[j]}`);
        break;
      }
      continue;
    }
    positionals.push(word);
  }
  return { values: values as OptionValues<O>, positionals };
}

function unknown(option: string): string {
  return `unknown option "${option}" (a positional argument that starts with "-" goes after "--")`;
}

/** The word after `args[i]`, the value of `option`. */
function valueAfter(args: string[], i: number, option: string): string {
  const value = args[i + 1];
  if (value === undefined) {
    throw new CommandLineError(`option "${option}" needs a value`);
  }
  if (value.startsWith("-") && value !== "-") {
    throw new CommandLineError(
      `option "${option}" needs a value, not "${value}" (write ${
        option.startsWith("--") ? `${option}=` : option
      }${value} for a value that starts with "-")`,
    );
  }
  return value;
}
