/**
 * Forwarding plain HTTP requests (absolute-form `GET http://host/path`): one
 * exchange = request head and body up, response head(s) and body down, with
 * the upstream connection kept for reuse when both sides allow it. The
 * request body and its deadlines are an Upload (_upload.ts); how an answer
 * is framed for its client is decided by planResponse (_response_plan.ts).
 *
 * @module
 */
import type { Decision } from "./policy.ts";
import { dial, type Dialed, DialError } from "./dial.ts";
import { closeQuietly, MeterStop, Reader, writeAll } from "./_io.ts";
import {
  bufferedHead,
  endToEnd,
  fieldValue,
  type Framing,
  hasToken,
  HeadError,
  latin1Bytes,
  parseResponseHead,
  passedHeadText,
  putLatin1,
  readHead,
  requestFraming,
  type RequestHead,
  type ResponseHead,
  serializeHead,
} from "./http_head.ts";
import { BodyError, BodyTooLarge, copyBody, type CopyOptions } from "./body.ts";
import { dialFailure, errorResponse } from "./error_pages.ts";
import { type PooledUpstream, poolKey } from "./upstream_pool.ts";
import { tunnelUpgrade } from "./tunnel.ts";
import {
  type Client,
  type ProxyContext,
  READING_BODY,
  sendToClient,
  WAITING_FOR_UPSTREAM,
} from "./_context.ts";
import { countDialFailure } from "./stats.ts";
import { giveBuffer, SMALL, takeBuffer } from "./_buffers.ts";
import type { Exchange } from "./access_log.ts";
import type { Target } from "./_target.ts";
import { Upload } from "./_upload.ts";
import { planResponse, type ResponsePlan } from "./_response_plan.ts";

type Allowed = Extract<Decision, { allowed: true }>;

/** Methods that may be sent again after a stale pooled connection (RFC 9110 §9.2.2). */
const IDEMPOTENT = new Set([
  "GET",
  "HEAD",
  "OPTIONS",
  "TRACE",
  "PUT",
  "DELETE",
]);

/** Largest response head accepted from upstream. */
const MAX_RESPONSE_HEAD = 256 * 1024;

// Lines and field names of the heads we write, shared by every exchange.
const VIA: readonly string[] = Object.freeze(["Via: 1.1 pmproxy"]);
const UPGRADE_FIELDS: readonly string[] = Object.freeze(["upgrade"]);
const SWITCHING_LINES: readonly string[] = Object.freeze([
  "Via: 1.1 pmproxy",
  "Connection: Upgrade",
]);

/** What one forwarded request needs. */
export interface ForwardJob {
  ctx: ProxyContext;
  client: Client;
  req: RequestHead;
  target: Target;
  /** The absolute URL as the client sent it. */
  url: string;
  decision: Allowed;
  x: Exchange;
  /** The client asked to keep its connection open. */
  keepAlive: boolean;
}

/**
 * Forwards one request: takes a pooled upstream connection for the route and
 * origin, or dials one, then runs the path the dialer chose. Resolves to true
 * when the client connection may carry another request. Not an async
 * function: a kept-alive client's request on a pooled connection (the
 * usual) costs a `then` here, not an async frame.
 */
export function forwardRequest(job: ForwardJob): Promise<boolean> {
  const { ctx, target, decision } = job;
  const key = poolKey(decision.route, target.host, target.port);
  // A request with a body is never sent on a pooled connection: if the origin
  // had closed it meanwhile, the body could not be sent again, and the client
  // would get a 502 for nothing. Bodyless requests are simply retried, but
  // only idempotent ones: a proxy must not repeat a POST or PATCH the origin
  // may have acted on before closing (RFC 9112 §9.3.1.1), so those dial anew.
  const pooled = requestFraming(job.req).kind === "none" &&
      IDEMPOTENT.has(job.req.method)
    ? ctx.pool.take(key)
    : undefined;
  if (!pooled) return dialAndForward(job, key);
  return runPath(job, pooled, true).then((outcome) => {
    if (outcome !== "stale") return outcome;
    // The idle connection had been closed by the origin before our request
    // reached it: nothing was answered, so asking again on a fresh one is safe.
    // The dial has its own deadline; the response deadline armed for the
    // stale exchange must not run out meanwhile (an expired watch is no
    // longer watched, and the retry would wait for its answer forever).
    job.client.watch.arm(0, "");
    return dialAndForward(job, key);
  });
}

