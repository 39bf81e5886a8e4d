/**
 * The API's Hono app: `POST /api/cmd` (the original's protocol, see
 * `cmd.ts`), the login form without JavaScript (`POST /login`, `POST
 * /logout`, see `_portal.ts`), the proxy auto-configuration
 * (`/proxy.pac`, `/wpad.dat`, see `pac.ts`), `GET /metrics` (Prometheus,
 * see `metrics.ts`; this machine and `[api] metricsAllow` only), `GET
 * /healthz` (see `health.ts`), and the web pages (files from
 * `webStaticFilesDir` when it exists, then the embedded pages, rendered in
 * the visitor's language; `/` and the excluded routes get the web app's
 * index page).
 *
 * @module
 */
import { Hono } from "hono";
import type { Context } from "hono";
import { serveStatic } from "hono/deno";
import {
  type Cidr,
  cidrContains,
  type Gateway,
  normalizeIp,
  parseCidr,
  parseIp,
} from "../managers/mod.ts";
import type { Health } from "./health.ts";
import {
  errorAnswer,
  parseCmdBody,
  type ReloadReport,
  runCommand,
} from "./cmd.ts";
import { languagesFrom } from "./_i18n.ts";
import { portalRoutes } from "./_portal.ts";
import { PAC_TYPE, pacScript } from "./pac.ts";
import { ownHost, type PacDirect } from "./pac_direct.ts";
import { after } from "../proxy/timers.ts";

/** Embedded web files keyed by URL path (`"/index.html"`, `"/app.js"`). */
export type Assets = Record<string, { type: string; body: string }>;

/** How the app is put together. */
export interface AppOptions {
  /** The embedded web pages. */
  assets?: Assets;
  /** Paths the web app handles itself: answered with `/index.html`. */
  excludedRoutes?: string[];
  /** A directory whose files are served before the embedded ones. */
  webStaticFilesDir?: string;
  /**
   * The client IP of a request. Default: the TCP peer of `Deno.serve`'s
   * handler info (`c.env.remoteAddr`).
   */
  clientIp?: (c: Context) => string;
  /** Where unexpected errors are reported (default `console.error`). */
  logError?: (message: string) => void;
  /**
   * How long an `/api/cmd` body may take to arrive (`[api.server]
   * readTimeout`); a client that stops sending gets 408. Default: no limit.
   */
  readTimeoutMs?: number;
  /** What `/proxy.pac` needs; without it the PAC is not served. */
  pac?: PacSource;
  /** The text of `GET /metrics`; no such page when absent. */
  metrics?: () => string | Promise<string>;
  /** Who may read `/metrics` besides loopback addresses (`[api] metricsAllow`). */
  metricsAllow?: Cidr[];
  /** The answer of `GET /healthz`; no such page when absent. */
  health?: () => Health;
  /** The `reload` command (administrators); none when absent. */
  reload?: () => Promise<ReloadReport>;
}

/** This machine: who may always read `/metrics`. */
const LOOPBACK: Cidr[] = [parseCidr("127.0.0.0/8"), parseCidr("::1")] as Cidr[];

/** True when `ip` is a loopback address or in one of `allowed`. */
function mayReadMetrics(ip: string, allowed: Cidr[]): boolean {
  const bytes = parseIp(ip);
  if (bytes === undefined) return false;
  return LOOPBACK.some((c) => cidrContains(c, bytes)) ||
    allowed.some((c) => cidrContains(c, bytes));
}

/** Where the PAC file's proxy is and what goes DIRECT. */
export interface PacSource {
  /**
   * The proxy's port; read per request because the proxy starts after the
   * API (its captive-portal exception needs the API's port). Undefined
   * while it is not listening.
   */
  proxyPort: () => number | undefined;
  /**
   * The proxy's host as clients reach it: the host of `[api] publicUrl`
   * when it is set. Undefined: the host the PAC was asked from.
   */
  proxyHost?: string;
  /** The API's own hosts (publicUrl, listen address): DIRECT. */
  ownHosts: string[];
  /** `[api] pacDirect`. */
  direct: PacDirect[];
}

/** The largest `/api/cmd` body read, in bytes. */
const MAX_BODY = 64 * 1024;

