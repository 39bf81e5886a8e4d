/**
 * scripts/pmproxy.service: systemd's own offline analysis rates its exposure
 * at 2.0 or less, and the confinement keeps what the proxy needs (the
 * configuration directory writable, Internet and local sockets, the port
 * capability, the system calls pmproxy was seen making). The tests that run
 * `systemd-analyze` are skipped, with a message, only when it is not
 * installed (Debian package `systemd`; .ci/run installs it).
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const UNIT = fileURLToPath(
  new URL("../scripts/pmproxy.service", import.meta.url),
);

/** Runs systemd-analyze; undefined when it is not installed. */
async function analyze(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string } | undefined> {
  try {
    const out = await new Deno.Command("systemd-analyze", {
      args,
      stdin: "null",
      env: { SYSTEMD_COLORS: "0", SYSTEMD_PAGER: "" },
    }).output();
    const text = new TextDecoder();
    return {
      code: out.code,
      stdout: text.decode(out.stdout),
      stderr: text.decode(out.stderr),
    };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

const HAVE_ANALYZE = (await analyze(["--version"])) !== undefined;
const SKIPPED = "systemd-analyze is not installed (apt-get install systemd)";
if (!HAVE_ANALYZE) {
  console.warn(`service_unit_test: skipping the analysis: ${SKIPPED}`);
}
/** Appended to the names of the tests that need systemd-analyze. */
const SKIP_NOTE = HAVE_ANALYZE ? "" : ` (skipped: ${SKIPPED})`;

/** The `[Service]` settings of the unit: every value of each key, in order. */
async function serviceSettings(): Promise<Map<string, string[]>> {
  const settings = new Map<string, string[]>();
  let section = "";
  for (const raw of (await Deno.readTextFile(UNIT)).split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = header[1];
      continue;
    }
    if (section !== "Service") continue;
    const eq = line.indexOf("=");
    assert.ok(eq > 0, `not a setting: ${line}`);
    const key = line.slice(0, eq);
    settings.set(key, [...(settings.get(key) ?? []), line.slice(eq + 1)]);
  }
  return settings;
}

function one(settings: Map<string, string[]>, key: string): string {
  const values = settings.get(key);
  assert.ok(values, `${key}= is missing`);
  return values[values.length - 1];
}

/**
 * Every system call pmproxy made under `strace -f` through a first start
 * (default files and certificate written), a login over the API, a
 * forwarded request, a tunnel, a host name resolved, the access log sent to
 * syslog over UDP, a netIface, a SIGTERM stop, and check-config. Left out:
 * fchown, which SQLite (under Deno KV) calls only when it runs as root.
 */
const SYSCALLS_SEEN = `accept4 access arch_prctl bind brk chmod clock_nanosleep
clone3 close connect epoll_create1 epoll_ctl epoll_wait eventfd2 execve exit
exit_group fchmod fcntl fstat fsync ftruncate futex getcwd geteuid getpeername
getpid getppid getrandom getsockname getsockopt gettid ioctl listen lseek lstat
madvise mkdir mmap mprotect mremap munmap newfstatat openat pkey_alloc poll
prctl pread64 prlimit64 pwrite64 read readlink recvfrom recvmsg rseq
rt_sigaction rt_sigprocmask rt_sigreturn sched_getaffinity sched_getparam
sched_getscheduler sched_yield sendmmsg sendto set_robust_list set_tid_address
setsockopt shutdown sigaltstack socket socketpair stat statx sysinfo uname
unlink write`.split(/\s+/);

/** The system calls of a name or `@group`, groups expanded (systemd's lists). */
async function expandSyscalls(
  name: string,
  seen = new Set<string>(),
): Promise<Set<string>> {
  if (!name.startsWith("@")) return new Set([name]);
  if (seen.has(name)) return new Set();
  seen.add(name);
  const out = await analyze(["syscall-filter", name]);
  assert.ok(out && out.code === 0, `syscall-filter ${name}: ${out?.stderr}`);
  const calls = new Set<string>();
  // The first line is the group's name; comments start with "#".
  for (const line of out.stdout.split("\n").slice(1)) {
    const item = line.trim();
    if (item === "" || item.startsWith("#")) continue;
    for (const call of await expandSyscalls(item, seen)) calls.add(call);
  }
  return calls;
}

/**
 * The calls the unit's SystemCallFilter= lines allow, as systemd combines
 * them: the first line without `~` starts an allow list, a `~` line takes
 * its calls out of it, a later plain line adds its calls back.
 */
async function allowedSyscalls(lines: string[]): Promise<Set<string>> {
  const allowed = new Set<string>();
  assert.ok(
    lines.length > 0 && !lines[0].startsWith("~"),
    "the filter starts with an allow list",
  );
  for (const line of lines) {
    const deny = line.startsWith("~");
    for (const item of line.replace(/^~/, "").split(/\s+/).filter(Boolean)) {
      for (const call of await expandSyscalls(item)) {
        if (deny) allowed.delete(call);
        else allowed.add(call);
      }
    }
  }
  return allowed;
}

Deno.test({
  name: `the unit's exposure is 2.0 or less${SKIP_NOTE}`,
  ignore: !HAVE_ANALYZE,
  fn: async () => {
    const out = await analyze([
      "security",
      "--offline=true",
      "--no-pager",
      UNIT,
    ]);
    assert.ok(out);
    const m = /Overall exposure level for \S+: (\d+(?:\.\d+)?)/.exec(
      out.stdout,
    );
    assert.ok(m, `no exposure level in:\n${out.stdout}\n${out.stderr}`);
    const exposure = Number(m[1]);
    assert.ok(
      exposure <= 2.0,
      `exposure ${exposure} is over 2.0:\n${out.stdout}`,
    );
  },
});

Deno.test({
  name:
    `the unit's system-call filter allows the calls pmproxy makes${SKIP_NOTE}`,
  ignore: !HAVE_ANALYZE,
  fn: async () => {
    const settings = await serviceSettings();
    const allowed = await allowedSyscalls(
      settings.get("SystemCallFilter") ?? [],
    );
    const refused = SYSCALLS_SEEN.filter((call) => !allowed.has(call));
    assert.deepEqual(refused, [], "system calls the filter would refuse");
    // And the filter does filter: privileged calls are out.
    for (const call of ["mount", "setuid", "reboot", "init_module", "ptrace"]) {
      assert.ok(!allowed.has(call), `${call} is allowed`);
    }
    // A refused call fails instead of killing the proxy.
    assert.equal(one(settings, "SystemCallErrorNumber"), "EPERM");
  },
});

Deno.test("the unit keeps what the proxy needs", async () => {
  const settings = await serviceSettings();
  // The configuration directory is the state directory: writable on the
  // first start (defaults, certificate) and for state.kv.
  const exec = /^\/usr\/local\/bin\/pmproxy serve --config-dir (\S+)$/.exec(
    one(settings, "ExecStart"),
  );
  assert.ok(exec, `ExecStart: ${one(settings, "ExecStart")}`);
  assert.equal(one(settings, "DynamicUser"), "yes");
  assert.equal(exec[1], `/var/lib/${one(settings, "StateDirectory")}`);
  assert.ok(!settings.has("ReadOnlyPaths"), "nothing more is read-only");

  const families = one(settings, "RestrictAddressFamilies").split(/\s+/);
  for (const family of ["AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"]) {
    assert.ok(families.includes(family), `${family} is allowed`);
  }
  assert.ok(!families.some((f) => f.startsWith("~")), "an allow list");
  assert.ok(!settings.has("IPAddressDeny"), "origins are anywhere");
  assert.notEqual(settings.get("PrivateNetwork")?.[0], "yes");

  assert.equal(one(settings, "CapabilityBoundingSet"), "CAP_NET_BIND_SERVICE");
  assert.equal(one(settings, "AmbientCapabilities"), "CAP_NET_BIND_SERVICE");
  // In a user namespace the capability would not reach the host's ports.
  assert.notEqual(settings.get("PrivateUsers")?.[0], "yes");

  for (
    const [key, value] of [
      ["NoNewPrivileges", "yes"],
      ["ProtectSystem", "strict"],
      ["ProtectHome", "yes"],
      ["PrivateTmp", "yes"],
      ["SystemCallArchitectures", "native"],
    ]
  ) {
    assert.equal(one(settings, key), value, `${key}=`);
  }
  // V8's JIT needs writable-executable memory: Deno aborts under this.
  assert.notEqual(settings.get("MemoryDenyWriteExecute")?.[0], "yes");

  assert.equal(one(settings, "ExecReload"), "/bin/kill -HUP $MAINPID");
  const stop = /^(\d+)s?$/.exec(one(settings, "TimeoutStopSec"));
  assert.ok(stop, `TimeoutStopSec=${one(settings, "TimeoutStopSec")}`);
  assert.ok(Number(stop[1]) > 10, "longer than a graceful stop's 10 s");
});
