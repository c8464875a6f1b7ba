/**
 * The embedded broker: aedes behind a mutual-TLS listener, with the hub's topic rules built in.
 *
 * Who may connect is decided twice: TLS accepts only certificates issued by the hub CA, then
 * `authenticate` requires client id = certificate CN and a thing the directory knows (not revoked).
 * Everything else follows from the CN, never from what the client claims.
 *
 * PUBACK timing (checked in aedes 1.2, lib/handlers/publish.js): a PUBLISH runs
 * `authorizePublish`, then for QoS 1 writes the PUBACK, and only after that calls
 * `broker.publish` (which runs the `published` hook). So `published` is too late to "store
 * before acknowledging": egress is stored inside `authorizePublish`, whose callback is what lets
 * the PUBACK go out. test/integration/hub-broker.test.ts proves it with a slow store.
 *
 * Persistence: aedes' default in-memory persistence. A hub restart loses the broker's session
 * state: subscriptions of persistent (clean: false) sessions, QoS 1 messages queued for things
 * that were offline or not yet acknowledged (in-flight ingress), retained messages on pubsub
 * topics, and wills. Egress is safe (it is stored before the PUBACK). Ingress is kept by the hub
 * database instead: with `ingress` given, a message stays pending until the thing's PUBACK and
 * is replayed when the thing subscribes again after a restart (src/hub/messages/ingress-delivery.ts).
 * Reconnecting things re-subscribe on their own.
 *
 * The thing's PUBACK (checked in aedes 1.2, lib/handlers/puback.js): aedes removes the message
 * from the client's outgoing queue and emits `ack` with the queued packet, a copy made by
 * aedes-packet that keeps topic, payload, qos, messageId, brokerId and brokerCounter but no
 * property of ours. For a clean session nothing was queued and the packet is undefined.
 */

import type { Duplex } from "node:stream";
import tls from "node:tls";
import { Aedes, type Client } from "aedes";
import { spkiDer } from "../../crypto/keys.ts";
import { ingressWirePayload } from "../../protocol/ingress.ts";
import { ingressTopic, isHubTopic, mayPublish, maySubscribe } from "../../protocol/topics.ts";
import type { Logger } from "../../shared/log.ts";
import { IngressDelivery, type IngressLedger } from "../messages/ingress-delivery.ts";
import type { BrokerEvents, HubBroker, ThingDirectory } from "./broker.ts";
import { createSessionPersistence } from "./session-store.ts";

export interface EmbeddedBrokerOptions {
  host: string;
  /** 0 = any free port */
  port: number;
  caPem: string;
  certPem: string;
  keyPem: string;
  directory: ThingDirectory;
  events: BrokerEvents;
  log: Logger;
  /** largest accepted PUBLISH payload; a bigger one disconnects the client. Default 256 KiB. */
  maxPayloadBytes?: number;
  /** the hub's record of pending ingress; absent: `sendIngress` is a plain publish, untracked */
  ingress?: IngressLedger;
}

export interface EmbeddedBroker extends HubBroker {
  readonly port: number;
  /** Kicks a connected thing (after `hub thing revoke`); true if it was connected. */
  disconnect(thingName: string): boolean;
  /**
   * Disconnects every connection whose thing the directory no longer has as it authenticated:
   * revoked, deleted, or deleted and made again under the same name (another process did it,
   * `hub thing delete`); resolves with their names.
   */
  disconnectStale(): Promise<string[]>;
  /**
   * Serves `certPem` (for the key it started with) from the next handshake on: a renewed broker
   * certificate (home/broker-certificate.ts). Connections made before keep theirs.
   */
  useCertificate(certPem: string): void;
}

type Thing = { id: string; name: string };

const DEFAULT_MAX_PAYLOAD = 256 * 1024;
/** Room for the fixed/variable header and a topic name above the payload limit. */
const HEADER_ALLOWANCE = 1024;

/** CONNACK return codes of MQTT 3.1.1 that aedes passes through from `authenticate`. */
const IDENTIFIER_REJECTED = 2;
const SERVER_UNAVAILABLE = 3;
const NOT_AUTHORIZED = 5;