/** Dials the upstream for `job` (pool key `key`) and runs its path. */
async function dialAndForward(job: ForwardJob, key: string): Promise<boolean> {
  const { ctx, target, decision } = job;
  let dialed: Dialed;
  try {
    dialed = await dial(decision.route, target, {
      timeoutMs: ctx.config.dialTimeoutMs,
      purpose: "http",
    });
  } catch (e) {
    if (!(e instanceof DialError)) throw e;
    countDialFailure(ctx.stats, e.kind);
    const failed = dialFailure(e);
    return await answer(job, failed.status, failed.message);
  }
  const up: PooledUpstream = { dialed, reader: new Reader(dialed.conn), key };
  const outcome = await runPath(job, up, false);
  return outcome === "stale" ? false : outcome;
}

function runPath(job: ForwardJob, up: PooledUpstream, reused: boolean) {
  return up.dialed.viaHttpParent
    ? forwardViaParent(job, up, reused)
    : forwardDirect(job, up, reused);
}

/** How one exchange reaches upstream (see forwardDirect, forwardViaParent). */
interface ExchangeOptions {
  up: PooledUpstream;
  /** The connection came from the pool: the origin may have closed it meanwhile. */
  reused: boolean;
  /** `GET /path HTTP/1.1`, or the absolute form a parent proxy needs. */
  requestLine: string;
  /** Sent as `Proxy-Authorization` to an HTTP parent proxy. */
  parentAuthorization: string | undefined;
}

/**
 * client -> proxy (GET http://origin/path) -> origin (GET /path)
 *
 * The origin gets the origin-form path and a Host header for the authority.
 */
export function forwardDirect(
  job: ForwardJob,
  up: PooledUpstream,
  reused: boolean,
): Promise<boolean | "stale"> {
  return exchange(job, {
    up,
    reused,
    requestLine: `${job.req.method} ${job.target.path} HTTP/1.1`,
    parentAuthorization: undefined,
  });
}

/**
 * client -> proxy (GET http://origin/path) -> parent proxy (GET http://origin/path) -> origin
 *
 * A parent proxy needs the absolute URL, and our credentials for it.
 */
export function forwardViaParent(
  job: ForwardJob,
  up: PooledUpstream,
  reused: boolean,
): Promise<boolean | "stale"> {
  const t = job.target;
  return exchange(job, {
    up,
    reused,
    requestLine: `${job.req.method} http://${t.authority}${t.path} HTTP/1.1`,
    parentAuthorization: up.dialed.parentAuthorization,
  });
}

function isUpgrade(req: RequestHead): boolean {
  return fieldValue(req.fields, "upgrade") !== undefined &&
    hasToken(req.fields, "connection", "upgrade");
}

/**
 * One request up and its answer down: the request head, then its body
 * (an Upload, sent while the answer is awaited), the answer's head, then
 * its body framed for this client (planResponse). Resolves to "stale" when
 * a pooled connection turned out closed before anything was answered (the
 * caller asks again on a fresh one), else to true when the client
 * connection may carry another request.
 *
 * The awaits of a plain request are all here, the rest in plain functions:
 * each async function called per request costs an allocation of its own.
 */
