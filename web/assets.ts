/**
 * The built-in web pages, embedded in the program: `deno compile` and
 * `deno bundle` include files imported as text, so the executable needs no
 * web directory. The API serves them by URL path (see `api/app.ts`); the
 * HTML files are templates it fills in the visitor's language from the
 * catalogues `/i18n/en.json` and `/i18n/es.json` (see `api/_pages.ts`),
 * which app.js loads too.
 *
 * @example
 * ```ts
 * import { assets } from "./assets.ts";
 * const page = assets["/index.html"]; // { type: "text/html; …", body: "<!doctype html>…" }
 * ```
 *
 * @module
 */
import indexHtml from "./index.html" with { type: "text" };
import adminHtml from "./admin.html" with { type: "text" };
import appJs from "./app.js" with { type: "text" };
import chartJs from "./chart.js" with { type: "text" };
import styleCss from "./style.css" with { type: "text" };
import enJson from "./i18n/en.json" with { type: "text" };
import esJson from "./i18n/es.json" with { type: "text" };

const HTML = "text/html; charset=utf-8";
const JSON_TYPE = "application/json; charset=utf-8";

/**
 * Embedded web files keyed by URL path. `/status` and `/admin` are the
 * same pages as `/index.html` and `/admin.html` under friendlier paths.
 */
export const assets: Record<string, { type: string; body: string }> = {
  "/index.html": { type: HTML, body: indexHtml },
  "/status": { type: HTML, body: indexHtml },
  "/admin.html": { type: HTML, body: adminHtml },
  "/admin": { type: HTML, body: adminHtml },
  "/app.js": { type: "text/javascript; charset=utf-8", body: appJs },
  // The usage charts: app.js imports them; the API renders them too.
  "/chart.js": { type: "text/javascript; charset=utf-8", body: chartJs },
  "/style.css": { type: "text/css; charset=utf-8", body: styleCss },
  "/i18n/en.json": { type: JSON_TYPE, body: enJson },
  "/i18n/es.json": { type: JSON_TYPE, body: esJson },
};