function refusal(returnCode: number, message: string) {
  return Object.assign(new Error(message), { returnCode });
}

/** The CN of a verified client certificate, or undefined (no certificate, not verified, several CNs). */
export function peerCommonName(conn: unknown): string | undefined {
  const socket = conn as tls.TLSSocket;
  if (typeof socket.getPeerCertificate !== "function" || socket.authorized !== true) return undefined;
  const cn = socket.getPeerCertificate()?.subject?.CN as unknown;
  return typeof cn === "string" && cn.length > 0 ? cn : undefined;
}

/** The SubjectPublicKeyInfo DER of the verified client certificate, or undefined. */
function peerSpki(conn: unknown): Buffer | undefined {
  const socket = conn as tls.TLSSocket;
  if (typeof socket.getPeerX509Certificate !== "function" || socket.authorized !== true) return undefined;
  try {
    return spkiDer(socket.getPeerX509Certificate()!.publicKey);
  } catch {
    return undefined;
  }
}

/** The verified client certificate as PEM, or undefined. */
function peerCertificatePem(conn: unknown): string | undefined {
  const socket = conn as tls.TLSSocket;
  if (typeof socket.getPeerX509Certificate !== "function" || socket.authorized !== true) return undefined;
  return socket.getPeerX509Certificate()?.toString();
}

/**
 * Starts aedes behind its TLS listener (TLS 1.2 or later, a client certificate required) and
 * resolves once it listens on `host:port` (port 0: a free one); `close` stops it. Rejects with
 * the listen's own error (EADDRINUSE, EADDRNOTAVAIL), which serveHub turns into a ConfigError.
 */
