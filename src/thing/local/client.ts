/**
 * The caller's end of serve's control socket (server.ts): a ThingAccess whose every call goes
 * to the running serve, answered the same way as in process.
 */
import { type ErrorKind, FlashlexError, isErrorKind } from "../../shared/errors.ts";
import { toFlashlexError } from "../../shared/foreign-errors.ts";
import { pathExists } from "../../shared/path-exists.ts";
import { LOCK_WAIT_MS } from "../../shared/sqlite/driver.ts";
import type { OutboxChange, ThingAccess } from "./access.ts";
import { withCheckedArguments } from "./arguments.ts";
import { type Answer, fromWire, fromWireOutbox, MAX_REQUEST_BYTES, ROUTES, socketPath, type WireMessage, type WireOutboxEntry } from "./wire.ts";

/**
 * How long, in ms, serve has to answer a GET (its status) before it counts as busy or stopped.
 * serve's thread may itself wait LOCK_WAIT_MS for an application's lock, or for the other
 * processes of a fresh database's migration while it starts: a shorter window would call a
 * serve that is only waiting unresponsive.
 */
export const SERVE_PROBE_MS = LOCK_WAIT_MS + 1000;

/** What a serve said of itself (agent.ts `status`). */
export interface ServeStatus {
  connected?: boolean;
}

/**
 * A socket this user cannot look at (a data directory it may not search, a path too long) has no
 * serve this user could reach: none, and reading the config or opening the database after it
 * names the real problem, not the socket.
 */
const NO_SERVE_WHERE_UNSEEN = { cannotLook: false };

/**
 * Asks the serve on `dataDir` for its status. `status` is its answer; `silent` means one listens
 * on the socket but gave no answer within SERVE_PROBE_MS (stopped, or busy); neither when none
 * listens. A request that fails at once while the socket accepts is asked again until the window
 * ends: a serve just started dropped the first request now and then (CI: a command beside it
 * exited 75 within a second, though serve answered right after).
 */
export async function probeServe(dataDir: string): Promise<{ status?: ServeStatus; silent: boolean }> {
  const deadline = Date.now() + SERVE_PROBE_MS;
  for (;;) {
    if (!pathExists(socketPath(dataDir), NO_SERVE_WHERE_UNSEEN)) return { silent: false };
    try {
      const answer = await callServe(dataDir, ROUTES.status, undefined, Math.max(1, deadline - Date.now()));
      return { status: answer.ok && answer.result !== null && typeof answer.result === "object" ? (answer.result as ServeStatus) : {}, silent: false };
    } catch {
      // no answer: a serve stopped or busy, one just starting, or none (a dead serve's socket file)
    }
    if (!(await serveListens(dataDir))) return { silent: false };
    if (Date.now() >= deadline) return { silent: true };
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Calls the running serve on `route` (wire.ts ROUTES) and returns its parsed answer; rejects
 * when none answers (no socket, or a stale one). Long requests (a collect waiting for its API)
 * are bounded by serve's own timeouts.
 */
export function callServe(dataDir: string, route: string, body?: unknown, timeoutMs?: number): Promise<Answer> {
  const [method, path] = route.split(" ") as [string, string];
  timeoutMs ??= method === "GET" ? SERVE_PROBE_MS : 120_000;
  const json = body === undefined ? undefined : JSON.stringify(body);
  return typeof Bun === "undefined"
    ? callWithNodeHttp(socketPath(dataDir), method, path, json, timeoutMs)
    : callWithFetch(socketPath(dataDir), method, path, json, timeoutMs);
}

/**
 * Bun's fetch speaks HTTP over a Unix socket natively: about 1 ms for a one-shot command, where
 * loading node:http and its first connection take about 8 (x64, compiled).
 */
async function callWithFetch(socket: string, method: string, path: string, json: string | undefined, timeoutMs: number): Promise<Answer> {
  try {
    const response = await fetch(`http://localhost${path}`, {
      unix: socket,
      method,
      headers: { "Content-Type": "application/json" },
      body: json,
      signal: AbortSignal.timeout(timeoutMs),
    } as RequestInit);
    return (await response.json()) as Answer;
  } catch (err) {
    throw (err as Error)?.name === "TimeoutError" ? new Error("the running serve did not answer") : err;
  }
}

/** Node (the linux-armv7 build) has no Unix sockets in fetch: node:http, loaded only there. */
async function callWithNodeHttp(socket: string, method: string, path: string, json: string | undefined, timeoutMs: number): Promise<Answer> {
  const { request } = await import("node:http");
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, method, path, headers: { "Content-Type": "application/json" } }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => (text += chunk));
      res.on("end", () => {
        try {
          resolve(JSON.parse(text));
        } catch (err) {
          reject(err);
        }
      });
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error("the running serve did not answer")));
    req.on("error", reject);
    req.end(json);
  });
}

/**
 * The transport errors of a request serve cannot have received: no socket file, a dead serve's
 * socket (what Bun's fetch and node:http say for them), a file that is not a socket.
 */
const UNASKED_CODES = new Set(["ENOENT", "ECONNREFUSED", "ENOTSOCK"]);

/**
 * serve answered the probe, then the request got no answer (serve stopped, was killed, or hung):
 * one FlashlexError naming the socket, not the request's URL, of the transport error's kind (a
 * reset: unavailable, 69). For a collect the outcome is unknown, since serve may have queued the
 * message before it went: 75 and says so, for 69 means "queued".
 */
