/**
 * One client connection: read a request head, ask the policy, run the path
 * (forward or tunnel), and go on with the next request while the connection
 * is kept alive. Requests are handled one after the other, so pipelined
 * requests are answered in the order they came.
 *
 * @module
 */
import type { Decision, ProxyCredentials, RequestFacts } from "./policy.ts";
import { closeQuietly, Reader, writeAll } from "./_io.ts";
import {
  bufferedHead,
  fieldValue,
  type Framing,
  hasToken,
  HeadError,
  parseRequestHead,
  readHead,
  requestFraming,
  type RequestHead,
} from "./http_head.ts";
import { errorResponse, proxyInfoPage } from "./error_pages.ts";
import { type Exchange, logExchange, newExchange } from "./access_log.ts";
import { countOutcome, type Outcome } from "./stats.ts";
import { parseAuthority, parseHttpUrl, type Target } from "./_target.ts";
import { forwardRequest } from "./forward.ts";
import { tunnelConnect } from "./tunnel.ts";
import {
  Client,
  type ProxyContext,
  READING_BODY,
  sendToClient,
  WAITING_FOR_UPSTREAM,
} from "./_context.ts";
import { unwatch, Watch, watch } from "./_watchdog.ts";
import { BodyError, ChunkedScanner } from "./body.ts";

/** The TCP peer's address without brackets; IPv4-mapped IPv6 as IPv4. */
export function peerIp(conn: Deno.Conn): string {
  const host = (conn.remoteAddr as Deno.NetAddr).hostname;
  if (host.startsWith("::ffff:") && host.includes(".")) return host.slice(7);
  return host;
}

/** Registers a client connection; {@link serveConnection} runs it. */
export function newClient(conn: Deno.Conn): Client {
  const reader = new Reader(conn);
  // The watch closes the connection (and its upstream) when a phase's
  // deadline passes: header timeout, keep-alive idle, no upstream progress.
  let client: Client | undefined = undefined;
  const w = new Watch((what) => {
    // Before the answer's head, only the upstream is given up, so that the
    // client still gets a page (504, or 408 for a stalled request body);
    // later the whole exchange ends.
    if (what === WAITING_FOR_UPSTREAM || what === READING_BODY) {
      closeQuietly(client?.upstream);
    } else if (what === READING_HEAD && client) {
      // A head that never finishes (slowloris) is told why before the close,
      // as RFC 9110 expects; a silent kept-alive connection just ends.
      const c = client;
      writeAll(c.conn, REQUEST_TIMEOUT).catch(() => {}).finally(() =>
        c.abort()
      );
    } else client?.abort();
  });
  client = new Client(conn, reader, peerIp(conn), w);
  return client;
}

const READING_HEAD = "request head";
const REQUEST_TIMEOUT = errorResponse(
  408,
  "The request head did not arrive in time; send it again.",
  { close: true },
);

/** Serves one client connection until it closes. Never rejects. */
export async function serveConnection(
  ctx: ProxyContext,
  client: Client,
): Promise<void> {
  const { config } = ctx;
  const { reader, watch: w } = client;
  watch(w);
  try {
    for (let first = true;; first = false) {
      // Between requests: wait for the first byte under the idle limit,
      // then the whole head must arrive under the header limit (slowloris).
      reader.watch = undefined;
      if (reader.buffered === 0) {
        // A bulk upload grew the buffer; waiting for the next request
        // needs no 256 KiB.
        reader.shrink();
        w.arm(first ? config.headerTimeoutMs : config.idleTimeoutMs, "idle");
        if (!(await reader.fill())) return;
      }
      w.arm(config.headerTimeoutMs, READING_HEAD);
      const served = serveRequest(ctx, client);
      if ((served instanceof Promise ? await served : served) !== true) return;
    }
  } catch {
    // A reset or closed socket ends the connection; nothing to answer.
  } finally {
    unwatch(w);
    client.abort();
    reader.release();
    ctx.clientEnded(client);
  }
}

