// pmproxy's built-in pages: the login/status page (body data-page="login")
// and the admin page (data-page="admin"). Plain browser JavaScript, no
// build step. Everything goes through the same-origin `POST /api/cmd`
// with the original pmproxy's JSON bodies. The server renders the pages
// in the visitor's language and they work without this script (a form
// post and an HttpOnly cookie); this script is the richer way, and takes
// every text it shows from the same catalogue (web/i18n/LANG.json).
"use strict";

/** Where the login (secret and manager names) is kept between visits. */
const STORE_KEY = "pmproxy.login";
/** How often the status view reloads the consumption, in ms. */
const REFRESH_MS = 60_000;

// --------------------------------------------------------------- language

/** The texts of the page's language, keyed as in web/i18n/en.json. */
let catalogue = {};

/**
 * Loads the catalogue of the language the server rendered the page in
 * (`<html lang>`); without it every text shows as its key.
 */
async function loadCatalogue() {
  const lang = document.documentElement.lang || "en";
  try {
    const res = await fetch(`/i18n/${encodeURIComponent(lang)}.json`);
    if (res.ok) catalogue = await res.json();
  } catch {
    // The pages still work; the texts show as their keys.
  }
}

/** The text of `key` with each `{name}` replaced by `params[name]`. */
function t(key, params = {}) {
  const text = typeof catalogue[key] === "string" ? catalogue[key] : key;
  return text.replace(
    /\{(\w+)\}/g,
    (whole, name) => name in params ? String(params[name]) : whole,
  );
}

/** The page's language (`<html lang>`). */
function pageLang() {
  return document.documentElement.lang || "en";
}

/** A number with one decimal, written as the page's language writes it. */
function oneDecimal(n) {
  return n.toLocaleString(pageLang(), {
    minimumFractionDigits: 1,
    maximumFractionDigits: 1,
  });
}

// ---------------------------------------------------------------- storage

/** @returns {{secret: string, sessionIPM: string, dwnConsR: string | null} | null} */
function loadLogin() {
  try {
    const v = JSON.parse(localStorage.getItem(STORE_KEY) ?? "null");
    if (v && typeof v.secret === "string" && typeof v.sessionIPM === "string") {
      return {
        secret: v.secret,
        sessionIPM: v.sessionIPM,
        dwnConsR: typeof v.dwnConsR === "string" ? v.dwnConsR : null,
      };
    }
  } catch {
    // A damaged entry counts as no login.
  }
  return null;
}

function saveLogin(login) {
  localStorage.setItem(STORE_KEY, JSON.stringify(login));
}

function clearLogin() {
  localStorage.removeItem(STORE_KEY);
}

// -------------------------------------------------------------------- API

/** An error answer of the API (status 0: the gateway was not reached). */
class ApiError extends Error {
  constructor(message, status, body) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.body = body;
  }
}

/**
 * Turns an error body of the original's shapes into a sentence.
 * @param {unknown} b the parsed body
 * @param {string} text the raw body
 * @param {number} status the HTTP status
 */
function describeError(b, text, status) {
  if (b && typeof b === "object" && !Array.isArray(b)) {
    if (typeof b.retryAfter === "number") {
      return t("error.tooManyAttempts", { seconds: b.retryAfter });
    }
    if (typeof b.message === "string") {
      // The messages a user meets have a text in the catalogue; the others
      // are the gateway's own words for its administrator.
      const known = SERVER_MESSAGES[b.message];
      return known ? t(known) : b.message;
    }
    if ("User" in b && "DB" in b) {
      return t("error.unknownUser", { user: b.User, db: b.DB });
    }
    if ("User" in b) return t("error.notAdmin", { user: b.User });
    if ("Mng" in b && "Cmd" in b) {
      return t("error.noCommand", { manager: b.Mng, cmd: b.Cmd });
    }
    if ("Logged" in b && "Decrypted" in b) {
      return b.Logged
        ? t("error.loggedAsOther", { logged: b.Logged, user: b.Decrypted })
        : t("error.sessionEnded");
    }
    if ("IP" in b) return t("error.noSession", { ip: b.IP });
    if ("Quota" in b) return t("error.quotaReached", { quota: b.Quota });
    if ("Result" in b) return t("error.forbidden", { result: b.Result });
  }
  const trimmed = text.trim();
  return trimmed || t("error.noExplanation", { status });
}

/**
 * The gateway's messages that have a text in the catalogue (api/_pages.ts
 * knows the same list for the pages it renders).
 */
const SERVER_MESSAGES = {
  "incorrect user name or password": "error.loginFailed",
  "expired token": "error.expired",
  "empty JWT": "error.notLoggedIn",
};

