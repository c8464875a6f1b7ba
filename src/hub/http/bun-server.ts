/**
 * The API on a socket: `Bun.serve` around the API's `fetch` handler (routes.ts), which knows
 * nothing of the server that calls it, so tests call it without one (as hono keeps its Bun
 * adapter apart from routing).
 */

import { chmodSync, rmSync } from "node:fs";
import { FlashlexError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { pathExists } from "../../shared/path-exists.ts";
import { discardUnreadBody, errorToResponse, logApiFailure } from "./envelope.ts";
import type { HubApi } from "./routes.ts";

export interface HubServer {
  url: string;
  /** `force` closes open connections at once; otherwise requests in flight finish first */
  stop(force?: boolean): Promise<void>;
}

/**
 * Bun's answer to an error past the routes' own handling (a response body that failed as Bun
 * sent it), said in the log its answer points at (attack round 28, F5: "see the hub's log" found
 * nothing there).
 */
function unhandled(log: Logger): (err: Error) => Response {
  return (err) => {
    const answer = errorToResponse(err);
    logApiFailure(log, { method: "?", route: "(sending the answer)" }, answer, err);
    return answer.response;
  };
}

/**
 * Serves the API on `host:port` (0 = a free port). With `tls` the hub answers HTTPS with the
 * broker's certificate, which things already trust through the hub CA in their keys directory.
 */
export function startHubServer(api: HubApi, opts: { host: string; port: number; tls?: { certPem: string; keyPem: string }; log: Logger }): HubServer {
  const server = Bun.serve({
    hostname: opts.host,
    port: opts.port,
    // No socket-level body bound: Bun would answer a bare 413 before the route authenticates
    // the request and answers in the API's envelope. The routes read bodies with a limit.
    tls: opts.tls ? { cert: opts.tls.certPem, key: opts.tls.keyPem } : undefined,
    // Bun's own 10 s for a connection that sends nothing (a client stalled part way through its
    // body), given explicitly: left to its default, Bun prints a warning of its own to stderr
    // the first time, outside the hub's log format. routes.ts logs hub.request_abandoned.
    idleTimeout: 10,
    fetch: (request, server) => afterBody(request, api.fetch(request, { via: "network", remote: () => server.requestIP(request)?.address })),
    error: unhandled(opts.log),
  });
  const host = opts.host.includes(":") ? `[${opts.host}]` : opts.host;
  return {
    url: `${opts.tls ? "https" : "http"}://${host}:${server.port}`,
    async stop(force = true) {
      await server.stop(force);
    },
  };
}

/**
 * `answer`, once what the route left of the request's body is read (envelope.ts
 * discardUnreadBody). A body the route read, as every collect's, costs one check, no await.
 */
function afterBody(request: Request, answer: Promise<Response>): Promise<Response> {
  return answer.then((response) => (request.bodyUsed ? response : discardUnreadBody(request).then(() => response)));
}

export interface LocalSocket {
  path: string;
  stop(): Promise<void>;
}

/**
 * Serves the API on the hub home's Unix socket (`hub.sock`, mode 0600): the local commands
 * (`hub send`) reach this hub through it and nothing else, whatever listens on the API's port,
 * and without a token (the socket's mode authenticates the caller: HubApi.fetch `local`). A
 * socket left by a hub that was killed is replaced; one that answers means another `hub serve`
 * runs with this home: FlashlexError of kind try-later (75).
 */
export async function startLocalSocket(api: HubApi, path: string, log: Logger): Promise<LocalSocket> {
  await refuseSecondHub(path);
  rmSync(path, { force: true });
  const server = Bun.serve({
    unix: path,
    fetch: (request) => afterBody(request, api.fetch(request, { via: "local" })),
    error: unhandled(log),
  });
  chmodSync(path, 0o600);
  return {
    path,
    async stop() {
      await server.stop(true);
      rmSync(path, { force: true });
    },
  };
}

/** Throws FlashlexError (try-later, 75) when a `hub serve` already answers on this home's socket. */
export async function refuseSecondHub(path: string): Promise<void> {
  if (pathExists(path) && (await socketAnswers(path))) throw new FlashlexError(`${path}: another \`flashlex hub serve\` runs with this hub home`, "try-later");
}

/** True when something answers HTTP on the Unix socket `path` within a second. */
export async function socketAnswers(path: string): Promise<boolean> {
  try {
    // Any answer will do. Not followed: `/` is the console's, which redirects to its sign-in
    // page, and a followed redirect would leave the socket for a host named "hub".
    await fetch("http://hub/", { unix: path, redirect: "manual", signal: AbortSignal.timeout(1000) } as RequestInit);
    return true;
  } catch {
    return false;
  }
}
