/**
 * A temporary directory with a `managers.toml` and a real Deno KV file, a
 * clock tests move by hand, and request facts, for the policy's tests.
 *
 * @module
 */
import { join } from "node:path";
import type { Meter, RequestFacts } from "../../proxy/policy.ts";
import { type GatewayRuntime, openGateway } from "../../managers/mod.ts";

/** The original README's managers.toml, word for word. */
import { README_MANAGERS_TOML } from "./config_dir.ts";
export const README_TOML = README_MANAGERS_TOML;

/** A clock the test sets and advances. */
export class TestClock {
  constructor(public ms = Date.parse("2026-03-02T10:00:00Z")) {}
  now = (): Date => new Date(this.ms);
  advance(ms: number): void {
    this.ms += ms;
  }
}

/** A temp dir holding managers.toml and state.kv. */
export class PolicyDir {
  readonly gateways: GatewayRuntime[] = [];
  private constructor(readonly dir: string, readonly clock: TestClock) {}

  static async make(toml: string, clock = new TestClock()): Promise<PolicyDir> {
    const dir = await Deno.makeTempDir({ prefix: "pmproxy-managers-" });
    await Deno.writeTextFile(join(dir, "managers.toml"), toml);
    return new PolicyDir(dir, clock);
  }

  get managersPath(): string {
    return join(this.dir, "managers.toml");
  }

  get kvPath(): string {
    return join(this.dir, "state.kv");
  }

  /**
   * Opens a gateway over this directory (closed by {@link cleanup}), with
   * no periodic flush unless `persistIntervalMs` is given, and no
   * near-quota sync unless `syncIntervalMs` is.
   */
  async open(
    persistIntervalMs = 0,
    syncIntervalMs = 0,
  ): Promise<GatewayRuntime> {
    const g = await openGateway(this.managersPath, {
      state: this.kvPath,
      persistIntervalMs,
      syncIntervalMs,
      loginUrl: "https://gw.test:4443",
      clock: this.clock.now,
    });
    this.gateways.push(g);
    return g;
  }

  async cleanup(): Promise<void> {
    for (const g of this.gateways) await g.close();
    await Deno.remove(this.dir, { recursive: true });
  }
}

/** Request facts from a client IP at the clock's time. */
export function request(
  clientIp: string,
  clock: TestClock,
  url = "http://example.org/",
): RequestFacts {
  const u = new URL(url);
  return {
    clientIp,
    time: clock.now(),
    method: "GET",
    url,
    host: u.hostname,
    port: Number(u.port || 80),
  };
}

/**
 * Feeds a meter chunks (64 KiB by default) as a download does, until it
 * stops one (that chunk is not taken) or `bytes` are taken; answers the
 * bytes taken.
 */
export function download(
  meter: Meter,
  bytes: number,
  chunk = 64 * 1024,
): number {
  let got = 0;
  for (let i = 0; i < 100_000 && got < bytes; i++) {
    const n = Math.min(chunk, bytes - got);
    if (meter.chunk(n) < 0) break;
    got += n;
  }
  return got;
}
