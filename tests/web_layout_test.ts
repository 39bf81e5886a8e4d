/**
 * Every page as people see it, in real headless Chromium against the real
 * API over the real gateway: at 1280 and 390 px wide, in light and dark
 * colour schemes, with and without JavaScript, in English and Spanish.
 * Each view is written as a screenshot to `test-output/screenshots/`
 * (git-ignored: look at them after a change to the pages) and checked for
 * horizontal overflow (`document.documentElement.scrollWidth` must not
 * exceed the width).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Page } from "playwright-core";
import { assets } from "../web/assets.ts";
import { openGateway } from "../managers/mod.ts";
import { UsageCalendar } from "../managers/quotas/_history.ts";
import { machineZone } from "../managers/values/zone.ts";
import { startTestApi } from "./helpers/api_server.ts";
import { adminManagersToml } from "./helpers/config_dir.ts";
import { launchChromium, newPage, submitLogin } from "./helpers/web_browser.ts";

const SHOTS = fileURLToPath(
  new URL("../test-output/screenshots/", import.meta.url),
);
const WIDTHS = [1280, 390];
const SCHEMES = ["light", "dark"] as const;

/** Screenshots `page` at each width and scheme; checks the overflow. */
async function shoot(page: Page, name: string): Promise<void> {
  for (const width of WIDTHS) {
    for (const colorScheme of SCHEMES) {
      await page.setViewportSize({ width, height: 800 });
      await page.emulateMedia({ colorScheme });
      const scrollWidth = await page.evaluate<number>(
        "document.documentElement.scrollWidth",
      );
      // Which elements stick out, to say where to look.
      const wide = scrollWidth <= width ? [] : await page.evaluate<string[]>(
        `[...document.querySelectorAll("body *")]
          .filter((e) => e.getBoundingClientRect().right > ${width} + 0.5)
          .map((e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") +
            (e.className && typeof e.className === "string"
              ? "." + e.className.trim().split(/\\s+/).join(".")
              : ""))
          .slice(0, 8)`,
      );
      assert.ok(
        scrollWidth <= width,
        `${name} at ${width} px (${colorScheme}) is ${scrollWidth} px wide: ${
          wide.join(", ")
        }`,
      );
      await page.screenshot({
        path: join(SHOTS, `${name}-${width}-${colorScheme}.png`),
        fullPage: true,
      });
    }
  }
}

/**
 * Opens `url`, again when a navigation still under way interrupts it: the
 * status page just after login goes on to `next` by itself (a meta
 * refresh), and that unreachable page's error may land during the goto.
 */
