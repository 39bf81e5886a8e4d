/**
 * A small in-test {@link Gateway} with the README's managers (`sessions`,
 * `down`, user database `map`), answering with the original's error bodies.
 * For api/ tests that do not need the real policy.
 *
 * @module
 */
import {
  BadCredentials,
  type Caller,
  CommandError,
  type DiscoverResult,
  type Explanation,
  formatSize,
  type Gateway,
  type LiveFigures,
  type ManagerSummary,
  type UsageReport,
  type UserInfo,
  type UsersPage,
} from "../../managers/mod.ts";

interface Session {
  user: string;
  secret: string;
  expires: number;
}

/** A Gateway over fixed users, for API tests. */
export class FakeGateway implements Gateway {
  users: Record<string, { pass: string; groups: string[] }> = {
    user0: { pass: "pass0", groups: ["group0"] },
    admin: { pass: "admin-pass", groups: ["staff"] },
  };
  admins = ["admin"];
  quotas: Record<string, number> = { group0: 1024 ** 3, staff: 1024 ** 3 };
  consumption: Record<string, number> = {};
  /** Bytes granted per user this cycle (`grant`). */
  grants: Record<string, number> = {};
  /** pmproxy's own UserInfo fields a test wants a user to have. */
  infoExtra: Record<string, Partial<UserInfo>> = {};
  sessions = new Map<string, Session>();
  /** How long a secret is valid. */
  secretMs = 3600_000;
  /** Calls seen, e.g. `"renew sessions"`. */
  calls: string[] = [];
  /** When set, every call throws this (an unexpected error). */
  failWith?: Error;
  /**
   * The share of the quota from which UserInfo says `warning: true` (the
   * quota's `warnAt`); none when unset.
   */
  warnAt?: number;

