/**
 * The listener RabbitMQ's HTTP auth backend asks (broker-auth.ts decides). Apart from the API on
 * purpose, and protected twice:
 *
 * - its own address (`hub.broker.rabbitmq.authListen`, loopback by default): the operator API may
 *   face the internet, this one only the broker nodes;
 * - a secret path segment: the backend (3.10) sends no header we could choose, only the URL we
 *   configure, so the secret lives in the path (`/SECRET/user`). A wrong path gets 404 and
 *   costs nothing. The secret is never logged: log lines name the endpoint, never the path.
 *
 * Answers are `text/plain`: `allow [tags]` or `deny`. A failure inside never allows (fail
 * closed): a database that cannot be used now (kind `unavailable` or `try-later`: a stopped or
 * frozen PostgreSQL, within the store's deadline) answers 503 with a WARN
 * `broker.auth.unavailable`; anything else 500 with an ERROR `broker.auth.failed`. Not `deny`: a
 * deny is a verdict about the thing (revoked, unknown) and reads as one in RabbitMQ's log, while
 * this is the hub's own outage. RabbitMQ 3.10 refuses the CONNECT either way (CONNACK 4 for an
 * error on `user`), and the thing retries with its backoff until the database is back
 * (docs/scaling.md, "The hub's auth listener").
 */
import { toFlashlexError } from "../../shared/foreign-errors.ts";
import type { Logger } from "../../shared/log.ts";
import { type AuthParams, type BrokerAuthContext, decideResource, decideTopic, decideUser, decideVhost } from "./broker-auth.ts";

export interface BrokerAuthServer {
  /** http://HOST:PORT/SECRET: what the nodes' `auth_http.*_path` settings start with (secret inside: never log it) */
  readonly baseUrl: string;
  readonly port: number;
  stop(): Promise<void>;
}

const ENDPOINTS = ["user", "vhost", "resource", "topic"] as const;
type Endpoint = (typeof ENDPOINTS)[number];
/** The backend sends a handful of short fields; anything bigger is not it. */
const MAX_BODY_BYTES = 8 * 1024;

/**
 * Starts the listener on `host:port` (0 = a free port). Throws what Bun.serve throws when the
 * address cannot be taken (the caller maps it to a config error naming the setting).
 */
export function startBrokerAuthServer(opts: { host: string; port: number; ctx: BrokerAuthContext; log: Logger }): BrokerAuthServer {
  const log = opts.log.child({ component: "broker-auth" });
  const prefix = `/${encodeURIComponent(opts.ctx.secret)}/`;
  const decide = async (endpoint: Endpoint, p: AuthParams): Promise<string> => {
    switch (endpoint) {
      case "user":
        return decideUser(p, opts.ctx);
      case "vhost":
        return (await decideVhost(p, opts.ctx)) ? "allow" : "deny";
      case "resource":
        return (await decideResource(p, opts.ctx)) ? "allow" : "deny";
      case "topic":
        return (await decideTopic(p, opts.ctx)) ? "allow" : "deny";
    }
  };
  const server = Bun.serve({
    hostname: opts.host,
    port: opts.port,
    // SO_REUSEPORT: several hubs on one machine listen on the one address the nodes' config
    // names, the kernel shares the requests among them, and when one hub stops the others
    // answer alone (docs/scaling.md, "Several hubs"). Linux lets only the same user share a port.
    reusePort: true,
    maxRequestBodySize: MAX_BODY_BYTES,
    async fetch(request) {
      const path = new URL(request.url).pathname;
      const endpoint = path.startsWith(prefix) ? (path.slice(prefix.length) as Endpoint) : undefined;
      if (!endpoint || !ENDPOINTS.includes(endpoint) || request.method !== "POST") return new Response("not found\n", { status: 404 });
      const form = new URLSearchParams(await request.text());
      const params: AuthParams = {};
      for (const [k, v] of form) params[k] = v;
      const answer = await decide(endpoint, params);
      if (answer === "deny") {
        // What was refused, never the password (params.password) nor the path.
        log.info("broker.auth.denied", {
          endpoint,
          user: params.username,
          client_id: params.client_id,
          resource: params.resource,
          name: params.name,
          permission: params.permission,
          routing_key: params.routing_key,
          login: params.password !== undefined ? "with a password" : "certificate",
        });
      } else {
        log.debug("broker.auth.allowed", { endpoint, user: params.username, routing_key: params.routing_key, permission: params.permission });
      }
      return new Response(answer, { headers: { "content-type": "text/plain" } });
    },
    error(err) {
      const kind = toFlashlexError(err).kind;
      if (kind === "unavailable" || kind === "try-later") {
        log.warn("broker.auth.unavailable", { kind, error: err });
        return new Response("unavailable\n", { status: 503 });
      }
      log.error("broker.auth.failed", { kind, error: err });
      return new Response("error\n", { status: 500 });
    },
  });
  const host = opts.host.includes(":") ? `[${opts.host}]` : opts.host;
  return {
    baseUrl: `http://${host}:${server.port}${prefix.slice(0, -1)}`,
    port: server.port ?? opts.port,
    async stop() {
      await server.stop(true);
    },
  };
}