async function exchange(
  job: ForwardJob,
  path: ExchangeOptions,
): Promise<boolean | "stale"> {
  const { client, x } = job;
  const { up, reused } = path;
  const upReader = up.reader;
  upReader.meter = job.decision.meter;
  upReader.idleMs = job.ctx.config.responseTimeoutMs;
  client.upstream = up.dialed.conn;
  const upload = new Upload(job, upReader); // arms the first deadline
  const readBefore = upReader.bytesRead;
  x.hierarchy = up.dialed.hierarchy;
  // What went up, for the counters: the head, and the body bytes the
  // upload took from the client's reader.
  let headBytes = 0;
  const bodyFrom = client.reader.bytesRead - client.reader.buffered;

  try {
    const head = requestHead(job, path, upload.framing);
    // Written from a pooled buffer, given back once the write is done.
    const buf = head.length <= SMALL
      ? takeBuffer(SMALL)
      : new Uint8Array(head.length);
    try {
      await writeAll(up.dialed.conn, buf.subarray(0, putLatin1(head, buf)));
      headBytes = head.length;
    } catch (e) {
      discard(client, up);
      if (reused && upload.framing.kind === "none") return "stale";
      return await answer(
        job,
        502,
        `Sending the request upstream failed: ${(e as Error).message}.`,
      );
    } finally {
      giveBuffer(buf);
    }
    upload.send();

    let resp: ResponseHead;
    try {
      for (;;) {
        // The answer's first bytes are awaited here: the head is most often
        // whole in them, and then bufferedHead has it without a promise.
        const bytes = upReader.buffered > 0 || await upReader.fill()
          ? bufferedHead(upReader, MAX_RESPONSE_HEAD, false) ??
            await readHead(upReader, MAX_RESPONSE_HEAD, false)
          : null;
        resp = answerHead(job.req, bytes);
        if (resp.status >= 200 || resp.status === 101) break;
        await passInterim(job, resp, upload);
      }
    } catch (e) {
      discard(client, up);
      if (e instanceof MeterStop) return stopped(job);
      // Reset or closed on a pooled connection before any answer byte: the
      // origin had closed it while it was idle. (A node socket's read ends
      // with null, not an error, when the response deadline closed it: that
      // is a timeout, not a stale socket, hence the watch.)
      if (
        reused && upReader.bytesRead === readBefore &&
        upload.framing.kind === "none" && !client.watch.expired
      ) {
        return "stale";
      }
      return await answerNoHead(job, upload, e);
    }

    headArrived(job, up, resp, upload);
    if (resp.status === 101) return await switchProtocols(job, up, resp);
    // A graceful stop began meanwhile: this answer is the connection's last.
    const plan = planResponse(
      job.ctx.draining ? { req: job.req, keepAlive: false } : job,
      resp,
    );
    const headText = passedHeadText(
      `HTTP/1.1 ${resp.status} ${resp.reason}`,
      resp.fields,
      {
        keep: plan.keep,
        skip: plan.dropContentLength ? "content-length" : undefined,
        extra: plan.add,
      },
    );
    const sentBefore = x.bytes;
    const whole = wholeAnswer(upReader, plan, headText);
    try {
      if (whole >= 0) {
        // The whole answer came with its head (a small one, the usual):
        // head and body go out in one write from a pooled buffer, with no
        // copy loop. Its bytes were metered as they were read.
        const out = takeBuffer(SMALL);
        try {
          const at = putLatin1(headText, out);
          if (whole > 0) out.set(upReader.take(whole), at);
          client.watch.deadline = Date.now() + job.ctx.config.writeTimeoutMs;
          x.bytes += at;
          await writeAll(client.conn, out.subarray(0, at + whole));
          x.bytes += whole;
        } finally {
          giveBuffer(out);
        }
      } else {
        await copyBody(
          upReader,
          client.conn,
          plan.framing,
          bodyCopy(job, plan, headText),
        );
      }
    } catch (e) {
      // A body that broke its framing before any of it (or its head) went
      // out is refused whole: the client gets a 502, not the bytes.
      if (e instanceof BodyError && x.bytes === sentBefore) {
        discard(client, up);
        return await answer(
          job,
          502,
          `The upstream's answer is malformed: ${e.message}.`,
          true,
        );
      }
      return cutMidBody(job, up, e);
    }
    // The answer is complete but the client may still be sending its body:
    // the next request's start cannot be found reliably, so both sides end.
    const midUpload = !upload.done && upload.error === undefined;
    if (midUpload) {
      discard(client, up);
      client.abort();
    }
    await upload.sending;
    return midUpload ? false : release(job, up, plan, upload);
  } finally {
    const stats = job.ctx.stats;
    stats.bytesFromUpstream += upReader.bytesRead - readBefore;
    stats.bytesToUpstream += headBytes +
      (client.reader.bytesRead - client.reader.buffered - bodyFrom);
  }
}

// The hop-by-hop fields a request head keeps, by case, shared.
const KEEP_NONE: readonly string[] = Object.freeze([]);
const KEEP_CHUNKED: readonly string[] = Object.freeze(["transfer-encoding"]);
const KEEP_UPGRADE: readonly string[] = Object.freeze(["upgrade"]);
const KEEP_BOTH: readonly string[] = Object.freeze([
  "transfer-encoding",
  "upgrade",
]);

/**
 * The request head for upstream (its text, latin1): our request line and
 * Host (the client's Host is never passed on: upstream gets the target's
 * authority), the client's end-to-end fields, and our own lines (a
 * parent's credentials, Via, an upgrade's Connection).
 */
