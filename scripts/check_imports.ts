/**
 * The import check (`deno task checks` runs it): reads the module graph
 * that `deno info --json` reports for the project's entry points, and fails
 * on any import cycle among our modules and on any import that the layout
 * table below ({@link LAYOUT}) forbids. Only our own modules (files under
 * the root) are checked: npm: and node: modules are outside the check.
 *
 * ```sh
 * deno run --allow-read --allow-run scripts/check_imports.ts [--root DIR] [ENTRY...]
 * ```
 *
 * The root defaults to this project. The entry points (paths relative to
 * the root) default to `main.ts` and every `.ts` file under `tests/` and
 * `scripts/`, so that every module the program, the tests or the scripts
 * load is seen.
 *
 * Output. When clean, one line on stdout and exit code 0:
 * `imports: N modules, M edges, ok`. Otherwise exit code 1, and on stderr
 * one line per problem, then `imports: N modules, M edges, K problems`
 * (`1 problem`).
 * A problem line is one of:
 *
 * - `imports: FROM -> TO: RULE`: an import that the layout forbids, with
 *   the rule it breaks;
 * - `imports: cycle: A -> B -> … -> A`: an import cycle, shown from its
 *   first module in sort order. Type-only imports count: a cycle of types
 *   still ties the modules together for whoever reads or moves them;
 * - `imports: FILE: ERROR`: a module that deno cannot read (missing file,
 *   syntax error), so that the check is not silently partial.
 *
 * Paths are relative to the root and separated by `/`.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { isAbsolute, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { isTypeOnlyImport } from "./_import_statements.ts";

/** What one top-level part of the project may import of ours. */
export interface PartRules {
  /** The other parts this part may import any file of (its own files: always). */
  mayImport: readonly string[];
  /** Files this part may import types from, and nothing else. */
  typesOnly?: readonly string[];
  /** Single files of other parts this part may import anything from. */
  files?: readonly string[];
  /** The only files of this part that other parts may import (absent: any file). */
  frontDoors?: readonly string[];
  /** True for tests/ and scripts/: they may pass any front door (they test and measure internals). */
  internals?: boolean;
}

/**
 * The layout's import rules (ARCHITECTURE.md points here). A part is a
 * top-level folder (`rule/`) or file (`main.ts`); a part may always import
 * its own files. Read a row as: "`managers/` may import `rule/` and types
 * from `proxy/policy.ts`; other parts may import only `managers/mod.ts` of
 * it". `files` are single files of another part that this one may import
 * (the proxy's timers, which every part uses). A part missing from the
 * table is reported, so a new top-level
 * folder gets its row here.
 */
// deno-fmt-ignore
export const LAYOUT: Readonly<Record<string, PartRules>> = {
  //            may import (besides its own files)
  "main.ts":   { mayImport: ["rule/", "managers/", "proxy/", "api/", "web/", "scripts/"] },
  "rule/":     { mayImport: [] },
  "managers/": { mayImport: ["rule/"], files: ["proxy/timers.ts"], typesOnly: ["proxy/policy.ts"], frontDoors: ["managers/mod.ts"] },
  "proxy/":    { mayImport: [], frontDoors: ["proxy/mod.ts", "proxy/policy.ts", "proxy/timers.ts"] },
  "api/":      { mayImport: ["managers/", "rule/", "web/"], files: ["proxy/timers.ts"] },
  "web/":      { mayImport: [] },
  "tests/":    { mayImport: ["main.ts", "rule/", "managers/", "proxy/", "api/", "web/", "scripts/"], internals: true },
  "scripts/":  { mayImport: ["main.ts", "rule/", "managers/", "proxy/", "api/", "web/", "tests/"], internals: true },
};

/** One import between two of our modules (all the statements of `from` that reach `to`). */
export interface Edge {
  /** The importing module, relative to the root. */
  from: string;
  /** The imported module, relative to the root. */
  to: string;
  /** True when every statement of `from` that reaches `to` imports types only. */
  typeOnly: boolean;
}

