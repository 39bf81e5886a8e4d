/**
 * `GET /metrics`: the registry of what the Prometheus text is made of (the
 * proxy's and the gateway's counters, read at each scrape, and the
 * counters kept here). The text itself is made by api/_metrics_text.ts,
 * which lists the families and is loaded at the first scrape.
 *
 * ```ts
 * const metrics = new MetricsRegistry(buildInfo);
 * metrics.gateway = gateway;        // its snapshot() is read at each scrape
 * metrics.proxy = proxy.stats;      // read as it is
 * metrics.countReload("ok");        // a reload of the configuration
 * metrics.countLoginThrottle();     // a login refused for coming too often
 * await metrics.render();           // "# HELP pmproxy_build_info ..."
 * ```
 *
 * @module
 */
import type { GatewaySnapshot } from "../managers/mod.ts";
import type { BuildInfo } from "./build_info.ts";
import type { MetricsSource, ProxyCounters } from "./_metrics_text.ts";

export type { ProxyCounters };

/** Where the metrics come from, and the counters kept here. */
export class MetricsRegistry implements MetricsSource {
  /** The proxy's counters, once it runs. */
  proxy: Readonly<ProxyCounters> | undefined = undefined;
  /** The gateway, read at every scrape. */
  gateway: { snapshot(): GatewaySnapshot } | undefined = undefined;
  /** Reloads of the configuration, by result. */
  readonly reloads = { ok: 0, error: 0 };
  /**
   * Logins refused for coming too often, counted here by a throttle that
   * has the registry (in api/ or main.ts); one inside managers/ counts
   * `GatewayStats.loginThrottles` instead. The metric is their sum.
   */
  loginThrottles = 0;

  #build: BuildInfo | (() => BuildInfo);

  /**
   * `build`: what this pmproxy is, or a function that tells it at the
   * first render (from the source, that asks git: a start spawns nothing).
   * `startTimeMs`: when the process started (ms since the epoch; default
   * `performance.timeOrigin`).
   */
  constructor(
    build: BuildInfo | (() => BuildInfo),
    readonly startTimeMs: number = performance.timeOrigin,
  ) {
    this.#build = build;
  }

  /** What this pmproxy is (see the constructor). */
  get build(): BuildInfo {
    if (typeof this.#build === "function") this.#build = this.#build();
    return this.#build;
  }

  /** Counts one reload of the configuration that worked or failed. */
  countReload(result: "ok" | "error"): void {
    this.reloads[result]++;
  }

  /** Counts one login refused for coming too often. */
  countLoginThrottle(): void {
    this.loginThrottles++;
  }

  /** Everything, in the Prometheus text format. */
  async render(): Promise<string> {
    const { renderMetrics } = await import("./_metrics_text.ts");
    return renderMetrics(this);
  }
}
