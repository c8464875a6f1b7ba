import { loadPublicKey, spkiDer } from "../../crypto/keys.ts";
import { parseCollectEnvelope } from "../../protocol/collect-envelope.ts";
import { maxEnvelopeBytes } from "../../protocol/limits.ts";
import { parseTestMessage, testEcho, wantsEcho } from "../../protocol/test-message.ts";
import { COLLECT_TOPIC, ingressTopic, TEST_TOPIC } from "../../protocol/topics.ts";
import { InputError } from "../../shared/errors.ts";
import { toFlashlexError } from "../../shared/foreign-errors.ts";
import { GroupCommit } from "../../shared/group-commit.ts";
import type { Logger } from "../../shared/log.ts";
import { CollectAuthError, type Collector, MessageIdConflict } from "../messages/collect.ts";
import type { HubObserver } from "../metrics/observer.ts";
import { fromStore, type HubStore, StoreFailure, type ThingRecord } from "../store/hub-store.ts";
import type { BrokerEvents, ThingDirectory } from "./broker.ts";

/** What createBrokerEvents works with. */
export interface BrokerEventDeps {
  store: HubStore;
  collector: Collector;
  log: Logger;
  /** the API's payload limit; an envelope may be larger by the token and ids (maxEnvelopeBytes) */
  payloadLimitBytes: number;
  /** publishes to a thing's ingress topic (the bootstrap echo); absent: no echo */
  publish?: (topic: string, payload: string) => Promise<void>;
  /** told of each publish dropped and each failure, by kind (the hub's /metrics) */
  observer?: HubObserver;
  now?: () => number;
}

type Publisher = { id: string; name: string } | undefined;

/** How long a bootstrap echo's claim is remembered (ms): far longer than a thing retries one test message. */
const ECHO_CLAIM_MS = 86_400_000;

/** A message dropped for what it is; `reason` goes to the WARN line. */
class Dropped extends Error {
  constructor(
    readonly event: string,
    readonly reason: string,
    readonly fields: Record<string, unknown> = {},
  ) {
    super(reason);
  }
}

/**
 * What the hub does with MQTT traffic from things. `publisher` is the thing the embedded broker
 * authenticated by certificate; behind an external broker it is undefined, and the JWT in the
 * collect envelope is all the hub has, which is why the envelope carries one.
 *
 * The rule for the PUBACK (the README's "acknowledge and drop"): only a failure of the database
 * (a StoreFailure) rejects, so the broker does not acknowledge and the thing sends again. Anything
 * about the message itself (not UTF-8, not JSON, nested too deep, too large, not an envelope, a
 * token that cannot be verified for whatever reason, another thing's id, an unknown or revoked
 * thing), and anything unexpected while handling it, is logged once at WARN and the message is
 * acknowledged and dropped: a retry would fail the same way, and an MQTT 3.1.1 refusal would
 * mean dropping the connection, which the thing answers by sending the same message forever.
 */
