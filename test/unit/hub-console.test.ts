/**
 * The web console's HTTP layer, called through createHubApi's fetch (no socket, no browser) over
 * a real hub home: who may see what, the session cookie, CSRF and the same-origin check, the
 * security headers on every kind of answer, pages without inline code, escaping of everything
 * a thing supplies, token rotation, sending, the range zip and the live feed.
 */

import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createPublicKey } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unzipSync } from "fflate";
import type { HubBroker } from "../../src/hub/broker/broker.ts";
import { MAX_LIVE_VIEWS, MAX_UNREAD_BYTES } from "../../src/hub/console/events.ts";
import { escapeHtml, html } from "../../src/hub/console/html.ts";
import { ConsoleSessions } from "../../src/hub/console/sessions.ts";
import type { HubHome } from "../../src/hub/home/home.ts";
import { initHub } from "../../src/hub/home/init.ts";
import { createHubApi, type HubApi } from "../../src/hub/http/routes.ts";
import { type HubUseCases, hubUseCases } from "../../src/hub/hub.ts";
import { ingressLedger } from "../../src/hub/messages/ingress-delivery.ts";
import type { HubStore, ThingRecord } from "../../src/hub/store/hub-store.ts";
import { openHubStore } from "../../src/hub/store/open-store.ts";
import { FlashlexError } from "../../src/shared/errors.ts";
import { silentLogger } from "../../src/shared/log.ts";

const OWNER = "ecd13b11-6d91-4e8e-9156-60e451a3c975";
const BASE = "http://hub.example:8080";
const EVIL = '<script>alert("owned")</script><img src=x onerror=alert(1)>';

let dir: string;
let home: HubHome;
let store: HubStore;
let hub: HubUseCases;
let api: HubApi;
let token: string;
let thing: ThingRecord;
let clock = Date.now();
let sessions: ConsoleSessions;
const online = new Set<string>();
const broker: HubBroker = {
  url: "mqtts://test:8883",
  tracksDelivery: true,
  async publish() {},
  async sendIngress() {},
  isConnected: (name) => online.has(name),
  async close() {},
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "flashlex-hub-console-"));
  const init = await initHub({ dir: join(dir, "hub"), ownerId: OWNER, apiUrl: "http://hub.example:8080", names: ["hub.example"] });
  home = init.home;
  token = init.token;
  store = await openHubStore(home.paths.database);
  hub = hubUseCases({ home, store, log: silentLogger, broker });
  sessions = new ConsoleSessions(store, { now: () => clock, idleMs: 60_000 });
  api = createHubApi({ ...hub, log: silentLogger, consoleSessions: sessions });
  thing = (await hub.things.create("pump")).thing;
});

afterAll(async () => {
  api.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

// --- a browser, by hand

interface Browser {
  cookie: string;
  csrf: string;
}

function get(path: string, browser?: Browser, headers: Record<string, string> = {}): Promise<Response> {
  return api.fetch(new Request(`${BASE}${path}`, { headers: { ...(browser ? { Cookie: browser.cookie } : {}), ...headers } }));
}

function post(path: string, fields: Record<string, string>, browser?: Browser, headers: Record<string, string> = {}): Promise<Response> {
  return api.fetch(
    new Request(`${BASE}${path}`, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded", ...(browser ? { Cookie: browser.cookie } : {}), ...headers },
      body: new URLSearchParams(fields),
    }),
  );
}

const cookieOf = (response: Response) => response.headers.get("set-cookie")?.split(";")[0] ?? "";

/**
 * A console over the hub's store whose `write` fails as a full disk does once `fill()` is called,
 * signed in before that: its API and the sign-in's cookie.
 */
async function consoleOnDisk(write: "touchConsoleSession" | "addConsoleSession"): Promise<{ api: HubApi; cookie: string; fill(): void }> {
  let full = false;
  const failing: HubStore = {
    ...store,
    [write]: (...args: never[]) =>
      full
        ? Promise.reject(new FlashlexError("hub.db: cannot write: the file system is full", "full"))
        : (store[write] as (...a: never[]) => Promise<void>)(...args),
  };
  const consoleApi = createHubApi({ ...hub, log: silentLogger, consoleSessions: new ConsoleSessions(failing, { now: () => clock, idleMs: 60_000 }) });
  const signedIn = await consoleApi.fetch(
    new Request(`${BASE}/signin`, { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ token }) }),
  );
  return { api: consoleApi, cookie: cookieOf(signedIn), fill: () => (full = true) };
}

async function signIn(with_ = token): Promise<Browser> {
  const response = await post("/signin", { token: with_ });
  expect(response.status).toBe(303);
  const cookie = cookieOf(response);
  const page = await (await get("/things", { cookie, csrf: "" })).text();
  return { cookie, csrf: /name="csrf-token" content="([^"]+)"/.exec(page)![1]! };
}

/** The pages a signed-in browser can open, for the checks every page must pass. */
const pages = () => ["/things", `/things/${thing.id}`, `/things/${thing.id}/send`, `/things/${thing.id}/messages`, "/messages", "/token"];

