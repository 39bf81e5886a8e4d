/**
 * The login form without JavaScript (`POST /login`, `POST /logout`, the
 * login page rendered from the session cookie) and the pages' languages,
 * over the real HTTPS API with the in-test gateway: what a browser gets
 * on the wire (status, Location, Set-Cookie flags, the page).
 */
import assert from "node:assert/strict";
import { FakeGateway } from "./helpers/api_fake_gateway.ts";
import { startTestApi, type TestApi } from "./helpers/api_server.ts";
import { assets } from "../web/assets.ts";

const FORM = { "Content-Type": "application/x-www-form-urlencoded" };

async function withApi(
  fn: (t: TestApi, gateway: FakeGateway) => Promise<void>,
): Promise<void> {
  const gateway = new FakeGateway();
  const t = await startTestApi(gateway, { assets });
  try {
    await fn(t, gateway);
  } finally {
    await t.close();
  }
}

/** POSTs a form as a browser on our page does (Origin: ours). */
function postForm(
  t: TestApi,
  path: string,
  fields: Record<string, string>,
  headers: Record<string, string> = {},
) {
  return t.fetch(path, {
    method: "POST",
    headers: { ...FORM, Origin: t.origin, ...headers },
    body: new URLSearchParams(fields).toString(),
  });
}

/** The `name=value` of the session cookie a response sets. */
function sessionCookie(headers: Headers): string | undefined {
  const set = headers.getSetCookie().find((c) =>
    c.startsWith("__Host-pmproxy_session=")
  );
  return set?.split(";")[0];
}

Deno.test("api portal: a good login is 303 to the status page, next kept, with a locked-down cookie", async () => {
  await withApi(async (t, gateway) => {
    const next = "http://example.org/a?b=c&d=e";
    const res = await postForm(t, "/login", {
      user: "user0",
      pass: "pass0",
      sessionIPM: "sessions",
      next,
    });
    assert.equal(res.status, 303);
    const location = new URL(res.headers.get("location") ?? "", t.origin);
    assert.equal(location.pathname, "/status");
    assert.equal(location.searchParams.get("next"), next);
    assert.equal(location.searchParams.get("notice"), "welcome");
    assert.deepEqual(gateway.calls, ["open sessions user0"]);
    assert.equal(gateway.sessions.get("127.0.0.1")?.user, "user0");

    const set = res.headers.getSetCookie().find((c) =>
      c.startsWith("__Host-pmproxy_session=")
    );
    assert.ok(set, "the session cookie is set");
    const flags = set.split(";").slice(1).map((f) => f.trim().toLowerCase());
    assert.ok(flags.includes("httponly"), set);
    assert.ok(flags.includes("secure"), set);
    assert.ok(flags.includes("samesite=strict"), set);
    assert.ok(flags.includes("path=/"), set);
    assert.ok(!flags.some((f) => f.startsWith("domain=")), set);
    const secret = gateway.sessions.get("127.0.0.1")!.secret;
    assert.equal(
      decodeURIComponent(sessionCookie(res.headers)!.split("=")[1]),
      `sessions:${secret}`,
    );

    // The status page reads the cookie: the user and the consumption.
    gateway.consumption.user0 = 512 * 1024 ** 2;
    const status = await t.fetch(location.pathname + location.search, {
      headers: { Cookie: sessionCookie(res.headers)! },
    });
    assert.equal(status.status, 200);
    assert.match(status.headers.get("content-type") ?? "", /text\/html/);
    assert.equal(status.headers.get("cache-control"), "no-store");
    assert.match(status.text, /data-view="status"/);
    assert.match(status.text, /<dd id="st-user">user0<\/dd>/);
    assert.match(status.text, /512 MB of 1 GB used \(50\.0 %\)/);
    assert.match(status.text, /Welcome, user0\. You can browse now\./);
    // Straight back to the refused page.
    assert.match(
      status.text,
      /<meta http-equiv="refresh" content="0;url=http:\/\/example\.org\/a\?b=c&#38;d=e">/,
    );
  });
});

