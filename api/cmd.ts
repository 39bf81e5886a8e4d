/**
 * The original's `/api/cmd` protocol as plain functions: a JSON body
 * `{cmd, manager, secret, cred: {user, pass}, info}` becomes one
 * {@link Gateway} call, and its result the answer the original gave
 * (status, body, content type). No HTTP here; `app.ts` wires it.
 *
 * Beyond the original, on a `dwnConsR` (administrators only):
 *
 * - `grant` with `"info": {"userName": "user0", "bytes": 524288000}` (a
 *   whole number of bytes, or a size string such as `"500 MB"`, base
 *   1024): adds that much to the user's quota for the current cycle;
 *   answers the user's info (the `getOther` answer) afterwards.
 *
 * @module
 */
import {
  type Caller,
  CommandError,
  type Gateway,
  parseSize,
  TooManyAttempts,
  type UsageBy,
  type UsersSort,
} from "../managers/mod.ts";
import { usageCsv } from "./_usage.ts";

/** The request body of `POST /api/cmd`. */
export interface CmdBody {
  cmd: string;
  manager: string;
  secret?: string;
  cred?: { user?: string; pass?: string };
  info?: { userName?: string; bytesCons?: number; [key: string]: unknown };
}

/** An answer of `/api/cmd`. */
export interface CmdAnswer {
  status: 200 | 400 | 429 | 500;
  body: string;
  type:
    | "application/json"
    | "text/plain; charset=utf-8"
    | "text/csv; charset=utf-8";
  /** For 429: seconds until the next try (`Retry-After`). */
  retryAfter?: number;
}

const JSON_TYPE = "application/json" as const;
const TEXT_TYPE = "text/plain; charset=utf-8" as const;
const CSV_TYPE = "text/csv; charset=utf-8" as const;

function ok(body: string): CmdAnswer {
  return { status: 200, body, type: TEXT_TYPE };
}

function okJson(value: unknown): CmdAnswer {
  return { status: 200, body: JSON.stringify(value), type: JSON_TYPE };
}

/** A 400 answer with the original's error body (a JSON object + newline). */
export function errorAnswer(body: Record<string, unknown>): CmdAnswer {
  return { status: 400, body: JSON.stringify(body) + "\n", type: JSON_TYPE };
}

function unknownCommand(manager: string, cmd: string): CmdAnswer {
  return errorAnswer({ Mng: manager, Cmd: cmd });
}

/**
 * Checks the shape of a parsed body. Answers the body or a 400 answer
 * saying what is wrong.
 */
export function parseCmdBody(value: unknown): CmdBody | CmdAnswer {
  const bad = (message: string) => errorAnswer({ message });
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return bad(
      `the body must be a JSON object like {"cmd":"discover","manager":"rules"}`,
    );
  }
  const v = value as Record<string, unknown>;
  if (typeof v.cmd !== "string" || typeof v.manager !== "string") {
    return bad(
      `"cmd" and "manager" must be strings, e.g. {"cmd":"discover","manager":"rules"}`,
    );
  }
  if (v.secret !== undefined && typeof v.secret !== "string") {
    return bad(`"secret" must be a string`);
  }
  if (
    v.cred !== undefined && v.cred !== null &&
    (typeof v.cred !== "object" || Array.isArray(v.cred))
  ) {
    return bad(`"cred" must be an object {"user":…,"pass":…}`);
  }
  if (
    v.info !== undefined && v.info !== null &&
    (typeof v.info !== "object" || Array.isArray(v.info))
  ) {
    return bad(`"info" must be an object like {"userName":…}`);
  }
  return {
    cmd: v.cmd,
    manager: v.manager,
    secret: v.secret as string | undefined,
    cred: (v.cred ?? undefined) as CmdBody["cred"],
    info: (v.info ?? undefined) as CmdBody["info"],
  };
}

/** Go's encoding/json sorts map keys; so do we, for identical answers. */
function sortedKeys<T>(record: Record<string, T>): Record<string, T> {
  const out: Record<string, T> = {};
  for (const key of Object.keys(record).sort()) out[key] = record[key];
  return out;
}

function needUserName(body: CmdBody): string | CmdAnswer {
  const name = body.info?.userName;
  if (typeof name !== "string" || name === "") {
    return errorAnswer({
      message: `${body.cmd} needs the user in "info": {"userName":"user0"}`,
    });
  }
  return name;
}

async function sessionCommand(
  gateway: Gateway,
  caller: Caller,
  body: CmdBody,
): Promise<CmdAnswer> {
  const { manager, cmd } = body;
  switch (cmd) {
    case "open": {
      const user = body.cred?.user;
      const pass = body.cred?.pass;
      if (typeof user !== "string" || typeof pass !== "string") {
        return errorAnswer({
          message:
            `open needs the credentials: "cred": {"user":"user0","pass":"…"}`,
        });
      }
      return ok(await gateway.open(manager, caller, { user, pass }));
    }
    case "close": {
      // With a user: an administrator ends that user's session.
      const other = body.info?.userName;
      if (other !== undefined) {
        if (typeof other !== "string" || other === "") {
          return errorAnswer({
            message:
              `close of another user's session needs the user: "info": {"userName":"user0"}`,
          });
        }
        const { ip } = await gateway.endSession(manager, caller, {
          user: other,
        });
        return okJson({ userName: other, ip });
      }
      await gateway.logout(manager, caller);
      return ok("");
    }
    case "get":
      return okJson(
        sortedKeys(await gateway.loggedUsers(manager, caller)),
      );
    case "renew":
      return ok(await gateway.renew(manager, caller));
    case "check":
      return ok(await gateway.check(manager, caller));
    default:
      return unknownCommand(manager, cmd);
  }
}