describe("signed out", () => {
  test("every page sends the browser to sign in; changes and the live view are refused", async () => {
    expect((await get("/")).headers.get("location")).toBe("/signin");
    for (const path of [...pages(), "/nowhere"]) {
      const response = await get(path);
      expect([path, response.status, response.headers.get("location")]).toEqual([path, 303, "/signin"]);
    }
    expect((await post("/things", { name: "sneaky" })).status).toBe(401);
    // a method a page does not take: 405 saying so, not an empty answer
    const wrongMethod = await post("/", {});
    expect([wrongMethod.status, wrongMethod.headers.get("allow"), await wrongMethod.text()]).toEqual([
      405,
      "GET, HEAD",
      "POST is not allowed on / (allowed: GET, HEAD)",
    ]);
    expect((await get("/events")).status).toBe(401);
    expect((await get(`/things/${thing.id}/distribution.zip`, undefined, { Accept: "application/json" })).status).toBe(401);
    expect(await hub.things.find("sneaky")).toBeUndefined();
    const signIn = await get("/signin");
    expect(signIn.status).toBe(200);
    expect(await signIn.text()).toContain('<input id="token" name="token" type="password"');
  });

  test("a wrong token is refused without a cookie; the right one gets an HttpOnly, SameSite=Strict cookie", async () => {
    const wrong = await post("/signin", { token: "not-it" });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get("set-cookie")).toBeNull();
    expect(await wrong.text()).toContain("not the hub&#39;s access token");
    const right = await post("/signin", { token });
    expect(right.headers.get("location")).toBe("/things");
    const cookie = right.headers.get("set-cookie")!;
    expect(cookie).toMatch(/^flashlex_session=[\w-]{43}; Path=\/; HttpOnly; SameSite=Strict$/);
    expect(cookie).not.toContain(token);
  });

  test("over HTTPS the cookie is Secure with the __Host- prefix, and a plain-HTTP cookie name is not read", async () => {
    const response = await api.fetch(
      new Request("https://hub.example:8443/signin", {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ token }),
      }),
    );
    const cookie = response.headers.get("set-cookie")!;
    expect(cookie).toMatch(/^__Host-flashlex_session=[\w-]{43}; Path=\/; HttpOnly; SameSite=Strict; Secure$/);
    const id = cookie.split(";")[0]!.split("=")[1]!;
    const secure = await api.fetch(new Request("https://hub.example:8443/things", { headers: { Cookie: `__Host-flashlex_session=${id}` } }));
    expect(secure.status).toBe(200);
    const downgraded = await api.fetch(new Request("https://hub.example:8443/things", { headers: { Cookie: `flashlex_session=${id}` } }));
    expect(downgraded.status).toBe(303);
  });
});

describe("headers and markup", () => {
  test("every answer carries the CSP, nosniff, frame and referrer headers; pages are never cached", async () => {
    const browser = await signIn();
    const answers = [
      ...(await Promise.all(pages().map((p) => get(p, browser)))),
      await get("/signin"),
      await get("/things"), // a redirect
      await get("/nowhere", browser), // a 404 page
      await post("/things", { name: "x" }, browser), // a refused change
    ];
    for (const response of answers) {
      const csp = response.headers.get("content-security-policy")!;
      expect(csp).toContain("default-src 'self'");
      expect(csp).toContain("script-src 'self'");
      expect(csp).toContain("style-src 'self'");
      expect(csp).toContain("frame-ancestors 'none'");
      expect(csp).not.toContain("unsafe");
      expect(response.headers.get("x-content-type-options")).toBe("nosniff");
      expect(response.headers.get("x-frame-options")).toBe("DENY");
      expect(response.headers.get("referrer-policy")).toBe("same-origin");
      expect(response.headers.get("cache-control")).toBe("no-store");
    }
  });

  test("pages have no inline script, style or event handler; the assets are the hub's own, hashed and small", async () => {
    const browser = await signIn();
    let assets: string[] = [];
    for (const path of pages()) {
      const page = await (await get(path, browser)).text();
      expect(page).not.toMatch(/<script(?![^>]*\bsrc=)/);
      expect(page).not.toMatch(/<style|\sstyle=|\son[a-z]+=/i);
      expect(page).not.toMatch(/(?:src|href)="(?:https?:)?\/\//); // nothing from another host: no CDN, no font
      assets = [...page.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]!);
    }
    expect(assets).toHaveLength(2);
    for (const path of assets) {
      const response = await get(path);
      expect(response.status).toBe(200);
      expect(response.headers.get("cache-control")).toContain("immutable");
      expect(response.headers.get("x-content-type-options")).toBe("nosniff");
      const body = await response.text();
      expect(body.length).toBeLessThan(100 * 1024);
      expect(body).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
    }
    expect((await get("/assets/console-0000000000.js")).status).toBe(404);
  });
});

