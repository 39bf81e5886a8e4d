/**
 * The API client used by the command line: posts the original's commands
 * to `<server>/api/cmd`, trusting the server's certificate on first use
 * (remembered in a known-servers file, then pinned; a changed certificate
 * is refused) or pinning a given one (`caFile`), and renewing an expired
 * session secret by itself.
 *
 * ```ts
 * import { ApiClient } from "./client.ts";
 * const client = new ApiClient("https://localhost:4443");
 * const answer = await client.cmd({ cmd: "discover", manager: "rules" });
 * client.close();
 * ```
 *
 * @module
 */
import type { CmdBody } from "./cmd.ts";
import {
  defaultKnownServersFile,
  readKnownServers,
  rememberServer,
} from "./_known_servers.ts";
import {
  fetchPeerCertificate,
  fingerprint,
  pemToDer,
} from "./_peer_certificate.ts";
import { type Pin, postPinned } from "./_pinned_post.ts";

/** An answer other than 200 from the API. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
    readonly json: Record<string, unknown> | undefined,
  ) {
    super(describeErrorBody(body, json));
    this.name = "ApiError";
  }
}

/**
 * An error body in words. The original's shapes: `{"message"}`,
 * `{"Mng","Cmd"}`, `{"Logged","Decrypted"}`, `{"Result"}`, `{"IP"}`,
 * `{"User"}` (with `"DB"`: unknown user), `{"Quota"}`; others raw.
 */
export function describeErrorBody(
  body: string,
  json?: Record<string, unknown>,
): string {
  if (!json) return body.trim() === "" ? "(empty answer)" : body.trim();
  const has = (...keys: string[]) =>
    keys.length === Object.keys(json).length && keys.every((k) => k in json);
  const s = (v: unknown) => typeof v === "string" ? v : JSON.stringify(v);
  if (has("message")) return s(json.message);
  if (has("Mng", "Cmd")) {
    return `the server has no manager "${s(json.Mng)}" answering "${
      s(json.Cmd)
    }" (see the rule and managers.toml)`;
  }
  if (has("Logged", "Decrypted")) {
    const logged = s(json.Logged);
    return `this secret is ${s(json.Decrypted)}'s, but ${
      logged === "" ? "nobody" : logged
    } is logged in at your IP address; log in again`;
  }
  if (has("User", "DB")) {
    return `unknown user "${s(json.User)}" in the user database "${
      s(json.DB)
    }"`;
  }
  if (has("User")) return `${s(json.User)} is not an administrator`;
  if (has("IP")) return `nobody is logged in at ${s(json.IP)}`;
  if (has("Result")) return `the rules evaluated to ${s(json.Result)}`;
  if (has("Quota")) return `quota reached: ${s(json.Quota)}`;
  return body.trim();
}

/** The session the client acts for (from `login.secret`). */
export interface ClientSession {
  /** The sessionIPM the secret came from (renewals go there). */
  sessionIPM: string;
  secret: string;
  /** Called with a renewed secret, e.g. to rewrite `login.secret`. */
  onRenewed?: (secret: string) => Promise<void>;
}

/** Options of {@link ApiClient}. */
export interface ApiClientOptions {
  /** Pin this certificate (PEM file) instead of trusting on first use. */
  caFile?: string;
  /** Default `$PMPROXY_KNOWN_SERVERS` or `$HOME/.config/pmproxy/known_servers.json`. */
  knownServersFile?: string;
  /** Where notices (first contact) are printed; default `console.error`. */
  notice?: (line: string) => void;
  /** The session whose secret is sent and renewed when expired. */
  session?: ClientSession;
  /** How long to wait for an answer (default 30 s). */
  timeoutMs?: number;
}

/** A problem with the server's certificate or with reaching it. */
export class TrustError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TrustError";
  }
}

function isExpired(json: Record<string, unknown> | undefined): boolean {
  return typeof json?.message === "string" && /expired/i.test(json.message);
}

/** A client of one API server. */
export class ApiClient {
  /** The server's origin, `https://host:port`. */
  readonly origin: string;
  readonly #host: string;
  readonly #port: number;
  readonly #options: ApiClientOptions;
  readonly #knownServersFile: string;
  #pin?: Pin;
  /** Set when the pinned certificate came from the known-servers file. */
  #pinnedFromFile?: string;

  constructor(server: string, options: ApiClientOptions = {}) {
    let url: URL;
    try {
      // A bare "host:port" means HTTPS, the only scheme the API speaks.
      url = new URL(server.includes("://") ? server : `https://${server}`);
    } catch {
      throw new TrustError(
        `"${server}" is not a URL: write it like https://gateway:4443`,
      );
    }
    if (url.protocol !== "https:") {
      throw new TrustError(
        `the API speaks HTTPS: write https://${url.host || server}`,
      );
    }
    this.origin = url.origin;
    this.#host = url.hostname.replace(/^\[|\]$/g, "");
    this.#port = Number(url.port || 443);
    this.#options = options;
    this.#knownServersFile = options.knownServersFile ??
      defaultKnownServersFile();
  }

  /** The session in use (its secret changes when renewed). */
  get session(): ClientSession | undefined {
    return this.#options.session;
  }

