/**
 * The proxy's own answers: refusals (403, 407), broken requests (400, 414,
 * 431, 501, 505), upstream failures (502, 504), overload (503), and the page shown
 * to someone who opens the proxy's address in a browser. Each says what
 * happened and what to do, in a few lines of HTML.
 *
 * @module
 */
import { latin1Bytes } from "./http_head.ts";
import type { DialError } from "./dial.ts";

const REASONS: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  403: "Forbidden",
  407: "Proxy Authentication Required",
  408: "Request Timeout",
  413: "Content Too Large",
  414: "URI Too Long",
  431: "Request Header Fields Too Large",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
  508: "Loop Detected",
};

/** Options of {@link errorResponse}. */
export interface PageOptions {
  /** Where to log in; shown as a link. */
  loginUrl?: string;
  /** Extra header lines ("Name: value"). */
  headers?: string[];
  /** Add `Connection: close` (the proxy closes after this answer). */
  close?: boolean;
  /** HEAD request: head only. */
  headOnly?: boolean;
}

function escape(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** The reason phrase for a status the proxy answers itself. */
export function reasonPhrase(status: number): string {
  return REASONS[status] ?? "Error";
}

/**
 * A complete HTTP/1.1 response: status line, headers and a short HTML page
 * with `title`, the `message` sentence and a login link when one is known.
 */
export function errorResponse(
  status: number,
  message: string,
  options: PageOptions = {},
): Uint8Array {
  const title = `${status} ${reasonPhrase(status)}`;
  const login = options.loginUrl
    ? `<p>Log in at <a href="${escape(options.loginUrl)}">${
      escape(options.loginUrl)
    }</a>.</p>\n`
    : "";
  const body = `<!doctype html>\n<html><head><meta charset="utf-8"><title>${
    escape(title)
  }</title></head>\n<body><h1>${escape(title)}</h1>\n<p>${
    escape(message)
  }</p>\n${login}<p><small>pmproxy</small></p></body></html>\n`;
  const bodyBytes = new TextEncoder().encode(body);
  let head = `HTTP/1.1 ${title}\r\n` +
    `Content-Type: text/html; charset=utf-8\r\n` +
    `Content-Length: ${bodyBytes.length}\r\n` +
    `Cache-Control: no-store\r\n`;
  for (const h of options.headers ?? []) head += h + "\r\n";
  if (options.close) head += "Connection: close\r\n";
  const headBytes = latin1Bytes(head + "\r\n");
  if (options.headOnly) return headBytes;
  const out = new Uint8Array(headBytes.length + bodyBytes.length);
  out.set(headBytes);
  out.set(bodyBytes, headBytes.length);
  return out;
}

/**
 * The page for a request sent to the proxy as if it were a web server
 * (origin-form `GET /`): this is a proxy, configure it, log in at ....
 */
export function proxyInfoPage(
  loginUrl: string | undefined,
  options: PageOptions = {},
): Uint8Array {
  const message = "This address is an HTTP proxy, not a web site. " +
    "Set it as the HTTP and HTTPS proxy of your browser or system, " +
    "then browse as usual.";
  const page = errorResponse(200, message, { ...options, loginUrl });
  return page;
}

/**
 * The answer to a failed dial: 504 when it timed out, else 502, with the
 * dialer's sentence and what to do (no doubled punctuation when the
 * dialer's sentence already ends with a question, "is the parent running?").
 */
export function dialFailure(
  e: DialError,
): { status: 502 | 504; message: string } {
  const ends = /[.?!]$/.test(e.message) ? "" : ".";
  return {
    status: e.timedOut ? 504 : 502,
    message: `${e.message}${ends} Check the address, or try again later.`,
  };
}