async function consumptionCommand(
  gateway: Gateway,
  caller: Caller,
  body: CmdBody,
): Promise<CmdAnswer> {
  const { manager, cmd } = body;
  switch (cmd) {
    case "get":
      return okJson(await gateway.userInfo(manager, caller));
    case "getOther": {
      const user = needUserName(body);
      if (typeof user !== "string") return user;
      return okJson(await gateway.userInfo(manager, caller, { user }));
    }
    case "set": {
      const user = needUserName(body);
      if (typeof user !== "string") return user;
      const bytes = body.info?.bytesCons;
      if (
        typeof bytes !== "number" || !Number.isSafeInteger(bytes) || bytes < 0
      ) {
        return errorAnswer({
          message:
            `set needs the consumption in bytes: "info": {"userName":"${user}","bytesCons":0}`,
        });
      }
      await gateway.setConsumption(manager, caller, { user, bytes });
      return ok("");
    }
    case "grant": {
      const user = needUserName(body);
      if (typeof user !== "string") return user;
      const bytes = grantBytes(body.info?.bytes);
      if (typeof bytes === "string") {
        return errorAnswer({
          message:
            `grant needs the bytes to add, more than 0: "info": {"userName":"${user}","bytes":524288000} or "bytes":"500 MB"; ${bytes}`,
        });
      }
      return okJson(await gateway.grant(manager, caller, { user, bytes }));
    }
    case "usage":
      return await usageCommand(gateway, caller, body);
    case "users":
      return await usersCommand(gateway, caller, body);
    default:
      return unknownCommand(manager, cmd);
  }
}

const USAGE_BY: readonly UsageBy[] = ["hour", "day", "month"];
const USERS_SORTS: readonly UsersSort[] = [
  "user",
  "consumption",
  "quota",
  "percent",
  "lastSeen",
];

/**
 * `usage` on a dwnConsR: `info` may hold `userName` (another user's:
 * admins), `all: true` (every user's: admins), `since` and `until` (a
 * time, see UsageQuery), `by` (`hour`, `day`, `month`) and `format:
 * "csv"` (the answer is then a CSV file instead of JSON).
 */
async function usageCommand(
  gateway: Gateway,
  caller: Caller,
  body: CmdBody,
): Promise<CmdAnswer> {
  const info = body.info ?? {};
  const bad = badInfo(
    "usage",
    `{"userName":"user0","since":"2026-05-01","by":"day"}`,
  );
  const text = (key: string): string | undefined | CmdAnswer => {
    const v = info[key];
    if (v === undefined || v === null || v === "") return undefined;
    return typeof v === "string" ? v : bad(`"${key}" must be a string`);
  };
  const user = text("userName");
  const since = text("since");
  const until = text("until");
  const byText = text("by");
  const format = text("format");
  for (const v of [user, since, until, byText, format]) {
    if (typeof v === "object") return v;
  }
  const by = (byText ?? "day") as UsageBy;
  if (!USAGE_BY.includes(by)) {
    return bad(`"by" must be one of ${USAGE_BY.join(", ")}`);
  }
  if (format !== undefined && format !== "csv" && format !== "json") {
    return bad(`"format" must be "csv" or "json"`);
  }
  if (info.all !== undefined && typeof info.all !== "boolean") {
    return bad(`"all" must be true or false`);
  }
  const report = await gateway.usage(body.manager, caller, {
    user: user as string | undefined,
    all: info.all === true,
    since: since as string | undefined,
    until: until as string | undefined,
    by,
  });
  if (format === "csv") {
    return { status: 200, body: usageCsv(report), type: CSV_TYPE };
  }
  return okJson(report);
}

/**
 * The answer to an `info` that `cmd` cannot take: what is wrong, then an
 * `info` it takes.
 */
function badInfo(cmd: string, example: string) {
  return (message: string): CmdAnswer =>
    errorAnswer({ message: `${cmd}: ${message}; e.g. "info": ${example}` });
}

/**
 * `users` on a dwnConsR (admins): one page of the users table; `info` may
 * hold `offset`, `limit`, `sort` (`user`, `consumption`, `quota`,
 * `percent`, `lastSeen`), `order` (`asc`, `desc`) and `filter`.
 */
