/**
 * The API on a socket: `Bun.serve` around the API's `fetch` handler (routes.ts), which knows
 * nothing of the server that calls it, so tests call it without one (as hono keeps its Bun
 * adapter apart from routing).
 */

import { errorToResponse } from "./envelope.ts";
import type { HubApi } from "./routes.ts";

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
