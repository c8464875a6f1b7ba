/**
 * The update routes of the HTTP API (docs/updates.md), under `/{env}/v1` like the rest; routes.ts
 * asks here first and answers the other routes itself.
 *
 * | route                                          | caller    | does                                      |
 * |------------------------------------------------|-----------|-------------------------------------------|
 * | `GET update-key`                               | anyone    | the hub's update public key (it is public: enrolment hands it out) |
 * | `GET releases`                                 | operator  | the stored releases                        |
 * | `GET updates`, `POST updates`                  | operator  | the latest rollout and each thing's state; start a rollout |
 * | `POST updates/stop`                            | operator  | stop the running rollout (409 when none runs) |
 * | `GET things/{id}/update?version=V&target=T[&outbox=N&outboxAge=S]` | thing JWT | says what the thing runs (and its outbox: entries, oldest age in seconds); answers the release to install, or null |
 * | `POST things/{id}/update`                      | thing JWT | `{state, version, running, detail}`: how the update goes |
 * | `GET things/{id}/update/binary?version=V&target=T` | thing JWT | the binary of that release for that target |
 *
 * A thing authenticates as for collect (the same JWT, the same one function).
 */
import { type Stats, statSync } from "node:fs";
import { isUuid } from "../../protocol/ids.ts";
import { VERSION_PATTERN } from "../../protocol/release-manifest.ts";
import type { Logger } from "../../shared/log.ts";
import { bearerToken } from "../home/tokens.ts";
import type { HubUseCases } from "../hub.ts";
import { bearerChallenge, CollectAuthError } from "../messages/collect.ts";
import type { HubObserver } from "../metrics/observer.ts";
import type { ThingRecord } from "../store/hub-store.ts";
import { MAX_DETAIL_CHARS, type OutboxReport, REPORTED_STATES, type ReportedState } from "../updates/updates.ts";
import {
  errorResponse,
  errorToResponse,
  HttpError,
  integerParam,
  logApiFailure,
  ok,
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
} from "./envelope.ts";
import { releaseJson, rolloutJson, rolloutStatusJson } from "./presenters.ts";

export interface UpdateApi {
  /** The answer for an update route, or undefined when `url` is not one (routes.ts goes on). */
  handle(request: Request, url: URL, origin: RequestOrigin): Promise<Response | undefined>;
}

const TARGET = /^[a-z0-9][a-z0-9-]{0,39}$/;
/** What a thing may report as its outbox depth or age (a count, or seconds): a non-negative integer of at most 12 digits. */
const MAX_COUNT = 999_999_999_999;

/**
 * The outbox a polling thing reports (docs/metrics.md): `outbox` entries waiting and `outboxAge`,
 * the oldest one's age in whole seconds. Both optional (agents before metrics send neither);
 * one without the other, or not a count, is a 400 naming it.
 */
function outboxParams(url: URL): OutboxReport | undefined {
  const depth = queryParam(url.searchParams, "outbox");
  const age = queryParam(url.searchParams, "outboxAge");
  if (depth === undefined && age === undefined) return undefined;
  if (depth === undefined) throw new HttpError(400, "outbox must be a count of messages (given with outboxAge)");
  if (age === undefined) throw new HttpError(400, "outboxAge must be whole seconds (given with outbox)");
  return {
    depth: integerParam(url.searchParams, "outbox", { min: 0, max: MAX_COUNT, fallback: 0 }),
    oldestAgeSeconds: integerParam(url.searchParams, "outboxAge", { min: 0, max: MAX_COUNT, fallback: 0 }),
  };
}
const BODY_LIMIT = 16 * 1024;

/**
 * The routes above, for routes.ts to ask first. `handle` does not reject: a failure becomes the
 * status of its kind (errorToResponse), a 5xx logged first.
 */
