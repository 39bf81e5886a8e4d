/**
 * scripts/check_imports.ts, run as `deno task checks` runs it, on small
 * projects written to a temporary directory: a clean one passes, and each
 * planted cycle or forbidden import fails, naming its edge and rule.
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { isTypeOnlyImport } from "../scripts/_import_statements.ts";

const SCRIPT = fileURLToPath(
  new URL("../scripts/check_imports.ts", import.meta.url),
);

/** A project that follows every rule: 13 modules, 18 imports between them. */
const CLEAN: Record<string, string> = {
  "deno.json": `{ "imports": { "hono": "npm:hono@4.13.19" } }\n`,
  "main.ts": `import { join } from "node:path";
import { Hono } from "hono";
import { startProxy } from "./proxy/mod.ts";
import { openGateway } from "./managers/mod.ts";
import { serveApi } from "./api/mod.ts";
startProxy(openGateway());
serveApi();
console.log(join("a", "b"), Hono);
`,
  "rule/mod.ts": `export { parse } from "./parser.ts";\n`,
  "rule/parser.ts": `export function parse(s: string): string {
  return s;
}
`,
  "proxy/policy.ts": `export interface Policy {
  decide(): boolean;
}
export type Meter = (bytes: number) => number;
export const GO_ON = 0;
`,
  "proxy/mod.ts": `import type { Policy } from "./policy.ts";
import { relay } from "./_relay.ts";
export function startProxy(policy: Policy): boolean {
  return relay(policy.decide());
}
`,
  "proxy/_relay.ts": `export function relay(go: boolean): boolean {
  return go;
}
`,
  "managers/mod.ts": `import type { Policy } from "../proxy/policy.ts";
import { parse } from "../rule/mod.ts";
import { quota } from "./_quota.ts";
export function openGateway(): Policy {
  return { decide: () => parse("true") === "true" && quota(1) === 0 };
}
`,
  // The three ways of importing only types that deno info lists as code.
  "managers/_quota.ts": `import {
  type Meter,
  type Policy as P, // a comment; with "quotes"
} from "../proxy/policy.ts";
export { type Policy } from "../proxy/policy.ts";
export type { Meter } from "../proxy/policy.ts";
export const quota: Meter = (bytes) => bytes - 1;
export type Decider = P;
`,
  "api/mod.ts": `import { openGateway } from "../managers/mod.ts";
import { parse } from "../rule/mod.ts";
import { page } from "../web/assets.ts";
export function serveApi(): string {
  return openGateway().decide() ? parse(page) : "";
}
`,
  "web/assets.ts": `export const page = "<!doctype html>";\n`,
  // tests/ and scripts/ may import the internals of managers/ and proxy/.
  "tests/a_test.ts": `import { quota } from "../managers/_quota.ts";
import { relay } from "../proxy/_relay.ts";
import { helper } from "./helpers/h.ts";
console.log(quota(helper), relay(true));
`,
  "tests/helpers/h.ts": `export const helper = 1;\n`,
  "scripts/s.ts": `import { helper } from "../tests/helpers/h.ts";
import "../main.ts";
console.log(helper);
`,
};

/** Writes `files` (path -> content) into a new temporary directory. */
async function project(files: Record<string, string>): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "pmproxy-imports-" });
  for (const [path, text] of Object.entries(files)) {
    await Deno.mkdir(dirname(join(root, path)), { recursive: true });
    await Deno.writeTextFile(join(root, path), text);
  }
  return root;
}

