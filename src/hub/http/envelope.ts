/**
 * The old cloud's JSON envelope and the small HTTP helpers the API routes share. Every answer,
 * error or not, is `{status, code, messages: [{key, value}], result}` so a client parses one shape.
 * This is the HTTP edge of the error taxonomy: `errorToResponse` gives every kind its status.
 */

import { JsonDocumentError, MAX_JSON_DEPTH, parseJsonDocument } from "../../protocol/limits.ts";
import type { ErrorKind } from "../../shared/errors.ts";
import { toFlashlexError } from "../../shared/foreign-errors.ts";
import { cutGiven, type Logger, quoteLogText } from "../../shared/log.ts";
import { pullStream } from "../../shared/pull-stream.ts";

/** Where a request came in, as the server saw it (the Bun adapter, bun-server.ts, says). */
export interface RequestOrigin {
  /**
   * `local`: the hub home's owner-only socket (`hub.sock`, mode 0600 in the 0700 home): the
   * file's mode is what authenticates it, as for docker.sock, so it is the operator's without a
   * token. `network`: the API's port.
   */
  via: "network" | "local";
  /**
   * The client's IP address (Bun's `server.requestIP`), asked only when a line about a refusal
   * names it (`remote`, as the broker's refusals do); absent on the local socket and in tests.
   */
  remote?(): string | undefined;
}

/** A request from the API's port whose address nobody told (tests, and callers without a server). */
export const UNKNOWN_ORIGIN: RequestOrigin = { via: "network" };

/**
 * The 401 (with its RFC 6750 challenge) for a request to an operator route without the hub's
 * access token, logged as `hub.operator_refused` with the method, the path (cut) and the
 * client's address: someone trying tokens leaves a trace. Never the token.
 */
export function refusedOperator(request: Request, url: URL, origin: RequestOrigin, log: Logger): HttpError {
  log.warn("hub.operator_refused", { method: cutGiven(request.method), path: cutGiven(url.pathname), remote: origin.remote?.() });
  return new HttpError(401, "a valid access token is required (Authorization: Bearer <token>)", { "WWW-Authenticate": "Bearer" });
}

export interface Envelope<T = unknown> {
  status: "OK" | "ERROR";
  code: number;
  messages: { key: string; value: string }[];
  result: T;
}

/**
 * What a route answers with when the answer is about HTTP itself (no such route or thing, a wrong
 * content type, a body too large, a refused token with its challenge), like hono's one
 * HTTPException; everything else is a FlashlexError and answers by its kind. The message is
 * shown to the client, so it never holds a secret.
 */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "HttpError";
  }
}

/**
 * The client went away before its request body had arrived whole: it closed the connection (or
 * its proxy gave up) part way through. Nobody is left to answer, and nothing is wrong with the
 * hub: routes.ts logs one INFO line for it, never an error. 499 is nginx's "client closed request";
 * no client reads it.
 */
export class ClientGoneError extends HttpError {
  constructor(
    /** bytes of the body read before the connection closed; undefined when it was read whole at once */
    readonly receivedBytes: number | undefined,
  ) {
    super(499, "the client closed the connection before its request body arrived");
    this.name = "ClientGoneError";
  }
}

/**
 * True when `err`, thrown while reading `request`'s body, means the client went away: Bun rejects
 * the read with a DOMException named AbortError ("The connection was closed.") and aborts the
 * request's signal.
 */
export function clientWentAway(request: Request, err: unknown): boolean {
  return request.signal.aborted || (err instanceof DOMException && err.name === "AbortError");
}

/**
 * The HTTP edge of the error taxonomy (src/shared/errors.ts): the status for each kind. Storage that is
 * full, read-only or busy may pass, so it is 503 with Retry-After (a thing keeps its message
 * queued and retries); input problems are 400; what only the hub's owner can fix is 500.
 */
export const HTTP_STATUS_OF_KIND: Record<ErrorKind, number> = {
  usage: 400,
  data: 400,
  conflict: 409,
  unavailable: 503,
  bug: 500,
  io: 500,
  full: 503,
  "read-only": 503,
  damaged: 500,
  "try-later": 503,
  permission: 500,
  config: 500,
};