export function createBrokerEvents(deps: BrokerEventDeps): BrokerEvents & { handleThingPublish: NonNullable<BrokerEvents["onThingPublish"]> } {
  const now = deps.now ?? Date.now;
  const log = deps.log;
  const maxBytes = maxEnvelopeBytes(deps.payloadLimitBytes);
  // things that connect or publish at about the same time (a fleet reconnecting after the hub
  // restarted) are marked seen in one transaction
  const seen = new GroupCommit<{ id: string; at: number }, void>({
    commit: async (items) => {
      await deps.store.markSeen(items);
      return items.map(() => undefined);
    },
  });

  /** Runs a protocol parser; what it refuses is dropped under `event`. */
  function parsed<T>(event: string, parse: () => T): T {
    try {
      return parse();
    } catch (err) {
      if (err instanceof InputError) throw new Dropped(event, err.message);
      throw err;
    }
  }

  async function collect(publisher: Publisher, payload: Buffer): Promise<void> {
    const envelope = parsed("hub.collect_dropped", () => parseCollectEnvelope(payload, deps.payloadLimitBytes));
    // The embedded broker knows who published: a thing may not collect in another's name.
    if (publisher && publisher.id !== envelope.thingId) throw new Dropped("hub.collect_dropped", "thingId is not the publisher's");
    let thing: ThingRecord;
    try {
      thing = await deps.collector.authenticate(envelope.thingId, envelope.token);
    } catch (err) {
      if (err instanceof StoreFailure) throw err;
      // A CollectAuthError, or whatever else the verifier threw: the token cannot be verified.
      const reason = err instanceof CollectAuthError ? err.reason : `the token could not be verified (${(err as Error)?.message ?? String(err)})`;
      throw new Dropped("hub.collect_refused", reason, { thing_id: envelope.thingId });
    }
    try {
      const result = await deps.collector.store(thing, envelope.messageId, JSON.stringify(envelope.payload), "mqtt");
      log.info("hub.collect", { via: "mqtt", thing: thing.name, message: result.message.flmessagespk, repeat: result.inserted ? undefined : true });
    } catch (err) {
      if (err instanceof MessageIdConflict) throw new Dropped("hub.collect_dropped", err.message, { thing: thing.name, message: envelope.messageId });
      // the thing was deleted between its lookup and the commit: refused as any unknown thing
      if (err instanceof CollectAuthError) throw new Dropped("hub.collect_refused", err.reason, { thing_id: envelope.thingId });
      throw err;
    }
  }

  async function test(publisher: Publisher, payload: Buffer): Promise<void> {
    const body = parsed("hub.test_dropped", () => parseTestMessage(payload, deps.payloadLimitBytes));
    let thing: ThingRecord | undefined;
    if (publisher) {
      thing = await fromStore(() => deps.store.getThing(body.thingId));
    } else {
      // An external broker vouches for nobody, and a thing's id and name are no secret: the
      // thing's token is what names it (any thing could mark another verified and have text of
      // its own echoed into the other's ingress).
      try {
        thing = await deps.collector.authenticate(body.thingId, typeof body.token === "string" ? body.token : undefined);
      } catch (err) {
        if (err instanceof StoreFailure) throw err;
        const reason = err instanceof CollectAuthError ? err.reason : `the token could not be verified (${(err as Error)?.message ?? String(err)})`;
        throw new Dropped("hub.test_dropped", `${reason}: behind an external broker a test message needs its thing's token`, { thing_id: body.thingId });
      }
    }
    const matches = thing && thing.revokedAt === null && thing.name === body.thingName && (!publisher || publisher.id === thing.id);
    if (!thing || !matches) throw new Dropped("hub.test_dropped", "thingId and thingName do not name the publishing thing", { thing_id: body.thingId });
    const first = thing.verifiedAt === null;
    await fromStore(() => deps.store.markVerified(thing.id, now()));
    log.info(first ? "hub.thing_verified" : "hub.test", { thing: thing.name, sequence: body.sequence as number | undefined });
    // `flashlex bootstrap` proves ingress by waiting for its test message, recognised by the
    // nonce it carries, to come back on its ingress topic. The `test` thread of `serve` sends no
    // nonce and gets no echo, so it does not fill the thing's store. Echoes are not stored here:
    // they are a handshake, not a message the owner sent. Not awaited: the thing's PUBACK must
    // not wait on a publish to its own session.
    // Several hubs on one broker cluster all read flashlex/test: the hub whose claim of this
    // nonce wins echoes, the others do not (a second echo would reach the thing's session).
    if (wantsEcho(body) && deps.publish && (await fromStore(() => deps.store.claimOnce(`echo:${thing.id}:${body.nonce}`, now(), now() - ECHO_CLAIM_MS)))) {
      deps.publish(ingressTopic(thing.name), testEcho(body)).then(
        () => log.info("hub.test_echoed", { thing: thing.name }),
        (err) => log.warn("hub.test_echo_failed", { thing: thing.name, error: err }),
      );
    }
  }

  async function dispatch(publisher: Publisher, topic: string, payload: Buffer): Promise<void> {
    if (payload.length > maxBytes) {
      throw new Dropped("hub.publish_dropped", `the payload is ${payload.length} bytes, over the ${maxBytes}-byte limit`, { topic });
    }
    if (topic === COLLECT_TOPIC) return collect(publisher, payload);
    if (topic === TEST_TOPIC) return test(publisher, payload);
    if (publisher) await fromStore(() => seen.submit({ id: publisher.id, at: now() }));
  }

  /**
   * Resolves when the message is stored or dropped (acknowledge it); rejects with StoreFailure
   * only (do not acknowledge).
   */
  const handleThingPublish = async (publisher: Publisher, topic: string, payload: Buffer): Promise<void> => {
    try {
      await dispatch(publisher, topic, payload);
    } catch (err) {
      if (err instanceof StoreFailure) {
        deps.observer?.error(toFlashlexError(err.cause).kind, "mqtt");
        throw err;
      }
      if (err instanceof Dropped) {
        deps.observer?.dropped(err.event);
        log.warn(err.event, { via: "mqtt", thing: publisher?.name, ...err.fields, reason: err.reason });
        return;
      }
      deps.observer?.dropped("hub.publish_dropped");
      deps.observer?.error(toFlashlexError(err).kind, "mqtt");
      log.warn("hub.publish_dropped", { via: "mqtt", thing: publisher?.name, topic, reason: "the message could not be handled", error: err });
    }
  };

  return {
    handleThingPublish,
    onThingPublish: handleThingPublish,
    onConnect(thingName: string) {
      // "Last seen" is best effort: a failed write here must not disturb the connection.
      void (async () => {
        const thing = await deps.store.getThingByName(thingName);
        if (thing) await seen.submit({ id: thing.id, at: now() });
        log.info("hub.thing_connected", { thing: thingName });
        // connected by its certificate: heard from (HubStore.markSeen), as a first test message says
        if (thing && thing.verifiedAt === null) log.info("hub.thing_verified", { thing: thingName, by: "its first connection" });
      })().catch((err) => log.warn("hub.last_seen_failed", { thing: thingName, error: err }));
    },
  };
}

