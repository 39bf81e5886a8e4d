/**
 * The captive portal without JavaScript: `POST /login` (a plain form),
 * `POST /logout`, and the login page rendered with the status of the
 * session this browser holds. The session is kept in a cookie instead of
 * app.js's localStorage:
 *
 * - `__Host-pmproxy_session`: the session manager's name and the secret
 *   `open` gave, `HttpOnly` (no script reads it), `Secure`, `Path=/`, no
 *   domain (`__Host-`: no other host can set it), `SameSite=Strict` (a
 *   request started by another site does not carry it);
 * - `pmproxy_lang`: the language chosen with the page's switch.
 *
 * Cross-site forms. Logout must not be triggerable from another site:
 * the Strict cookie already stays home on a cross-site request, and a
 * POST whose `Origin` (or `Sec-Fetch-Site`) says it comes from another
 * site is refused with 403 before anything happens. Login gets the same
 * check: a forged login is low-risk (it would tie the visitor's address
 * to someone else's account), but the check costs nothing. A request
 * without `Origin` (curl, old browsers) is let through: it carries no
 * cross-site cookie anyway.
 *
 * `next`. The proxy's refusal page links to the login page with
 * `?next=<the refused URL>`, and after login the browser goes back there,
 * as captive portals do. Only http(s) URLs are accepted (never
 * `javascript:` or `data:`). Any http(s) host is accepted on purpose: the
 * refused page can be on any site, and the redirect gives the target
 * nothing (the secret never travels in a URL, the cookie is HttpOnly and
 * only for this host), and it only takes the visitor where the URL says,
 * which the login page shows before they log in.
 *
 * @module
 */
import type { Context, Hono } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import {
  type Caller,
  CommandError,
  type Gateway,
  TooManyAttempts,
} from "../managers/mod.ts";
import { chooseLanguage, type Languages } from "./_i18n.ts";
import {
  describeCommandError,
  type PageContext,
  type PortalView,
  renderPlain,
  renderPortal,
  textOf,
} from "./_pages.ts";

/** The session cookie's name without its `__Host-` prefix. */
export const SESSION_COOKIE = "pmproxy_session";
/** The remembered language's cookie. */
export const LANGUAGE_COOKIE = "pmproxy_lang";
/** How long the browser keeps the session cookie (renewed with the secret). */
const SESSION_COOKIE_SECONDS = 30 * 24 * 3600;
/** How long the language choice is remembered. */
const LANGUAGE_COOKIE_SECONDS = 365 * 24 * 3600;

/** What the portal needs from the app. */
export interface PortalOptions {
  /** The login page's template (index.html), when the build has one. */
  loginTemplate?: string;
  languages: Languages;
  /** The client IP of a request (as `/api/cmd` sees it). */
  clientIp: (c: Context) => string;
  /** The body of a request as text, within the API's size limit. */
  readBody: (c: Context) => Promise<string | undefined>;
}

/** The session a browser holds in its cookie. */
interface CookieSession {
  manager: string;
  secret: string;
}

function readSession(c: Context): CookieSession | undefined {
  const value = getCookie(c, SESSION_COOKIE, "host");
  if (!value) return undefined;
  // "manager:secret": a secret (a JWT) has no ":", a name might.
  const at = value.lastIndexOf(":");
  if (at <= 0 || at === value.length - 1) return undefined;
  return { manager: value.slice(0, at), secret: value.slice(at + 1) };
}

function keepSession(c: Context, session: CookieSession): void {
  setCookie(c, SESSION_COOKIE, `${session.manager}:${session.secret}`, {
    prefix: "host",
    httpOnly: true,
    secure: true,
    sameSite: "Strict",
    maxAge: SESSION_COOKIE_SECONDS,
  });
}

function dropSession(c: Context): void {
  deleteCookie(c, SESSION_COOKIE, {
    prefix: "host",
    httpOnly: true,
    secure: true,
    sameSite: "Strict",
  });
}

/** `next` when it is an http(s) URL (see the module's doc), else undefined. */
export function safeNext(raw: string | null | undefined): string | undefined {
  if (!raw) return undefined;
  try {
    const url = new URL(raw);
    return url.protocol === "http:" || url.protocol === "https:"
      ? url.href
      : undefined;
  } catch {
    return undefined;
  }
}

/** True unless the request says another site sent it. */
function fromOurPages(c: Context): boolean {
  const site = c.req.header("sec-fetch-site");
  if (site !== undefined && site !== "same-origin" && site !== "none") {
    return false;
  }
  const origin = c.req.header("origin");
  if (origin === undefined) return true;
  return origin === new URL(c.req.url).origin;
}

/**
 * The managers of a kind, those the rule reaches for the caller first (the
 * same order app.js finds them in), then the others of the rule.
 */