/** What a client is told for a 5xx kind: no path, no library text; the hub's log has the details. */
const PUBLIC_MESSAGE: Partial<Record<ErrorKind, string>> = {
  unavailable: "a service the hub needs is not available; try again later",
  bug: "internal error; see the hub's log",
  io: "the hub could not read or write its storage; see the hub's log",
  full: "the hub's storage is full; try again later",
  "read-only": "the hub's storage is read-only; try again later",
  damaged: "the hub's database is damaged; see the hub's log",
  "try-later": "the hub is busy; try again later",
  permission: "the hub may not access its storage; see the hub's log",
  config: "the hub is misconfigured; see the hub's log",
};

const RETRY_AFTER_SECONDS = "30";

/**
 * Answers any error a route threw: an HttpError as it says; anything else by its kind, in the
 * envelope, never with internals: a 5xx gets a public sentence instead of its message, unless
 * the error says its message is safe for clients (FlashlexError.clientSafe: "the broker did not
 * accept the message"), or the caller is the hub home's owner on its local socket (`toOwner`:
 * `hub send` names the full disk, where the public sentence only said the storage was full).
 * `detail` is for the caller's log.
 */
export function errorToResponse(err: unknown, toOwner = false): { response: Response; status: number; kind?: ErrorKind; detail: string } {
  const { status, message, headers, kind, detail } = publicError(err, toOwner);
  return { response: errorResponse(status, message, headers), status, kind, detail };
}

/**
 * The pattern of an API path below `/{env}/v1` given as its segments: a thing's id becomes
 * `:id` (`things/:id/update`), so logs and metrics labels name the route, not each thing.
 */
export function routePattern(segments: readonly string[]): string {
  return segments[0] === "things" && segments.length >= 3 ? ["things", ":id", ...segments.slice(2)].join("/") : segments.join("/");
}

/**
 * Logs a request answered 500 or more as `hub.api_failed`: WARN with its `kind` for what the hub
 * knows of (a full disk, a database away: the operator's to fix, and alerts group by kind),
 * ERROR with the error itself for a bug. `route` is the route's pattern (`things/:id/update`),
 * never the path, whose ids would make every thing's failure a line of its own; `id` names the
 * thing (a damaged row is found by it). Below 500 nothing is logged here.
 */
export function logApiFailure(
  log: Logger,
  request: { method: string; route: string; id?: string },
  answer: { status: number; kind?: ErrorKind; detail: string },
  err: unknown,
): void {
  if (answer.status < 500) return;
  const fields = { method: request.method, route: request.route, id: request.id || undefined, status: answer.status, kind: answer.kind };
  if (answer.kind === undefined || answer.kind === "bug") log.error("hub.api_failed", { ...fields, error: err });
  else log.warn("hub.api_failed", { ...fields, error: answer.detail });
}

/**
 * What `errorToResponse` answers, before it becomes the envelope (the console shows the same
 * status and words as an HTML page): the status, the sentence a client may see, the headers
 * (Retry-After for 503, an HttpError's own), the kind, and `detail` for the caller's log.
 */
export function publicError(
  err: unknown,
  toOwner = false,
): { status: number; message: string; headers: Record<string, string>; kind?: ErrorKind; detail: string } {
  if (err instanceof HttpError) return { status: err.status, message: err.message, headers: err.headers, detail: err.message };
  // a message over a size limit, wherever it was measured (the body, the message once wrapped, a fan-out's copies)
  if (err instanceof JsonDocumentError && err.problem === "too_large")
    return { status: 413, message: err.message, headers: {}, kind: err.kind, detail: err.message };
  const error = toFlashlexError(err);
  const status = HTTP_STATUS_OF_KIND[error.kind];
  const message = status < 500 || error.clientSafe || (toOwner && error.kind !== "bug") ? error.message : PUBLIC_MESSAGE[error.kind]!;
  const headers: Record<string, string> = status === 503 ? { "Retry-After": RETRY_AFTER_SECONDS } : {};
  return { status, message, headers, kind: error.kind, detail: error.message };
}

/** The envelope of a success (`status: "OK"`, `message` as its one entry, `result`) at HTTP `status`, default 200. */
export function ok<T>(result: T, message: string, status = 200): Response {
  const body: Envelope<T> = { status: "OK", code: status, messages: [{ key: "message", value: message }], result };
  return Response.json(body, { status });
}

