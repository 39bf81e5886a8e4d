/**
 * The client commands of the command line, as the original's `pmcl` had
 * them: `discover`, `login`, `logout`, `logged-users`, `status`, `reset`,
 * `show` (and their one-letter aliases), and pmproxy's own `explain` and
 * `grant`. They talk to a server's API with
 * {@link ApiClient} and keep the session in `login.secret` in the current
 * directory.
 *
 * Each command is one function, registered in a table with its aliases and
 * its usage line; the flags they share are parsed in `_client_options.ts`,
 * `login.secret` is read and written in `_login_secret.ts`, and the
 * commands' functions are in `_client_command_runs.ts`.
 *
 * ```ts
 * import { runClientCommand } from "./client_commands.ts";
 * const code = await runClientCommand(["discover", "https://localhost:4443"]);
 * ```
 *
 * @module
 */
import { ApiClient, ApiError, TrustError } from "./client.ts";
import {
  ClientError,
  type ClientFlags,
  parseClientArgs,
  UsageError,
} from "./_client_options.ts";
import { type LoginSecret, writeLogin } from "./_login_secret.ts";
import {
  type CommandRun,
  runDiscover,
  runExplain,
  runGrant,
  runLoggedUsers,
  runLogin,
  runLogout,
  runReload,
  runReset,
  runShow,
  runStatus,
  runUsage,
} from "./_client_command_runs.ts";

export type { LoginSecret } from "./_login_secret.ts";
export { DEFAULT_SERVER } from "./_client_command_runs.ts";

/** Options of {@link runClientCommand}. */
export interface ClientCommandOptions {
  /** Where `login.secret` lives (default: the current directory). */
  cwd?: string;
  /** Prints one line of results (default `console.log`). */
  out?: (line: string) => void;
  /** Prints one line of notices and errors (default `console.error`). */
  err?: (line: string) => void;
}

/** A client command: its other names, its usage, and what it does. */
interface ClientCommand {
  aliases: readonly string[];
  /** The arguments after the name, as the usage line shows them. */
  args: string;
  /** What it does, for the usage text. */
  summary: string;
  /** Does it; throws UsageError, ClientError, ApiError or TrustError. */
  run(c: CommandRun): Promise<void>;
}

/** The client commands by name, in the order the usage lists them. */
const COMMANDS: ReadonlyMap<string, ClientCommand> = new Map<
  string,
  ClientCommand
>([
  ["discover", {
    aliases: ["d"],
    args: "[URL]",
    summary: "what the rule reaches for you now",
    run: runDiscover,
  }],
  ["login", {
    aliases: ["l"],
    args: "-m SESSIONMGR URL USER PASS",
    summary: "log in; writes ./login.secret",
    run: runLogin,
  }],
  ["logout", {
    aliases: ["o"],
    args: "",
    summary: "log out; removes ./login.secret",
    run: runLogout,
  }],
  ["logged-users", {
    aliases: ["lu"],
    args: "[-m MGR]",
    summary: "who is logged in where",
    run: runLoggedUsers,
  }],
  ["status", {
    aliases: ["s"],
    args: "[-m MGR] [USER]",
    summary: "quota and consumption (USER: admins)",
    run: runStatus,
  }],
  ["usage", {
    aliases: ["u"],
    args:
      "[-m MGR] [--user USER | --all] [--since DATE] [--by hour|day|month] [--csv]",
    summary: "usage history (another user's or --all: admins)",
    run: runUsage,
  }],
  ["reset", {
    aliases: ["r"],
    args: "[-m MGR] USER",
    summary: "set USER's consumption to 0 (admins)",
    run: runReset,
  }],
  ["grant", {
    aliases: ["g"],
    args: "[-m MGR] USER SIZE",
    summary: "add SIZE to USER's quota until the reset (admins)",
    run: runGrant,
  }],
  ["explain", {
    aliases: ["x"],
    args: "[--ip IP] [--user USER] [--at TIME] URL",
    summary: "why the rule allows or refuses URL (admins)",
    run: runExplain,
  }],
  ["reload", {
    aliases: [],
    args: "",
    summary: "reload the server's configuration files (admins)",
    run: runReload,
  }],
  ["show", {
    aliases: ["sh"],
    args: "MGR [URL]",
    summary: "a manager's configuration",
    run: runShow,
  }],
]);

