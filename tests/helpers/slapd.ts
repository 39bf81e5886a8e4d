/**
 * A real OpenLDAP server for tests: `startSlapd()` writes a private
 * `slapd.conf` and database in a temporary directory, starts `slapd` on a
 * free loopback port (optionally also LDAPS, and StartTLS on the plain
 * port, with a certificate made by the `openssl` command), and answers
 * handles to add users and groups and to stop it.
 *
 * The directory (suffix `dc=example,dc=org`):
 *
 * - `ou=people`: users (`inetOrgPerson`, `uid` = user name, `cn` and
 *   `displayName` = full name, `userPassword`);
 * - `ou=groups`: groups (`groupOfNames` with `member`); the `memberof`
 *   overlay gives each user a `memberOf` per group. Users and groups are
 *   added online with `ldapadd`, since entries loaded offline get no
 *   `memberOf`.
 * - Access: anyone may bind; bound users read everything but passwords;
 *   anonymous users read nothing (so a search needs a service account).
 *
 * ```ts
 * await using ldap = await startSlapd();
 * await ldap.addUser("alice", "pw", "Alice Liddell", ["staff", "wifi"]);
 * // ldap.url = "ldap://127.0.0.1:PORT", ldap.peopleDn, ldap.rootDn, ...
 * ```
 *
 * Needs the Debian packages `slapd` and `ldap-utils`.
 *
 * @module
 */
import { join } from "node:path";
import { accepts, freePort, makeTestCertificates } from "./local_servers.ts";

const SBIN = "/usr/sbin";
const SCHEMA_DIR = "/etc/ldap/schema";
const MODULE_DIR = "/usr/lib/ldap";
const INSTALL_HINT =
  "install them with: apt-get install -y --no-install-recommends slapd ldap-utils " +
  '(preseed "slapd slapd/no_configuration boolean true" with debconf-set-selections first)';

/** Options of {@link startSlapd}. */
export interface SlapdOptions {
  /**
   * Also serve LDAPS on a second port and StartTLS on the plain one, with a
   * certificate for 127.0.0.1 and localhost signed by a test CA
   * (`caFile`). Default false.
   */
  tls?: boolean;
  /**
   * Where `slapd`, `slaptest` and `slapadd` are (default `/usr/sbin`);
   * tests of the "not installed" message point it elsewhere.
   */
  binDir?: string;
}

/** A running slapd. */
export interface Slapd extends AsyncDisposable {
  /** `ldap://127.0.0.1:PORT` (StartTLS available when started with `tls`). */
  url: string;
  /** `ldaps://127.0.0.1:PORT` when started with `tls`. */
  ldapsUrl?: string;
  /** The PEM file of the CA that signed the server certificate (`tls`). */
  caFile?: string;
  /** `dc=example,dc=org`. */
  baseDn: string;
  /** `ou=people,dc=example,dc=org`. */
  peopleDn: string;
  /** `ou=groups,dc=example,dc=org`. */
  groupsDn: string;
  /** The administrator (not subject to access rules). */
  rootDn: string;
  rootPw: string;
  /** The temporary directory holding config, database and certificates. */
  dir: string;
  /**
   * Adds a user `uid=<uid>,ou=people,...` with that password and full name
   * (`cn` and `displayName`), member of `groups` (created when new).
   * Answers the user's DN.
   */
  addUser(
    uid: string,
    pass: string,
    fullName: string,
    groups?: string[],
  ): Promise<string>;
  /** Adds any entries, as LDIF, online as the administrator. */
  ldapAdd(ldif: string): Promise<void>;
  /** What slapd printed so far (the tail), for failure messages. */
  log(): string;
  /** Stops slapd, waits for it, and removes the directory. Idempotent. */
  stop(): Promise<void>;
}

const BASE_DN = "dc=example,dc=org";
const ROOT_DN = `cn=admin,${BASE_DN}`;
const ROOT_PW = "root-secret";

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

async function run(
  cmd: string,
  args: string[],
  stdin?: string,
): Promise<{ code: number; out: string }> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd, {
      args,
      stdin: stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(`"${cmd}" is not installed; ${INSTALL_HINT}`);
    }
    throw e;
  }
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const { code, stdout, stderr } = await child.output();
  const dec = new TextDecoder();
  return { code, out: dec.decode(stdout) + dec.decode(stderr) };
}

