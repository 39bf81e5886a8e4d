/**
 * The memory trim (proxy/memory_trim.ts): when it collects, when it leaves
 * the heap alone, and that the collection it runs is V8's own and gives
 * memory back. The first tests give it a heap and a collector of their
 * own, to drive each case; the last runs the real one in this process.
 *
 * @module
 */
import assert from "node:assert/strict";
import { startMemoryTrim } from "../proxy/memory_trim.ts";
import { proxyConfigFrom } from "../proxy/config.ts";

const MiB = 1024 * 1024;
const TICK = 20;
const ticks = (n: number) => new Promise((r) => setTimeout(r, n * TICK + 5));

/** A heap the test sets, and a collector that shrinks it to what is used. */
function fakeHeap(total: number, used: number) {
  const heap = { total, used, collections: 0 };
  return {
    heap,
    options: {
      heap: () => ({ total: heap.total, used: heap.used }),
      collect: () => {
        heap.collections++;
        heap.total = heap.used + 4 * MiB;
        return Promise.resolve(true);
      },
      tickMs: TICK,
    },
  };
}

Deno.test("memory trim: a heap grown by a burst is collected once the proxy is quiet", async () => {
  const { heap, options } = fakeHeap(20 * MiB, 12 * MiB);
  // Busy: every tick sees many new connections since the last.
  let busy = false;
  let activity = 0;
  const told: { beforeBytes: number; afterBytes: number }[] = [];
  const trim = startMemoryTrim({
    ...options,
    activity: () => busy ? activity += 1000 : activity,
    enabled: () => true,
    onTrim: (t) => told.push(t),
  });
  try {
    await ticks(2);
    assert.equal(heap.collections, 0, "nothing grew yet");
    // The burst: many connections, the heap grows.
    busy = true;
    heap.total = 100 * MiB;
    heap.used = 45 * MiB;
    await ticks(4);
    assert.equal(heap.collections, 0, "never while busy");
    busy = false;
    await ticks(3);
    assert.equal(heap.collections, 1, "once quiet");
    assert.equal(trim.trims, 1);
    assert.equal(heap.total, 49 * MiB);
    assert.deepEqual(
      told.map((t) => [t.beforeBytes, t.afterBytes]),
      [[100 * MiB, 49 * MiB]],
      "the trim is told, with the heap before and after",
    );
    // What is left is live: no collection again until the heap grows.
    await ticks(4);
    assert.equal(heap.collections, 1);
    heap.total = 90 * MiB;
    await ticks(2);
    assert.equal(heap.collections, 2, "it grew again by more than 16 MiB");
  } finally {
    trim.stop();
  }
});

Deno.test("memory trim: a big heap that is all in use, or trimming turned off, is left alone", async () => {
  const live = fakeHeap(20 * MiB, 12 * MiB);
  const off = fakeHeap(20 * MiB, 12 * MiB);
  const trims = [
    startMemoryTrim({
      ...live.options,
      activity: () => 0,
      enabled: () => true,
    }),
    startMemoryTrim({
      ...off.options,
      activity: () => 0,
      enabled: () => false,
    }),
  ];
  try {
    live.heap.total = 100 * MiB;
    live.heap.used = 97 * MiB;
    off.heap.total = 100 * MiB;
    off.heap.used = 30 * MiB;
    await ticks(4);
    assert.equal(live.heap.collections, 0, "nothing to give back");
    assert.equal(off.heap.collections, 0, "memoryTrim = false");
  } finally {
    for (const t of trims) t.stop();
  }
});

Deno.test("memory trim: V8's collection runs and the heap shrinks", async () => {
  const before = Deno.memoryUsage().heapTotal;
  // Off while the garbage is made: it is not garbage yet.
  let enabled = false;
  const trim = startMemoryTrim({
    activity: () => 0,
    enabled: () => enabled,
    tickMs: TICK,
  });
  try {
    // Garbage that outlives a few young collections, as a burst's does.
    let held: unknown[] = [];
    for (let round = 0; round < 8; round++) {
      for (let i = 0; i < 100_000; i++) held.push({ i, s: `x${i}` });
      await new Promise((r) => setTimeout(r, 0));
    }
    const grown = Deno.memoryUsage().heapTotal;
    held = [];
    assert(held.length === 0);
    assert(grown - before > 32 * MiB, `the heap grew (${grown - before} B)`);
    enabled = true;
    for (let i = 0; i < 50 && trim.trims === 0; i++) await ticks(1);
    assert.equal(trim.trims, 1, "one collection ran");
    const after = Deno.memoryUsage().heapTotal;
    assert(
      after < grown - 16 * MiB,
      `the heap gave memory back: ${grown} B, then ${after} B`,
    );
  } finally {
    trim.stop();
  }
});

Deno.test("memory trim: [proxy] memoryTrim is on by default, and only true or false", () => {
  const site = { file: "server.toml", lineOf: () => 7 };
  assert.equal(proxyConfigFrom({}, site).memoryTrim, true);
  assert.equal(proxyConfigFrom({ memoryTrim: false }, site).memoryTrim, false);
  assert.throws(
    () => proxyConfigFrom({ memoryTrim: "no" }, site),
    /server\.toml:7: \[proxy\] memoryTrim: "no" is not true or false/,
  );
});
