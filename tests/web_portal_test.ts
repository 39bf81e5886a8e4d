/**
 * The captive portal as a new user meets it, in real headless Chromium
 * through the real proxy: the real `pmproxy serve` (child process, real
 * Deno KV), Chromium sending everything to it (`--proxy-server`, or
 * `--proxy-pac-url` pointing at the API's own PAC file), a refused page →
 * the portal → login → back to the page it wanted. With JavaScript off and
 * on, by keyboard alone, in Spanish.
 *
 * Chromium makes background requests to outside hosts through the proxy
 * it is given, so the rule allows loopback origins only (and the made-up
 * `*.pac-test` names, which the proxy sends to the test's origin as a
 * parent proxy: only the proxy can reach them).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { loopbackServerToml, startPmproxy } from "./helpers/pmproxy_process.ts";
import { freePort } from "./helpers/local_servers.ts";
import { adminManagersToml } from "./helpers/config_dir.ts";
import { launchChromium, newPage, submitLogin } from "./helpers/web_browser.ts";

/** The test's origin: any path is "the wanted page", and it says its host. */
interface WantedOrigin {
  port: number;
  /** Host headers of the requests it served. */
  hosts: string[];
  close(): Promise<void>;
}

function startWantedOrigin(): WantedOrigin {
  const hosts: string[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req) => {
      const host = req.headers.get("host") ?? "";
      hosts.push(host);
      return new Response(
        `<!doctype html><title>Wanted</title><h1>The wanted page</h1><p id="host">${host}</p>`,
        { headers: { "content-type": "text/html; charset=utf-8" } },
      );
    },
  );
  return { port: server.addr.port, hosts, close: () => server.shutdown() };
}

function managersToml(originPort: number): string {
  return adminManagersToml({
    rule: "sessions ∧ down ∧ (loopback ∨ (pacTest ∧ toOrigin))",
    jwtExpiration: null,
    managers: `[[hostMatcher]]
name = "loopback"
pattern = '^127\\.0\\.0\\.1$'

[[hostMatcher]]
name = "pacTest"
pattern = '\\.pac-test$'

# The made-up names exist only behind the proxy: it hands them to the
# test's origin, which answers any absolute URL.
[[parentProxy]]
name = "toOrigin"
proxyURL = "http://127.0.0.1:${originPort}"`,
  });
}

interface Portal {
  browser: Browser;
  errors: string[];
  apiUrl: string;
  proxyPort: number;
  origin: WantedOrigin;
}

/**
 * Runs `fn` with a fresh pmproxy and Chromium. `via` says how Chromium
 * finds the proxy: `--proxy-server` (loopback included: Chromium skips
 * the proxy for loopback unless told `<-loopback>`), or our PAC file.
 */
async function withPortal(
  via: "proxy-server" | "pac",
  fn: (p: Portal) => Promise<void>,
): Promise<void> {
  const origin = startWantedOrigin();
  const dir = await Deno.makeTempDir({ prefix: "pmproxy-portal-" });
  const apiPort = freePort();
  await Deno.writeTextFile(
    join(dir, "server.toml"),
    loopbackServerToml({ apiPort, api: 'pacDirect = ["direct.pac-test"]' }),
  );
  await Deno.writeTextFile(
    join(dir, "managers.toml"),
    managersToml(origin.port),
  );
  const server = await startPmproxy(dir);
  let browser: Browser | undefined;
  try {
    assert.equal(server.apiPort, apiPort);
    const args = via === "pac"
      ? [
        `--proxy-pac-url=https://127.0.0.1:${apiPort}/proxy.pac`,
        // The PAC is fetched by the browser itself, not by a page: the
        // API's self-signed certificate must be accepted there too.
        "--ignore-certificate-errors",
      ]
      : [
        `--proxy-server=http://127.0.0.1:${server.proxyPort}`,
        "--proxy-bypass-list=<-loopback>",
      ];
    browser = await launchChromium({ args });
    const errors: string[] = [];
    await fn({
      browser,
      errors,
      apiUrl: `https://127.0.0.1:${apiPort}`,
      proxyPort: server.proxyPort,
      origin,
    });
    assert.deepEqual(errors, [], "the pages raised no script errors");
  } finally {
    await browser?.close();
    const code = await server.stop();
    await origin.close();
    await Deno.remove(dir, { recursive: true });
    assert.equal(code, 0, server.output());
  }
}

