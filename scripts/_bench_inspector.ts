/**
 * Talking to a `deno run --inspect=127.0.0.1:0` process over the Chrome
 * DevTools protocol: the bench's way to read a server's heap after a full
 * garbage collection (memory per session), and the profiling helpers'
 * way to take a CPU profile or a heap snapshot of the real server under
 * load (`deno task bench --profile`, see bench.ts).
 *
 * ```ts
 * const server = await startPmproxy(dir, { denoArgs: ["--inspect=127.0.0.1:0"] });
 * const inspector = await Inspector.attach(server.stderr());
 * console.log(await inspector.heapUsedAfterGc());
 * inspector.close();
 * ```
 *
 * @module
 */

/** This repository's URL, which profiles' file names are shortened from. */
const REPO = new URL("../", import.meta.url).href;

/** One node of a V8 CPU profile (`Profiler.stop`'s answer). */
interface ProfileNode {
  id: number;
  callFrame: {
    functionName: string;
    url: string;
    lineNumber: number;
  };
  hitCount?: number;
  children?: number[];
}

/** A V8 CPU profile, as DevTools saves it (`.cpuprofile`). */
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

/** A node of V8's sampling heap profile: bytes allocated at a call site. */
interface AllocationNode {
  callFrame: ProfileNode["callFrame"];
  selfSize: number;
  children: AllocationNode[];
}

/** V8's sampling heap profile (`HeapProfiler.stopSampling`'s answer). */
export interface AllocationProfile {
  head: AllocationNode;
}