function managersOf(
  gateway: Gateway,
  caller: Caller,
  kind: "sessionIPM" | "dwnConsR",
): string[] {
  const found: string[] = [];
  try {
    for (const [name, m] of Object.entries(gateway.discover(caller).matchMng)) {
      if (m.type === kind) found.push(name);
    }
  } catch {
    // The rule's names still tell.
  }
  for (const name of gateway.portal()[kind]) {
    if (!found.includes(name)) found.push(name);
  }
  return found;
}

function isExpired(e: unknown): boolean {
  return e instanceof CommandError && e.body.message === "expired token";
}

/** True when the error means "this secret no longer opens a session here". */
function isLoggedOut(e: unknown): boolean {
  if (!(e instanceof CommandError)) return false;
  const b = e.body;
  if ("Logged" in b || "IP" in b) return true;
  return typeof b.message === "string" &&
    /jwt|token|secret|session|not logged/i.test(b.message);
}

/**
 * Adds the user's usage charts to the status: today by hour, this cycle by
 * day. A history that cannot be read leaves a sentence instead; the rest
 * of the page does not depend on it.
 */
async function addHistory(
  gateway: Gateway,
  view: PortalView,
  asked: { quota: string; caller: Caller },
): Promise<void> {
  const { quota, caller } = asked;
  try {
    const today = await gateway.usage(quota, caller, {
      by: "hour",
      since: "today",
      until: "today",
    });
    const cycle = await gateway.usage(quota, caller, {
      by: "day",
      since: "cycle",
      until: "cycle",
    });
    view.history = { today, cycle };
  } catch (e) {
    if (!(e instanceof CommandError)) throw e;
    view.historyMissing = true;
  }
}

/** The pages the portal renders; app.ts routes to them. */
export interface PortalPages {
  /** The login page (`/`, `/status`, the excluded routes). */
  loginPage: (c: Context) => Promise<Response>;
  /** Another page template (the admin page): texts and language only. */
  plainPage: (c: Context, template: string) => Response;
}

/**
 * Registers `POST /login` and `POST /logout` on `app` and answers the
 * page renderers for app.ts's GET routes.
 */