async function gotoSettled(page: Page, url: string): Promise<void> {
  for (let attempt = 1;; attempt++) {
    try {
      await page.goto(url);
      return;
    } catch (e) {
      if (attempt >= 20 || !/interrupted by another navigation/.test(`${e}`)) {
        throw e;
      }
      // Let the other navigation end before the next try (a busy machine
      // takes a while).
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/**
 * Opens the status page until it shows (3 tries of 5 s): a navigation the
 * login set off (to its `next`) may still land after the status page was
 * opened and replace it, on a busy machine (a full run failed so once).
 * Fails with what the page showed instead.
 */
async function openStatus(page: Page, url: string): Promise<void> {
  const seen: string[] = [];
  for (let attempt = 1; attempt <= 3; attempt++) {
    await gotoSettled(page, url);
    try {
      await page.locator("#status").waitFor({ timeout: 5000 });
      return;
    } catch {
      const text = await page.locator("body").innerText().catch(() => "");
      seen.push(`${page.url()}: ${text.replace(/\s+/g, " ").slice(0, 200)}`);
    }
  }
  throw new Error(`the status page did not show:\n${seen.join("\n")}`);
}

/** A refused URL as long as real ones get, to see that it wraps. */
const LONG_NEXT = "http://news.example.org/2024/05/a-rather-long-article-" +
  "title-that-goes-on-and-on/index.html?utm_source=newsletter&utm_medium=" +
  "email&utm_campaign=spring_and_summer_offers_for_everyone";

Deno.test("web layout: every page at 1280 and 390 px, light and dark, fits its width", async () => {
  await Deno.mkdir(SHOTS, { recursive: true });
  const dir = await Deno.makeTempDir({ prefix: "pmproxy-layout-" });
  const managersFile = join(dir, "managers.toml");
  // A monthly cycle: the status page's chart of the cycle has its days.
  await Deno.writeTextFile(
    managersFile,
    adminManagersToml({ resetCycle: "monthly" }),
  );
  const gateway = await openGateway(managersFile, {
    state: join(dir, "state.kv"),
    persistIntervalMs: 60_000,
  });
  const api = await startTestApi(gateway, { assets, dir });
  const browser = await launchChromium();
  const errors: string[] = [];
  const origin = api.origin;
  // An administrator elsewhere, to give user0 some consumption.
  const adminCaller = {
    ip: "192.0.2.9",
    secret: await gateway.open("sessions", { ip: "192.0.2.9" }, {
      user: "admin",
      pass: "admin-pass",
    }),
  };
  const consume = (bytes: number) =>
    gateway.setConsumption("down", adminCaller, { user: "user0", bytes });
  // A history to draw: user0's hours of today and days of this month so
  // far, as flushes would have written them (the quota's zone is this
  // machine's).
  const cal = new UsageCalendar(machineZone());
  const now = Date.now();
  const history = async () => {
    const keep = { keepHourMs: 48 * 3_600_000, keepDayMs: 400 * 86_400_000 };
    for (let h = cal.dayStart(now), i = 0; h <= now; h += 3_600_000, i++) {
      const bytes = (5 + ((i * 37) % 23)) * 1024 ** 2;
      await gateway.store.addUsage("down", new Map([["user0", bytes]]), {
        hour: cal.hourStart(h),
        day: cal.dayStart(h),
        ...keep,
      });
    }
    for (
      let d = cal.monthStart(now), i = 0;
      d < cal.dayStart(now);
      d = cal.nextPeriod("day", d), i++
    ) {
      const bytes = (40 + ((i * 53) % 90)) * 1024 ** 2;
      await gateway.store.addUsage("down", new Map([["user0", bytes]]), {
        hour: d,
        day: d,
        ...keep,
      });
    }
  };
  try {
    const en = await newPage(browser, errors);
    await en.goto(`${origin}/`);
    await en.locator("#login").waitFor();
    await shoot(en, "login-en");

    const es = await newPage(browser, errors, { locale: "es-CU" });
    await es.goto(`${origin}/`);
    await es.locator("#login").waitFor();
    await shoot(es, "login-es");

    const plain = await newPage(browser, errors, { javaScriptEnabled: false });
    await plain.goto(`${origin}/?next=${encodeURIComponent(LONG_NEXT)}`);
    await submitLogin(plain, "user0", "wrong");
    await plain.locator("#login-error").waitFor();
    await shoot(plain, "login-error-nojs");

    await consume(384 * 1024 ** 2);
    await history();
    // The login sends the browser on to `next`, a name that resolves
    // nowhere here: answered at once, that navigation ends before the
    // status page is opened, instead of racing it (a lookup that takes its
    // time used to land after it, and the status page was never shown).
    await plain.route(
      "http://news.example.org/**",
      (route) =>
        route.fulfill({
          contentType: "text/html",
          body: "<!doctype html><title>News</title>",
        }),
    );
    await plain.getByLabel("Password", { exact: true }).fill("pass0");
    await plain.getByRole("button", { name: "Log in", exact: true }).click();
    // By host and path: the login page's own address names news.example.org
    // in its `next`, and a pattern over the whole address matched it at
    // once, so the status page was opened while the login was still
    // being posted (and the login was lost).
    await plain.waitForURL((u) =>
      u.hostname === "news.example.org" || u.pathname === "/status"
    ).catch(() => {});
    await openStatus(
      plain,
      `${origin}/status?next=${encodeURIComponent(LONG_NEXT)}`,
    );
    // The charts without JavaScript: drawn by the API.
    const heights = await plain.locator("#today-chart rect.bar").evaluateAll(
      (rects) => rects.map((r) => Number(r.getAttribute("height"))),
    );
    assert.equal(heights.length, 24);
    assert.ok(heights.some((h) => h > 0), "today's bars have heights");
    assert.match(
      await plain.locator("#today-summary").textContent() ?? "",
      /MB in total; the most: /,
    );
    await shoot(plain, "status-nojs");

    await submitLogin(en, "user0", "pass0");
    await en.locator("#status").waitFor();
    await en.locator("#today-chart rect.bar").first().waitFor();
    await shoot(en, "status-js");
    await consume(1100 * 1024 ** 2);
    await en.getByRole("button", { name: "Refresh", exact: true }).click();
    await en.locator("#usage.full").waitFor();
    await shoot(en, "status-full-js");

    const admin = await newPage(browser, errors);
    await admin.goto(`${origin}/`);
    await submitLogin(admin, "admin", "admin-pass");
    await admin.getByRole("link", { name: "Administration" }).click();
    await admin.locator("#users td", { hasText: "admin" }).waitFor();
    await admin.getByLabel("User", { exact: true }).fill("user0");
    await admin.getByRole("button", { name: "Look up", exact: true }).click();
    await admin.locator("#lookup-result").waitFor();
    await admin.locator("#lkd-chart rect.bar").first().waitFor();
    await admin.getByRole("button", { name: "down dwnConsR" }).click();
    await admin.locator("#show-result", { hasText: "group0" }).waitFor();
    await admin.getByLabel("URL or host:port").fill(LONG_NEXT);
    await admin.getByLabel("User taken as logged in").fill("user0");
    await admin.getByRole("button", { name: "Explain", exact: true }).click();
    await admin.locator("#explain-verdict", { hasText: "Refused" }).waitFor();
    await shoot(admin, "admin-js");
    await admin.getByRole("link", { name: "Español" }).click();
    await admin.locator("#users td", { hasText: "admin" }).waitFor();
    await shoot(admin, "admin-es");

    const adminPlain = await newPage(browser, errors, {
      javaScriptEnabled: false,
    });
    await adminPlain.goto(`${origin}/admin`);
    await shoot(adminPlain, "admin-nojs");

    // The status page in Spanish, with its charts (last: the login
    // replaces the admin's session at this address).
    await es.getByLabel("Usuario", { exact: true }).fill("user0");
    await es.getByLabel("Contraseña", { exact: true }).fill("pass0");
    await es.getByRole("button", { name: "Entrar", exact: true }).click();
    await es.locator("#cycle-chart rect.bar").first().waitFor();
    await shoot(es, "status-es");
    assert.deepEqual(errors, [], "the pages raised no script errors");
  } finally {
    await browser.close();
    await api.close();
    await gateway.close();
    await Deno.remove(dir, { recursive: true });
  }
});
