/**
 * Forwarding plain HTTP requests (absolute-form `GET http://host/path`): one
 * exchange = request head and body up, response head(s) and body down, with
 * the upstream connection kept for reuse when both sides allow it.
 *
 * @module
 */
import type { Decision } from "./policy.ts";
import { dial, type Dialed, DialError } from "./dial.ts";
import { closeQuietly, MeterStop, Reader, writeAll } from "./_io.ts";
import {
  endToEnd,
  type Field,
  fieldTokens,
  fieldValue,
  HeadError,
  parseResponseHead,
  readHead,
  requestFraming,
  type RequestHead,
  responseFraming,
  type ResponseHead,
  serializeHead,
} from "./http_head.ts";
import { BodyError, BodyTooLarge, copyBody } from "./body.ts";
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
import type { Exchange } from "./access_log.ts";
import type { Target } from "./_target.ts";

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
 * when the client connection may carry another request.
 */
export async function forwardRequest(job: ForwardJob): Promise<boolean> {
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
  if (pooled) {
    const outcome = await runPath(job, pooled, true);
    if (outcome !== "stale") return outcome;
    // The idle connection had been closed by the origin before our request
    // reached it: nothing was answered, so asking again on a fresh one is safe.
    // The dial has its own deadline; the response deadline armed for the
    // stale exchange must not run out meanwhile (an expired watch is no
    // longer watched, and the retry would wait for its answer forever).
    job.client.watch.arm(0, "");
  }
  let dialed: Dialed;
  try {
    dialed = await dial(decision.route, target, {
      timeoutMs: ctx.config.dialTimeoutMs,
      purpose: "http",
    });
  } catch (e) {
    if (!(e instanceof DialError)) throw e;
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
  const line = `${job.req.method} ${job.target.path} HTTP/1.1`;
  return exchange(job, up, reused, line, []);
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
  const line = `${job.req.method} http://${t.authority}${t.path} HTTP/1.1`;
  const auth = up.dialed.parentAuthorization;
  return exchange(
    job,
    up,
    reused,
    line,
    auth ? [`Proxy-Authorization: ${auth}`] : [],
  );
}

function isUpgrade(req: RequestHead): boolean {
  return fieldValue(req.fields, "upgrade") !== undefined &&
    fieldTokens(req.fields, "connection").includes("upgrade");
}

async function exchange(
  job: ForwardJob,
  up: PooledUpstream,
  reused: boolean,
  requestLine: string,
  extra: string[],
): Promise<boolean | "stale"> {
  const { ctx, client, req, target, decision, x } = job;
  const upgrade = isUpgrade(req);
  const reqFraming = requestFraming(req);
  const keep: string[] = [];
  if (reqFraming.kind === "chunked") keep.push("transfer-encoding");
  if (upgrade) keep.push("upgrade");
  const fields = endToEnd(req.fields, keep).filter((f) => f.lower !== "host");
  const headers: Field[] = [
    { name: "Host", lower: "host", value: target.authority },
    ...fields,
  ];
  const head = serializeHead(requestLine, headers, [
    ...extra,
    "Via: 1.1 pmproxy",
    ...(upgrade ? ["Connection: Upgrade"] : []),
  ]);

  const upConn = up.dialed.conn;
  const upReader = up.reader;
  const watch = client.watch;
  const { readTimeoutMs, responseTimeoutMs, writeTimeoutMs } = ctx.config;
  // Sending the body while reading the answer: an origin may answer early
  // (401, 413, 100-continue), and the client waits for the 100 before sending.
  let uploaded = reqFraming.kind === "none";
  upReader.meter = decision.meter;
  upReader.idleMs = responseTimeoutMs;
  client.reader.watch = watch;
  client.reader.idleMs = readTimeoutMs;
  client.upstream = upConn;
  // While the body goes up, the client is the one awaited (readTimeout, then
  // 408): the upstream's pending read must not set the deadline meanwhile, or
  // a stalled body would wait for responseTimeout and be blamed on upstream.
  // An upstream that answers early is watched again from its head on.
  //
  // But a client that sent `Expect: 100-continue` and no body yet waits for
  // the origin's word: until its body starts or a 100 is passed on, the
  // upstream is the one awaited.
  let awaitingContinue = !uploaded && client.reader.buffered === 0 &&
    fieldTokens(req.fields, "expect").includes("100-continue");
  const awaitBody = () => {
    awaitingContinue = false;
    if (uploaded || answered) return;
    upReader.watch = undefined;
    watch.arm(readTimeoutMs, READING_BODY);
  };
  upReader.watch = uploaded || awaitingContinue ? watch : undefined;
  if (uploaded || awaitingContinue) {
    watch.arm(responseTimeoutMs, WAITING_FOR_UPSTREAM);
  } else watch.arm(readTimeoutMs, READING_BODY);
  let answered = false;
  const readBefore = upReader.bytesRead;
  x.hierarchy = up.dialed.hierarchy;

  const discard = () => {
    closeQuietly(upConn);
    upReader.release();
    client.upstream = undefined;
  };

  let uploadError: unknown;
  let upload: Promise<void> | undefined;
  try {
    await writeAll(upConn, head);
  } catch (e) {
    discard();
    if (reused && reqFraming.kind === "none") return "stale";
    return await answer(
      job,
      502,
      `Sending the request upstream failed: ${(e as Error).message}.`,
    );
  }
  if (!uploaded) {
    const sendBody = async () => {
      if (awaitingContinue) {
        // The first body bytes, whenever the client sends them (curl does
        // after a second without a 100): from then on the client is awaited.
        // At end of stream copyBody below reports the short body.
        // Meanwhile the client's silence is no timeout of its own.
        client.reader.watch = undefined;
        try {
          await client.reader.fill();
        } finally {
          client.reader.watch = watch;
        }
        if (awaitingContinue) awaitBody();
      }
      await copyBody(client.reader, upConn, reqFraming, {
        watch,
        writeMs: writeTimeoutMs,
        maxBytes: ctx.config.maxRequestBody,
      });
    };
    upload = sendBody().then(
      () => {
        uploaded = true;
        // The body is up: from now on only the upstream is awaited.
        if (!answered) {
          upReader.watch = watch;
          watch.arm(responseTimeoutMs, WAITING_FOR_UPSTREAM);
        }
      },
      (e) => {
        uploadError = e;
        // The request cannot be completed: give up the upstream at once
        // rather than let it wait for the rest of the body.
        closeQuietly(upConn);
      },
    );
  }

  let resp: ResponseHead;
  try {
    for (;;) {
      const bytes = await readHead(upReader, MAX_RESPONSE_HEAD, false);
      if (bytes === null) {
        // A node socket's read ends with null, not an error, when the
        // response deadline closed it: that is a timeout, not a stale socket.
        if (
          reused && upReader.bytesRead === readBefore &&
          reqFraming.kind === "none" && !watch.expired
        ) {
          discard();
          return "stale";
        }
        throw new HeadError(
          502,
          "the upstream closed the connection without answering",
        );
      }
      resp = parseResponseHead(bytes);
      if (resp.status >= 200) break;
      if (resp.status === 101) {
        if (!upgrade) {
          throw new HeadError(502, "the upstream switched protocols unasked");
        }
        break;
      }
      // 1xx (100 Continue, 103 Early Hints): pass on to HTTP/1.1 clients.
      if (req.version === 11) {
        const info = serializeHead(
          `HTTP/1.1 ${resp.status} ${resp.reason}`,
          endToEnd(resp.fields),
          ["Via: 1.1 pmproxy"],
        );
        await writeAll(client.conn, info);
        x.bytes += info.length;
      }
      // After a 100 the client is expected to send its body.
      if (resp.status === 100 && awaitingContinue) awaitBody();
    }
  } catch (e) {
    discard();
    if (e instanceof MeterStop) {
      x.tag = "TCP_MISS_ABORTED";
      client.abort();
      return false;
    }
    if (
      reused && upReader.bytesRead === readBefore &&
      reqFraming.kind === "none" &&
      !watch.expired
    ) {
      return "stale"; // reset on a stale pooled connection
    }
    if (uploadError instanceof BodyTooLarge) {
      return await answer(
        job,
        413,
        `The request body is larger than the ${uploadError.limit} bytes this proxy accepts. Ask the administrator if you need to send more.`,
        true,
      );
    }
    if (uploadError instanceof BodyError) {
      return await answer(
        job,
        400,
        `The request body is malformed: ${uploadError.message}.`,
        true,
      );
    }
    if (watch.expired === READING_BODY && client.reader.waiting) {
      return await answer(
        job,
        408,
        `The request body stopped arriving: nothing came for ${readTimeoutMs} ms. Send the request again.`,
        true,
      );
    }
    const timedOut = watch.expired !== "";
    const msg = watch.expired === READING_BODY
      ? `the upstream did not take the request body within ${writeTimeoutMs} ms`
      : timedOut
      ? `the upstream did not answer within ${responseTimeoutMs} ms`
      : e instanceof HeadError
      ? e.message
      : `reading the upstream's answer failed: ${(e as Error).message}`;
    return await answer(job, timedOut ? 504 : 502, `${msg}.`, true);
  }

  x.status = resp.status;
  x.tag = "TCP_MISS";
  x.contentType = fieldValue(resp.fields, "content-type");
  // From here a timeout can only end the exchange: the head is going out.
  answered = true;
  upReader.watch = watch;
  watch.arm(writeTimeoutMs, "transfer");

  if (resp.status === 101) {
    const switching = serializeHead(
      `HTTP/1.1 101 ${resp.reason}`,
      endToEnd(resp.fields, ["upgrade"]),
      ["Via: 1.1 pmproxy", "Connection: Upgrade"],
    );
    try {
      await writeAll(client.conn, switching);
      x.bytes += switching.length;
      await tunnelUpgrade(ctx, client, upReader, x);
    } finally {
      discard();
    }
    return false;
  }

  const framing = responseFraming(req.method, resp);
  // Content-Length beside chunked: chunked wins, the length must not reach
  // the client, and the connection is not trusted for another request.
  const ambiguous = framing.kind === "chunked" &&
    fieldValue(resp.fields, "content-length") !== undefined;
  // An HTTP/1.0 client cannot read chunked: send it the bare data and close.
  const dechunk = framing.kind === "chunked" && req.version === 10;
  // A body that ends with the origin's close would end the client's
  // connection too; an HTTP/1.1 client that keeps it gets the body chunked,
  // so the last chunk marks its end instead (as Squid does).
  const rechunk = framing.kind === "close" && job.keepAlive &&
    req.version === 11;
  const clientKeep = job.keepAlive && !dechunk &&
    (framing.kind !== "close" || rechunk);
  const respKeep: string[] = [];
  if (framing.kind === "chunked" && !dechunk) {
    respKeep.push("transfer-encoding", "trailer");
  }
  const respExtra = ["Via: 1.1 pmproxy"];
  if (rechunk) respExtra.push("Transfer-Encoding: chunked");
  if (!clientKeep) respExtra.push("Connection: close");
  else if (req.version === 10) respExtra.push("Connection: keep-alive");
  const respHead = serializeHead(
    `HTTP/1.1 ${resp.status} ${resp.reason}`,
    ambiguous
      ? endToEnd(resp.fields, respKeep).filter((f) =>
        f.lower !== "content-length"
      )
      : endToEnd(resp.fields, respKeep),
    respExtra,
  );
  try {
    await copyBody(upReader, client.conn, framing, {
      prefix: respHead,
      dechunk,
      chunk: rechunk,
      watch,
      writeMs: writeTimeoutMs,
      onWrite: (n) => {
        x.bytes += n;
      },
    });
  } catch (e) {
    // Cut mid-body: the client cannot tell a short body from a complete one
    // unless the connection ends, so both sides are closed.
    if (e instanceof MeterStop) x.tag = "TCP_MISS_ABORTED";
    else if (x.tag === "TCP_MISS") x.tag = "TCP_MISS_ABORTED";
    discard();
    client.abort();
    return false;
  }

  if (!uploaded && uploadError === undefined) {
    // The answer is complete but the client is still sending its body: we
    // cannot find the next request's start reliably, so end both sides.
    discard();
    client.abort();
    await upload;
    return false;
  }
  await upload;
  const upstreamKeeps = framing.kind !== "close" && !ambiguous &&
    resp.version === 11 &&
    !fieldTokens(resp.fields, "connection").includes("close") &&
    uploadError === undefined &&
    upReader.buffered === 0;
  client.upstream = undefined;
  watch.arm(0, "");
  if (upstreamKeeps) ctx.pool.put(up);
  else discard();
  return clientKeep && uploadError === undefined;
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
  if (x.tag === "NONE") x.tag = "TCP_MISS";
  if (!(await sendToClient(client, x, page))) return false;
  return !close;
}