function lostServe(err: unknown, route: string, dataDir: string): LostServeError {
  const lost = toFlashlexError(err, `the running serve (${socketPath(dataDir)})`);
  const asked = !UNASKED_CODES.has((err as NodeJS.ErrnoException | null)?.code ?? "");
  if (route !== ROUTES.collect) return new LostServeError(lost.message, lost.kind, asked, { cause: err });
  const message = `${lost.message}; the message may or may not be queued: see \`flashlex outbox list\` before sending it again`;
  return new LostServeError(message, "try-later", asked, { cause: err });
}

/**
 * A request to serve got no answer: serve went away after the probe (lostServe), as opposed to
 * serve refusing it. `asked`: serve may have had the request before it went (the connection was
 * cut after it was sent), as opposed to never (no socket, a refused connection: UNASKED_CODES).
 */
export class LostServeError extends FlashlexError {
  override name = "LostServeError";

  constructor(
    message: string,
    kind: ErrorKind,
    readonly asked: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, kind, options);
  }
}

/**
 * The thing's data through the serve running on `dataDir`, its arguments checked (arguments.ts);
 * undefined when none runs there. Throws FlashlexError try-later (75) when one holds the
 * directory but did not answer within SERVE_PROBE_MS.
 */
export async function runningServeAccess(dataDir: string): Promise<ThingAccess | undefined> {
  const { status, silent } = await probeServe(dataDir);
  if (status) return withCheckedArguments(serveAccess(dataDir));
  // A serve that listens but did not answer (stopped with SIGSTOP, or its event loop held by an
  // app's long write lock) is running all the same: opening the database here, or a second MQTT
  // connection as the thing, would go behind its back.
  if (silent) {
    throw new FlashlexError(
      `${dataDir}: the flashlex serve running there did not answer within ${SERVE_PROBE_MS / 1000} s (busy, or stopped); try again`,
      "try-later",
    );
  }
  return undefined;
}

/**
 * Whether a process listens on `dataDir`'s control socket, answering or not: the kernel accepts
 * a connection for a serve that is stopped or busy all the same, and refuses one on the socket
 * file a dead serve left. A path socket, so it also sees a serve in another network namespace.
 */
export async function serveListens(dataDir: string): Promise<boolean> {
  const path = socketPath(dataDir);
  if (!pathExists(path, NO_SERVE_WHERE_UNSEEN)) return false;
  // node:net only when a socket file is there and no serve answered on it (a rare path)
  const { connect } = await import("node:net");
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once("connect", () => (socket.destroy(), resolve(true)));
    socket.once("error", () => resolve(false));
  });
}

/** The thing's data through the serve that runs on `dataDir`. A refusal comes back with serve's kind. */
export function serveAccess(dataDir: string): ThingAccess {
  const call = async <T>(route: string, body?: unknown): Promise<T> => {
    let answer: Answer;
    try {
      answer = await callServe(dataDir, route, body);
    } catch (err) {
      throw lostServe(err, route, dataDir);
    }
    if (!answer.ok) throw new FlashlexError(answer.error ?? "the running serve refused the request", isErrorKind(answer.kind) ? answer.kind : "bug");
    return answer.result as T;
  };
  return {
    via: "serve",
    served: true,
    listMessages: async (query) => (await call<WireMessage[]>(ROUTES.listMessages, query)).map(fromWire),
    ackMessages: async (ids) => (await inRequests(ids, (part) => call<number[]>(ROUTES.ackMessages, { ids: part }))).flat(),
    deleteMessages: async (ids) => (await inRequests(ids, (part) => call<number[]>(ROUTES.deleteMessages, { ids: part }))).flat(),
    collect: (body, via) => call(ROUTES.collect, { body, via }),
    listOutbox: async (state, page) => (await call<WireOutboxEntry[]>(ROUTES.listOutbox, { state, ...page })).map(fromWireOutbox),
    resendOutbox: (sentSince) => call<OutboxChange>(ROUTES.resendOutbox, { sentSince }),
    retryOutbox: async (ids) => mergeChanges(await inRequests(ids, (part) => call<OutboxChange>(ROUTES.retryOutbox, { ids: part }))),
    dropOutbox: async (ids) => mergeChanges(await inRequests(ids, (part) => call<OutboxChange>(ROUTES.dropOutbox, { ids: part }))),
    close: () => {},
  };
}

/** The ids one request carries at most, by their JSON: a quarter of serve's MAX_REQUEST_BYTES. */
const IDS_BYTES_PER_REQUEST = MAX_REQUEST_BYTES / 4;

/**
 * `ids` in as many requests as keep each far below serve's request limit, one after another (an
 * app acking its whole backlog after an outage: 200,000 ids are ~1.4 MB of JSON). Each request is
 * what the same call on the database does to its part; acks, deletes, retries and drops are
 * idempotent, so a failure part-way leaves nothing a second call would not finish.
 */
async function inRequests<I, O>(ids: readonly I[], send: (part: I[]) => Promise<O>): Promise<O[]> {
  const answers: O[] = [];
  let part: I[] = [];
  let bytes = 0;
  for (const id of ids) {
    const size = JSON.stringify(id).length + 1;
    if (part.length && bytes + size > IDS_BYTES_PER_REQUEST) {
      answers.push(await send(part));
      part = [];
      bytes = 0;
    }
    part.push(id);
    bytes += size;
  }
  if (part.length || !answers.length) answers.push(await send(part));
  return answers;
}

function mergeChanges(changes: OutboxChange[]): OutboxChange {
  return { changed: changes.flatMap((c) => c.changed), missing: changes.flatMap((c) => c.missing), sent: changes.flatMap((c) => c.sent) };
}
