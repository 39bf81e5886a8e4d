/**
 * What `pmproxy serve` loads at start: the modules `main.ts` reaches by
 * static imports alone. Each module loaded costs resident memory at start,
 * so what a just-started gateway does not need is imported on first use
 * (`import()` with a static specifier, which keeps it in the graph of
 * `deno compile` and `deno bundle`). This test fails when a static import
 * brings one of them back into the start.
 *
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));

interface InfoModule {
  specifier: string;
  dependencies?: {
    specifier: string;
    isDynamic?: boolean;
    code?: { specifier: string };
  }[];
}

/** The specifiers main.ts reaches through static imports only. */
async function loadedAtStart(): Promise<Set<string>> {
  const out = await new Deno.Command("deno", {
    args: ["info", "--json", "--config", `${ROOT}deno.json`, `${ROOT}main.ts`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(out.success, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    roots: string[];
    modules: InfoModule[];
  };
  const bySpecifier = new Map(info.modules.map((m) => [m.specifier, m]));
  const seen = new Set<string>();
  const stack = [...info.roots];
  while (stack.length > 0) {
    const s = stack.pop()!;
    if (seen.has(s)) continue;
    seen.add(s);
    for (const d of bySpecifier.get(s)?.dependencies ?? []) {
      if (!d.isDynamic && d.code) stack.push(d.code.specifier);
    }
  }
  // Our modules as paths from the root; npm: and node: as deno names them.
  return new Set(
    [...seen].map((s) =>
      s.startsWith("file://") ? fileURLToPath(s).slice(ROOT.length) : s
    ),
  );
}

Deno.test("start: what a just-started gateway does not use is not statically imported", async () => {
  const start = await loadedAtStart();
  assert(start.has("main.ts") && start.has("proxy/listener.ts"));
  const notAtStart = [
    // The API's app (Hono, the pages, their catalogues): the first request.
    "api/app.ts",
    "api/_pages.ts",
    "api/_i18n.ts",
    "web/assets.ts",
    "npm:hono@4.13.19",
    "npm:/hono@4.13.19/deno",
    "npm:/hono@4.13.19/cookie",
    // Session secrets: the first login.
    "npm:/hono@4.13.19/jwt",
    // Proxy credentials' digests: the first ones checked.
    "node:crypto",
    // UDP syslog: when one is opened.
    "node:dgram",
    // V8's collector, for the memory trim: its first trim.
    "node:v8",
    "node:vm",
    // The PAC script (its entries load at start, in api/pac_direct.ts),
    // the console's questions and explain: with the app, or at the first.
    "api/pac.ts",
    "managers/console.ts",
    "managers/explain.ts",
    // The parents' protocols: the first parent dialed.
    "proxy/_parent_http.ts",
    "proxy/_socks5.ts",
    // Syslog with a syslogAddr; the text of /metrics at the first scrape;
    // the usage history at its first write or read; the default
    // managers.toml at a first start.
    "proxy/syslog.ts",
    "api/_metrics_text.ts",
    "managers/state/_kv_usage.ts",
    "managers/config/default_file.ts",
    // Loaded on first use by earlier work.
    "api/_self_signed.ts",
    "api/client_commands.ts",
    "npm:ldapts@9.2.0",
    "managers/users/_ldap_session.ts",
    "npm:@peculiar/x509@2.2.0",
    "npm:@redis/client@6.3.1",
    "managers/state/redis_store.ts",
    "proxy/_node_socket.ts",
    "node:net",
    "node:tls",
  ];
  // Any node: module makes the runtime load more of its Node layer (2-3 MiB
  // resident): paths, the command line and head decoding are our own.
  for (const s of start) {
    assert(!s.startsWith("node:"), `${s} is loaded at start`);
  }
  assert.deepEqual(notAtStart.filter((s) => start.has(s)), []);
  // V8 stores a module's text at two bytes a character when any character
  // is above U+00FF: the modules loaded at start keep to Latin-1, with \u
  // escapes in strings and ASCII in comments (ARCHITECTURE.md).
  const wide: string[] = [];
  for (const s of start) {
    if (/^(npm|node|jsr):/.test(s)) continue;
    const lines = (await Deno.readTextFile(`${ROOT}${s}`)).split("\n");
    lines.forEach((line, i) => {
      const c = [...line].find((ch) => ch.codePointAt(0)! > 0xff);
      if (c) {
        const code = c.codePointAt(0)!.toString(16).toUpperCase();
        wide.push(`${s}:${i + 1}: U+${code.padStart(4, "0")} ${c}`);
      }
    });
  }
  assert.deepEqual(wide, [], "characters above U+00FF at start");
  // Test-only packages are nowhere in the program's graph.
  for (const s of start) {
    assert(!/fast-check|playwright/.test(s), `${s} is loaded at start`);
  }
});