/** The stream ended before a head, or it broke: nothing to log. */
const CLOSED = 0;
/** The head was refused, and that was logged. */
const REFUSED = 1;

/**
 * Reads one request head and runs the request; answers true when the
 * connection may carry another. Its own function, not a part of
 * serveConnection's loop: an allowed CONNECT's tunnel is returned, not
 * awaited, so the request's head and decision are let go while the tunnel
 * is held, perhaps for hours, and thousands of held tunnels do not each
 * keep them. Not an async function: a head already buffered (the usual)
 * runs at once, and the request costs the `then` of its path, not an
 * async frame besides.
 */
function serveRequest(
  ctx: ProxyContext,
  client: Client,
): Promise<Served> | Served {
  const x = newExchange(client.ip, new Date());
  let bytes: Uint8Array | undefined;
  try {
    bytes = bufferedHead(client.reader, ctx.config.maxHeaderBytes, true);
  } catch (e) {
    return headFailed(ctx, client, x, e);
  }
  return bytes === undefined
    ? readAndRun(ctx, client, x)
    : runHead(ctx, client, x, bytes);
}

/** What {@link serveRequest} answers. */
type Served = boolean | typeof CLOSED | typeof REFUSED;

/** The head is not all there yet: read it, then run the request. */
async function readAndRun(
  ctx: ProxyContext,
  client: Client,
  x: Exchange,
): Promise<Served> {
  let bytes: Uint8Array | null;
  try {
    bytes = await readHead(client.reader, ctx.config.maxHeaderBytes, true);
  } catch (e) {
    return await headFailed(ctx, client, x, e);
  }
  return await runHead(ctx, client, x, bytes);
}

/** Parses the head read (null: the stream ended first) and runs it. */
function runHead(
  ctx: ProxyContext,
  client: Client,
  x: Exchange,
  bytes: Uint8Array | null,
): Promise<Served> | Served {
  if (bytes === null) return CLOSED;
  let head: RequestHead;
  try {
    head = parseRequestHead(bytes, ctx.config.maxHeaders);
  } catch (e) {
    return headFailed(ctx, client, x, e);
  }
  client.watch.arm(0, "");
  let handled: Promise<boolean | TunnelToRun> | TunnelToRun;
  try {
    handled = handleRequest(ctx, client, head, x);
  } catch (e) {
    finished(ctx, x);
    throw e;
  }
  if (!(handled instanceof Promise)) return ran(ctx, client, x, handled);
  return handled.then((next) => ran(ctx, client, x, next), (e) => {
    finished(ctx, x);
    throw e;
  });
}

/** The request ran (`next`: true to go on) or its tunnel is to run now. */
function ran(
  ctx: ProxyContext,
  client: Client,
  x: Exchange,
  next: boolean | TunnelToRun,
): Promise<Served> | Served {
  if (typeof next === "boolean") {
    finished(ctx, x);
    return next;
  }
  return tunnelConnect(ctx, client, next.target, next.decision, x).then(
    () => {
      finished(ctx, x);
      return false;
    },
    (e) => {
      finished(ctx, x);
      throw e;
    },
  );
}

/**
 * The head could not be read: a head we refuse is answered (and logged);
 * a broken stream, or a head cut by its deadline, just ends.
 */
function headFailed(
  ctx: ProxyContext,
  client: Client,
  x: Exchange,
  e: unknown,
): Promise<Served> | Served {
  if (!(e instanceof HeadError) || client.watch.expired) return CLOSED;
  return refuseHead(ctx, client, x, e).then(() => REFUSED);
}

/** An exchange is over: it is counted and logged. */
function finished(ctx: ProxyContext, x: Exchange): void {
  countOutcome(ctx.stats, x.outcome);
  logExchange(ctx.accessLog, x, ctx.accessLogFormat);
}

async function refuseHead(
  ctx: ProxyContext,
  client: Client,
  x: Exchange,
  e: HeadError,
) {
  x.status = e.status;
  // What Squid logs for a request it could not read.
  x.url = "error:invalid-request";
  await sendToClient(
    client,
    x,
    errorResponse(
      e.status,
      `The proxy could not read this request: ${e.message}.`,
      {
        close: true,
      },
    ),
  );
  finished(ctx, x);
}