/**
 * `ok`'s envelope with `result` an array streamed a page at a time: `{"status":"OK","code":200,
 * "messages":[...],"result":[` then each page's items as JSON, then `]}`, the same bytes `ok`
 * would send for the whole array at once, while memory holds one page. A page that fails half
 * way is told to `onError` and cuts the answer short (invalid JSON: the client cannot take it
 * for all of it); a client that leaves stops the reading.
 */
export function okStream(message: string, pages: AsyncGenerator<unknown[], void, undefined>, onError: (err: unknown) => void): Response {
  const encoder = new TextEncoder();
  async function* json(): AsyncGenerator<Uint8Array, void, undefined> {
    yield encoder.encode(JSON.stringify({ status: "OK", code: 200, messages: [{ key: "message", value: message }], result: [] }).slice(0, -2));
    let first = true;
    for await (const page of pages) {
      if (!page.length) continue;
      yield encoder.encode(`${first ? "" : ","}${page.map((item) => JSON.stringify(item)).join(",")}`);
      first = false;
    }
    yield encoder.encode("]}");
  }
  return new Response(pullStream(json(), onError), { status: 200, headers: { "Content-Type": "application/json;charset=utf-8" } });
}

/** The envelope of a failure (`status: "ERROR"`, `message` as its one `error` entry, `result: null`) at `status`, with `headers`. */
export function errorResponse(status: number, message: string, headers: Record<string, string> = {}): Response {
  const body: Envelope<null> = { status: "ERROR", code: status, messages: [{ key: "error", value: message }], result: null };
  return Response.json(body, { status, headers });
}

/** A 200 download of `bytes` named `fileName`, which goes into Content-Disposition as given: it must hold no `"`. */
export function fileResponse(bytes: Uint8Array, fileName: string, contentType = "application/zip"): Response {
  return new Response(bytes, {
    status: 200,
    headers: {
      "Content-Type": contentType,
      "Content-Disposition": `attachment; filename="${fileName}"`,
      "Content-Length": String(bytes.byteLength),
    },
  });
}

/** A download whose length is not known in advance (sent chunked). */
export function streamResponse(stream: ReadableStream<Uint8Array>, fileName: string, contentType = "application/zip"): Response {
  return new Response(stream, {
    status: 200,
    headers: { "Content-Type": contentType, "Content-Disposition": `attachment; filename="${fileName}"` },
  });
}

/** Refuses a body that is not `application/json` (any charset parameter is fine). */
export function requireJsonContentType(request: Request): void {
  const type = (request.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
  if (type !== "application/json") throw new HttpError(415, "the body must be JSON (Content-Type: application/json)");
}

/**
 * Reads the body, keeping at most `limit` bytes: a body within it is read whole at once
 * (HTTP/1.1 framing: the server reads exactly that many bytes, RFC 9112 §6.3); one declared over
 * it is refused unread, and a chunked one passing it while streaming is refused once what is left
 * of it was read and dropped (discardRest). Throws HttpError 413 for a body over the limit,
 * ClientGoneError when the client closes the connection before the body is complete, and
 * whatever else the read throws; HttpError 415 for a body in a Content-Encoding (gzip).
 */
export async function readBodyLimited(request: Request, limit: number): Promise<Uint8Array> {
  // A compressed body would be read as the JSON or form itself ("not valid UTF-8" named the wrong
  // cause): 415 with the codings taken, as RFC 7694 §3 has it.
  const encoding = request.headers.get("content-encoding")?.trim();
  if (encoding && encoding.toLowerCase() !== "identity") {
    throw new HttpError(415, `Content-Encoding ${quoteLogText(cutGiven(encoding))} is not taken: send the body uncompressed`, {
      "Accept-Encoding": "identity",
    });
  }
  const tooLarge = () => new HttpError(413, `the body is larger than ${limit} bytes`);
  const length = request.headers.get("content-length");
  const declared = length === null ? NaN : Number(length);
  // left unread: the server reads and drops it after the answer (discardUnreadBody)
  if (Number.isFinite(declared) && declared > limit) throw tooLarge();
  // Bun's whole-body read makes no JavaScript stream (nor does it when `request.body` is not
  // touched): the stream's promises were a third of the hub's time per collect (CPU profile,
  // 32 connections).
  if (Number.isFinite(declared)) {
    try {
      return new Uint8Array(await request.arrayBuffer());
    } catch (err) {
      if (clientWentAway(request, err)) throw new ClientGoneError(undefined);
      throw err;
    }
  }
  if (!request.body) return new Uint8Array();
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = request.body.getReader();
  for (;;) {
    let next: Awaited<ReturnType<typeof reader.read>>;
    try {
      next = await reader.read();
    } catch (err) {
      if (clientWentAway(request, err)) throw new ClientGoneError(size);
      throw err;
    }
    const { done, value } = next;
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await discardRest(reader, DISCARD_BODY_LIMIT_BYTES - size);
      throw tooLarge();
    }
    chunks.push(value);
  }
  const body = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) body.set(chunk, offset), (offset += chunk.byteLength);
  return body;
}

