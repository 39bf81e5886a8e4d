/** The configuration's own path functions against node:path's POSIX ones. */
import assert from "node:assert/strict";
import { posix } from "node:path";
import fc from "fast-check";
import {
  basename,
  dirname,
  inDir,
  isAbsolute,
  join,
  normalize,
} from "../managers/config/paths.ts";

// Paths made of the pieces that matter: slashes, dots, names.
const piece = fc.constantFrom(
  "/",
  "//",
  ".",
  "..",
  "a",
  "b.toml",
  "c d",
  "...",
);
const path = fc.array(piece, { maxLength: 8 }).map((p) => p.join(""));
const segmented = fc.array(piece, { maxLength: 6 }).map((p) => p.join("/"));
const anyPath = fc.oneof(path, segmented, fc.string({ maxLength: 12 }));

Deno.test("paths: normalize, join, dirname, basename and isAbsolute write what node:path's posix writes", () => {
  fc.assert(
    fc.property(anyPath, anyPath, anyPath, (a, b, c) => {
      assert.equal(normalize(a), posix.normalize(a), `normalize ${a}`);
      assert.equal(join(a, b, c), posix.join(a, b, c), `join ${a} ${b} ${c}`);
      assert.equal(dirname(a), posix.dirname(a), `dirname ${a}`);
      assert.equal(basename(a), posix.basename(a), `basename ${a}`);
      assert.equal(isAbsolute(a), posix.isAbsolute(a), `isAbsolute ${a}`);
    }),
    { numRuns: 5000, seed: 14 },
  );
  assert.equal(join(), ".");
  assert.equal(join("/etc/pmproxy/", "./state.kv"), "/etc/pmproxy/state.kv");
  assert.equal(inDir("/etc/pmproxy", "../log/a.log"), "/etc/log/a.log");
  assert.equal(inDir("/etc/pmproxy", "/var/log/a.log"), "/var/log/a.log");
});