describe("CSRF and the same-origin check", () => {
  test("a change without the session's CSRF token, or with another's, does nothing", async () => {
    const browser = await signIn();
    const other = await signIn();
    for (const csrf of [undefined, "", "forged", other.csrf]) {
      const response = await post("/things", { name: "csrf-victim", ...(csrf === undefined ? {} : { csrf }) }, browser);
      expect(response.status).toBe(403);
    }
    expect((await post(`/things/${thing.id}/revoke`, {}, browser)).status).toBe(403);
    expect((await post("/token", {}, browser)).status).toBe(403);
    expect(await hub.things.find("csrf-victim")).toBeUndefined();
    expect((await hub.things.get(thing.id))!.revokedAt).toBeNull();
    expect(await hub.operators.verify(token)).toBe(true);
  });

  test("the token in a header or the form field passes; another site's page is refused even with it", async () => {
    const browser = await signIn();
    const viaHeader = await post("/things", { name: "by-header" }, browser, { "X-CSRF-Token": browser.csrf });
    expect(viaHeader.status).toBe(303);
    expect(viaHeader.headers.get("location")).toMatch(/^\/things\/[0-9a-f-]{36}$/);
    const crossSite: Record<string, string>[] = [
      { Origin: "https://evil.example" },
      { Origin: "null" },
      { "Sec-Fetch-Site": "cross-site" },
      { "Sec-Fetch-Site": "same-site", Origin: BASE }, // a sibling host: not the hub
    ];
    for (const headers of crossSite) {
      const response = await post("/things", { name: "cross-site", csrf: browser.csrf }, browser, headers);
      expect(response.status).toBe(403);
    }
    expect(await hub.things.find("cross-site")).toBeUndefined();
    // login CSRF: another site cannot sign a browser in with its own token
    expect((await post("/signin", { token }, undefined, { Origin: "https://evil.example" })).status).toBe(403);
    const sameOrigin = await post("/things", { name: "same-origin", csrf: browser.csrf }, browser, { Origin: BASE, "Sec-Fetch-Site": "same-origin" });
    expect(sameOrigin.status).toBe(303);
    await hub.things.delete((await hub.things.find("by-header"))!);
    await hub.things.delete((await hub.things.find("same-origin"))!);
  });

  test("a change must be a form: JSON and other bodies are refused", async () => {
    const browser = await signIn();
    const response = await api.fetch(
      new Request(`${BASE}/things`, {
        method: "POST",
        headers: { Cookie: browser.cookie, "Content-Type": "application/json", "X-CSRF-Token": browser.csrf },
        body: '{"name":"j"}',
      }),
    );
    expect(response.status).toBe(415);
    // a field given twice is refused, not read as its first value
    const twice = await api.fetch(
      new Request(`${BASE}/things`, {
        method: "POST",
        headers: { Cookie: browser.cookie, "Content-Type": "application/x-www-form-urlencoded", "X-CSRF-Token": browser.csrf },
        body: "name=c8&name=c9",
      }),
    );
    expect([twice.status, (await twice.text()).includes("is given more than once")]).toEqual([400, true]);
    expect(await hub.things.find("c8")).toBeUndefined();
  });

  test("a POST with a query parameter or a form field its form does not take is a 400 and does nothing, as the API answers (attack round 27, F3: delete?dryRun=true deleted, keytype=ec made an RSA thing)", async () => {
    const browser = await signIn();
    const form = (path: string, body: string) =>
      api.fetch(
        new Request(`${BASE}${path}`, {
          method: "POST",
          headers: { Cookie: browser.cookie, "Content-Type": "application/x-www-form-urlencoded", "X-CSRF-Token": browser.csrf },
          body,
        }),
      );
    const target = (await hub.things.create("dry-run-target")).thing;
    const refusals: [string, string, string][] = [
      [`/things/${target.id}/delete?dryRun=true`, "", 'This form takes no query parameters (it was given "dryRun"); nothing was done.'],
      [`/things/${target.id}/delete`, "dryRun=true", 'The form field "dryRun" is not one this form takes (csrf); nothing was done.'],
      ["/things", "name=cs13&keytype=ec", 'The form field "keytype" is not one this form takes (csrf, name, keyType); nothing was done.'],
    ];
    for (const [path, body, said] of refusals) {
      const answer = await form(path, body);
      // the page escapes the quotes
      expect({ path, status: answer.status, said: (await answer.text()).includes(said.replaceAll('"', "&quot;")) }).toEqual({ path, status: 400, said: true });
    }
    expect(await hub.things.find("dry-run-target")).toBeDefined();
    expect(await hub.things.find("cs13")).toBeUndefined();
    // what the console's own forms send still works
    expect((await form("/things", "name=cs14&keyType=ec")).status).toBe(303);
    const made = (await hub.things.find("cs14"))!;
    expect(createPublicKey(made.publicKeyPem).asymmetricKeyType).toBe("ec");
    for (const thing of [target, made]) expect((await form(`/things/${thing.id}/delete`, "")).status).toBe(303);
    expect(await hub.things.find("dry-run-target")).toBeUndefined();
  });

  test("forms are read in bounds: sign-in, read before anyone is known, takes 8 KiB; a message's form 200,000 fields with the repeat last (each field was compared with every other: one anonymous sign-in froze the hub for minutes)", async () => {
    const big = await post("/signin", { token: "x".repeat(9 * 1024) });
    expect([big.status, (await big.text()).includes("this form is at most 8192 bytes")]).toEqual([413, true]);
    const browser = await signIn();
    const fields = Array.from({ length: 200_000 }, (_, i) => `f${i}=`).join("&");
    const repeated = await api.fetch(
      new Request(`${BASE}/things/${thing.id}/send`, {
        method: "POST",
        headers: { Cookie: browser.cookie, "Content-Type": "application/x-www-form-urlencoded", "X-CSRF-Token": browser.csrf },
        body: `${fields}&f0=`,
      }),
    );
    expect([repeated.status, /The form field \S*f0\S* is given more than once/.test(await repeated.text())]).toEqual([400, true]);
  }, 5_000);
});

describe("escaping", () => {
  test("the template escapes values and keeps its own markup", () => {
    expect(escapeHtml(`<a href="x" onclick='y'>&\``)).toBe("&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&#96;");
    expect(html`<p title="${'"><script>'}">${["<b>", html`<i>ok</i>`, null, false, 3]}</p>`.text).toBe(
      '<p title="&quot;&gt;&lt;script&gt;">&lt;b&gt;<i>ok</i>3</p>',
    );
  });

  test("a payload holding <script> is shown as text on every page that shows it, and in the live feed", async () => {
    const browser = await signIn();
    const collected = await hub.collector.store(thing, undefined, JSON.stringify({ note: EVIL }));
    await hub.messages.send(thing, { note: EVIL });
    for (const path of [`/things/${thing.id}/messages`, "/messages", `/things/${thing.id}/send`]) {
      const page = await (await get(path, browser)).text();
      expect(page).not.toContain("<script>alert");
      expect(page).not.toContain("<img src=x");
      expect(page).toContain("&lt;script&gt;alert(\\&quot;owned\\&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;");
    }
    expect(collected.inserted).toBe(true);
    // what the filter box echoes back is escaped too
    const filtered = await (await get(`/things?q=${encodeURIComponent('"><script>x</script>')}`, browser)).text();
    expect(filtered).toContain('value="&quot;&gt;&lt;script&gt;x&lt;/script&gt;"');
  });
});

