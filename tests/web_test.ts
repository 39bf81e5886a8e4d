/**
 * The built-in pages in real headless Chromium against the real thing:
 * the HTTPS API (api/mod.ts, self-signed certificate generated in a temp
 * config dir) over the real gateway (managers/mod.ts) loaded from the
 * README's managers plus an administrator, state in a real
 * Deno KV file.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { assets } from "../web/assets.ts";
import { openGateway } from "../managers/mod.ts";
import { startTestApi } from "./helpers/api_server.ts";
import { launchChromium, newPage, submitLogin } from "./helpers/web_browser.ts";
import type { Browser, Page } from "playwright-core";
import { adminManagersToml } from "./helpers/config_dir.ts";

/** The README's managers with an administrator. */
const MANAGERS_TOML = adminManagersToml();

async function withRealGateway(
  managersToml: string,
  fn: (ctx: {
    /** Moves the gateway's clock forward. */
    advance: (ms: number) => void;
    origin: string;
    browser: Browser;
    errors: string[];
    post: (body: unknown) => Promise<{ status: number; text: string }>;
  }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "pmproxy-web-" });
  const cleanups: (() => Promise<void> | void)[] = [];
  try {
    const managersFile = join(dir, "managers.toml");
    await Deno.writeTextFile(managersFile, managersToml);
    let offset = 0;
    const gateway = await openGateway(managersFile, {
      state: join(dir, "state.kv"),
      persistIntervalMs: 60_000,
      clock: () => new Date(Date.now() + offset),
    });
    cleanups.push(() => gateway.close());
    const api = await startTestApi(gateway, { assets, dir });
    cleanups.push(() => api.close());
    const browser = await launchChromium();
    cleanups.push(() => browser.close());
    const errors: string[] = [];
    await fn({
      advance: (ms) => offset += ms,
      origin: api.origin,
      browser,
      errors,
      post: api.post,
    });
    assert.deepEqual(errors, [], "the pages raised no script errors");
  } finally {
    for (const c of cleanups.reverse()) await c();
    await Deno.remove(dir, { recursive: true });
  }
}

async function logIn(page: Page, user: string, pass: string): Promise<void> {
  await submitLogin(page, user, pass);
}

Deno.test("web: wrong password, login with quota and consumption, logout", async () => {
  await withRealGateway(
    MANAGERS_TOML,
    async ({ origin, browser, errors, post }) => {
      const page = await newPage(browser, errors);
      await page.goto(`${origin}/`);
      await logIn(page, "nobody", "x");
      await page.locator("#login-error", {
        hasText: "Incorrect user name or password",
      })
        .waitFor();
      await logIn(page, "user0", "wrong");
      await page.locator("#login-error", {
        hasText: "Incorrect user name or password",
      })
        .waitFor();
      assert.equal(await page.locator("#status").isVisible(), false);

      await logIn(page, "user0", "pass0");
      await page.locator("#status").waitFor();
      assert.equal(await page.locator("#st-user").textContent(), "user0");
      assert.equal(await page.locator("#st-groups").textContent(), "group0");
      assert.equal(await page.locator("#st-quota").textContent(), "1 GB");
      assert.equal(await page.locator("#st-consumption").textContent(), "0 B");
      assert.equal(
        await page.locator("#notice").textContent(),
        "Welcome, user0. You can browse now.",
      );
      // The session is the gateway's: discover from this address now matches.
      const found = JSON.parse(
        (await post({ cmd: "discover", manager: "rules" })).text,
      );
      assert.equal(found.matchMng.sessions.match, true);

      await page.getByRole("button", { name: "Log out", exact: true }).click();
      await page.locator("#login").waitFor();
      assert.equal(
        await page.locator("#notice").textContent(),
        "You are logged out.",
      );
      const after = JSON.parse(
        (await post({ cmd: "discover", manager: "rules" })).text,
      );
      assert.equal(after.matchMng.sessions.match, false);
    },
  );
});