/** Sends one command; answers the body text of a 200 answer. */
async function post(body) {
  let res;
  try {
    res = await fetch("/api/cmd", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(t("error.network"), 0, null);
  }
  let text = "";
  try {
    text = await res.text();
  } catch {
    throw new ApiError(t("error.networkCut"), 0, null);
  }
  if (res.ok) return text;
  let parsed = null;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Not JSON: the raw text is the message.
  }
  throw new ApiError(
    describeError(parsed, text, res.status),
    res.status,
    parsed,
  );
}

function isExpired(e) {
  return e instanceof ApiError && e.body &&
    typeof e.body.message === "string" &&
    /expired/i.test(e.body.message);
}

/** True when the error means "this secret no longer opens a session here". */
function isLoggedOut(e) {
  if (!(e instanceof ApiError) || e.status === 0 || !e.body) return false;
  const b = e.body;
  if ("Logged" in b || "IP" in b) return true;
  return typeof b.message === "string" &&
    /jwt|token|secret|session|not logged/i.test(b.message);
}

/**
 * Sends a command with the stored secret. When the API says the secret
 * expired, renews it once (the original client does the same) and retries.
 */
async function call(body) {
  const login = loadLogin();
  if (!login) {
    throw new ApiError(t("error.notLoggedIn"), 400, {
      message: "empty JWT",
    });
  }
  try {
    return await post({ ...body, secret: login.secret });
  } catch (e) {
    if (!isExpired(e)) throw e;
    const fresh = (await post({
      cmd: "renew",
      manager: login.sessionIPM,
      secret: login.secret,
    })).trim();
    saveLogin({ ...login, secret: fresh });
    return await post({ ...body, secret: fresh });
  }
}

/**
 * The managers the rule reaches for this address now, by kind.
 * @returns {Promise<{sessions: string[], quotas: string[], names: string[]}>}
 */
async function discover() {
  const d = JSON.parse(await post({ cmd: "discover", manager: "rules" }));
  const found = d && typeof d.matchMng === "object" && d.matchMng
    ? d.matchMng
    : {};
  const sessions = [];
  const quotas = [];
  for (const [name, m] of Object.entries(found)) {
    const type = String(m && m.type).toLowerCase();
    if (type === "sessionipm") sessions.push(name);
    else if (type === "dwnconsr") quotas.push(name);
  }
  const allowed = d?.result === true || d?.result === "true";
  return { sessions, quotas, names: Object.keys(found), allowed };
}

/**
 * Completes what discover found when the rule stopped before a session
 * manager or a quota (e.g. `lan ∧ sessions ∧ down` from outside `lan`):
 * the gateway's `/api/portal` names every session and quota manager of the
 * rule (anyone may know them; `show` is for logged-in users).
 */
async function completeNames(names) {
  let portal;
  try {
    const res = await fetch("/api/portal", { cache: "no-store" });
    if (!res.ok) return names;
    portal = await res.json();
  } catch {
    return names;
  }
  const list = (v) =>
    Array.isArray(v) ? v.filter((x) => typeof x === "string") : [];
  const sessions = list(portal?.sessionIPM);
  const quotas = list(portal?.dwnConsR);
  return {
    ...names,
    sessions: [...new Set([...names.sessions, ...sessions])],
    quotas: [...new Set([...names.quotas, ...quotas])],
    names: [...new Set([...names.names, ...sessions, ...quotas])],
  };
}

/** UserInfo of the logged user, or null when no dwnConsR is known. */
async function ownInfo() {
  const login = loadLogin();
  if (!login || !login.dwnConsR) return null;
  return JSON.parse(await call({ cmd: "get", manager: login.dwnConsR }));
}

// -------------------------------------------------------------------- DOM

const $ = (id) => document.getElementById(id);

function setText(id, text) {
  $(id).textContent = text;
}

function show(id, visible) {
  $(id).hidden = !visible;
}

/** Disables `button` while `work` runs. */
async function busy(button, work) {
  button.disabled = true;
  try {
    return await work();
  } finally {
    button.disabled = false;
  }
}

