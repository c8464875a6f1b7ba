/**
 * src/hub/console: the hub's web console, the guide's pages served by the binary itself.
 *
 *   console.ts        routing, sign-in and CSRF checks, and one handler per page and action
 *   sessions.ts       sign-ins (in the hub database, shared by every hub) and the CSRF token
 *   security.ts       CSP and the other headers, the session cookie, the same-origin check
 *   html.ts           the escaping HTML template every page is written in
 *   layout.ts, pages/ the pages, pure functions from data to Html
 *   views.ts, chart.ts what a message, a time and the hourly chart look like
 *   events.ts         the live view (server-sent events from the hub's MessageFeed)
 *   assets.ts         the stylesheet and the browser script (client/, bundled by build-client.ts)
 *
 * Every action calls the same use case (src/hub/hub.ts) as the CLI and the HTTP API: this file
 * reads a form, calls it and shows its answer, and holds no rule of its own about things or
 * messages. Errors carry a kind and answer with the API's status for it (http/envelope.ts).
 */

import { isUuid } from "../../protocol/ids.ts";
import { thingTopics } from "../../protocol/topics.ts";
import { type Logger, quoteLogText } from "../../shared/log.ts";
import { pullStream } from "../../shared/pull-stream.ts";
import { utcFromParts } from "../../shared/time.ts";
import { decodePathSegment, HttpError, integerParam, publicError, type RequestOrigin, readBodyLimited } from "../http/envelope.ts";
import type { HubUseCases } from "../hub.ts";
import { parseIngressDocument, publishTextLimit } from "../messages/messages.ts";
import type { MessageQuery, MessageType, ThingRecord } from "../store/hub-store.ts";
import type { DownloadLine } from "../things/download-tokens.ts";
import { thingKeyType } from "../things/provision.ts";
import { MAX_FILTER_CHARS, thingStatus } from "../things/things.ts";
import { type ConsoleAssets, consoleAssets } from "./assets.ts";
import { liveStreams } from "./events.ts";
import { type Html, html } from "./html.ts";
import { notice, page } from "./layout.ts";
import { messagesPage } from "./pages/messages.ts";
import { sendPage } from "./pages/send.ts";
import { signInPage } from "./pages/signin.ts";
import { thingPage } from "./pages/thing.ts";
import { stateOf, thingsPage } from "./pages/things.ts";
import { tokenPage } from "./pages/token.ts";
import { fromSameOrigin, isSecureRequest, readCookie, securityHeaders, sessionCookie, sessionCookieName } from "./security.ts";
import { type ConsoleSession, type ConsoleSessions, csrfMatches } from "./sessions.ts";
import { isoUtc, messageView } from "./views.ts";

export interface ConsoleDeps extends HubUseCases {
  log: Logger;
  /** the sign-ins; tests pass their own (a clock, small limits) */
  sessions?: ConsoleSessions;
  /** the live view's timings (events.ts): tests shorten them */
  liveView?: { heartbeatMs?: number; recheckMs?: number };
}

export interface HubConsole {
  /** Answers one request for a console path (anything outside the API's `/{env}/v1`); `origin` names the client in refusal lines. */
  fetch(request: Request, origin: RequestOrigin): Promise<Response>;
  /** Ends the live views (the hub is stopping). */
  close(): void;
}

/** Things per page on the Things page. */
export const THINGS_PER_PAGE = 50;
/** The highest page number taken: 50 million things, far past any fleet one hub serves. */
const MAX_PAGE = 1_000_000;

/**
 * A query parameter the console's forms and links give once (empty allowed: a cleared filter box
 * sends `q=`); given twice it is a 400 naming it, as `page` is, rather than the first value taken
 * without a word. Undefined when absent.
 */
function oneValue(params: URLSearchParams, name: string): string | undefined {
  const values = params.getAll(name);
  if (values.length > 1) throw new HttpError(400, `${name} is given ${values.length} times; give it once`);
  return values[0];
}

/** Messages a list shows when the page loads. */
const LIST_MESSAGES = 50;
/** How long a refused sign-in waits before answering (ms): guessing gets slow, a typo does not. */
const REFUSED_SIGN_IN_DELAY_MS = 400;