function wantsKeepAlive(head: RequestHead): boolean {
  const f = head.fields;
  if (
    hasToken(f, "connection", "close") ||
    hasToken(f, "proxy-connection", "close")
  ) return false;
  return head.version === 11 || hasToken(f, "connection", "keep-alive") ||
    hasToken(f, "proxy-connection", "keep-alive");
}

const MAX_VIA_HOPS = 4;

function viaCount(head: RequestHead): number {
  let n = 0;
  for (const f of head.fields) {
    if (f.lower !== "via") continue;
    for (let at = f.value.indexOf("pmproxy"); at >= 0; n++) {
      at = f.value.indexOf("pmproxy", at + 7);
    }
  }
  return n;
}

function credentials(head: RequestHead): ProxyCredentials | undefined {
  const value = fieldValue(head.fields, "proxy-authorization");
  if (!value || value.slice(0, 6).toLowerCase() !== "basic ") return undefined;
  try {
    const bin = atob(value.slice(6).trim());
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    const text = new TextDecoder().decode(bytes);
    const colon = text.indexOf(":");
    if (colon < 0) return undefined;
    return { user: text.slice(0, colon), pass: text.slice(colon + 1) };
  } catch {
    return undefined;
  }
}

/** An allowed CONNECT, for the caller to run (see serveConnection). */
interface TunnelToRun {
  target: HostPort;
  decision: Extract<Decision, { allowed: true }>;
}

/** A CONNECT's target. */
interface HostPort {
  host: string;
  port: number;
}

/** One request being handled, and what our answers to it depend on. */
interface Incoming {
  client: Client;
  head: RequestHead;
  x: Exchange;
  /** The client asked to keep its connection open. */
  keepAlive: boolean;
  /**
   * Our refusal ends the connection: after CONNECT (the client may already
   * be sending the tunnel's bytes), after a body we did not read (it would
   * be taken for the next request), or when the client asked.
   */
  closeAfterRefusal: boolean;
}

/** Why the proxy answers a request itself instead of running it. */
interface Refusal {
  status: number;
  /** A sentence for a person: what is wrong, what to do. */
  message: string;
  /** Refused by a rule (logged TCP_DENIED), not a request we cannot serve. */
  denied?: boolean;
  /** For the counters: what refused it (default: "refused" when denied, else "error"). */
  outcome?: Outcome;
  loginUrl?: string;
  /** Extra header lines ("Name: value"). */
  headers?: string[];
}

/** {@link resolveTarget}'s answer for a request to the proxy's own page. */
const OWN_PAGE = "own page";

const LOOPING: Refusal = Object.freeze({
  status: 508,
  message:
    "This request went through pmproxy too many times: it is looping. Check the parent proxy settings.",
});

/**
 * Runs one request; true when the connection may carry another, or the
 * tunnel to run for an allowed CONNECT (after which it may not). Not an
 * async function: it answers the promise of the path it starts (the
 * forward, a refusal) or, for an allowed CONNECT, the tunnel at once, so a
 * request costs no async frame of its own here (about 0.4 KB each).
 */