export async function startEmbeddedBroker(opts: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
  const { directory, events } = opts;
  const log = opts.log.child({ component: "broker" });
  const maxPayload = opts.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD;
  // Which thing a connection authenticated as; set in `authenticate`, read by the authorizers.
  const things = new WeakMap<Client, Thing>();
  // Which thing (id) each session was made for, by client id. A persistent session outlives its
  // connection, and the name can be given to a new thing once the old one is deleted: the new
  // thing must not inherit the old one's subscriptions and queued messages. In memory, like
  // aedes' sessions themselves.
  const sessionOwner = new Map<string, string>();
  /** `name/owner id` of the sessions mqtt.session_dropped was said for */
  const droppedTold = new Set<string>();

  const lookup = async (name: string): Promise<Thing | undefined> => {
    try {
      return await directory.lookup(name);
    } catch (err) {
      log.error("thing.lookup.failed", { thing: name, error: err });
      return undefined;
    }
  };
  /** Whether the directory no longer has `thing` under its name; false when it cannot tell (a database error). */
  const isGone = async (thing: Thing): Promise<boolean> => {
    try {
      return (await directory.lookup(thing.name))?.id !== thing.id;
    } catch (err) {
      log.error("thing.lookup.failed", { thing: thing.name, error: err });
      return false;
    }
  };

  const noteTakeover = takeoverWatch(log);
  // Created before the broker, which needs it; the broker's events feed it (trackIngress).
  const delivery = opts.ingress ? new IngressDelivery({ ledger: opts.ingress, publish: (topic, payload) => publishQos1(topic, payload), log }) : undefined;

  const persistence = createSessionPersistence((clientId, messageId) =>
    log.debug("mqtt.resend_acknowledged", { thing: clientId, packetId: messageId, note: "already acknowledged; sent again, stored once by the thing" }),
  );
  // At a clean session's connect aedes reads what the client id's stored queue held through
  // outgoingUpdate, asks authorizeForward about each packet, and drops it unsent
  // (lib/handlers/connect.js emptyQueue); a live forward to a clean session never passes
  // outgoingUpdate. Noted as "sent" to the clean session, such a packet held its message back
  // from the replay for as long as the connection lasted (a thing deleted and made again under
  // its name, sent a message at once: the new device never got it).
  const droppedAtConnect = new WeakSet<object>();
  const outgoingUpdate = persistence.outgoingUpdate.bind(persistence);
  persistence.outgoingUpdate = (client, packet) => {
    if ((client as unknown as Client).clean) droppedAtConnect.add(packet);
    return outgoingUpdate(client, packet);
  };

  const broker = await Aedes.createBroker({
    persistence,
    preConnect(client, packet, done) {
      // Only for the certificate's own name (authenticate refuses any other).
      const name = packet.clientId;
      if (!name || peerCommonName(client.conn) !== name) return done(null, true);
      void (async () => {
        // A session made for a thing since deleted: this connection starts clean, so aedes
        // drops the old session's subscriptions and queue (lib/handlers/connect.js reads
        // `packet.clean` after this hook). IngressDelivery replays the new thing's pending messages.
        const owner = sessionOwner.get(name);
        if (owner !== undefined && !packet.clean && (await isGone({ id: owner, name }))) {
          packet.clean = true;
          // Said once per session: a revoked thing reconnecting every 30 s said it each time. The
          // owner stays: the revoked thing's connect is refused before aedes drops the session,
          // so the next connect (a new thing of the name) must start clean too (verify pass 31, F1).
          if (!droppedTold.has(`${name}/${owner}`)) {
            droppedTold.add(`${name}/${owner}`);
            log.info("mqtt.session_dropped", { thing: name, reason: "the session was made for a thing of this name that was since revoked or deleted" });
          }
        }
        // Before aedes restores the session: stop handing this thing new messages until it has
        // resent what the session holds (IngressDelivery).
        if (delivery) await delivery.sessionConnecting(name);
        done(null, true);
      })();
    },
    authenticate(client, _username, _password, done) {
      const cn = peerCommonName(client.conn);
      if (!cn) {
        log.warn("mqtt.connect.refused", { clientId: client.id, reason: "no verified certificate CN" });
        return done(refusal(NOT_AUTHORIZED, "not authorized"), false);
      }
      if (client.id !== cn) {
        // A thing may only ever be itself: the client id names the session it can take over.
        log.warn("mqtt.connect.refused", { clientId: client.id, cn, reason: "client id is not the certificate CN" });
        return done(refusal(IDENTIFIER_REJECTED, "client id must equal the certificate CN"), false);
      }
      // The database answers asynchronously (either driver); aedes waits for `done`.
      const admit = async (): Promise<void> => {
        let thing: Thing | undefined;
        let key: "current" | "previous" | undefined;
        try {
          thing = await directory.lookup(cn);
          const spki = peerSpki(client.conn);
          key = thing ? (spki && directory.keyOf ? await directory.keyOf(cn, spki) : "current") : undefined;
          if (thing && key === undefined && directory.adoptLostRenewal) {
            const certPem = peerCertificatePem(client.conn);
            if (certPem && (await directory.adoptLostRenewal(cn, certPem))) key = "current";
          }
        } catch (err) {
          log.error("mqtt.connect.refused", { thing: cn, reason: "directory lookup failed", error: err });
          return done(refusal(SERVER_UNAVAILABLE, "server unavailable"), false);
        }
        if (!thing) {
          log.warn("mqtt.connect.refused", { thing: cn, reason: "unknown or revoked thing" });
          return done(refusal(NOT_AUTHORIZED, "not authorized"), false);
        }
        if (key === undefined) {
          log.warn("mqtt.connect.refused", { thing: cn, reason: "a certificate its renewal superseded (or not the thing's key)" });
          return done(refusal(NOT_AUTHORIZED, "not authorized"), false);
        }
        if (key === "current") {
          directory.forgetPreviousKey?.(cn).catch((err) => log.warn("thing.forget_previous_key.failed", { thing: cn, error: err }));
        }
        const previous = clients()[cn];
        if (previous && previous !== client) noteTakeover(cn, client.conn);
        things.set(client, thing);
        sessionOwner.set(cn, thing.id);
        done(null, true);
      };
      void admit();
    },

    authorizeSubscribe(client, sub, done) {
      const thing = things.get(client);
      if (!thing || !maySubscribe(thing.name, sub.topic)) {
        log.warn("mqtt.subscribe.refused", { thing: thing?.name ?? client.id, topic: sub.topic });
        return done(null, null); // SUBACK 128 for this topic; the session stays up
      }
      done(null, sub);
    },

    authorizePublish(client, packet, done) {
      // client is null only for a will left over from another broker instance: nobody to vouch for it.
      const thing = client ? things.get(client) : undefined;
      const topic = packet.topic;
      if (!client || !thing || !mayPublish(thing.name, topic)) {
        // MQTT 3.1.1 has no negative PUBACK: refusing one publish means dropping the connection.
        log.warn("mqtt.publish.refused", { thing: thing?.name ?? client?.id, topic, reason: "topic not allowed" });
        return done(new Error(`publish to ${topic} not allowed`));
      }
      const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload ?? "");
      if (payload.length > maxPayload) {
        log.warn("mqtt.publish.refused", { thing: thing.name, topic, bytes: payload.length, reason: "payload too large" });
        return done(new Error("payload too large"));
      }
      // Re-checked on every publish so a revocation takes effect even before `disconnect` is called
      // (another process or hub may have written it: the database is asked, not a cache).
      void lookup(thing.name).then((current) => {
        if (!current) {
          log.warn("mqtt.publish.refused", { thing: thing.name, topic, reason: "unknown or revoked thing" });
          return done(new Error("thing revoked"));
        }
        if (!isHubTopic(topic)) return done(null);

        // Hub topics are the hub's inbox, not a channel to other clients: never keep them retained.
        packet.retain = false;
        if (!events.onThingPublish) return done(null);
        // The PUBACK (QoS 1) is written only after this callback: the message is stored first.
        events.onThingPublish(current, topic, payload).then(
          () => done(null),
          (err) => {
            log.error("mqtt.publish.store.failed", { thing: thing.name, topic, error: err });
            done(err instanceof Error ? err : new Error(String(err)));
          },
        );
      });
    },

    authorizeForward(client, packet) {
      // A clean session's PUBACKs name no packet aedes kept: note what it was sent, in order.
      // aedes downgrades to the subscription's QoS right after this hook, from the same
      // (untyped) `client.subscriptions`; the clean-session test in hub-ingress.test.ts pins it.
      if (delivery && client.clean && packet.qos > 0 && !droppedAtConnect.has(packet) && (subscriptionsOf(client)[packet.topic]?.qos ?? 0) > 0) {
        delivery.forwardedToClean(client.id, packet.topic, packet.payload);
      }
      return packet;
    },
  });

  // "client" fires once authenticated and registered, just before the CONNACK is written.
  broker.on("client", (client: Client) => {
    log.info("mqtt.connected", { thing: client.id });
    try {
      events.onConnect?.(client.id);
    } catch (err) {
      log.error("mqtt.on_connect.failed", { thing: client.id, error: err });
    }
  });
  broker.on("clientDisconnect", (client: Client) => log.info("mqtt.disconnected", { thing: client.id }));
  broker.on("clientError", (client: Client, err: Error) => log.debug("mqtt.client.error", { thing: client.id, error: err }));

  const publishQos1 = (topic: string, payload: string | Buffer) =>
    new Promise<void>((resolve, reject) => {
      broker.publish(
        { cmd: "publish", topic, payload: typeof payload === "string" ? Buffer.from(payload) : payload, qos: 1, retain: false, dup: false },
        (err) => (err ? reject(err) : resolve()),
      );
    });
  if (delivery) trackIngress(broker, delivery);

  const sockets = new Set<tls.TLSSocket>();
  const context = (certPem: string): tls.SecureContextOptions => ({ ca: opts.caPem, cert: certPem, key: opts.keyPem, minVersion: "TLSv1.2" });
  const server = tls.createServer(
    {
      ...context(opts.certPem),
      requestCert: true,
      rejectUnauthorized: true,
      handshakeTimeout: 10_000,
    },
    (socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      limitPacketSize(broker.handle(socket as Duplex), maxPayload + HEADER_ALLOWANCE);
    },
  );
  // Wrong CA, no certificate, expired: the handshake fails and aedes never sees the socket.
  server.on("tlsClientError", (err, socket) => log.info("mqtt.tls.refused", { remote: socket?.remoteAddress, error: err.message }));

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", (err) => log.error("mqtt.server.error", { error: err }));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : opts.port;
  const hostForUrl = opts.host.includes(":") ? `[${opts.host}]` : opts.host;
  const url = `mqtts://${hostForUrl}:${port}`;
  log.info("mqtt.listening", { url });

  const clients = () => (broker as unknown as { clients: Record<string, Client> }).clients;
  let closing: Promise<void> | undefined;

  return {
    url,
    port,
    tracksDelivery: delivery !== undefined,
    publish: publishQos1,
    sendIngress(thingName, message) {
      // A device of a thing deleted and made again under this name, still connected (another
      // process deleted it; the poll has not run yet): it goes before the message is published.
      const connected = clients()[thingName];
      const as = connected && things.get(connected);
      if (message.thingId && as && as.id !== message.thingId) {
        log.info("mqtt.kicked", { thing: thingName, reason: "connected as a thing of this name since deleted" });
        connected.close();
      }
      return delivery ? delivery.send(thingName, message) : publishQos1(ingressTopic(thingName), ingressWirePayload(message.payload, message.flmessagespk));
    },
    isConnected(thingName) {
      // Registered clients have passed `authenticate`; `connected` flips only after the CONNACK is flushed.
      const client = clients()[thingName];
      return client !== undefined && !client.closed;
    },
    connectedCount() {
      // A scan of the registered clients: once per scrape, not per message.
      let n = 0;
      for (const client of Object.values(clients())) if (!client.closed) n++;
      return n;
    },
    useCertificate(certPem) {
      server.setSecureContext(context(certPem));
    },
    disconnect(thingName) {
      const client = clients()[thingName];
      if (!client) return false;
      log.info("mqtt.kicked", { thing: thingName });
      client.close();
      return true;
    },
    async disconnectStale() {
      const stale: string[] = [];
      for (const client of Object.values(clients())) {
        const thing = things.get(client);
        if (!thing || client.closed || !(await isGone(thing))) continue;
        log.info("mqtt.kicked", { thing: thing.name, reason: "revoked or deleted" });
        client.close();
        stale.push(thing.name);
      }
      return stale;
    },
    close() {
      closing ??= (async () => {
        const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
        await new Promise<void>((resolve) => broker.close(() => resolve()));
        // Connections still in the TLS handshake or before CONNECT are not aedes clients yet.
        for (const socket of sockets) socket.destroy();
        await serverClosed;
        log.info("mqtt.closed", { url });
      })();
      return closing;
    },
  };
}