  /**
   * The certificate to trust: `caFile`, else the known-servers entry (that
   * very certificate), else the one seen now (first contact, remembered).
   * Requests go straight to the server, never through HTTP(S)_PROXY:
   * through the gateway's own proxy the API would see the proxy's address.
   */
  async #trusted(): Promise<Pin> {
    if (this.#pin) return this.#pin;
    let pem: string;
    if (this.#options.caFile) {
      try {
        pem = await Deno.readTextFile(this.#options.caFile);
        pemToDer(pem);
      } catch (e) {
        throw new TrustError(
          `cannot use ${this.#options.caFile} as the server's certificate: ${
            e instanceof Error ? e.message : e
          }`,
        );
      }
    } else {
      const known = await readKnownServers(this.#knownServersFile);
      const entry = known[this.origin];
      if (entry) {
        pem = entry.pem;
        this.#pinnedFromFile = entry.sha256;
      } else {
        const peer = await this.#peer();
        (this.#options.notice ?? console.error)(
          `Trusting ${this.origin} with certificate SHA-256 ${peer.sha256} (first contact)`,
        );
        await rememberServer(this.#knownServersFile, this.origin, {
          sha256: peer.sha256,
          pem: peer.pem,
          since: new Date().toISOString(),
        });
        pem = peer.pem;
      }
    }
    this.#pin = { pem, sha256: this.#pinnedFromFile };
    return this.#pin;
  }

  async #peer() {
    try {
      return await fetchPeerCertificate(this.#host, this.#port);
    } catch (e) {
      throw new TrustError(e instanceof Error ? e.message : String(e));
    }
  }

  /** The fingerprint of the certificate the server shows now, if it answers. */
  async #peerSha256(): Promise<string | undefined> {
    try {
      return (await this.#peer()).sha256;
    } catch {
      return undefined;
    }
  }

  /** Explains a failed request: a changed certificate, a refused connection. */
  async #explain(e: unknown): Promise<Error> {
    const parts: string[] = [];
    for (let c: unknown = e; c !== undefined && parts.length < 5;) {
      parts.push(c instanceof Error ? c.message : String(c));
      c = c instanceof Error ? c.cause : undefined;
    }
    const text = parts.join(": ");
    if (/refused/i.test(text)) {
      return new TrustError(
        `cannot reach ${this.origin}: connection refused (is pmproxy running there?)`,
      );
    }
    if (this.#pinnedFromFile) {
      const now = await this.#peerSha256();
      if (now !== undefined && now !== this.#pinnedFromFile) {
        return new TrustError(
          `the certificate of ${this.origin} changed: pinned SHA-256 ${this.#pinnedFromFile}, now ${now}; ` +
            `if this is expected, remove the entry from ${this.#knownServersFile}`,
        );
      }
    }
    if (this.#options.caFile) {
      const der = pemToDer(await Deno.readTextFile(this.#options.caFile));
      const pinned = await fingerprint(der);
      const now = await this.#peerSha256();
      if (now !== undefined && now !== pinned) {
        return new TrustError(
          `the certificate of ${this.origin} (SHA-256 ${now}) is not the one in ${this.#options.caFile} (SHA-256 ${pinned})`,
        );
      }
    }
    if (/does not match certificate's altnames/i.test(text)) {
      let covers: string | undefined;
      try {
        covers = (await this.#peer()).names.join(", ") || undefined;
      } catch {
        covers = undefined;
      }
      return new TrustError(
        `the certificate of ${this.origin} does not name "${this.#host}"` +
          (covers ? ` (it names ${covers})` : "") +
          `: connect by a name it covers, or delete the server's cert.pem and key.pem and restart it to get a new one`,
      );
    }
    return new TrustError(`cannot talk to ${this.origin}: ${text}`);
  }

  /** Posts one command; answers the status and body as received. */
  async post(
    body: Partial<CmdBody>,
  ): Promise<{ status: number; text: string }> {
    const pin = await this.#trusted();
    const timeoutMs = this.#options.timeoutMs ?? 30_000;
    const signal = AbortSignal.timeout(timeoutMs);
    try {
      return await postPinned(
        new URL("/api/cmd", this.origin),
        pin,
        JSON.stringify(body),
        { signal },
      );
    } catch (e) {
      if (signal.aborted) {
        throw new TrustError(
          `no answer from ${this.origin} within ${
            timeoutMs / 1000
          }s; is the server overloaded or the address wrong?`,
        );
      }
      throw await this.#explain(e);
    }
  }

  async #once(body: Partial<CmdBody>): Promise<string> {
    const { status, text } = await this.post(body);
    if (status === 200) return text;
    let json: Record<string, unknown> | undefined;
    try {
      const parsed = JSON.parse(text);
      if (typeof parsed === "object" && parsed && !Array.isArray(parsed)) {
        json = parsed;
      }
    } catch {
      json = undefined;
    }
    throw new ApiError(status, text, json);
  }

  /**
   * Runs a command and answers the 200 body; throws {@link ApiError}
   * otherwise. With a session, its secret is sent, and an expired secret
   * is renewed (command `renew`) and the command retried once.
   */
  async cmd(body: Partial<CmdBody>): Promise<string> {
    const session = this.#options.session;
    const withSecret = () =>
      session && body.secret === undefined
        ? { ...body, secret: session.secret }
        : body;
    try {
      return await this.#once(withSecret());
    } catch (e) {
      if (
        !session || body.secret !== undefined || !(e instanceof ApiError) ||
        !isExpired(e.json)
      ) {
        throw e;
      }
    }
    const renewed = await this.#once({
      cmd: "renew",
      manager: session.sessionIPM,
      secret: session.secret,
    });
    session.secret = renewed;
    await session.onRenewed?.(renewed);
    return await this.#once(withSecret());
  }

  /** Forgets the trusted certificate (each request has its own connection). */
  close(): void {
    this.#pin = undefined;
  }
}