/** Runs the script on `root` (with `entries`, else its defaults): exit code and output lines. */
async function check(
  root: string | undefined,
  entries: string[] = [],
): Promise<{ code: number; lines: string[] }> {
  const args = ["run", "--allow-read", "--allow-run", SCRIPT];
  if (root !== undefined) args.push("--root", root);
  const out = await new Deno.Command(Deno.execPath(), {
    args: [...args, ...entries],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) +
    new TextDecoder().decode(out.stderr);
  return { code: out.code, lines: text.split("\n").filter((l) => l !== "") };
}

/** Checks CLEAN with `changes` (and removes the directory after). */
async function checkChanged(
  changes: Record<string, string>,
  entries: string[] = [],
): Promise<{ code: number; lines: string[] }> {
  const root = await project({ ...CLEAN, ...changes });
  try {
    return await check(root, entries);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

/** Asserts a failure whose problem lines are exactly `problems`. */
function assertProblems(
  result: { code: number; lines: string[] },
  problems: string[],
): void {
  assert.equal(result.code, 1, result.lines.join("\n"));
  assert.deepEqual(result.lines.slice(0, -1), problems);
  const n = problems.length;
  assert.match(
    result.lines.at(-1)!,
    new RegExp(`^imports: \\d+ modules, \\d+ edges, ${n} problems?$`),
  );
}

Deno.test("imports check: a project that follows the layout passes, with its size", async () => {
  const result = await checkChanged({});
  assert.deepEqual(result, {
    code: 0,
    lines: ["imports: 13 modules, 18 edges, ok"],
  });
});

Deno.test("imports check: a planted cycle a.ts -> b.ts -> a.ts fails, naming the cycle", async () => {
  const result = await checkChanged({
    "rule/a.ts": `import { b } from "./b.ts";\nexport const a = 1 + b;\n`,
    "rule/b.ts": `import { a } from "./a.ts";\nexport const b = a;\n`,
  }, ["rule/a.ts"]);
  assert.deepEqual(result, {
    code: 1,
    lines: [
      "imports: cycle: rule/a.ts -> rule/b.ts -> rule/a.ts",
      "imports: 2 modules, 2 edges, 1 problem",
    ],
  });
});

Deno.test("imports check: cycles through import type and export type ... from count", async () => {
  const result = await checkChanged({
    "rule/a.ts": `import type { B } from "./b.ts";\nexport const a: B = 1;\n`,
    "rule/b.ts": `import { a } from "./a.ts";\nexport type B = number;\n` +
      `export const b = a;\n`,
    "rule/c.ts": `export type { D } from "./d.ts";\nexport type C = 1;\n`,
    "rule/d.ts": `import { type E } from "./e.ts";\nexport type D = E;\n`,
    "rule/e.ts": `import type { C } from "./c.ts";\nexport type E = C;\n`,
  }, ["rule/a.ts", "rule/c.ts"]);
  assertProblems(result, [
    "imports: cycle: rule/a.ts -> rule/b.ts -> rule/a.ts",
    "imports: cycle: rule/c.ts -> rule/d.ts -> rule/e.ts -> rule/c.ts",
  ]);
});

Deno.test("imports check: every edge of a cycle is named, not only one cycle per knot", async () => {
  // kinds.ts <-> x.ts and kinds.ts <-> y.ts: one strongly connected knot, two cycles.
  const result = await checkChanged({
    "rule/kinds.ts":
      `import "./x.ts";\nimport "./y.ts";\nexport const k = 1;\n`,
    "rule/x.ts": `import { k } from "./kinds.ts";\nexport const x = k;\n`,
    "rule/y.ts":
      `import type { k } from "./kinds.ts";\nexport type Y = typeof k;\n`,
  }, ["rule/kinds.ts"]);
  assertProblems(result, [
    "imports: cycle: rule/kinds.ts -> rule/x.ts -> rule/kinds.ts",
    "imports: cycle: rule/kinds.ts -> rule/y.ts -> rule/kinds.ts",
  ]);
});

Deno.test("imports check: proxy/, rule/ and web/ importing anything of ours outside themselves fail", async () => {
  const result = await checkChanged({
    "proxy/_relay.ts": `import { openGateway } from "../managers/mod.ts";
export function relay(go: boolean): boolean {
  return go && openGateway().decide();
}
`,
    "rule/parser.ts": `import type { Policy } from "../proxy/policy.ts";
export function parse(s: string, _p?: Policy): string {
  return s;
}
`,
    "web/assets.ts": `import { parse } from "../rule/mod.ts";
export const page = parse("<!doctype html>");
`,
  });
  assertProblems(result, [
    "imports: proxy/_relay.ts -> managers/mod.ts: proxy/ may import nothing of ours outside proxy/",
    "imports: rule/parser.ts -> proxy/policy.ts: rule/ may import nothing of ours outside rule/",
    "imports: web/assets.ts -> rule/mod.ts: web/ may import nothing of ours outside web/",
  ]);
});

Deno.test("imports check: managers/ importing a value from proxy/policy.ts fails, importing types passes", async () => {
  const policy = `"../proxy/policy.ts"`;
  const values: Record<string, string> = {
    "managers/v_named.ts":
      `import { GO_ON } from ${policy};\nexport const v = GO_ON;\n`,
    "managers/v_mixed.ts": `import { GO_ON, type Meter } from ${policy};\n` +
      `export const v: Meter = () => GO_ON;\n`,
    // A value statement beside a type-only one: the edge carries a value.
    "managers/v_two.ts": `import type { Meter } from ${policy};
import {
  GO_ON, // the sentinel; don't "copy" it
} from ${policy};
export const v: Meter = () => GO_ON;
`,
    "managers/v_side_effect.ts": `import ${policy};\n`,
    "managers/v_reexport.ts": `export { GO_ON } from ${policy};\n`,
    "managers/v_star.ts": `export * from ${policy};\n`,
    "managers/v_dynamic.ts": `export const v = await import(${policy});\n`,
    "managers/v_mod.ts":
      `import type { startProxy } from "../proxy/mod.ts";\n` +
      `export type S = typeof startProxy;\n`,
  };
  const types: Record<string, string> = {
    "managers/t_import_type.ts": `import type { Meter } from ${policy};\n` +
      `export type T = Meter;\n`,
    "managers/t_braces.ts":
      `import { type Meter, type Policy } from ${policy};\n` +
      `export type T = Meter | Policy;\n`,
    "managers/t_export_type.ts": `export type { Meter } from ${policy};\n`,
    "managers/t_export_braces.ts": `export { type Meter } from ${policy};\n`,
    "managers/t_typeof.ts": `export type T = typeof import(${policy});\n`,
    // Value imports that are not code (a comment, a string) do not count.
    "managers/t_decoys.ts": `// import { GO_ON } from ${policy};
const s = 'import { GO_ON } from ${policy}';
import { type Meter } from ${policy};
export const t: Meter = () => s.length;
`,
  };
  const result = await checkChanged(
    { ...values, ...types },
    [...Object.keys(values), ...Object.keys(types)],
  );
  const typesOnly =
    "managers/ may import only types from proxy/policy.ts (write import type)";
  assertProblems(result, [
    `imports: managers/v_dynamic.ts -> proxy/policy.ts: ${typesOnly}`,
    `imports: managers/v_mixed.ts -> proxy/policy.ts: ${typesOnly}`,
    "imports: managers/v_mod.ts -> proxy/mod.ts: managers/ may import only rule/, proxy/timers.ts and types from proxy/policy.ts (besides its own files)",
    `imports: managers/v_named.ts -> proxy/policy.ts: ${typesOnly}`,
    `imports: managers/v_reexport.ts -> proxy/policy.ts: ${typesOnly}`,
    `imports: managers/v_side_effect.ts -> proxy/policy.ts: ${typesOnly}`,
    `imports: managers/v_star.ts -> proxy/policy.ts: ${typesOnly}`,
    `imports: managers/v_two.ts -> proxy/policy.ts: ${typesOnly}`,
  ]);
});

Deno.test("imports check: outside managers/ and proxy/, only their front doors may be imported", async () => {
  const result = await checkChanged({
    "api/mod.ts": `import { openGateway } from "../managers/mod.ts";
import { quota } from "../managers/_quota.ts";
export function serveApi(): boolean {
  return openGateway().decide() && quota(1) === 0;
}
`,
    "main.ts": `import { startProxy } from "./proxy/mod.ts";
import { relay } from "./proxy/_relay.ts";
import { openGateway } from "./managers/mod.ts";
import { serveApi } from "./api/mod.ts";
startProxy(openGateway());
console.log(serveApi(), relay(true));
`,
  });
  assertProblems(result, [
    "imports: api/mod.ts -> managers/_quota.ts: outside managers/, import only managers/mod.ts (tests/ and scripts/ excepted)",
    "imports: main.ts -> proxy/_relay.ts: outside proxy/, import only proxy/mod.ts or proxy/policy.ts or proxy/timers.ts (tests/ and scripts/ excepted)",
  ]);
});

Deno.test("imports check: api/, managers/ and main.ts importing what the table does not list fail", async () => {
  const result = await checkChanged({
    "api/mod.ts": `import { openGateway } from "../managers/mod.ts";
import { startProxy } from "../proxy/mod.ts";
import { helper } from "../tests/helpers/h.ts";
// The proxy's timers are the one file of proxy/ that api/ may import.
import { after } from "../proxy/timers.ts";
export function serveApi(): boolean {
  after(1, () => {});
  return startProxy(openGateway()) && helper === 1;
}
`,
    "managers/_quota.ts": `import type { Meter } from "../proxy/policy.ts";
import { page } from "../web/assets.ts";
// ... and of managers/ too.
import { sleep } from "../proxy/timers.ts";
export const quota: Meter = (bytes) => bytes - page.length;
export const wait = () => sleep(1);
`,
    "main.ts": `import { openGateway } from "./managers/mod.ts";
import { serveApi } from "./api/mod.ts";
import { helper } from "./tests/helpers/h.ts";
import { x } from "./lib/x.ts";
console.log(openGateway(), serveApi(), helper, x);
`,
    "lib/x.ts": `export const x = 1;\n`,
    "proxy/timers.ts": `export function after(ms: number, f: () => void) {}
export function sleep(ms: number): Promise<void> {
  return Promise.resolve();
}
`,
  });
  const api =
    "api/ may import only managers/, rule/, web/ and proxy/timers.ts (besides its own files)";
  const main =
    "main.ts may import only rule/, managers/, proxy/, api/, web/ and scripts/ (besides its own files)";
  assertProblems(result, [
    `imports: api/mod.ts -> proxy/mod.ts: ${api}`,
    `imports: api/mod.ts -> tests/helpers/h.ts: ${api}`,
    "imports: main.ts -> lib/x.ts: lib/ is not in the layout table (LAYOUT in scripts/check_imports.ts)",
    `imports: main.ts -> tests/helpers/h.ts: ${main}`,
    "imports: managers/_quota.ts -> web/assets.ts: managers/ may import only rule/, proxy/timers.ts and types from proxy/policy.ts (besides its own files)",
  ]);
});

Deno.test("imports check: a module deno cannot read is a problem, not a silent gap", async () => {
  const result = await checkChanged({
    "rule/mod.ts":
      `export { parse } from "./parser.ts";\nexport * from "./missing.ts";\n`,
  });
  assert.equal(result.code, 1, result.lines.join("\n"));
  assert.equal(result.lines.length, 2, result.lines.join("\n"));
  assert.match(
    result.lines[0],
    /^imports: rule\/missing\.ts: Module not found /,
  );
});

// The real project's check cannot be asked to pass while main still has the
// violations that issue 8 is removing; it must at least finish with a report
// in the documented format.
Deno.test("imports check: on this project it finishes with a well-formed report", async () => {
  const { code, lines } = await check(undefined);
  const summary = lines.at(-1) ?? "";
  if (code === 0) {
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(summary, /^imports: \d+ modules, \d+ edges, ok$/);
    return;
  }
  assert.equal(code, 1, lines.join("\n"));
  const counted = summary.match(
    /^imports: \d+ modules, \d+ edges, (\d+) problems?$/,
  );
  assert.ok(counted, `summary line: ${summary}`);
  const problems = lines.slice(0, -1);
  assert.equal(problems.length, Number(counted[1]));
  assert.ok(problems.length > 0);
  const path = String.raw`[\w./-]+\.\w+`;
  const formats = [
    new RegExp(`^imports: ${path} -> ${path}: .+$`),
    new RegExp(`^imports: cycle: ${path}( -> ${path})+$`),
    new RegExp(`^imports: ${path}: .+$`),
  ];
  for (const line of problems) {
    assert.ok(formats.some((f) => f.test(line)), `not in the format: ${line}`);
  }
});

Deno.test("imports check: type-only statements are told from value ones in the source", () => {
  const p = `"./p.ts"`;
  const cases: [string, boolean][] = [
    [`import type { A } from ${p};`, true],
    [`import type A from ${p};`, true],
    [`import type * as ns from ${p};`, true],
    [`import { type A, type B as C } from ${p};`, true],
    [`export type { A } from ${p};`, true],
    [`export type * from ${p};`, true],
    [`export { type A } from ${p};`, true],
    [`type T = typeof import(${p});`, true],
    [`import { A } from ${p};`, false],
    [`import A, { type B } from ${p};`, false],
    [`import * as ns from ${p};`, false],
    [`import {} from ${p};`, false],
    [`import ${p};`, false],
    [`export * from ${p};`, false],
    [`export { A } from ${p};`, false],
    [`const m = await import(${p});`, false],
    // A default import and a renamed import of values named "type".
    [`import type from ${p};`, false],
    [`import { type as t } from ${p};`, false],
    // No statement of that specifier: a doubt counts as a value.
    [`import type { A } from "./q.ts";`, false],
    // Comments, strings, templates and regular expressions are not code.
    [`// import { A } from ${p};\nimport type { A } from ${p};`, true],
    [`/* import { A } from ${p}; */ import type { A } from ${p};`, true],
    [
      `const s = \`\${\`x\`} import { A } from ${p}\`;\nimport type { A } from ${p};`,
      true,
    ],
    [`const q = /["'\`]/;\nimport type { A } from ${p};`, true],
    [
      `import type { A } from ${p};\nconst q = /'/; import { B } from ${p};`,
      false,
    ],
    [`import {\n  type A, // see "B"; it moved\n  type B,\n} from ${p};`, true],
    [`import {\n  type A, // see "B"; it moved\n  B,\n} from ${p};`, false],
  ];
  for (const [source, typeOnly] of cases) {
    assert.equal(isTypeOnlyImport(source, "./p.ts"), typeOnly, source);
  }
});
