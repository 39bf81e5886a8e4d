/**
 * The access log: one line per finished exchange, handed to the
 * {@link LogSink} given to `startProxy` (standard output, a file or syslog,
 * see log_sinks.ts), in one of two formats.
 *
 * Squid's native `access.log` format (the default), field for field what
 * Squid 5 writes (`logformat squid %ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm
 * %ru %[un %Sh/%<a %mt`), so that Squid's log analysers (calamaris, SARG,
 * ...) read it:
 *
 * ```
 * time.ms elapsed client result/status bytes method URL user hierarchy/peer type
 * 1764064012.345     12 10.0.0.5 TCP_MISS/200 1534 GET http://example.org/ user0 HIER_DIRECT/93.184.216.34 text/html
 * ```
 *
 * - elapsed: milliseconds from the request head to the end, right-aligned
 *   in 6 columns;
 * - result: Squid's tags (`TCP_MISS`, `TCP_TUNNEL`, `TCP_DENIED`,
 *   `TCP_MISS_ABORTED`, `NONE_NONE` for a request the proxy could not
 *   read), the status in 3 digits (`000` when none was sent);
 * - bytes: everything sent to the client, heads included;
 * - URL and method: as the request had them; what would split the line
 *   (control characters, spaces, bytes beyond ASCII) as `%XX`;
 * - user: the one the policy's decision named, `-` for none; escaped as
 *   Squid escapes it (`%`, `[`, `]`, control characters and bytes beyond
 *   ASCII as `%XX`), and spaces too, which would split the field;
 * - hierarchy: `HIER_DIRECT/<origin's address>`,
 *   `FIRSTUP_PARENT/<parent's address>`, or `HIER_NONE/-` when nothing was
 *   dialled;
 * - type: the response's media type alone, cut at `;` or white space
 *   (`text/html; charset=utf-8` is logged `text/html`), `-` for none. The
 *   proxy's own pages are `text/html`.
 *
 * JSON lines (`accessLogFormat = "json"`): one object per exchange with the
 * same fields, and the outcome (see {@link Outcome}):
 *
 * ```json
 * {"time":"2025-11-25T09:46:52.345Z","elapsedMs":12,"clientIp":"10.0.0.5","result":"TCP_MISS","status":200,"bytes":1534,"method":"GET","url":"http://example.org/","user":"user0","hierarchy":"HIER_DIRECT","peer":"93.184.216.34","contentType":"text/html","outcome":"allowed"}
 * ```
 *
 * `user`, `peer` and `contentType` are null when unknown.
 *
 * The decision's note is one more tag of the result code
 * (`TCP_MISS_SLOWED/200`, `TCP_TUNNEL_SLOWED/200`: past the quota, slowed),
 * the way Squid adds `_ABORTED`.
 *
 * @module
 */
import type { LogSink } from "./log_sinks.ts";
import type { Outcome } from "./stats.ts";

/** What one exchange gathered while it ran; finished by {@link logExchange}. */
export interface Exchange {
  /** `performance.now()` when the request head was read. */
  start: number;
  time: Date;
  clientIp: string;
  method: string;
  url: string;
  /** The user the decision accounted the request to. */
  user?: string;
  /** The decision's note (`slowed`), added to the result code. */
  note?: string;
  /** `HIER_DIRECT/1.2.3.4`, `FIRSTUP_PARENT/10.0.0.1`, or `HIER_NONE/-`. */
  hierarchy: string;
  /**
   * Squid result tag without status: TCP_MISS, TCP_TUNNEL, TCP_DENIED,
   * NONE_NONE.
   */
  tag: string;
  status: number;
  /** Bytes sent to the client. */
  bytes: number;
  /** The response's Content-Type as it came (cut when logged). */
  contentType?: string;
  /** What the exchange came to: "error" until something better is known. */
  outcome: Outcome;
}

/** How an exchange becomes a line: Squid's native format or JSON. */
export type AccessLogFormat = "squid" | "json";

/**
 * A fresh exchange record for a request read now. Every field is there
 * from the start, the optional ones undefined: one shape for all, its
 * fields inside the object (one added later would need a property array
 * besides, held by every tunnel for as long as it lasts).
 */
export function newExchange(clientIp: string, time: Date): Exchange {
  return {
    start: performance.now(),
    time,
    clientIp,
    method: "-",
    url: "-",
    user: undefined,
    note: undefined,
    hierarchy: "HIER_NONE/-",
    tag: "NONE_NONE",
    status: 0,
    bytes: 0,
    contentType: undefined,
    outcome: "error",
  };
}