/** What a session just did: the notice for the page its action leads to, and a one-time cURL line it made. */
interface Done {
  page: string;
  text: string;
  line?: DownloadLine;
}

interface Context {
  request: Request;
  url: URL;
  origin: RequestOrigin;
  /** the path's captures: the thing id */
  params: string[];
  secure: boolean;
  assets: ConsoleAssets;
  /** set on every route but sign-in's */
  session: ConsoleSession;
  sessionId: string;
  /** the form's fields (POST only) */
  form: URLSearchParams;
}

interface Route {
  method: "GET" | "POST";
  path: RegExp;
  /** false: reachable signed out (sign-in) */
  signedIn: boolean;
  /** a POST route whose form holds a message: it may be that large (default SMALL_FORM_BYTES) */
  takesMessage?: boolean;
  /** a POST route's form fields besides `csrf` (default none); any other, or a query parameter, is a 400 */
  fields?: readonly string[];
  handle(ctx: Context): Promise<Response>;
}

/**
 * The most a form other than a message's may be, in bytes: a token, a name, a key type and the
 * CSRF value. Sign-in reads its body before it knows who sends it: at the message form's bound
 * (~6 MB), anonymous sign-ins held ~2 GB between them.
 */
const SMALL_FORM_BYTES = 8 * 1024;

/** The answer a browser script asked for (Accept: application/json), rather than a page. */
const wantsJson = (request: Request) => (request.headers.get("accept") ?? "").includes("application/json");

/**
 * The console over the use cases in `deps`, made once per hub. `fetch` answers a failing route
 * with an error page (or JSON) at its kind's status, and rejects only when looking up the
 * sign-in does (the database); `close` ends the live views.
 */