/**
 * Tells `delivery` what happens to each thing's session. The client id is the thing's name
 * (`authenticate` enforces it), so it names the ingress topic too.
 */
function trackIngress(broker: Aedes, delivery: IngressDelivery) {
  // `preConnect` stopped hand-overs for the thing; "client" is emitted once the client is
  // registered, before aedes empties (clean) or resends (persistent) its queue, and
  // "clientReady" once that is done (lib/handlers/connect.js).
  broker.on("client", (client: Client) => {
    if (client.clean) delivery.sessionDiscarded(client.id);
  });
  broker.on("clientReady", (client: Client) => delivery.sessionReady(client.id));
  broker.on("clientDisconnect", (client: Client) => delivery.connectionClosed(client.id));
  // A connection refused after `preConnect` (revoked, not authorized) ends here.
  broker.on("clientError", (client: Client) => client.id && !client.connected && delivery.sessionReady(client.id));
  // Emitted after the subscription is stored and live, so a replay from here is queued in it.
  // Refused topics come with qos 128; a QoS 0 subscription gets no PUBACKs to track.
  broker.on("subscribe", (subs: { topic: string; qos: number }[], client: Client) => {
    const ingress = subs.find((s) => s.topic === ingressTopic(client.id));
    if (ingress && (ingress.qos === 1 || ingress.qos === 2)) delivery.sessionSubscribed(client.id, client.clean);
  });
  broker.on("unsubscribe", (topics: string[], client: Client) => {
    if (topics.includes(ingressTopic(client.id))) delivery.sessionUnsubscribed(client.id);
  });
  broker.on("ack", (packet: { cmd?: string; topic?: string; payload?: Buffer | string } | undefined, client: Client) => {
    if (!client) return;
    if (client.clean) return delivery.cleanAcknowledged(client.id);
    if (packet?.cmd !== "publish" || packet.topic !== ingressTopic(client.id)) return;
    delivery.acknowledged(client.id, packet.payload ?? "");
  });
}