/** Fills the `<dl>` rows and progress bar whose ids start with `p`. */
function renderInfo(p, info) {
  setText(`${p}-user`, info.userName ?? "");
  setText(`${p}-name`, info.name || info.userName || "");
  setText(
    `${p}-groups`,
    Array.isArray(info.groups) && info.groups.length
      ? info.groups.join(", ")
      : t("status.noGroups"),
  );
  setText(`${p}-quota`, info.quota ?? "");
  setText(`${p}-consumption`, info.consumption ?? "");
  const bar = $(p === "st" ? "usage" : "lk-usage");
  const quota = Number(info.bytesQuota) || 0;
  const used = Number(info.bytesCons) || 0;
  bar.max = quota > 0 ? quota : 1;
  bar.value = quota > 0 ? Math.min(used, quota) : 0;
  const full = quota > 0 && used >= quota;
  bar.classList.toggle("full", full);
  // Past the quota manager's warning threshold (when the gateway says).
  const warn = !full && quota > 0 && info.warning === true;
  bar.classList.toggle("warn", warn);
  const warning = $(`${p}-warning`);
  if (warning) warning.hidden = !warn;
  // Extra bytes an administrator granted, when the gateway says.
  const granted = $(`${p}-granted`);
  if (granted) {
    const bytes = Number(info.bytesGranted) || 0;
    granted.textContent = bytes > 0 && charts ? charts.formatBytes(bytes) : "";
    granted.hidden = bytes <= 0;
    granted.previousElementSibling.hidden = bytes <= 0;
  }
  const reset = $(`${p}-reset`);
  if (reset) {
    reset.textContent = typeof info.nextReset !== "string"
      ? t("status.noReset")
      : charts
      ? charts.wallTime(info.nextReset, pageLang())
      : info.nextReset;
  }
  const share = quota > 0 ? Math.min(100, (used * 100) / quota) : 0;
  let words = t("status.noQuota");
  if (quota > 0) {
    words = t(used >= quota ? "status.usageFull" : "status.usage", {
      used: info.consumption,
      quota: info.quota,
      share: oneDecimal(share),
    });
  }
  bar.setAttribute("aria-valuetext", words);
  return words;
}

// ----------------------------------------------------------------- charts

/**
 * The chart module (web/chart.js, the same code the server renders the
 * pages without JavaScript with), loaded once by loadCharts().
 */
let charts = null;

async function loadCharts() {
  charts ??= await import("/chart.js");
}

/**
 * Draws a usage report (the API's `usage`) into `${p}-chart`, its
 * sentence into `${p}-summary` and its table into `${p}-table`.
 */
function drawChart(p, report, title) {
  const bars = charts.usageBars(
    report,
    charts.periodNames(pageLang(), report.zone, report.by),
  );
  const sum = charts.barsSummary(bars);
  const summary = sum.peak
    ? t("status.chartSummary", {
      total: sum.totalText,
      peak: sum.peak.name,
      peakBytes: sum.peak.text,
    })
    : t("status.chartSummaryEmpty");
  const current = report.periods.findLast((start) => start <= Date.now());
  // Markup chart.js made, every text in it escaped.
  $(`${p}-chart`).innerHTML = charts.barChart(bars, {
    id: `${p}-svg`,
    title,
    summary,
    current,
    labelEvery: report.by === "hour" ? 3 : undefined,
  });
  setText(`${p}-summary`, summary);
  $(`${p}-table`).innerHTML = charts.barTable(bars, {
    caption: title,
    period: t("status.chartPeriod"),
    bytes: t("status.chartBytes"),
    empty: t("status.chartEmpty"),
  });
}

/** Reads a usage report of the dwnConsR `manager` (see api/cmd.ts). */
async function usageOf(manager, info) {
  return JSON.parse(await call({ cmd: "usage", manager, info }));
}

// -------------------------------------------------------- login / status

let refreshTimer = 0;