  #check(): void {
    if (this.failWith) throw this.failWith;
  }

  discover(caller: Caller): DiscoverResult {
    this.#check();
    const logged = this.sessions.has(caller.ip);
    const matchMng: DiscoverResult["matchMng"] = {
      sessions: { match: logged, type: "sessionIPM" },
    };
    if (logged) matchMng.down = { match: true, type: "dwnConsR" };
    return { matchMng, result: logged };
  }

  admin(caller: Caller, what: string): Promise<string> {
    try {
      const me = this.#session("sessions", caller).user;
      if (!this.admins.includes(me)) {
        throw new CommandError({
          message: `${what} is for administrators; ${me} is not one`,
        });
      }
      return Promise.resolve(me);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  explain(): Promise<Explanation> {
    return Promise.reject(
      new CommandError({ message: "explain is not in this test gateway" }),
    );
  }

  kindOf(manager: string): string | undefined {
    return { sessions: "sessionIPM", down: "dwnConsR", map: "mapDB" }[
      manager
    ];
  }

  #session(manager: string, caller: Caller): Session {
    const secret = caller.secret ?? "";
    if (manager !== "sessions") {
      throw new CommandError({ Mng: manager, Cmd: "?" });
    }
    if (secret === "") throw new CommandError({ message: "empty JWT" });
    const session = this.sessions.get(caller.ip);
    const user = /^secret-(\w+)-/.exec(secret)?.[1] ?? "";
    if (!session || session.secret !== secret) {
      throw new CommandError({ Logged: session?.user ?? "", Decrypted: user });
    }
    if (Date.now() > session.expires) {
      throw new CommandError({ message: "expired token" });
    }
    return session;
  }

  open(
    manager: string,
    caller: Caller,
    cred: { user: string; pass: string },
  ): Promise<string> {
    const { user, pass } = cred;
    this.#check();
    this.calls.push(`open ${manager} ${user}`);
    const known = this.users[user];
    if (!known) {
      return Promise.reject(new BadCredentials());
    }
    if (known.pass !== pass) {
      return Promise.reject(
        new BadCredentials(),
      );
    }
    for (const [ip, s] of this.sessions) {
      if (s.user === user) this.sessions.delete(ip);
    }
    const secret = `secret-${user}-${crypto.randomUUID()}`;
    this.sessions.set(caller.ip, {
      user,
      secret,
      expires: Date.now() + this.secretMs,
    });
    return Promise.resolve(secret);
  }

  logout(manager: string, caller: Caller): Promise<void> {
    this.#check();
    this.calls.push(`close ${manager}`);
    this.#session(manager, caller);
    this.sessions.delete(caller.ip);
    return Promise.resolve();
  }

  loggedUsers(
    manager: string,
    caller: Caller,
  ): Promise<Record<string, string>> {
    this.#check();
    const me = this.#session(manager, caller).user;
    if (!this.admins.includes(me)) {
      throw new CommandError({
        message:
          `the list of logged users is for administrators; ${me} is not one`,
      });
    }
    const out: Record<string, string> = {};
    for (const [ip, s] of this.sessions) out[ip] = s.user;
    return Promise.resolve(out);
  }

  renew(manager: string, caller: Caller): Promise<string> {
    this.#check();
    this.calls.push(`renew ${manager}`);
    const session = this.sessions.get(caller.ip);
    if (!session || session.secret !== caller.secret) {
      return Promise.reject(
        new CommandError({ Logged: session?.user ?? "", Decrypted: "" }),
      );
    }
    session.secret = `secret-${session.user}-${crypto.randomUUID()}`;
    session.expires = Date.now() + this.secretMs;
    return Promise.resolve(session.secret);
  }

  check(manager: string, caller: Caller): Promise<string> {
    this.#check();
    return Promise.resolve(this.#session(manager, caller).user);
  }

  #info(user: string): UserInfo {
    const known = this.users[user];
    if (!known) throw new CommandError({ User: user, DB: "map" });
    const granted = this.grants[user] ?? 0;
    const bytesQuota = known.groups.reduce(
      (sum, g) => sum + (this.quotas[g] ?? 0),
      0,
    ) + granted;
    const bytesCons = this.consumption[user] ?? 0;
    return {
      quota: formatSize(bytesQuota),
      groups: known.groups,
      name: user,
      userName: user,
      consumption: formatSize(bytesCons),
      bytesQuota,
      bytesCons,
      isAdmin: this.admins.includes(user),
      ...(granted > 0
        ? { bytesGranted: granted, granted: formatSize(granted) }
        : {}),
      ...(this.warnAt !== undefined
        ? { warning: bytesCons >= this.warnAt * bytesQuota }
        : {}),
      ...this.infoExtra[user],
    };
  }

  userInfo(
    manager: string,
    caller: Caller,
    options: { user?: string } = {},
  ): Promise<UserInfo> {
    const other = options.user;
    this.#check();
    try {
      const me = this.#session("sessions", caller).user;
      if (manager !== "down") {
        throw new CommandError({ Mng: manager, Cmd: "get" });
      }
      if (other !== undefined && !this.admins.includes(me)) {
        throw new CommandError({ User: me });
      }
      return Promise.resolve(this.#info(other ?? me));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * What set and grant check first, as the real gateway does: the caller
   * is an administrator, the manager is the quota "down", the user exists.
   */
  #adminOnDown(
    manager: string,
    caller: Caller,
    cmd: string,
    user: string,
  ): void {
    const me = this.#session("sessions", caller).user;
    if (!this.admins.includes(me)) throw new CommandError({ User: me });
    if (manager !== "down") throw new CommandError({ Mng: manager, Cmd: cmd });
    this.#info(user);
  }

  setConsumption(
    manager: string,
    caller: Caller,
    change: { user: string; bytes: number },
  ): Promise<void> {
    const { user, bytes } = change;
    this.#check();
    try {
      this.#adminOnDown(manager, caller, "set", user);
      this.consumption[user] = bytes;
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  grant(
    manager: string,
    caller: Caller,
    change: { user: string; bytes: number },
  ): Promise<UserInfo> {
    const { user, bytes } = change;
    this.#check();
    try {
      this.#adminOnDown(manager, caller, "grant", user);
      this.calls.push(`grant ${user} ${bytes}`);
      this.grants[user] = (this.grants[user] ?? 0) + bytes;
      return Promise.resolve(this.#info(user));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  portal(): { sessionIPM: string[]; dwnConsR: string[] } {
    return { sessionIPM: ["sessions"], dwnConsR: ["down"] };
  }

  show(manager: string, caller: Caller): Promise<unknown> {
    try {
      return Promise.resolve(this.#show(manager, caller));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  #show(manager: string, caller: Caller): unknown {
    this.#check();
    const me = this.#session("sessions", caller).user;
    if (manager === "map" && !this.admins.includes(me)) {
      throw new CommandError({
        message:
          `show of the user database "map" is for administrators; ${me} is not one`,
      });
    }
    if (manager === "rules") return { rule: "sessions ∧ down" };
    if (manager === "down") {
      return {
        name: "down",
        userDBN: "map",
        resetCycle: "24h0m0s",
        groupQuota: { group0: "1 GB" },
      };
    }
    if (manager === "sessions") return { name: "sessions", auth: "map" };
    return { name: manager };
  }

  // The console's commands are tested against the real gateway
  // (api_real_gateway.ts); this one answers that it has none.

  #none<T>(what: string): Promise<T> {
    return Promise.reject(
      new CommandError({ message: `${what} is not in this test gateway` }),
    );
  }

  usage(): Promise<UsageReport> {
    return this.#none("usage");
  }

  usersTable(): Promise<UsersPage> {
    return this.#none("users");
  }

  endSession(): Promise<{ ip: string }> {
    return this.#none("close of another user's session");
  }

  managers(): Promise<ManagerSummary[]> {
    return this.#none("managers");
  }

  live(): Promise<LiveFigures> {
    return this.#none("live");
  }
}
