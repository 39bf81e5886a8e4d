/**
 * The client commands of the command line, as the original's `pmcl` had
 * them: `discover`, `login`, `logout`, `logged-users`, `status`, `reset`,
 * `show` (and their one-letter aliases). They talk to a server's API with
 * {@link ApiClient} and keep the session in `login.secret` in the current
 * directory.
 *
 * ```ts
 * import { runClientCommand } from "./client_commands.ts";
 * const code = await runClientCommand(["discover", "https://localhost:4443"]);
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { formatSize, type UserInfo } from "../managers/mod.ts";
import { ApiClient, ApiError, TrustError } from "./client.ts";

/** The command names and aliases `runClientCommand` understands. */
export const CLIENT_COMMANDS: readonly string[] = [
  "discover",
  "d",
  "login",
  "l",
  "logout",
  "o",
  "logged-users",
  "lu",
  "status",
  "s",
  "reset",
  "r",
  "show",
  "sh",
];

const ALIASES: Record<string, string> = {
  d: "discover",
  l: "login",
  o: "logout",
  lu: "logged-users",
  s: "status",
  r: "reset",
  sh: "show",
};

/** The default server of `discover` when there is no `login.secret`. */
export const DEFAULT_SERVER = "https://localhost:4443";

/** The file `login` writes in the current directory. */
export interface LoginSecret {
  server: string;
  sessionIPM: string;
  dwnConsR: string;
  bwConsR: string;
  secret: string;
}

/** Options of {@link runClientCommand}. */
export interface ClientCommandOptions {
  /** Where `login.secret` lives (default: the current directory). */
  cwd?: string;
  /** Prints one line of results (default `console.log`). */
  out?: (line: string) => void;
  /** Prints one line of notices and errors (default `console.error`). */
  err?: (line: string) => void;
}

const CLIENT_USAGE = `Client commands (they talk to a pmproxy server's API):
  pmproxy discover|d [URL]          what the rule reaches for you now
  pmproxy login|l -m SESSIONMGR URL USER PASS
                                    log in; writes ./login.secret
  pmproxy logout|o                  log out; removes ./login.secret
  pmproxy logged-users|lu [-m MGR]  who is logged in where
  pmproxy status|s [-m MGR] [USER]  quota and consumption (USER: admins)
  pmproxy reset|r [-m MGR] USER     set USER's consumption to 0 (admins)
  pmproxy show|sh MGR [URL]         a manager's configuration
Options: --known-servers FILE (default $PMPROXY_KNOWN_SERVERS or
  $HOME/.config/pmproxy/known_servers.json), --ca FILE (pin this
  certificate instead of trusting the first one seen).`;

const NOT_LOGGED_IN =
  "not logged in: run `pmproxy login -m sessions https://host:4443 USER PASS` first";

/** A mistake in the command line: print it with the usage, exit 2. */
class UsageError extends Error {}

/** Something the user can fix, printed as is, exit 1. */
class ClientError extends Error {}

async function readLogin(cwd: string): Promise<LoginSecret | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(join(cwd, "login.secret"));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  try {
    const data = JSON.parse(text);
    if (typeof data?.server === "string" && typeof data?.secret === "string") {
      return {
        server: data.server,
        sessionIPM: String(data.sessionIPM ?? ""),
        dwnConsR: String(data.dwnConsR ?? ""),
        bwConsR: String(data.bwConsR ?? ""),
        secret: data.secret,
      };
    }
  } catch {
    // reported below
  }
  throw new ClientError(
    `${
      join(cwd, "login.secret")
    } is not a login file; remove it and log in again`,
  );
}

async function writeLogin(cwd: string, login: LoginSecret): Promise<void> {
  await Deno.writeTextFile(join(cwd, "login.secret"), JSON.stringify(login), {
    mode: 0o600,
  });
}

interface Discovered {
  matchMng: Record<string, { match: boolean; type: string }>;
  result: string | boolean;
}