/** A `?next=` (or `?url=`) address to continue to after login, http(s) only. */
function nextAddress() {
  const q = new URLSearchParams(location.search);
  const raw = q.get("next") ?? q.get("url");
  if (!raw) return null;
  try {
    const u = new URL(raw);
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch {
    return null;
  }
}

function showForm(names, message) {
  clearInterval(refreshTimer);
  show("status", false);
  show("admin-link", false);
  show("login", true);
  setText("login-error", message ?? "");
  const select = $("session-manager");
  select.replaceChildren();
  const sessions = names && names.sessions.length
    ? names.sessions
    : ["sessions"];
  for (const name of sessions) select.append(new Option(name, name));
  show("session-choice", sessions.length > 1);
  // Someone who began typing while the page asked the server stays where
  // they are: the form is shown again only once the discovery is answered.
  if (!$("login").contains(document.activeElement)) $("user").focus();
}

async function refreshStatus() {
  const login = loadLogin();
  if (!login) {
    throw new ApiError(t("error.notLoggedIn"), 400, {
      message: "empty JWT",
    });
  }
  await loadCharts();
  const info = await ownInfo();
  const quotaRows = ["st-quota", "st-consumption", "st-reset", "usage-box"];
  if (info) {
    setText("usage-text", renderInfo("st", info));
    show("admin-link", info.isAdmin === true);
  } else {
    // No download quota reached by the rule: the session manager still knows the user.
    const user = (await call({ cmd: "check", manager: login.sessionIPM }))
      .trim();
    renderInfo("st", {
      userName: user,
      groups: [],
      quota: "",
      consumption: "",
    });
    show("admin-link", false);
  }
  for (const id of quotaRows) {
    const el = $(id);
    el.hidden = !info;
    if (el.previousElementSibling && el.tagName === "DD") {
      el.previousElementSibling.hidden = !info;
    }
  }
  if (info) await refreshHistory(login.dwnConsR);
  else show("history-box", false);
  await refreshRule();
  setText("status-error", "");
}

/** The status page's charts: today by hour, this cycle by day. */
async function refreshHistory(manager) {
  try {
    const today = await usageOf(manager, {
      by: "hour",
      since: "today",
      until: "today",
    });
    const cycle = await usageOf(manager, {
      by: "day",
      since: "cycle",
      until: "cycle",
    });
    drawChart("today", today, t("status.todayChart"));
    drawChart("cycle", cycle, t("status.cycleChart"));
    show("history-box", true);
    show("history-missing", false);
  } catch (e) {
    if (isLoggedOut(e)) throw e;
    // The rest of the status does not depend on the history.
    show("history-box", false);
    show("history-missing", true);
  }
}

/** What the rule gives this address now (discover). */
async function refreshRule() {
  let found;
  try {
    found = JSON.parse(await post({ cmd: "discover", manager: "rules" }));
  } catch {
    show("rule-box", false);
    return;
  }
  const items = Object.entries(found?.matchMng ?? {}).map(([name, m]) => {
    const li = document.createElement("li");
    const yes = m && m.match === true;
    li.className = yes ? "yes" : "no";
    li.textContent = t(yes ? "status.ruleYes" : "status.ruleNo", {
      name,
      kind: String(m?.type ?? ""),
    });
    return li;
  });
  $("rule-list").replaceChildren(...items);
  const allowed = found?.result === true || found?.result === "true";
  setText(
    "rule-result",
    t(allowed ? "status.ruleAllowed" : "status.ruleRefused"),
  );
  show("rule-box", true);
}

async function showStatus() {
  await refreshStatus();
  show("login", false);
  show("status", true);
  const next = nextAddress();
  show("next-box", next !== null);
  if (next) {
    $("next-link").href = next;
    setText("next-link", next);
  }
  clearInterval(refreshTimer);
  refreshTimer = setInterval(() => {
    refreshStatus().catch((e) => setText("status-error", e.message));
  }, REFRESH_MS);
}

async function initLogin() {
  let names = null;
  try {
    names = await discover();
    if (!names.sessions.length) names = await completeNames(names);
  } catch (e) {
    setText("login-error", e.message);
  }

  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    setText("login-error", "");
    setText("notice", "");
    const user = $("user").value.trim();
    const pass = $("pass").value;
    if (!user || !pass) {
      setText("login-error", t("login.missing"));
      (user ? $("pass") : $("user")).focus();
      return;
    }
    const sessionIPM = $("session-manager").value || "sessions";
    try {
      await busy($("login-button"), async () => {
        const secret = (await post({
          cmd: "open",
          manager: sessionIPM,
          cred: { user, pass },
        })).trim();
        // Logged in, the rule now reaches further: ask again for the quota's name.
        let quotas = names ? names.quotas : [];
        let allowed = true;
        try {
          let after = await discover();
          allowed = after.allowed;
          if (!after.quotas.length && !quotas.length) {
            after = await completeNames(after);
          }
          if (after.quotas.length) quotas = after.quotas;
        } catch {
          // Keep what the first discover found.
        }
        saveLogin({ secret, sessionIPM, dwnConsR: quotas[0] ?? null });
        $("pass").value = "";
        // Back to the page the proxy refused, as captive portals do; if the
        // rule still refuses it, the proxy's page there says why.
        const next = nextAddress();
        if (next) {
          location.assign(next);
          return;
        }
        await showStatus();
        setText(
          "notice",
          t(allowed ? "status.welcome" : "status.welcomeRefused", { user }),
        );
        $("status-title").focus();
      });
    } catch (e) {
      setText("login-error", e.message);
      $("pass").select();
    }
  });

  $("logout").addEventListener("click", async (ev) => {
    // The button also submits the page's no-JavaScript logout form.
    ev.preventDefault();
    const login = loadLogin();
    let message = t("status.loggedOut");
    await busy($("logout"), async () => {
      try {
        if (login) await call({ cmd: "close", manager: login.sessionIPM });
      } catch (e) {
        if (!isLoggedOut(e)) {
          setText("status-error", e.message);
          return;
        }
        message = t("status.alreadyEnded");
      }
      clearLogin();
      showForm(names);
      setText("notice", message);
    });
  });

  $("refresh").addEventListener("click", (ev) => {
    // The button also submits the page's no-JavaScript reload.
    ev.preventDefault();
    busy(
      $("refresh"),
      () => refreshStatus().catch((e) => setText("status-error", e.message)),
    );
  });

  $("status-title").tabIndex = -1;

  if (loadLogin()) {
    try {
      await showStatus();
      return;
    } catch (e) {
      if (isLoggedOut(e)) {
        clearLogin();
        showForm(names, `${e.message}`);
        return;
      }
      showForm(names, e.message);
      return;
    }
  }
  showForm(names, $("login-error").textContent);
}