function requestHead(
  job: ForwardJob,
  path: ExchangeOptions,
  framing: Framing,
): string {
  const upgrade = isUpgrade(job.req);
  const chunked = framing.kind === "chunked";
  const keep = upgrade
    ? (chunked ? KEEP_BOTH : KEEP_UPGRADE)
    : (chunked ? KEEP_CHUNKED : KEEP_NONE);
  let extra = VIA;
  if (path.parentAuthorization || upgrade) {
    const lines: string[] = [];
    if (path.parentAuthorization) {
      lines.push(`Proxy-Authorization: ${path.parentAuthorization}`);
    }
    lines.push("Via: 1.1 pmproxy");
    if (upgrade) lines.push("Connection: Upgrade");
    extra = lines;
  }
  return passedHeadText(path.requestLine, job.req.fields, {
    first: `Host: ${job.target.authority}`,
    skip: "host",
    keep,
    extra,
  });
}

/**
 * The body length of an answer that is all in the reader already and
 * fits one pooled buffer with its head (`headText`), to be sent in one
 * write: 0 for an answer without a body, -1 when it must be copied as it
 * comes (see copyBody).
 */
function wholeAnswer(
  upReader: Reader,
  plan: ResponsePlan,
  headText: string,
): number {
  const framing = plan.framing;
  const length = framing.kind === "none"
    ? 0
    : framing.kind === "length" && upReader.buffered >= framing.length
    ? framing.length
    : -1;
  return length >= 0 && headText.length + length <= SMALL ? length : -1;
}

/**
 * The answer head read into `bytes` (null: the upstream closed without
 * answering). Throws HeadError for no answer, or for a protocol switch
 * nobody asked for.
 */
function answerHead(req: RequestHead, bytes: Uint8Array | null): ResponseHead {
  if (bytes === null) {
    throw new HeadError(
      502,
      "the upstream closed the connection without answering",
    );
  }
  const resp = parseResponseHead(bytes);
  if (resp.status === 101 && !isUpgrade(req)) {
    throw new HeadError(502, "the upstream switched protocols unasked");
  }
  return resp;
}

/**
 * An interim answer (100 Continue, 103 Early Hints): passed on to HTTP/1.1
 * clients; after a 100 the client is expected to send its body.
 */
async function passInterim(
  job: ForwardJob,
  resp: ResponseHead,
  upload: Upload,
): Promise<void> {
  if (job.req.version === 11) {
    const info = serializeHead(
      `HTTP/1.1 ${resp.status} ${resp.reason}`,
      endToEnd(resp.fields),
      VIA,
    );
    await writeAll(job.client.conn, info);
    job.x.bytes += info.length;
  }
  if (resp.status === 100) upload.continued();
}

/** The meter stopped the transfer before the answer's head: both sides end. */
function stopped(job: ForwardJob): false {
  job.x.tag = "TCP_MISS_ABORTED";
  job.client.abort();
  return false;
}

/**
 * The client's page when no answer head came (`e` is why; the upstream is
 * given up already): a request body we could not send up is the client's
 * fault (413, 400, 408), else the upstream's (504 for a timeout, 502).
 */
function answerNoHead(
  job: ForwardJob,
  upload: Upload,
  e: unknown,
): Promise<boolean> {
  const { readTimeoutMs, responseTimeoutMs, writeTimeoutMs } = job.ctx.config;
  const watch = job.client.watch;
  const failed = upload.error;
  if (failed instanceof MeterStop) {
    return answer(
      job,
      403,
      `The request body was stopped: ${failed.message}.`,
      true,
    );
  }
  if (failed instanceof BodyTooLarge) {
    return answer(
      job,
      413,
      `The request body is larger than the ${failed.limit} bytes this proxy accepts. Ask the administrator if you need to send more.`,
      true,
    );
  }
  if (failed instanceof BodyError) {
    return answer(
      job,
      400,
      `The request body is malformed: ${failed.message}.`,
      true,
    );
  }
  if (watch.expired === READING_BODY && job.client.reader.waiting) {
    return answer(
      job,
      408,
      `The request body stopped arriving: nothing came for ${readTimeoutMs} ms. Send the request again.`,
      true,
    );
  }
  const timedOut = watch.expired !== "";
  if (watch.expired === WAITING_FOR_UPSTREAM) job.ctx.stats.responseTimeouts++;
  const msg = watch.expired === READING_BODY
    ? `the upstream did not take the request body within ${writeTimeoutMs} ms`
    : timedOut
    ? `the upstream did not answer within ${responseTimeoutMs} ms`
    : e instanceof HeadError
    ? e.message
    : `reading the upstream's answer failed: ${(e as Error).message}`;
  return answer(job, timedOut ? 504 : 502, `${msg}.`, true);
}

