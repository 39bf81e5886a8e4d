/**
 * The built-in pages in real headless Chromium against the real HTTPS API
 * app over a small in-test gateway (tests/helpers/api_fake_gateway.ts):
 * the page logic that the real gateway makes hard to reach (expired
 * secrets, every error shape, a non-admin on the admin page).
 */
import assert from "node:assert/strict";
import { assets } from "../web/assets.ts";
import { FakeGateway } from "./helpers/api_fake_gateway.ts";
import { startTestApi } from "./helpers/api_server.ts";
import { launchChromium, newPage, submitLogin } from "./helpers/web_browser.ts";

async function withSetup(
  fn: (
    ctx: {
      gateway: FakeGateway;
      origin: string;
      browser: Awaited<ReturnType<typeof launchChromium>>;
      errors: string[];
    },
  ) => Promise<void>,
): Promise<void> {
  const gateway = new FakeGateway();
  const api = await startTestApi(gateway, { assets });
  const errors: string[] = [];
  let browser;
  try {
    browser = await launchChromium();
    await fn({ gateway, origin: api.origin, browser, errors });
    assert.deepEqual(errors, [], "the pages raised no script errors");
  } finally {
    await browser?.close();
    await api.close();
  }
}

Deno.test("web pages: unknown user, wrong password, then login and logout", async () => {
  await withSetup(async ({ origin, browser, errors, gateway }) => {
    const page = await newPage(browser, errors);
    await page.goto(`${origin}/`);
    await submitLogin(page, "nobody", "x");
    await page.locator("#login-error", {
      hasText: "Incorrect user name or password",
    })
      .waitFor();

    await submitLogin(page, "user0", "wrong");
    await page.locator("#login-error", {
      hasText: "Incorrect user name or password",
    })
      .waitFor();

    gateway.consumption.user0 = 512 * 1024 ** 2;
    // The keyboard alone logs in: Enter in the password field submits.
    await page.getByLabel("Password", { exact: true }).fill("pass0");
    await page.getByLabel("Password", { exact: true }).press("Enter");
    await page.locator("#status").waitFor();
    assert.equal(await page.locator("#st-user").textContent(), "user0");
    assert.equal(
      await page.locator("#notice").textContent(),
      "Welcome, user0. You can browse now.",
    );
    assert.equal(await page.locator("#st-groups").textContent(), "group0");
    assert.equal(await page.locator("#st-quota").textContent(), "1 GB");
    assert.equal(await page.locator("#st-consumption").textContent(), "512 MB");
    assert.equal(
      await page.locator("#usage").getAttribute("aria-valuetext"),
      "512 MB of 1 GB used (50.0 %)",
    );
    assert.equal(await page.locator("#admin-link").isVisible(), false);

    // A reload keeps the login (the secret is in localStorage).
    await page.reload();
    await page.locator("#status").waitFor();
    assert.equal(await page.locator("#st-user").textContent(), "user0");

    await page.getByRole("button", { name: "Log out", exact: true }).click();
    await page.locator("#login").waitFor();
    assert.equal(
      await page.locator("#notice").textContent(),
      "You are logged out.",
    );
    assert.equal(gateway.sessions.size, 0);
    assert.equal(
      await page.evaluate(() => localStorage.getItem("pmproxy.login")),
      null,
    );
  });
});

Deno.test("web pages: an expired secret is renewed and the status shown", async () => {
  await withSetup(async ({ origin, browser, errors, gateway }) => {
    gateway.secretMs = -1; // every secret is expired once issued
    const page = await newPage(browser, errors);
    await page.goto(`${origin}/`);
    await submitLogin(page, "user0", "pass0");
    // get → expired → renew (still expired) → retry gets "expired token".
    await page.locator("#login-error", { hasText: "expired token" }).waitFor();
    assert.ok(gateway.calls.includes("renew sessions"));

    gateway.secretMs = 3600_000;
    const session = [...gateway.sessions.values()][0];
    session.expires = Date.now() - 1;
    gateway.calls.length = 0;
    await page.reload();
    await page.locator("#status").waitFor();
    assert.equal(await page.locator("#st-user").textContent(), "user0");
    assert.deepEqual(gateway.calls, ["renew sessions"]);
    const stored = await page.evaluate(() =>
      JSON.parse(localStorage.getItem("pmproxy.login") ?? "{}").secret
    );
    assert.equal(stored, session.secret, "the renewed secret is stored");
  });
});

Deno.test("web pages: a session ended elsewhere sends the user back to the form", async () => {
  await withSetup(async ({ origin, browser, errors, gateway }) => {
    const page = await newPage(browser, errors);
    await page.goto(`${origin}/`);
    await submitLogin(page, "user0", "pass0");
    await page.locator("#status").waitFor();
    gateway.sessions.clear();
    await page.reload();
    await page.locator("#login").waitFor();
    assert.match(
      await page.locator("#login-error").textContent() ?? "",
      /session at this address has ended/,
    );
  });
});