// ------------------------------------------------------------------ admin

async function loadUsers() {
  const login = loadLogin();
  setText("users-error", "");
  const users = JSON.parse(
    await call({ cmd: "get", manager: login.sessionIPM }),
  );
  const rows = [];
  for (const [ip, user] of Object.entries(users ?? {})) {
    const tr = document.createElement("tr");
    const tdIp = document.createElement("td");
    tdIp.textContent = ip;
    const tdUser = document.createElement("td");
    tdUser.textContent = String(user);
    const tdAct = document.createElement("td");
    const look = document.createElement("button");
    look.type = "button";
    look.className = "secondary";
    look.textContent = t("admin.users.lookUp");
    look.setAttribute("aria-label", t("admin.users.lookUpUser", { user }));
    look.addEventListener("click", () => {
      $("lookup-user").value = String(user);
      $("lookup-form").requestSubmit();
    });
    tdAct.append(look);
    tr.append(tdIp, tdUser, tdAct);
    rows.push(tr);
  }
  $("users").replaceChildren(...rows);
  show("users-empty", rows.length === 0);
  show("users-table", rows.length > 0);
}

async function lookUp(userName) {
  const info = JSON.parse(
    await call({
      cmd: "getOther",
      manager: quotaName(),
      info: { userName },
    }),
  );
  setText("lk-usage-text", renderInfo("lk", info));
  show("lookup-result", true);
  await lookUpHistory(userName);
}

function wantUser() {
  const userName = $("lookup-user").value.trim();
  if (!userName) {
    setText("lookup-error", t("admin.lookup.missing"));
    $("lookup-user").focus();
  }
  return userName;
}

async function initAdmin() {
  const login = loadLogin();
  if (!login) {
    const p = $("admin-error");
    p.textContent = `${t("error.notLoggedIn")} `;
    const a = document.createElement("a");
    a.href = "/";
    a.textContent = t("admin.logInFirst");
    p.append(a);
    return;
  }
  try {
    const info = await ownInfo();
    if (info && info.isAdmin !== true) {
      setText("admin-error", t("error.notAdmin", { user: info.userName }));
      return;
    }
  } catch (e) {
    setText("admin-error", e.message);
    if (isLoggedOut(e)) clearLogin();
    return;
  }
  await loadCharts();
  show("admin", true);

  $("users-refresh").addEventListener(
    "click",
    () =>
      busy(
        $("users-refresh"),
        () => loadUsers().catch((e) => setText("users-error", e.message)),
      ),
  );

  $("lookup-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    setText("lookup-error", "");
    setText("notice", "");
    const userName = wantUser();
    if (!userName) return;
    await busy($("lookup-button"), () =>
      lookUp(userName).catch((e) => {
        show("lookup-result", false);
        setText("lookup-error", e.message);
      }));
  });

  $("reset-button").addEventListener("click", async () => {
    setText("lookup-error", "");
    setText("notice", "");
    const userName = wantUser();
    if (!userName) return;
    await busy($("reset-button"), async () => {
      try {
        await call({
          cmd: "set",
          manager: quotaName(),
          info: { userName, bytesCons: 0 },
        });
        setText("notice", t("admin.lookup.resetDone", { user: userName }));
        await lookUp(userName);
        await loadPeople().catch(() => {});
      } catch (e) {
        setText("lookup-error", e.message);
      }
    });
  });

  $("show-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    setText("show-error", "");
    setText("show-result", "");
    const manager = $("show-name").value.trim();
    if (!manager) {
      setText("show-error", t("admin.show.missing"));
      return;
    }
    try {
      const text = await call({ cmd: "show", manager });
      let pretty = text;
      try {
        pretty = JSON.stringify(JSON.parse(text), null, 2);
      } catch {
        // Not JSON: show it as it came.
      }
      setText("show-result", pretty);
    } catch (e) {
      setText("show-error", e.message);
    }
  });

  const names = new Set(["rules", login.sessionIPM]);
  if (login.dwnConsR) names.add(login.dwnConsR);
  try {
    for (const n of (await discover()).names) names.add(n);
  } catch {
    // The list is only a convenience.
  }
  $("manager-names").replaceChildren(
    ...[...names].map((n) => new Option(n, n)),
  );

  await loadUsers().catch((e) => setText("users-error", e.message));
  await initConsole(login);
}

// ---------------------------------------------------------------- console

/** How often the live figures are read again, in ms. */
const LIVE_MS = 5_000;

/**
 * The users table: which quota manager, which page, sorted how, and the
 * filter. The API answers one page at a time (`users` on a dwnConsR).
 */
const people = {
  manager: null,
  offset: 0,
  limit: 50,
  sort: "user",
  order: "asc",
  filter: "",
  total: 0,
};

/** The quota manager the console works on. */
function quotaName() {
  return people.manager ?? loadLogin()?.dwnConsR ?? "down";
}