Deno.test("api portal: next must be an http(s) URL", async () => {
  await withApi(async (t) => {
    for (
      const [next, kept] of [
        ["https://example.org/x", "https://example.org/x"],
        ["http://10.0.0.1:8080/", "http://10.0.0.1:8080/"],
        ["javascript:alert(1)", null],
        ["JAVASCRIPT:alert(1)", null],
        ["data:text/html,<script>alert(1)</script>", null],
        ["//evil.example/", null],
        ["/status", null],
        ["ftp://example.org/", null],
        ["not a url", null],
      ] as const
    ) {
      const res = await postForm(t, "/login", {
        user: "user0",
        pass: "pass0",
        next,
      });
      assert.equal(res.status, 303, next);
      const location = new URL(res.headers.get("location")!, t.origin);
      assert.equal(location.searchParams.get("next"), kept, next);
    }
    // The page itself refuses to carry a bad one into the form.
    const page = await t.get(`/?next=${encodeURIComponent("javascript:x")}`);
    assert.match(page.text, /name="next" value=""/);
    assert.doesNotMatch(page.text, /javascript:x/);
    const good = await t.get(
      `/?next=${encodeURIComponent("http://a.example/")}`,
    );
    assert.match(good.text, /name="next" value="http:\/\/a\.example\/"/);
    assert.match(
      good.text,
      /After you log in you will go on to http:\/\/a\.example\//,
    );
  });
});

