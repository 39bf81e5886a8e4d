/**
 * The web pages as the API renders them: the HTML files of web/ are
 * templates with two kinds of placeholders, filled per request:
 *
 * - `{{login.submit}}` (or `{{ login.submit }}`, as deno fmt writes it): the text of that key in the visitor's language
 *   (web/i18n/LANG.json), HTML-escaped;
 * - `{{$user}}`: a value of this request, HTML-escaped, or markup this
 *   module built itself (a {@link Markup}: the language switch, the
 *   `hidden` of a section, a `<meta>` refresh).
 *
 * No other templating: a page without placeholders is served as it is.
 * The login page (index.html) is rendered from a {@link PortalView}, so it
 * works without JavaScript; app.js, when it runs, takes it over.
 *
 * @module
 */
import type { DiscoverResult, UsageReport, UserInfo } from "../managers/mod.ts";
import {
  barChart,
  barsSummary,
  barTable,
  formatBytes,
  periodNames,
  usageBars,
  wallTime,
} from "../web/chart.js";
import { type Catalogue, type Languages, translate } from "./_i18n.ts";

/** HTML this module made, put into a page as it is. */
export class Markup {
  constructor(readonly html: string) {}
}

const NOTHING = new Markup("");
const HIDDEN = new Markup("hidden");
const AUTOFOCUS = new Markup("autofocus");

/** `text` safe inside HTML text and quoted attributes. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Options of {@link fillTemplate}. */
export interface FillOptions {
  /** The text of a catalogue key. */
  text: (key: string) => string;
  /** The values of `{{$name}}`; a missing one is empty. */
  values: Record<string, string | Markup>;
}

/** Fills the placeholders of a page template (see the module's doc). */
export function fillTemplate(template: string, options: FillOptions): string {
  return template.replace(
    /\{\{\s*(\$?)([\w.-]+)\s*\}\}/g,
    (_whole, dollar: string, name: string) => {
      if (dollar === "") return escapeHtml(options.text(name));
      const value = options.values[name] ?? "";
      return value instanceof Markup ? value.html : escapeHtml(value);
    },
  );
}

/** Who a page is rendered for. */
export interface PageContext {
  /** The language chosen for this request. */
  lang: string;
  languages: Languages;
  /** The request's URL (the language switch keeps its other parameters). */
  url: URL;
}

function catalogueOf(ctx: PageContext): Catalogue {
  return ctx.languages.catalogues.get(ctx.lang) ?? {};
}

/** The text of `key` in the page's language. */
export function textOf(
  ctx: PageContext,
  key: string,
  params: Record<string, string | number> = {},
): string {
  return translate(catalogueOf(ctx), key, params);
}

/**
 * The language switch: a link per language, named in its own language.
 * `?lang=` sets the remembered choice; the other parameters (`next`) stay,
 * a one-time `notice` goes.
 */
export function languageSwitch(ctx: PageContext): Markup {
  const links: string[] = [];
  for (const [tag, catalogue] of ctx.languages.catalogues) {
    const query = new URLSearchParams(ctx.url.search);
    query.delete("notice");
    query.set("lang", tag);
    const name = escapeHtml(translate(catalogue, "language.name"));
    const current = tag === ctx.lang ? ` aria-current="true"` : "";
    links.push(
      `<a href="?${
        escapeHtml(query.toString())
      }" hreflang="${tag}" lang="${tag}"${current}>${name}</a>`,
    );
  }
  const label = escapeHtml(textOf(ctx, "language.label"));
  return new Markup(
    `<nav class="languages" aria-label="${label}">${links.join("")}</nav>`,
  );
}

/** A page without a view of its own (the admin page): texts and language. */
export function renderPlain(template: string, ctx: PageContext): string {
  return fillTemplate(template, {
    text: (key) => textOf(ctx, key),
    values: { lang: ctx.lang, languages: languageSwitch(ctx) },
  });
}

/**
 * UserInfo with the fields the quotas work adds (`warn`: past the quota
 * manager's warning threshold; `bytesGranted`), shown when present.
 */
export type ShownInfo = UserInfo & { warn?: boolean; bytesGranted?: number };