/**
 * For a route that takes no body: HttpError 400 when the request carries one (read up to 64 KiB;
 * 413 past it; an empty one is none). A field in it is never taken as an option
 * nor ignored: `{"dryRun": true}` in the body of a DELETE deleted the thing.
 */
export async function refuseBody(request: Request): Promise<void> {
  if (!request.body || request.headers.get("content-length") === "0") return;
  if ((await readBodyLimited(request, 64 * 1024)).byteLength === 0) return;
  throw new HttpError(400, `${request.method} takes no body here (what it does is in its path and query); send none`);
}

/**
 * The most of a request body the hub reads and drops when it answers without it (a 413 for a body
 * over a limit, a 401 or 415 before the body is read), in bytes. A client that writes its whole
 * body before it reads the answer (Python's urllib, so the distribution's flashlex.py) gets a
 * reset connection, "Broken pipe", in place of the answer once the unread rest is more than the
 * sockets' buffers hold (seen at 20 MB on loopback): reading the rest first lets it read the
 * answer, as nginx's lingering close does. A body declared larger is not read, and such a client
 * sees the reset.
 */
export const DISCARD_BODY_LIMIT_BYTES = 64 * 1024 * 1024;

/**
 * After an answer that did not use the request's body: reads and drops the body (up to
 * DISCARD_BODY_LIMIT_BYTES; one declared larger is left alone), so the client can read the
 * answer (see there). Never throws: a client that went away needs nothing more.
 */
export async function discardUnreadBody(request: Request): Promise<void> {
  if (request.bodyUsed) return;
  const length = request.headers.get("content-length");
  if (length === null ? !request.headers.has("transfer-encoding") : !(Number(length) > 0 && Number(length) <= DISCARD_BODY_LIMIT_BYTES)) return;
  if (request.body) await discardRest(request.body.getReader(), DISCARD_BODY_LIMIT_BYTES);
}

/** Reads and drops up to `budget` more bytes from `reader`, then cancels what may be left. Never throws. */
async function discardRest(reader: Pick<ReadableStreamDefaultReader<Uint8Array>, "read" | "cancel">, budget: number): Promise<void> {
  try {
    for (let left = budget; left > 0; ) {
      const { done, value } = await reader.read();
      if (done) return;
      left -= value.byteLength;
    }
    await reader.cancel();
  } catch {
    // the client went away: there is nobody to answer and nothing left to drop
  }
}

/**
 * Parses a JSON body within the protocol's limits (src/protocol/limits.ts): not valid UTF-8,
 * blank, not JSON, or nested deeper than `maxDepth` is a 400; over `maxBytes` a 413 (normally
 * caught earlier by readBodyLimited). The depth is checked before any recursive parsing. An
 * object that gives a name twice, in a request's fields or inside a message, is a 400 naming the
 * name and where: JSON.parse would have kept only its last value.
 */
export function parseJsonBody(bytes: Uint8Array, limits: { maxDepth?: number; maxBytes?: number } = {}): unknown {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new HttpError(400, "the body is not valid UTF-8");
  }
  if (text.trim() === "") throw new HttpError(400, "the body is empty; send a JSON document");
  let body: unknown;
  try {
    body = parseJsonDocument(text, { maxDepth: limits.maxDepth ?? MAX_JSON_DEPTH, maxBytes: limits.maxBytes ?? bytes.byteLength, source: "the body" });
  } catch (err) {
    if (!(err instanceof JsonDocumentError)) throw err;
    if (err.problem === "too_large") throw new HttpError(413, err.message);
    if (err.problem === "too_deep") {
      // an envelope's limit is its message's plus its own level: say the one the sender chose
      const maxDepth = limits.maxDepth ?? MAX_JSON_DEPTH;
      const envelope =
        maxDepth > MAX_JSON_DEPTH ? `the body is nested more than ${maxDepth} levels deep: its message may be nested at most ${MAX_JSON_DEPTH}` : undefined;
      throw new HttpError(400, envelope ?? err.message);
    }
    // not JSON (its message names the line and column), a number JSON here cannot hold, a name given twice
    throw new HttpError(400, err.message);
  }
  return body;
}

