/**
 * The MQTT topics a thing and the hub share, and the rules the hub's brokers enforce on them
 * (the embedded broker checks every SUBSCRIBE and PUBLISH with `maySubscribe`/`mayPublish`; the
 * Mosquitto ACL the hub renders says the same): a thing N subscribes only to `ingress/N` and
 * `pubsub/N`, and publishes only to `pubsub/N`, `flashlex/collect` and `flashlex/test`.
 */

/** Where a thing publishes egress envelopes (collect-envelope.ts) for the hub to store. */
export const COLLECT_TOPIC = "flashlex/collect";
/** Where a thing publishes its test message (test-message.ts): bootstrap and the `test` thread. */
export const TEST_TOPIC = "flashlex/test";
/** The topics a thing publishes for the hub (and the hub subscribes to behind an external broker). */
export const HUB_TOPICS = [COLLECT_TOPIC, TEST_TOPIC] as const;

/** What the hub sends thing `thingName` (ingress.ts has the payload). */
export const ingressTopic = (thingName: string) => `ingress/${thingName}`;
/** The guide's `basicPubsub` topic of thing `thingName`. */
export const pubsubTopic = (thingName: string) => `pubsub/${thingName}`;

/** A thing's topics, as the hub reports them when it creates the thing. */
export function thingTopics(thingName: string): { ingress: string; pubsub: string; egress: string } {
  return { ingress: ingressTopic(thingName), pubsub: pubsubTopic(thingName), egress: COLLECT_TOPIC };
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