/** Opens `url`, expects the proxy's refusal, and follows its login link. */
async function refusedThenPortal(page: Page, url: string): Promise<void> {
  const refused = await page.goto(url);
  assert.equal(refused?.status(), 403, "the proxy refuses before login");
  assert.match(await page.content(), /pmproxy/);
  const link = page.locator("a", { hasText: "https://127.0.0.1" });
  assert.equal(
    new URL(await link.getAttribute("href") ?? "").searchParams.get("next"),
    url,
    "the refusal page's login link carries the refused URL",
  );
  await link.click();
  await page.waitForURL(/^https:\/\/127\.0\.0\.1:\d+\/\?next=/);
}

Deno.test("portal: without JavaScript, a refused page, the login form, and back to the page", async () => {
  await withPortal("proxy-server", async (portal) => {
    const { browser, errors, origin, apiUrl } = portal;
    const page = await newPage(browser, errors, { javaScriptEnabled: false });
    const wanted = `http://127.0.0.1:${origin.port}/wanted?from=refusal`;
    await refusedThenPortal(page, wanted);
    assert.equal(origin.hosts.length, 0, "the origin saw nothing yet");
    // The page says where it will go after login.
    await page.locator("#next-info", { hasText: wanted }).waitFor();

    // A wrong password: the form again, with the error, the user kept.
    await page.getByLabel("User", { exact: true }).fill("user0");
    await page.getByLabel("Password", { exact: true }).fill("wrong");
    const [wrong] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith("/login")),
      page.getByRole("button", { name: "Log in", exact: true }).click(),
    ]);
    assert.equal(wrong.status(), 403);
    await page.locator("#login-error", {
      hasText: "Incorrect user name or password",
    })
      .waitFor();
    assert.equal(
      await page.getByLabel("User", { exact: true }).inputValue(),
      "user0",
    );

    await page.getByLabel("Password", { exact: true }).fill("pass0");
    await page.getByRole("button", { name: "Log in", exact: true }).click();
    // 303 to the status page, which goes on to the wanted page at once.
    await page.waitForURL(wanted);
    assert.equal(await page.locator("h1").textContent(), "The wanted page");
    assert.deepEqual(origin.hosts.slice(-1), [`127.0.0.1:${origin.port}`]);

    // The status page works from the cookie, without JavaScript.
    await page.goto(`${apiUrl}/status`);
    assert.equal(await page.locator("#st-user").textContent(), "user0");
    assert.equal(await page.locator("#st-quota").textContent(), "1 GB");
    assert.match(
      await page.locator("#usage-text").textContent() ?? "",
      /of 1 GB used/,
    );
    const cookies = await page.context().cookies(apiUrl);
    const session = cookies.find((c) => c.name === "__Host-pmproxy_session");
    assert.ok(session, "the session is in a cookie");
    assert.equal(session.httpOnly, true);
    assert.equal(session.secure, true);
    assert.equal(session.sameSite, "Strict");

    await page.getByRole("button", { name: "Log out", exact: true }).click();
    await page.locator("#notice", { hasText: "You are logged out." })
      .waitFor();
    assert.equal(await page.locator("#login").isVisible(), true);
    const again = await page.goto(wanted);
    assert.equal(again?.status(), 403, "refused again after logout");
  });
});