/** The client's subscriptions by topic filter, as aedes keeps them (lib/client.js). */
function subscriptionsOf(client: Client): Record<string, { qos: number } | undefined> {
  return (client as Client & { subscriptions?: Record<string, { qos: number }> }).subscriptions ?? {};
}

/**
 * aedes has no packet size limit: its parser (mqtt-packet) buffers a whole packet, up to the
 * protocol's 256 MB, before any hook sees it. We stop a connection as soon as a packet header
 * announces more than `limit` bytes. This touches aedes internals (`client._parser`); if they
 * change, the guard is skipped and the payload check in `authorizePublish` still applies.
 */
function limitPacketSize(client: Client, limit: number) {
  type Parser = { _parseLength?: () => boolean; _emitError?: (err: Error) => void; packet: { length: number } };
  const parser = (client as unknown as { _parser?: Parser })._parser;
  const parseLength = parser?._parseLength;
  if (!parser || typeof parseLength !== "function" || typeof parser._emitError !== "function") return;
  parser._parseLength = function (this: Parser) {
    const ok = parseLength.call(this);
    if (ok && this.packet.length > limit) {
      this._emitError!(new Error(`packet of ${this.packet.length} bytes exceeds the limit of ${limit}`));
      return false;
    }
    return ok;
  };
}