/** The media type alone, as Squid logs it: cut at `;`, space or tab. */
export function mediaType(contentType: string | undefined): string {
  if (contentType === undefined) return "-";
  const cut = MEDIA_TYPE_END.exec(contentType);
  const type = cut === null ? contentType : contentType.slice(0, cut.index);
  return type === "" ? "-" : escapeToken(type);
}

/** Where a Content-Type's media type ends. */
const MEDIA_TYPE_END = /[;\s]/;

/**
 * A user name as Squid writes it (`%[un`): `%`, `[`, `]`, control
 * characters and DEL as `%XX`, and characters beyond ASCII by their UTF-8
 * bytes; a space too, which Squid leaves and which would split the field.
 */
export function escapeUser(text: string): string {
  return USER_ESCAPED.test(text) ? escape(text, USER_ESCAPED) : text;
}

/**
 * A URL, method or media type: as it is, but for what would break the
 * line (control characters, space, DEL, characters beyond ASCII), written
 * `%XX`. Brackets stay (`http://[::1]/`), and so does `%`: a URL's escapes
 * are its own.
 */
export function escapeToken(text: string): string {
  return TOKEN_ESCAPED.test(text) ? escape(text, TOKEN_ESCAPED) : text;
}

// What each escapes: anything but printable ASCII (for the user, but `%`,
// `[` and `]` too). The usual text has none of it: one regex test, no
// allocation.
const TOKEN_ESCAPED = /[^\x21-\x7e]/;
const USER_ESCAPED = /[^\x21-\x24\x26-\x5a\x5c\x5e-\x7e]/;

const utf8 = new TextEncoder();

function escape(text: string, escaped: RegExp): string {
  let out = "";
  for (const byte of utf8.encode(text)) {
    const c = String.fromCharCode(byte);
    out += escaped.test(c)
      ? `%${byte.toString(16).toUpperCase().padStart(2, "0")}`
      : c;
  }
  return out;
}

/**
 * Formats one finished exchange as a Squid native access.log line;
 * `elapsedMs` is the time from its request head to its end.
 */
export function formatAccessLine(x: Exchange, elapsedMs: number): string {
  const seconds = (x.time.getTime() / 1000).toFixed(3);
  const elapsed = String(elapsedMs).padStart(6);
  const status = x.status >= 100 ? x.status : String(x.status).padStart(3, "0");
  const user = x.user ? escapeUser(x.user) : "-";
  // A note is one more tag of the result code (TCP_MISS_SLOWED/200), the
  // way Squid adds _ABORTED: analysers read the code as one word.
  const tag = x.note
    ? `${x.tag}_${x.note.toUpperCase().replace(/\W/g, "_")}`
    : x.tag;
  return `${seconds} ${elapsed} ${x.clientIp} ${tag}/${status} ${x.bytes} ` +
    `${escapeToken(x.method)} ${escapeToken(x.url)} ${user} ${x.hierarchy} ${
      mediaType(x.contentType)
    }`;
}

/**
 * Formats one finished exchange as a JSON object on one line (see the
 * module documentation).
 */
export function formatJsonLine(x: Exchange, elapsedMs: number): string {
  const slash = x.hierarchy.indexOf("/");
  const code = slash < 0 ? x.hierarchy : x.hierarchy.slice(0, slash);
  const peer = slash < 0 ? "-" : x.hierarchy.slice(slash + 1);
  const type = mediaType(x.contentType);
  return JSON.stringify({
    time: x.time.toISOString(),
    elapsedMs,
    clientIp: x.clientIp,
    result: x.tag,
    status: x.status,
    bytes: x.bytes,
    method: x.method,
    url: x.url,
    user: x.user || null,
    hierarchy: code,
    peer: peer === "-" ? null : peer,
    contentType: type === "-" ? null : type,
    outcome: x.outcome,
  });
}

/**
 * Writes the finished exchange's line to `sink` (none: no log) in
 * `format` (default: Squid's); never throws.
 */
export function logExchange(
  sink: LogSink | undefined,
  x: Exchange,
  format: AccessLogFormat = "squid",
): void {
  if (sink === undefined) return;
  try {
    const elapsed = Math.round(performance.now() - x.start);
    sink.send(
      format === "json"
        ? formatJsonLine(x, elapsed)
        : formatAccessLine(x, elapsed),
    );
  } catch {
    // The log must never take the data path down.
  }
}
