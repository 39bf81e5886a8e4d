/**
 * web/assets.ts embeds the page files as they are on disk, with the right
 * content types, and `deno bundle` (the stand-in for `deno compile`'s
 * module graph) carries their content.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { assets } from "../web/assets.ts";

const WEB = new URL("../web/", import.meta.url);

Deno.test("web assets: every page file is embedded as it is on disk", async () => {
  const files: Record<string, [string, string]> = {
    "/index.html": ["index.html", "text/html; charset=utf-8"],
    "/status": ["index.html", "text/html; charset=utf-8"],
    "/admin.html": ["admin.html", "text/html; charset=utf-8"],
    "/admin": ["admin.html", "text/html; charset=utf-8"],
    "/app.js": ["app.js", "text/javascript; charset=utf-8"],
    "/chart.js": ["chart.js", "text/javascript; charset=utf-8"],
    "/style.css": ["style.css", "text/css; charset=utf-8"],
    "/i18n/en.json": ["i18n/en.json", "application/json; charset=utf-8"],
    "/i18n/es.json": ["i18n/es.json", "application/json; charset=utf-8"],
  };
  assert.deepEqual(Object.keys(assets).sort(), Object.keys(files).sort());
  for (const [path, [file, type]] of Object.entries(files)) {
    const disk = await Deno.readTextFile(new URL(file, WEB));
    assert.equal(assets[path].body, disk, `${path} is ${file}`);
    assert.equal(assets[path].type, type, `${path}'s type`);
  }
});

Deno.test("web assets: the pages load nothing from outside and run no inline script", () => {
  for (const [path, { body }] of Object.entries(assets)) {
    assert.doesNotMatch(body, /(src|href)=["']?(https?:)?\/\//i, path);
    assert.doesNotMatch(body, /@import|url\(\s*["']?https?:/i, path);
    if (path.endsWith(".html") || !path.includes(".")) {
      // The API's Content-Security-Policy allows scripts from 'self' only.
      assert.doesNotMatch(body, /<script(?![^>]*\bsrc=)[^>]*>/i, path);
      assert.doesNotMatch(body, /\son[a-z]+=/i, `${path}: inline handler`);
    }
  }
});

Deno.test("web assets: deno bundle carries the pages", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pmproxy-web-bundle-" });
  try {
    const out = join(dir, "b.js");
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "-q", "-o", out, "web/assets.ts"],
      cwd: new URL("..", import.meta.url),
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.equal(code, 0, new TextDecoder().decode(stderr));
    const { assets: bundled } = await import(`file://${out}`);
    assert.deepEqual(bundled, assets);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