describe("pages", () => {
  test("a thing's messages page says how long the hub keeps messages (hub.yml messages.keepFor), or that it keeps every one", async () => {
    const browser = await signIn();
    const path = `/things/${thing.id}/messages`;
    expect(await (await get(path, browser)).text()).toContain("The hub keeps every message (no <code>messages.keepFor</code> in hub.yml).");
    home.settings.messages = { keepFor: "365d" };
    try {
      expect(await (await get(path, browser)).text()).toContain(
        "The hub keeps messages for 365d (<code>messages.keepFor</code> in hub.yml); older ones are deleted.",
      );
    } finally {
      delete home.settings.messages;
    }
  });

  test("Things pages through many things with a name filter", async () => {
    for (let i = 0; i < 60; i++) {
      await store.insertThing({
        ...thing,
        id: `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`,
        name: `ecd13b11-bulk-${i}`,
        certSerial: `B${i}`,
        createdAt: 1 + i,
      });
    }
    const browser = await signIn();
    const first = await (await get("/things", browser)).text();
    expect(first).toContain("1–50 of 61");
    expect(first).toContain('href="/things?page=2" rel="next"');
    const second = await (await get("/things?page=2", browser)).text();
    expect(second).toContain("51–61 of 61");
    expect(second).toContain("ecd13b11-pump");
    const filtered = await (await get("/things?q=bulk-5", browser)).text();
    expect(filtered).toContain("1–11 of 11");
    // past the last page: said so, with the way back, never "No things yet"
    const past = await (await get("/things?page=9", browser)).text();
    expect(past).toContain("Page 9 is past the last page (2)");
    expect(past).not.toContain("No things yet");
    for (let i = 0; i < 60; i++) await store.deleteThing(`00000000-0000-4000-8000-${String(i).padStart(12, "0")}`);
  });

  test("a page number or a filter out of bounds is a plain 400 naming it, never a 500", async () => {
    const browser = await signIn();
    for (const page of ["1e20", "1e300", "abc", "-1", "0", "1.5", "99999999999999999999"]) {
      const answer = await get(`/things?page=${page}`, browser);
      expect(answer.status, page).toBe(400);
      expect(await answer.text()).toContain("page must be a whole number from 1 to 1000000");
    }
    // past the last page: an empty page, not an error
    expect((await get("/things?page=1000000", browser)).status).toBe(200);
    const long = await get(`/things?q=${"a".repeat(9000)}`, browser);
    expect(long.status).toBe(400);
    expect(await long.text()).toContain("The name filter (q) is at most 200 characters; this one has 9000.");
    expect((await get(`/things?q=${"a".repeat(200)}`, browser)).status).toBe(200);
    // a filter, a range or a thing given twice is said so, as page is, not the first one taken
    for (const path of [
      "/things?q=a&q=b",
      `/things/${thing.id}/archive?from=2026-01-01T00:00&from=2026-01-02T00:00&to=2026-01-03T00:00`,
      `/events?thing=${thing.id}&thing=${thing.id}`,
    ]) {
      const twice = await get(path, browser);
      expect([path, twice.status]).toEqual([path, 400]);
      expect(await twice.text()).toContain("is given 2 times; give it once");
    }
    // an empty thing is no thing: it opened every thing's stream (attack round 24, F7)
    const empty = await get("/events?thing=", browser);
    expect(empty.status).toBe(400);
    expect(await empty.text()).toContain("thing is given empty");
    // a control character is in no thing's name: NUL matched every thing and came back raw in the page
    const nul = await get("/things?q=%00", browser);
    expect(nul.status).toBe(400);
    expect(await nul.text()).not.toContain("\u0000");
    expect((await get("/things?q=", browser)).status).toBe(200); // the cleared filter box
    // nothing from a link is echoed as a notice: any words fitting a name's characters were shown
    // on the hub's own page ("Deleted Hub_compromised-call_support_555-0100 ...")
    expect(await (await get("/things?deleted=Hub_compromised-call_support_555-0100", browser)).text()).not.toContain("Deleted Hub_compromised");
    // the notice is the session's own delete, shown once, to that session only
    const other = await signIn();
    const doomed = (await hub.things.create("doomed")).thing;
    const gone = await post(`/things/${doomed.id}/delete`, { csrf: browser.csrf }, browser);
    expect(gone.headers.get("location")).toBe("/things");
    expect(await (await get("/things", other)).text()).not.toContain(`Deleted ${doomed.name}`);
    expect(await (await get("/things", browser)).text()).toContain(`Deleted ${doomed.name}, its messages and its distribution.`);
    expect(await (await get("/things", browser)).text()).not.toContain(`Deleted ${doomed.name}`);
    // a link naming a thing that is not revoked, or one not just made, says nothing of the kind
    expect(await (await get(`/things/${thing.id}?revoked=1`, browser)).text()).not.toContain(`Revoked ${thing.name}`);
    expect(await (await get(`/things/${thing.id}?created=1`, browser)).text()).not.toContain(`Created ${thing.name}`);
    expect((await get(`/things/${thing.id}`, browser)).status).toBe(200);
    // the session's own create and revoke are told once, on that thing's page only
    const made = await post("/things", { name: "told-once", csrf: browser.csrf }, browser);
    const page = made.headers.get("location")!;
    expect(await (await get("/things", browser)).text()).not.toContain("Created ");
    expect(await (await get(page, other)).text()).not.toContain("Created ");
    expect(await (await get(page, browser)).text()).toContain("-told-once. Download its distribution below");
    expect(await (await get(page, browser)).text()).not.toContain("Created ");
    await post(`${page}/revoke`, { csrf: browser.csrf }, browser);
    expect(await (await get(page, browser)).text()).toMatch(/Revoked [0-9a-f]{8}-told-once\./);
  });

  test("an enrolled thing's page offers no zip and no cURL line, and its zip's 404 says why", async () => {
    const enrolled = { ...thing, id: "00000000-0000-4000-8000-00000000e001", name: "ecd13b11-selfmade", certSerial: "E1", enrolledWith: "abc" };
    await store.insertThing(enrolled);
    const browser = await signIn();
    const page = await (await get(`/things/${enrolled.id}`, browser)).text();
    expect(page).not.toContain("distribution.zip");
    expect(page).not.toContain("curl -fo");
    expect(page).not.toContain("one-time cURL line");
    expect(page).toContain("No distribution to download: it enrolled itself: its key never left the device.");
    const zip = await get(`/things/${enrolled.id}/distribution.zip`, browser);
    expect(zip.status).toBe(404);
    const text = await zip.text();
    expect(text).toContain("it enrolled itself");
    expect(text).not.toContain("revoked");
    await store.deleteThing(enrolled.id);
  });

  test("a thing whose zip cannot be read (a dists/ entry an older root run left): its page still shows, without the cURL line; the download is an error, not a zip", async () => {
    const odd = (await hub.things.create("unreadable-zip")).thing;
    const zipPath = join(home.paths.dists, `${odd.id}.zip`);
    rmSync(zipPath);
    mkdirSync(zipPath); // reading it fails (EISDIR), as an unreadable one does (EACCES)
    try {
      const browser = await signIn();
      const page = await get(`/things/${odd.id}`, browser);
      expect(page.status).toBe(200);
      const text = await page.text();
      expect(text).not.toContain("curl -fo");
      expect(text).toContain("No distribution to download: its zip could not be read (the hub log says why).");
      const zip = await get(`/things/${odd.id}/distribution.zip`, browser);
      expect(zip.status).toBeGreaterThanOrEqual(500);
      expect(zip.headers.get("content-type")).not.toBe("application/zip");
    } finally {
      rmSync(zipPath, { recursive: true, force: true });
      await hub.things.delete(odd);
    }
  });

  test("a thing's page has its facts, the chart, the distribution link and a button for a one-time cURL line", async () => {
    online.add(thing.name);
    const browser = await signIn();
    expect(await (await get(`/things/${thing.id}`, browser)).text()).toContain("version not reported yet");
    // what the agent said of itself when it last asked for updates (the updates use case), escaped
    hub.updates.poll(thing, { version: "1.2.3<b>", target: "linux-arm64" });
    const page = await (await get(`/things/${thing.id}`, browser)).text();
    expect(page).toContain("<dt>Agent</dt><dd>flashlex 1.2.3&lt;b&gt; (linux-arm64)</dd>");
    online.delete(thing.name);
    expect(page).toContain(`<code>${thing.id}</code>`);
    expect(page).toContain('<span class="badge connected">connected</span>');
    expect(page).toContain(`<code>ingress/${thing.name}</code>`);
    expect(page).toContain('<svg viewBox="0 0 480 140" role="img"');
    expect(page).toContain(`<form method="post" action="/things/${thing.id}/download-line">`);
    // never the operator's token: a line copied onto a board would hold admin over the hub
    expect(page).not.toContain(token);
    expect(page).not.toContain("curl -fo");
    const zip = await get(`/things/${thing.id}/distribution.zip`, browser);
    expect(zip.status).toBe(200);
    expect(zip.headers.get("content-disposition")).toBe(`attachment; filename="${thing.name}.zip"`);
    expect(Object.keys(unzipSync(new Uint8Array(await zip.arrayBuffer())))).toContain(`${thing.name}/config.yml`);
    expect((await get(`/things/not-a-thing`, browser)).status).toBe(404);
  });

  test("the one-time cURL line: made by the button (CSRF checked), shown on the next view only, good for this thing's zip once", async () => {
    const browser = await signIn();
    expect((await post(`/things/${thing.id}/download-line`, { csrf: "forged" }, browser)).status).toBe(403);
    const downloadTokens = () => {
      const db = new Database(home.paths.database, { readonly: true });
      try {
        return db.query<{ n: number }, []>("SELECT count(*) AS n FROM download_tokens").get()!.n;
      } finally {
        db.close();
      }
    };
    const before = downloadTokens();
    const made = await post(`/things/${thing.id}/download-line`, { csrf: browser.csrf }, browser);
    expect([made.status, made.headers.get("location")]).toEqual([303, `/things/${thing.id}#sdk`]);
    // pressed twice before the page shows (a double click): one line, one token (attack round 25, F1)
    expect((await post(`/things/${thing.id}/download-line`, { csrf: browser.csrf }, browser)).status).toBe(303);
    expect(downloadTokens()).toBe(before + 1);
    // a HEAD first (a link checker, curl -I) leaves it for the view: it used it up, and the line was seen nowhere (attack round 25, F1)
    const head = await api.fetch(new Request(`${BASE}/things/${thing.id}`, { method: "HEAD", headers: { Cookie: browser.cookie } }));
    expect(head.status).toBe(200);
    const page = await (await get(`/things/${thing.id}`, browser)).text();
    const line = /<pre id="curl-line"><code>(.*?)<\/code><\/pre>/.exec(page)?.[1]?.replaceAll("&quot;", '"').replaceAll("&#39;", "'").replaceAll("&amp;", "&");
    expect(line).toMatch(
      new RegExp(
        `^\\(umask 077; echo 'Authorization: Bearer flxd_[\\w-]{43}' \\| curl -fo ${thing.name}\\.zip\\.part -H @- http://hub\\.example:8080/dev/v1/things/${thing.id}/dist && mv -f ${thing.name}\\.zip\\.part ${thing.name}\\.zip \\|\\| \\(echo '[^']+'; exit 1\\)\\)$`,
      ),
    );
    expect(page).not.toContain(token);
    expect(await (await get(`/things/${thing.id}`, browser)).text()).not.toContain("curl-line");
    const bearer = /(flxd_[\w-]+)/.exec(line!)![1]!;
    const fetchZip = () => api.fetch(new Request(`http://hub.example:8080/dev/v1/things/${thing.id}/dist`, { headers: { Authorization: `Bearer ${bearer}` } }));
    expect((await fetchZip()).status).toBe(200);
    expect((await fetchZip()).status).toBe(401);
    // a revoked or enrolled thing has no zip: no line is made, and the page says why
    const enrolled = { ...thing, id: "00000000-0000-4000-8000-00000000e002", name: "ecd13b11-selfmade2", certSerial: "E2", enrolledWith: "abc" };
    await store.insertThing(enrolled);
    const refused = await post(`/things/${enrolled.id}/download-line`, { csrf: browser.csrf }, browser, { Accept: "application/json" });
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as any).error).toContain("has no distribution to download: it enrolled itself");
    await store.deleteThing(enrolled.id);
  });

  test("Send Message: JSON refused before the use case runs; a valid document is sent as pending", async () => {
    const browser = await signIn();
    const send = (message: string) => post(`/things/${thing.id}/send`, { message, csrf: browser.csrf }, browser, { Accept: "application/json" });
    const bad = await send("{not json");
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as any).error).toContain("JSON");
    const ok = await send('{"valve": "open"}');
    expect(ok.status).toBe(200);
    const answer = (await ok.json()) as any;
    expect(answer.message).toMatchObject({ type: "ingress", delivery: "pending", payload: '{\n  "valve": "open"\n}' });
    expect(answer.online).toBe(false);
    // without the script: the form posts and comes back to the page
    const plain = await post(`/things/${thing.id}/send`, { message: '{"n": 1}', csrf: browser.csrf }, browser);
    expect(plain.status).toBe(303);
    // bytes that are not UTF-8, percent-encoded or raw: refused as the API refuses them (they were sent as U+FFFD)
    const before = (await hub.messages.latest({ thing, limit: 1000 })).length;
    for (const body of [
      `message=%FF&csrf=${browser.csrf}`,
      Buffer.concat([Buffer.from("message="), Buffer.from([0xff]), Buffer.from(`&csrf=${browser.csrf}`)]),
    ]) {
      const answer = await api.fetch(
        new Request(`${BASE}/things/${thing.id}/send`, {
          method: "POST",
          headers: { "Content-Type": "application/x-www-form-urlencoded", Cookie: browser.cookie },
          body,
        }),
      );
      expect(answer.status).toBe(400);
      expect(await answer.text()).toContain("not UTF-8 text");
    }
    expect((await hub.messages.latest({ thing, limit: 1000 })).length).toBe(before);
    const refused = await post(`/things/${thing.id}/send`, { message: "[", csrf: browser.csrf }, browser);
    expect(refused.status).toBe(400);
    expect(await refused.text()).toContain(
      '<textarea id="message" name="message" rows="8" spellcheck="false" required aria-describedby="message-status">[</textarea>',
    );
  });

  test("Send Message takes what the API takes: a pretty-printed message near the limit, line breaks as a browser sends them (CR LF)", async () => {
    const browser = await signIn();
    const readings = Array.from({ length: 3300 }, (_, i) => ({ sensor: `temp-${i}`, value: i + 0.5, unit: "C", ok: true, tags: ["a", "b"] }));
    expect(JSON.stringify(readings).length).toBeLessThan(256 * 1024);
    const written = JSON.stringify(readings, null, 4).replaceAll("\n", "\r\n");
    expect(written.length).toBeGreaterThan(2 * 256 * 1024);
    const sent = await post(`/things/${thing.id}/send`, { message: written, csrf: browser.csrf }, browser, { Accept: "application/json" });
    expect(sent.status).toBe(200);
  });

  test("the range zip holds one <flmessagespk>.json per message in the range", async () => {
    const browser = await signIn();
    const fresh = (await hub.things.create("ranged")).thing;
    const now = Math.floor(Date.now() / 1000);
    for (const [id, ts] of [
      ["11111111-1111-4111-8111-111111111111", now - 7200],
      ["22222222-2222-4222-8222-222222222222", now - 60],
    ] as const) {
      await store.insertMessage({ flmessagespk: id, thingId: fresh.id, messagetype: "egress", payload: '{"x":1}', fltimestamp: ts, datecreated: "x" });
    }
    const minute = (s: number) => new Date(s * 1000).toISOString().slice(0, 16);
    const response = await get(`/things/${fresh.id}/archive?from=${minute(now - 3600)}&to=${minute(now)}&type=egress`, browser);
    expect(response.status).toBe(200);
    const files = Object.keys(unzipSync(new Uint8Array(await response.arrayBuffer()))).filter((f) => f.endsWith(".json"));
    expect(files.map((f) => f.split("/").pop())).toStrictEqual(["22222222-2222-4222-8222-222222222222.json"]);
    expect((await get(`/things/${fresh.id}/archive?from=yesterday&to=${minute(now)}`, browser)).status).toBe(400);
    // a day the month does not have is refused, not rolled over into the next month
    expect((await get(`/things/${fresh.id}/archive?from=2026-02-30T00:00&to=${minute(now)}`, browser)).status).toBe(400);
    expect((await get(`/things/${fresh.id}/archive?from=2026-01-01T00:00&to=2026-01-01T24:00`, browser)).status).toBe(400);
    await hub.things.delete(fresh);
  });

  test("the live view streams collected, sent and delivered messages as JSON", async () => {
    const browser = await signIn();
    const abort = new AbortController();
    const response = await api.fetch(new Request(`${BASE}/events?thing=${thing.id}`, { headers: { Cookie: browser.cookie }, signal: abort.signal }));
    expect(response.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    const reader = response.body!.getReader();
    let text = "";
    const until = async (pattern: RegExp) => {
      while (!pattern.test(text)) text += new TextDecoder().decode((await reader.read()).value);
    };
    await until(/event: presence/);
    await hub.collector.store(thing, undefined, JSON.stringify({ live: EVIL }));
    const { flmessagespk } = await hub.messages.send(thing, { go: 1 });
    expect(flmessagespk).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/); // UUIDv7 (message-ids.test.ts)
    await ingressLedger(store, hub.feed).delivered(flmessagespk, Date.UTC(2024, 0, 1), thing.name);
    await until(/event: delivered/);
    expect(text).toContain('"kind":"collected"');
    expect(text).toContain('"kind":"sent"');
    expect(text).toContain(`event: delivered\ndata: {"id":"${flmessagespk}","deliveredAt":"2024-01-01T00:00:00Z"}`);
    // the payload travels as JSON text; the page's script puts it in as text (dom.ts)
    expect(text).toContain(JSON.stringify(JSON.stringify({ live: EVIL }, null, 2)).slice(1, -1));
    abort.abort();
    api.close();
    expect(hub.feed.watchers).toBe(0);
  });
});