Deno.test("portal: with JavaScript, a refused page, the login form, and back to the page", async () => {
  await withPortal("proxy-server", async (portal) => {
    const { browser, errors, origin, apiUrl } = portal;
    const page = await newPage(browser, errors);
    const wanted = `http://127.0.0.1:${origin.port}/wanted?with=js`;
    await refusedThenPortal(page, wanted);
    await submitLogin(page, "user0", "wrong");
    await page.locator("#login-error", {
      hasText: "Incorrect user name or password",
    })
      .waitFor();
    await page.getByLabel("Password", { exact: true }).fill("pass0");
    await page.getByRole("button", { name: "Log in", exact: true }).click();
    await page.waitForURL(wanted);
    assert.equal(await page.locator("h1").textContent(), "The wanted page");

    // The script keeps its secret in localStorage, as before; no cookie.
    await page.goto(`${apiUrl}/`);
    await page.locator("#status").waitFor();
    assert.equal(await page.locator("#st-user").textContent(), "user0");
    const stored = await page.evaluate(() =>
      JSON.parse(localStorage.getItem("pmproxy.login") ?? "{}")
    );
    assert.equal(stored.sessionIPM, "sessions");
    assert.equal(typeof stored.secret, "string");
    const cookies = await page.context().cookies(apiUrl);
    assert.equal(
      cookies.some((c) => c.name === "__Host-pmproxy_session"),
      false,
    );
    await page.getByRole("button", { name: "Log out", exact: true }).click();
    await page.locator("#notice", { hasText: "You are logged out." })
      .waitFor();
    assert.equal((await page.goto(wanted))?.status(), 403);
  });
});

Deno.test("portal: the keyboard alone logs in, with and without JavaScript", async () => {
  await withPortal("proxy-server", async (portal) => {
    const { browser, errors, origin } = portal;
    for (const javaScriptEnabled of [false, true]) {
      const page = await newPage(browser, errors, { javaScriptEnabled });
      const wanted =
        `http://127.0.0.1:${origin.port}/keys?js=${javaScriptEnabled}`;
      await refusedThenPortal(page, wanted);
      // The focus is on element `id` (waited for: a key press reaches the
      // page a moment after press() returns on a busy machine).
      const focusOn = async (id: string, what: string) => {
        await page.waitForFunction(
          `document.activeElement && document.activeElement.id === ${
            JSON.stringify(id)
          }`,
          undefined,
          { timeout: 5000 },
        ).catch(async () => {
          const at = await page.evaluate<string>(
            "document.activeElement && document.activeElement.id",
          );
          assert.fail(`${what}: the focus is on "${at}", not "${id}"`);
        });
      };
      await focusOn("user", "the user field when the page opens");
      await page.keyboard.type("user0");
      await page.keyboard.press("Tab");
      await focusOn("pass", "then the password");
      await page.keyboard.type("pass0");
      await page.keyboard.press("Tab");
      await focusOn("login-button", "then the button");
      await page.keyboard.press("Shift+Tab");
      await page.keyboard.press("Enter");
      await page.waitForURL(wanted);
      assert.equal(await page.locator("h1").textContent(), "The wanted page");
      // Log out (by keyboard too) so that the next round starts refused.
      await page.goto(`${portal.apiUrl}/status`);
      await page.locator("#status").waitFor();
      await page.getByRole("button", { name: "Log out", exact: true }).focus();
      await page.keyboard.press("Enter");
      await page.locator("#notice", { hasText: "You are logged out." })
        .waitFor();
      await page.context().close();
    }
  });
});

