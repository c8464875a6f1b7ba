/**
 * The hub's answers to RabbitMQ's HTTP auth backend (src/hub/broker/broker-auth.ts), with the
 * fields the 3.10 backend sends: a thing gets its own topics and session queues only, the hub
 * everything, password logins only the hub's management login with the secret.
 */
import { describe, expect, test } from "bun:test";
import { decideResource, decideTopic, decideUser, decideVhost, topicOfRoutingKey } from "../../src/hub/broker/broker-auth.ts";

const N = "ecd13b11-alpha";
const M = "ecd13b11-bravo";
const ctx = { secret: "s".repeat(43), isActiveThing: async (name: string) => name === N || name === M };
const topic = (username: string, permission: string, routing_key: string, client_id = username) =>
  decideTopic({ username, vhost: "/", resource: "topic", name: "amq.topic", permission, routing_key, client_id }, ctx);

describe("RabbitMQ auth backend answers", () => {
  test("user: certificate logins for active things and the hub; password logins only for the hub with the secret", async () => {
    expect(await decideUser({ username: N }, ctx)).toBe("allow");
    expect(await decideUser({ username: "ecd13b11-revoked" }, ctx)).toBe("deny");
    expect(await decideUser({ username: "flashlex-hub" }, ctx)).toBe("allow");
    expect(await decideUser({ username: N, password: "" }, ctx)).toBe("deny");
    expect(await decideUser({ username: N, password: ctx.secret }, ctx)).toBe("deny");
    expect(await decideUser({ username: "flashlex-hub", password: "wrong" }, ctx)).toBe("deny");
    expect(await decideUser({ username: "flashlex-hub", password: ctx.secret }, ctx)).toStartWith("allow administrator");
  });

  test("vhost: the MQTT vhost only, and the client id must be the certificate's name", async () => {
    expect(await decideVhost({ username: N, vhost: "/", client_id: N }, ctx)).toBe(true);
    expect(await decideVhost({ username: N, vhost: "/", client_id: M }, ctx)).toBe(false);
    expect(await decideVhost({ username: N, vhost: "other", client_id: N }, ctx)).toBe(false);
  });

  test("vhost: the hub's certificate user, and only it, connects as flashlex-hub-<instance> (one session per hub)", async () => {
    expect(await decideVhost({ username: "flashlex-hub", vhost: "/", client_id: "flashlex-hub" }, ctx)).toBe(true);
    expect(await decideVhost({ username: "flashlex-hub", vhost: "/", client_id: "flashlex-hub-a1" }, ctx)).toBe(true);
    expect(await decideVhost({ username: "flashlex-hub", vhost: "/", client_id: "flashlex-hub-A1" }, ctx)).toBe(false);
    expect(await decideVhost({ username: "flashlex-hub", vhost: "/", client_id: N }, ctx)).toBe(false);
    expect(await decideVhost({ username: N, vhost: "/", client_id: "flashlex-hub-a1" }, ctx)).toBe(false);
    expect(await decideVhost({ username: N, vhost: "/", client_id: "flashlex-hub" }, ctx)).toBe(false);
  });

  test("resource: a thing's own session queues and the topic exchange, nothing else", async () => {
    const r = (name: string, resource: string, permission: string) => decideResource({ username: N, vhost: "/", resource, name, permission }, ctx);
    expect(await r(`mqtt-subscription-${N}qos1`, "queue", "configure")).toBe(true);
    expect(await r(`mqtt-subscription-${M}qos1`, "queue", "read")).toBe(false);
    expect(await r("amq.topic", "exchange", "write")).toBe(true);
    expect(await r("amq.topic", "exchange", "configure")).toBe(false);
    expect(await r("amq.fanout", "exchange", "write")).toBe(false);
  });

  test("topic: the same rules as the embedded broker, on the MQTT form of the routing key", async () => {
    expect(topicOfRoutingKey(`ingress.${N}`)).toBe(`ingress/${N}`);
    expect(await topic(N, "read", `ingress.${N}`)).toBe(true);
    expect(await topic(N, "read", `pubsub.${N}`)).toBe(true);
    expect(await topic(N, "read", `ingress.${M}`)).toBe(false);
    expect(await topic(N, "read", "ingress.*")).toBe(false);
    expect(await topic(N, "read", "#")).toBe(false);
    expect(await topic(N, "write", "flashlex.collect")).toBe(true);
    expect(await topic(N, "write", `pubsub.${N}`)).toBe(true);
    expect(await topic(N, "write", `ingress.${N}`)).toBe(false);
    expect(await topic(N, "write", "flashlex.collect", M)).toBe(false);
    expect(await topic("flashlex-hub", "write", `ingress.${N}`)).toBe(true);
    expect(await topic("ecd13b11-revoked", "write", "flashlex.collect")).toBe(false);
  });
});
