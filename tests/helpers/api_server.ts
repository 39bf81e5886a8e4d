/**
 * Starts the real HTTPS API (api/mod.ts) on 127.0.0.1 with a free port and
 * a fresh certificate in a temp dir, for api/ tests; posts commands with
 * the certificate pinned.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { apiConfigFrom } from "../../api/config.ts";
import { type RunningApi, startApi } from "../../api/mod.ts";
import type { Assets } from "../../api/app.ts";
import type { Gateway } from "../../managers/types.ts";
import type { Health } from "../../api/health.ts";

/** A running API for a test. */
export interface TestApi {
  api: RunningApi;
  /** `https://127.0.0.1:PORT` (no trailing slash). */
  origin: string;
  /** The config dir (holds cert.pem and key.pem). */
  dir: string;
  certFile: string;
  keyFile: string;
  /** Posts a body (an object is JSON-encoded) to /api/cmd, cert pinned. */
  post(
    body: unknown,
  ): Promise<{ status: number; text: string; headers: Headers }>;
  /**
   * Logs `user` in with the `open` command (of `manager`, default
   * "sessions"), from 127.0.0.1; answers the secret, and fails the test
   * unless it is a 200.
   */
  login(user: string, pass: string, manager?: string): Promise<string>;
  /** GETs a path, cert pinned. */
  get(
    path: string,
  ): Promise<{ status: number; text: string; headers: Headers }>;
  /** Any request to a path, cert pinned, redirects not followed. */
  fetch(
    path: string,
    init?: RequestInit,
  ): Promise<{ status: number; text: string; headers: Headers }>;
  /** Stops the server and removes the dir. */
  close(): Promise<void>;
}

/** Starts the API for `gateway` with `[api]` entries from `table`. */
export async function startTestApi(
  gateway: Gateway,
  options: {
    table?: Record<string, unknown>;
    assets?: Assets;
    dir?: string;
    /** Listen on this port of 127.0.0.1 (default: a free one). */
    port?: number;
    /** Listen on this `addr` instead (e.g. `":0"`: every address). */
    addr?: string;
    /** Passed to startApi. */
    clientIpOf?: (peer: Deno.NetAddr) => string | undefined;
    /** Passed to startApi (the PAC file's proxy port). */
    proxyPort?: () => number | undefined;
    /** Passed to startApi. */
    metrics?: () => string | Promise<string>;
    /** Passed to startApi. */
    health?: () => Health;
  } = {},
): Promise<TestApi> {
  const dir = options.dir ??
    await Deno.makeTempDir({ prefix: "pmproxy-api-" });
  const table = {
    ...(options.table ?? {}),
    server: { addr: options.addr ?? `127.0.0.1:${options.port ?? 0}` },
  };
  const config = apiConfigFrom(table, { file: "server.toml", configDir: dir });
  const api = await startApi(config, gateway, {
    assets: options.assets,
    logError: () => {},
    clientIpOf: options.clientIpOf,
    proxyPort: options.proxyPort,
    metrics: options.metrics,
    health: options.health,
  });
  const origin = `https://127.0.0.1:${api.addr.port}`;
  const client = Deno.createHttpClient({ caCerts: [api.certPem] });
  const send = async (path: string, init: RequestInit) => {
    const res = await fetch(`${origin}${path}`, { ...init, client });
    return { status: res.status, text: await res.text(), headers: res.headers };
  };
  const post = (body: unknown) =>
    send("/api/cmd", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
  return {
    api,
    origin,
    dir,
    certFile: join(dir, "cert.pem"),
    keyFile: join(dir, "key.pem"),
    post,
    login: async (user, pass, manager = "sessions") => {
      const res = await post({ cmd: "open", manager, cred: { user, pass } });
      assert.equal(res.status, 200, res.text);
      return res.text;
    },
    get: (path) => send(path, {}),
    fetch: (path, init = {}) => send(path, { redirect: "manual", ...init }),
    close: async () => {
      client.close();
      await api.close();
      if (!options.dir) await Deno.remove(dir, { recursive: true });
    },
  };
}