function peerIp(c: Context): string {
  const info = c.env as { remoteAddr?: { hostname?: string } } | undefined;
  const ip = info?.remoteAddr?.hostname;
  if (!ip) throw new Error("the client address is unknown (no remoteAddr)");
  return normalizeIp(ip);
}

/** The body as text, or what kept it from being read whole. */
async function readLimited(
  body: ReadableStream<Uint8Array> | null,
  max: number,
  timeoutMs?: number,
): Promise<string | { tooLarge: true } | { timedOut: true }> {
  if (!body) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = body.getReader();
  let timedOut = false;
  // Cancelling ends the pending read: a client that stops sending does not
  // hold the handler (and its memory) forever.
  const timer = timeoutMs === undefined ? undefined : after(timeoutMs, () => {
    timedOut = true;
    reader.cancel().catch(() => {});
  });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (timedOut) return { timedOut: true };
      if (done) break;
      size += value.length;
      if (size > max) return { tooLarge: true };
      chunks.push(value);
    }
  } finally {
    timer?.cancel();
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    all.set(chunk, at);
    at += chunk.length;
  }
  return new TextDecoder().decode(all);
}

function isDirectory(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

/** Builds the app for `gateway`. */
export function createApp(gateway: Gateway, options: AppOptions = {}): Hono {
  const assets = options.assets ?? {};
  const excluded = options.excludedRoutes ?? [];
  const isExcluded = (path: string) =>
    excluded.some((r) => path === r || path.startsWith(r + "/"));
  const clientIp = options.clientIp ?? peerIp;
  const logError = options.logError ?? ((m: string) => console.error(m));
  const app = new Hono();
  const languages = languagesFrom(assets);

  app.use("*", async (c, next) => {
    await next();
    c.header("X-Content-Type-Options", "nosniff");
    c.header("X-Frame-Options", "DENY");
    // No referrer for other sites; "no-referrer" would also make browsers
    // send "Origin: null" with our own forms, which the login and logout
    // forms' cross-site check (_portal.ts) needs to read.
    c.header("Referrer-Policy", "same-origin");
    c.header("Cross-Origin-Opener-Policy", "same-origin");
    if (!c.res.headers.has("Content-Security-Policy")) {
      c.header(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
      );
    }
  });

  app.onError((err, c) => {
    logError(
      `pmproxy: API: ${c.req.method} ${c.req.path}: unexpected error: ${
        err instanceof Error ? err.stack ?? err.message : String(err)
      }`,
    );
    c.header("Cache-Control", "no-store");
    return c.json({
      message: `internal error: ${
        err instanceof Error ? err.message : String(err)
      }; the server log has the details`,
    }, 500);
  });

  app.post("/api/cmd", async (c) => {
    c.header("Cache-Control", "no-store");
    const tooLarge = (size: string) => {
      const a = errorAnswer({
        message: `the body is too large (${size}at most ${MAX_BODY} bytes)`,
      });
      return c.body(a.body, 413, { "Content-Type": a.type });
    };
    const declared = Number(c.req.header("Content-Length") ?? "0");
    if (declared > MAX_BODY) return tooLarge(`${declared} bytes; `);
    const text = await readLimited(
      c.req.raw.body,
      MAX_BODY,
      options.readTimeoutMs,
    );
    if (typeof text !== "string") {
      if ("tooLarge" in text) return tooLarge("");
      const a = errorAnswer({
        message: `the body did not arrive within ${
          options.readTimeoutMs! / 1000
        }s ([api.server] readTimeout)`,
      });
      return c.body(a.body, 408, { "Content-Type": a.type });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      const a = errorAnswer({
        message: `malformed JSON: ${e instanceof Error ? e.message : e}`,
      });
      return c.body(a.body, a.status, { "Content-Type": a.type });
    }
    const body = parseCmdBody(parsed);
    const answer = "cmd" in body
      ? await runCommand(gateway, clientIp(c), body, {
        reload: options.reload,
      })
      : body;
    const headers: Record<string, string> = { "Content-Type": answer.type };
    if (answer.retryAfter !== undefined) {
      headers["Retry-After"] = String(answer.retryAfter);
    }
    return c.body(answer.body, answer.status, headers);
  });

  app.all("/api/cmd", (c) => {
    c.header("Cache-Control", "no-store");
    c.header("Allow", "POST");
    return c.json({
      message:
        `use POST /api/cmd with a JSON body like {"cmd":"discover","manager":"rules"}`,
    }, 405);
  });

  const pages = portalRoutes(app, gateway, {
    loginTemplate: assets["/index.html"]?.body,
    languages,
    clientIp,
    readBody: async (c) => {
      const text = await readLimited(
        c.req.raw.body,
        MAX_BODY,
        options.readTimeoutMs,
      );
      return typeof text === "string" ? text : undefined;
    },
  });

  const pac = options.pac;
  const proxyAutoConfig = (c: Context) => {
    const port = pac?.proxyPort();
    if (!pac || port === undefined) {
      c.header("Cache-Control", "no-store");
      return c.text(
        "pmproxy: no proxy is known to this API, so there is no PAC file\n",
        404,
      );
    }
    const asked = new URL(c.req.url).hostname.replace(/^\[|\]$/g, "");
    const direct = [...pac.ownHosts, asked].map(ownHost).filter((
      d,
    ): d is PacDirect => d !== undefined);
    c.header("Cache-Control", "no-cache");
    return c.body(
      pacScript({
        proxyHost: pac.proxyHost ?? asked,
        proxyPort: port,
        direct: [...direct, ...pac.direct],
      }),
      200,
      { "Content-Type": PAC_TYPE },
    );
  };
  // What the login page needs, for anyone: the names of the session and
  // quota managers (the JavaScript page finds them here when the rule does
  // not reach them for this address).
  app.get("/api/portal", (c) => {
    c.header("Cache-Control", "no-store");
    return c.json(gateway.portal());
  });
  const metrics = options.metrics;
  if (metrics) {
    const allowed = options.metricsAllow ?? [];
    app.get("/metrics", async (c) => {
      c.header("Cache-Control", "no-store");
      const ip = clientIp(c);
      if (!mayReadMetrics(ip, allowed)) {
        return c.text(
          `pmproxy: /metrics is open to this machine and to the ranges of [api] metricsAllow in server.toml; ${ip} is in none of them\n`,
          403,
        );
      }
      return c.body(await metrics(), 200, {
        "Content-Type": "text/plain; version=0.0.4; charset=utf-8",
      });
    });
  }
  const health = options.health;
  if (health) {
    app.get("/healthz", (c) => {
      c.header("Cache-Control", "no-store");
      const h = health();
      return h.ok
        ? c.text("ok\n", 200)
        : c.text(`unhealthy: ${h.reason}\n`, 503);
    });
  }
  app.get("/proxy.pac", proxyAutoConfig);
  app.get("/wpad.dat", proxyAutoConfig);

  const staticDir = options.webStaticFilesDir;
  if (staticDir !== undefined) {
    // Checked per request: the directory may appear after the start.
    const fromDisk = serveStatic({ root: staticDir });
    // The excluded routes belong to the web app in that directory: its
    // index page answers them (the embedded one when it has none).
    const indexFromDisk = serveStatic({ root: staticDir, path: "index.html" });
    app.use("*", async (c, next) => {
      if (c.req.path.startsWith("/api/") || !isDirectory(staticDir)) {
        return await next();
      }
      c.header("Cache-Control", "no-cache");
      if (isExcluded(c.req.path)) {
        return await indexFromDisk(c, next);
      }
      return await fromDisk(c, next);
    });
  }

  app.get("*", (c) => {
    const path = c.req.path;
    if (
      path === "/" || path === "/index.html" || path === "/status" ||
      isExcluded(path)
    ) {
      return pages.loginPage(c);
    }
    const asset = assets[path];
    if (asset && asset.type.startsWith("text/html")) {
      return pages.plainPage(c, asset.body);
    }
    if (asset) {
      c.header("Cache-Control", "no-cache");
      return c.body(asset.body, 200, { "Content-Type": asset.type });
    }
    return c.text(`pmproxy: ${path} not found\n`, 404);
  });

  return app;
}
