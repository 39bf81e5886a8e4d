/**
 * What each client command does, one function per command; the table in
 * `client_commands.ts` names them and gives them their usage. Private to
 * `api/`.
 *
 * @module
 */
import {
  type Explanation,
  formatSize,
  parseSize,
  type UsageReport,
  type UserInfo,
} from "../managers/mod.ts";
import { type ApiClient, ApiError } from "./client.ts";
import type { ReloadReport } from "./cmd.ts";
import { usageLines } from "./_usage.ts";
import {
  atMost,
  ClientError,
  type ClientFlags,
  UsageError,
} from "./_client_options.ts";
import {
  type LoginSecret,
  needLogin,
  readLogin,
  removeLogin,
  writeLogin,
} from "./_login_secret.ts";

/** The default server of `discover` when there is no `login.secret`. */
export const DEFAULT_SERVER = "https://localhost:4443";

/** What a command's function is given. */
export interface CommandRun {
  flags: ClientFlags;
  positionals: string[];
  /** The command's usage line, e.g. `pmproxy discover [URL]`. */
  usage: string;
  /** Where `login.secret` lives. */
  cwd: string;
  out: (line: string) => void;
  err: (line: string) => void;
  /**
   * An API client of `server`, with the session of `login` when given
   * (renewed secrets are written back to `login.secret`). Closed when the
   * command ends.
   */
  connect(server: string, login?: LoginSecret): ApiClient;
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

async function askDiscover(client: ApiClient): Promise<Discovered> {
  return parseJson<Discovered>(
    await client.cmd({ cmd: "discover", manager: "rules" }),
    "discover",
  );
}

/** The dwnConsR to ask: `-m MGR`, else the one found at login. */
function quotaManager(flags: ClientFlags, login: LoginSecret): string {
  const manager = flags.m ?? login.dwnConsR;
  if (!manager) {
    throw new ClientError(
      "no download quota manager is known for this login: name one with -m MGR",
    );
  }
  return manager;
}

/** `discover [URL]`: what the rule reaches for this client now. */
export async function runDiscover(c: CommandRun): Promise<void> {
  atMost(c.positionals, 1, c.usage);
  const login = await readLogin(c.cwd);
  const server = c.positionals[0] ?? login?.server ?? DEFAULT_SERVER;
  const found = await askDiscover(c.connect(server));
  c.out(`Match result: ${String(found.result)}`);
  for (const key of Object.keys(found.matchMng).sort()) {
    const m = found.matchMng[key];
    c.out(`[${m.match ? "✅" : "❌"}] ${key}:${m.type}`);
  }
}

/** `login -m SESSIONMGR URL USER PASS`: opens a session, keeps it. */
export async function runLogin(c: CommandRun): Promise<void> {
  const sessionIPM = c.flags.m;
  if (!sessionIPM) {
    throw new UsageError(
      `login needs the session manager: ${c.usage} (e.g. -m sessions)`,
    );
  }
  if (c.positionals.length !== 3) {
    throw new UsageError(`login needs URL, USER and PASS: ${c.usage}`);
  }
  const [url, user, pass] = c.positionals;
  const client = c.connect(url);
  const secret = await client.cmd({
    cmd: "open",
    manager: sessionIPM,
    cred: { user, pass },
  });
  const quota = await loginQuota(client, c.err);
  await writeLogin(c.cwd, {
    server: client.origin,
    sessionIPM,
    dwnConsR: quota,
    bwConsR: "",
    secret,
  });
  c.out(
    `Logged in as ${user} at ${client.origin} through ${sessionIPM}` +
      (quota ? ` (quota: ${quota})` : ""),
  );
}

/**
 * The dwnConsR the rule reaches for a client just logged in, or "" when
 * there is none or discover fails.
 */
async function loginQuota(
  client: ApiClient,
  err: (line: string) => void,
): Promise<string> {
  // The session is open now: whatever discover answers, keep it.
  try {
    const found = await askDiscover(client);
    return Object.keys(found.matchMng).sort().find((k) =>
      found.matchMng[k].type === "dwnConsR"
    ) ?? "";
  } catch (e) {
    err(
      `pmproxy: logged in, but discover failed (${
        e instanceof Error ? e.message : e
      }); status will need -m MGR`,
    );
    return "";
  }
}

/** `logout`: closes the session and removes `login.secret`. */
export async function runLogout(c: CommandRun): Promise<void> {
  atMost(c.positionals, 0, c.usage);
  const login = await needLogin(c.cwd);
  try {
    await c.connect(login.server, login).cmd({
      cmd: "close",
      manager: login.sessionIPM,
    });
  } catch (e) {
    // The session already ended (another login, a restart that lost
    // it): there is nothing to close; the file only misleads now.
    if (!(e instanceof ApiError && e.json && "Logged" in e.json)) throw e;
    await removeLogin(c.cwd);
    c.out(
      `The session had already ended (${e.message}); removed login.secret`,
    );
    return;
  }
  await removeLogin(c.cwd);
  c.out(`Logged out from ${login.server}`);
}

/** `logged-users [-m MGR]`: who is logged in where. */
export async function runLoggedUsers(c: CommandRun): Promise<void> {
  atMost(c.positionals, 0, c.usage);
  const login = await needLogin(c.cwd);
  const manager = c.flags.m ?? login.sessionIPM;
  const users = parseJson<Record<string, string>>(
    await c.connect(login.server, login).cmd({ cmd: "get", manager }),
    "logged-users",
  );
  for (const ip of Object.keys(users).sort()) {
    c.out(`${ip} - ${users[ip]}`);
  }
}

/** `status [-m MGR] [USER]`: quota and consumption. */
export async function runStatus(c: CommandRun): Promise<void> {
  atMost(c.positionals, 1, c.usage);
  const login = await needLogin(c.cwd);
  const manager = quotaManager(c.flags, login);
  const other = c.positionals[0];
  const info = parseJson<UserInfo>(
    await c.connect(login.server, login).cmd(
      other === undefined
        ? { cmd: "get", manager }
        : { cmd: "getOther", manager, info: { userName: other } },
    ),
    "status",
  );
  c.out(`User: ${info.userName}`);
  c.out(`Name: ${info.name}`);
  c.out(`Groups: [${(info.groups ?? []).join(" ")}]`);
  c.out(`Quota: ${quotaText(info)} Consumption: ${formatSize(info.bytesCons)}`);
  for (const line of quotaLines(info, Date.now())) c.out(line);
}

// ------------------------------------------- quotas as sites run them

/** `1 GB`, or `1 GB + 500 MB granted` when the quota holds grants. */
function quotaText(info: UserInfo): string {
  const granted = info.bytesGranted ?? 0;
  if (granted <= 0) return formatSize(info.bytesQuota);
  return `${formatSize(info.bytesQuota - granted)} + ${
    formatSize(granted)
  } granted`;
}

/** Cells of the text bar of `status`. */
const BAR_CELLS = 14;

/**
 * `[########------] 58 %`: the share of the quota used (floored, so 100 %
 * only once it is reached; more past it, the bar full).
 */
export function quotaBar(cons: number, quota: number): string {
  if (quota <= 0) {
    return `[${"#".repeat(BAR_CELLS)}] no quota`;
  }
  const share = cons / quota;
  const cells = Math.min(BAR_CELLS, Math.floor(share * BAR_CELLS));
  const percent = Math.floor(share * 100);
  return `[${"#".repeat(cells)}${"-".repeat(BAR_CELLS - cells)}] ${percent} %`;
}

/** `3 d 4 h`, `2 h 5 min`, `7 min`: how long until `ms` from `now`. */
function untilText(ms: number, now: number): string {
  const minutes = Math.max(0, Math.round((ms - now) / 60_000));
  const d = Math.floor(minutes / 1440);
  const h = Math.floor((minutes % 1440) / 60);
  const m = minutes % 60;
  if (d > 0) return `${d} d ${h} h`;
  if (h > 0) return `${h} h ${m} min`;
  return `${m} min`;
}

/**
 * The lines of `status` after the original's: the bar, the warning, being
 * past the quota, the next reset. A server that sends no such fields (the
 * original) gets the bar only.
 */
function quotaLines(info: UserInfo, now: number): string[] {
  const out = [quotaBar(info.bytesCons, info.bytesQuota)];
  if (info.overQuota === "slowed") {
    out.push(
      `Over quota: slowed to ${
        info.overQuotaRate ?? "a lower rate"
      } until the reset`,
    );
  } else if (info.overQuota === "refused") {
    out.push("Over quota: new requests are refused until the reset");
  } else if (info.warning && info.warnAt !== undefined) {
    out.push(
      `Warning: past ${info.warnAt} % of the quota (${
        formatSize(Math.max(0, info.bytesQuota - info.bytesCons))
      } left)`,
    );
  }
  if (info.nextReset !== undefined) {
    const at = Date.parse(info.nextReset);
    // A client whose clock is ahead of the server's says no "in".
    const until = at > now ? ` (in ${untilText(at, now)})` : "";
    const grants = (info.bytesGranted ?? 0) > 0 ? "; grants end then" : "";
    out.push(`Next reset: ${info.nextReset}${until}${grants}`);
  }
  return out;
}

/** `grant [-m MGR] USER SIZE`: adds SIZE to USER's quota until the reset. */
export async function runGrant(c: CommandRun): Promise<void> {
  if (c.positionals.length !== 2) {
    throw new UsageError(`grant needs USER and SIZE: ${c.usage}`);
  }
  const [user, sizeText] = c.positionals;
  const bytes = parseSize(sizeText);
  if (typeof bytes === "string") throw new UsageError(bytes);
  if (bytes <= 0) {
    throw new UsageError(`grant needs a SIZE more than 0, like "500 MB"`);
  }
  const login = await needLogin(c.cwd);
  const manager = quotaManager(c.flags, login);
  const info = parseJson<UserInfo>(
    await c.connect(login.server, login).cmd({
      cmd: "grant",
      manager,
      info: { userName: user, bytes },
    }),
    "grant",
  );
  c.out(
    `Granted ${
      formatSize(bytes)
    } to ${user} under ${manager} until the next reset${
      info.nextReset ? ` (${info.nextReset})` : ""
    }`,
  );
  c.out(`Quota: ${quotaText(info)} Consumption: ${formatSize(info.bytesCons)}`);
}

/** `reset [-m MGR] USER`: sets USER's consumption to 0. */
export async function runReset(c: CommandRun): Promise<void> {
  if (c.positionals.length !== 1) {
    throw new UsageError(`reset needs one USER: ${c.usage}`);
  }
  const login = await needLogin(c.cwd);
  const manager = quotaManager(c.flags, login);
  const user = c.positionals[0];
  await c.connect(login.server, login).cmd({
    cmd: "set",
    manager,
    info: { userName: user, bytesCons: 0 },
  });
  c.out(`Consumption of ${user} under ${manager} set to 0 B`);
}

/** `show MGR [URL]`: a manager's configuration, pretty printed. */
export async function runShow(c: CommandRun): Promise<void> {
  if (c.positionals.length < 1) {
    throw new UsageError(`show needs a manager name: ${c.usage}`);
  }
  atMost(c.positionals, 2, c.usage);
  const login = await readLogin(c.cwd);
  const server = c.positionals[1] ?? login?.server ?? DEFAULT_SERVER;
  // Shown to logged-in users: with the login of this server when there is
  // one (a user database's configuration needs an administrator's).
  const same = login && (c.positionals[1] === undefined ||
    sameServer(login.server, c.positionals[1]));
  const text = await c.connect(server, same ? login : undefined).cmd({
    cmd: "show",
    manager: c.positionals[0],
  });
  c.out(JSON.stringify(parseJson(text, "show"), null, 2));
}

/**
 * `explain [--ip IP] [--user USER] [--at TIME] URL` (admins): the rule
 * evaluated for those facts without a request, each manager reached with
 * its value and why, and what a request would get.
 */
export async function runExplain(c: CommandRun): Promise<void> {
  if (c.positionals.length !== 1) {
    throw new UsageError(`explain needs one URL: ${c.usage}`);
  }
  let at: string | undefined;
  if (c.flags.at !== undefined) {
    const t = new Date(c.flags.at);
    if (Number.isNaN(t.getTime())) {
      throw new UsageError(
        `--at "${c.flags.at}" is not a time; write it like 2026-12-01T18:30 or 2026-12-01T18:30:00Z`,
      );
    }
    at = t.toISOString();
  }
  const login = await needLogin(c.cwd);
  const text = await c.connect(login.server, login).cmd({
    cmd: "explain",
    manager: "rules",
    info: {
      url: c.positionals[0],
      ...(c.flags.ip !== undefined ? { ip: c.flags.ip } : {}),
      ...(c.flags.user !== undefined ? { userName: c.flags.user } : {}),
      ...(at !== undefined ? { at } : {}),
    },
  });
  const x = parseJson<Explanation>(text, "explain");
  const who = x.facts.user === undefined ? "nobody logged in" : x.facts.user;
  c.out(
    `${x.facts.method} ${
      c.positionals[0]
    } from ${x.facts.ip} (${who}) at ${x.facts.time}`,
  );
  c.out(
    x.allowed ? "Result: allowed" : `Result: refused: ${x.reason ?? ""}`,
  );
  for (const step of x.steps) {
    c.out(`[${step.ok ? "✅" : "❌"}] ${step.name}:${step.kind}  ${step.why}`);
  }
  if (!x.allowed) return;
  const attached = x.resources.map((r) => `${r.name}:${r.kind}`);
  c.out(`Attached: ${attached.length ? attached.join(", ") : "nothing"}`);
  const r = x.route;
  const from = r.localAddress ? `, from ${r.localAddress}` : "";
  c.out(
    r.kind === "parent"
      ? `Route: through ${r.proxyUrl.replace(/\/\/[^@/]*@/, "//")}${from}`
      : `Route: direct${from}`,
  );
}

/** True when two server URLs name the same origin. */
function sameServer(a: string, b: string): boolean {
  try {
    return new URL(a).origin === new URL(b).origin;
  } catch {
    return a === b;
  }
}

/**
 * `reload` (admins): the server reads server.toml and managers.toml again
 * without dropping a connection; a file that does not load changes nothing
 * and its error is printed (exit 1).
 */
export async function runReload(c: CommandRun): Promise<void> {
  atMost(c.positionals, 0, c.usage);
  const login = await needLogin(c.cwd);
  const report = parseJson<ReloadReport>(
    await c.connect(login.server, login).cmd({
      cmd: "reload",
      manager: "rules",
    }),
    "reload",
  );
  if (!report.ok) {
    throw new ClientError(
      `reload refused, the running configuration stays: ${report.error}`,
    );
  }
  c.out("Reloaded.");
  for (const w of report.warnings) c.out(`Warning: ${w}`);
  for (const n of report.needsRestart) c.out(`Needs a restart: ${n}`);
}

/**
 * `usage [-m MGR] [--user U | --all] [--since DATE] [--by hour|day|month]
 * [--csv]`: the usage history, one's own (anyone) or another user's or
 * every user's (admins), as lines or as CSV.
 */
export async function runUsage(c: CommandRun): Promise<void> {
  atMost(c.positionals, 0, c.usage);
  const by = c.flags.by ?? "day";
  if (!["hour", "day", "month"].includes(by)) {
    throw new UsageError(
      `--by "${by}": give hour, day or month; usage: ${c.usage}`,
    );
  }
  if (c.flags.all && c.flags.user !== undefined) {
    throw new UsageError(`give --user or --all, not both: ${c.usage}`);
  }
  const login = await needLogin(c.cwd);
  const manager = quotaManager(c.flags, login);
  const answer = await c.connect(login.server, login).cmd({
    cmd: "usage",
    manager,
    info: {
      by,
      ...(c.flags.user !== undefined ? { userName: c.flags.user } : {}),
      ...(c.flags.all ? { all: true } : {}),
      ...(c.flags.since !== undefined ? { since: c.flags.since } : {}),
      ...(c.flags.csv ? { format: "csv" } : {}),
    },
  });
  if (c.flags.csv) {
    // The server's file, line by line, without its last line break.
    for (const line of answer.replace(/\r?\n$/, "").split(/\r?\n/)) {
      c.out(line);
    }
    return;
  }
  const report = parseJson<UsageReport>(answer, "usage");
  const who = report.user ?? "";
  for (const line of usageLines(report, who)) c.out(line);
}
