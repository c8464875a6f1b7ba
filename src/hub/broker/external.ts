/**
 * The hub as a client of an external broker (Mosquitto, EMQX) — the scale path. The broker
 * enforces the topic rules (see mosquitto-config.ts); the hub only reads the hub topics and
 * publishes ingress.
 *
 * The broker does not tell a subscriber who published a message, so `onThingPublish` gets
 * `undefined` as the thing: the egress handler authenticates the payload itself (the MQTT egress
 * envelope carries the thing's JWT).
 *
 * Session: clean = false under the client id `flashlex-hub-<instance>` (home/instance.ts), so the
 * broker queues hub-topic messages while the hub is down or restarting and delivers them when it
 * is back (Mosquitto keeps up to `max_queued_messages`, 1000 by default, per offline session).
 * Several hubs on one RabbitMQ cluster each have their own session, and each receives every
 * message on the hub topics (3.10's MQTT has no shared subscriptions): storing is idempotent by
 * the message id (events.ts). Mosquitto replaces the client id with the certificate's CN
 * (`use_username_as_clientid`), so there every hub is `flashlex-hub`: one hub per Mosquitto.
 *
 * Ingress: queueing it for an offline thing, across broker restarts, is the broker's job
 * (Mosquitto with `persistence true`). The hub is not the subscriber, so it never sees the
 * thing's PUBACK: ingress sent this way is stored with delivery `unknown`.
 *
 * Revocation: the same connection carries the dynamic security plugin's commands (dynsec.ts,
 * dynsec-control.ts), so `revoke` shuts a thing out of Mosquitto within a round trip.
 */
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { ingressWirePayload } from "../../protocol/ingress.ts";
import { HUB_TOPICS, ingressTopic } from "../../protocol/topics.ts";
import { ConfigError, FlashlexError } from "../../shared/errors.ts";
import { withinDnsLengths } from "../../shared/listen-address.ts";
import { type Logger, quoteGiven } from "../../shared/log.ts";
import { OrderedPubacks } from "../../shared/mqtt-puback.ts";
import { parseUrlStrictly } from "../../shared/strict-url.ts";
import { HUB_CLIENT_NAME } from "../home/paths.ts";
import type { BrokerEvents, HubBroker, ThingDirectory } from "./broker.ts";
import { DYNSEC_RESPONSE_TOPIC } from "./dynsec.ts";
import { createDynsecControl } from "./dynsec-control.ts";
import { TakeoverDetector } from "./takeover.ts";

export interface ExternalBrokerOptions {
  /** mqtts://host:port (port defaults to 8883); TLS is never optional */
  url: string;
  /**
   * The other nodes of a cluster (mqtts:// URLs): after a lost connection the client tries the
   * next, in turn (MQTT.js `servers`), so the hub follows the cluster when a node goes away.
   */
  failoverUrls?: string[];
  /**
   * How to shut revoked things out; default: the dynamic security plugin of Mosquitto
   * (dynsec-control.ts). RabbitMQ: close their connections through the management API
   * (rabbitmq-management.ts), the auth backend refusing them from then on.
   */
  revoke?: (thingNames: readonly string[]) => Promise<void>;
  caPem: string;
  /** the hub's own client certificate and key, CN "flashlex-hub" */
  certPem: string;
  /** the MQTT client id: `flashlex-hub-<instance>` (home/instance.ts); default `flashlex-hub` */
  clientId?: string;
  keyPem: string;
  events: BrokerEvents;
  /** unused here (the broker authenticates things), kept so both brokers take the same inputs */
  directory: ThingDirectory;
  log: Logger;
  /** how long the first connection may take before we give up; default 30 s */
  connectTimeoutMs?: number;
  /** ends the wait for the first connection (`hub serve` stopped while it starts): it rejects with the signal's reason */
  signal?: AbortSignal;
  /** at most this many hub-topic messages handed to the hub and not yet acknowledged; default 1,000 (shared/mqtt-puback.ts) */
  maxPendingAcks?: number;
  /** after every connect (the first and each reconnect), once subscribed: the hub re-applies revocations */
  onConnected?: () => void;
}