/**
 * A query parameter's one value, or undefined when it is absent. Given empty (`?startts=`, a
 * shell variable that was not set) or more than once, it is an HttpError 400 naming it: taken as
 * absent, `DELETE /things/{id}/messages?startts=` deleted every message of the thing.
 */
export function queryParam(params: URLSearchParams, name: string): string | undefined {
  const values = params.getAll(name);
  if (values.length === 0) return undefined;
  if (values.length > 1) throw new HttpError(400, `${name} is given ${values.length} times; give it once`);
  if (values[0] === "") throw new HttpError(400, `${name} is empty; leave it out instead`);
  return values[0];
}

/**
 * Refuses a field of a JSON object body that the route does not take (HttpError 400 naming it
 * and the ones it takes): ignored, `{"maxuses": 5}` made a one-use token, `{"max_failures": 5}`
 * a rollout that stopped at the first failure and `{"dryRun": true}` a real publish.
 */
export function onlyFields(body: Record<string, unknown>, fields: readonly string[]): void {
  const unknown = Object.keys(body).find((key) => !fields.includes(key));
  if (unknown !== undefined) throw new HttpError(400, `unknown field ${quoteLogText(unknown.slice(0, 40))}; the body takes ${fields.join(", ")}`);
}

/**
 * Refuses a query parameter the route does not take (HttpError 400 naming it and the ones it
 * takes): taken as absent, a misspelt bound (`DELETE .../messages?startTs=...`) widened the
 * request to every message the thing has, and deleted them.
 */
export function onlyQueryParams(params: URLSearchParams, taken: readonly string[]): void {
  for (const name of params.keys()) {
    if (!taken.includes(name)) {
      const takes = taken.length ? `this route takes ${taken.join(", ")}` : "this route takes none";
      throw new HttpError(400, `unknown query parameter ${quoteLogText(name.slice(0, 40))}; ${takes}`);
    }
  }
}

/**
 * A whole-number query parameter within [`min`, `max`] (both safe integers), or `fallback` when
 * it is absent. Anything else — empty, repeated, `1e20`, `1.5`, `-1`, `abc`, a number past
 * `max` — is an HttpError 400 naming the parameter (and its range): a number that reached SQL
 * unchecked overflowed SQLite's integers ("datatype mismatch", a 500).
 */
export function integerParam(params: URLSearchParams, name: string, range: { min: number; max: number }): number | undefined;
/** With a `fallback`: a number, never undefined. */
export function integerParam(params: URLSearchParams, name: string, range: { min: number; max: number; fallback: number }): number;
export function integerParam(params: URLSearchParams, name: string, range: { min: number; max: number; fallback?: number }): number | undefined {
  const raw = queryParam(params, name);
  if (raw === undefined) return range.fallback;
  const value = /^\d{1,16}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < range.min || value > range.max) {
    throw new HttpError(400, `${name} must be a whole number from ${range.min} to ${range.max}, not ${quoteLogText(raw.slice(0, 40))}`);
  }
  return value;
}

/** The largest Unix-seconds value taken: 9999-12-31T23:59:59Z. */
export const MAX_UNIX_SECONDS = 253_402_300_799;

/** A Unix-seconds query parameter (0 to MAX_UNIX_SECONDS), or undefined when absent; HttpError 400 naming it otherwise. */
export function unixSecondsParam(params: URLSearchParams, name: string): number | undefined {
  return integerParam(params, name, { min: 0, max: MAX_UNIX_SECONDS });
}

/**
 * A URL path segment decoded (RFC 3986 percent-encoding, UTF-8). One that does not decode
 * (`%ff`) is kept as it is: no thing's id or name has a `%`, so it names nothing, and the API and
 * the console answer "no such thing" for it as for any other unknown name.
 */
export function decodePathSegment(segment: string): string {
  // nothing to decode, and decodeURIComponent was a visible part of every collect's routing
  if (!segment.includes("%")) return segment;
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