/** A DevTools protocol session with one inspected process. */
export class Inspector {
  #ws: WebSocket;
  #next = 1;
  #waiting = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void }
  >();
  #chunks: string[] = [];

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.onmessage = (e) => {
      const msg = JSON.parse(String(e.data));
      if (msg.method === "HeapProfiler.addHeapSnapshotChunk") {
        this.#chunks.push(msg.params.chunk);
        return;
      }
      const w = this.#waiting.get(msg.id);
      if (!w) return;
      this.#waiting.delete(msg.id);
      if (msg.error) w.reject(new Error(JSON.stringify(msg.error)));
      else w.resolve(msg.result);
    };
  }

  /**
   * Attaches to the process whose standard error (so far) is `stderr`: it
   * names the inspector's WebSocket URL ("Debugger listening on ws://…").
   */
  static async attach(stderr: string): Promise<Inspector> {
    const m = /Debugger listening on (ws:\/\/\S+)/.exec(stderr);
    if (!m) throw new Error("the process was not started with --inspect");
    const ws = new WebSocket(m[1]);
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error(`cannot reach ${m[1]}`));
    });
    const inspector = new Inspector(ws);
    await inspector.send("Runtime.enable");
    return inspector;
  }

  /** Sends one protocol command and answers its result. */
  send(
    method: string,
    params: Record<string, unknown> = {},
    // deno-lint-ignore no-explicit-any
  ): Promise<any> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /**
   * The V8 heap in use (bytes) after full garbage collections: what
   * `Deno.memoryUsage().heapUsed` would say there, read without evaluating
   * anything in the process (an evaluation's promise may be collected by
   * those very collections, which V8 answers with an error).
   */
  async heapUsedAfterGc(): Promise<number> {
    for (let i = 0; i < 3; i++) await this.send("HeapProfiler.collectGarbage");
    const usage = await this.send("Runtime.getHeapUsage");
    return usage.usedSize as number;
  }

  /** Starts sampling the CPU every `intervalUs` µs. */
  async startProfile(intervalUs = 100): Promise<void> {
    await this.send("Profiler.enable");
    await this.send("Profiler.setSamplingInterval", { interval: intervalUs });
    await this.send("Profiler.start");
  }

  /** Stops sampling and answers the profile. */
  async stopProfile(): Promise<CpuProfile> {
    const { profile } = await this.send("Profiler.stop");
    return profile as CpuProfile;
  }

  /**
   * Starts sampling allocations (one sample per `intervalBytes` allocated
   * on average; objects collected meanwhile are kept in the profile).
   */
  async startAllocationSampling(intervalBytes = 1024): Promise<void> {
    await this.send("HeapProfiler.enable");
    await this.send("HeapProfiler.startSampling", {
      samplingInterval: intervalBytes,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
  }

  /** Stops sampling allocations and answers the profile. */
  async stopAllocationSampling(): Promise<AllocationProfile> {
    const { profile } = await this.send("HeapProfiler.stopSampling");
    return profile as AllocationProfile;
  }

  /** A heap snapshot, as DevTools saves it (`.heapsnapshot`). */
  async heapSnapshot(): Promise<string> {
    this.#chunks = [];
    await this.send("HeapProfiler.takeHeapSnapshot", {
      reportProgress: false,
    });
    const text = this.#chunks.join("");
    this.#chunks = [];
    return text;
  }

  close(): void {
    this.#ws.close();
  }
}

/** A profile's call frame as `name  file:line`, files from the repository. */
function frameName(f: ProfileNode["callFrame"]): string {
  const file = f.url.startsWith(REPO) ? f.url.slice(REPO.length) : f.url;
  return `${f.functionName || "(anonymous)"}  ${file}:${f.lineNumber + 1}`;
}

/**
 * The call sites that allocated the most of `profile`, as lines
 * `  12.3 %  name  file:line  <-  caller  file:line`.
 */
export function topAllocations(
  profile: AllocationProfile,
  count = 25,
): string[] {
  const bySite = new Map<string, number>();
  let total = 0;
  const walk = (node: AllocationNode, parent: string) => {
    const here = frameName(node.callFrame);
    if (node.selfSize > 0) {
      const key = `${here}  <-  ${parent}`;
      bySite.set(key, (bySite.get(key) ?? 0) + node.selfSize);
      total += node.selfSize;
    }
    for (const c of node.children) walk(c, here);
  };
  walk(profile.head, "");
  return [...bySite].sort((a, b) => b[1] - a[1]).slice(0, count).map((
    [k, n],
  ) => `${(100 * n / Math.max(1, total)).toFixed(1).padStart(6)} %  ${k}`);
}

/**
 * The functions that took the most samples of `profile`, by self time, as
 * lines `  12.3 %  name  file:line` (the file shortened to what follows
 * the repository, `ext:` for the runtime's own code).
 */
export function topFunctions(profile: CpuProfile, count = 25): string[] {
  const total = profile.samples?.length ?? 0;
  const byName = new Map<string, number>();
  const hits = new Map<number, number>();
  for (const id of profile.samples ?? []) {
    hits.set(id, (hits.get(id) ?? 0) + 1);
  }
  for (const node of profile.nodes) {
    const n = hits.get(node.id) ?? 0;
    if (n === 0) continue;
    const f = node.callFrame;
    const file = f.url.startsWith(REPO)
      ? f.url.slice(REPO.length)
      : f.url.replace(
        /^file:\/\/.*\/node_modules\/|^file:\/\/.*\/npm\//,
        "npm:",
      );
    const key = `${f.functionName || "(anonymous)"}  ${file}:${
      f.lineNumber + 1
    }`;
    byName.set(key, (byName.get(key) ?? 0) + n);
  }
  return [...byName].sort((a, b) => b[1] - a[1]).slice(0, count).map((
    [k, n],
  ) => `${(100 * n / Math.max(1, total)).toFixed(1).padStart(6)} %  ${k}`);
}

/** A heap snapshot's objects summed by kind: count and bytes (self size). */
export type HeapSummary = Map<string, { count: number; bytes: number }>;

/**
 * Sums a heap snapshot (`.heapsnapshot` text) by node kind: objects by
 * constructor (`Promise`, `Reader`), closures by function name, and the
 * V8 kinds (`(array)`, `(string)`, `(code)`) by their type.
 */
export function summarizeSnapshot(text: string): HeapSummary {
  return sumNodes(text, (type, name) => {
    const named = type === "object" || type === "closure" ||
      type === "native";
    return named ? `${type} ${name}` : `(${type})`;
  });
}

/**
 * The strings of a heap snapshot of `minBytes` or more, summed by what
 * they hold: module sources (V8 keeps each module's text, which from
 * source is the emitted JavaScript with its inline source map; a text with
 * any character above U+00FF is stored two bytes a character), the source
 * maps apart, the runtime's own JavaScript, and the rest.
 */
export function bigStrings(text: string, minBytes = 2048): HeapSummary {
  return sumNodes(text, (type, name, bytes) => {
    if (type !== "string" || bytes < minBytes) return undefined;
    const head = name.slice(0, 200);
    return head.startsWith("data:application/json")
      ? "source maps"
      : /Deno authors|__bootstrap|^"use strict"|ext:/.test(head)
      ? "the runtime's JavaScript"
      : /^(\/\*|\/\/|import|export)/.test(head)
      ? "module sources"
      : "other";
  });
}

/**
 * Sums the nodes of a heap snapshot (`.heapsnapshot` text) by the key that
 * `keyOf` gives each from its type, name and self size; a node it gives no
 * key is left out.
 */
function sumNodes(
  text: string,
  keyOf: (type: string, name: string, bytes: number) => string | undefined,
): HeapSummary {
  const snapshot = JSON.parse(text) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[0];
  const stride = fields.length;
  const [type, name, size] = ["type", "name", "self_size"].map((f) =>
    fields.indexOf(f)
  );
  const summary: HeapSummary = new Map();
  const nodes = snapshot.nodes;
  for (let i = 0; i < nodes.length; i += stride) {
    const bytes = nodes[i + size];
    const key = keyOf(
      types[nodes[i + type]],
      String(snapshot.strings[nodes[i + name]]),
      bytes,
    );
    if (key === undefined) continue;
    const entry = summary.get(key) ?? { count: 0, bytes: 0 };
    entry.count++;
    entry.bytes += bytes;
    summary.set(key, entry);
  }
  return summary;
}

/**
 * The `count` largest kinds of a summary, as lines such as
 * `    2865 KiB      91  module sources`.
 */
export function largestKinds(summary: HeapSummary, count = 25): string[] {
  return [...summary].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, count)
    .map(([kind, { count, bytes }]) =>
      `  ${(bytes / 1024).toFixed(0).padStart(6)} KiB ${
        String(count).padStart(7)
      }  ${kind}`
    );
}

/**
 * What grew from `before` to `after`, per one of `units` (tunnels held),
 * largest first, as lines `  312 B  3.0  object Promise` (bytes and count
 * per unit), and a last line with the total.
 */
export function heapGrowth(
  before: HeapSummary,
  after: HeapSummary,
  units: number,
  count = 25,
): string[] {
  const rows: [string, number, number][] = [];
  let total = 0;
  const none = { count: 0, bytes: 0 };
  for (const key of new Set([...before.keys(), ...after.keys()])) {
    const a = after.get(key) ?? none;
    const b = before.get(key) ?? none;
    const bytes = (a.bytes - b.bytes) / units;
    total += bytes;
    rows.push([key, bytes, (a.count - b.count) / units]);
  }
  rows.sort((x, y) => y[1] - x[1]);
  return [
    ...rows.slice(0, count).map(([key, bytes, n]) =>
      `${bytes.toFixed(0).padStart(7)} B ${n.toFixed(1).padStart(5)}  ${key}`
    ),
    `${total.toFixed(0).padStart(7)} B in all`,
  ];
}