Deno.test("api portal: a refused login shows the form again with the error", async () => {
  await withApi(async (t, gateway) => {
    const wrong = await postForm(t, "/login", {
      user: "user0",
      pass: "nope",
      next: "http://example.org/",
    });
    assert.equal(wrong.status, 403);
    assert.match(wrong.headers.get("content-type") ?? "", /text\/html/);
    assert.match(
      wrong.text,
      /<p id="login-error"[^>]*>Incorrect user name or password\.<\/p>/,
    );
    assert.match(wrong.text, /name="user"\s+value="user0"/, "user kept");
    assert.match(wrong.text, /name="next" value="http:\/\/example\.org\/"/);
    assert.equal(sessionCookie(wrong.headers), undefined);

    const unknown = await postForm(t, "/login", { user: "nobody", pass: "x" });
    assert.equal(unknown.status, 403);
    // The same words as a wrong password: nobody learns who exists.
    assert.match(unknown.text, /Incorrect user name or password\./);

    const empty = await postForm(t, "/login", { user: "user0", pass: "" });
    assert.equal(empty.status, 400);
    assert.match(empty.text, /Enter your user name and password\./);

    const manager = await postForm(t, "/login", {
      user: "user0",
      pass: "pass0",
      sessionIPM: "down",
    });
    assert.equal(manager.status, 400);
    assert.match(manager.text, /no session manager &#34;down&#34;/);
    assert.equal(gateway.sessions.size, 0, "nothing was opened");

    // What a user typed is never markup.
    const markup = await postForm(t, "/login", {
      user: `<img src=x onerror=alert(1)>`,
      pass: "x",
    });
    assert.doesNotMatch(markup.text, /<img src=x/);
  });
});

Deno.test("api portal: login and logout posted from another site are refused", async () => {
  await withApi(async (t, gateway) => {
    const forged = await postForm(t, "/login", {
      user: "user0",
      pass: "pass0",
    }, { Origin: "https://evil.example" });
    assert.equal(forged.status, 403);
    assert.match(forged.text, /only be sent from this gateway&#39;s own pages/);
    assert.equal(gateway.sessions.size, 0);
    const fetched = await postForm(t, "/login", {
      user: "user0",
      pass: "pass0",
    }, { "Sec-Fetch-Site": "cross-site" });
    assert.equal(fetched.status, 403);
    const opaque = await postForm(t, "/login", {
      user: "user0",
      pass: "pass0",
    }, { Origin: "null" });
    assert.equal(opaque.status, 403);
    assert.equal(gateway.sessions.size, 0);

    const login = await postForm(t, "/login", { user: "user0", pass: "pass0" });
    const cookie = sessionCookie(login.headers)!;
    const logout = await postForm(t, "/logout", {}, {
      Origin: "https://evil.example",
      Cookie: cookie,
    });
    assert.equal(logout.status, 403);
    assert.equal(gateway.sessions.size, 1, "the session is still open");
    assert.equal(sessionCookie(logout.headers), undefined);

    // Without Origin (not a browser): the cookie alone decides.
    const curl = await t.fetch("/logout", {
      method: "POST",
      headers: { Cookie: cookie },
    });
    assert.equal(curl.status, 303);
    assert.equal(gateway.sessions.size, 0);
  });
});

Deno.test("api portal: logout closes the session and clears the cookie", async () => {
  await withApi(async (t, gateway) => {
    const login = await postForm(t, "/login", { user: "user0", pass: "pass0" });
    const cookie = sessionCookie(login.headers)!;
    const out = await postForm(t, "/logout", {}, { Cookie: cookie });
    assert.equal(out.status, 303);
    assert.equal(out.headers.get("location"), "/?notice=logged-out");
    assert.ok(gateway.calls.includes("close sessions"));
    assert.equal(gateway.sessions.size, 0);
    const cleared = out.headers.getSetCookie().find((c) =>
      c.startsWith("__Host-pmproxy_session=;")
    );
    assert.ok(cleared, "the cookie is cleared");
    assert.match(cleared, /Max-Age=0/);
    const page = await t.get("/?notice=logged-out");
    assert.match(page.text, /You are logged out\./);
    assert.match(page.text, /data-view="login"/);

    // A cookie whose session ended elsewhere: logged out all the same.
    const again = await postForm(t, "/logout", {}, { Cookie: cookie });
    assert.equal(again.headers.get("location"), "/?notice=already-ended");
    // The page with that stale cookie shows the form and why.
    const stale = await t.fetch("/status", { headers: { Cookie: cookie } });
    assert.match(stale.text, /data-view="login"/);
    assert.match(stale.text, /session at this address has ended/);
    assert.ok(
      stale.headers.getSetCookie().some((c) =>
        c.startsWith("__Host-pmproxy_session=;")
      ),
    );
    // No cookie at all: back to the form.
    const none = await postForm(t, "/logout", {});
    assert.equal(none.status, 303);
    assert.equal(none.headers.get("location"), "/");
  });
});

Deno.test("api portal: an expired secret in the cookie is renewed, as app.js does", async () => {
  await withApi(async (t, gateway) => {
    const login = await postForm(t, "/login", { user: "user0", pass: "pass0" });
    const cookie = sessionCookie(login.headers)!;
    gateway.sessions.get("127.0.0.1")!.expires = Date.now() - 1;
    gateway.calls.length = 0;
    const page = await t.fetch("/status", { headers: { Cookie: cookie } });
    assert.match(page.text, /<dd id="st-user">user0<\/dd>/);
    assert.ok(gateway.calls.includes("renew sessions"));
    const renewed = sessionCookie(page.headers);
    assert.ok(renewed && renewed !== cookie, "a new secret in the cookie");
    assert.equal(
      decodeURIComponent(renewed.split("=")[1]),
      `sessions:${gateway.sessions.get("127.0.0.1")!.secret}`,
    );
  });
});

Deno.test("api portal: the language is ?lang=, then the remembered one, then Accept-Language", async () => {
  await withApi(async (t) => {
    const es = await t.fetch("/", {
      headers: { "Accept-Language": "es-CU,es;q=0.9,en;q=0.8" },
    });
    assert.match(es.text, /<html lang="es">/);
    assert.match(es.text, /<h1>Acceso a Internet<\/h1>/);
    assert.equal(es.headers.get("content-language"), "es");
    assert.match(es.headers.get("vary") ?? "", /Accept-Language/);

    const weighted = await t.fetch("/", {
      headers: { "Accept-Language": "fr;q=1, en;q=0.5, es;q=0.7" },
    });
    assert.match(weighted.text, /<html lang="es">/);
    const unknown = await t.fetch("/", {
      headers: { "Accept-Language": "fr, de" },
    });
    assert.match(unknown.text, /<html lang="en">/);

    // The switch: ?lang= answers in that language and remembers it.
    const switched = await t.fetch("/?lang=en&next=http%3A%2F%2Fa.example%2F", {
      headers: { "Accept-Language": "es" },
    });
    assert.match(switched.text, /<html lang="en">/);
    const remember = switched.headers.getSetCookie().find((c) =>
      c.startsWith("pmproxy_lang=en")
    );
    assert.ok(remember, "the choice is remembered");
    // Its links keep the other parameters.
    assert.match(
      switched.text,
      /href="\?lang=es&#38;next=http%3A%2F%2Fa\.example%2F"|href="\?next=http%3A%2F%2Fa\.example%2F&#38;lang=es"/,
    );
    const later = await t.fetch("/admin", {
      headers: { "Accept-Language": "es", Cookie: remember.split(";")[0] },
    });
    assert.match(later.text, /<html lang="en">/);
    assert.match(later.text, /<h1>Administration<\/h1>/);
    const ignored = await t.fetch("/?lang=xx", {
      headers: { "Accept-Language": "es" },
    });
    assert.match(ignored.text, /<html lang="es">/);
    assert.equal(
      ignored.headers.getSetCookie().some((c) => c.startsWith("pmproxy_lang")),
      false,
    );
  });
});