async function mustRun(
  cmd: string,
  args: string[],
  stdin?: string,
): Promise<string> {
  const { code, out } = await run(cmd, args, stdin);
  if (code !== 0) {
    throw new Error(
      `${cmd} ${args.join(" ")} exited with ${code}:\n${out}${
        stdin ? `\ninput:\n${stdin}` : ""
      }`,
    );
  }
  return out;
}

function slapdConf(dir: string, tls: boolean): string {
  const schemas = ["core", "cosine", "inetorgperson", "nis"]
    .map((s) => `include ${SCHEMA_DIR}/${s}.schema`).join("\n");
  const tlsLines = tls
    ? `TLSCACertificateFile ${join(dir, "ca.pem")}
TLSCertificateFile ${join(dir, "server.pem")}
TLSCertificateKeyFile ${join(dir, "server.key")}
`
    : "";
  return `${schemas}
modulepath ${MODULE_DIR}
moduleload back_mdb
moduleload memberof
pidfile ${join(dir, "slapd.pid")}
argsfile ${join(dir, "slapd.args")}
${tlsLines}
database mdb
maxsize 16777216
suffix "${BASE_DN}"
rootdn "${ROOT_DN}"
rootpw ${ROOT_PW}
directory ${join(dir, "db")}
access to attrs=userPassword
  by self write
  by anonymous auth
  by * none
access to *
  by users read
  by * none
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint true
`;
}

const BASE_LDIF = `dn: ${BASE_DN}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,${BASE_DN}
objectClass: organizationalUnit
ou: people

dn: ou=groups,${BASE_DN}
objectClass: organizationalUnit
ou: groups
`;

interface Started {
  child: Deno.ChildProcess;
  log: () => string;
  exited: Promise<Deno.CommandStatus>;
}

