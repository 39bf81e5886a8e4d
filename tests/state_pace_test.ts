/**
 * The pace of the periodic flush: on a clock of the test's own, how long
 * it waits before each batch, when it stops, and that a hurried flush
 * waits no more; then a real gateway on a real Deno KV file, whose
 * periodic flush of many counters is paced and still writes every one,
 * and whose shutdown in the middle of one ends it unpaced.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type Sleep, WritePace } from "../managers/state/pace.ts";
import { KvStateStore } from "../managers/state/kv_store.ts";
import { openGateway } from "../managers/mod.ts";
import { facts, makeScaleSite } from "../scripts/_bench_scale.ts";

/** A clock the test moves, and sleeps that it ends. */
class FakeTime {
  ms = 1000;
  asked: number[] = [];
  #open: (Sleep & { ms: number })[] = [];
  now = () => this.ms;
  sleep = (ms: number): Sleep => {
    this.asked.push(ms);
    let wake!: () => void;
    const done = new Promise<void>((r) => (wake = r));
    const s = { ms, done, wake };
    this.#open.push(s);
    return s;
  };
  /** Ends the oldest sleep as if its time was up. */
  elapse(): void {
    const s = this.#open.shift()!;
    this.ms += s.ms;
    s.wake();
  }
  get sleeping(): number {
    return this.#open.length;
  }
}

Deno.test("pace: waits before each batch in proportion to the batch before, up to its limits", async () => {
  const t = new FakeTime();
  const pace = new WritePace({
    share: 0.2,
    maxPauseMs: 50,
    now: t.now,
    sleep: t.sleep,
  });
  // Not pacing: at once.
  await pace.between();
  assert.deepEqual(t.asked, []);
  pace.start(1000);
  assert(pace.pacing);
  // A batch of 5 ms: a share of 0.2 means 4 × 5 = 20 ms of wait.
  t.ms += 5;
  const first = pace.between();
  assert.equal(t.sleeping, 1);
  t.elapse();
  await first;
  // A batch of 30 ms would ask 120: the longest wait is 50.
  t.ms += 30;
  const second = pace.between();
  t.elapse();
  await second;
  // Less than a millisecond's wait is not made.
  t.ms += 0.1;
  await pace.between();
  assert.deepEqual(t.asked, [20, 50]);
  assert.equal(pace.waitedMs, 70);
  // Past its 1,000 ms of pacing, it runs unpaced.
  t.ms += 2000;
  await pace.between();
  assert(!pace.pacing);
  assert.deepEqual(t.asked, [20, 50]);
  assert.throws(() => new WritePace({ share: 0 }), /share must be/);
});

Deno.test("pace: a stop ends the wait under way and the pacing", async () => {
  const t = new FakeTime();
  const pace = new WritePace({ now: t.now, sleep: t.sleep });
  pace.start();
  t.ms += 10;
  let ended = false;
  const waiting = pace.between().then(() => (ended = true));
  await Promise.resolve();
  assert.equal(ended, false);
  pace.stop();
  await waiting;
  assert(ended && !pace.pacing);
  t.ms += 10;
  await pace.between();
  assert.equal(t.asked.length, 1);
});

/** A gateway over a site of `n` logged-in users, each with bytes to write. */
async function dirtySite(n: number, persistIntervalMs: number) {
  const site = await makeScaleSite(n, n);
  const store = await KvStateStore.open(site.state);
  const gateway = await openGateway(join(site.dir, "managers.toml"), {
    state: store,
    persistIntervalMs,
    syncIntervalMs: 0,
  });
  const now = new Date();
  for (let i = 0; i < n; i++) {
    const d = gateway.decide(facts(i, now));
    assert(!(d instanceof Promise) && d.allowed, `request ${i}`);
    d.meter?.chunk(1000 + i);
  }
  const cycle = await store.initLastReset("down", 0);
  return { site, store, gateway, cycle };
}

/** What the store holds for the site's users, as the makeScaleSite 1 MiB plus. */
async function written(path: string, n: number, cycle: number) {
  const check = await KvStateStore.open(path);
  try {
    const counters = await check.readConsumption("down", cycle);
    let right = 0;
    for (let i = 0; i < n; i++) {
      if (counters.get(`u${i}`) === 1024 * 1024 + 1000 + i) right++;
    }
    return right;
  } finally {
    await check.close();
  }
}

Deno.test("pace: a real gateway's periodic flush of 3,000 counters waits between its batches and writes every one", async () => {
  const n = 3000;
  const { site, store, gateway, cycle } = await dirtySite(n, 200);
  try {
    for (let i = 0; i < 200 && gateway.stats.flushSeconds.count === 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert(gateway.stats.flushSeconds.count > 0, "no periodic flush");
    assert(store.pace, "the gateway gives the store its pace");
    assert(store.pace.waitedMs > 0, "the periodic flush did not wait");
  } finally {
    await gateway.close();
  }
  assert.equal(await written(site.state, n, cycle), n);
  await Deno.remove(site.dir, { recursive: true });
});

Deno.test("pace: a shutdown in the middle of a paced flush ends it unpaced, and everything is written", async () => {
  const n = 3000;
  const { site, store, gateway, cycle } = await dirtySite(n, 100);
  try {
    // Wait for the periodic flush to be pacing, then stop.
    for (let i = 0; i < 400 && !store.pace?.pacing; i++) {
      await new Promise((r) => setTimeout(r, 5));
    }
    assert(store.pace?.pacing, "no paced flush seen");
  } finally {
    await gateway.close();
  }
  assert(!store.pace.pacing);
  assert.equal(await written(site.state, n, cycle), n);
  await Deno.remove(site.dir, { recursive: true });
});