function parseJson<T>(text: string, what: string): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new ClientError(
      `the server's answer to ${what} is not JSON: ${text}`,
    );
  }
}

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
  const name = ALIASES[args[0]] ?? args[0];
  const clients: ApiClient[] = [];
  try {
    let parsed;
    try {
      parsed = parseArgs({
        args: args.slice(1),
        allowPositionals: true,
        strict: true,
        options: {
          m: { type: "string", short: "m" },
          "known-servers": { type: "string" },
          ca: { type: "string" },
          help: { type: "boolean", short: "h" },
        },
      });
    } catch (e) {
      throw new UsageError(e instanceof Error ? e.message : String(e));
    }
    const { values, positionals } = parsed;
    if (values.help) {
      out(CLIENT_USAGE);
      return 0;
    }
    const connect = (server: string, login?: LoginSecret) => {
      const client = new ApiClient(server, {
        caFile: values.ca,
        knownServersFile: values["known-servers"],
        notice: err,
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
      clients.push(client);
      return client;
    };
    const needLogin = async () => {
      const login = await readLogin(cwd);
      if (!login) throw new ClientError(NOT_LOGGED_IN);
      return login;
    };
    /** The dwnConsR to ask: `-m MGR`, else the one found at login. */
    const quotaManager = (login: LoginSecret) => {
      const manager = values.m ?? login.dwnConsR;
      if (!manager) {
        throw new ClientError(
          "no download quota manager is known for this login: name one with -m MGR",
        );
      }
      return manager;
    };
    const atMost = (n: number, usage: string) => {
      if (positionals.length > n) {
        throw new UsageError(
          `unexpected argument "${positionals[n]}"; usage: ${usage}`,
        );
      }
    };
    const discover = async (client: ApiClient) =>
      parseJson<Discovered>(
        await client.cmd({ cmd: "discover", manager: "rules" }),
        "discover",
      );

    switch (name) {
      case "discover": {
        atMost(1, "pmproxy discover [URL]");
        const login = await readLogin(cwd);
        const server = positionals[0] ?? login?.server ?? DEFAULT_SERVER;
        const found = await discover(connect(server));
        out(`Match result: ${String(found.result)}`);
        for (const key of Object.keys(found.matchMng).sort()) {
          const m = found.matchMng[key];
          out(`[${m.match ? "✅" : "❌"}] ${key}:${m.type}`);
        }
        return 0;
      }
      case "login": {
        const usage = "pmproxy login -m SESSIONMGR URL USER PASS";
        if (!values.m) {
          throw new UsageError(
            `login needs the session manager: ${usage} (e.g. -m sessions)`,
          );
        }
        if (positionals.length !== 3) {
          throw new UsageError(`login needs URL, USER and PASS: ${usage}`);
        }
        const [url, user, pass] = positionals;
        const client = connect(url);
        const secret = await client.cmd({
          cmd: "open",
          manager: values.m,
          cred: { user, pass },
        });
        // The session is open now: whatever discover answers, keep it.
        let quota = "";
        try {
          const found = await discover(client);
          quota = Object.keys(found.matchMng).sort().find((k) =>
            found.matchMng[k].type === "dwnConsR"
          ) ?? "";
        } catch (e) {
          err(
            `pmproxy: logged in, but discover failed (${
              e instanceof Error ? e.message : e
            }); status will need -m MGR`,
          );
        }
        const login: LoginSecret = {
          server: client.origin,
          sessionIPM: values.m,
          dwnConsR: quota,
          bwConsR: "",
          secret,
        };
        await writeLogin(cwd, login);
        out(
          `Logged in as ${user} at ${client.origin} through ${values.m}` +
            (quota ? ` (quota: ${quota})` : ""),
        );
        return 0;
      }
      case "logout": {
        atMost(0, "pmproxy logout");
        const login = await needLogin();
        try {
          await connect(login.server, login).cmd({
            cmd: "close",
            manager: login.sessionIPM,
          });
        } catch (e) {
          // The session already ended (another login, a restart that lost
          // it): there is nothing to close; the file only misleads now.
          if (!(e instanceof ApiError && e.json && "Logged" in e.json)) {
            throw e;
          }
          await Deno.remove(join(cwd, "login.secret"));
          out(
            `The session had already ended (${e.message}); removed login.secret`,
          );
          return 0;
        }
        await Deno.remove(join(cwd, "login.secret"));
        out(`Logged out from ${login.server}`);
        return 0;
      }
      case "logged-users": {
        atMost(0, "pmproxy logged-users [-m MGR]");
        const login = await needLogin();
        const manager = values.m ?? login.sessionIPM;
        const users = parseJson<Record<string, string>>(
          await connect(login.server, login).cmd({ cmd: "get", manager }),
          "logged-users",
        );
        for (const ip of Object.keys(users).sort()) {
          out(`${ip} - ${users[ip]}`);
        }
        return 0;
      }
      case "status": {
        atMost(1, "pmproxy status [-m MGR] [USER]");
        const login = await needLogin();
        const manager = quotaManager(login);
        const other = positionals[0];
        const info = parseJson<UserInfo>(
          await connect(login.server, login).cmd(
            other === undefined
              ? { cmd: "get", manager }
              : { cmd: "getOther", manager, info: { userName: other } },
          ),
          "status",
        );
        out(`User: ${info.userName}`);
        out(`Name: ${info.name}`);
        out(`Groups: [${(info.groups ?? []).join(" ")}]`);
        out(
          `Quota: ${formatSize(info.bytesQuota)} Consumption: ${
            formatSize(info.bytesCons)
          }`,
        );
        return 0;
      }
      case "reset": {
        const usage = "pmproxy reset [-m MGR] USER";
        if (positionals.length !== 1) {
          throw new UsageError(`reset needs one USER: ${usage}`);
        }
        const login = await needLogin();
        const manager = quotaManager(login);
        const user = positionals[0];
        await connect(login.server, login).cmd({
          cmd: "set",
          manager,
          info: { userName: user, bytesCons: 0 },
        });
        out(`Consumption of ${user} under ${manager} set to 0 B`);
        return 0;
      }
      case "show": {
        const usage = "pmproxy show MGR [URL]";
        if (positionals.length < 1) {
          throw new UsageError(`show needs a manager name: ${usage}`);
        }
        atMost(2, usage);
        const login = await readLogin(cwd);
        const server = positionals[1] ?? login?.server ?? DEFAULT_SERVER;
        const text = await connect(server).cmd({
          cmd: "show",
          manager: positionals[0],
        });
        out(JSON.stringify(parseJson(text, "show"), null, 2));
        return 0;
      }
      default:
        throw new UsageError(`unknown client command "${args[0]}"`);
    }
  } catch (e) {
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
    throw e;
  } finally {
    for (const client of clients) client.close();
  }
}
