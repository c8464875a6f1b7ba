/**
 * The hub's answers to RabbitMQ's HTTP auth backend (rabbitmq_auth_backend_http 3.10): the same
 * per-thing rules as the embedded broker (src/protocol/topics.ts `maySubscribe`/`mayPublish`,
 * identity from the certificate CN, revoked things refused), asked by the broker for each login
 * and permission instead of written as one rule per thing.
 *
 * What the backend sends (POST, form-encoded; checked in the 3.10.8 sources, docs/scaling.md):
 * - user: `username` only for a certificate login (MQTT `ssl_cert_login`); `username`,
 *   `password`, `vhost` and `client_id` for a password login (MQTT username/password, the
 *   management API's basic auth). Answer `allow [tags]` or `deny`.
 * - vhost: `username`, `vhost`, `ip`, `tags` and, for MQTT, `client_id`.
 * - resource: `username`, `vhost`, `resource` (queue|exchange|topic), `name`, `permission`
 *   (configure|write|read), `tags`.
 * - topic: as resource, with `routing_key` (the MQTT topic, `/` turned into `.`, `+` into `*`)
 *   and `client_id`.
 *
 * Who gets what:
 * - A certificate login whose CN names a thing that exists and is not revoked: that thing, with
 *   its topics, its own session queues and the topic exchange, and nothing else.
 * - A certificate login as `flashlex-hub` (the hub's client certificate): everything (the hub
 *   sends every thing's ingress and reads the hub topics).
 * - A password login only as `flashlex-hub` with the broker secret: the management API
 *   (tag `administrator`), which the hub uses to close revoked things' connections. A password
 *   login under a thing's name is refused, whatever the password: the MQTT plugin prefers a
 *   CONNECT's username and password to the certificate, and a thing must not become another.
 * - MQTT client id ≠ user name (= CN): refused at the vhost check, before the client id is
 *   registered, so it cannot take over the real thing's session. The one exception is the hub's
 *   certificate user, whose client id is `flashlex-hub-<instance>` (one session per hub process,
 *   home/instance.ts); no thing can use such an id (its client id must be its own name).
 */
import { timingSafeEqual } from "node:crypto";
import { mayPublish, maySubscribe } from "../../protocol/topics.ts";
import { isHubClientId } from "../home/instance.ts";
import { HUB_CLIENT_NAME } from "../home/paths.ts";

/** The vhost and exchange the MQTT plugin uses (rabbitmq-config.ts sets them). */
export const RABBIT_VHOST = "/";
export const RABBIT_EXCHANGE = "amq.topic";

export interface BrokerAuthContext {
  /**
   * true when `name` is a thing that exists and is not revoked (the hub database, asked each
   * time: several hubs share it). Rejects when the database cannot answer: the listener then
   * answers 500, which RabbitMQ treats as a refusal, never as an allow.
   */
  isActiveThing(name: string): Promise<boolean>;
  /** the broker secret (the management password of `flashlex-hub`) */
  secret: string;
}

/** One request's form fields. */
export type AuthParams = Record<string, string | undefined>;

/**
 * The session queues RabbitMQ 3.10 declares for MQTT client `clientId`
 * (rabbit_mqtt_util:subcription_queue_name): one per QoS.
 */
export function mqttSessionQueues(clientId: string): [string, string] {
  return [`mqtt-subscription-${clientId}qos0`, `mqtt-subscription-${clientId}qos1`];
}

/**
 * The MQTT topic an AMQP routing key came from, as the 3.10 MQTT plugin maps them
 * (rabbit_mqtt_util to_amqp: `/` → `.`, `+` → `*`). RabbitMQ itself cannot tell `a/b` from
 * `a.b`: both are routing key `a.b` and reach the same subscribers, so judging the `/` form is
 * judging what will happen. Thing names have no dot (provision.ts), so `ingress.N` is exact.
 */
export function topicOfRoutingKey(routingKey: string): string {
  return routingKey.replaceAll("*", "+").replaceAll(".", "/");
}

function sameSecret(given: string, secret: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(secret);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** `allow ...` or `deny` for the user path. */
export async function decideUser(p: AuthParams, ctx: BrokerAuthContext): Promise<string> {
  const name = p.username ?? "";
  if (p.password !== undefined) {
    // Password logins: only the hub's management login.
    return name === HUB_CLIENT_NAME && ctx.secret.length > 0 && sameSecret(p.password, ctx.secret) ? "allow administrator management" : "deny";
  }
  // No password: a certificate login (the MQTT plugin with ssl_cert_login; AMQP is off).
  if (name === HUB_CLIENT_NAME) return "allow";
  return (await ctx.isActiveThing(name)) ? "allow" : "deny";
}

/** The vhost path: only the MQTT vhost, and an MQTT client's id must be its user name. */
export async function decideVhost(p: AuthParams, ctx: BrokerAuthContext): Promise<boolean> {
  const name = p.username ?? "";
  if (p.vhost !== RABBIT_VHOST) return false;
  // The hub's certificate user connects as `flashlex-hub-<instance>` (home/instance.ts): each hub
  // of a fleet has its own session. Only that user may; a thing's client id must be its name.
  if (name === HUB_CLIENT_NAME) return p.client_id === undefined || isHubClientId(p.client_id);
  if (p.client_id !== undefined && p.client_id !== name) return false;
  // Asked again at every connect: a thing revoked since its last login is refused here too.
  return await ctx.isActiveThing(name);
}

/** The resource path: a thing may use its own session queues and the topic exchange. */
export async function decideResource(p: AuthParams, ctx: BrokerAuthContext): Promise<boolean> {
  const name = p.username ?? "";
  if (p.vhost !== RABBIT_VHOST) return false;
  if (name === HUB_CLIENT_NAME) return true;
  if (!(await ctx.isActiveThing(name))) return false;
  if (p.resource === "queue") return (mqttSessionQueues(name) as string[]).includes(p.name ?? "");
  // Reading the exchange = binding a queue to it; writing = publishing. The topic path says which keys.
  if (p.resource === "exchange") return p.name === RABBIT_EXCHANGE && (p.permission === "read" || p.permission === "write");
  return false;
}

/** The topic path: the thing's subscribe (read) and publish (write) rules, on the MQTT topic. */
export async function decideTopic(p: AuthParams, ctx: BrokerAuthContext): Promise<boolean> {
  const name = p.username ?? "";
  if (p.vhost !== RABBIT_VHOST || p.name !== RABBIT_EXCHANGE) return false;
  if (name === HUB_CLIENT_NAME) return true;
  if (p.client_id !== undefined && p.client_id !== name) return false;
  if (!(await ctx.isActiveThing(name))) return false;
  const topic = topicOfRoutingKey(p.routing_key ?? "");
  if (p.permission === "read") return maySubscribe(name, topic);
  if (p.permission === "write") return mayPublish(name, topic);
  return false;
}