/** Every name and alias → the command's name. */
const NAME_OF: ReadonlyMap<string, string> = new Map(
  [...COMMANDS].flatMap(([name, command]) =>
    [name, ...command.aliases].map((word) => [word, name] as const)
  ),
);

/** The command names and aliases `runClientCommand` understands. */
export const CLIENT_COMMANDS: readonly string[] = [...NAME_OF.keys()];

/** `pmproxy NAME ARGS`, as a usage error shows it. */
function usageOf(name: string, command: ClientCommand): string {
  return command.args ? `pmproxy ${name} ${command.args}` : `pmproxy ${name}`;
}

/** The column where the usage text's summaries begin. */
const SUMMARY_COLUMN = 36;

/** One command in the usage text: `pmproxy NAME|ALIAS ARGS   summary`. */
function helpLine(name: string, command: ClientCommand): string {
  const words = [name, ...command.aliases].join("|");
  const left = `  pmproxy ${words}${command.args ? ` ${command.args}` : ""}`;
  // At least two spaces before the summary; a longer line puts it below.
  if (left.length + 2 > SUMMARY_COLUMN) {
    return `${left}\n${" ".repeat(SUMMARY_COLUMN)}${command.summary}`;
  }
  return left.padEnd(SUMMARY_COLUMN) + command.summary;
}

const CLIENT_USAGE = [
  "Client commands (they talk to a pmproxy server's API):",
  ...[...COMMANDS].map(([name, command]) => helpLine(name, command)),
  "Options: --known-servers FILE (default $PMPROXY_KNOWN_SERVERS or",
  "  $HOME/.config/pmproxy/known_servers.json), --ca FILE (pin this",
  "  certificate instead of trusting the first one seen).",
].join("\n");

/**
 * Runs one client command (`args[0]` is its name or alias) and answers the
 * exit code: 0 done, 1 refused or unreachable, 2 wrong usage.
 */
export async function runClientCommand(
  args: string[],
  options: ClientCommandOptions = {},
): Promise<number> {
  const out = options.out ?? ((line: string) => console.log(line));
  const err = options.err ?? ((line: string) => console.error(line));
  const cwd = options.cwd ?? Deno.cwd();
  const clients: ApiClient[] = [];
  try {
    // The flags first: `-h` prints the usage whatever the command.
    const { flags, positionals } = parseClientArgs(args.slice(1));
    if (flags.help) {
      out(CLIENT_USAGE);
      return 0;
    }
    const name = NAME_OF.get(args[0]);
    const command = name === undefined ? undefined : COMMANDS.get(name);
    if (name === undefined || command === undefined) {
      throw new UsageError(`unknown client command "${args[0]}"`);
    }
    await command.run({
      flags,
      positionals,
      usage: usageOf(name, command),
      cwd,
      out,
      err,
      connect: (server, login) => {
        const client = openClient(server, { flags, cwd, err, login });
        clients.push(client);
        return client;
      },
    });
    return 0;
  } catch (e) {
    return exitCodeOf(e, err);
  } finally {
    for (const client of clients) client.close();
  }
}

/** Prints an error a person can act on and answers the exit code. */
function exitCodeOf(e: unknown, err: (line: string) => void): number {
  if (e instanceof UsageError) {
    err(`pmproxy: ${e.message}\n\n${CLIENT_USAGE}`);
    return 2;
  }
  if (
    e instanceof ApiError || e instanceof TrustError ||
    e instanceof ClientError
  ) {
    err(`pmproxy: ${e.message}`);
    return 1;
  }
  // A bug, not a refusal: let it show with its stack.
  throw e;
}

/** An API client of `server` with the command line's trust flags. */
function openClient(
  server: string,
  options: {
    flags: ClientFlags;
    cwd: string;
    err: (line: string) => void;
    login?: LoginSecret;
  },
): ApiClient {
  const { flags, cwd, login } = options;
  return new ApiClient(server, {
    caFile: flags.ca,
    knownServersFile: flags.knownServers,
    notice: options.err,
    session: login
      ? {
        sessionIPM: login.sessionIPM,
        secret: login.secret,
        onRenewed: async (secret) => {
          login.secret = secret;
          await writeLogin(cwd, login);
        },
      }
      : undefined,
  });
}