function handleRequest(
  ctx: ProxyContext,
  client: Client,
  head: RequestHead,
  x: Exchange,
): Promise<boolean | TunnelToRun> | TunnelToRun {
  x.method = head.method;
  x.url = head.target;
  // A graceful stop under way: this answer is the connection's last.
  const keepAlive = wantsKeepAlive(head) && !ctx.draining;
  const framing = requestFraming(head);
  const isConnect = head.method === "CONNECT";
  const req: Incoming = {
    client,
    head,
    x,
    keepAlive,
    closeAfterRefusal: isConnect || framing.kind !== "none" || !keepAlive,
  };

  const tooLarge = bodyTooLarge(ctx.config.maxRequestBody, framing);
  if (tooLarge) return refuse(req, tooLarge);
  if (framing.kind === "chunked") {
    const broken = brokenChunks(client.reader);
    if (broken) return refuse(req, broken);
  }
  const where = resolveTarget(ctx, head);
  if (where === OWN_PAGE) return sendOwnPage(ctx, req);
  if ("status" in where) return refuse(req, where);
  // A request that already passed through pmproxy several times is going
  // round in a loop (a proxy told to reach itself): stop it here.
  if (viaCount(head) >= MAX_VIA_HOPS) return refuse(req, LOOPING);

  let d: Decision | Promise<Decision>;
  try {
    d = askPolicy(ctx, req, where);
  } catch (e) {
    return refuse(req, policyFailed(e));
  }
  // Only an asynchronous policy costs a promise.
  if (d instanceof Promise) {
    return d.then<boolean | TunnelToRun, boolean>(
      (decision) => decided(ctx, req, where, decision),
      (e) => refuse(req, policyFailed(e)),
    );
  }
  return decided(ctx, req, where, d);
}

/** The policy threw: the request is answered 503. */
function policyFailed(e: unknown): Refusal {
  return {
    status: 503,
    message: `The proxy's policy failed: ${
      (e as Error).message
    }. Tell the administrator.`,
  };
}

/** Runs what the policy decided for the request to `where`. */
function decided(
  ctx: ProxyContext,
  req: Incoming,
  where: HostPort | Target,
  decision: Decision,
): Promise<boolean> | TunnelToRun {
  const { head, x } = req;
  if (!decision.allowed) return refuse(req, refusedBy(ctx, head, decision));
  if (decision.user !== undefined) x.user = decision.user;
  x.outcome = "allowed";
  if (decision.note !== undefined) x.note = decision.note;
  if (head.method === "CONNECT") return { target: where, decision };
  return forwardRequest({
    ctx,
    client: req.client,
    req: head,
    // Not CONNECT: resolveTarget parsed an absolute URL.
    target: where as Target,
    url: head.target,
    decision,
    x,
    keepAlive: req.keepAlive,
  });
}

/** A declared body over `maxBody` (0: no limit) is refused before it is read. */
function bodyTooLarge(maxBody: number, framing: Framing): Refusal | undefined {
  if (maxBody > 0 && framing.kind === "length" && framing.length > maxBody) {
    return {
      status: 413,
      message:
        `The request body is ${framing.length} bytes; this proxy accepts at most ${maxBody}. Ask the administrator if you need to send more.`,
    };
  }
  return undefined;
}

/**
 * The chunks of a request body that came with its head, checked before the
 * request goes anywhere, so that a malformed one is refused (400) before
 * anything is dialled, like a malformed head (http_head.ts). Chunks that
 * arrive later can only be checked as they stream up (_upload.ts): then
 * the upstream connection is closed mid-body, so the origin sees a short
 * body but never the malformed bytes, and the client still gets the 400
 * unless the origin answered first (see answerNoHead in forward.ts).
 */
function brokenChunks(reader: Reader): Refusal | undefined {
  if (reader.buffered === 0) return undefined;
  try {
    new ChunkedScanner().scan(reader.buf, reader.start, reader.end);
  } catch (e) {
    if (!(e instanceof BodyError)) throw e;
    return {
      status: 400,
      message: `The request body is malformed: ${e.message}.`,
    };
  }
  return undefined;
}

/**
 * Where the request goes: a CONNECT's `host:port` (on an allowed port), an
 * absolute URL's target; or {@link OWN_PAGE} for someone who opened the
 * proxy's own address as a web site; or why it cannot go.
 */
