/**
 * Real headless Chromium for the web page tests, through playwright-core.
 * Never downloads a browser: it uses the system's Chromium
 * (`apt-get install chromium`), or `$CHROMIUM_PATH` when set.
 *
 * @module
 */
import {
  type Browser,
  type BrowserContextOptions,
  chromium,
  type Page,
} from "playwright-core";

/** Where the browser is looked for. */
export const CHROMIUM_PATH = Deno.env.get("CHROMIUM_PATH") ??
  "/usr/bin/chromium";

/** Options of {@link launchChromium}. */
export interface LaunchOptions {
  /**
   * More command-line switches, e.g. `--proxy-server=…` or
   * `--proxy-pac-url=…`. Chromium then sends its own background requests
   * to outside hosts through that proxy too: a test's rule must allow
   * loopback origins only.
   */
  args?: string[];
}

/**
 * Launches headless Chromium. Throws a message saying how to install it
 * when it is missing.
 */
export async function launchChromium(
  options: LaunchOptions = {},
): Promise<Browser> {
  try {
    const info = await Deno.stat(CHROMIUM_PATH);
    if (!info.isFile) throw new Error("not a file");
  } catch {
    throw new Error(
      `Chromium is missing at ${CHROMIUM_PATH}: install it with ` +
        "`apt-get install chromium` (or set CHROMIUM_PATH); the web tests " +
        "use the system browser and never download one.",
    );
  }
  return await chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      ...(options.args ?? []),
    ],
  });
}

/**
 * A fresh page in its own browser context (own localStorage and cookies)
 * that accepts the API's self-signed certificate. Collects page errors
 * into `errors`. `context` adds context options (`javaScriptEnabled`,
 * `locale`, `viewport`, `colorScheme`, …).
 */
export async function newPage(
  browser: Browser,
  errors: string[],
  context: BrowserContextOptions = {},
): Promise<Page> {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, ...context });
  const page = await ctx.newPage();
  page.setDefaultTimeout(15_000);
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    // A 400 answer of the API is logged by Chromium itself: not a page bug.
    if (m.type() === "error" && !m.text().startsWith("Failed to load")) {
      errors.push(`console error: ${m.text()}`);
    }
  });
  return page;
}

/**
 * Fills the login form (its User and Password fields, found by their
 * labels as a person finds them) and presses Log in; what follows is the
 * caller's to wait for.
 */
export async function submitLogin(
  page: Page,
  user: string,
  pass: string,
): Promise<void> {
  await page.getByLabel("User", { exact: true }).fill(user);
  await page.getByLabel("Password", { exact: true }).fill(pass);
  await page.getByRole("button", { name: "Log in", exact: true }).click();
}