/**
 * client <- proxy (101 Switching Protocols) <- origin
 *
 * After the 101 the connection is a tunnel (tunnelUpgrade); it never
 * carries another request.
 */
async function switchProtocols(
  job: ForwardJob,
  up: PooledUpstream,
  resp: ResponseHead,
): Promise<false> {
  const switching = serializeHead(
    `HTTP/1.1 101 ${resp.reason}`,
    endToEnd(resp.fields, UPGRADE_FIELDS),
    SWITCHING_LINES,
  );
  try {
    await writeAll(job.client.conn, switching);
    job.x.bytes += switching.length;
    // What the client sends through the tunnel is an upload too; the
    // client connection ends with the tunnel.
    job.client.reader.meter = job.decision.upMeter;
    await tunnelUpgrade(job.ctx, job.client, up.reader, job.x);
  } finally {
    discard(job.client, up);
  }
  return false;
}

/**
 * The answer's head came: it is logged, and from now on a timeout can only
 * end the exchange, as the head is going out.
 */
function headArrived(
  job: ForwardJob,
  up: PooledUpstream,
  resp: ResponseHead,
  upload: Upload,
): void {
  const { x, client } = job;
  x.status = resp.status;
  x.tag = "TCP_MISS";
  x.contentType = fieldValue(resp.fields, "content-type");
  upload.answered();
  up.reader.watch = client.watch;
  client.watch.arm(job.ctx.config.writeTimeoutMs, "transfer");
}

/**
 * client <- proxy <- origin: how copyBody sends the answer: our head for
 * it (`headText`) first, its body as `plan` frames it, every byte counted
 * for the log.
 */
function bodyCopy(
  job: ForwardJob,
  plan: ResponsePlan,
  headText: string,
): CopyOptions {
  const x = job.x;
  return {
    prefix: latin1Bytes(headText),
    dechunk: plan.dechunk,
    chunk: plan.rechunk,
    watch: job.client.watch,
    writeMs: job.ctx.config.writeTimeoutMs,
    onWrite: (n) => {
      x.bytes += n;
    },
  };
}

/**
 * The answer was cut mid-body (`e`: the meter, or a socket): the client
 * cannot tell a short body from a complete one unless the connection
 * ends, so both sides are closed.
 */
function cutMidBody(job: ForwardJob, up: PooledUpstream, e: unknown): false {
  const x = job.x;
  if (e instanceof MeterStop) x.tag = "TCP_MISS_ABORTED";
  else if (x.tag === "TCP_MISS") x.tag = "TCP_MISS_ABORTED";
  discard(job.client, up);
  job.client.abort();
  return false;
}

/**
 * The exchange is over: the upstream connection goes back to the pool when
 * it can carry another request. True when the client's can.
 */
function release(
  job: ForwardJob,
  up: PooledUpstream,
  plan: ResponsePlan,
  upload: Upload,
): boolean {
  const upstreamKeeps = plan.upstreamKeeps && upload.error === undefined &&
    up.reader.buffered === 0;
  job.client.upstream = undefined;
  job.client.watch.arm(0, "");
  if (upstreamKeeps) job.ctx.pool.put(up);
  else discard(job.client, up);
  return plan.clientKeeps && upload.error === undefined;
}

/** Gives the upstream connection up: closed, its buffer back to the pool. */
function discard(client: Client, up: PooledUpstream): void {
  closeQuietly(up.dialed.conn);
  up.reader.release();
  client.upstream = undefined;
}

/** Answers with a page of ours; true when the client connection may go on. */
async function answer(
  job: ForwardJob,
  status: number,
  message: string,
  forceClose = false,
): Promise<boolean> {
  const { client, x, req } = job;
  // A request body we did not read would be taken for the next request.
  const close = forceClose || !job.keepAlive ||
    requestFraming(req).kind !== "none";
  const page = errorResponse(status, message, {
    close,
    headOnly: req.method === "HEAD",
  });
  x.status = status;
  x.outcome = "error";
  if (x.tag === "NONE_NONE") x.tag = "TCP_MISS";
  if (!(await sendToClient(client, x, page))) return false;
  return !close;
}