function resolveTarget(
  ctx: ProxyContext,
  head: RequestHead,
): HostPort | Target | Refusal | typeof OWN_PAGE {
  if (head.method === "CONNECT") {
    const hp = parseAuthority(head.target);
    if (typeof hp === "string") {
      return { status: 400, message: `CONNECT needs host:port: ${hp}.` };
    }
    const allowed = ctx.config.connectPorts;
    if (allowed !== "*" && !allowed.includes(hp.port)) {
      return {
        status: 403,
        message: `CONNECT to port ${hp.port} is not allowed.`,
        denied: true,
      };
    }
    return hp;
  }
  if (head.target[0] === "/" || head.target === "*") {
    if (
      (head.method === "GET" || head.method === "HEAD") && head.target === "/"
    ) {
      return OWN_PAGE;
    }
    return {
      status: 400,
      message: "This is a proxy: requests must carry an absolute http:// URL.",
      loginUrl: ctx.loginUrl,
    };
  }
  const t = parseHttpUrl(head.target);
  if (typeof t === "string") return { status: 400, message: `${t}.` };
  return t;
}

/** Asks the policy about the request to `where`, with its facts. */
function askPolicy(
  ctx: ProxyContext,
  req: Incoming,
  where: HostPort,
): Decision | Promise<Decision> {
  const { client, head, x } = req;
  const facts: RequestFacts = {
    clientIp: client.ip,
    time: x.time,
    method: head.method,
    url: head.target,
    host: where.host,
    port: where.port,
  };
  const auth = credentials(head);
  if (auth) facts.proxyAuth = auth;
  return ctx.policy.decide(facts);
}

/** The policy's refusal, with the way to log in (and, for 407, the realm). */
function refusedBy(
  ctx: ProxyContext,
  head: RequestHead,
  decision: Extract<Decision, { allowed: false }>,
): Refusal {
  const refusal: Refusal = {
    status: decision.status,
    message: decision.reason,
    denied: true,
    outcome: decision.status === 407
      ? "auth"
      : decision.cause === "quota"
      ? "quota"
      : "refused",
    loginUrl: loginLink(
      decision.loginUrl ?? ctx.loginUrl,
      head.method === "CONNECT" ? undefined : head.target,
    ),
  };
  if (decision.status === 407) {
    const realm = (decision.realm ?? "pmproxy").replace(/["\\\r\n]/g, "");
    refusal.headers = [`Proxy-Authenticate: Basic realm="${realm}"`];
  }
  return refusal;
}

/**
 * Answers with our page for `refusal`; resolves to true when the
 * connection may go on.
 */
function refuse(req: Incoming, refusal: Refusal): Promise<boolean> {
  const { x, head } = req;
  x.status = refusal.status;
  if (refusal.denied) x.tag = "TCP_DENIED";
  x.outcome = refusal.outcome ?? (refusal.denied ? "refused" : "error");
  const close = req.closeAfterRefusal;
  const page = errorResponse(refusal.status, refusal.message, {
    close,
    loginUrl: refusal.loginUrl,
    headOnly: head.method === "HEAD",
    headers: refusal.headers,
  });
  return sendToClient(req.client, x, page).then(close ? endIt : goOn);
}

/** The proxy's own page (what this address is, where to log in). */
function sendOwnPage(ctx: ProxyContext, req: Incoming): Promise<boolean> {
  req.x.status = 200;
  req.x.outcome = "allowed";
  const page = proxyInfoPage(ctx.loginUrl, {
    close: !req.keepAlive,
    headOnly: req.head.method === "HEAD",
  });
  return sendToClient(req.client, req.x, page).then(
    req.keepAlive ? goOn : endIt,
  );
}

// What refuse() and sendOwnPage() resolve to, whether or not the page
// reached the client. They are not async functions: a refusal is the
// common answer before a login, and an async function's frame costs about
// 0.4 KB per call (V8's total_allocated_bytes), a `then` a fraction.
const goOn = () => true;
const endIt = () => false;

/**
 * The login URL with `?next=` the refused page, so the login page offers a
 * way back to it after login (CONNECT targets are no page to go back to).
 */
function loginLink(
  loginUrl: string | undefined,
  next: string | undefined,
): string | undefined {
  if (!loginUrl || !next || !/^https?:\/\//i.test(next)) return loginUrl;
  try {
    const url = new URL(loginUrl);
    url.searchParams.set("next", next);
    return url.href;
  } catch {
    return loginUrl;
  }
}
