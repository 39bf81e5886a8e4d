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

/** A number with one decimal, written as the page's language writes it. */
function oneDecimal(n) {
  return n.toLocaleString(document.documentElement.lang || "en", {
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
  bar.classList.toggle("full", quota > 0 && used >= quota);
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
  $("user").focus();
}

async function refreshStatus() {
  const login = loadLogin();
  if (!login) {
    throw new ApiError(t("error.notLoggedIn"), 400, {
      message: "empty JWT",
    });
  }
  const info = await ownInfo();
  const quotaRows = ["st-quota", "st-consumption", "usage-box"];
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
  setText("status-error", "");
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
  const login = loadLogin();
  const info = JSON.parse(
    await call({
      cmd: "getOther",
      manager: login.dwnConsR ?? "down",
      info: { userName },
    }),
  );
  setText("lk-usage-text", renderInfo("lk", info));
  show("lookup-result", true);
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
          manager: login.dwnConsR ?? "down",
          info: { userName, bytesCons: 0 },
        });
        setText("notice", t("admin.lookup.resetDone", { user: userName }));
        await lookUp(userName);
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
