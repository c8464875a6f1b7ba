/**
 * The broker seam of the hub. `hub serve` talks to an MQTT broker only through `HubBroker`, so the
 * embedded aedes broker (the one-machine default) and an external cluster (Mosquitto, EMQX) are a
 * configuration change, not a code change (DESIGN.md, "Scale path").
 *
 * Topic rules, enforced by the embedded broker itself and by the Mosquitto ACL we render:
 * a thing N may subscribe only to `ingress/N` and `pubsub/N`, and publish only to `pubsub/N`,
 * `flashlex/collect` and `flashlex/test`; its client id must equal its certificate's CN.
 */

/** The topics a thing publishes for the hub to store (egress and the `test` thread). */
export const HUB_TOPICS = ["flashlex/collect", "flashlex/test"] as const;

/** The CN of the hub's own client certificate when it talks to an external broker. */
export const HUB_CLIENT_NAME = "flashlex-hub";

export const ingressTopic = (thingName: string) => `ingress/${thingName}`;
export const pubsubTopic = (thingName: string) => `pubsub/${thingName}`;

/** The hub database answers these. */
export interface ThingDirectory {
  /** the thing's record if it exists and is not revoked, else undefined */
  lookup(thingName: string): { id: string; name: string } | undefined;
}

export interface BrokerEvents {
  /** a thing connected (for "last seen") */
  onConnect?(thingName: string): void;
  /**
   * a thing published to flashlex/collect or flashlex/test; resolve before the PUBACK goes out
   * (store first). Throwing = the message is not acknowledged
   */
  onThingPublish?(thing: { id: string; name: string } | undefined, topic: string, payload: Buffer): Promise<void>;
}

export interface HubBroker {
  /** e.g. mqtts://127.0.0.1:8883 (for logs) */
  readonly url: string;
  /** publish to a thing's ingress (QoS 1), untracked (the bootstrap echo); resolves once the broker accepted it */
  publish(topic: string, payload: string | Buffer): Promise<void>;
  /**
   * Publishes a stored ingress message (QoS 1) to `ingress/<thingName>`, with its id added
   * (src/protocol/ingress.ts); resolves once the broker accepted it. With `tracksDelivery` the
   * broker also sees it through to the thing's PUBACK.
   */
  sendIngress(thingName: string, message: { flmessagespk: string; payload: string }): Promise<void>;
  /**
   * true (embedded): store ingress as `pending`; the broker marks it delivered on the thing's
   * PUBACK and resends it after a hub restart. false (external): the broker keeps the queue and
   * the hub never sees the PUBACK, so delivery is `unknown`.
   */
  readonly tracksDelivery: boolean;
  /** names of things connected now; undefined when the broker cannot tell (an external broker) */
  connected(): string[] | undefined;
  close(): Promise<void>;
}

/** True when `topic` is one of the hub topics a thing may publish to (and the hub stores). */
export function isHubTopic(topic: string): boolean {
  return (HUB_TOPICS as readonly string[]).includes(topic);
}

/** May thing `name` subscribe to `topic`? Exact topics only: no wildcards, no shared subscriptions. */
export function maySubscribe(name: string, topic: string): boolean {
  return topic === ingressTopic(name) || topic === pubsubTopic(name);
}

/** May thing `name` publish to `topic`? */
export function mayPublish(name: string, topic: string): boolean {
  return topic === pubsubTopic(name) || isHubTopic(topic);
}