test("HEAD is answered wherever GET is (pages and assets), as the API does", async () => {
  const browser = await signIn();
  const head = (path: string) => api.fetch(new Request(`${BASE}${path}`, { method: "HEAD", headers: { Cookie: browser.cookie } }));
  const page = await head("/things");
  expect([page.status, page.headers.get("content-type")]).toEqual([200, "text/html; charset=utf-8"]);
  const css = /href="(\/assets\/[^"]+\.css)"/.exec(await (await get("/things", browser)).text())![1]!;
  expect((await head(css)).status).toBe(200);
  expect((await api.fetch(new Request(`${BASE}/signin`, { method: "HEAD" }))).status).toBe(200);
});

describe("a live view lives no longer than what let it open", () => {
  /** An API with a fast live view: heartbeat 20 ms, a look at the session every 60 ms. */
  const fastApi = () => createHubApi({ ...hub, log: silentLogger, consoleSessions: sessions, liveView: { heartbeatMs: 20, recheckMs: 60 } });
  /** Opens `/events` on `on`; `ended()` resolves with what the stream carried once it ends. */
  async function watch(on: HubApi, browser: Browser, query = "") {
    const response = await on.fetch(new Request(`${BASE}/events${query}`, { headers: { Cookie: browser.cookie } }));
    expect(response.status).toBe(200);
    const reader = response.body!.getReader();
    let text = "";
    const ended = (async () => {
      for (let r = await reader.read(); !r.done; r = await reader.read()) text += new TextDecoder().decode(r.value);
      return text;
    })();
    return { ended, text: () => text };
  }
  const within = <T>(ms: number, p: Promise<T>) =>
    Promise.race([p, Bun.sleep(ms).then(() => Promise.reject(new Error(`the stream was still open after ${ms} ms`)))]);

  test("sign-out ends its session's streams at once, not another session's; no payload reaches them afterwards", async () => {
    const on = fastApi();
    const leaving = await signIn();
    const staying = await signIn();
    const gone = await watch(on, leaving);
    const kept = await watch(on, staying);
    expect(
      (
        await on.fetch(
          new Request(`${BASE}/signout`, {
            method: "POST",
            headers: { "Content-Type": "application/x-www-form-urlencoded", Cookie: leaving.cookie },
            body: new URLSearchParams({ csrf: leaving.csrf }),
          }),
        )
      ).status,
    ).toBe(303);
    const carried = await within(1000, gone.ended);
    await hub.collector.store(thing, undefined, JSON.stringify({ secret: "after sign-out" }));
    await Bun.sleep(50);
    expect(carried).not.toContain("after sign-out");
    expect(kept.text()).toContain("after sign-out");
    on.close();
  });

  test("a rotation by another process (hub token rotate) ends every stream at its next look at the session", async () => {
    const on = fastApi();
    const browser = await signIn();
    const stream = await watch(on, browser);
    const rotated = await hub.operators.rotate(); // as `flashlex hub token rotate` does, elsewhere
    await within(2000, stream.ended);
    token = rotated;
    on.close();
  });

  test("200 live views at once, whatever else watches the feed (the metrics took one of the 200); the next is a 503", async () => {
    const on = createHubApi({ ...hub, log: silentLogger, consoleSessions: sessions });
    const stopMetrics = hub.feed.watch(() => {});
    const browser = await signIn();
    const views: AbortController[] = [];
    const openOne = () => {
      const view = new AbortController();
      views.push(view);
      return on.fetch(new Request(`${BASE}/events`, { headers: { Cookie: browser.cookie }, signal: view.signal }));
    };
    try {
      for (let i = 0; i < MAX_LIVE_VIEWS; i++) expect((await openOne()).status).toBe(200);
      const over = await openOne();
      expect([over.status, over.headers.get("retry-after")]).toEqual([503, "30"]);
    } finally {
      for (const view of views) view.abort();
      on.close();
      stopMetrics();
    }
  });

  test("a view that stops reading is ended once it leaves MAX_UNREAD_BYTES unread, with what it held dropped (each view queued every event: ten held 1 GB)", async () => {
    const on = fastApi();
    const browser = await signIn();
    const response = await on.fetch(new Request(`${BASE}/events`, { headers: { Cookie: browser.cookie } }));
    const before = hub.feed.watchers;
    // nobody reads: ~1 KiB an event, well past the bound
    const payload = JSON.stringify({ filler: "x".repeat(1024) });
    for (let i = 0; i < (2 * MAX_UNREAD_BYTES) / 1024; i++) await hub.collector.store(thing, undefined, payload);
    expect(hub.feed.watchers).toBe(before - 1);
    // what it carried, read now, ends: the browser opens it again
    let carried = 0;
    const reader = response.body!.getReader();
    for (let r = await reader.read(); !r.done; r = await reader.read()) carried += r.value.byteLength;
    expect(carried).toBeLessThan(MAX_UNREAD_BYTES + 4096);
    on.close();
  });

  test("an open stream does not keep its sign-in alive: it ends once the session was not used for the idle time", async () => {
    const on = fastApi();
    const browser = await signIn();
    const stream = await watch(on, browser);
    try {
      clock += 30_000;
      await Bun.sleep(300); // several looks at the session, half-way through its idle time
      clock += 31_000; // 61 s since the sign-in, its last use
      await within(2000, stream.ended);
    } finally {
      clock = Date.now();
      on.close();
    }
  });

  test("a thing's stream carries only that thing's messages, by id, and ends when the thing is deleted (one made again under its name is another)", async () => {
    const on = fastApi();
    const browser = await signIn();
    const first = (await hub.things.create("victim")).thing;
    const stream = await watch(on, browser, `?thing=${first.id}`);
    await hub.things.delete(first);
    await within(2000, stream.ended);
    const again = (await hub.things.create("victim")).thing;
    expect(again.name).toBe(first.name);
    await hub.collector.store(again, undefined, JSON.stringify({ for: "the new thing" }));
    expect(stream.text()).not.toContain("the new thing");
    await hub.things.delete(again);
    on.close();
  });
});

