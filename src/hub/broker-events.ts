import type { Logger } from "../log.ts";
import { ingressTopic, type BrokerEvents, type ThingDirectory } from "./broker.ts";
import { CollectAuthError, MessageIdConflict, type Collector } from "./collector.ts";
import type { HubStore } from "./hub-store.ts";
import { isUuid } from "./http.ts";

/**
 * What the hub does with MQTT traffic from things. `publisher` is the thing the embedded broker
 * authenticated by certificate; behind an external broker it is undefined, and the JWT in the
 * collect envelope is all the hub has, which is why the envelope carries one.
 *
 * A message that can never be stored (bad JSON, bad token, wrong thing) is logged and dropped:
 * the broker acknowledges it, since a retry would fail the same way. A storage failure throws,
 * so the broker does not acknowledge and the thing sends again.
 */
export interface BrokerEventDeps {
  store: HubStore;
  collector: Collector;
  log: Logger;
  /** the API's payload limit; an envelope may exceed it by the token's size */
  payloadLimitBytes: number;
  /** publishes to a thing's ingress topic (the bootstrap echo); absent: no echo */
  publish?: (topic: string, payload: string) => Promise<void>;
  now?: () => number;
}

/** Room for the envelope around the payload: ids, keys and a JWT (about 1 KB with RS256). */
const ENVELOPE_OVERHEAD = 8 * 1024;

type Publisher = { id: string; name: string } | undefined;

export function createBrokerEvents(deps: BrokerEventDeps): BrokerEvents & { handleThingPublish: NonNullable<BrokerEvents["onThingPublish"]> } {
  const now = deps.now ?? Date.now;
  const log = deps.log;

  async function collect(publisher: Publisher, payload: Buffer): Promise<void> {
    const envelope = parseObject(payload);
    if (!envelope || !isUuid(envelope.thingId) || typeof envelope.token !== "string" || !("payload" in envelope)) {
      log.warn("hub.collect_dropped", { via: "mqtt", thing: publisher?.name, reason: "not a collect envelope {messageId, thingId, token, payload}" });
      return;
    }
    if (envelope.messageId !== undefined && !isUuid(envelope.messageId)) {
      log.warn("hub.collect_dropped", { via: "mqtt", thing: publisher?.name, reason: "messageId is not a UUID" });
      return;
    }
    // The embedded broker knows who published: a thing may not collect in another's name.
    if (publisher && publisher.id !== envelope.thingId) {
      log.warn("hub.collect_dropped", { via: "mqtt", thing: publisher.name, reason: "thingId is not the publisher's" });
      return;
    }
    let thing;
    try {
      thing = await deps.collector.authenticate(envelope.thingId, envelope.token);
    } catch (err) {
      if (!(err instanceof CollectAuthError)) throw err;
      log.warn("hub.collect_refused", { via: "mqtt", thing_id: envelope.thingId, reason: err.reason });
      return;
    }
    try {
      const result = await deps.collector.store(thing, envelope.messageId as string | undefined, JSON.stringify(envelope.payload));
      log.info("hub.collect", { via: "mqtt", thing: thing.name, message: result.message.flmessagespk, repeat: result.inserted ? undefined : true });
    } catch (err) {
      if (!(err instanceof MessageIdConflict)) throw err;
      log.warn("hub.collect_dropped", { via: "mqtt", thing: thing.name, message: envelope.messageId, reason: err.message });
    }
  }

  async function test(publisher: Publisher, payload: Buffer): Promise<void> {
    const body = parseObject(payload);
    if (!body || !isUuid(body.thingId) || typeof body.thingName !== "string") {
      log.warn("hub.test_dropped", { thing: publisher?.name, reason: "not a test message {thingId, thingName, message, sequence}" });
      return;
    }
    // With an external broker nobody vouches for the publisher; the id and name must at least agree.
    const thing = await deps.store.getThing(body.thingId);
    const matches = thing && thing.revokedAt === null && thing.name === body.thingName && (!publisher || publisher.id === thing.id);
    if (!thing || !matches) {
      log.warn("hub.test_dropped", { thing: publisher?.name, thing_id: body.thingId, reason: "thingId and thingName do not name the publishing thing" });
      return;
    }
    const first = thing.verifiedAt === null;
    await deps.store.markVerified(thing.id, now());
    log.info(first ? "hub.thing_verified" : "hub.test", { thing: thing.name, sequence: body.sequence as number | undefined });
    // `flashlex bootstrap` proves ingress by waiting for its test message, recognised by the
    // nonce it carries, to come back on its ingress topic. The `test` thread of `serve` sends no
    // nonce and gets no echo, so it does not fill the thing's store. Echoes are not stored here:
    // they are a handshake, not a message the owner sent. Not awaited: the thing's PUBACK must
    // not wait on a publish to its own session.
    if (typeof body.nonce === "string" && deps.publish) {
      const echo = JSON.stringify({ message: body });
      deps.publish(ingressTopic(thing.name), echo).then(
        () => log.info("hub.test_echoed", { thing: thing.name }),
        (err) => log.warn("hub.test_echo_failed", { thing: thing.name, error: err }),
      );
    }
  }

  const handleThingPublish = async (publisher: Publisher, topic: string, payload: Buffer): Promise<void> => {
    if (payload.length > deps.payloadLimitBytes + ENVELOPE_OVERHEAD) {
      log.warn("hub.publish_dropped", { thing: publisher?.name, topic, bytes: payload.length, reason: "larger than the payload limit" });
      return;
    }
    if (topic === "flashlex/collect") return collect(publisher, payload);
    if (topic === "flashlex/test") return test(publisher, payload);
    if (publisher) await deps.store.markSeen(publisher.id, now());
  };

  return {
    handleThingPublish,
    onThingPublish: handleThingPublish,
    onConnect(thingName: string) {
      // "Last seen" is best effort: a failed write here must not disturb the connection.
      void (async () => {
        const thing = await deps.store.getThingByName(thingName);
        if (thing) await deps.store.markSeen(thing.id, now());
        log.info("hub.thing_connected", { thing: thingName });
      })().catch((err) => log.warn("hub.last_seen_failed", { thing: thingName, error: err }));
    },
  };
}

/** The broker's view of the database: a thing may connect while it exists and is not revoked. */
export function createThingDirectory(lookup: (name: string) => { id: string; name: string; revokedAt: number | null } | undefined): ThingDirectory {
  return {
    lookup(name) {
      const thing = lookup(name);
      return thing && thing.revokedAt === null ? { id: thing.id, name: thing.name } : undefined;
    },
  };
}

function parseObject(payload: Buffer): Record<string, unknown> | undefined {
  try {
    const value = JSON.parse(payload.toString("utf8"));
    return value !== null && typeof value === "object" && !Array.isArray(value) ? value : undefined;
  } catch {
    return undefined;
  }
}