/** A share of a quota, written as the page's language writes it. */
function percentText(row) {
  return row.percent === null ? "—" : `${oneDecimal(row.percent)} %`;
}

/** A time (ms) in the reader's zone and language. */
function timeText(ms) {
  return new Intl.DateTimeFormat(pageLang(), {
    dateStyle: "medium",
    timeStyle: "short",
  }).format(ms);
}

/**
 * A cell of the users table: its text, its classes, and the name of its
 * column, which a phone shows before the value (the table is a list of
 * cards there). The roles keep it a table for screen readers whatever
 * the stylesheet makes of it.
 */
function cell(text, classes, label) {
  const td = document.createElement("td");
  td.setAttribute("role", "cell");
  td.textContent = text;
  td.classList.add(...classes);
  if (label) td.dataset.label = label;
  return td;
}

function actionButton(text, label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "secondary";
  b.textContent = text;
  b.setAttribute("aria-label", label);
  b.addEventListener("click", () => busy(b, onClick));
  return b;
}

/** One row of the users table, with its actions. */
function personRow(row) {
  const tr = document.createElement("tr");
  tr.setAttribute("role", "row");
  const user = cell("", ["c-user"]);
  const strong = document.createElement("span");
  strong.className = "user-name";
  strong.textContent = row.userName;
  user.append(strong);
  if (row.name && row.name !== row.userName) {
    const full = document.createElement("span");
    full.classList.add("muted", "full-name");
    full.textContent = row.name;
    user.append(full);
  }
  const share = cell(
    percentText(row),
    ["num", "c-share"],
    t("admin.people.percent"),
  );
  if (row.percent !== null && row.percent >= 100) share.classList.add("full");
  const where = row.session
    ? cell(row.session.ip, ["c-where"], t("admin.people.where"))
    : cell(
      t("admin.people.nowhere"),
      ["muted", "c-where"],
      t("admin.people.where"),
    );
  tr.append(
    user,
    cell(
      charts.formatBytes(row.bytesCons),
      ["num", "c-cons"],
      t("admin.people.consumption"),
    ),
    cell(
      row.quotaKnown
        ? charts.formatBytes(row.bytesQuota)
        : t("admin.people.unknownQuota"),
      ["num", "c-quota"],
      t("admin.people.quotaColumn"),
    ),
    share,
    where,
    cell(
      row.lastSeen === undefined
        ? t("admin.people.never")
        : timeText(row.lastSeen),
      ["c-seen"],
      t("admin.people.lastSeen"),
    ),
  );
  const actions = cell("", ["row-actions"]);
  const name = row.userName;
  actions.append(
    actionButton(
      t("admin.people.history"),
      t("admin.people.historyOf", { user: name }),
      async () => {
        $("lookup-user").value = name;
        setText("lookup-error", "");
        try {
          await lookUp(name);
        } catch (e) {
          show("lookup-result", false);
          setText("lookup-error", e.message);
        }
        $("lookup-title").scrollIntoView({ block: "start" });
      },
    ),
    actionButton(
      t("admin.people.reset"),
      t("admin.people.resetOf", { user: name }),
      async () => {
        try {
          await call({
            cmd: "set",
            manager: quotaName(),
            info: { userName: name, bytesCons: 0 },
          });
          setText("notice", t("admin.lookup.resetDone", { user: name }));
          await loadPeople();
        } catch (e) {
          setText("people-error", e.message);
        }
      },
    ),
  );
  if (row.session) {
    const session = row.session;
    actions.append(
      actionButton(
        t("admin.people.end"),
        t("admin.people.endOf", { user: name }),
        async () => {
          try {
            const ended = JSON.parse(
              await call({
                cmd: "close",
                manager: session.manager,
                info: { userName: name },
              }),
            );
            setText(
              "notice",
              t("admin.people.ended", { user: name, ip: ended.ip }),
            );
            await loadPeople();
          } catch (e) {
            setText("people-error", e.message);
          }
        },
      ),
    );
  }
  tr.append(actions);
  return tr;
}

/** Reads and shows the current page of the users table. */
async function loadPeople() {
  setText("people-error", "");
  const page = JSON.parse(
    await call({
      cmd: "users",
      manager: quotaName(),
      info: {
        offset: people.offset,
        limit: people.limit,
        sort: people.sort,
        order: people.order,
        filter: people.filter,
      },
    }),
  );
  people.total = page.total;
  people.offset = page.offset;
  people.sort = page.sort;
  people.order = page.order;
  $("people").replaceChildren(...page.rows.map(personRow));
  const from = page.rows.length ? page.offset + 1 : 0;
  const to = page.offset + page.rows.length;
  let words = page.total === 0
    ? t("admin.people.none")
    : t("admin.people.page", { from, to, total: page.total });
  if (page.listed === "active") words += ` ${t("admin.people.listedActive")}`;
  setText("people-count", words);
  setText("people-page", `${from}–${to} / ${page.total}`);
  $("people-prev").disabled = page.offset === 0;
  $("people-next").disabled = to >= page.total;
  for (const th of $("people-table").querySelectorAll("th[data-sort]")) {
    const sorted = th.dataset.sort === page.sort;
    if (sorted) {
      th.setAttribute(
        "aria-sort",
        page.order === "asc" ? "ascending" : "descending",
      );
    } else th.removeAttribute("aria-sort");
  }
}

