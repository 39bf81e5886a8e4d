/**
 * The whole story of the captive portal and the console, in real headless
 * Chromium through the real proxy of the real `pmproxy serve` (child
 * process, real Deno KV, a 1 s persist interval): a page refused before
 * login → the portal → login → back to the wanted page → a download → the
 * status page's bar and chart move → an administrator (another browser,
 * at another address) finds the user in the table, sees their history,
 * resets them and ends their session → the user is refused again. Then the
 * CSV download of the console.
 *
 * The user's browser reaches the proxy at [::1] and the administrator's
 * the API at 127.0.0.1, so that the two have their own sessions (one per
 * address). Chromium makes background requests to outside hosts through
 * the proxy it is given: the rule allows loopback origins only.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { loopbackServerToml, startPmproxy } from "./helpers/pmproxy_process.ts";
import { freePort } from "./helpers/local_servers.ts";
import { adminManagersToml } from "./helpers/config_dir.ts";
import { launchChromium, newPage, submitLogin } from "./helpers/web_browser.ts";

const MiB = 1024 * 1024;
const DOWNLOAD = 3 * MiB;

/** An origin: `/wanted` is a page, `/download` 3 MiB of text. */
function startOrigin() {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req) => {
      if (new URL(req.url).pathname === "/download") {
        return new Response("x".repeat(DOWNLOAD), {
          headers: { "content-type": "text/plain" },
        });
      }
      return new Response(
        `<!doctype html><title>Wanted</title><h1>The wanted page</h1>`,
        { headers: { "content-type": "text/html; charset=utf-8" } },
      );
    },
  );
  return { port: server.addr.port, close: () => server.shutdown() };
}

const MANAGERS = adminManagersToml({
  rule: "sessions ∧ down ∧ loopback",
  jwtExpiration: null,
  resetCycle: "monthly",
  dwnConsR: 'timezone = "UTC"',
  quota: "100 MB",
  managers: `[[hostMatcher]]
name = "loopback"
pattern = '^127\\.0\\.0\\.1$'`,
});

/** Clicks Refresh until `ok` holds (the flush runs every second). */
async function refreshUntil(
  page: Page,
  what: string,
  ok: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await ok())) {
    if (Date.now() > deadline) assert.fail(`${what}: not within 15 s`);
    await page.waitForTimeout(500);
    await page.getByRole("button", { name: "Refresh", exact: true }).click();
    await page.waitForTimeout(300);
  }
}