/** How many hand-overs of one identity within TAKEOVER_WINDOW_MS mean two clients share it. */
const TAKEOVER_THRESHOLD = 3;
const TAKEOVER_WINDOW_MS = 60_000;
/** At most one WARN per thing per this many ms, however long the fight goes on. */
const TAKEOVER_WARN_EVERY_MS = 10 * 60_000;

/**
 * Notes each time a thing's live connection is replaced by a new one with the same identity
 * (MQTT 3.1.1 §3.1.4: the server disconnects the existing client). One replacement is a thing
 * that reconnected before its old TCP connection died; several a minute are two devices running
 * with one distribution's keys, each connect throwing the other off, and each losing in-flight
 * messages to the other's session: a WARN names the thing and the newest address.
 */
function takeoverWatch(log: Logger): (thingName: string, conn: unknown) => void {
  const recent = new Map<string, number[]>();
  const warnedAt = new Map<string, number>();
  return (thingName, conn) => {
    const now = Date.now();
    const times = (recent.get(thingName) ?? []).filter((t) => now - t < TAKEOVER_WINDOW_MS);
    times.push(now);
    recent.set(thingName, times);
    for (const [name, list] of recent) if (now - list[list.length - 1]! >= TAKEOVER_WINDOW_MS) recent.delete(name);
    if (times.length < TAKEOVER_THRESHOLD || now - (warnedAt.get(thingName) ?? -Infinity) < TAKEOVER_WARN_EVERY_MS) return;
    warnedAt.set(thingName, now);
    log.warn("mqtt.identity_contested", {
      thing: thingName,
      takeovers: times.length,
      window_s: TAKEOVER_WINDOW_MS / 1000,
      remote: (conn as { remoteAddress?: string } | undefined)?.remoteAddress,
      hint: "two clients use this thing's certificate and keep replacing each other: run its distribution on one device only",
    });
  };
}
