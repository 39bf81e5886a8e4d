/**
 * proxy/timers.ts: the timers every part uses instead of the global ones
 * (which load the runtime's Node layer), on the runtime's real timer; and
 * the heap of deadlines under them, by property against a sorted list.
 *
 * @module
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import {
  after,
  Deadline,
  DeadlineHeap,
  every,
  LONGEST_WAIT_MS,
  pendingTimers,
  sleep,
} from "../proxy/timers.ts";
import { codeWords } from "../scripts/_import_statements.ts";

const GLOBAL_TIMERS = new Set([
  "setTimeout",
  "setInterval",
  "clearTimeout",
  "clearInterval",
  "unrefTimer",
]);

Deno.test("timers: one-shots run once each, by deadline, ties in the order made", async () => {
  const ran: string[] = [];
  after(30, () => ran.push("30a"));
  after(10, () => ran.push("10"));
  after(30, () => ran.push("30b"));
  after(0, () => ran.push("0"));
  const start = performance.now();
  await sleep(60);
  assert.ok(performance.now() - start >= 59, "sleep(60) woke early");
  assert.deepEqual(ran, ["0", "10", "30a", "30b"]);
  assert.equal(pendingTimers(), 0);
});

Deno.test("timers: a cancelled one never runs and leaves the heap at once", async () => {
  const ran: string[] = [];
  const kept = after(20, () => ran.push("kept"));
  const dropped = after(10, () => ran.push("dropped"));
  const waiting = pendingTimers();
  dropped.cancel();
  assert.equal(pendingTimers(), waiting - 1);
  dropped.cancel(); // twice is nothing
  await sleep(40);
  assert.deepEqual(ran, ["kept"]);
  kept.cancel(); // after it ran: nothing
  assert.equal(pendingTimers(), 0);
});

Deno.test("timers: every repeats until cancelled, also from its own callback", async () => {
  let n = 0;
  const tick = every(5, () => {
    n++;
    if (n === 4) tick.cancel();
  });
  await sleep(100);
  assert.equal(n, 4);
  assert.equal(pendingTimers(), 0);
});

Deno.test("timers: a deadline past the longest single wait still comes, on time", async () => {
  const ms = LONGEST_WAIT_MS + 300;
  const start = performance.now();
  await new Promise<void>((resolve) => after(ms, resolve));
  const took = performance.now() - start;
  assert.ok(took >= ms - 1, `woke after ${took} ms, before ${ms}`);
  assert.ok(took < ms + 500, `woke after ${took} ms, long after ${ms}`);
});

Deno.test("timers: a callback that throws lets the others run, and its error is thrown uncaught", async () => {
  const errors: unknown[] = [];
  const onError = (e: ErrorEvent) => {
    e.preventDefault();
    errors.push(e.error);
  };
  globalThis.addEventListener("error", onError);
  try {
    const ran: string[] = [];
    after(5, () => ran.push("before"));
    after(5, () => {
      throw new Error("broken callback");
    });
    after(5, () => ran.push("after"));
    await sleep(30);
    assert.deepEqual(ran, ["before", "after"]);
    assert.equal(errors.length, 1);
    assert.match(String(errors[0]), /broken callback/);
  } finally {
    globalThis.removeEventListener("error", onError);
  }
});

Deno.test("timers: the heap gives deadlines back in order through any pushes and removals", () => {
  // An operation: push a deadline at `at`, remove the i-th of those in the
  // heap, or take the earliest.
  const op = fc.oneof(
    fc.record({ push: fc.integer({ min: 0, max: 50 }) }),
    fc.record({ remove: fc.nat() }),
    fc.record({ pop: fc.constant(true) }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
      const heap = new DeadlineHeap();
      let reference: Deadline[] = [];
      let seq = 0;
      const sorted = () =>
        [...reference].sort((a, b) => a.at - b.at || a.seq - b.seq);
      for (const o of ops) {
        if ("push" in o) {
          const d = new Deadline(o.push, seq++, () => {}, 0);
          heap.push(d);
          reference.push(d);
        } else if ("remove" in o) {
          if (reference.length === 0) continue;
          const d = reference[o.remove % reference.length];
          heap.remove(d);
          assert.equal(d.index, -1);
          reference = reference.filter((r) => r !== d);
        } else {
          const first = heap.peek();
          assert.equal(first, sorted()[0]);
          if (first) {
            heap.remove(first);
            reference = reference.filter((r) => r !== first);
          }
        }
        assert.equal(heap.size, reference.length);
        assert.equal(heap.peek(), sorted()[0]);
      }
      // Emptied, they come out sorted.
      const out: Deadline[] = [];
      for (let d = heap.peek(); d; d = heap.peek()) {
        heap.remove(d);
        out.push(d);
      }
      assert.deepEqual(out, sorted());
    }),
  );
});

Deno.test("timers: the program calls no global timer (the first would load the Node layer)", async () => {
  const root = fileURLToPath(new URL("../", import.meta.url));
  const files = ["main.ts"];
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(`${root}${dir}`)) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(path);
      else if (e.name.endsWith(".ts")) files.push(path);
    }
  };
  for (const dir of ["api", "managers", "proxy", "rule", "web"]) {
    await walk(dir);
  }
  assert.ok(files.includes("proxy/dial.ts") && files.length > 50);
  const calls: string[] = [];
  for (const file of files) {
    // Comments and strings may name them; code may not.
    const words = codeWords(await Deno.readTextFile(`${root}${file}`));
    for (const w of words) {
      if (GLOBAL_TIMERS.has(w)) calls.push(`${file}: ${w}`);
    }
  }
  assert.deepEqual(calls, [], "use after, every or sleep of proxy/timers.ts");
});