/** What the login page shows for one request without JavaScript. */
export interface PortalView {
  /** The form, or the status of the session in this browser's cookie. */
  view: "login" | "status";
  /** A sentence at the top (logged in, logged out). */
  notice?: string;
  /** Where to go after login (an http(s) URL already checked). */
  next?: string;
  /** Go there now (`<meta http-equiv="refresh">`): the login just happened. */
  goNext?: boolean;
  /** The form's user name, kept after an error. */
  user?: string;
  /** Why the login failed. */
  loginError?: string;
  /** The session managers to log in through (a choice when several). */
  sessionManagers?: string[];
  /** The logged user's consumption, when a quota manager applies. */
  info?: ShownInfo;
  /** The logged user's usage: today by hour, this cycle by day. */
  history?: { today: UsageReport; cycle: UsageReport };
  /** The history could not be read: a sentence says so. */
  historyMissing?: boolean;
  /** What the rule gives the caller's address now. */
  rule?: DiscoverResult;
  /** The logged user, when no quota manager applies. */
  userName?: string;
  /** Why the status could not be read. */
  statusError?: string;
}

/** The usage sentence and the bar's values, as app.js writes them. */
function usage(ctx: PageContext, info: ShownInfo) {
  const quota = Number(info.bytesQuota) || 0;
  const used = Number(info.bytesCons) || 0;
  if (quota <= 0) {
    return {
      max: 1,
      value: 0,
      full: false,
      warn: false,
      text: textOf(ctx, "status.noQuota"),
    };
  }
  const share = Math.min(100, (used * 100) / quota);
  const shareText = share.toLocaleString(ctx.lang, {
    minimumFractionDigits: 1,
    maximumFractionDigits: 1,
  });
  const full = used >= quota;
  const text = textOf(ctx, full ? "status.usageFull" : "status.usage", {
    used: info.consumption,
    quota: info.quota,
    share: shareText,
  });
  const warn = !full && info.warning === true;
  return { max: quota, value: Math.min(used, quota), full, warn, text };
}

/** One chart of the status page: its SVG, its sentence and its table. */
function chartParts(
  ctx: PageContext,
  report: UsageReport,
  id: string,
  title: string,
): { chart: Markup; summary: string; table: Markup } {
  const bars = usageBars(
    report,
    periodNames(ctx.lang, report.zone, report.by),
  );
  const sum = barsSummary(bars);
  const summary = sum.peak
    ? textOf(ctx, "status.chartSummary", {
      total: sum.totalText,
      peak: sum.peak.name,
      peakBytes: sum.peak.text,
    })
    : textOf(ctx, "status.chartSummaryEmpty");
  const current = report.periods.findLast((p) => p <= Date.now());
  return {
    chart: new Markup(
      barChart(bars, {
        id,
        title,
        summary,
        current,
        labelEvery: report.by === "hour" ? 3 : undefined,
      }),
    ),
    summary,
    table: new Markup(
      barTable(bars, {
        caption: title,
        period: textOf(ctx, "status.chartPeriod"),
        bytes: textOf(ctx, "status.chartBytes"),
        empty: textOf(ctx, "status.chartEmpty"),
      }),
    ),
  };
}

/** The list of what the rule reached for the caller, and its result. */
function ruleParts(
  ctx: PageContext,
  rule: DiscoverResult,
): { result: string; items: Markup } {
  const items = Object.entries(rule.matchMng).map(([name, m]) => {
    const text = textOf(ctx, m.match ? "status.ruleYes" : "status.ruleNo", {
      name,
      kind: m.type,
    });
    return `<li class="${m.match ? "yes" : "no"}">${escapeHtml(text)}</li>`;
  });
  return {
    result: textOf(
      ctx,
      rule.result ? "status.ruleAllowed" : "status.ruleRefused",
    ),
    items: new Markup(items.join("")),
  };
}