export function portalRoutes(
  app: Hono,
  gateway: Gateway,
  options: PortalOptions,
): PortalPages {
  const { languages, clientIp } = options;

  /**
   * Runs `work` as the caller of the cookie's secret; when the gateway says
   * it expired, renews it once and retries (app.js does the same), keeping
   * the new one in the cookie.
   */
  const withSecret = async <T>(
    c: Context,
    session: CookieSession,
    work: (caller: Caller) => Promise<T>,
  ): Promise<T> => {
    const ip = clientIp(c);
    try {
      return await work({ ip, secret: session.secret });
    } catch (e) {
      if (!isExpired(e)) throw e;
      const secret = (await gateway.renew(session.manager, {
        ip,
        secret: session.secret,
      })).trim();
      keepSession(c, { manager: session.manager, secret });
      return await work({ ip, secret });
    }
  };

  const pageContext = (c: Context): PageContext => {
    const url = new URL(c.req.url);
    const query = url.searchParams.get("lang") ?? undefined;
    const lang = chooseLanguage(languages, {
      query,
      remembered: getCookie(c, LANGUAGE_COOKIE),
      acceptLanguage: c.req.header("accept-language"),
    });
    if (query === lang) {
      setCookie(c, LANGUAGE_COOKIE, lang, {
        httpOnly: true,
        secure: true,
        sameSite: "Lax",
        maxAge: LANGUAGE_COOKIE_SECONDS,
      });
    }
    return { lang, languages, url };
  };

  const send = (c: Context, ctx: PageContext, html: string, status = 200) => {
    // Personal (the status) and per language: never cached.
    c.header("Cache-Control", "no-store");
    c.header("Vary", "Accept-Language, Cookie");
    c.header("Content-Language", ctx.lang);
    return c.body(html, status as 200, {
      "Content-Type": "text/html; charset=utf-8",
    });
  };

  const portal = (
    c: Context,
    ctx: PageContext,
    view: PortalView,
    status = 200,
  ) => {
    const template = options.loginTemplate;
    if (template === undefined) {
      return c.text("pmproxy: no web pages in this build\n", 404);
    }
    return send(c, ctx, renderPortal(template, ctx, view), status);
  };

  const loginView = (
    c: Context,
    view: Omit<PortalView, "view" | "sessionManagers">,
  ): PortalView => ({
    ...view,
    view: "login",
    sessionManagers: managersOf(
      gateway,
      { ip: clientIp(c), secret: "" },
      "sessionIPM",
    ),
  });

  /** The login page: the status of the cookie's session, or the form. */
  const page = async (c: Context) => {
    const ctx = pageContext(c);
    const query = ctx.url.searchParams;
    const next = safeNext(query.get("next") ?? query.get("url"));
    const notice = query.get("notice");
    const session = readSession(c);
    if (!session || gateway.kindOf(session.manager) !== "sessionIPM") {
      const words = notice === "logged-out"
        ? textOf(ctx, "status.loggedOut")
        : notice === "already-ended"
        ? textOf(ctx, "status.alreadyEnded")
        : undefined;
      return portal(c, ctx, loginView(c, { next, notice: words }));
    }
    const ip = clientIp(c);
    try {
      const quota = managersOf(
        gateway,
        { ip, secret: session.secret },
        "dwnConsR",
      )[0];
      const view: PortalView = { view: "status", next };
      await withSecret(c, session, async (caller) => {
        if (quota) {
          view.info = await gateway.userInfo(quota, caller);
          await addHistory(gateway, view, { quota, caller });
        } else {
          view.userName = await gateway.check(session.manager, caller);
        }
      });
      view.rule = gateway.discover({ ip });
      if (notice === "welcome") {
        const user = view.info?.userName ?? view.userName ?? "";
        // Whether the rule lets this address browse now (to `next`, when
        // the refused page is known: the rule may depend on its host).
        const allowed = gateway.discover({ ip }, next).result;
        view.notice = textOf(
          ctx,
          allowed ? "status.welcome" : "status.welcomeRefused",
          { user },
        );
        // Back to the refused page at once, as app.js does after login:
        // if the rule still refuses it, the proxy's page there says why.
        view.goNext = true;
      }
      return portal(c, ctx, view);
    } catch (e) {
      if (!(e instanceof CommandError)) throw e;
      const message = describeCommandError(ctx, e.body);
      if (isLoggedOut(e)) {
        dropSession(c);
        return portal(c, ctx, loginView(c, { next, loginError: message }));
      }
      return portal(c, ctx, { view: "status", next, statusError: message });
    }
  };

  app.post("/login", async (c) => {
    c.header("Cache-Control", "no-store");
    const ctx = pageContext(c);
    if (!fromOurPages(c)) {
      return portal(
        c,
        ctx,
        loginView(c, { loginError: textOf(ctx, "error.crossSite") }),
        403,
      );
    }
    const form = new URLSearchParams(await options.readBody(c) ?? "");
    const user = (form.get("user") ?? "").trim();
    const pass = form.get("pass") ?? "";
    const next = safeNext(form.get("next"));
    const failed = (loginError: string, status: number) =>
      portal(c, ctx, loginView(c, { user, next, loginError }), status);
    if (!user || !pass) return failed(textOf(ctx, "login.missing"), 400);
    const ip = clientIp(c);
    const manager = form.get("sessionIPM") ||
      managersOf(gateway, { ip, secret: "" }, "sessionIPM")[0] ||
      "sessions";
    if (gateway.kindOf(manager) !== "sessionIPM") {
      return failed(textOf(ctx, "error.badManager", { manager }), 400);
    }
    let secret: string;
    try {
      // The same call as /api/cmd's "open".
      secret = (await gateway.open(manager, { ip, secret: "" }, {
        user,
        pass,
      })).trim();
    } catch (e) {
      if (!(e instanceof CommandError)) throw e;
      if (e instanceof TooManyAttempts) {
        c.header("Retry-After", String(e.retryAfterSeconds));
        return failed(describeCommandError(ctx, e.body), 429);
      }
      // 403, not 401: a 401 must come with a WWW-Authenticate challenge,
      // and this is a form, not HTTP authentication.
      return failed(describeCommandError(ctx, e.body), 403);
    }
    keepSession(c, { manager, secret });
    const query = new URLSearchParams({ notice: "welcome" });
    if (next) query.set("next", next);
    return c.redirect(`/status?${query}`, 303);
  });

  app.post("/logout", async (c) => {
    c.header("Cache-Control", "no-store");
    const ctx = pageContext(c);
    if (!fromOurPages(c)) {
      return portal(c, ctx, {
        view: "status",
        statusError: textOf(ctx, "error.crossSite"),
      }, 403);
    }
    // The form has no fields; the body is read only to be done with it.
    await options.readBody(c);
    const session = readSession(c);
    if (!session) return c.redirect("/", 303);
    let notice = "logged-out";
    try {
      await withSecret(
        c,
        session,
        (caller) => gateway.logout(session.manager, caller),
      );
    } catch (e) {
      if (!isLoggedOut(e)) {
        if (!(e instanceof CommandError)) throw e;
        return portal(c, ctx, {
          view: "status",
          statusError: describeCommandError(ctx, e.body),
        }, 400);
      }
      notice = "already-ended";
    }
    dropSession(c);
    return c.redirect(`/?notice=${notice}`, 303);
  });

  return {
    loginPage: page,
    plainPage: (c, template) => {
      const ctx = pageContext(c);
      return send(c, ctx, renderPlain(template, ctx));
    },
  };
}