export function createUpdateApi(deps: HubUseCases & { log: Logger; observer?: HubObserver }): UpdateApi {
  const { updates, collector, operators, things } = deps;
  const prefix = `/${deps.home.settings.env}/v1/`;
  const log = deps.log.child({ component: "api" });

  async function requireOperator(request: Request, url: URL, origin: RequestOrigin): Promise<void> {
    if (origin.via === "local") return;
    if (!(await operators.verify(bearerToken(request.headers.get("authorization"))))) throw refusedOperator(request, url, origin, log);
  }

  async function requireThing(request: Request, id: string, origin: RequestOrigin): Promise<ThingRecord> {
    try {
      return await collector.authenticate(id.toLowerCase(), bearerToken(request.headers.get("authorization")));
    } catch (err) {
      if (err instanceof CollectAuthError) {
        log.warn("hub.update_refused", { thing_id: id, reason: err.reason, remote: origin.remote?.() });
        throw new HttpError(401, "the thing token was refused", { "WWW-Authenticate": bearerChallenge(err) });
      }
      throw err;
    }
  }

  function param(url: URL, name: string, pattern: RegExp): string {
    const value = queryParam(url.searchParams, name) ?? "";
    if (!pattern.test(value)) throw new HttpError(400, `${name} is missing or malformed`);
    return value;
  }

  /** The body's `name` as a string (absent: ""); anything else (an array, an object) is a 400 naming it and what it must be. */
  function stringField(b: Record<string, unknown>, name: string, must = "a string"): string {
    const value = b[name] ?? "";
    if (typeof value !== "string") throw new HttpError(400, `${name} must be ${must}`);
    return value;
  }

  /**
   * The JSON object body; with `fields`, only those (an operator's request: a misspelt field is a
   * 400, not a default). A thing's report takes any: an agent newer than the hub may say more.
   */
  async function body(request: Request, fields?: readonly string[]): Promise<Record<string, unknown>> {
    requireJsonContentType(request);
    const parsed = parseJsonBody(await readBodyLimited(request, BODY_LIMIT), { maxBytes: BODY_LIMIT, maxDepth: 4 });
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new HttpError(400, "the body must be a JSON object");
    if (fields) onlyFields(parsed as Record<string, unknown>, fields);
    return parsed as Record<string, unknown>;
  }

  /**
   * The methods the route at `path` takes, or undefined when no update route is there. As the
   * other routes: another method is a 405 with Allow, and HEAD is answered wherever GET is.
   */
  function methodsAt(path: readonly string[]): readonly string[] | undefined {
    const [first, , third, fourth] = path;
    if (path.length === 1 && (first === "update-key" || first === "releases")) return ["GET"];
    if (path.length === 1 && first === "updates") return ["GET", "POST"];
    if (path.length === 2 && first === "updates" && path[1] === "stop") return ["POST"];
    if (first === "things" && third === "update" && path.length === 3) return ["GET", "POST"];
    if (first === "things" && third === "update" && path.length === 4 && fourth === "binary") return ["GET"];
    return undefined;
  }

  async function route(request: Request, url: URL, origin: RequestOrigin, path: string[]): Promise<Response | undefined> {
    const taken = methodsAt(path);
    if (!taken) return undefined;
    // HEAD is GET without the body (RFC 9110 §9.3.2; the server leaves the body out)
    const method = request.method === "HEAD" && taken.includes("GET") ? "GET" : request.method;
    if (!taken.includes(method)) {
      const allow = taken.flatMap((m) => (m === "GET" ? ["GET", "HEAD"] : [m]));
      return errorResponse(405, `${request.method} is not allowed here`, { Allow: allow.join(", ") });
    }
    const [first, id = ""] = path;
    if (path.length === 1 && first === "update-key" && method === "GET") return ok({ publicKey: await updates.publicKey() }, "The hub's update public key.");
    if (path.length === 1 && first === "releases" && method === "GET") {
      await requireOperator(request, url, origin);
      onlyQueryParams(url.searchParams, []);
      return ok((await updates.listReleases()).map(releaseJson), "Releases listed.");
    }
    if (path.length === 1 && first === "updates" && method === "GET") {
      await requireOperator(request, url, origin);
      onlyQueryParams(url.searchParams, []);
      return ok(rolloutStatusJson(await updates.status()), "Update status.");
    }
    if (path.length === 1 && first === "updates" && method === "POST") {
      await requireOperator(request, url, origin);
      onlyQueryParams(url.searchParams, []);
      const b = await body(request, ["version", "things", "all", "batch", "maxFailures"]);
      const version = stringField(b, "version");
      // as the CLI's --things and --all: one or the other, never both (all took the whole fleet)
      if (b.all !== undefined && b.all !== true) throw new HttpError(400, "all must be true (or left out, with things)");
      if (b.all === true && b.things !== undefined) throw new HttpError(400, "give things or all, not both");
      if (b.all === undefined && !(Array.isArray(b.things) && b.things.every((ref) => typeof ref === "string"))) {
        throw new HttpError(400, 'things must be an array of thing names or ids (or give "all": true)');
      }
      const refs = (b.things as string[] | undefined) ?? [];
      const chosen = b.all === true ? await things.list() : await Promise.all(refs.map(async (ref) => (await things.find(ref)) ?? ref));
      const unknown = chosen.filter((t) => typeof t === "string");
      if (unknown.length) throw new HttpError(404, `no such thing: ${unknown.join(", ")}`);
      const rollout = await updates.startRollout({
        version,
        things: chosen as ThingRecord[],
        // "10%" or a count, as the CLI's --batch
        batch: b.batch === undefined ? undefined : typeof b.batch === "number" ? String(b.batch) : stringField(b, "batch", "a string or a number"),
        // as given: startRollout refuses what is not a whole number in range (a "2" was read as 0)
        maxFailures: b.maxFailures as number | undefined,
      });
      log.info("hub.rollout_started", { rollout: rollout.id, version, batch_size: rollout.batch_size, max_failures: rollout.max_failures });
      return ok(rolloutJson(rollout), "Rollout started.", 201);
    }
    if (path.length === 2 && first === "updates" && method === "POST") {
      await requireOperator(request, url, origin);
      onlyQueryParams(url.searchParams, []);
      // as the other routes that take none: a body ({"version": ...}) would read as a condition it is not (verify pass 32, F10)
      await refuseBody(request);
      const rollout = await updates.stopRunningRollout("stopped by the operator");
      log.info("hub.rollout_stopped", { rollout: rollout.id, version: rollout.version, via: "api" });
      return ok(rolloutJson(rollout), "Rollout stopped.");
    }
    // things/{id}/update[/binary], as methodsAt says
    if (!isUuid(id)) throw new HttpError(404, "no such thing");
    if (path.length === 3 && method === "GET") {
      const thing = await requireThing(request, id, origin);
      const assignment = await updates.poll(thing, {
        version: param(url, "version", VERSION_PATTERN),
        target: param(url, "target", TARGET),
        outbox: outboxParams(url),
      });
      return ok({ update: assignment ?? null }, assignment ? `Update to ${assignment.version}.` : "No update.");
    }
    if (path.length === 3 && method === "POST") {
      const thing = await requireThing(request, id, origin);
      const b = await body(request);
      const state = b.state as ReportedState;
      if (!REPORTED_STATES.includes(state)) throw new HttpError(400, `state must be one of ${REPORTED_STATES.join(", ")}`);
      const version = stringField(b, "version");
      const running = stringField(b, "running");
      if (!VERSION_PATTERN.test(version) || !VERSION_PATTERN.test(running)) throw new HttpError(400, "version and running must be versions");
      // as much as is stored: a 16 KiB detail at every report grew the hub's log (attack round 28, I4)
      if (b.detail !== undefined && typeof b.detail !== "string") throw new HttpError(400, "detail must be a string");
      const detail = b.detail?.slice(0, MAX_DETAIL_CHARS);
      const applied = await updates.report(thing, { state, version, running, detail });
      log.info("hub.update_report", { thing: thing.name, state, version, running, detail, applied: applied ? undefined : false });
      return ok({ applied }, applied ? "Report stored." : "No update of that version for this thing.");
    }
    // what is left, as methodsAt says: GET things/{id}/update/binary
    const thing = await requireThing(request, id, origin);
    const version = param(url, "version", VERSION_PATTERN);
    const target = param(url, "target", TARGET);
    const binary = await updates.binary(version, target);
    if (!binary) throw new HttpError(404, `release ${version} has no binary for ${target}`);
    const file = releaseFileState(binary.path, binary.size);
    if (file.problem !== undefined) {
      log.error("hub.release_file_missing", {
        version,
        target,
        file: binary.path,
        found: file.problem,
        fix: "add the release again: flashlex hub release add DIR",
      });
      const what = file.problem === "nothing" ? "is no longer on the hub" : "on the hub is damaged";
      throw new HttpError(410, `release ${version}'s binary for ${target} ${what}; add the release again`);
    }
    log.info("hub.update_download", { thing: thing.name, version, target });
    return new Response(Bun.file(binary.path), { headers: { "Content-Type": "application/octet-stream", "Content-Length": String(binary.size) } });
  }

  return {
    async handle(request, url, origin) {
      if (!url.pathname.startsWith(prefix)) return undefined;
      const path = url.pathname.slice(prefix.length).replace(/\/+$/, "").split("/");
      try {
        return await route(request, url, origin, path);
      } catch (err) {
        const answer = errorToResponse(err, origin.via === "local");
        if (answer.kind) deps.observer?.error(answer.kind, "http");
        // the pattern, as the other routes log it: things/:id/update, the id apart
        const route = routePattern(path);
        logApiFailure(log, { method: request.method, route, id: route.startsWith("things/:id") ? path[1] : undefined }, answer, err);
        return answer.response;
      }
    },
  };
}

/**
 * What is at a release binary's path against the `size` its manifest signs: `problem` undefined
 * when it is that file; else `nothing` (removed from releases/ since it was added), or what is
 * there instead: not a regular file (a directory was a 500 nobody logged, a FIFO an empty 200),
 * another size, or unreadable (a link loop, a file where releases/V belongs: verify pass 32, F9).
 */
function releaseFileState(file: string, size: number): { problem?: string } {
  let found: Stats | undefined;
  try {
    found = statSync(file, { throwIfNoEntry: false });
  } catch (err) {
    return { problem: `not readable (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` };
  }
  if (!found) return { problem: "nothing" };
  if (!found.isFile()) return { problem: "not a regular file" };
  if (found.size !== size) return { problem: `${found.size} bytes, not the ${size} its manifest signs` };
  return {};
}
