import { randomUUID } from "node:crypto";
import type { Logger } from "../../shared/log.ts";
import { ENVELOPE_DEPTH, MAX_JSON_DEPTH } from "../../protocol/limits.ts";
import { isoSeconds } from "../../shared/time.ts";
import { archiveStream, openArchive, storedMessageJson } from "../messages/archive.ts";
import { MESSAGE_ID_HEADER } from "../../protocol/headers.ts";
import { isUuid } from "../../protocol/ids.ts";
import { ingressTopic, thingTopics } from "../../protocol/topics.ts";
import type { HubBroker } from "../broker/broker.ts";
import { bearerChallenge, CollectAuthError, Collector, MessageIdConflict } from "../messages/collect.ts";
import type { HubHome } from "../home/home.ts";
import { thingStatus, type HubStore, type MessageQuery, type MessageRecord, type ThingRecord } from "../store/hub-store.ts";
import {
  errorResponse,
  errorToResponse,
  fileResponse,
  HttpError,
  ok,
  parseJsonBody,
  readBodyLimited,
  requireJsonContentType,
  streamResponse,
  unixSecondsParam,
} from "./envelope.ts";
import { createThing, deleteThing, ProvisionError, readDistribution, thingKeyType } from "../things/provision.ts";
import { bearerToken, tokenMatchesAny } from "../home/tokens.ts";

/**
 * The hub's HTTP API: the old cloud's routes under `/{env}/v1` (the README has the reference).
 * `createHubApi` returns a plain `fetch(Request) → Response` handler, so tests call it without a
 * socket and `startHubServer` only hands it to `Bun.serve`.
 *
 * Two kinds of caller: the operator (`Authorization: Bearer <access token>`) on every route but
 * one, and a thing (`Authorization: Bearer <thing JWT>`) on `collect`. Errors never echo a token.
 */
export interface HubApiDeps {
  home: HubHome;
  store: HubStore;
  log: Logger;
  /** absent: `publish` answers 503 (e.g. a test without a broker) */
  broker?: HubBroker;
  collector?: Collector;
  /** Unix ms */
  now?: () => number;
  /** a thing was deleted: disconnect it from the broker now */
  onThingRemoved?: (thingName: string) => void;
}

export interface HubApi {
  fetch(request: Request): Promise<Response>;
  readonly collector: Collector;
}

type Caller = "operator" | "thing";

interface Context {
  request: Request;
  url: URL;
  /** the `{id}` path segment, when the route has one */
  id: string;
}

interface RouteMethod {
  caller: Caller;
  handle(ctx: Context): Promise<Response>;
}

/** JSON of a thing for API answers: no key material, times as ISO strings. */
export function thingJson(thing: ThingRecord, env: string) {
  const iso = (ms: number | null) => (ms === null ? null : isoSeconds(ms));
  return {
    id: thing.id,
    name: thing.name,
    shortName: thing.shortName,
    status: thingStatus(thing),
    createdAt: iso(thing.createdAt),
    verifiedAt: iso(thing.verifiedAt),
    lastSeenAt: iso(thing.lastSeenAt),
    revokedAt: iso(thing.revokedAt),
    certificateSerial: thing.certSerial,
    keyType: thingKeyType(thing),
    topics: thingTopics(thing.name),
    distribution: thing.revokedAt === null ? `/${env}/v1/things/${thing.id}/dist` : null,
  };
}

/**
 * A stored message for the messages route: the archive's format, plus for ingress what the hub
 * knows of its delivery (the archive keeps the old cloud's keys only).
 */
export function messageJson(m: MessageRecord, ownerId: string) {
  const json = storedMessageJson(m, ownerId);
  if (m.messagetype !== "ingress") return json;
  return { ...json, delivery: m.delivery ?? "unknown", deliveredAt: m.deliveredAt == null ? null : isoSeconds(m.deliveredAt) };
}

