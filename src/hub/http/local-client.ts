import { FlashlexError } from "../../shared/errors.ts";
import type { HubHome } from "../home/home.ts";
import type { Envelope } from "./envelope.ts";

/**
 * How the hub's CLI, on the hub machine, talks to the running `hub serve` (for `hub send`, which
 * needs the broker that process holds): through the hub home's owner-only socket `hub.sock`
 * (bun-server.ts `startLocalSocket`). It reaches this hub and nothing else, whatever listens on
 * the API's port, and sends no token: the socket's mode is the operator's proof.
 */

export interface LocalResponse<T> {
  status: number;
  body: Envelope<T> | undefined;
}

/** What connecting to a socket nobody serves fails with (no file, or a file a dead hub left): the request was never sent. */
const NOBODY_LISTENS = new Set(["ENOENT", "ECONNREFUSED", "ENOTSOCK"]);

/** How long the CLI waits for the running hub's answer, in ms. */
const ANSWER_TIMEOUT_MS = 30_000;

/**
 * One request to the running hub over its socket. Throws FlashlexError: unavailable (69) when no
 * hub serves this home (no socket, nobody on it); try-later (75) when one took the connection and
 * gave no answer (none within 30 s: stopped, or busy; or the connection cut): then it may have
 * acted on it.
 */
export async function localRequest<T>(home: HubHome, method: string, path: string, body?: unknown, timeoutMs = ANSWER_TIMEOUT_MS): Promise<LocalResponse<T>> {
  const init = {
    method,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
    unix: home.paths.socket,
  };
  let response: Response;
  try {
    response = await fetch(`http://hub/${home.settings.env}/v1${path}`, init as RequestInit);
  } catch (err) {
    const look =
      "it may have acted on it; look before doing it again (for hub send: the hub's log, its hub.publish lines, or the thing's messages in the console)";
    if ((err as Error)?.name === "TimeoutError") {
      throw new FlashlexError(
        `the hub serving ${home.paths.dir} took the request but did not answer within ${timeoutMs / 1000} s (stopped, or busy): ${look}`,
        "try-later",
      );
    }
    const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    // Only a socket nobody listens on means nothing was asked. A connection cut after it was
    // made (ECONNRESET: the hub stopped or was killed mid-request) may have come after the
    // request was read and acted on: a retry could publish twice.
    if (!NOBODY_LISTENS.has(why)) {
      throw new FlashlexError(`the hub serving ${home.paths.dir} took the connection but its answer was cut off (${why}): ${look}`, "try-later");
    }
    throw new FlashlexError(
      `the hub is not running for ${home.paths.dir} (no answer on ${home.paths.socket}: ${why}); start it with \`flashlex hub serve --dir ${home.paths.dir}\`, or, if it is starting (an external broker is waited for up to 30 s), try again once it logged hub.started`,
      "unavailable",
    );
  }
  const text = await response.text();
  let parsed: Envelope<T> | undefined;
  try {
    parsed = JSON.parse(text) as Envelope<T>;
  } catch {
    parsed = undefined;
  }
  return { status: response.status, body: parsed };
}

/** One thing's answer to a publish: its message id, or why the broker did not take it. */
export interface PublishedTo {
  flthingspk: string;
  flmessagespk?: string;
  online?: boolean | null;
  error?: string;
}

/**
 * Sends `message` to each of `thingIds` through the running hub: its broker lives in that
 * process. One thing: `POST /things/{id}/publish`; several: one `POST /publish` (a fan-out,
 * stored in one transaction). Returns the hub's answer, the API's envelope, with one entry per
 * thing in the order given. Throws FlashlexError: unavailable when no hub answers or it answers
 * 503, bug for another 5xx, data for a refusal of the message (4xx).
 */
export async function publishThroughService(home: HubHome, thingIds: readonly string[], message: unknown): Promise<Envelope<PublishedTo[]>> {
  const one = thingIds.length === 1;
  const response = one
    ? await localRequest<PublishedTo>(home, "POST", `/things/${thingIds[0]}/publish`, { message })
    : await localRequest<PublishedTo[]>(home, "POST", "/publish", { things: thingIds, message });
  if (response.status !== 200 || !response.body) {
    const why = response.body?.messages[0]?.value ?? `HTTP ${response.status}`;
    // all or nothing before the broker (Messages.send, sendToMany): a refusal stored and sent nothing
    throw new FlashlexError(
      `the hub refused the message (nothing was stored or sent): ${why}`,
      response.status === 503 ? "unavailable" : response.status >= 500 ? "bug" : "data",
    );
  }
  const { result } = response.body;
  return { ...response.body, result: Array.isArray(result) ? result : [result] };
}
