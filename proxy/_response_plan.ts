/**
 * How one response goes to this client, decided from the request's facts
 * and the response head alone (a pure function, so every case is tested
 * without a socket): passed on as framed, de-chunked for an HTTP/1.0
 * client, or a close-delimited body chunked for a kept-alive HTTP/1.1
 * client (as Squid does); which hop-by-hop fields pass and which lines are
 * added; and whether each connection may carry another message afterwards.
 *
 * @module
 */
import {
  fieldValue,
  type Framing,
  hasToken,
  type RequestHead,
  responseFraming,
  type ResponseHead,
} from "./http_head.ts";

/** The request side of {@link planResponse} (a forwarded request's job is one). */
export interface PlanRequest {
  req: Pick<RequestHead, "method" | "version">;
  /** The client asked to keep its connection open. */
  keepAlive: boolean;
}

/** How to send one response: the answer of {@link planResponse}. */
export interface ResponsePlan {
  /** How the body arrives from upstream. */
  framing: Framing;
  /** Send only the data of the chunked body: an HTTP/1.0 client cannot read chunked. */
  dechunk: boolean;
  /** Send the close-delimited body chunked: its last chunk, not a close, ends it. */
  rechunk: boolean;
  /** Content-Length beside chunked: chunked wins, the length is not passed on. */
  dropContentLength: boolean;
  /** Hop-by-hop fields of the response head to pass on anyway. */
  keep: readonly string[];
  /** Lines added after the response head's fields. */
  add: readonly string[];
  /** The client connection may carry another request after this response. */
  clientKeeps: boolean;
  /**
   * The upstream connection may carry another request, as far as the head
   * tells (the exchange also needs the body read whole, nothing more
   * buffered, and the request body sent).
   */
  upstreamKeeps: boolean;
}

const VIA = "Via: 1.1 pmproxy";
// The few heads' endings there are, shared rather than built per response.
const NOTHING: readonly string[] = Object.freeze([]);
const CHUNKED_FIELDS: readonly string[] = Object.freeze([
  "transfer-encoding",
  "trailer",
]);
const ADD_VIA: readonly string[] = Object.freeze([VIA]);
const ADD_RECHUNKED: readonly string[] = Object.freeze([
  VIA,
  "Transfer-Encoding: chunked",
]);
const ADD_CLOSE: readonly string[] = Object.freeze([VIA, "Connection: close"]);
const ADD_KEEP_ALIVE: readonly string[] = Object.freeze([
  VIA,
  "Connection: keep-alive",
]);

/**
 * Decides how the response `resp` to `request` is sent to its client.
 *
 * @example
 * ```ts
 * const plan = planResponse(
 *   { req: { method: "GET", version: 10 }, keepAlive: true },
 *   { version: 11, status: 200, reason: "OK", fields: [
 *     { name: "Transfer-Encoding", lower: "transfer-encoding", value: "chunked" },
 *   ] },
 * );
 * plan.dechunk; // true: the HTTP/1.0 client gets the bare data,
 * plan.clientKeeps; // false: and the close marks its end.
 * ```
 */
export function planResponse(
  request: PlanRequest,
  resp: ResponseHead,
): ResponsePlan {
  const { method, version } = request.req;
  const framing = responseFraming(method, resp);
  const chunked = framing.kind === "chunked";
  // Content-Length beside chunked: chunked wins, the length must not reach
  // the client, and the upstream connection is not trusted for another
  // request.
  const dropContentLength = chunked &&
    fieldValue(resp.fields, "content-length") !== undefined;
  // An HTTP/1.0 client cannot read chunked: send it the bare data and close.
  const dechunk = chunked && version === 10;
  // A body that ends with the origin's close would end the client's
  // connection too; an HTTP/1.1 client that keeps it gets the body chunked,
  // so the last chunk marks its end instead (as Squid does).
  const rechunk = framing.kind === "close" && request.keepAlive &&
    version === 11;
  const clientKeeps = request.keepAlive && !dechunk &&
    (framing.kind !== "close" || rechunk);
  const upstreamKeeps = framing.kind !== "close" && !dropContentLength &&
    resp.version === 11 &&
    !hasToken(resp.fields, "connection", "close");
  // Rechunking happens only for a kept-alive HTTP/1.1 client, which needs
  // no Connection line; an HTTP/1.0 client that keeps its connection must
  // be told so.
  const add = rechunk
    ? ADD_RECHUNKED
    : !clientKeeps
    ? ADD_CLOSE
    : version === 10
    ? ADD_KEEP_ALIVE
    : ADD_VIA;
  return {
    framing,
    dechunk,
    rechunk,
    dropContentLength,
    keep: chunked && !dechunk ? CHUNKED_FIELDS : NOTHING,
    add,
    clientKeeps,
    upstreamKeeps,
  };
}