Deno.test("console: refused, portal, login, back, a download moves the bar and the chart; an admin finds, resets and ends the user, who is refused again", async () => {
  const origin = startOrigin();
  const dir = await Deno.makeTempDir({ prefix: "pmproxy-console-web-" });
  const apiPort = freePort();
  await Deno.writeTextFile(
    join(dir, "server.toml"),
    loopbackServerToml({ apiPort, proxyAddr: "[::1]:0" }),
  );
  await Deno.writeTextFile(join(dir, "managers.toml"), MANAGERS);
  const server = await startPmproxy(dir);
  const browsers: Browser[] = [];
  const errors: string[] = [];
  const api = `https://127.0.0.1:${apiPort}`;
  try {
    const userBrowser = await launchChromium({
      args: [
        `--proxy-server=http://[::1]:${server.proxyPort}`,
        "--proxy-bypass-list=<-loopback>",
      ],
    });
    browsers.push(userBrowser);
    const adminBrowser = await launchChromium();
    browsers.push(adminBrowser);

    // Refused before login; the refusal page leads to the portal.
    const user = await newPage(userBrowser, errors);
    const wanted = `http://127.0.0.1:${origin.port}/wanted`;
    assert.equal((await user.goto(wanted))?.status(), 403);
    await user.locator("a", { hasText: "https://127.0.0.1" }).click();
    await user.waitForURL(/\/\?next=/);
    await submitLogin(user, "user0", "pass0");
    await user.waitForURL(wanted);
    assert.equal(await user.locator("h1").textContent(), "The wanted page");

    // The status page before the download.
    await user.goto(`${api}/`);
    await user.locator("#today-chart svg").waitFor();
    const barValue = async () =>
      Number(await user.locator("#usage").getAttribute("value"));
    const chartBytes = async () =>
      await user.locator("#today-summary").textContent() ?? "";
    // Only the wanted page so far (a few hundred bytes). The history has
    // it once a flush wrote it (persistInterval is 1 s here), which may
    // come after this page was opened: the page is opened again until then.
    for (
      let i = 0;
      i < 20 && !/^\d+ B in total/.test(await chartBytes());
      i++
    ) {
      await new Promise((r) => setTimeout(r, 250));
      await user.reload();
      await user.locator("#today-chart svg").waitFor();
    }
    assert.match(await chartBytes(), /^\d+ B in total/);
    const before = await barValue();
    assert.equal(await user.locator("#today-chart rect.bar").count(), 24);
    assert.match(
      await user.locator("#st-reset").textContent() ?? "",
      /at 00:00 \(UTC\)$/,
    );
    assert.match(
      await user.locator("#rule-list").textContent() ?? "",
      /sessions \(sessionIPM\): met/,
    );

    // A download through the proxy; the bar and the chart move.
    const got = await user.goto(`http://127.0.0.1:${origin.port}/download`);
    assert.equal(got?.status(), 200);
    await user.goto(`${api}/`);
    await user.locator("#status").waitFor();
    await refreshUntil(
      user,
      "the bar and the chart move",
      async () =>
        (await barValue()) >= before + DOWNLOAD &&
        (await chartBytes()).startsWith("3 MB in total"),
    );
    const tallest = await user.locator("#today-chart rect.bar").evaluateAll(
      (rects) =>
        Math.max(...rects.map((r) => Number(r.getAttribute("height")))),
    );
    assert.ok(tallest > 50, `the hour's bar is ${tallest} px high`);
    assert.match(
      await user.locator("#usage-text").textContent() ?? "",
      /^3 MB of 100 MB used \(3\.0 %\)$/,
    );
    // Its text alternative: a table with the hour.
    await user.getByText("Show as a table").first().click();
    await user.locator("#today-table td", { hasText: "3 MB" }).waitFor();

    // The administrator, at 127.0.0.1.
    const admin = await newPage(adminBrowser, errors);
    await admin.goto(`${api}/`);
    await submitLogin(admin, "admin", "admin-pass");
    await admin.getByRole("link", { name: "Administration" }).click();
    await admin.locator("#people tr").first().waitFor();
    await admin.getByLabel("Search users").fill("user0");
    await admin.getByRole("button", { name: "Search", exact: true }).click();
    await admin.locator("#people-count", { hasText: "Users 1 to 1 of 1" })
      .waitFor();
    const row = admin.locator("#people tr", { hasText: "user0" });
    await row.locator("td", { hasText: "3 MB" }).waitFor();
    await row.locator("td", { hasText: "::1" }).waitFor();

    // Their history.
    await admin.getByRole("button", { name: "History of user0" }).click();
    await admin.locator("#lk-consumption", { hasText: "3 MB" }).waitFor();
    await admin.locator("#lkh-summary", { hasText: "3 MB in total" }).waitFor();
    await admin.locator("#lkd-summary", { hasText: "3 MB in total" }).waitFor();

    // Reset, then end the session.
    await admin.getByRole("button", { name: "Reset the consumption of user0" })
      .click();
    await admin.locator("#notice", { hasText: "user0 is now 0 B" }).waitFor();
    await row.locator("td", { hasText: "0 B" }).waitFor();
    await admin.getByRole("button", { name: "End the session of user0" })
      .click();
    await admin.locator("#notice", {
      hasText: "The session of user0 at ::1 has ended.",
    }).waitFor();
    await row.locator("td", { hasText: "nowhere" }).waitFor();
    // The history keeps what was used; the reset set the counter only.
    await admin.getByRole("button", { name: "History of user0" }).click();
    await admin.locator("#lk-consumption", { hasText: "0 B" }).waitFor();
    await admin.locator("#lkh-summary", { hasText: "3 MB in total" }).waitFor();

    // The user is refused again.
    assert.equal((await user.goto(wanted))?.status(), 403);

    // The console's CSV download: every user's history by day.
    const [download] = await Promise.all([
      admin.waitForEvent("download"),
      admin.getByRole("button", { name: "Download CSV" }).click(),
    ]);
    assert.equal(download.suggestedFilename(), "usage-down-by-day.csv");
    const csv = await Deno.readTextFile(await download.path());
    const today = new Date().toISOString().slice(0, 10);
    // The download, and the wanted page's few hundred bytes.
    const line = new RegExp(
      `^start,user,bytes\r\n${today}T00:00:00Z,user0,(\\d+)\r\n$`,
    );
    const bytes = Number(line.exec(csv)?.[1]);
    assert.ok(bytes >= DOWNLOAD && bytes < DOWNLOAD + 10_000, csv);
    assert.deepEqual(errors, [], "the pages raised no script errors");
  } finally {
    for (const b of browsers) await b.close();
    const code = await server.stop();
    await origin.close();
    await Deno.remove(dir, { recursive: true });
    assert.equal(code, 0, server.output());
  }
});
