/**
 * The API's Hono app: `POST /api/cmd` (the original's protocol, see
 * `cmd.ts`), `GET /metrics` (Prometheus, see `metrics.ts`; this machine and
 * `[api] metricsAllow` only) and `GET /healthz` (see `health.ts`), and the
 * web pages (files from `webStaticFilesDir` when it exists, then the
 * embedded pages; `/` and the excluded routes get the web app's index
 * page).
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
import { errorAnswer, parseCmdBody, runCommand } from "./cmd.ts";
import type { Health } from "./health.ts";

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
  /** The text of `GET /metrics`; no such page when absent. */
  metrics?: () => string;
  /** Who may read `/metrics` besides loopback addresses (`[api] metricsAllow`). */
  metricsAllow?: Cidr[];
  /** The answer of `GET /healthz`; no such page when absent. */
  health?: () => Health;
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
  const timer = timeoutMs === undefined ? undefined : setTimeout(() => {
    timedOut = true;
    reader.cancel().catch(() => {});
  }, timeoutMs);
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
    clearTimeout(timer);
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

  app.use("*", async (c, next) => {
    await next();
    c.header("X-Content-Type-Options", "nosniff");
    c.header("X-Frame-Options", "DENY");
    c.header("Referrer-Policy", "no-referrer");
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
      ? await runCommand(gateway, clientIp(c), body)
      : body;
    return c.body(answer.body, answer.status, { "Content-Type": answer.type });
  });

  app.all("/api/cmd", (c) => {
    c.header("Cache-Control", "no-store");
    c.header("Allow", "POST");
    return c.json({
      message:
        `use POST /api/cmd with a JSON body like {"cmd":"discover","manager":"rules"}`,
    }, 405);
  });

  const metrics = options.metrics;
  if (metrics) {
    const allowed = options.metricsAllow ?? [];
    app.get("/metrics", (c) => {
      c.header("Cache-Control", "no-store");
      const ip = clientIp(c);
      if (!mayReadMetrics(ip, allowed)) {
        return c.text(
          `pmproxy: /metrics is open to this machine and to the ranges of [api] metricsAllow in server.toml; ${ip} is in none of them\n`,
          403,
        );
      }
      return c.body(metrics(), 200, {
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

  const index = (c: Context) => {
    const page = assets["/index.html"];
    if (!page) return c.text("pmproxy: no web pages in this build\n", 404);
    c.header("Cache-Control", "no-cache");
    return c.body(page.body, 200, { "Content-Type": page.type });
  };

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
    if (path === "/" || isExcluded(path)) {
      return index(c);
    }
    const asset = assets[path];
    if (asset) {
      c.header("Cache-Control", "no-cache");
      return c.body(asset.body, 200, { "Content-Type": asset.type });
    }
    return c.text(`pmproxy: ${path} not found\n`, 404);
  });

  return app;
}