/** One user's charts in the lookup: recent hours, this cycle by day. */
async function lookUpHistory(userName) {
  setText("lk-history-error", "");
  try {
    const hours = await usageOf(quotaName(), { userName, by: "hour" });
    const days = await usageOf(quotaName(), {
      userName,
      by: "day",
      since: "cycle",
      until: "cycle",
    });
    drawChart("lkh", hours, t("admin.lookup.hoursChart"));
    drawChart("lkd", days, t("admin.lookup.daysChart"));
    show("lk-history", true);
  } catch (e) {
    show("lk-history", false);
    setText("lk-history-error", e.message);
  }
}

/** The previous reading of the live figures, for requests per second. */
let lastLive = null;

/** Reads and shows the live figures (`live` on rules). */
async function loadLive() {
  let live;
  try {
    live = JSON.parse(await call({ cmd: "live", manager: "rules" }));
  } catch (e) {
    setText("live-error", e.message);
    return;
  }
  setText("live-error", "");
  const sum = (o) => Object.values(o ?? {}).reduce((n, v) => n + v, 0);
  setText("live-sessions", String(sum(live.sessions)));
  setText(
    "live-active",
    String(Object.values(live.quotas ?? {}).reduce((n, q) => n + q.users, 0)),
  );
  const proxy = live.proxy;
  show("live-note", !proxy);
  if (!proxy) {
    for (const id of ["live-connections", "live-tunnels", "live-rate"]) {
      setText(id, "—");
    }
    return;
  }
  setText("live-connections", String(proxy.clientConnections));
  setText("live-tunnels", String(proxy.tunnels));
  if (lastLive?.proxy && live.at > lastLive.at) {
    const rate = (proxy.requests - lastLive.proxy.requests) /
      ((live.at - lastLive.at) / 1000);
    setText("live-rate", oneDecimal(Math.max(0, rate)));
  }
  lastLive = live;
}

/** The managers and user databases, each a button showing its configuration. */
async function loadManagers() {
  let list;
  try {
    list = JSON.parse(await call({ cmd: "managers", manager: "rules" }));
  } catch {
    // An older gateway: the form below still shows a manager by its name.
    return [];
  }
  const items = list.map((m) => {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.classList.add("secondary", "manager");
    const name = document.createElement("span");
    name.textContent = m.name;
    const kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = m.kind;
    b.append(name, kind);
    b.addEventListener("click", () => {
      $("show-name").value = m.name;
      $("show-form").requestSubmit();
    });
    li.append(b);
    return li;
  });
  $("manager-list").replaceChildren(...items);
  return list;
}

/** The rule as the gateway loaded it. */
async function loadRule() {
  try {
    const shown = JSON.parse(await call({ cmd: "show", manager: "rules" }));
    setText("rule-text", String(shown?.rule ?? ""));
  } catch (e) {
    setText("rule-error", e.message);
  }
}

/** Shows an explanation (the API's `explain`). */
function showExplanation(x) {
  const verdict = $("explain-verdict");
  verdict.textContent = x.allowed
    ? t("admin.explain.allowed")
    : t("admin.explain.refused", { reason: x.reason ?? "" });
  verdict.classList.toggle("yes", x.allowed);
  verdict.classList.toggle("no", !x.allowed);
  setText(
    "explain-facts",
    t("admin.explain.facts", {
      method: x.facts.method,
      ip: x.facts.ip,
      user: x.facts.user ?? t("admin.explain.nobody"),
      time: timeText(Date.parse(x.facts.time)),
    }),
  );
  $("explain-steps").replaceChildren(...x.steps.map((step) => {
    const li = document.createElement("li");
    li.className = step.ok ? "yes" : "no";
    const name = document.createElement("strong");
    name.textContent = `${step.name} `;
    const kind = document.createElement("span");
    kind.className = "muted";
    kind.textContent = `(${step.kind}) `;
    li.append(name, kind, document.createTextNode(step.why));
    return li;
  }));
  const attached = x.resources.map((r) => `${r.name} (${r.kind})`);
  setText(
    "explain-attached",
    x.allowed
      ? t("admin.explain.attached", {
        list: attached.length
          ? attached.join(", ")
          : t("admin.explain.nothing"),
      })
      : "",
  );
  const r = x.route;
  const from = r.localAddress
    ? ` ${t("admin.explain.routeFrom", { address: r.localAddress })}`
    : "";
  setText(
    "explain-route",
    !x.allowed ? "" : r.kind === "parent"
      ? t("admin.explain.routeParent", {
        proxy: String(r.proxyUrl).replace(/\/\/[^@/]*@/, "//"),
      }) + from
      : t("admin.explain.routeDirect") + from,
  );
  show("explain-result", true);
}