/** An external broker, plus what only it needs. */
export interface ExternalBroker extends HubBroker {
  /**
   * Shuts the named things out through the dynamic security plugin (disconnected now, denied
   * everything on any later connection). Throws FlashlexError (`unavailable`) when the broker
   * is not connected, has no plugin, or refused; the caller retries.
   */
  revoke(thingNames: readonly string[]): Promise<void>;
}

/**
 * The host (an IPv6 one without brackets) and port of an external broker's `mqtts://HOST[:PORT]`
 * URL; no port is 8883 (MQTT over TLS, IANA). Throws ConfigError (78) naming what is wrong: not a
 * URL, not mqtts://, no host, port 0.
 */
export function parseBrokerUrl(url: string): { host: string; port: number } {
  const parsed = parseUrlStrictly(url);
  if (!parsed) throw new ConfigError(`broker URL is not a URL: ${quoteGiven(url)}`);
  if (parsed.protocol !== "mqtts:") throw new ConfigError(`broker URL must use mqtts:// (TLS), not ${quoteGiven(url)}`);
  const host = parsed.hostname.replace(/^\[(.*)\]$/, "$1");
  if (!host) throw new ConfigError(`broker URL has no host: ${quoteGiven(url)}`);
  if (!withinDnsLengths(host))
    throw new ConfigError(`broker URL: its host is longer than a DNS name may be (253 characters, 63 between dots): ${quoteGiven(host)}`);
  const port = parsed.port ? Number(parsed.port) : 8883;
  if (port === 0) throw new ConfigError(`broker URL port must be 1-65535: ${quoteGiven(url)}`);
  return { host, port };
}

/**
 * Resolves once connected (MQTT 3.1.1) and subscribed to the hub topics; MQTT.js reconnects on
 * its own from then on. Rejects with ConfigError (78) for a bad URL, a certificate not for its
 * host, or a subscription the broker's ACL refused; else `unavailable` (69): refused, or not
 * usable in time; with `signal`'s reason when it is aborted first.
 */