Deno.test("web pages: the admin page refuses a non-admin and serves an admin", async () => {
  await withSetup(async ({ origin, browser, errors, gateway }) => {
    const page = await newPage(browser, errors);
    await page.goto(`${origin}/admin`);
    await page.locator("#admin-error", { hasText: "not logged in" }).waitFor();

    await page.goto(`${origin}/`);
    await submitLogin(page, "user0", "pass0");
    await page.locator("#status").waitFor();
    await page.goto(`${origin}/admin`);
    await page.locator("#admin-error", {
      hasText: '"user0" is not an administrator.',
    }).waitFor();
    assert.equal(await page.locator("#admin").isVisible(), false);

    await page.goto(`${origin}/`);
    await page.getByRole("button", { name: "Log out", exact: true }).click();
    await submitLogin(page, "admin", "admin-pass");
    await page.getByRole("link", { name: "Administration" }).click();
    await page.locator("#admin").waitFor();
    await page.locator("#users td", { hasText: "admin" }).waitFor();

    await page.getByLabel("Manager", { exact: true }).fill("down");
    await page.getByRole("button", { name: "Show", exact: true }).click();
    await page.locator("#show-result", { hasText: '"resetCycle": "24h0m0s"' })
      .waitFor();
    await page.getByLabel("Manager", { exact: true }).fill("nope");
    await page.getByRole("button", { name: "Show", exact: true }).click();
    await page.locator("#show-error", { hasText: 'no manager "nope"' })
      .waitFor();

    gateway.consumption.user0 = 3 * 1024 ** 2;
    await page.getByLabel("User", { exact: true }).fill("user0");
    await page.getByRole("button", { name: "Look up", exact: true }).click();
    await page.locator("#lk-consumption", { hasText: "3 MB" }).waitFor();
    await page.getByRole("button", { name: "Reset consumption", exact: true })
      .click();
    await page.locator("#notice", { hasText: "user0 is now 0 B" }).waitFor();
    await page.locator("#lk-consumption", { hasText: "0 B" }).waitFor();
    assert.equal(gateway.consumption.user0, 0);
  });
});

Deno.test("web pages: managers the rule does not reach are found through /api/portal", async () => {
  await withSetup(async ({ origin, browser, errors, gateway }) => {
    // As if the rule were "lan ∧ sessions ∧ down" seen from outside "lan".
    gateway.discover = () => ({
      matchMng: { lan: { match: false, type: "rangeIPM" } },
      result: false,
    });
    const page = await newPage(browser, errors);
    await page.goto(`${origin}/`);
    await submitLogin(page, "user0", "pass0");
    await page.locator("#status").waitFor();
    assert.equal(await page.locator("#st-quota").textContent(), "1 GB");
    const stored = await page.evaluate(() =>
      JSON.parse(localStorage.getItem("pmproxy.login") ?? "{}")
    );
    assert.equal(stored.sessionIPM, "sessions");
    assert.equal(stored.dwnConsR, "down");
  });
});

Deno.test("web pages: an unreachable gateway is reported as a network error", async () => {
  await withSetup(async ({ origin, browser, errors }) => {
    const page = await newPage(browser, errors);
    await page.goto(`${origin}/`);
    await page.locator("#login").waitFor();
    await page.route("**/api/cmd", (route) => route.abort("connectionrefused"));
    await submitLogin(page, "user0", "pass0");
    await page.locator("#login-error", { hasText: "Network error" }).waitFor();
    assert.equal(
      await page.getByRole("button", { name: "Log in", exact: true })
        .isEnabled(),
      true,
    );
  });
});

Deno.test("web pages: past the quota's warning threshold the status says so, with JavaScript and without; a history that cannot be read is a sentence", async () => {
  await withSetup(async ({ origin, browser, errors, gateway }) => {
    gateway.warnAt = 0.8;
    gateway.grants = { user0: 100 * 1024 ** 2 };
    gateway.consumption.user0 = 0.9 * 1024 ** 3;
    for (const javaScriptEnabled of [true, false]) {
      const page = await newPage(browser, errors, { javaScriptEnabled });
      await page.goto(`${origin}/`);
      await submitLogin(page, "user0", "pass0");
      await page.locator("#status").waitFor();
      if (!javaScriptEnabled) await page.goto(`${origin}/status`);
      await page.locator("#usage.warn").waitFor();
      await page.locator("#st-warning", {
        hasText: "You have used most of your quota.",
      }).waitFor();
      assert.equal(await page.locator("#usage.full").count(), 0);
      // This gateway has no usage history: the page says so, nothing else
      // breaks.
      await page.locator("#history-missing", {
        hasText: "Your usage history cannot be shown right now.",
      }).waitFor();
      assert.equal(await page.locator("#history-box").isVisible(), false);
      assert.equal(
        await page.locator("#st-consumption").textContent(),
        "921.6 MB",
      );
      // What an administrator granted, when the gateway says.
      assert.equal(await page.locator("#st-granted").textContent(), "100 MB");
      assert.equal(await page.locator("#st-granted").isVisible(), true);
      await page.context().close();
    }
    // Under the threshold: no warning.
    gateway.consumption.user0 = 0.5 * 1024 ** 3;
    const page = await newPage(browser, errors);
    await page.goto(`${origin}/`);
    await submitLogin(page, "user0", "pass0");
    await page.locator("#status").waitFor();
    await page.locator("#st-consumption", { hasText: "512 MB" }).waitFor();
    assert.equal(await page.locator("#usage.warn").count(), 0);
    assert.equal(await page.locator("#st-warning").isVisible(), false);
    gateway.grants = {};
    await page.getByRole("button", { name: "Refresh", exact: true }).click();
    await page.locator("#st-granted").waitFor({ state: "hidden" });
  });
});