/** What the check found: the graph's size and the problems, one report line each. */
export interface ImportReport {
  /** Our modules in the graph. */
  modules: number;
  /** Distinct imports between our modules. */
  edges: number;
  /** Problem lines in the documented format, sorted; empty when clean. */
  problems: string[];
}

/** Options of {@link checkImports}. */
export interface CheckOptions {
  /** Entry points relative to the root; default: main.ts and every .ts under tests/ and scripts/. */
  entries?: string[];
}

/**
 * Checks the imports of the project at `root`; answers the report (it
 * neither prints nor exits, see {@link reportLines}).
 *
 * @example
 * ```ts
 * const report = await checkImports(".");
 * for (const line of reportLines(report)) console.log(line);
 * ```
 */
export async function checkImports(
  root: string,
  options: CheckOptions = {},
): Promise<ImportReport> {
  const base = resolve(root);
  const entries = options.entries ?? await defaultEntries(base);
  const graph = await moduleGraph(base, entries);
  const problems = [
    ...graph.unreadable.map(([file, error]) => `imports: ${file}: ${error}`),
    ...importCycles(graph.modules, graph.edges).map((cycle) =>
      `imports: cycle: ${cycle.join(" -> ")}`
    ),
    ...graph.edges.flatMap((edge) =>
      layoutProblems(edge).map((rule) =>
        `imports: ${edge.from} -> ${edge.to}: ${rule}`
      )
    ),
  ];
  return {
    modules: graph.modules.length,
    edges: graph.edges.length,
    problems: problems.sort(),
  };
}

/** The report as printed: the problem lines and the summary line last. */
export function reportLines(report: ImportReport): string[] {
  const size = `imports: ${report.modules} modules, ${report.edges} edges`;
  if (report.problems.length === 0) return [`${size}, ok`];
  const n = report.problems.length;
  return [...report.problems, `${size}, ${n} problem${n === 1 ? "" : "s"}`];
}

// ---------------------------------------------------------------------------
// The layout rules applied to one edge

/** The part a path belongs to: its top-level folder (`rule/`) or file (`main.ts`). */
function partOf(path: string): string {
  const slash = path.indexOf("/");
  return slash < 0 ? path : path.slice(0, slash + 1);
}

/** `a`, `a and b`, `a, b and c`. */
function listed(items: readonly string[]): string {
  if (items.length <= 1) return items.join("");
  return `${items.slice(0, -1).join(", ")} and ${items.at(-1)}`;
}

/** The rules of LAYOUT that `edge` breaks (usually none, at most two). */
function layoutProblems(edge: Edge): string[] {
  const from = partOf(edge.from);
  const to = partOf(edge.to);
  if (from === to) return [];
  const unknown = [from, to].filter((part) => !(part in LAYOUT));
  if (unknown.length > 0) {
    return unknown.map((part) =>
      `${part} is not in the layout table (LAYOUT in scripts/check_imports.ts)`
    );
  }
  const rules = LAYOUT[from];
  const problems: string[] = [];
  if (rules.typesOnly?.includes(edge.to)) {
    if (!edge.typeOnly) {
      problems.push(
        `${from} may import only types from ${edge.to} (write import type)`,
      );
    }
  } else if (
    !rules.mayImport.includes(to) && !rules.files?.includes(edge.to)
  ) {
    const allowed = [
      ...rules.mayImport,
      ...(rules.files ?? []),
      ...(rules.typesOnly ?? []).map((file) => `types from ${file}`),
    ];
    problems.push(
      allowed.length === 0
        ? `${from} may import nothing of ours outside ${from}`
        : `${from} may import only ${listed(allowed)} (besides its own files)`,
    );
  }
  const doors = LAYOUT[to].frontDoors;
  if (doors && !rules.internals && !doors.includes(edge.to)) {
    problems.push(
      `outside ${to}, import only ${
        doors.join(" or ")
      } (tests/ and scripts/ excepted)`,
    );
  }
  return problems;
}

// ---------------------------------------------------------------------------
// Cycles