export function createHubApi(deps: HubApiDeps): HubApi {
  const { home, store } = deps;
  const settings = home.settings;
  const now = deps.now ?? Date.now;
  const log = deps.log.child({ component: "api" });
  const collector = deps.collector ?? new Collector({ store, log: deps.log, now });
  const limit = settings.api.payloadLimitBytes;
  const prefix = `/${settings.env}/v1`;

  async function requireOperator(request: Request): Promise<void> {
    const token = bearerToken(request.headers.get("authorization"));
    if (!token || !tokenMatchesAny(token, await store.activeTokenHashes(now()))) {
      throw new HttpError(401, "a valid access token is required (Authorization: Bearer <token>)", { "WWW-Authenticate": "Bearer" });
    }
  }

  async function thingOr404(id: string): Promise<ThingRecord> {
    const thing = isUuid(id) ? await store.getThing(id.toLowerCase()) : undefined;
    if (!thing) throw new HttpError(404, "no such thing");
    return thing;
  }

  function messageQuery(params: URLSearchParams, withType: boolean): MessageQuery {
    const query: MessageQuery = { startts: unixSecondsParam(params, "startts"), endts: unixSecondsParam(params, "endts") };
    const type = params.get("messagetype");
    if (withType && type) {
      if (type !== "egress" && type !== "ingress") throw new HttpError(400, "messagetype must be egress or ingress");
      query.messagetype = type;
    }
    return query;
  }

  /**
   * The request's JSON body within the hub's limits: `payloadLimitBytes` (413) and MAX_JSON_DEPTH
   * levels of nesting (400), plus `extraDepth` for a body that wraps the message (publish).
   */
  async function jsonBody(request: Request, extraDepth = 0): Promise<unknown> {
    requireJsonContentType(request);
    return parseJsonBody(await readBodyLimited(request, limit), { maxBytes: limit, maxDepth: MAX_JSON_DEPTH + extraDepth });
  }

  async function collect({ request, id }: Context): Promise<Response> {
    // Authentication first: an unauthenticated caller learns nothing about limits or formats.
    let thing: ThingRecord;
    try {
      thing = await collector.authenticate(id.toLowerCase(), bearerToken(request.headers.get("authorization")));
    } catch (err) {
      if (err instanceof CollectAuthError) {
        log.warn("hub.collect_refused", { via: "http", thing_id: id, reason: err.reason });
        throw new HttpError(401, "the thing token was refused", { "WWW-Authenticate": bearerChallenge(err) });
      }
      throw err;
    }
    const messageId = request.headers.get(MESSAGE_ID_HEADER) ?? undefined;
    if (messageId !== undefined && !isUuid(messageId)) throw new HttpError(400, `${MESSAGE_ID_HEADER} must be a UUID`);
    const payload = await jsonBody(request);
    let result;
    try {
      result = await collector.store(thing, messageId?.toLowerCase(), JSON.stringify(payload));
    } catch (err) {
      if (err instanceof MessageIdConflict) throw new HttpError(409, err.message);
      throw err;
    }
    log.info("hub.collect", { via: "http", thing: thing.name, message: result.message.flmessagespk, repeat: result.inserted ? undefined : true });
    return ok({ message: "Message collected.", flthingspk: thing.id, flmessagespk: result.message.flmessagespk }, "Message collected.");
  }

  async function publish({ request, id }: Context): Promise<Response> {
    const thing = await thingOr404(id);
    const body = await jsonBody(request, ENVELOPE_DEPTH);
    if (body === null || typeof body !== "object" || Array.isArray(body) || !("message" in body)) {
      throw new HttpError(400, 'the body must be {"message": ...}');
    }
    if (thing.revokedAt !== null) throw new HttpError(409, "the thing is revoked");
    if (!deps.broker) throw new HttpError(503, "no broker is running");
    const text = JSON.stringify({ message: (body as { message: unknown }).message });
    const at = now();
    const flmessagespk = randomUUID();
    // Stored first, so an ingress the broker took is always on record; undone if the broker refuses.
    // `pending` keeps it until the thing's PUBACK (embedded broker), even across hub restarts.
    const delivery = deps.broker.tracksDelivery ? "pending" : "unknown";
    await store.insertMessage({ flmessagespk, thingId: thing.id, messagetype: "ingress", payload: text, fltimestamp: Math.floor(at / 1000), datecreated: isoSeconds(at), delivery });
    try {
      await deps.broker.sendIngress(thing.name, { flmessagespk, payload: text });
    } catch (err) {
      await store.deleteMessage(flmessagespk);
      log.error("hub.publish_failed", { thing: thing.name, error: err });
      throw new HttpError(503, "the broker did not accept the message");
    }
    const online = deps.broker.connected()?.includes(thing.name) ?? null;
    log.info("hub.publish", { thing: thing.name, message: flmessagespk, online });
    return ok({ message: "Message published.", flthingspk: thing.id, flmessagespk, topic: ingressTopic(thing.name), online }, "Message published.");
  }

  const routes: Record<string, Record<string, RouteMethod>> = {
    things: {
      GET: {
        caller: "operator",
        handle: async () => ok((await store.listThings()).map((t) => thingJson(t, settings.env)), "Things listed."),
      },
      POST: {
        caller: "operator",
        async handle({ request }) {
          const body = await jsonBody(request);
          const { name, keyType } = body !== null && typeof body === "object" ? (body as { name?: unknown; keyType?: unknown }) : { name: undefined, keyType: undefined };
          try {
            const { thing } = await createThing(home, store, name as string, now, { keyType });
            log.info("hub.thing_created", { thing: thing.name, id: thing.id });
            return ok(thingJson(thing, settings.env), "Thing created.", 201);
          } catch (err) {
            if (err instanceof ProvisionError) throw new HttpError(err.status, err.message);
            throw err;
          }
        },
      },
    },
    "things/:id": {
      GET: { caller: "operator", handle: async ({ id }) => ok(thingJson(await thingOr404(id), settings.env), "Thing found.") },
      DELETE: {
        caller: "operator",
        async handle({ id }) {
          const thing = await thingOr404(id);
          await deleteThing(home, store, thing);
          deps.onThingRemoved?.(thing.name);
          log.info("hub.thing_deleted", { thing: thing.name, id: thing.id });
          return ok({ id: thing.id, name: thing.name }, "Thing deleted.");
        },
      },
    },
    "things/:id/messages": {
      GET: {
        caller: "operator",
        async handle({ id, url }) {
          const thing = await thingOr404(id);
          const messages = await store.queryMessages(thing.id, messageQuery(url.searchParams, true));
          return ok(messages.map((m) => messageJson(m, settings.ownerId)), `${messages.length} messages.`);
        },
      },
      DELETE: {
        caller: "operator",
        async handle({ id, url }) {
          const thing = await thingOr404(id);
          const deleted = await store.deleteMessages(thing.id, messageQuery(url.searchParams, true));
          log.info("hub.messages_deleted", { thing: thing.name, count: deleted });
          return ok({ deleted }, `${deleted} messages deleted.`);
        },
      },
    },
    "things/:id/archive": {
      GET: {
        caller: "operator",
        async handle({ id, url }) {
          const thing = await thingOr404(id);
          const query = messageQuery(url.searchParams, true);
          const archive = await openArchive(store, { thingId: thing.id, ownerId: settings.ownerId, query, at: new Date(now()), payloadLimitBytes: limit });
          log.info("hub.archive", { thing: thing.name, messages: archive.count });
          // Streamed: the status and headers are sent before the zip is complete, so a failure
          // half way can only cut the download short (a zip without its end record is invalid).
          const stream = archiveStream(archive, (err) => log.error("hub.archive_failed", { thing: thing.name, written: archive.written(), error: err }));
          return streamResponse(stream, archive.fileName);
        },
      },
    },
    "things/:id/dist": {
      GET: {
        caller: "operator",
        async handle({ id }) {
          const thing = await thingOr404(id);
          const zip = thing.revokedAt === null ? readDistribution(home, thing.id) : undefined;
          if (!zip) throw new HttpError(404, "this thing has no distribution (it was revoked)");
          return fileResponse(zip, `${thing.name}.zip`);
        },
      },
    },
    "things/:id/publish": { POST: { caller: "operator", handle: publish } },
    "things/:id/collect": { POST: { caller: "thing", handle: collect } },
  };

  /** `/things/<id>/archive` → key `things/:id/archive` and the id. */
  function match(pathname: string): { key: string; id: string } | undefined {
    if (!pathname.startsWith(prefix + "/")) return undefined;
    const parts = pathname.slice(prefix.length + 1).replace(/\/+$/, "").split("/");
    if (parts[0] !== "things" || parts.length > 3) return undefined;
    if (parts.length === 1) return { key: "things", id: "" };
    let id: string;
    try {
      id = decodeURIComponent(parts[1]!);
    } catch {
      return undefined;
    }
    return { key: parts.length === 2 ? "things/:id" : `things/:id/${parts[2]}`, id };
  }

  async function handle(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const found = match(url.pathname);
    const methods = found ? routes[found.key] : undefined;
    if (!found || !methods) return errorResponse(404, "no such route");
    const method = methods[request.method];
    if (!method) return errorResponse(405, `${request.method} is not allowed here`, { Allow: Object.keys(methods).join(", ") });
    try {
      if (method.caller === "operator") await requireOperator(request);
      return await method.handle({ request, url, id: found.id });
    } catch (err) {
      const answer = errorToResponse(err);
      if (answer.status >= 500) {
        const fields = { method: request.method, route: found.key, status: answer.status, kind: answer.kind, error: answer.kind === "bug" ? err : answer.detail };
        if (answer.kind === "bug") log.error("hub.api_failed", fields);
        else log.warn("hub.api_failed", fields);
      }
      return answer.response;
    }
  }

  return { fetch: handle, collector };
}

export interface HubServer {
  url: string;
  /** `force` closes open connections at once; otherwise requests in flight finish first */
  stop(force?: boolean): Promise<void>;
}

/**
 * Serves the API on `host:port` (0 = a free port). With `tls` the hub answers HTTPS with the
 * broker's certificate, which things already trust through the hub CA in their keys directory.
 */
export function startHubServer(api: HubApi, opts: { host: string; port: number; tls?: { certPem: string; keyPem: string } }): HubServer {
  const server = Bun.serve({
    hostname: opts.host,
    port: opts.port,
    // No socket-level body bound: Bun would answer a bare 413 before the route authenticates
    // the request and answers in the API's envelope. The routes stream bodies with a limit.
    tls: opts.tls ? { cert: opts.tls.certPem, key: opts.tls.keyPem } : undefined,
    fetch: (request) => api.fetch(request),
    error: (err) => errorToResponse(err).response,
  });
  const host = opts.host.includes(":") ? `[${opts.host}]` : opts.host;
  return {
    url: `${opts.tls ? "https" : "http"}://${host}:${server.port}`,
    async stop(force = true) {
      await server.stop(force);
    },
  };
}