describe("ending sessions", () => {
  test("sign out ends the session: its cookie is refused afterwards", async () => {
    const browser = await signIn();
    const out = await post("/signout", { csrf: browser.csrf }, browser);
    expect(out.headers.get("location")).toBe("/signin?out=1");
    expect(out.headers.get("set-cookie")).toContain("Max-Age=0");
    const after = await get("/things", browser);
    expect(after.status).toBe(303);
    expect(after.headers.get("location")).toBe("/signin?expired=1");
  });

  test("an idle session ends", async () => {
    const browser = await signIn();
    clock += 61_000;
    expect((await get("/things", browser)).status).toBe(303);
    clock = Date.now();
  });

  test("rotating the token shows the new one once, keeps this browser signed in with a new cookie and refuses every old one", async () => {
    const rotator = await signIn();
    const bystander = await signIn();
    const rotated = await post("/token", { csrf: rotator.csrf }, rotator);
    expect(rotated.status).toBe(200);
    const page = await rotated.text();
    const fresh = /<pre id="new-token"><code>([\w-]{43})<\/code><\/pre>/.exec(page)![1]!;
    expect(fresh).not.toBe(token);
    const newCookie = cookieOf(rotated);
    expect(newCookie).not.toBe(rotator.cookie);
    for (const old of [rotator, bystander]) expect((await get("/things", old)).headers.get("location")).toBe("/signin?expired=1");
    expect((await get("/things", { cookie: newCookie, csrf: "" })).status).toBe(200);
    expect(await (await get("/token", { cookie: newCookie, csrf: "" })).text()).not.toContain(fresh);
    expect((await post("/signin", { token })).status).toBe(401);
    // a rotation elsewhere (the CLI) ends the console's sessions at their next request, and the
    // one-time download lines made before it (the owner rotates when the token leaked)
    const { line } = await hub.downloads.line(thing);
    token = await hub.operators.rotate();
    expect((await get("/things", { cookie: newCookie, csrf: "" })).status).toBe(303);
    const bearer = /(flxd_[\w-]+)/.exec(line)![1]!;
    const zip = await api.fetch(new Request(`${BASE}/dev/v1/things/${thing.id}/dist`, { headers: { Authorization: `Bearer ${bearer}` } }));
    expect(zip.status).toBe(401);
  });

  test("on a full disk the pages still show: the sign-in's last use is not moved on, the page is not a 503 (attack round 27, F6c)", async () => {
    const disk = await consoleOnDisk("touchConsoleSession");
    try {
      disk.fill();
      clock += 10_000; // past the touch interval (a tenth of the idle time)
      expect((await disk.api.fetch(new Request(`${BASE}/things`, { headers: { Cookie: disk.cookie } }))).status).toBe(200);
    } finally {
      clock = Date.now();
      disk.api.close();
    }
  });

  test("a rotation whose new sign-in cannot be stored (a full disk) still shows the new token, and says to sign in with it (verify pass 28, F1: the old token was dead, the new one never shown)", async () => {
    const disk = await consoleOnDisk("addConsoleSession");
    const consoleApi = disk.api;
    const cookie = disk.cookie;
    try {
      const page = await (await consoleApi.fetch(new Request(`${BASE}/token`, { headers: { Cookie: cookie } }))).text();
      const csrf = /name="csrf-token" content="([^"]+)"/.exec(page)![1]!;
      disk.fill();
      const rotated = await consoleApi.fetch(
        new Request(`${BASE}/token`, {
          method: "POST",
          headers: { "Content-Type": "application/x-www-form-urlencoded", Cookie: cookie },
          body: new URLSearchParams({ csrf }),
        }),
      );
      const answer = await rotated.text();
      expect(rotated.status).toBe(200);
      const fresh = /<pre id="new-token"><code>([\w-]{43})<\/code><\/pre>/.exec(answer)?.[1];
      expect(answer).toContain("sign in again with it");
      expect(await hub.operators.verify(fresh)).toBe(true);
      expect(await hub.operators.verify(token)).toBe(false);
      token = fresh!;
    } finally {
      consoleApi.close();
    }
  });
});