/** Downloads the usage history of every user of the quota as CSV. */
async function downloadCsv() {
  const by = $("people-csv-by").value;
  const text = await call({
    cmd: "usage",
    manager: quotaName(),
    info: { all: true, by, format: "csv" },
  });
  const file = `usage-${quotaName()}-by-${by}.csv`;
  const url = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = file;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  setText("notice", t("admin.people.csvDone", { file }));
}

/** Wires the console's sections (after the admin check). */
async function initConsole(login) {
  const managers = await loadManagers();
  const quotas = managers.filter((m) => m.kind === "dwnConsR").map((m) =>
    m.name
  );
  people.manager = quotas.includes(login.dwnConsR)
    ? login.dwnConsR
    : quotas[0] ?? login.dwnConsR ?? "down";
  const select = $("people-quota");
  select.replaceChildren(...quotas.map((q) => new Option(q, q)));
  select.value = people.manager;
  show("people-quota-box", quotas.length > 1);
  select.addEventListener("change", () => {
    people.manager = select.value;
    people.offset = 0;
    loadPeople().catch((e) => setText("people-error", e.message));
  });

  $("people-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    people.filter = $("people-filter").value.trim();
    people.offset = 0;
    busy(
      $("people-search"),
      () => loadPeople().catch((e) => setText("people-error", e.message)),
    );
  });
  for (const th of $("people-table").querySelectorAll("th[data-sort]")) {
    th.querySelector("button").addEventListener("click", () => {
      const key = th.dataset.sort;
      if (people.sort === key) {
        people.order = people.order === "asc" ? "desc" : "asc";
      } else {
        people.sort = key;
        people.order = key === "user" ? "asc" : "desc";
      }
      people.offset = 0;
      loadPeople().catch((e) => setText("people-error", e.message));
    });
  }
  $("people-prev").addEventListener("click", () => {
    people.offset = Math.max(0, people.offset - people.limit);
    loadPeople().catch((e) => setText("people-error", e.message));
  });
  $("people-next").addEventListener("click", () => {
    people.offset += people.limit;
    loadPeople().catch((e) => setText("people-error", e.message));
  });
  $("people-csv-by").replaceChildren(
    new Option(t("admin.people.byHour"), "hour"),
    new Option(t("admin.people.byDay"), "day", true, true),
    new Option(t("admin.people.byMonth"), "month"),
  );
  $("people-csv").addEventListener("click", () =>
    busy(
      $("people-csv"),
      () => downloadCsv().catch((e) => setText("people-error", e.message)),
    ));

  $("explain-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    setText("explain-error", "");
    const url = $("explain-url").value.trim();
    if (!url) {
      setText("explain-error", t("admin.explain.missing"));
      $("explain-url").focus();
      return;
    }
    const info = { url };
    const ip = $("explain-ip").value.trim();
    const userName = $("explain-user").value.trim();
    const at = $("explain-at").value;
    if (ip) info.ip = ip;
    if (userName) info.userName = userName;
    // The admin's own wall-clock time, as an instant.
    if (at) info.at = new Date(at).toISOString();
    await busy($("explain-button"), async () => {
      try {
        showExplanation(
          JSON.parse(await call({ cmd: "explain", manager: "rules", info })),
        );
      } catch (e) {
        show("explain-result", false);
        setText("explain-error", e.message);
      }
    });
  });

  await Promise.all([
    loadPeople().catch((e) => setText("people-error", e.message)),
    loadRule(),
    loadLive(),
  ]);
  setInterval(() => {
    if (document.visibilityState === "visible") loadLive();
  }, LIVE_MS);
}

// ------------------------------------------------------------------ start

// A stored login shows the status, not the form the server rendered: hide
// the form before the first paint instead of letting it flash.
if (
  document.body.dataset.page === "login" &&
  document.body.dataset.view === "login" && loadLogin()
) {
  show("login", false);
}

document.addEventListener("DOMContentLoaded", async () => {
  const page = document.body.dataset.page;
  // A status the server rendered from its cookie (a login made without
  // JavaScript) works through its own forms; this script leaves it alone.
  if (page === "login" && document.body.dataset.view !== "login") return;
  await loadCatalogue();
  const run = page === "admin" ? initAdmin : initLogin;
  run().catch((e) => {
    setText("notice", "");
    const target = $(page === "admin" ? "admin-error" : "login-error");
    if (target) {
      target.textContent = t("error.unexpected", {
        message: e && e.message ? e.message : String(e),
      });
    }
  });
});