/** The login page (index.html) for `view`. */
export function renderPortal(
  template: string,
  ctx: PageContext,
  view: PortalView,
): string {
  const hiddenUnless = (shown: boolean) => shown ? NOTHING : HIDDEN;
  const status = view.view === "status";
  const managers = view.sessionManagers ?? [];
  const options = managers.map((m) =>
    `<option value="${escapeHtml(m)}">${escapeHtml(m)}</option>`
  ).join("");
  const info = view.info;
  const bar = info ? usage(ctx, info) : undefined;
  const today = view.history
    ? chartParts(
      ctx,
      view.history.today,
      "today-svg",
      textOf(ctx, "status.todayChart"),
    )
    : undefined;
  const cycle = view.history
    ? chartParts(
      ctx,
      view.history.cycle,
      "cycle-svg",
      textOf(ctx, "status.cycleChart"),
    )
    : undefined;
  const rule = view.rule ? ruleParts(ctx, view.rule) : undefined;
  const groups = info && info.groups.length > 0
    ? info.groups.join(", ")
    : textOf(ctx, "status.noGroups");
  const next = view.next ?? "";
  const refresh = status && view.goNext && next
    ? new Markup(
      `<meta http-equiv="refresh" content="0;url=${escapeHtml(next)}">`,
    )
    : NOTHING;
  const errorOnPass = view.loginError !== undefined && !!view.user;
  return fillTemplate(template, {
    text: (key) => textOf(ctx, key),
    values: {
      lang: ctx.lang,
      view: view.view,
      refresh,
      languages: languageSwitch(ctx),
      adminHidden: hiddenUnless(status && info?.isAdmin === true),
      notice: view.notice ?? "",
      loginHidden: hiddenUnless(!status),
      nextInfoHidden: hiddenUnless(!status && next !== ""),
      nextInfo: next ? textOf(ctx, "login.nextInfo", { url: next }) : "",
      next,
      user: view.user ?? "",
      userFocus: !status && !errorOnPass ? AUTOFOCUS : NOTHING,
      passFocus: !status && errorOnPass ? AUTOFOCUS : NOTHING,
      sessionChoiceHidden: hiddenUnless(managers.length > 1),
      sessionOptions: new Markup(options),
      loginError: view.loginError ?? "",
      statusHidden: hiddenUnless(status),
      stUser: info?.userName ?? view.userName ?? "",
      stName: info ? info.name || info.userName : view.userName ?? "",
      stGroups: info || view.userName ? groups : "",
      quotaHidden: hiddenUnless(info !== undefined),
      stQuota: info?.quota ?? "",
      stConsumption: info?.consumption ?? "",
      usageMax: String(bar?.max ?? 1),
      usageValue: String(bar?.value ?? 0),
      usageText: bar?.text ?? "",
      usageClass: bar?.full ? "full" : bar?.warn ? "warn" : "",
      warnHidden: hiddenUnless(bar?.warn === true),
      // Extra bytes an administrator granted (the quotas work's grants).
      grantedHidden: hiddenUnless((info?.bytesGranted ?? 0) > 0),
      stGranted: (info?.bytesGranted ?? 0) > 0
        ? formatBytes(info!.bytesGranted!)
        : "",
      stReset: info
        ? info.nextReset
          ? wallTime(info.nextReset, ctx.lang)
          : textOf(ctx, "status.noReset")
        : "",
      historyHidden: hiddenUnless(status && view.history !== undefined),
      todayChart: today?.chart ?? NOTHING,
      todaySummary: today?.summary ?? "",
      todayTable: today?.table ?? NOTHING,
      cycleChart: cycle?.chart ?? NOTHING,
      cycleSummary: cycle?.summary ?? "",
      cycleTable: cycle?.table ?? NOTHING,
      historyMissingHidden: hiddenUnless(
        status && view.historyMissing === true,
      ),
      ruleHidden: hiddenUnless(status && rule !== undefined),
      ruleResult: rule?.result ?? "",
      ruleItems: rule?.items ?? NOTHING,
      nextHidden: hiddenUnless(status && next !== ""),
      statusError: view.statusError ?? "",
    },
  });
}

/**
 * The gateway's messages that have a text in the catalogue (app.js's
 * SERVER_MESSAGES is the same list); the others are the gateway's own
 * words for its administrator and are shown as they are.
 */
const SERVER_MESSAGES: Record<string, string> = {
  "incorrect user name or password": "error.loginFailed",
  "expired token": "error.expired",
  "empty JWT": "error.notLoggedIn",
};

/** An error body of the original's shapes as a sentence (as app.js says it). */
export function describeCommandError(
  ctx: PageContext,
  body: Record<string, unknown>,
): string {
  const s = (v: unknown) => String(v ?? "");
  if (typeof body.retryAfter === "number") {
    return textOf(ctx, "error.tooManyAttempts", {
      seconds: s(body.retryAfter),
    });
  }
  if (typeof body.message === "string") {
    const key = SERVER_MESSAGES[body.message];
    return key ? textOf(ctx, key) : body.message;
  }
  if ("User" in body && "DB" in body) {
    return textOf(ctx, "error.unknownUser", {
      user: s(body.User),
      db: s(body.DB),
    });
  }
  if ("User" in body) {
    return textOf(ctx, "error.notAdmin", { user: s(body.User) });
  }
  if ("Mng" in body && "Cmd" in body) {
    return textOf(ctx, "error.noCommand", {
      manager: s(body.Mng),
      cmd: s(body.Cmd),
    });
  }
  if ("Logged" in body && "Decrypted" in body) {
    return body.Logged
      ? textOf(ctx, "error.loggedAsOther", {
        logged: s(body.Logged),
        user: s(body.Decrypted),
      })
      : textOf(ctx, "error.sessionEnded");
  }
  if ("IP" in body) return textOf(ctx, "error.noSession", { ip: s(body.IP) });
  return JSON.stringify(body);
}