export function createConsole(deps: ConsoleDeps): HubConsole {
  const { things, downloads, messages, operators, home, updates } = deps;
  const { settings } = home;
  const log = deps.log.child({ component: "console" });
  const sessions = deps.sessions ?? deps.consoleSessions;
  const live = liveStreams({ feed: deps.live, things, ...deps.liveView });
  /**
   * What each session just did, for the notice on the page its action leads to (`page`: the
   * path), told once and to that session only; this process only. Never text or a flag from the
   * URL: a link could put any words on the hub's own page ("Deleted Hub_compromised-call_...",
   * "Created ..." on any thing). Bounded, as the sessions themselves are.
   */
  const doneBy = new Map<string, Done>();
  const tell = (sessionId: string, page: string, text: string, line?: DownloadLine) => {
    doneBy.delete(sessionId); // re-added last: the oldest entry is the first
    doneBy.set(sessionId, { page, text, line });
    // sessions that acted and never looked again
    if (doneBy.size > 1000) doneBy.delete(doneBy.keys().next().value!);
  };
  // A HEAD (a link checker, a prefetch, curl -I) shows it without using it up: the cURL line in
  // it was shown nowhere, and its token would be one nobody saw (attack round 25, F1).
  const told = (ctx: Context, page: string): Done | undefined => {
    const done = doneBy.get(ctx.sessionId);
    if (done?.page !== page) return undefined;
    if (ctx.request.method !== "HEAD") doneBy.delete(ctx.sessionId);
    return done;
  };
  /**
   * Whether the thing's page offers the zip and its cURL line: a distribution that still works,
   * else why not. One that cannot be read (a zip an older root run left root's) is logged and
   * not offered; its download link then says why, and the page itself still shows.
   */
  const distributionState = (thing: ThingRecord): { missing: string } | { zip: true } => {
    try {
      const found = things.distribution(thing);
      return "missing" in found ? found : { zip: true };
    } catch (err) {
      log.warn("console.distribution_unreadable", { thing: thing.name, error: (err as Error)?.message });
      return { missing: "its zip could not be read (the hub log says why)" };
    }
  };
  // A sent message's form holds the message as written (up to publishTextLimit, as the API takes
  // it) and little else. Urlencoding makes a byte up to 3 (%XX), and a line break, which the
  // browser sends as CR LF, 6: a form under this never holds a message the API would take.
  const messageTextLimit = publishTextLimit(settings.api.payloadLimitBytes);
  const formLimit = messageTextLimit * 6 + 4096;

  // --- answers

  function respond(body: ConstructorParameters<typeof Response>[0], status: number, headers: Record<string, string> = {}): Response {
    return new Response(body, { status, headers: { ...securityHeaders(), "Cache-Control": "no-store", ...headers } });
  }
  const htmlPage = (body: Html, status = 200, headers: Record<string, string> = {}) =>
    respond(body.text, status, { "Content-Type": "text/html; charset=utf-8", ...headers });
  const redirect = (location: string, headers: Record<string, string> = {}) => respond(null, 303, { Location: location, ...headers });
  const json = (body: unknown, status = 200) => respond(JSON.stringify(body), status, { "Content-Type": "application/json; charset=utf-8" });
  const assetPaths = (assets: ConsoleAssets) => ({ js: assets.js.path, css: assets.css.path });

  function errorPage(
    ctx: Pick<Context, "assets" | "request"> & { session?: ConsoleSession },
    status: number,
    message: string,
    headers: Record<string, string> = {},
  ) {
    if (wantsJson(ctx.request)) return respond(JSON.stringify({ error: message }), status, { "Content-Type": "application/json; charset=utf-8", ...headers });
    const title = status === 404 ? "Not found" : status === 403 ? "Refused" : "Something went wrong";
    return htmlPage(
      page({
        title,
        csrf: ctx.session?.csrf,
        assets: assetPaths(ctx.assets),
        body: html`<h1>${title}</h1>${notice(message, "error")}<p><a href="/things">Back to Things</a></p>`,
      }),
      status,
      headers,
    );
  }

  // --- helpers over the use cases

  async function thingOr404(ctx: Context): Promise<ThingRecord> {
    const id = ctx.params[0]!;
    const thing = isUuid(id) ? await things.get(id) : undefined;
    if (!thing) throw new HttpError(404, "There is no such thing (it may have been deleted).");
    return thing;
  }

  const stateOfThing = (thing: ThingRecord) => stateOf({ status: thingStatus(thing), connected: things.isConnected(thing) });

  /** Thing names for messages of several things (the all-things list). */
  async function namesOf(thingIds: string[]): Promise<Map<string, string>> {
    const names = new Map<string, string>();
    for (const id of new Set(thingIds)) names.set(id, (await things.get(id))?.name ?? "(deleted thing)");
    return names;
  }

  /** `YYYY-MM-DDTHH:MM` (a datetime-local value, read as UTC) as Unix seconds; HttpError 400 otherwise. */
  function utcMinute(value: string | null | undefined, field: string): number {
    const match = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/.exec(value ?? "");
    const ms = match ? utcFromParts(+match[1]!, +match[2]!, +match[3]!, +match[4]!, +match[5]!, +(match[6] ?? 0)) : NaN;
    if (!Number.isFinite(ms)) throw new HttpError(400, `${field} must be a date and time (YYYY-MM-DDTHH:MM, UTC)`);
    return Math.floor(ms / 1000);
  }

  const minuteValue = (ms: number) => isoUtc(ms).slice(0, 16);

  // --- routes

  const routes: Route[] = [
    {
      method: "GET",
      path: /^\/$/,
      signedIn: false,
      handle: async (ctx) => redirect(ctx.sessionId ? "/things" : "/signin"),
    },
    {
      method: "GET",
      path: /^\/signin$/,
      signedIn: false,
      async handle(ctx) {
        if (ctx.sessionId) return redirect("/things");
        const info = ctx.url.searchParams.get("out") ? "Signed out." : ctx.url.searchParams.get("expired") ? "Please sign in again." : undefined;
        return htmlPage(signInPage({ assets: assetPaths(ctx.assets), info }));
      },
    },
    {
      method: "POST",
      path: /^\/signin$/,
      signedIn: false,
      fields: ["token"],
      async handle(ctx) {
        const token = ctx.form.get("token")?.trim() ?? "";
        if (!(await operators.verify(token || undefined))) {
          // Never the token itself in the log: only that a sign-in was refused.
          log.warn("hub.console_signin_refused", { reason: token ? "not the access token" : "no token", remote: ctx.origin.remote?.() });
          await Bun.sleep(REFUSED_SIGN_IN_DELAY_MS);
          return htmlPage(signInPage({ assets: assetPaths(ctx.assets), error: "That is not the hub's access token." }), 401);
        }
        const { id } = await sessions.create(token);
        log.info("hub.console_signin");
        return redirect("/things", { "Set-Cookie": sessionCookie(id, ctx.secure) });
      },
    },
    {
      method: "POST",
      path: /^\/signout$/,
      signedIn: true,
      async handle(ctx) {
        await sessions.end(ctx.sessionId);
        live.endSession(ctx.sessionId);
        log.info("hub.console_signout");
        return redirect("/signin?out=1", { "Set-Cookie": sessionCookie("", ctx.secure, true) });
      },
    },
    {
      method: "GET",
      path: /^\/things$/,
      signedIn: true,
      async handle(ctx) {
        const filter = oneValue(ctx.url.searchParams, "q") ?? "";
        // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what no thing name holds
        if (/[\x00-\x1f\x7f]/.test(filter)) throw new HttpError(400, "The name filter (q) holds a control character; a thing's name has none.");
        if (filter.length > MAX_FILTER_CHARS)
          throw new HttpError(400, `The name filter (q) is at most ${MAX_FILTER_CHARS} characters; this one has ${filter.length}.`);
        const pageNo = integerParam(ctx.url.searchParams, "page", { min: 1, max: MAX_PAGE, fallback: 1 });
        const overview = await things.overview({ nameContains: filter, offset: (pageNo - 1) * THINGS_PER_PAGE, limit: THINGS_PER_PAGE });
        const done = told(ctx, "/things");
        return htmlPage(
          thingsPage({
            assets: assetPaths(ctx.assets),
            csrf: ctx.session.csrf,
            overview,
            filter,
            notice: done ? { text: done.text } : undefined,
          }),
        );
      },
    },
    {
      method: "POST",
      path: /^\/things$/,
      signedIn: true,
      fields: ["name", "keyType"],
      async handle(ctx) {
        try {
          const { thing } = await things.create(ctx.form.get("name") ?? "", { keyType: ctx.form.get("keyType") || undefined });
          log.info("hub.thing_created", { via: "console", thing: thing.name, id: thing.id });
          tell(ctx.sessionId, `/things/${thing.id}`, `Created ${thing.name}. Download its distribution below (Thing SDK).`);
          return redirect(`/things/${thing.id}`);
        } catch (err) {
          const answer = publicError(err);
          if (answer.status >= 500) throw err;
          const overview = await things.overview({ limit: THINGS_PER_PAGE });
          const refused = thingsPage({
            assets: assetPaths(ctx.assets),
            csrf: ctx.session.csrf,
            overview,
            filter: "",
            notice: { text: answer.message, tone: "error" },
          });
          return htmlPage(refused, answer.status);
        }
      },
    },
    {
      method: "GET",
      path: /^\/things\/([^/]+)$/,
      signedIn: true,
      async handle(ctx) {
        const thing = await thingOr404(ctx);
        const [summary, hours] = await Promise.all([things.summary(thing), messages.hourly(thing)]);
        const done = told(ctx, `/things/${thing.id}`);
        return htmlPage(
          thingPage({
            assets: assetPaths(ctx.assets),
            csrf: ctx.session.csrf,
            summary,
            hours,
            keyType: thingKeyType(thing),
            agent: await updates.forThing(thing.id),
            topics: thingTopics(thing.name),
            // A one-time cURL line is shown once, on the page its button leads to (the page is
            // never cached); never the operator's token.
            distribution: { ...distributionState(thing), line: done?.line },
            notice: done ? { text: done.text } : undefined,
          }),
        );
      },
    },
    {
      method: "GET",
      path: /^\/things\/([^/]+)\/distribution\.zip$/,
      signedIn: true,
      async handle(ctx) {
        const thing = await thingOr404(ctx);
        const found = things.distribution(thing);
        if ("missing" in found) throw new HttpError(404, `This thing has no distribution: ${found.missing}.`);
        const zip = found.zip;
        log.info("hub.distribution_downloaded", { via: "console", thing: thing.name });
        return respond(zip, 200, {
          "Content-Type": "application/zip",
          "Content-Disposition": `attachment; filename="${thing.name}.zip"`,
          "Content-Length": String(zip.byteLength),
        });
      },
    },
    {
      method: "POST",
      path: /^\/things\/([^/]+)\/download-line$/,
      signedIn: true,
      async handle(ctx) {
        const thing = await thingOr404(ctx);
        const page = `/things/${thing.id}`;
        // A second press before the page showed the first line (a double click) gets that line:
        // another would leave a token nobody saw (attack round 25, F1).
        const waiting = doneBy.get(ctx.sessionId);
        const unseen = waiting?.page === page && waiting.line && waiting.line.expiresAt > Date.now() ? waiting.line : undefined;
        const line = unseen ?? (await downloads.line(thing));
        if (!unseen) log.info("hub.download_line_made", { via: "console", thing: thing.name });
        tell(ctx.sessionId, page, `Made a one-time cURL line for ${thing.name}: run it on the thing.`, line);
        return redirect(`/things/${thing.id}#sdk`);
      },
    },
    {
      method: "POST",
      path: /^\/things\/([^/]+)\/revoke$/,
      signedIn: true,
      async handle(ctx) {
        const thing = await thingOr404(ctx);
        const { changed } = await things.revoke(thing);
        log.info("hub.thing_revoked", { via: "console", thing: thing.name, changed });
        tell(ctx.sessionId, `/things/${thing.id}`, `Revoked ${thing.name}.`);
        return redirect(`/things/${thing.id}`);
      },
    },
    {
      method: "POST",
      path: /^\/things\/([^/]+)\/delete$/,
      signedIn: true,
      async handle(ctx) {
        const thing = await thingOr404(ctx);
        await things.delete(thing);
        log.info("hub.thing_deleted", { via: "console", thing: thing.name, id: thing.id });
        tell(ctx.sessionId, "/things", `Deleted ${thing.name}, its messages and its distribution.`);
        return redirect("/things");
      },
    },
    {
      method: "GET",
      path: /^\/things\/([^/]+)\/send$/,
      signedIn: true,
      async handle(ctx) {
        const thing = await thingOr404(ctx);
        return htmlPage(await sendView(ctx, thing));
      },
    },
    {
      method: "POST",
      path: /^\/things\/([^/]+)\/send$/,
      signedIn: true,
      takesMessage: true,
      fields: ["message"],
      async handle(ctx) {
        const thing = await thingOr404(ctx);
        const text = ctx.form.get("message") ?? "";
        try {
          const document = parseIngressDocument(text, settings.api.payloadLimitBytes, "the message");
          const { flmessagespk, online } = await messages.send(thing, document);
          const sent = (await messages.latest({ thing, messagetype: "ingress", limit: 20 })).find((m) => m.flmessagespk === flmessagespk);
          if (wantsJson(ctx.request)) return json({ message: sent ? messageView(sent, thing.name) : { id: flmessagespk }, online });
          return redirect(`/things/${thing.id}/send?sent=${flmessagespk}`);
        } catch (err) {
          const answer = publicError(err);
          if (answer.status >= 500 && answer.status !== 503) throw err;
          if (wantsJson(ctx.request)) return json({ error: answer.message }, answer.status);
          return htmlPage(await sendView(ctx, thing, { draft: text, notice: { text: answer.message, tone: "error" } }), answer.status);
        }
      },
    },
    {
      method: "GET",
      path: /^\/things\/([^/]+)\/messages$/,
      signedIn: true,
      async handle(ctx) {
        const thing = await thingOr404(ctx);
        const recent = await messages.latest({ thing, limit: LIST_MESSAGES });
        const now = Date.now();
        return htmlPage(
          messagesPage({
            assets: assetPaths(ctx.assets),
            csrf: ctx.session.csrf,
            thing: { record: thing, state: stateOfThing(thing) },
            recent: recent.map((m) => messageView(m, thing.name)),
            range: { from: minuteValue(now - 86_400_000), to: minuteValue(now + 60_000) },
            keptFor: settings.messages?.keepFor,
          }),
        );
      },
    },
    {
      method: "GET",
      path: /^\/things\/([^/]+)\/archive$/,
      signedIn: true,
      async handle(ctx) {
        const thing = await thingOr404(ctx);
        const q = ctx.url.searchParams;
        const type = oneValue(q, "type");
        if (type && type !== "egress" && type !== "ingress") throw new HttpError(400, "type must be egress, ingress or empty (both)");
        // A minute picked in the form means all of it: the end is its last second.
        const query: MessageQuery = { startts: utcMinute(oneValue(q, "from"), "From"), endts: utcMinute(oneValue(q, "to"), "To") + 59 };
        if (type) query.messagetype = type as MessageType;
        if (query.endts! < query.startts!) throw new HttpError(400, "From must not be after To");
        const archive = await messages.archive(thing, query);
        log.info("hub.archive", { via: "console", thing: thing.name, messages: archive.count });
        const stream = pullStream(archive.chunks, (err) => log.error("hub.archive_failed", { thing: thing.name, written: archive.written(), error: err }));
        return respond(stream, 200, { "Content-Type": "application/zip", "Content-Disposition": `attachment; filename="${archive.fileName}"` });
      },
    },
    {
      method: "GET",
      path: /^\/messages$/,
      signedIn: true,
      async handle(ctx) {
        const recent = await messages.latest({ messagetype: "egress", limit: LIST_MESSAGES });
        const names = await namesOf(recent.map((m) => m.thingId));
        return htmlPage(
          messagesPage({
            assets: assetPaths(ctx.assets),
            csrf: ctx.session.csrf,
            recent: recent.map((m) => messageView(m, names.get(m.thingId)!)),
            range: { from: "", to: "" },
          }),
        );
      },
    },
    {
      method: "GET",
      path: /^\/token$/,
      signedIn: true,
      handle: async (ctx) => htmlPage(tokenPage({ assets: assetPaths(ctx.assets), csrf: ctx.session.csrf })),
    },
    {
      method: "POST",
      path: /^\/token$/,
      signedIn: true,
      async handle(ctx) {
        // Every session held the old token: rotate() ends them all, on every hub of the database,
        // and this browser gets a new one (a new cookie: the old cookie is refused from now on).
        const token = await operators.rotate();
        log.info("hub.token_rotated", { via: "console" });
        // every session ended with the old token: their live views too (this browser's reconnects with the new cookie)
        live.close();
        let signedIn: Awaited<ReturnType<typeof sessions.create>>;
        try {
          signedIn = await sessions.create(token);
        } catch (err) {
          // The token is replaced: it must be shown even when this browser's new sign-in cannot
          // be stored (a full disk), or nobody has it (verify pass 28, F1: the old one was dead,
          // the new one never shown).
          log.warn("hub.console_failed", {
            method: "POST",
            path: "/token",
            note: "the token was rotated and shown; the new sign-in could not be stored",
            error: err,
          });
          return htmlPage(tokenPage({ assets: assetPaths(ctx.assets), csrf: "", newToken: token, signedOut: true }), 200, {
            "Set-Cookie": sessionCookie("", ctx.secure, true),
          });
        }
        return htmlPage(tokenPage({ assets: assetPaths(ctx.assets), csrf: signedIn.session.csrf, newToken: token }), 200, {
          "Set-Cookie": sessionCookie(signedIn.id, ctx.secure),
        });
      },
    },
    {
      method: "GET",
      path: /^\/events$/,
      signedIn: true,
      async handle(ctx) {
        const id = oneValue(ctx.url.searchParams, "thing");
        // empty is no thing: it opened every thing's stream, which a page of one never asks for
        if (id === "") throw new HttpError(400, "thing is given empty: name a thing, or leave it out for every thing's messages");
        const thing = id ? await thingOr404({ ...ctx, params: [id] }) : undefined;
        const stream = live.open(thing, ctx.request.signal, {
          sessionId: ctx.sessionId,
          // the cookie's session still live and its token still valid (a rotation elsewhere), the thing not deleted
          // (a look, not a use: an open page does not keep an idle sign-in alive)
          stillAllowed: async () =>
            (await sessionOf(ctx.request, ctx.secure, { touch: false })) !== undefined && (!thing || (await things.get(thing.id)) !== undefined),
        });
        if (!stream) throw new HttpError(503, "Too many live views are open; try again later.", { "Retry-After": "30" });
        return respond(stream, 200, { "Content-Type": "text/event-stream; charset=utf-8", "X-Accel-Buffering": "no" });
      },
    },
  ];

  async function sendView(ctx: Context, thing: ThingRecord, extra: { draft?: string; notice?: { text: string; tone?: "ok" | "error" } } = {}) {
    const recent = await messages.latest({ thing, messagetype: "ingress", limit: 20 });
    return sendPage({
      assets: assetPaths(ctx.assets),
      csrf: ctx.session.csrf,
      thing,
      state: stateOfThing(thing),
      connected: things.isConnected(thing),
      recent: recent.map((m) => messageView(m, thing.name)),
      ...extra,
    });
  }

  /** The session this request's cookie names, if it is live and its token still valid. */
  async function sessionOf(request: Request, secure: boolean, options: { touch?: boolean } = {}): Promise<{ id: string; session: ConsoleSession } | undefined> {
    const id = readCookie(request, sessionCookieName(secure));
    const session = await sessions.get(id, options);
    if (!id || !session) return undefined;
    // A rotation in another process or hub deleted the sessions; this also catches a token that
    // stopped working another way (a CLI token's expiry) at the session's next request.
    if (!(await operators.verify(session.token))) {
      await sessions.end(id);
      return undefined;
    }
    return { id, session };
  }

  /**
   * The urlencoded form's text, once it and every percent-encoded name and value are UTF-8: its
   * decoders put U+FFFD for what is not, so a message the API refuses (400, not UTF-8) was sent
   * from the console with other characters. Throws HttpError 400.
   */
  function formText(body: Uint8Array): string {
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(body);
    } catch {
      throw new HttpError(400, "The form is not UTF-8 text.");
    }
    for (const part of text.split("&")) {
      try {
        decodeURIComponent(part.replaceAll("+", " "));
      } catch {
        const name = part.split("=", 1)[0]!;
        throw new HttpError(400, `The form field ${quoteLogText(name.slice(0, 40))} is not UTF-8 text (percent-encoded bytes that are not).`);
      }
    }
    return text;
  }

  /** The form of a POST to `route`, at most its bound; throws HttpError 413, 415 or 400 (a field not UTF-8, or given twice). */
  async function readForm(request: Request, route: Route): Promise<URLSearchParams> {
    const type = (request.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
    if (type !== "application/x-www-form-urlencoded") throw new HttpError(415, "The console takes forms (application/x-www-form-urlencoded).");
    const body = await readBodyLimited(request, route.takesMessage ? formLimit : SMALL_FORM_BYTES).catch((err) => {
      // the byte count of the urlencoded form is not one the operator sees
      if (err instanceof HttpError && err.status === 413)
        throw new HttpError(
          413,
          route.takesMessage
            ? `The form is too large: a message may be at most ${messageTextLimit} bytes as written (${settings.api.payloadLimitBytes} as compact JSON).`
            : `The form is too large: this form is at most ${SMALL_FORM_BYTES} bytes.`,
        );
      throw err;
    });
    const form = new URLSearchParams(formText(body));
    // The console's forms send each field once: a second value would be dropped without a word.
    // One pass: comparing each field with every other froze the hub for minutes on a large form.
    const seen = new Set<string>();
    for (const key of form.keys()) {
      if (seen.has(key)) throw new HttpError(400, `The form field ${quoteLogText(key.slice(0, 40))} is given more than once; a console form sends it once.`);
      seen.add(key);
    }
    return form;
  }

  /**
   * A POST's query parameters and form fields it does not take: a 400 naming the first, nothing
   * done, as the API answers (`delete?dryRun=true` deleted the thing; `keytype=ec` made an RSA
   * one: attack round 27, F3).
   */
  function refuseUnknownInput(url: URL, form: URLSearchParams, route: Route): void {
    const param = url.searchParams.keys().next().value;
    if (param !== undefined)
      throw new HttpError(400, `This form takes no query parameters (it was given ${quoteLogText(param.slice(0, 40))}); nothing was done.`);
    const taken = ["csrf", ...(route.fields ?? [])];
    for (const key of form.keys()) {
      if (!taken.includes(key)) {
        throw new HttpError(400, `The form field ${quoteLogText(key.slice(0, 40))} is not one this form takes (${taken.join(", ")}); nothing was done.`);
      }
    }
  }

  async function handle(request: Request, origin: RequestOrigin): Promise<Response> {
    const url = new URL(request.url);
    let assets: ConsoleAssets;
    try {
      assets = await consoleAssets();
    } catch (err) {
      log.error("hub.console_assets_failed", { error: err });
      return respond("The console's script is missing from this build.", 500, { "Content-Type": "text/plain; charset=utf-8" });
    }
    // HEAD is answered as GET wherever GET is (RFC 9110 §9.3.2; the server sends no body), as the API does
    const method = request.method === "HEAD" ? "GET" : request.method;
    if (method === "GET" && url.pathname.startsWith("/assets/")) {
      const asset = [assets.js, assets.css].find((a) => a.path === url.pathname);
      if (!asset) return respond("no such asset", 404, { "Content-Type": "text/plain; charset=utf-8" });
      // Content-hashed names: a new build has new names, so a year of caching is safe.
      return respond(asset.body, 200, { "Content-Type": asset.contentType, "Cache-Control": "public, max-age=31536000, immutable" });
    }
    if (url.pathname === "/favicon.ico") return respond(null, 204);

    const secure = isSecureRequest(request, settings.api.publicUrl);
    const signedIn = await sessionOf(request, secure);
    const base = { request, assets, session: signedIn?.session };
    const matching = routes.filter((r) => r.path.test(url.pathname));
    if (matching.length === 0) {
      return signedIn ? errorPage(base, 404, "There is no such page.") : redirect("/signin");
    }
    const route = matching.find((r) => r.method === method);
    if (!route) {
      const allow = matching.flatMap((r) => (r.method === "GET" ? ["GET", "HEAD"] : [r.method])).join(", ");
      return respond(`${request.method} is not allowed on ${url.pathname} (allowed: ${allow})`, 405, {
        Allow: allow,
        "Content-Type": "text/plain; charset=utf-8",
      });
    }

    if (route.signedIn && !signedIn) {
      if (method === "GET" && !wantsJson(request) && url.pathname !== "/events") {
        // A cookie that no longer works (rotated token, restarted hub) is cleared on the way.
        const stale = readCookie(request, sessionCookieName(secure));
        return redirect(stale ? "/signin?expired=1" : "/signin", stale ? { "Set-Cookie": sessionCookie("", secure, true) } : {});
      }
      return errorPage(base, 401, "Sign in first.");
    }
    try {
      let form = new URLSearchParams();
      if (request.method === "POST") {
        if (!fromSameOrigin(request, settings.api.publicUrl)) {
          log.warn("hub.console_cross_site_refused", {
            path: url.pathname,
            origin: request.headers.get("origin") ?? undefined,
            fetch_site: request.headers.get("sec-fetch-site") ?? undefined,
            own_origin: url.origin,
            remote: origin.remote?.(),
          });
          return errorPage(base, 403, "This form was sent from another site; nothing was done.");
        }
        form = await readForm(request, route);
        refuseUnknownInput(url, form, route);
        if (route.signedIn && !csrfMatches(signedIn!.session, request.headers.get("x-csrf-token") ?? form.get("csrf"))) {
          log.warn("hub.console_csrf_refused", { path: url.pathname, remote: origin.remote?.() });
          return errorPage(base, 403, "This form is out of date or was not sent from the console; reload the page and try again.");
        }
      }
      const params = url.pathname.match(route.path)!.slice(1).map(decodePathSegment);
      return await route.handle({
        request,
        url,
        origin,
        params,
        secure,
        assets,
        session: signedIn?.session as ConsoleSession,
        sessionId: signedIn?.id ?? "",
        form,
      });
    } catch (err) {
      const answer = publicError(err);
      if (answer.status >= 500)
        log[answer.kind === "bug" ? "error" : "warn"]("hub.console_failed", {
          method: request.method,
          path: url.pathname,
          status: answer.status,
          kind: answer.kind,
          error: answer.kind === "bug" ? err : answer.detail,
        });
      return errorPage(base, answer.status, answer.message, answer.headers);
    }
  }

  return { fetch: handle, close: () => live.close() };
}
