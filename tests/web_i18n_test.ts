/**
 * The pages' two catalogues (web/i18n/en.json, es.json): the same keys
 * with the same `{placeholders}`, every key used and every used key
 * there, and no visible text written anywhere else (the page templates,
 * app.js, the API's rendering).
 */
import assert from "node:assert/strict";
import { assets } from "../web/assets.ts";

const ROOT = new URL("../", import.meta.url);
const read = (path: string) => Deno.readTextFile(new URL(path, ROOT));

const catalogues: Record<string, Record<string, string>> = {
  en: JSON.parse(assets["/i18n/en.json"].body),
  es: JSON.parse(assets["/i18n/es.json"].body),
};

/** The `{name}` placeholders of a text, sorted. */
const placeholders = (text: string) =>
  [...text.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();

/** Where the code asks for a key: templates, app.js and api/ rendering. */
async function keysUsed(): Promise<Map<string, string>> {
  const used = new Map<string, string>();
  for (const file of ["web/index.html", "web/admin.html"]) {
    for (const m of (await read(file)).matchAll(/\{\{\s*([\w.-]+)\s*\}\}/g)) {
      used.set(m[1], file);
    }
  }
  for (const m of (await read("web/app.js")).matchAll(/\bt\(\s*"([\w.-]+)"/g)) {
    used.set(m[1], "web/app.js");
  }
  // A key chosen by a condition: t(cond ? "a" : "b").
  for (
    const m of (await read("web/app.js")).matchAll(
      /\bt\(\s*[^()"]+\?\s*"([\w.-]+)"\s*:\s*"([\w.-]+)"/g,
    )
  ) {
    used.set(m[1], "web/app.js").set(m[2], "web/app.js");
  }
  for (const file of ["api/_pages.ts", "api/_portal.ts"]) {
    const text = await read(file);
    for (
      const m of text.matchAll(
        /"((?:login|status|admin|error|language|nav)\.[\w.]+)"/g,
      )
    ) {
      used.set(m[1], file);
    }
  }
  return used;
}

Deno.test("i18n: English and Spanish have the same keys and placeholders, none empty", () => {
  const en = catalogues.en;
  const es = catalogues.es;
  assert.deepEqual(Object.keys(es).sort(), Object.keys(en).sort());
  for (const key of Object.keys(en)) {
    assert.notEqual(en[key].trim(), "", `en ${key}`);
    assert.notEqual(es[key].trim(), "", `es ${key}`);
    assert.deepEqual(placeholders(es[key]), placeholders(en[key]), key);
  }
  assert.equal(en["language.name"], "English");
  assert.equal(es["language.name"], "Español");
});

Deno.test("i18n: every key the pages use is in the catalogues, and every key is used", async () => {
  const used = await keysUsed();
  for (const [key, file] of used) {
    assert.ok(
      key in catalogues.en,
      `${file} uses "${key}", missing in en.json`,
    );
  }
  for (const key of Object.keys(catalogues.en)) {
    assert.ok(
      used.has(key),
      `"${key}" is in the catalogues but nothing uses it`,
    );
  }
});

Deno.test("i18n: the page templates write no text of their own", async () => {
  for (const file of ["web/index.html", "web/admin.html"]) {
    const html = (await read(file))
      .replace(/<!--[\s\S]*?-->/g, "")
      .replace(/<!doctype html>/i, "");
    // Text between tags: placeholders only (no letter of its own).
    for (const m of html.matchAll(/>([^<]*)</g)) {
      const text = m[1].replace(/\{\{[^}]*\}\}/g, "").trim();
      assert.doesNotMatch(
        text,
        /\p{L}/u,
        `${file}: text "${text}" outside the catalogues`,
      );
    }
    // Attributes people read (or hear).
    for (
      const m of html.matchAll(
        /\s(aria-label|title|placeholder|alt|value)="([^"]*)"/g,
      )
    ) {
      const text = m[2].replace(/\{\{[^}]*\}\}/g, "").trim();
      assert.doesNotMatch(
        text,
        /\p{L}/u,
        `${file}: ${m[1]}="${m[2]}" outside the catalogues`,
      );
    }
  }
});

Deno.test("i18n: app.js writes no sentence of its own", async () => {
  const code = (await read("web/app.js"))
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/^\s*\/\/.*$/gm, "")
    .replace(/\s\/\/\s.*$/gm, "");
  // Words of the wire protocol, not of the page.
  const protocol = new Set([
    '"use strict"',
    '"incorrect user name or password"',
    '"expired token"',
    '"empty JWT"',
  ]);
  for (const m of code.matchAll(/"[^"\n]*"|`[^`]*`|'[^'\n]*'/g)) {
    if (protocol.has(m[0])) continue;
    assert.doesNotMatch(
      m[0],
      /\p{L}{2,}\s+\p{L}{2,}/u,
      `app.js: ${m[0]} is text outside the catalogues`,
    );
  }
});

Deno.test("i18n: the Spanish catalogue is written in Spanish, with its accents", () => {
  const es = catalogues.es;
  // A few keys a translator could forget: they must not be the English text.
  for (const key of Object.keys(es)) {
    if (key.startsWith("admin.cmd.loggedUsers")) continue; // a command
    assert.notEqual(es[key], catalogues.en[key], `es ${key} is still English`);
  }
  assert.equal(es["login.password"], "Contraseña");
  assert.equal(es["status.logout"], "Cerrar sesión");
  assert.match(Object.values(es).join(" "), /[áéíóúñ]/);
});