/**
 * Every import cycle, once each: for every edge that lies on a cycle (both
 * ends in one strongly connected component), the shortest cycle through
 * it. Listing one cycle per component would hide the others until the
 * first is fixed; this names every edge that takes part in a cycle.
 */
function importCycles(modules: string[], edges: Edge[]): string[][] {
  const next = new Map<string, string[]>(modules.map((m) => [m, []]));
  for (const edge of edges) next.get(edge.from)!.push(edge.to);
  for (const targets of next.values()) targets.sort();
  const component = stronglyConnected(modules, next);
  const cycles = new Map<string, string[]>();
  for (const edge of edges) {
    const c = component.get(edge.from);
    if (c !== component.get(edge.to)) continue;
    const back = shortestPath(
      edge.to,
      edge.from,
      (m) => next.get(m)!.filter((n) => component.get(n) === c),
    );
    const ring = [edge.from, ...back.slice(0, -1)];
    // Start the cycle at its smallest module, so each is listed once.
    const first = ring.indexOf([...ring].sort()[0]);
    const rotated = [...ring.slice(first), ...ring.slice(0, first)];
    cycles.set(rotated.join(" "), [...rotated, rotated[0]]);
  }
  return [...cycles.values()];
}

/** Tarjan's algorithm: the component number of every module. */
function stronglyConnected(
  modules: string[],
  next: Map<string, string[]>,
): Map<string, number> {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const component = new Map<string, number>();
  let counter = 0;
  const visit = (m: string): void => {
    index.set(m, counter);
    low.set(m, counter);
    counter += 1;
    stack.push(m);
    onStack.add(m);
    for (const n of next.get(m)!) {
      if (!index.has(n)) {
        visit(n);
        low.set(m, Math.min(low.get(m)!, low.get(n)!));
      } else if (onStack.has(n)) {
        low.set(m, Math.min(low.get(m)!, index.get(n)!));
      }
    }
    if (low.get(m) === index.get(m)) {
      let n: string;
      do {
        n = stack.pop()!;
        onStack.delete(n);
        component.set(n, index.get(m)!);
      } while (n !== m);
    }
  };
  for (const m of modules) if (!index.has(m)) visit(m);
  return component;
}

/** Breadth-first: the modules from `start` to `goal` (both included). */
function shortestPath(
  start: string,
  goal: string,
  next: (m: string) => string[],
): string[] {
  const cameFrom = new Map<string, string | null>([[start, null]]);
  const queue = [start];
  while (queue.length > 0) {
    const m = queue.shift()!;
    if (m === goal) break;
    for (const n of next(m)) {
      if (cameFrom.has(n)) continue;
      cameFrom.set(n, m);
      queue.push(n);
    }
  }
  const path: string[] = [];
  for (let m: string | null = goal; m !== null; m = cameFrom.get(m)!) {
    path.unshift(m);
  }
  return path;
}

// ---------------------------------------------------------------------------
// The module graph, from `deno info --json`

/** The parts of `deno info --json` that the check reads. */
interface DenoInfo {
  modules: {
    specifier: string;
    error?: string;
    dependencies?: {
      specifier: string;
      code?: { specifier?: string };
      type?: { specifier?: string };
    }[];
  }[];
}

interface Graph {
  modules: string[];
  edges: Edge[];
  unreadable: [string, string][];
}

/** How many `deno info` processes run at once (the machine has 2 cores). */
const CONCURRENCY = 3;

async function defaultEntries(root: string): Promise<string[]> {
  const entries = existsSync(join(root, "main.ts")) ? ["main.ts"] : [];
  for (const folder of ["tests", "scripts"]) {
    if (existsSync(join(root, folder))) {
      entries.push(...(await tsFilesUnder(root, folder)).sort());
    }
  }
  return entries;
}

async function tsFilesUnder(root: string, folder: string): Promise<string[]> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(join(root, folder))) {
    const path = `${folder}/${entry.name}`;
    if (entry.isDirectory) files.push(...await tsFilesUnder(root, path));
    else if (entry.isFile && entry.name.endsWith(".ts")) files.push(path);
  }
  return files;
}