export async function connectExternalBroker(opts: ExternalBrokerOptions): Promise<ExternalBroker> {
  const log = opts.log.child({ component: "broker" });
  const { host, port } = parseBrokerUrl(opts.url);
  const failover = (opts.failoverUrls ?? []).map(parseBrokerUrl);
  const options: IClientOptions = {
    // {protocol, host, port} rather than a URL string: a URL prints DEP0169 in a compiled binary.
    protocol: "mqtts",
    host,
    port,
    ca: opts.caPem,
    cert: opts.certPem,
    key: opts.keyPem,
    rejectUnauthorized: true,
    clientId: opts.clientId ?? HUB_CLIENT_NAME,
    clean: false,
    protocolVersion: 4,
    keepalive: 30,
    reconnectPeriod: 2_000,
    // MQTT.js 5 stops reconnecting after a refused CONNACK unless told otherwise: the hub keeps
    // trying (CONNACK 3 from a cluster still starting, or a node that lost its leader); a refusal
    // that will not change ends the first connect below (client.endAsync).
    reconnectOnConnackError: true,
    connectTimeout: 15_000,
    resubscribe: true,
    // No 65,536 pre-made packet-id Buffers (mqtt-packet's cache; see the agent's session.ts).
    writeCache: false,
    // MQTT.js moves to the next of `servers` on every reconnect (and starts with the first).
    servers: failover.length ? [{ host, port }, ...failover] : undefined,
  };
  const client: MqttClient = mqtt.connect(options);
  // Settled by the first connect + SUBACK (or the first error): whether the broker is usable at all.
  const subscribed = Promise.withResolvers<void>();
  let ready = false;
  const dynsec = createDynsecControl({
    publish: async (topic, payload) => {
      if (!client.connected) throw new FlashlexError(`broker ${opts.url} is not connected`, "unavailable");
      await client.publishAsync(topic, payload, { qos: 1, retain: false });
    },
  });

  // Egress is committed in groups (the Collector's group commit), so MQTT.js must go on reading
  // while a message is being stored: its PUBACK is written after the commit, in order, on the
  // connection it came on (shared/mqtt-puback.ts, as the thing does for its ingress). At most
  // `maxPending` wait; the broker's own window (RabbitMQ's mqtt.prefetch, Mosquitto's
  // max_inflight_messages) usually bounds it first.
  const pubacks = new OrderedPubacks({
    client,
    maxPending: opts.maxPendingAcks,
    onFailure: (err, packet) => {
      // No PUBACK. MQTT.js would just move on, and the broker only redelivers an unacknowledged
      // message on a new connection of the same session: so drop the connection.
      log.error("mqtt.store.failed", { topic: packet.topic, error: err });
      client.stream?.destroy();
    },
  });
  // Set on the client, not in the options (there it is silently ignored).
  client.handleMessage = (packet, done) => {
    const topic = packet.topic;
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    pubacks.handle(packet, done, async () => {
      if (topic === DYNSEC_RESPONSE_TOPIC) return dynsec.handleResponse(payload);
      await opts.events.onThingPublish?.(undefined, topic, payload);
    });
  };

  // Two hubs under one client id knock each other off every reconnectPeriod, each seeing only
  // offline/connected: say so once, with the fix (home/instance.ts).
  const takeovers = new TakeoverDetector();
  client.on("close", () => {
    if (takeovers.closed(Date.now()))
      log.error("mqtt.client_id_clash", {
        client_id: options.clientId,
        note: "connections under this client id keep closing within seconds of opening: probably another hub uses the same instance name (a copied home's instance file, or the same hub.instance) and the broker hands the session back and forth. Give each hub its own hub.instance in hub.yml, or delete the copied instance file (docs/scaling.md, Several hubs)",
      });
  });

  client.on("connect", (connack) => {
    takeovers.connected(Date.now());
    // Before this connection's first PUBLISH is handled (MQTT.js emits `connect` first).
    pubacks.connectionStarted();
    log.info("mqtt.connected", {
      url: opts.url,
      client_id: options.clientId,
      node: `${client.options.host}:${client.options.port}`,
      sessionPresent: connack.sessionPresent,
    });
    // With a resumed session the broker still has the subscriptions; subscribing again is harmless
    // and repairs a session the broker lost.
    client.subscribe([...HUB_TOPICS], { qos: 1 }, (err, granted) => {
      const refused = granted?.filter((g) => g.qos === 128).map((g) => g.topic) ?? [];
      if (err || refused.length) {
        log.error("mqtt.subscribe.failed", { error: err, refused: refused.join(",") || undefined });
        // A SUBACK 0x80 (MQTT 3.1.1 §3.9.3) is the broker's ACL, not this hub home's files:
        // configuration (78); 77 would blame the home. MQTT.js 5 passes it as an error holding the
        // SUBACK (its return codes in the order of the topics asked for), not as `granted`.
        const codes = (err as { packet?: { granted?: unknown } } | undefined)?.packet?.granted;
        const refusedByCode = Array.isArray(codes) ? HUB_TOPICS.filter((_, i) => typeof codes[i] === "number" && (codes[i] & 0x80) !== 0) : [];
        const aclRefused = [...refused, ...refusedByCode];
        subscribed.reject(
          aclRefused.length
            ? new ConfigError(
                `broker ${opts.url} refused the hub's subscription to ${aclRefused.join(", ")}: its ACL must let the hub's client (${HUB_CLIENT_NAME}) read them, as the one hub mosquitto-config writes does`,
              )
            : err,
        );
      } else {
        subscribed.resolve();
        if (ready) opts.onConnected?.();
      }
    });
    // Apart, and not fatal: a broker without the dynamic security plugin (or one that refuses
    // the topic) still works; revocation then waits for the CRL (dynsec-control.ts times out).
    if (opts.revoke) return;
    client.subscribe(DYNSEC_RESPONSE_TOPIC, { qos: 1 }, (err, granted) => {
      if (err || granted?.some((g) => g.qos === 128)) log.warn("mqtt.dynsec.unavailable", { error: err, note: "revocation waits for the CRL and SIGHUP" });
    });
  });
  client.on("reconnect", () => log.info("mqtt.reconnecting", { url: opts.url }));
  client.on("offline", () => log.warn("mqtt.offline", { url: opts.url }));
  // While the hub starts, a broker that is not ready yet (a cluster still electing the leader of
  // its client-id tracking answers CONNACK 3; a node still booting refuses the TCP connection) is
  // waited for, MQTT.js retrying every reconnectPeriod (reconnectOnConnackError), until the
  // timeout; a refusal that will not change (bad credentials, TLS) fails at once.
  let lastTransient: Error | undefined;
  // MQTT.js's TLS transport hands a connection's error to the client, and the client then reports
  // the same error object again from the stream: one line for it.
  let lastError: Error | undefined;
  client.on("error", (err) => {
    if (err === lastError) return;
    lastError = err;
    log.warn("mqtt.error", { url: opts.url, error: err });
    if (ready) return;
    if (isTransientRefusal(err)) lastTransient = err;
    else subscribed.reject(err);
  });

  const timeoutMs = opts.connectTimeoutMs ?? 30_000;
  const timer = setTimeout(
    () =>
      subscribed.reject(
        new FlashlexError(`broker ${opts.url} not usable within ${timeoutMs} ms${lastTransient ? ` (last: ${lastTransient.message})` : ""}`, "unavailable"),
      ),
    timeoutMs,
  );
  const stopWaiting = () => subscribed.reject(opts.signal?.reason);
  opts.signal?.addEventListener("abort", stopWaiting, { once: true });
  try {
    opts.signal?.throwIfAborted();
    await subscribed.promise;
    ready = true;
    opts.onConnected?.();
  } catch (err) {
    await client.endAsync(true).catch(() => {});
    if (err instanceof FlashlexError || err === opts.signal?.reason) throw err;
    // The URL names a host the broker's certificate (the hub's own, from hub init) is not for:
    // trying again cannot help, so it is configuration (78), not "try later" (a restart loop).
    const code = (err as { code?: unknown } | null)?.code;
    if (code === "ERR_TLS_CERT_ALTNAME_INVALID" || code === "HOSTNAME_MISMATCH") {
      throw new ConfigError(
        `cannot use broker ${opts.url}: its certificate is not for ${host}; name the broker by one of the names hub init gave it (hub.yml hub.broker.names) in --broker or hub.broker.external`,
        { cause: err },
      );
    }
    throw new FlashlexError(`cannot use broker ${opts.url}: ${(err as Error).message}`, "unavailable");
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener("abort", stopWaiting);
  }

  const publish = async (topic: string, payload: string | Buffer) => {
    // Fail now rather than wait for a reconnect that may never come: the caller reports it.
    if (!client.connected) throw new FlashlexError(`broker ${opts.url} is not connected`, "unavailable");
    await client.publishAsync(topic, payload, { qos: 1, retain: false });
  };
  return {
    url: opts.url,
    tracksDelivery: false,
    publish,
    sendIngress: (thingName, message) => publish(ingressTopic(thingName), ingressWirePayload(message.payload, message.flmessagespk)),
    isConnected: () => undefined,
    revoke: (thingNames) => (opts.revoke ? opts.revoke(thingNames) : dynsec.revoke(thingNames)),
    async close() {
      await client.endAsync();
    },
  };
}

/** CONNACK 3 (server unavailable, MQTT 3.1.1 §3.2.2.3) or a refused or reset TCP connection: the broker may be ready soon. */
function isTransientRefusal(err: Error): boolean {
  const code = (err as { code?: unknown }).code;
  return code === 3 || code === "ECONNREFUSED" || code === "ECONNRESET";
}
