import assert from "node:assert/strict";
import { KnownWrites } from "../managers/state/_known_writes.ts";

Deno.test("known writes: in step through own writes one past each, out of step at a gap", () => {
  const k = new KnownWrites();
  assert.equal(k.at("a"), undefined, "never read");
  k.wrote("a", 1);
  assert.equal(k.at("a"), undefined, "a write before any read");
  k.read("a", "7");
  assert.equal(k.at("a"), 7);
  k.wrote("a", 8);
  k.wrote("a", "9");
  assert.equal(k.at("a"), 9, "own writes, one past each");
  k.wrote("a", 11);
  assert.equal(k.at("a"), undefined, "someone wrote in between");
  k.wrote("a", 12);
  assert.equal(k.at("a"), undefined, "stays out of step until read");
  k.read("a", 12);
  assert.equal(k.at("a"), 12);
  k.wrote("a", 12);
  assert.equal(k.at("a"), undefined, "an answer not past it");
});

Deno.test("known writes: a count is known in the scope it was read in, and per key", () => {
  const k = new KnownWrites();
  k.read("c", 3, "1000");
  assert.equal(k.at("c", "1000"), 3);
  assert.equal(k.at("c", "2000"), undefined, "another cycle");
  assert.equal(k.at("c"), undefined, "no scope");
  k.wrote("c", 4);
  assert.equal(k.at("c", "1000"), 4, "a write keeps the scope");
  k.read("s", 5);
  assert.equal(k.at("s"), 5);
  assert.equal(k.at("c", "1000"), 4, "keys apart");
});

Deno.test("known writes: no counter, or one that is not an integer, is not known", () => {
  const k = new KnownWrites();
  k.read("a", 5);
  k.read("a", null);
  assert.equal(k.at("a"), undefined, "no counter");
  k.read("a", "x");
  assert.equal(k.at("a"), undefined, "not a number");
  k.read("a", 1.5);
  assert.equal(k.at("a"), undefined, "not an integer");
  k.read("a", 2);
  k.wrote("a", undefined);
  assert.equal(k.at("a"), undefined, "no answer");
});

Deno.test("known writes: a count is known for maxAgeMs after the whole read, through writes, then read again", () => {
  let now = 1_000_000;
  const k = new KnownWrites({ maxAgeMs: 300_000, now: () => now });
  k.read("a", 1);
  now += 299_999;
  k.wrote("a", 2);
  assert.equal(k.at("a"), 2, "just within");
  now += 1;
  assert.equal(k.at("a"), undefined, "a whole read is due");
  k.read("a", 2);
  assert.equal(k.at("a"), 2, "read again");
});
