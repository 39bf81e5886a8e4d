/**
 * The seam between the data path and the policy.
 *
 * `proxy/` asks one function per request, "may this request go, and with
 * what?", and gets back a {@link Decision}. It never knows what a manager is.
 * `managers/` implements these types with `import type` from this file only.
 *
 * @module
 */

/** Proxy credentials sent with `Proxy-Authorization: Basic`. */
export interface ProxyCredentials {
  user: string;
  pass: string;
}

/** What the proxy knows about one request when it asks the policy. */
export interface RequestFacts {
  /** The TCP peer's address, without brackets or port (`127.0.0.1`, `::1`). */
  clientIp: string;
  /** When the request head was read. */
  time: Date;
  /** `GET`, `CONNECT`, ... */
  method: string;
  /** The request target: an absolute URL, or `host:port` for CONNECT. */
  url: string;
  /** The requested host name or address, without brackets or port. */
  host: string;
  /** The requested port. */
  port: number;
  /** Credentials from `Proxy-Authorization: Basic`, when the client sent them. */
  proxyAuth?: ProxyCredentials;
}

/** Where the proxy dials for an allowed request. */
export type Route =
  | {
    kind: "direct";
    /** Source address to bind before connecting (outgoing interface). */
    localAddress?: string;
  }
  | {
    kind: "parent";
    /** `http://[user:pass@]host:port` or `socks5://[user:pass@]host:port`. */
    proxyUrl: string;
    /** Source address to bind before connecting to the parent. */
    localAddress?: string;
  };

/** {@link Meter.chunk} answer: go on reading. */
export const GO_ON = 0;
/** {@link Meter.chunk} answer: stop, the transfer is cut (quota reached). */
export const STOP = -1;

/**
 * Accounting for the bytes read from upstream for one request.
 *
 * `chunk` is called for every chunk read from upstream, before it is written
 * to the client. It must be cheap: no allocation, no I/O, no awaiting. It
 * answers {@link GO_ON}, {@link STOP}, or a positive number of milliseconds to
 * wait before reading more (throttling).
 */
export interface Meter {
  chunk(bytes: number): number;
  /** Why the transfer was stopped, shown in the log (e.g. "quota reached"). */
  readonly stopReason?: string;
}

/** The policy's answer for one request. */
export type Decision =
  | {
    allowed: true;
    route: Route;
    /** Absent when nothing meters this request. */
    meter?: Meter;
    /**
     * Accounting for the bytes sent upstream (a request body, the client's
     * direction of a tunnel): called for every chunk after it was written
     * upstream, with the same answers and rules as {@link meter} (no
     * allocation, no I/O; a wait throttles the sending, STOP cuts it).
     * Absent when uploads are not counted.
     */
    upMeter?: Meter;
    /** The user the request is accounted to, for the access log. */
    user?: string;
    /**
     * One word about how the request goes, for the access log (`slowed`: the
     * user is past their quota and slowed down). Letters, digits and `_`.
     */
    note?: string;
    /**
     * For tunnels: told the local address of the connection dialled
     * upstream once it is open (so the gateway's own API, reached through
     * the proxy, can tell which client is behind that connection); the
     * function it answers is called when the tunnel ends.
     */
    onUpstream?(local: Deno.NetAddr): () => void;
  }
  | {
    allowed: false;
    /** 403 forbidden / quota reached, 407 proxy credentials required. */
    status: 403 | 407;
    /** A sentence for a person: why, and what to do. */
    reason: string;
    /** Where to log in, shown on the refusal page. */
    loginUrl?: string;
    /** For 407: the realm of `Proxy-Authenticate: Basic realm="..."`. */
    realm?: string;
    /**
     * For the access log and the counters: what refused it, the rule (the
     * default) or a download quota that is reached. A 407 is a login that
     * is missing, whatever this says.
     */
    cause?: "rule" | "quota";
  };

/** What the proxy needs from the policy. */
export interface Policy {
  decide(facts: RequestFacts): Decision | Promise<Decision>;
}