async function usersCommand(
  gateway: Gateway,
  caller: Caller,
  body: CmdBody,
): Promise<CmdAnswer> {
  const info = body.info ?? {};
  const bad = badInfo(
    "users",
    `{"offset":0,"limit":50,"sort":"consumption","order":"desc","filter":"ana"}`,
  );
  for (const key of ["offset", "limit"]) {
    const v = info[key];
    if (v !== undefined && (!Number.isSafeInteger(v) || (v as number) < 0)) {
      return bad(`"${key}" must be a whole number from 0`);
    }
  }
  const { sort, order, filter } = info;
  if (sort !== undefined && !USERS_SORTS.includes(sort as UsersSort)) {
    return bad(`"sort" must be one of ${USERS_SORTS.join(", ")}`);
  }
  if (order !== undefined && order !== "asc" && order !== "desc") {
    return bad(`"order" must be "asc" or "desc"`);
  }
  if (filter !== undefined && typeof filter !== "string") {
    return bad(`"filter" must be a string`);
  }
  return okJson(
    await gateway.usersTable(body.manager, caller, {
      offset: info.offset as number | undefined,
      limit: info.limit as number | undefined,
      sort: sort as UsersSort | undefined,
      order: order as "asc" | "desc" | undefined,
      filter: filter as string | undefined,
    }),
  );
}

/**
 * The size of a `grant`: a whole number of bytes, or a size string such as
 * `"500 MB"` (base 1024). Answers what is wrong as a string.
 */
function grantBytes(value: unknown): number | string {
  if (value === undefined) return `"bytes" is missing`;
  const bytes = typeof value === "string"
    ? parseSize(value)
    : typeof value === "number" && Number.isSafeInteger(value)
    ? value
    : `"bytes" must be a whole number or a size string`;
  if (typeof bytes === "string") return bytes;
  if (bytes <= 0) return `${JSON.stringify(value)} is not more than 0`;
  return bytes;
}

/**
 * `explain` (administrators): `info` holds `url` and optionally `ip`,
 * `userName` and `at` (an ISO time).
 */
async function explainCommand(
  gateway: Gateway,
  caller: Caller,
  body: CmdBody,
): Promise<CmdAnswer> {
  const info = body.info ?? {};
  const text = (key: string) => {
    const v = info[key];
    return typeof v === "string" && v !== "" ? v : undefined;
  };
  const url = text("url");
  if (url === undefined) {
    return errorAnswer({
      message:
        `explain needs the URL: "info": {"url":"http://example.org/","ip":"10.0.0.5","userName":"user0","at":"2026-12-01T10:00:00Z"}`,
    });
  }
  const atText = text("at");
  const at = atText === undefined ? undefined : new Date(atText);
  if (at && Number.isNaN(at.getTime())) {
    return errorAnswer({ message: `"at" is not a time: ${atText}` });
  }
  return okJson(
    await gateway.explain(caller, {
      url,
      ip: text("ip"),
      user: text("userName"),
      at,
    }),
  );
}

/**
 * Runs one command for the client at `clientIp`. Answers 400 with the
 * original's body for a {@link CommandError}; other errors are the caller's
 * (the app answers 500).
 */
/** What a live reload did, as `pmproxy reload` prints it. */
export interface ReloadReport {
  ok: boolean;
  /** Why nothing was changed, when not ok (`file:line:column: what`). */
  error?: string;
  /** The new configuration's warnings. */
  warnings: string[];
  /** Changes that take effect only after a restart. */
  needsRestart: string[];
}

/** What the commands may use besides the gateway. */
export interface CommandOptions {
  /** Reloads the configuration files (`reload`; none: no such command). */
  reload?: () => Promise<ReloadReport>;
}

export async function runCommand(
  gateway: Gateway,
  clientIp: string,
  body: CmdBody,
  options: CommandOptions = {},
): Promise<CmdAnswer> {
  const { manager, cmd } = body;
  const caller: Caller = { ip: clientIp, secret: body.secret ?? "" };
  try {
    if (cmd === "show") {
      if (manager !== "rules" && gateway.kindOf(manager) === undefined) {
        return unknownCommand(manager, cmd);
      }
      return okJson(await gateway.show(manager, caller));
    }
    if (manager === "rules") {
      if (cmd === "explain") return await explainCommand(gateway, caller, body);
      if (cmd === "reload" && options.reload) {
        await gateway.admin(caller, "reload");
        return okJson(await options.reload());
      }
      // The console's (administrators).
      if (cmd === "managers") return okJson(await gateway.managers(caller));
      if (cmd === "live") return okJson(await gateway.live(caller));
      if (cmd !== "discover") return unknownCommand(manager, cmd);
      const found = gateway.discover(caller);
      return okJson({
        matchMng: sortedKeys(found.matchMng),
        result: found.result ? "true" : "false",
      });
    }
    switch (gateway.kindOf(manager)) {
      case "sessionIPM":
        return await sessionCommand(gateway, caller, body);
      case "dwnConsR":
        return await consumptionCommand(gateway, caller, body);
      default:
        return unknownCommand(manager, cmd);
    }
  } catch (e) {
    if (e instanceof TooManyAttempts) {
      return {
        ...errorAnswer(e.body),
        status: 429,
        retryAfter: e.retryAfterSeconds,
      };
    }
    if (e instanceof CommandError) return errorAnswer(e.body);
    throw e;
  }
}
