/**
 * `login.secret`, the file in which the client commands keep a session
 * between runs: which server, which managers, and the secret. Private to
 * `api/`.
 *
 * @module
 */
import { join } from "node:path";
import { ClientError } from "./_client_options.ts";

/** The file `login` writes in the current directory. */
export interface LoginSecret {
  server: string;
  sessionIPM: string;
  dwnConsR: string;
  bwConsR: string;
  secret: string;
}

/** The file's name in the directory it lives in. */
const FILE = "login.secret";

const NOT_LOGGED_IN =
  "not logged in: run `pmproxy login -m sessions https://host:4443 USER PASS` first";

/**
 * The login kept in `cwd`, or undefined when there is none. Throws
 * {@link ClientError} when the file is not one `login` wrote.
 */
export async function readLogin(cwd: string): Promise<LoginSecret | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(join(cwd, FILE));
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
    `${join(cwd, FILE)} is not a login file; remove it and log in again`,
  );
}

/** The login kept in `cwd`; throws {@link ClientError} when there is none. */
export async function needLogin(cwd: string): Promise<LoginSecret> {
  const login = await readLogin(cwd);
  if (!login) throw new ClientError(NOT_LOGGED_IN);
  return login;
}

/** Keeps `login` in `cwd`, readable by its owner only (it holds a secret). */
export async function writeLogin(
  cwd: string,
  login: LoginSecret,
): Promise<void> {
  await Deno.writeTextFile(join(cwd, FILE), JSON.stringify(login), {
    mode: 0o600,
  });
}

/** Removes the login kept in `cwd`. */
export async function removeLogin(cwd: string): Promise<void> {
  await Deno.remove(join(cwd, FILE));
}
