/**
 * The console's browser run, under Node (playwright-core launches Chromium reliably from Node,
 * not from Bun: docs TOOLCHAIN). test/integration/console.test.ts starts it with one JSON
 * argument {baseUrl, token, work, screenshots} and does what a browser cannot (start the agent,
 * collect, read a zip) when asked: this script writes `rpc {"id", "method", "params"}` on a line
 * of stdout and reads `{"id", "result"|"error"}` on a line of stdin. It ends with a line
 * `done {...}` holding what it saw, or exits 1 with the error (and a screenshot of the page).
 *
 * Debian's Chromium, headless, loopback only: --no-sandbox (root in CI), no background
 * networking, component updates, sync or first-run pages, so the browser talks to the hub only.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const { baseUrl, token, work, screenshots } = JSON.parse(process.argv[2]);
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
/** A payload a thing might send to attack the console: it must show as text and run nothing. */
const EVIL = '<script>window.__owned = 1</script><img src=x onerror="window.__owned = 2">';

// --- talking to the test

const pending = new Map();
let nextId = 1;
createInterface({ input: process.stdin }).on("line", (line) => {
  const answer = JSON.parse(line);
  const waiter = pending.get(answer.id);
  pending.delete(answer.id);
  if (answer.error) waiter?.reject(new Error(answer.error));
  else waiter?.resolve(answer.result);
});

/** Asks the test to do `method` (startAgent, agentMessages, collect, inspectZip); resolves with its result. */
function ask(method, params = {}) {
  const id = nextId++;
  process.stdout.write(`rpc ${JSON.stringify({ id, method, params })}\n`);
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
}

const step = (text) => process.stdout.write(`step ${text}\n`);

// --- the browser

mkdirSync(screenshots, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const context = await browser.newContext({ viewport: DESKTOP, acceptDownloads: true, baseURL: baseUrl });
context.setDefaultTimeout(15_000);
const page = await context.newPage();
const problems = [];
page.on("console", (message) => {
  // A CSP violation means the page tried inline code or another host: the console has neither.
  if (message.type() === "error" && /Content Security Policy|Refused to/i.test(message.text())) problems.push(message.text());
});
page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
page.on("dialog", (dialog) => dialog.accept());

/** Screenshots the current page at desktop width, and the same URL at phone width. */
async function shoot(name) {
  await page.screenshot({ path: join(screenshots, `${name}-desktop.png`), fullPage: true });
  const phone = await context.newPage();
  await phone.setViewportSize(PHONE);
  await phone.goto(page.url());
  await phone.waitForLoadState("networkidle").catch(() => {});
  await phone.screenshot({ path: join(screenshots, `${name}-phone.png`), fullPage: true });
  // Nothing may be wider than a phone: the page scrolls down, never sideways.
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 1) throw new Error(`${name}: the page is ${overflow} px wider than a phone`);
  await phone.close();
}

/** Saves the download a click starts; returns where. */
async function download(click, file) {
  const [started] = await Promise.all([page.waitForEvent("download"), click()]);
  const path = join(work, file);
  await started.saveAs(path);
  return { path, suggested: started.suggestedFilename() };
}