Deno.test("portal: Spanish under Accept-Language: es, and the language switch", async () => {
  await withPortal("proxy-server", async (portal) => {
    const { browser, errors, apiUrl } = portal;
    // Without JavaScript: the server's texts.
    const plain = await newPage(browser, errors, {
      javaScriptEnabled: false,
      locale: "es-CU",
    });
    await plain.goto(`${apiUrl}/`);
    assert.equal(await plain.locator("html").getAttribute("lang"), "es");
    assert.equal(await plain.locator("h1").textContent(), "Acceso a Internet");
    await plain.getByLabel("Usuario", { exact: true }).fill("user0");
    await plain.getByLabel("Contraseña", { exact: true }).fill("mala");
    await plain.getByRole("button", { name: "Entrar", exact: true }).click();
    await plain.locator("#login-error", {
      hasText: "Usuario o contraseña incorrectos.",
    })
      .waitFor();
    await plain.context().close();

    // With JavaScript: the script's texts come from the same catalogue.
    const page = await newPage(browser, errors, {
      extraHTTPHeaders: { "Accept-Language": "es-CU,es;q=0.9,en;q=0.5" },
    });
    await page.goto(`${apiUrl}/`);
    assert.equal(await page.locator("h1").textContent(), "Acceso a Internet");
    await page.getByLabel("Usuario", { exact: true }).fill("nadie");
    await page.getByLabel("Contraseña", { exact: true }).fill("x");
    await page.getByRole("button", { name: "Entrar", exact: true }).click();
    await page.locator("#login-error", {
      hasText: "Usuario o contraseña incorrectos.",
    }).waitFor();
    await page.getByLabel("Usuario", { exact: true }).fill("user0");
    await page.getByLabel("Contraseña", { exact: true }).fill("pass0");
    await page.getByRole("button", { name: "Entrar", exact: true }).click();
    // (The rule depends on the host asked for, so the page, which asks for
    // none, is told that browsing is not allowed from here for now.)
    await page.locator("#notice", { hasText: "Hola, user0. Por ahora, las" })
      .waitFor();
    assert.match(
      await page.locator("#usage").getAttribute("aria-valuetext") ?? "",
      /^Ha consumido .* de 1 GB \(\d+,\d %\)$/,
    );
    assert.equal(
      await page.getByRole("button", { name: "Cerrar sesión" }).isVisible(),
      true,
    );

    // The switch: English now, and remembered on the next visit.
    await page.getByRole("link", { name: "English", exact: true }).click();
    await page.locator("h2", { hasText: "You are logged in" }).waitFor();
    assert.equal(await page.locator("html").getAttribute("lang"), "en");
    await page.goto(`${apiUrl}/status`);
    await page.locator("#status").waitFor();
    assert.equal(await page.locator("h1").textContent(), "Internet access");
    assert.equal(
      await page.getByRole("link", { name: "English" }).getAttribute(
        "aria-current",
      ),
      "true",
    );
    await page.getByRole("link", { name: "Español", exact: true }).click();
    await page.getByRole("button", { name: "Cerrar sesión" }).click();
    await page.locator("#notice", { hasText: "Se cerró su sesión." })
      .waitFor();
  });
});

Deno.test("portal: Chromium configured by our PAC file sends the made-up names to the proxy", async () => {
  await withPortal("pac", async (portal) => {
    const { browser, errors, origin } = portal;
    const page = await newPage(browser, errors);
    // Only the proxy can answer for this name: Chromium could not resolve it.
    const wanted = "http://wanted.pac-test/page?via=pac";
    await refusedThenPortal(page, wanted);
    await submitLogin(page, "user0", "pass0");
    await page.waitForURL(wanted);
    assert.equal(await page.locator("h1").textContent(), "The wanted page");
    assert.equal(await page.locator("#host").textContent(), "wanted.pac-test");
    assert.ok(origin.hosts.includes("wanted.pac-test"));

    // pacDirect sends this one DIRECT: Chromium resolves it itself, fails,
    // and the proxy never sees it. (Asked by name: the wanted page's own
    // late requests, its icon say, may still reach the origin meanwhile.)
    await assert.rejects(
      () => page.goto("http://direct.pac-test/"),
      /ERR_NAME_NOT_RESOLVED/,
    );
    assert.ok(
      !origin.hosts.includes("direct.pac-test"),
      origin.hosts.join(" "),
    );
  });
});
