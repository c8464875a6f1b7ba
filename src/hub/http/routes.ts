/**
 * The hub's HTTP API: the old cloud's routes under `/{env}/v1` (docs have the reference).
 * `createHubApi` returns a plain `fetch(Request) → Response` handler, so tests call it without a
 * socket and `startHubServer` (bun-server.ts) only hands it to `Bun.serve`.
 *
 * Two kinds of caller: the operator (`Authorization: Bearer <access token>`) on every route but
 * a few, and a thing (`Authorization: Bearer <thing JWT>`) on `collect` and renewal. A thing's
 * zip (`dist`) also takes a one-time download token (things/download-tokens.ts) instead of the
 * operator's. Errors never echo a token.
 * A route reads the request, calls a use case (src/hub/hub.ts) and presents its answer; errors
 * become statuses by their kind in one place (envelope.ts `errorToResponse`).
 *
 * Every path outside `/{env}/v1` belongs to the web console (src/hub/console), which calls the
 * same use cases with a signed-in browser instead of a bearer token.
 */

import { MESSAGE_ID_HEADER } from "../../protocol/headers.ts";
import { isUuid } from "../../protocol/ids.ts";
import { ENVELOPE_DEPTH, MAX_JSON_DEPTH } from "../../protocol/limits.ts";
import { ingressTopic } from "../../protocol/topics.ts";
import { parseDuration } from "../../shared/duration.ts";
import { ConflictError, FlashlexError, InputError } from "../../shared/errors.ts";
import { cutGiven, type Logger } from "../../shared/log.ts";
import { pullStream } from "../../shared/pull-stream.ts";
import { isoSeconds } from "../../shared/time.ts";
import { createConsole } from "../console/console.ts";
import { bearerToken } from "../home/tokens.ts";
import type { HubUseCases } from "../hub.ts";
import { bearerChallenge, CollectAuthError } from "../messages/collect.ts";
import { fanOutBodyLimit, MAX_FAN_OUT_THINGS, publishTextLimit, THING_DELETED } from "../messages/messages.ts";
import { type HubObserver, methodLabel } from "../metrics/observer.ts";
import type { MessageQuery, ThingRecord, ThingTarget } from "../store/hub-store.ts";
import { isDownloadToken } from "../things/download-tokens.ts";
import { parseThingFilter } from "../things/things.ts";
import {
  ClientGoneError,
  decodePathSegment,
  errorResponse,
  errorToResponse,
  fileResponse,
  HttpError,
  integerParam,
  logApiFailure,
  ok,
  okStream,
  onlyFields,
  onlyQueryParams,
  parseJsonBody,
  queryParam,
  type RequestOrigin,
  readBodyLimited,
  refuseBody,
  refusedOperator,
  requireJsonContentType,
  routePattern,
  streamResponse,
  UNKNOWN_ORIGIN,
  unixSecondsParam,
} from "./envelope.ts";
import { enrolmentTokenJson, messageJson, renewalAdviceJson, thingJson } from "./presenters.ts";
import { createUpdateApi } from "./update-routes.ts";

/** The largest body of an enrolment, a token request or a renewal, in bytes: a token, a name and a CSR of a few KB. */
const ENROL_BODY_LIMIT = 64 * 1024;

export interface HubApiDeps extends HubUseCases {
  log: Logger;
  /** told of every answered request and every error by kind (the hub's /metrics); absent: nothing is measured */
  observer?: HubObserver;
  /** the console's live view timings (console/events.ts); tests shorten them */
  liveView?: { heartbeatMs?: number; recheckMs?: number };
}

export interface HubApi {
  /** Answers one request; `origin` says where it came in (default: the API's port, address unknown). */
  fetch(request: Request, origin?: RequestOrigin): Promise<Response>;
  /** Ends what stays open between requests (the console's live views); the hub is stopping. */
  close(): void;
}

/**
 * `public`: nobody is authenticated by a header; the route checks what the body carries
 * (enrolment's token). `download`: the operator, or a one-time download token, which the route
 * checks for the thing it names.
 */
type Caller = "operator" | "thing" | "public" | "download";

interface Context {
  request: Request;
  url: URL;
  origin: RequestOrigin;
  /** the `{id}` path segment, when the route has one */
  id: string;
}

