/**
 * The broker seam of the hub. `hub serve` talks to an MQTT broker only through `HubBroker`, so the
 * embedded aedes broker (the one-machine default) and an external cluster (Mosquitto, EMQX) are a
 * configuration change, not a code change (DESIGN.md, "Scale path").
 *
 * Both enforce the topic rules of src/protocol/topics.ts (the embedded broker itself, an external
 * one through the Mosquitto ACL the hub renders), and a thing's client id must equal its
 * certificate's CN.
 */

/**
 * The hub database answers these, asynchronously (either driver may be behind it; nothing is
 * cached in the broker's process, so a revocation another process or hub wrote counts at once).
 * A rejection means the database could not answer: the broker refuses as "server unavailable".
 */
export interface ThingDirectory {
  /** the thing's record if it exists and is not revoked, else undefined */
  lookup(thingName: string): Promise<{ id: string; name: string } | undefined>;
  /**
   * Which of the thing's keys `spkiDer` (the SubjectPublicKeyInfo DER of the certificate a
   * client presented) is: "current", "previous" (the key before its last renewal, still accepted
   * until the new one is used), or undefined (a superseded or foreign key). Absent: any key the
   * CA signed for the name is accepted (an external broker's directory).
   */
  keyOf?(thingName: string, spkiDer: Buffer): Promise<"current" | "previous" | undefined>;
  /** The thing connected with its current key: the previous one is no longer accepted. */
  forgetPreviousKey?(thingName: string): Promise<void>;
  /**
   * A verified certificate (PEM) for the thing whose key keyOf did not know: taken as the thing's
   * current one when the hub issued it after the one it holds (a database put back from a backup
   * older than the thing's renewal; things/certificates.ts `adoptLostRenewal`). True when taken.
   */
  adoptLostRenewal?(thingName: string, certPem: string): Promise<boolean>;
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
   * broker also sees it through to the thing's PUBACK. `message.thingId`, the thing it is for:
   * a connection under that name that authenticated as another thing (one deleted and made
   * again, before the hub's poll saw it) is dropped first, so the message reaches the new one only.
   */
  sendIngress(thingName: string, message: IngressForThing): Promise<void>;
  /**
   * true (embedded): store ingress as `pending`; the broker marks it delivered on the thing's
   * PUBACK and resends it after a hub restart. false (external): the broker keeps the queue and
   * the hub never sees the PUBACK, so delivery is `unknown`.
   */
  readonly tracksDelivery: boolean;
  /** whether the thing is connected now, in constant time (no scan of every client); undefined when the broker cannot tell (an external broker) */
  isConnected(thingName: string): boolean | undefined;
  /** how many things are connected to this broker now (the hub's /metrics); absent or undefined when the broker cannot tell */
  connectedCount?(): number | undefined;
  close(): Promise<void>;
}

/** A stored ingress message as the broker sends it, and the id of the thing it is for. */
export interface IngressForThing {
  flmessagespk: string;
  payload: string;
  thingId?: string;
}