/**
 * The union of the graphs of every entry point, restricted to our modules.
 * An entry already seen in an earlier entry's graph is not asked again:
 * most helpers are reached from the tests that use them.
 */
async function moduleGraph(root: string, entries: string[]): Promise<Graph> {
  const seen = new Map<string, DenoInfo["modules"][number]>();
  const unreadable: [string, string][] = [];
  const pending = entries.map((entry) => resolve(root, entry));
  const worker = async () => {
    while (pending.length > 0) {
      const file = pending.shift()!;
      if (seen.has(file)) continue;
      const info = await denoInfo(root, file);
      if (typeof info === "string") {
        unreadable.push([ours(root, file) ?? file, info]);
        continue;
      }
      for (const module of info.modules) {
        const path = localPath(module.specifier);
        if (path && ours(root, path) && !seen.has(path)) seen.set(path, module);
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));

  // One edge per (from, to): type-only when every statement behind it is.
  const edges = new Map<string, Edge>();
  const addEdge = (from: string, to: string, typeOnly: boolean) => {
    const key = `${from} ${to}`;
    const edge = edges.get(key);
    if (edge) edge.typeOnly &&= typeOnly;
    else edges.set(key, { from, to, typeOnly });
  };
  for (const [path, module] of seen) {
    const from = ours(root, path)!;
    if (module.error !== undefined) {
      unreadable.push([from, module.error.split("\n")[0]]);
      continue;
    }
    let source: string | undefined;
    for (const dependency of module.dependencies ?? []) {
      const code = localPath(dependency.code?.specifier);
      const type = localPath(dependency.type?.specifier);
      // deno info lists `import type` and `export type … from` under "type"
      // but `import { type A }` under "code": read the statements to know.
      if (code && ours(root, code)) {
        source ??= await Deno.readTextFile(path);
        addEdge(
          from,
          ours(root, code)!,
          isTypeOnlyImport(source, dependency.specifier),
        );
      }
      if (type && ours(root, type)) addEdge(from, ours(root, type)!, true);
    }
  }
  return {
    modules: [...seen.keys()].map((path) => ours(root, path)!).sort(),
    edges: [...edges.values()].sort((a, b) =>
      a.from === b.from
        ? a.to.localeCompare(b.to)
        : a.from.localeCompare(b.from)
    ),
    unreadable,
  };
}

/** The graph of one entry point, or what went wrong. */
async function denoInfo(
  root: string,
  file: string,
): Promise<DenoInfo | string> {
  const config = ["deno.json", "deno.jsonc"].map((name) => join(root, name))
    .find((path) => existsSync(path));
  // --no-npm and --no-remote: npm: and remote modules are outside the check,
  // and so the check never waits for a registry (offline, a few seconds).
  const args = [
    "info",
    "--json",
    "--no-npm",
    "--no-remote",
    "--no-lock",
    config ? `--config=${config}` : "--no-config",
    file,
  ];
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    const error = new TextDecoder().decode(out.stderr).trim().split("\n")[0];
    return `deno info failed: ${error || `exit code ${out.code}`}`;
  }
  return JSON.parse(new TextDecoder().decode(out.stdout)) as DenoInfo;
}

function localPath(specifier: string | undefined): string | undefined {
  return specifier?.startsWith("file:") ? fileURLToPath(specifier) : undefined;
}

/** `path` relative to the root with `/`, when it is under the root. */
function ours(root: string, path: string): string | undefined {
  const rel = relative(root, path);
  if (rel === "" || rel.startsWith("..") || isAbsolute(rel)) {
    return undefined;
  }
  return rel.split(sep).join("/");
}

// ---------------------------------------------------------------------------

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: { root: { type: "string" } },
    allowPositionals: true,
  });
  const root = values.root ?? fileURLToPath(new URL("..", import.meta.url));
  const report = await checkImports(root, {
    entries: positionals.length > 0 ? positionals : undefined,
  });
  const lines = reportLines(report);
  if (report.problems.length === 0) {
    console.log(lines.join("\n"));
  } else {
    console.error(lines.join("\n"));
    Deno.exit(1);
  }
}
