/**
 * The command line of the client commands: the flags every command accepts
 * (`-m`, `--ca`, `--known-servers`, `-h`), the checks of their positional
 * arguments, and the two kinds of mistakes they report. Private to `api/`.
 *
 * @module
 */
import { parseCommandLine } from "./command_line.ts";

/** A mistake in the command line: printed with the usage, exit 2. */
export class UsageError extends Error {}

/** Something the user can fix, printed as is, exit 1. */
export class ClientError extends Error {}

/** The flags of a client command line. */
export interface ClientFlags {
  /** `-m MGR`: the manager to ask. */
  m?: string;
  /** `--ca FILE`: pin this certificate. */
  ca?: string;
  /** `--known-servers FILE`: where first-seen certificates are pinned. */
  knownServers?: string;
  /** `-h`, `--help`. */
  help: boolean;
  /** `--ip IP`: the client address a question is about (explain). */
  ip?: string;
  /** `--user USER`: the user a question is about (explain). */
  user?: string;
  /** `--at TIME`: when (explain). */
  at?: string;
  /** `--since DATE`: from when (usage). */
  since?: string;
  /** `--by hour|day|month`: how usage is grouped. */
  by?: string;
  /** `--csv`: usage as CSV. */
  csv: boolean;
  /** `--all`: every user's usage (admins). */
  all: boolean;
}

/** A client command line after its name: flags and positional arguments. */
export interface ClientArgs {
  flags: ClientFlags;
  positionals: string[];
}

/**
 * Parses the arguments after the command's name. Every command accepts
 * every flag (one that does not use it ignores it), as before the commands
 * had their own functions. Throws {@link UsageError}.
 */
export function parseClientArgs(args: string[]): ClientArgs {
  let parsed;
  try {
    parsed = parseCommandLine(args, {
      manager: { type: "string", short: "m" },
      ip: { type: "string" },
      user: { type: "string" },
      at: { type: "string" },
      since: { type: "string" },
      by: { type: "string" },
      csv: { type: "boolean" },
      all: { type: "boolean" },
      "known-servers": { type: "string" },
      ca: { type: "string" },
      help: { type: "boolean", short: "h" },
    });
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
  const { values, positionals } = parsed;
  return {
    flags: {
      m: values.manager,
      ip: values.ip,
      user: values.user,
      at: values.at,
      since: values.since,
      by: values.by,
      csv: values.csv ?? false,
      all: values.all ?? false,
      ca: values.ca,
      knownServers: values["known-servers"],
      help: values.help ?? false,
    },
    positionals,
  };
}

/** Throws {@link UsageError} when there are more than `n` positionals. */
export function atMost(
  positionals: readonly string[],
  n: number,
  usage: string,
): void {
  if (positionals.length > n) {
    throw new UsageError(
      `unexpected argument "${positionals[n]}"; usage: ${usage}`,
    );
  }
}