/** Starts slapd on these URLs and waits (bounded) until `port` accepts. */
async function spawnSlapd(
  slapd: string,
  conf: string,
  urls: string[],
  ports: number[],
): Promise<Started | string> {
  const child = new Deno.Command(slapd, {
    args: ["-f", conf, "-h", urls.join(" "), "-d", "stats"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Keep the tail of slapd's output; draining also keeps it from blocking
  // on a full pipe.
  let tail = "";
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    const dec = new TextDecoder();
    for await (const chunk of stream) {
      tail = (tail + dec.decode(chunk, { stream: true })).slice(-16_000);
    }
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  let done = false;
  const exited = child.status.then(async (s) => {
    done = true;
    await drained;
    return s;
  });
  for (let i = 0; i < 200; i++) {
    if (done) break;
    let all = true;
    for (const port of ports) {
      if (!(await accepts(port))) all = false;
    }
    if (all) return { child, log: () => tail, exited };
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!done) {
    child.kill("SIGKILL");
  }
  await exited;
  return `slapd did not start listening on ${urls.join(" ")}:\n${tail}`;
}

/**
 * Starts a private slapd on free loopback ports. Throws a clear error when
 * `slapd`/`ldap-utils` are not installed. Stop it with `stop()` (or
 * `await using`).
 */
export async function startSlapd(options: SlapdOptions = {}): Promise<Slapd> {
  const bin = options.binDir ?? SBIN;
  const SLAPD = join(bin, "slapd");
  const SLAPTEST = join(bin, "slaptest");
  const SLAPADD = join(bin, "slapadd");
  for (const tool of [SLAPD, SLAPTEST, SLAPADD]) {
    if (!(await exists(tool))) {
      throw new Error(
        `${tool} is missing: the LDAP tests need the OpenLDAP server and tools; ${INSTALL_HINT}`,
      );
    }
  }
  const tls = options.tls === true;
  const dir = await Deno.makeTempDir({ prefix: "pmproxy-slapd-" });
  let started: Started | undefined;
  try {
    await Deno.mkdir(join(dir, "db"));
    const conf = join(dir, "slapd.conf");
    await Deno.writeTextFile(conf, slapdConf(dir, tls));
    if (tls) await makeTestCertificates(dir);
    await mustRun(SLAPTEST, ["-f", conf, "-u"]);
    await Deno.writeTextFile(join(dir, "base.ldif"), BASE_LDIF);
    await mustRun(SLAPADD, ["-f", conf, "-l", join(dir, "base.ldif")]);

    // A free port can be taken between choosing and binding it: retry.
    let url = "";
    let ldapsUrl: string | undefined;
    let lastProblem = "";
    for (let attempt = 0; attempt < 5 && !started; attempt++) {
      const port = freePort();
      const ports = [port];
      url = `ldap://127.0.0.1:${port}`;
      const urls = [`${url}/`];
      if (tls) {
        const sport = freePort();
        ports.push(sport);
        ldapsUrl = `ldaps://127.0.0.1:${sport}`;
        urls.push(`${ldapsUrl}/`);
      }
      const got = await spawnSlapd(SLAPD, conf, urls, ports);
      if (typeof got === "string") lastProblem = got;
      else started = got;
    }
    if (!started) throw new Error(lastProblem);
    const running = started;

    const groups = new Set<string>();
    const peopleDn = `ou=people,${BASE_DN}`;
    const groupsDn = `ou=groups,${BASE_DN}`;
    const admin = ["-x", "-H", url, "-D", ROOT_DN, "-w", ROOT_PW];
    const ldapAdd = async (ldif: string) => {
      await mustRun("ldapadd", admin, ldif);
    };
    let stopped: Promise<void> | undefined;
    const stop = () => {
      stopped ??= (async () => {
        try {
          running.child.kill("SIGTERM");
        } catch { /* already gone */ }
        const timer = setTimeout(() => {
          try {
            running.child.kill("SIGKILL");
          } catch { /* already gone */ }
        }, 5000);
        await running.exited;
        clearTimeout(timer);
        await Deno.remove(dir, { recursive: true });
      })();
      return stopped;
    };
    return {
      url,
      ldapsUrl,
      caFile: tls ? join(dir, "ca.pem") : undefined,
      baseDn: BASE_DN,
      peopleDn,
      groupsDn,
      rootDn: ROOT_DN,
      rootPw: ROOT_PW,
      dir,
      ldapAdd,
      log: running.log,
      async addUser(uid, pass, fullName, memberOf = []) {
        const dn = `uid=${uid},${peopleDn}`;
        await ldapAdd(`dn: ${dn}
objectClass: inetOrgPerson
uid: ${uid}
cn: ${fullName}
sn: ${fullName.split(" ").at(-1) || uid}
displayName: ${fullName}
userPassword: ${pass}
`);
        for (const g of memberOf) {
          const gdn = `cn=${g},${groupsDn}`;
          if (groups.has(g)) {
            await mustRun(
              "ldapmodify",
              admin,
              `dn: ${gdn}\nchangetype: modify\nadd: member\nmember: ${dn}\n`,
            );
          } else {
            await ldapAdd(
              `dn: ${gdn}\nobjectClass: groupOfNames\ncn: ${g}\nmember: ${dn}\n`,
            );
            groups.add(g);
          }
        }
        return dn;
      },
      stop,
      [Symbol.asyncDispose]: stop,
    };
  } catch (e) {
    if (!started) await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw e;
  }
}

/**
 * An `[adDB]` table for `managers.toml` that reaches `ldap` the OpenLDAP
 * way: users by `uid`, bound by DN, the administrator as service account.
 * With `tls` (the slapd started with `tls: true`), over LDAPS or StartTLS
 * trusting the test CA.
 */
export function adDbToml(
  ldap: Slapd,
  name = "ldap",
  options: { tls?: "none" | "ldaps" | "starttls" } = {},
): string {
  const tls = options.tls ?? "none";
  if (tls !== "none" && !ldap.caFile) {
    throw new Error(`adDbToml: tls = "${tls}" needs startSlapd({ tls: true })`);
  }
  const addr = tls === "ldaps" ? ldap.ldapsUrl : ldap.url;
  const lines = [
    `[adDB]`,
    `  name = "${name}"`,
    `  addr = "${addr}"`,
    `  bdn = "${ldap.peopleDn}"`,
    `  user = "${ldap.rootDn}"`,
    `  pass = "${ldap.rootPw}"`,
    `  bindAs = "dn"`,
    `  userFilter = "(&(objectClass=inetOrgPerson)(uid={user}))"`,
  ];
  if (tls === "starttls") lines.push(`  tls = "starttls"`);
  if (tls !== "none") lines.push(`  caFile = "${ldap.caFile}"`);
  return lines.join("\n") + "\n";
}