/** What the directory reads of a thing. */
export interface DirectoryThing {
  id: string;
  name: string;
  revokedAt: number | null;
  publicKeyPem: string;
  previousPublicKeyPem?: string | null;
}

/**
 * The broker's view of the database: a thing may connect while it exists and is not revoked,
 * and only with its current key, or the key before its last renewal until the current one has
 * been used (docs/enrolment.md): a certificate a renewal superseded stops working for MQTT, as
 * its key stops working for tokens. `forget` makes the database forget the previous key.
 */
export function createThingDirectory(
  lookup: (name: string) => Promise<DirectoryThing | undefined>,
  forget?: (thingId: string) => void,
  adoptLostRenewal?: (thingName: string, certPem: string) => Promise<boolean>,
): ThingDirectory {
  // SPKI DER by PEM: a thing's key is parsed once, not at every connect
  const ders = new Map<string, Buffer>();
  const derOf = (pem: string) => {
    let der = ders.get(pem);
    if (!der) {
      if (ders.size > 50_000) ders.clear();
      der = spkiDer(loadPublicKey(pem));
      ders.set(pem, der);
    }
    return der;
  };
  return {
    async lookup(name) {
      const thing = await lookup(name);
      return thing && thing.revokedAt === null ? { id: thing.id, name: thing.name } : undefined;
    },
    async keyOf(name, spki) {
      const thing = await lookup(name);
      if (!thing) return undefined;
      if (derOf(thing.publicKeyPem).equals(spki)) return "current";
      if (thing.previousPublicKeyPem && derOf(thing.previousPublicKeyPem).equals(spki)) return "previous";
      return undefined;
    },
    async forgetPreviousKey(name) {
      const thing = await lookup(name);
      if (thing?.previousPublicKeyPem) forget?.(thing.id);
    },
    adoptLostRenewal,
  };
}
