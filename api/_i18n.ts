/**
 * The pages' languages: the catalogues embedded with the pages (the assets
 * `/i18n/LANG.json`, one object of texts by key), which language a request
 * gets (`?lang=`, then the remembered choice, then `Accept-Language`), and
 * the text of a key.
 *
 * @module
 */

/** The texts of one language, by key (`"login.submit": "Log in"`). */
export type Catalogue = Record<string, string>;

/** The languages the pages exist in. */
export interface Languages {
  /** Language tag (`"en"`, `"es"`) → its catalogue. */
  catalogues: Map<string, Catalogue>;
  /** The language of a visitor whose browser asks for none of them. */
  fallback: string;
}

/** The language pages are in when nothing else decides. */
const FALLBACK = "en";

/**
 * The catalogues among the embedded files (`/i18n/en.json`, …). A file
 * that is not a JSON object of strings is a bug of the build: it throws.
 */
export function languagesFrom(
  files: Record<string, { body: string }>,
): Languages {
  const catalogues = new Map<string, Catalogue>();
  for (const [path, file] of Object.entries(files)) {
    const m = /^\/i18n\/([a-z]{2,3})\.json$/.exec(path);
    if (!m) continue;
    const parsed: unknown = JSON.parse(file.body);
    if (
      typeof parsed !== "object" || parsed === null || Array.isArray(parsed) ||
      !Object.values(parsed).every((v) => typeof v === "string")
    ) {
      throw new Error(`${path} must be a JSON object of texts by key`);
    }
    catalogues.set(m[1], parsed as Catalogue);
  }
  const fallback = catalogues.has(FALLBACK)
    ? FALLBACK
    : [...catalogues.keys()][0] ?? FALLBACK;
  return { catalogues, fallback };
}

/** What decides a request's language, strongest first. */
export interface LanguageChoice {
  /** `?lang=` of the request: the switch on the page was used. */
  query?: string;
  /** The remembered choice (a cookie). */
  remembered?: string;
  /** The `Accept-Language` header. */
  acceptLanguage?: string;
}

/** The language tags of an `Accept-Language` header, preferred first. */
function acceptedTags(header: string): string[] {
  const weighted: { tag: string; q: number; at: number }[] = [];
  for (const [at, part] of header.split(",").entries()) {
    const [tag, ...params] = part.trim().toLowerCase().split(";");
    if (!tag) continue;
    let q = 1;
    for (const p of params) {
      const m = /^\s*q\s*=\s*([0-9.]+)\s*$/.exec(p);
      if (m) q = Number(m[1]);
    }
    if (q > 0 && Number.isFinite(q)) weighted.push({ tag, q, at });
  }
  weighted.sort((a, b) => b.q - a.q || a.at - b.at);
  return weighted.map((w) => w.tag);
}

/** The language a request's page is rendered in. */
export function chooseLanguage(
  languages: Languages,
  choice: LanguageChoice,
): string {
  const has = (tag: string | undefined) =>
    tag !== undefined && languages.catalogues.has(tag);
  if (has(choice.query)) return choice.query!;
  if (has(choice.remembered)) return choice.remembered!;
  for (const tag of acceptedTags(choice.acceptLanguage ?? "")) {
    // "es-CU" is served by "es"; "*" by the fallback.
    const primary = tag === "*" ? languages.fallback : tag.split("-")[0];
    if (has(primary)) return primary;
  }
  return languages.fallback;
}

/**
 * The text of `key` in `catalogue` with each `{name}` replaced by
 * `params[name]`. A key missing from the catalogue shows as the key (the
 * catalogue test keeps that from shipping).
 */
export function translate(
  catalogue: Catalogue,
  key: string,
  params: Record<string, string | number> = {},
): string {
  const text = catalogue[key] ?? key;
  return text.replace(
    /\{(\w+)\}/g,
    (whole, name: string) => name in params ? String(params[name]) : whole,
  );
}