interface RouteMethod {
  caller: Caller;
  /**
   * The query parameters an operator route takes; any other is a 400 naming it (none taken when
   * absent). A parameter taken as absent turned `DELETE /things/{id}?dryRun=true` into a delete,
   * and a misspelt bound into every message. Routes a thing calls stay lenient: a newer agent may
   * add a parameter an older hub does not know.
   */
  query?: readonly string[];
  /**
   * `none`: a body is a 400, as an unknown query parameter is (`{"dryRun": true}` in the body of
   * a DELETE deleted the thing). Routes that read one check it themselves.
   */
  body?: "none";
  handle(ctx: Context): Promise<Response>;
}

/** What the message routes (list, delete, archive) take: the range and the type. */
const MESSAGE_QUERY = ["startts", "endts", "messagetype"] as const;

/**
 * The API, with the console for every other path, over the use cases in `deps`. `fetch` does not
 * reject: a failure becomes the status of its kind (errorToResponse), a 5xx logged first.
 */
export function createHubApi(deps: HubApiDeps): HubApi {
  const { home, things, downloads, messages, collector, operators, enrolment, certificates } = deps;
  const settings = home.settings;
  const log = deps.log.child({ component: "api" });
  const limit = settings.api.payloadLimitBytes;
  const prefix = `/${settings.env}/v1`;
  const webConsole = createConsole({ ...deps, sessions: deps.consoleSessions });

  async function requireOperator(request: Request, url: URL, origin: RequestOrigin): Promise<void> {
    if (!(await operators.verify(bearerToken(request.headers.get("authorization"))))) throw refusedOperator(request, url, origin, log);
  }

  /**
   * A download token that is not (or no longer) good for this thing's zip: 401, saying what one
   * is good for, never which rule refused it. Logged with the id the path named (never the token).
   */
  function refusedDownload(id: string, origin: RequestOrigin): HttpError {
    // thing_id: the log budget's source field; cut, as the path is the caller's to make any length
    log.info("hub.download_refused", { thing_id: id.length > 64 ? `${id.slice(0, 64)}…` : id, remote: origin.remote?.() });
    return new HttpError(
      401,
      "the download token was refused: each fetches one thing's zip, once, within an hour of being made (make another: flashlex hub thing dist <thing> --curl)",
      { "WWW-Authenticate": 'Bearer error="invalid_token"' },
    );
  }

  async function thingOr404(id: string): Promise<ThingRecord> {
    const thing = isUuid(id) ? await things.get(id) : undefined;
    if (!thing) throw new HttpError(404, "no such thing");
    return thing;
  }

  /** The range and type of MESSAGE_QUERY; 400 for a bad value or an inverted range. */
  function messageQuery(params: URLSearchParams): MessageQuery {
    const query: MessageQuery = { startts: unixSecondsParam(params, "startts"), endts: unixSecondsParam(params, "endts") };
    // An inverted range matches nothing: refused, not answered with an empty list (or zip).
    if (query.startts !== undefined && query.endts !== undefined && query.endts < query.startts)
      throw new HttpError(400, `startts (${query.startts}) must not be after endts (${query.endts})`);
    const type = queryParam(params, "messagetype");
    if (type !== undefined) {
      if (type !== "egress" && type !== "ingress") throw new HttpError(400, "messagetype must be egress or ingress");
      query.messagetype = type;
    }
    return query;
  }

  /**
   * The request's JSON body within the hub's limits: `maxBytes` (413; default `payloadLimitBytes`)
   * and MAX_JSON_DEPTH levels of nesting (400), plus `extraDepth` for a body that wraps the
   * message (publish).
   */
  async function jsonBody(request: Request, extraDepth = 0, maxBytes = limit): Promise<unknown> {
    requireJsonContentType(request);
    return parseJsonBody(await readBodyLimited(request, maxBytes), { maxBytes, maxDepth: MAX_JSON_DEPTH + extraDepth });
  }

  /**
   * A CollectAuthError as the 401 it answers: the one refusal the kinds cannot express (RFC 6750
   * wants a challenge), the reason (unknown, revoked, bad signature...) in the log, never in the
   * answer. Anything else is given back as it is.
   */
  function refusedCollect(err: unknown, thingId: string, origin: RequestOrigin): unknown {
    if (!(err instanceof CollectAuthError)) return err;
    log.warn("hub.collect_refused", { via: "http", thing_id: thingId, reason: err.reason, remote: origin.remote?.() });
    return new HttpError(401, "the thing token was refused", { "WWW-Authenticate": bearerChallenge(err) });
  }

  async function collect({ request, id, origin }: Context): Promise<Response> {
    // Authentication first: an unauthenticated caller learns nothing about limits or formats.
    let thing: ThingRecord;
    try {
      thing = await collector.authenticate(id.toLowerCase(), bearerToken(request.headers.get("authorization")));
    } catch (err) {
      throw refusedCollect(err, id, origin);
    }
    let payload: unknown;
    const messageId = request.headers.get(MESSAGE_ID_HEADER) ?? undefined;
    try {
      // Given twice, the Fetch API joins the values with ", ": say that, not "not a UUID"
      if (messageId?.includes(",")) throw new HttpError(400, `${MESSAGE_ID_HEADER} is given more than once; give it once`);
      if (messageId !== undefined && !isUuid(messageId)) throw new HttpError(400, `${MESSAGE_ID_HEADER} must be a UUID`);
      payload = await jsonBody(request);
    } catch (err) {
      // The thing will not send this message again (its outbox keeps it as rejected): say so
      // here, where its owner looks, as the MQTT path does (hub.collect_dropped).
      if (err instanceof HttpError)
        log.warn("hub.collect_rejected", { via: "http", thing: thing.name, status: err.status, reason: err.message, remote: origin.remote?.() });
      throw err;
    }
    let result: Awaited<ReturnType<typeof collector.store>>;
    try {
      result = await collector.store(thing, messageId?.toLowerCase(), JSON.stringify(payload));
    } catch (err) {
      // a thing deleted between its lookup and the commit is refused as any unknown thing
      throw refusedCollect(err, id, origin);
    }
    log.info("hub.collect", { via: "http", thing: thing.name, message: result.message.flmessagespk, repeat: result.inserted ? undefined : true });
    return ok({ message: "Message collected.", flthingspk: thing.id, flmessagespk: result.message.flmessagespk }, "Message collected.");
  }

  async function publish({ request, id }: Context): Promise<Response> {
    const thing = await thingOr404(id);
    // the body as written may be up to publishTextLimit; the message itself is held to the limit (Messages.send)
    const body = await jsonBody(request, ENVELOPE_DEPTH, publishTextLimit(limit));
    if (body === null || typeof body !== "object" || Array.isArray(body) || !("message" in body)) {
      throw new HttpError(400, 'the body must be {"message": ...}');
    }
    onlyFields(body as Record<string, unknown>, ["message"]);
    const { flmessagespk, online } = await messages.send(thing, (body as { message: unknown }).message);
    return ok({ message: "Message published.", flthingspk: thing.id, flmessagespk, topic: ingressTopic(thing.name), online }, "Message published.");
  }

  /**
   * A fan-out: `{"things": [<id>, ...], "message": ...}`, one copy to each thing. Every id is
   * checked first (400 malformed or repeated, 404 naming the unknown ones); then Messages.sendToMany.
   */
  async function publishToMany({ request }: Context): Promise<Response> {
    requireJsonContentType(request);
    const maxBytes = fanOutBodyLimit(limit);
    const body = parseJsonBody(await readBodyLimited(request, maxBytes), { maxBytes, maxDepth: MAX_JSON_DEPTH + ENVELOPE_DEPTH });
    if (body === null || typeof body !== "object" || Array.isArray(body) || !("message" in body) || !("things" in body)) {
      throw new HttpError(400, 'the body must be {"things": [<thing id>, ...], "message": ...}');
    }
    onlyFields(body as Record<string, unknown>, ["things", "message"]);
    const ids = (body as { things: unknown }).things;
    if (!Array.isArray(ids) || ids.length === 0 || ids.length > MAX_FAN_OUT_THINGS) {
      throw new HttpError(400, `things must be an array of 1 to ${MAX_FAN_OUT_THINGS} thing ids`);
    }
    const seen = new Set<string>();
    for (const [i, id] of ids.entries()) {
      if (typeof id !== "string" || !isUuid(id)) throw new HttpError(400, `things[${i}] is not a thing id (a UUID)`);
      if (seen.has(id.toLowerCase())) throw new HttpError(400, `things[${i}] repeats ${id}`);
      seen.add(id.toLowerCase());
    }
    const found = await things.targets([...seen]);
    const unknown = found.flatMap((thing, i) => (thing ? [] : [`things[${i}] ${ids[i]}`]));
    if (unknown.length) {
      const more = unknown.length > 3 ? ` and ${unknown.length - 3} more` : "";
      throw new HttpError(404, `no such thing: ${unknown.slice(0, 3).join(", ")}${more}`);
    }
    const targets = found as ThingTarget[];
    const sent = await messages.sendToMany(targets, (body as { message: unknown }).message);
    const refused = sent.filter((s) => "refused" in s).length;
    const deleted = sent.filter((s) => "thingDeleted" in s).length;
    if (deleted === sent.length) throw new ConflictError(THING_DELETED);
    if (refused + deleted === sent.length) throw new FlashlexError("the broker did not accept the messages", "unavailable", { clientSafe: true });
    const result = sent.map((s, i) => ({
      flthingspk: targets[i]!.id,
      topic: ingressTopic(targets[i]!.name),
      ...("refused" in s ? { error: "the broker did not accept the message; it is not stored" } : "thingDeleted" in s ? { error: THING_DELETED } : s),
    }));
    const missed = [refused ? `the broker did not accept ${refused}` : "", deleted ? `${deleted} were deleted meanwhile` : ""].filter(Boolean).join("; ");
    const summary = missed
      ? `Published to ${sent.length - refused - deleted} of ${sent.length} things; ${missed}.`
      : `Published to ${sent.length} ${sent.length === 1 ? "thing" : "things"}.`;
    return ok(result, summary);
  }

  /** The thing a JWT-authenticated request is from, and the key that signed it; refusals as collect's (401 with a challenge). */
  async function thingCaller({ request, id, origin }: Context, route: string): Promise<{ thing: ThingRecord; publicKeyPem: string }> {
    try {
      return await collector.authenticateKey(id.toLowerCase(), bearerToken(request.headers.get("authorization")));
    } catch (err) {
      if (err instanceof CollectAuthError) {
        log.warn("hub.thing_refused", { route, thing_id: id, reason: err.reason, remote: origin.remote?.() });
        throw new HttpError(401, "the thing token was refused", { "WWW-Authenticate": bearerChallenge(err) });
      }
      throw err;
    }
  }

  /**
   * A small JSON object body holding only `fields` (400 naming one it does not: `{"maxuses": 5}`
   * made a one-use token without a word), at most ENROL_BODY_LIMIT bytes whatever
   * payloadLimitBytes says (it is read before the caller is known). `optional`: every field is,
   * so no body, or an empty one, is `{}` whatever its Content-Type. Throws HttpError 400, 413, 415.
   */
  async function smallJsonObject(request: Request, fields: readonly string[], { optional = false } = {}): Promise<Record<string, unknown>> {
    // An optional body may be left out however a client leaves it out (no body, Content-Length:
    // 0, an empty chunked one), with or without a Content-Type: read first, then judge the type.
    if (!optional) requireJsonContentType(request);
    const bytes = await readBodyLimited(request, ENROL_BODY_LIMIT);
    if (optional && new TextDecoder().decode(bytes).trim() === "") return {};
    if (optional) requireJsonContentType(request);
    const body = parseJsonBody(bytes, { maxBytes: ENROL_BODY_LIMIT, maxDepth: 4 });
    if (body === null || typeof body !== "object" || Array.isArray(body)) throw new HttpError(400, "the body must be a JSON object");
    onlyFields(body as Record<string, unknown>, fields);
    return body as Record<string, unknown>;
  }

  const routes: Record<string, Record<string, RouteMethod>> = {
    enroll: {
      GET: {
        caller: "public",
        handle: async () => {
          const info = enrolment.info();
          return ok({ ownerPrefix: info.ownerPrefix, caCertificate: info.caPem, caFingerprint: info.caFingerprint }, "Enrolment information.");
        },
      },
      POST: {
        caller: "public",
        async handle({ request, origin }) {
          const body = await smallJsonObject(request, ["token", "name", "csr"]);
          const enrolled = await enrolment.enrol({ token: body.token, name: body.name, csr: body.csr }, "http", origin.remote?.());
          return ok(
            {
              ...thingJson(enrolled.thing, settings.env),
              certificate: enrolled.certPem,
              caCertificate: enrolled.caPem,
              config: enrolled.configText,
            },
            enrolled.repeated ? "Thing already enrolled with this key; its certificate again." : "Thing enrolled.",
            enrolled.repeated ? 200 : 201,
          );
        },
      },
    },
    "enroll-tokens": {
      GET: { caller: "operator", handle: async () => ok((await enrolment.tokens.list()).map(enrolmentTokenJson), "Enrolment tokens listed.") },
      POST: {
        caller: "operator",
        async handle({ request }) {
          const body = await smallJsonObject(request, ["maxUses", "expires", "namePrefix"], { optional: true });
          const lifetimeMs = body.expires === undefined ? undefined : typeof body.expires === "string" ? parseDuration(body.expires) : undefined;
          if (body.expires !== undefined && lifetimeMs === undefined) throw new HttpError(400, "expires must be a duration such as 24h or 7d");
          // null is not "absent": `String(null)` made a token for names starting with "null"
          if (body.maxUses !== undefined && typeof body.maxUses !== "number") throw new HttpError(400, "maxUses must be a number of uses such as 10");
          if (body.namePrefix !== undefined && typeof body.namePrefix !== "string") throw new HttpError(400, 'namePrefix must be a text such as "kitchen-"');
          const created = await enrolment.tokens.create({ maxUses: body.maxUses, lifetimeMs, namePrefix: body.namePrefix });
          log.info("hub.enroll_token_created", { id: created.record.id, maxUses: created.record.maxUses });
          return ok({ ...enrolmentTokenJson({ ...created.record, state: "active" }), token: created.token }, "Enrolment token created.", 201);
        },
      },
    },
    "enroll-tokens/:id": {
      DELETE: {
        caller: "operator",
        body: "none",
        async handle({ id }) {
          // an id no token has is a resource that is not there: 404, as for things
          // by id, or by the token itself (a leaked one); the answer names the id only
          const { id: tokenId, changed } = await enrolment.tokens.revoke(id).catch((err) => {
            throw err instanceof InputError ? new HttpError(404, err.message) : err;
          });
          return ok({ id: tokenId, revoked: true, changed }, changed ? "Enrolment token revoked." : "Enrolment token was already revoked.");
        },
      },
    },
    "things/:id/certificate": {
      GET: {
        caller: "thing",
        async handle(ctx) {
          const { thing } = await thingCaller(ctx, "things/:id/certificate");
          return ok(renewalAdviceJson(certificates.advice(thing)), "Certificate status.");
        },
      },
      POST: {
        caller: "thing",
        async handle(ctx) {
          const { thing, publicKeyPem } = await thingCaller(ctx, "things/:id/certificate");
          const body = await smallJsonObject(ctx.request, ["csr"]);
          const renewed = await certificates.renew(thing, body.csr, publicKeyPem);
          log.info("hub.certificate_renewed", { thing: thing.name, notAfter: isoSeconds(renewed.notAfter) });
          if (renewed.zipLeft) {
            log.error("hub.distribution_not_removed", {
              thing: thing.name,
              error: renewed.zipLeft,
              fix: "remove it by hand: it holds the key the thing replaced",
            });
          }
          return ok({ certificate: renewed.certPem, caCertificate: enrolment.info().caPem, notAfter: isoSeconds(renewed.notAfter) }, "Certificate renewed.");
        },
      },
    },
    "things/:id/revoke": {
      POST: {
        caller: "operator",
        body: "none",
        async handle({ id }) {
          const thing = await thingOr404(id);
          // the same use case as `hub thing revoke` and the console's Revoke (things.ts)
          const { changed } = await things.revoke(thing);
          log.info("hub.thing_revoked", { via: "api", thing: thing.name, changed });
          return ok({ id: thing.id, name: thing.name, changed }, changed ? "Thing revoked." : "The thing was already revoked.");
        },
      },
    },
    "things/:id/rotate": {
      POST: {
        caller: "operator",
        body: "none",
        async handle({ id }) {
          const thing = await thingOr404(id);
          const { checkAfterMs } = await certificates.requestRotation(thing);
          log.info("hub.rotation_requested", { thing: thing.name });
          return ok({ id: thing.id, name: thing.name, checkAfterSeconds: Math.round(checkAfterMs / 1000) }, "Renewal requested.");
        },
      },
    },
    things: {
      GET: {
        caller: "operator",
        query: ["q", "status"],
        async handle({ url }) {
          const filter = parseThingFilter({ name: queryParam(url.searchParams, "q"), status: queryParam(url.searchParams, "status") });
          return ok(
            (await things.list(filter)).map((t) => ({ ...thingJson(t, settings.env), connected: things.isConnected(t) })),
            "Things listed.",
          );
        },
      },
      POST: {
        caller: "operator",
        async handle({ request }) {
          const body = await jsonBody(request);
          // as the other routes that take an object ([] or "x" was "a undefined: a thing name is ...")
          if (body === null || typeof body !== "object" || Array.isArray(body)) throw new HttpError(400, 'the body must be a JSON object: {"name": ...}');
          onlyFields(body as Record<string, unknown>, ["name", "keyType"]);
          const { name, keyType } = body as { name?: unknown; keyType?: unknown };
          const { thing } = await things.create(name, { keyType });
          log.info("hub.thing_created", { thing: thing.name, id: thing.id });
          return ok(thingJson(thing, settings.env), "Thing created.", 201);
        },
      },
    },
    "things/:id": {
      GET: {
        caller: "operator",
        handle: async ({ id }) => {
          const thing = await thingOr404(id);
          // what the console shows: connected to the embedded broker now (null: an external broker cannot tell)
          return ok({ ...thingJson(thing, settings.env), connected: things.isConnected(thing) }, "Thing found.");
        },
      },
      DELETE: {
        caller: "operator",
        body: "none",
        async handle({ id }) {
          const thing = await thingOr404(id);
          await things.delete(thing);
          log.info("hub.thing_deleted", { thing: thing.name, id: thing.id });
          return ok({ id: thing.id, name: thing.name }, "Thing deleted.");
        },
      },
    },
    "things/:id/messages": {
      GET: {
        caller: "operator",
        query: MESSAGE_QUERY,
        async handle({ id, url }) {
          const thing = await thingOr404(id);
          // Streamed a page at a time: a range of any size is one page in memory (it was the whole
          // answer: 400 MB of messages took the hub to 1.3 GB). The count is the range's when the
          // answer began; messages deleted while it is read are left out.
          const { count, pages } = await messages.pages(thing, messageQuery(url.searchParams));
          const json = (async function* () {
            for await (const page of pages) yield page.map((m) => messageJson(m, settings.ownerId));
          })();
          return okStream(`${count} messages.`, json, (err) => log.error("hub.messages_failed", { thing: thing.name, error: err }));
        },
      },
      DELETE: {
        caller: "operator",
        query: MESSAGE_QUERY,
        body: "none",
        async handle({ id, url }) {
          const thing = await thingOr404(id);
          const deleted = await messages.delete(thing, messageQuery(url.searchParams));
          return ok({ deleted }, `${deleted} messages deleted.`);
        },
      },
    },
    "things/:id/archive": {
      GET: {
        caller: "operator",
        query: MESSAGE_QUERY,
        async handle({ id, url }) {
          const thing = await thingOr404(id);
          const archive = await messages.archive(thing, messageQuery(url.searchParams));
          log.info("hub.archive", { thing: thing.name, messages: archive.count });
          // Streamed: the status and headers are sent before the zip is complete, so a failure
          // half way can only cut the download short (a zip without its end record is invalid).
          const stream = pullStream(archive.chunks, (err) => log.error("hub.archive_failed", { thing: thing.name, written: archive.written(), error: err }));
          return streamResponse(stream, archive.fileName);
        },
      },
    },
    "things/:id/dist": {
      GET: {
        caller: "download",
        async handle({ id, request, origin }) {
          const token = bearerToken(request.headers.get("authorization"));
          // Checked before anything is looked up: a token's holder learns nothing of other things.
          const byToken = isDownloadToken(token);
          if (byToken && !(await downloads.usable(id, token))) throw refusedDownload(id, origin);
          const thing = await thingOr404(id);
          const found = things.distribution(thing);
          if ("missing" in found) throw new HttpError(404, `this thing has no distribution: ${found.missing}`);
          if (byToken) {
            // HEAD (curl -I) looks without using the token up; two GETs racing: one gets the zip
            if (request.method !== "HEAD" && !(await downloads.use(id, token))) throw refusedDownload(id, origin);
            log.info("hub.distribution_downloaded", { via: "download token", thing: thing.name, head: request.method === "HEAD" || undefined });
          }
          return fileResponse(found.zip, `${thing.name}.zip`);
        },
      },
    },
    "things/:id/hourly": {
      GET: {
        caller: "operator",
        query: ["hours"],
        async handle({ id, url }) {
          const thing = await thingOr404(id);
          const hours = await messages.hourly(thing, integerParam(url.searchParams, "hours", { min: 1, max: 168, fallback: 24 }));
          return ok(
            hours.map((h) => ({ hour: isoSeconds(h.hour * 1000), egress: h.egress, ingress: h.ingress })),
            `${hours.length} hours.`,
          );
        },
      },
    },
    "things/:id/publish": { POST: { caller: "operator", handle: publish } },
    publish: { POST: { caller: "operator", handle: publishToMany } },
    "things/:id/collect": { POST: { caller: "thing", handle: collect } },
  };

  /** `/things/<id>/archive` → key `things/:id/archive` and the id. */
  function match(pathname: string): { key: string; id: string } | undefined {
    if (!pathname.startsWith(`${prefix}/`)) return undefined;
    const parts = pathname
      .slice(prefix.length + 1)
      .replace(/\/+$/, "")
      .split("/");
    if (parts[0] === "enroll" && parts.length === 1) return { key: "enroll", id: "" };
    if (parts[0] === "publish" && parts.length === 1) return { key: "publish", id: "" };
    if (parts[0] === "enroll-tokens" && parts.length <= 2) {
      if (parts.length === 1) return { key: "enroll-tokens", id: "" };
      return /^[0-9a-f]{1,64}$/i.test(parts[1]!) ? { key: "enroll-tokens/:id", id: parts[1]!.toLowerCase() } : undefined;
    }
    if (parts[0] !== "things" || parts.length > 3) return undefined;
    if (parts.length === 1) return { key: "things", id: "" };
    return { key: parts.length === 2 ? "things/:id" : `things/:id/${parts[2]}`, id: decodePathSegment(parts[1]!) };
  }

  /**
   * A thing's collect or renewal under another env: most likely a thing made before hub.env was
   * changed, whose config.yml still has the old one. Its agent queues each message for ever on
   * the 404, so the hub says it (WARN, within the log budget: anyone may send such paths).
   */
  function noteOtherEnv(url: URL, origin: RequestOrigin): void {
    const thingRoute = /^\/([^/]+)\/v1\/things\/([^/]+)\/(collect|certificate)\/?$/.exec(url.pathname);
    if (!thingRoute) return;
    log.warn("hub.other_env_refused", {
      env: cutGiven(thingRoute[1]!),
      thing: cutGiven(thingRoute[2]!),
      route: thingRoute[3],
      remote: origin.remote?.(),
      note: `this hub's env is ${settings.env}: a thing made before hub.env was changed keeps the old one in its config.yml, and is answered 404`,
      fix: `set flashlex.app.api.env: ${settings.env} in that thing's config.yml (or hub.env back)`,
    });
  }

  // signed self-update: its own routes (update-routes.ts), asked first
  const updateApi = createUpdateApi(deps);

  /**
   * `found` is match(url.pathname), made once by `observed` for the route and for its metrics
   * label (a second match was a few µs of every collect).
   */
  async function handle(request: Request, url: URL, origin: RequestOrigin, found: ReturnType<typeof match>): Promise<Response> {
    // API-shaped paths (another env's included) answer as the API does; everything else is the console's.
    if (!API_PATH.test(url.pathname)) return webConsole.fetch(request, origin);
    const response = await handleApi(request, url, origin, found);
    // What the API answers is the caller's own (a thing's distribution zip holds its private key,
    // a new enrolment token is shown once): no cache keeps it, as the console's pages say too.
    // A thing's POST (collect, by the thousand a second) is left as it is: a POST's answer is not
    // cached unless it says so.
    const thingPost = request.method === "POST" && found !== undefined && routes[found.key]?.POST?.caller !== "operator";
    if (!thingPost && !response.headers.has("Cache-Control")) response.headers.set("Cache-Control", "no-store");
    return response;
  }

  async function handleApi(request: Request, url: URL, origin: RequestOrigin, found: ReturnType<typeof match>): Promise<Response> {
    const updateAnswer = await updateApi.handle(request, url, origin);
    if (updateAnswer) return updateAnswer;
    const methods = found ? routes[found.key] : undefined;
    if (!found || !methods) {
      // A client that left out the env, or has another hub's, hears where this hub's API is.
      const elsewhere = url.pathname !== prefix && !url.pathname.startsWith(`${prefix}/`);
      if (elsewhere) noteOtherEnv(url, origin);
      return errorResponse(404, elsewhere ? `no such route: this hub's API is under ${prefix}` : "no such route");
    }
    // HEAD is GET without the body (RFC 9110 §9.3.2; the server leaves the body out)
    const method = methods[request.method] ?? (request.method === "HEAD" ? methods.GET : undefined);
    if (!method) {
      const allow = Object.keys(methods).flatMap((m) => (m === "GET" ? ["GET", "HEAD"] : [m]));
      return errorResponse(405, `${request.method} is not allowed here`, { Allow: allow.join(", ") });
    }
    try {
      if (method.caller === "operator" || method.caller === "download") {
        // a download token is checked by its route, for the thing the path names
        const byDownloadToken = method.caller === "download" && isDownloadToken(bearerToken(request.headers.get("authorization")));
        if (origin.via !== "local" && !byDownloadToken) await requireOperator(request, url, origin);
        onlyQueryParams(url.searchParams, method.query ?? []);
        if (method.body === "none") await refuseBody(request);
      }
      return await method.handle({ request, url, origin, id: found.id });
    } catch (err) {
      const answer = errorToResponse(err, origin.via === "local");
      if (answer.kind) deps.observer?.error(answer.kind, "http");
      if (err instanceof ClientGoneError) {
        // Not the hub's fault, and only an authenticated caller gets this far (the body is read
        // after the token is checked): one INFO line, as a completed request gets.
        log.info("hub.request_abandoned", {
          method: request.method,
          route: found.key,
          id: found.id || undefined,
          received: err.receivedBytes,
          declared: request.headers.get("content-length") ?? undefined,
        });
        return answer.response;
      }
      logApiFailure(log, { method: request.method, route: found.key, id: found.id }, answer, err);
      return answer.response;
    }
  }

  /** The updates API's own routes (update-routes.ts), for labels only. */
  const UPDATE_ROUTES = new Set(["update-key", "releases", "updates", "things/:id/update", "things/:id/update/binary"]);

  /**
   * The pattern of the route `pathname` is answered by, as a metrics label: a key of `routes`,
   * an update route, `console` (every page outside the API) or `unmatched`. Never the path
   * itself: ids would make a series per thing, and a client could mint any number of them.
   */
  function routeLabel(pathname: string, found: ReturnType<typeof match>): string {
    if (!API_PATH.test(pathname)) return "console";
    if (found && routes[found.key]) return found.key;
    const parts = pathname
      .slice(prefix.length + 1)
      .replace(/\/+$/, "")
      .split("/");
    const key = routePattern(parts);
    return pathname.startsWith(`${prefix}/`) && UPDATE_ROUTES.has(key) ? key : "unmatched";
  }

  /**
   * Every request's way in: its URL, built by the server from the Host header, parsed once. A
   * request whose URL cannot be parsed (no Host, or one with a space) is the client's mistake,
   * 400; a failure nothing below caught is logged before its 500.
   */
  async function observed(request: Request, origin: RequestOrigin = UNKNOWN_ORIGIN): Promise<Response> {
    let url: URL | undefined;
    try {
      url = new URL(request.url);
    } catch {
      // answered below, and counted as unmatched
    }
    const found = url ? match(url.pathname) : undefined;
    const answer = async () => {
      if (!url) return errorResponse(400, "the request has no valid Host header (the host name of this hub)");
      try {
        return await handle(request, url, origin, found);
      } catch (err) {
        const answer = errorToResponse(err);
        logApiFailure(log, { method: request.method, route: routeLabel(url.pathname, found) }, answer, err);
        return answer.response;
      }
    };
    const observer = deps.observer;
    if (!observer) return answer();
    const started = performance.now();
    let status = 500;
    try {
      const response = await answer();
      status = response.status;
      return response;
    } finally {
      observer.request({
        route: url ? routeLabel(url.pathname, found) : "unmatched",
        method: methodLabel(request.method),
        status,
        seconds: (performance.now() - started) / 1000,
      });
    }
  }

  return { fetch: observed, close: () => webConsole.close() };
}

/**
 * Paths of the API (any env's, or none: `/v1/...` is an API client that left the env out, told
 * so in JSON rather than sent to the console's sign-in page); the rest are the console's.
 */
const API_PATH = /^(\/[^/]+)?\/v1(\/|$)/;