Deno.test("web: an admin resets another user's consumption", async () => {
  await withRealGateway(
    MANAGERS_TOML,
    async ({ origin, browser, errors, post }) => {
      const page = await newPage(browser, errors);
      await page.goto(`${origin}/`);
      await logIn(page, "admin", "admin-pass");
      await page.getByRole("link", { name: "Administration" }).click();
      await page.locator("#admin").waitFor();
      await page.locator("#users td", { hasText: "admin" }).waitFor();

      // Give user0 some consumption through the API with the admin's secret.
      const secret = await page.evaluate(() =>
        JSON.parse(localStorage.getItem("pmproxy.login") ?? "{}").secret
      );
      const set = await post({
        cmd: "set",
        manager: "down",
        secret,
        info: { userName: "user0", bytesCons: 5 * 1024 * 1024 },
      });
      assert.equal(set.status, 200, set.text);

      await page.getByLabel("User", { exact: true }).fill("user0");
      await page.getByRole("button", { name: "Look up", exact: true }).click();
      await page.locator("#lk-consumption", { hasText: "5 MB" }).waitFor();
      assert.equal(await page.locator("#lk-quota").textContent(), "1 GB");

      await page.getByRole("button", { name: "Reset consumption", exact: true })
        .click();
      await page.locator("#notice", { hasText: "user0 is now 0 B" }).waitFor();
      await page.locator("#lk-consumption", { hasText: "0 B" }).waitFor();
      const info = JSON.parse(
        (await post({
          cmd: "getOther",
          manager: "down",
          secret,
          info: { userName: "user0" },
        })).text,
      );
      assert.equal(info.bytesCons, 0);

      await page.getByLabel("Manager", { exact: true }).fill("down");
      await page.getByRole("button", { name: "Show", exact: true }).click();
      await page.locator("#show-result", { hasText: "group0" }).waitFor();
    },
  );
});

Deno.test("web: a rule that stops before the session manager still lets people log in", async () => {
  const toml = MANAGERS_TOML.replace(
    `rule = "sessions ∧ down"`,
    `rule = "lan ∧ sessions ∧ down"\n\n[[rangeIPM]]\nname = "lan"\ncidr = "192.0.2.0/24"`,
  );
  assert.notEqual(toml, MANAGERS_TOML);
  await withRealGateway(toml, async ({ origin, browser, errors }) => {
    const page = await newPage(browser, errors);
    await page.goto(`${origin}/`);
    await logIn(page, "user0", "pass0");
    await page.locator("#status").waitFor();
    assert.equal(await page.locator("#st-quota").textContent(), "1 GB");
    assert.equal(await page.locator("#st-consumption").textContent(), "0 B");
    assert.match(
      await page.locator("#notice").textContent() ?? "",
      /rules do not let this address browse/,
    );
  });
});

Deno.test("web: typing while the page still asks the server keeps the focus where it is", async () => {
  await withRealGateway(MANAGERS_TOML, async ({ origin, browser, errors }) => {
    const page = await newPage(browser, errors);
    // The page's first question to the API (its discovery) reaches the real
    // server only once the password is typed, as on a slow link.
    const typed = Promise.withResolvers<void>();
    let held = 0;
    await page.route("**/api/cmd", async (route) => {
      if (held++ === 0) await typed.promise;
      await route.continue();
    });
    await page.goto(`${origin}/`);
    await page.locator("#user").focus();
    await page.keyboard.type("user0");
    await page.keyboard.press("Tab");
    await page.keyboard.type("pass0");
    typed.resolve();
    // The discovery answered, the form was shown again (its options and
    // its focus are set in one go)...
    await page.waitForFunction(
      `document.getElementById("session-manager").options.length > 0`,
    );
    // ...and the focus stayed on the password, where the person was.
    assert.equal(
      await page.evaluate(
        "document.activeElement && document.activeElement.id",
      ),
      "pass",
    );
    assert.ok(held >= 1, "the discovery went through the held route");
  });
});

Deno.test("web: an expired secret is renewed by the page itself", async () => {
  await withRealGateway(MANAGERS_TOML, async (ctx) => {
    const { origin, browser, errors, post, advance } = ctx;
    const page = await newPage(browser, errors);
    await page.goto(`${origin}/`);
    await logIn(page, "user0", "pass0");
    await page.locator("#status").waitFor();
    const secretOf = () =>
      page.evaluate(() =>
        JSON.parse(localStorage.getItem("pmproxy.login") ?? "{}").secret
      );
    const first = await secretOf();

    advance(2 * 3600_000); // past jwtExpiration = "1h"
    const expired = await post({
      cmd: "check",
      manager: "sessions",
      secret: first,
    });
    assert.equal(expired.status, 400);
    assert.match(expired.text, /expired token/);

    await page.reload();
    await page.locator("#status").waitFor();
    assert.equal(await page.locator("#st-user").textContent(), "user0");
    const renewed = await secretOf();
    assert.notEqual(renewed, first, "the page stored a new secret");
    const ok = await post({
      cmd: "check",
      manager: "sessions",
      secret: renewed,
    });
    assert.equal(ok.text.trim(), "user0");
  });
});
