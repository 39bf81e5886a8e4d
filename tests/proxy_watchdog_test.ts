/**
 * The watchdog's deadlines: expired watches run once and leave the list,
 * unwatched ones never run, and an expiry may unwatch another watch.
 */
import assert from "node:assert/strict";
import { unwatch, Watch, watch, watchedCount } from "../proxy/_watchdog.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("watches expire once, in any position of the list; unwatched ones never", async () => {
  const fired: string[] = [];
  const make = (name: string) =>
    new Watch((what) => fired.push(`${name}:${what}`));
  const a = make("a"), b = make("b"), c = make("c"), d = make("d");
  const before = watchedCount();
  for (const w of [a, b, c, d]) watch(w);
  watch(b); // watching twice changes nothing
  assert.equal(watchedCount(), before + 4);
  a.arm(10, "first");
  b.arm(10, "second");
  c.arm(60_000, "later");
  d.arm(10, "last");
  unwatch(b);
  assert.equal(watchedCount(), before + 3);
  for (let i = 0; i < 50 && fired.length < 2; i++) await sleep(20);
  await sleep(150);
  assert.deepEqual(fired.sort(), ["a:first", "d:last"]);
  assert.equal(a.expired, "first");
  assert.equal(b.expired, "");
  assert.equal(watchedCount(), before + 1, "only c is left");
  unwatch(c);
  unwatch(c);
  assert.equal(watchedCount(), before);
});

Deno.test("an expiry that unwatches the next watch does not stop the others from expiring", async () => {
  const fired: string[] = [];
  const at: number[] = [];
  const ws: Watch[] = [];
  for (let i = 0; i < 5; i++) {
    ws.push(
      new Watch(() => {
        fired.push(`w${i}`);
        at.push(performance.now());
        // Each expiry unwatches its neighbours, which are next in the list.
        if (ws[i - 1]) unwatch(ws[i - 1]);
        if (ws[i + 1]) unwatch(ws[i + 1]);
      }),
    );
  }
  const keep = new Watch(() => {
    fired.push("keep");
    at.push(performance.now());
  });
  watch(keep);
  for (const w of ws) watch(w);
  for (const w of ws) w.arm(10, "t");
  keep.arm(10, "t");
  for (let i = 0; i < 50 && !fired.includes("keep"); i++) await sleep(20);
  assert.ok(fired.includes("keep"), `the last watch expired too: ${fired}`);
  assert.ok(fired.length >= 2);
  // One walk of the list (ticks are 100 ms apart) expired them all.
  assert.ok(
    Math.max(...at) - Math.min(...at) < 50,
    `all in one tick: ${at.map((t) => (t - at[0]).toFixed(0))}`,
  );
  assert.equal(new Set(fired).size, fired.length, "nothing ran twice");
  for (const w of ws) unwatch(w);
  assert.equal(watchedCount(), 0);
});

Deno.test("walks are skipped until the soonest deadline, yet one set sooner runs out on time", async () => {
  // The walks while only `far` is watched note its deadline, a minute away;
  // each deadline set sooner afterwards (by arm, by the hot path's plain
  // store, or before its watch joins) must still be found at the next
  // ticks, not with `far`.
  const fired: string[] = [];
  const far = new Watch(() => fired.push("far"));
  watch(far);
  far.arm(60_000, "far");
  await sleep(250);
  const soon = new Watch(() => fired.push("armed"));
  watch(soon);
  soon.arm(20, "armed");
  const stored = new Watch(() => fired.push("stored"));
  watch(stored);
  stored.deadline = Date.now() + 20;
  const joined = new Watch(() => fired.push("joined"));
  joined.arm(20, "joined");
  await sleep(150);
  watch(joined);
  // Waited for at most 5 s: missed, they would run out with `far`, in a
  // minute. (No bound on how soon: a busy machine may delay the ticks.)
  for (let i = 0; i < 250 && fired.length < 3; i++) await sleep(20);
  assert.deepEqual(fired.sort(), ["armed", "joined", "stored"]);
  unwatch(far);
  assert.equal(watchedCount(), 0);
});