const seen = {};
try {
  step("sign in");
  await page.goto("/things");
  if (!page.url().endsWith("/signin")) throw new Error(`signed out, /things went to ${page.url()}`);
  // Keyboard first: the first Tab reaches the skip link.
  await page.keyboard.press("Tab");
  seen.firstFocus = await page.evaluate(() => document.activeElement?.textContent?.trim());
  await shoot("signin");
  await page.getByLabel("Operator access token").fill("not-the-token");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("That is not the hub's access token.").waitFor();
  await page.getByLabel("Operator access token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Things", level: 1 }).waitFor();
  const cookie = (await context.cookies()).find((c) => c.name === "flashlex_session");
  seen.cookie = { httpOnly: cookie.httpOnly, sameSite: cookie.sameSite, secure: cookie.secure };

  step("create a thing");
  await page.getByLabel("Name", { exact: true }).fill("e2e-pump");
  await page.getByRole("button", { name: "Create Thing" }).click();
  await page.locator(".notice.ok", { hasText: "Created" }).waitFor();
  const thingName = (await page.locator("h1").textContent()).split(" ")[0];
  const thingUrl = new URL(page.url()).pathname;
  seen.thingName = thingName;
  // no page of the console holds the operator's token (the cURL line once did)
  seen.tokenInThingPage = (await page.content()).includes(token);
  await page.getByRole("button", { name: "Make a one-time cURL line" }).click();
  seen.curl = await page.locator("#curl-line").textContent();
  seen.tokenInLinePage = (await page.content()).includes(token);
  await shoot("thing");
  await page.reload();
  seen.curlAfterReload = await page.locator("#curl-line").count();
  // run on "the device" now: the token rotation at the end of this journey ends lines not yet used
  seen.curlRuns = await ask("runCurlLine", { line: seen.curl });

  step("download the distribution and start the agent from it");
  const dist = await download(() => page.getByRole("link", { name: `Download ${thingName}.zip` }).click(), "dist.zip");
  seen.distribution = dist.suggested;
  await ask("startAgent", { zip: dist.path, name: thingName });

  step("send a message and see it delivered");
  await page.getByRole("link", { name: "Send Message" }).click();
  await page.getByText("The thing is connected now").waitFor();
  const editor = page.getByLabel(/^Message/);
  await editor.fill('{"valve": "open",');
  await page.getByText("Not valid JSON").waitFor();
  seen.invalidMarked = await editor.getAttribute("aria-invalid");
  await page.getByRole("button", { name: "Send Message" }).click();
  seen.sentWhileInvalid = await page.locator('[data-list="sent"] li').count();
  await editor.fill('{"valve": "open", "note": "from the console"}');
  await page.getByText("Valid JSON.", { exact: true }).waitFor();
  await page.locator('[data-live-state="open"]').waitFor();
  await page.getByRole("button", { name: "Send Message" }).click();
  const sent = page.locator('[data-list="sent"] li').first();
  await sent.locator(".delivery.delivered").waitFor({ timeout: 20_000 });
  seen.sentText = await sent.locator("pre").textContent();
  seen.agentMessages = await ask("agentMessages");
  await shoot("send");

  step("collect from the thing and see it appear live");
  await page.getByRole("link", { name: "Messages" }).nth(1).click();
  await page.locator('[data-live-state="open"]').waitFor();
  await ask("collect", { payload: { temperature: 21.5, unit: "C" } });
  await page.locator('[data-list="all"] li pre', { hasText: '"temperature": 21.5' }).waitFor();
  await ask("collect", { payload: { note: EVIL } });
  const evil = page.locator('[data-list="all"] li pre', { hasText: "window.__owned = 1" });
  await evil.waitFor();
  seen.evilText = await evil.textContent();
  seen.owned = await page.evaluate(() => window.__owned ?? null);
  seen.injected = await page.locator("li.message script, li.message img").count();
  await shoot("thing-messages");

  step("download the range zip");
  const zip = await download(() => page.getByRole("button", { name: "Download zip" }).click(), "range.zip");
  seen.rangeZip = { name: zip.suggested, ...(await ask("inspectZip", { path: zip.path })) };
  // the page as loaded from the database shows the payload as text too
  await page.reload();
  seen.evilAfterReload = await page.locator('[data-list="all"] li pre', { hasText: "window.__owned = 1" }).textContent();

  step("the other pages");
  await page.getByRole("link", { name: "Messages", exact: true }).first().click();
  await page.getByRole("heading", { name: "Messages", level: 1 }).waitFor();
  seen.latestCollected = await page.locator('[data-list="collected"] li').count();
  await shoot("messages");
  await page.goto(`/things?q=${encodeURIComponent("e2e")}`);
  seen.filtered = await page.locator("table.things tbody tr").count();
  await shoot("things");

  step("the live view catches up on what was stored while its stream was cut");
  await page.goto(thingUrl);
  await page.getByRole("link", { name: "Messages" }).nth(1).click();
  await page.locator('[data-live-state="open"]').waitFor();
  const before = await page.locator('[data-list="all"] li').count();
  // the hub restarts, and this page cannot reconnect until the message is stored: it is never sent on the stream
  await page.route("**/events*", (route) => route.abort());
  await ask("restartHub");
  await page.locator('[data-live-state="reconnecting"]').waitFor();
  await ask("collect", { payload: { missed: "while the live view was cut" } });
  await page.unroute("**/events*");
  await page.locator('[data-caught-up="yes"]').waitFor({ timeout: 20_000 });
  seen.catchUp = {
    before,
    missed: await page.locator('[data-list="all"] li pre', { hasText: "while the live view was cut" }).count(),
    ids: await page.locator('[data-list="all"] li').evaluateAll((items) => items.map((item) => item.dataset.id)),
    evilStillText: await page.locator('[data-list="all"] li pre', { hasText: "window.__owned = 1" }).count(),
  };
  seen.ownedAfterCatchUp = await page.evaluate(() => window.__owned ?? null);

  step("a delivery that comes while the catch-up's fetch is on its way stays shown");
  // sent while the agent is stopped: pending on the page
  await ask("stopAgent");
  await page.goto(thingUrl);
  await page.getByRole("link", { name: "Send Message" }).click();
  await page.getByLabel(/^Message/).fill('{"valve": "closed"}');
  await page.getByRole("button", { name: "Send Message" }).click();
  const pendingId = await page.locator('[data-list="sent"] li .delivery.pending').first().locator("xpath=ancestor::li").getAttribute("data-id");
  await page.getByRole("link", { name: "Messages" }).nth(1).click();
  const messagesPath = new URL(page.url()).pathname;
  const item = page.locator(`[data-list="all"] li[data-id="${pendingId}"]`);
  await item.locator(".delivery.pending").waitFor();
  await page.locator('[data-live-state="open"]').waitFor();
  // the stream cut; the page's catch-up fetch answered as it was before the delivery, but only
  // after the delivery came on the new stream
  await page.route("**/events*", (route) => route.abort());
  await ask("restartHub");
  await page.locator('[data-live-state="reconnecting"]').waitFor();
  let release;
  const held = new Promise((resolve) => (release = resolve));
  const holdCatchUp = async (route) => {
    if (route.request().resourceType() !== "fetch") return route.continue();
    const response = await route.fetch();
    await held;
    await route.fulfill({ response });
  };
  const isMessagesPage = (url) => url.pathname === messagesPath;
  await page.route(isMessagesPage, holdCatchUp);
  await page.unroute("**/events*");
  await page.locator('[data-caught-up="no"]').waitFor({ timeout: 20_000 });
  await ask("resumeAgent");
  await item.locator(".delivery.delivered").waitFor({ timeout: 20_000 });
  release();
  await page.locator('[data-caught-up="yes"]').waitFor({ timeout: 20_000 });
  await page.unroute(isMessagesPage, holdCatchUp);
  seen.deliveredDuringCatchUp = {
    delivered: await item.locator(".delivery.delivered").count(),
    pending: await item.locator(".delivery.pending").count(),
  };

  step("more stored while the stream was cut than the page holds: the list is the page, without a hidden gap");
  await page.route("**/events*", (route) => route.abort());
  await ask("restartHub");
  await page.locator('[data-live-state="reconnecting"]').waitFor();
  await ask("collectMany", { prefix: "gap", count: 51 });
  await page.unroute("**/events*");
  await page.locator('[data-list="all"] li pre', { hasText: '"gap": 50' }).waitFor({ timeout: 20_000 });
  await page.locator('[data-caught-up="yes"]').waitFor();
  seen.gapless = await page.locator('[data-list="all"] li pre').allTextContents();
  await page.goto(thingUrl);

  step("rotate the token");
  await page.getByRole("link", { name: "Access Token" }).click();
  await shoot("token");
  const oldCookie = (await context.cookies()).find((c) => c.name === "flashlex_session").value;
  await page.getByRole("button", { name: "Rotate the access token" }).click();
  const fresh = (await page.locator("#new-token").textContent()).trim();
  seen.rotated = fresh !== token && fresh.length === 43;
  await page.screenshot({ path: join(screenshots, "token-rotated-desktop.png"), fullPage: true });
  // the old cookie, in a browser of its own: sent to sign in
  const stale = await browser.newContext({ baseURL: baseUrl });
  await stale.addCookies([{ name: "flashlex_session", value: oldCookie, url: baseUrl, httpOnly: true, sameSite: "Strict" }]);
  const stalePage = await stale.newPage();
  await stalePage.goto("/things");
  seen.oldCookieLandsOn = new URL(stalePage.url()).pathname + new URL(stalePage.url()).search;
  await stale.close();
  // this browser stays signed in with its new cookie
  await page.goto("/things");
  seen.stillSignedIn = new URL(page.url()).pathname;

  step("sign out; a live page of the same sign-in says its updates stopped");
  const other = await context.newPage();
  await other.goto(`${thingUrl}/messages`);
  await other.locator('[data-live-state="open"]').waitFor();
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByText("Signed out.").waitFor();
  await other.locator('[data-live-state="ended"]').waitFor({ timeout: 20_000 });
  seen.endedNotice = await other.locator("[data-live] .notice").textContent();
  await other.close();
  seen.problems = problems;
  process.stdout.write(`done ${JSON.stringify(seen)}\n`);
  await browser.close();
  process.exit(0);
} catch (err) {
  await page.screenshot({ path: join(screenshots, "failure.png"), fullPage: true }).catch(() => {});
  process.stdout.write(`failed ${JSON.stringify({ error: String(err?.stack ?? err), url: page.url(), seen, problems })}\n`);
  await browser.close().catch(() => {});
  process.exit(1);
}
