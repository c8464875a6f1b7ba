/**
 * src/thing/mqtt: the thing's one MQTT connection (session.ts), its reconnect pacing
 * (backoff.ts) and the TLS material it is built from (tls-setup.ts names the file at fault).
 */

import { EventEmitter } from "node:events";
import { type IClientOptions, type IPublishPacket, MqttClient } from "mqtt";
import { describeCertificate } from "../../crypto/certificate-info.ts";
import { thingTopics } from "../../protocol/topics.ts";
import { FlashlexError } from "../../shared/errors.ts";
import { describeError, type Logger } from "../../shared/log.ts";
import { OrderedPubacks } from "../../shared/mqtt-puback.ts";
import type { ThingIdentity } from "../identity.ts";
import type { ThingConfig } from "../settings.ts";
import { Backoff, type DropCause } from "./backoff.ts";
import { connectFailureHint } from "./connect-failure.ts";
import { tlsStream } from "./tls-stream.ts";

/** Receives one ingress message; the broker gets its PUBACK only after the promise resolves. */
export type MessageHandler = (packet: IPublishPacket) => Promise<void>;

/** What the session tells the ingress side: each new connection, then its messages. */
export interface IngressHandler {
  /**
   * a connection was accepted; `sessionPresent` is the CONNACK's flag (MQTT 3.1.1 §3.2.2.2),
   * `broker` the `host:port` connected to (config.yml's)
   */
  connectionStarted(sessionPresent: boolean, broker: string): void;
  /** takes a message; resolves once it is durable, when its PUBACK may leave */
  handle: MessageHandler;
  /** commits what waits for a group commit now (the session is stopping) */
  flush?(): void;
}

export interface SessionOptions {
  config: ThingConfig;
  identity: ThingIdentity;
  log: Logger;
  /** topics to subscribe to at QoS 1 on every connection */
  subscriptions: string[];
  ingress?: IngressHandler;
  /** the persistent session survives restarts; only a one-shot check uses a clean one */
  clean?: boolean;
  /** a one-shot check fails fast instead of retrying forever */
  reconnect?: boolean;
  /** overrides the thing name as MQTT client id (bootstrap's throwaway probe connection) */
  clientId?: string;
}

/**
 * `waitConnected` ran out of time, or a PUBACK or SUBACK did not come within
 * `mqttOperationTimeout`: the broker is unavailable (69), should one reach a command's exit.
 */
export class OperationTimeout extends FlashlexError {
  constructor(message: string) {
    super(message, "unavailable");
    this.name = "OperationTimeout";
  }
}

/** The broker answered a SUBSCRIBE with 0x80 for a topic (MQTT 3.1.1 §3.9.3). */
export class SubscriptionRefused extends Error {}

/** Connect failures in which nothing at the broker's address answered: refused, unreachable, a name that does not resolve. */
const NOT_ANSWERED = new Set(["ECONNREFUSED", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN", "ENETDOWN", "EAI_AGAIN", "ENOTFOUND"]);

/**
 * The thing's MQTT connection: mutual TLS with the thing's certificate (verification is never
 * turned off), client id = thing name, a persistent session, QoS 1 subscriptions renewed on
 * every connect, and reconnects paced by `Backoff`. Emits `connected`, `disconnected`.
 */
export class ThingSession extends EventEmitter {
  readonly client: MqttClient;
  private readonly backoff: Backoff;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private stopping = false;
  private readonly operationTimeoutMs: number;
  /** why the current connection will have ended: the broker, unless an error or we end it */
  private dropCause: DropCause = "broker";
  /** what MQTT.js last reported, for a one-shot session's "why it closed" */
  private lastError: Error | undefined;
  private takeoverWarned = false;
  /** the CONNACK code of the refusal already told (mqtt.connect_refused), until a connection is accepted */
  private refusedWith: number | undefined;
  /** this connection got its CONNACK */
  private accepted = false;
  /** a connection was accepted since start: the address settings work (connectFailureHint) */
  private connectedBefore = false;
  /** an error was reported since the last close */
  private erredSinceClose = false;
  /** a close before CONNACK without an error was told (mqtt.closed_before_connack), until a connection is accepted */
  private silentCloseTold = false;
  /** the connect failures whose hint (connect-failure.ts) was logged, until a connection is accepted */
  private readonly hintsTold = new Set<string>();
  /** something at the broker's address answered since start (brokerAnswered) */
  private answered = false;
  /** writes each PUBACK after the group commit that holds its message, in order, on its connection */
  private readonly pubacks: OrderedPubacks;

  constructor(private readonly options: SessionOptions) {
    super();
    const mqttConfig = options.config.yaml.thing.mqtt;
    const backoffConfig = mqttConfig.autoReconnectBackoffTime;
    this.backoff = new Backoff({
      baseSeconds: backoffConfig.baseReconnectQuietTimeSecond,
      maxSeconds: backoffConfig.maxReconnectQuietTimeSecond,
      stableSeconds: backoffConfig.stableConnectionTimeSecond,
    });
    this.operationTimeoutMs = options.config.timeouts.operationMs;
    this.client = new MqttClient(tlsStream, clientOptions(options));
    this.client.handleMessage = (packet, done) => this.handle(packet, done);
    // Not acknowledged: drop the connection so the broker redelivers from the persistent session.
    this.pubacks = new OrderedPubacks({
      client: this.client,
      onFailure: (err, packet) => {
        // once per failed commit (OrderedPubacks), however many messages it held
        const full = err instanceof FlashlexError && err.kind === "full";
        this.options.log.error("ingress.failed", {
          topic: packet.topic,
          error: err,
          note: "not acknowledged: the broker sends the commit's messages again",
          // deleting stored messages frees pages inside the file, not the disk (docs/database.md)
          fix: full
            ? "free space (or quota) on that file system, logs or other files: ingress resumes by itself, the broker keeps the messages meanwhile"
            : undefined,
        });
        this.dropConnection();
      },
    });
    this.wire();
  }

  get connected(): boolean {
    return this.client.connected;
  }

  /**
   * Whether the broker's address answered anything since start: a CONNACK (accepted or refused),
   * a TLS failure or a close after the handshake. False while every attempt was refused or never
   * got through (NOT_ANSWERED): the hub or the network is down, which says nothing of this binary
   * (the update trial waits for it rather than roll a good release back).
   */
  get brokerAnswered(): boolean {
    return this.answered;
  }

  /** Resolves on the first successful connect (and subscription), rejects after `timeoutMs`. */
  waitConnected(timeoutMs: number): Promise<void> {
    if (this.client.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup();
        reject(new OperationTimeout(`no MQTT connection within ${Math.round(timeoutMs / 1000)} s`));
      }, timeoutMs);
      const onConnected = () => (cleanup(), resolve());
      const onFatal = (err: Error) => (cleanup(), reject(err));
      const cleanup = () => {
        clearTimeout(timer);
        this.off("connected", onConnected);
        this.off("fatal", onFatal);
      };
      this.on("connected", onConnected);
      this.on("fatal", onFatal);
    });
  }

  /** Publishes and waits for the broker's PUBACK (QoS 1), bounded by `mqttOperationTimeout`. */
  publish(topic: string, payload: string | Buffer, qos: 0 | 1 = 1): Promise<void> {
    return this.withTimeout(`publish to ${topic}`, (done) => this.client.publish(topic, payload, { qos }, (err) => done(err)));
  }

  subscribe(topics: string[]): Promise<void> {
    if (!topics.length) return Promise.resolve();
    return this.withTimeout(`subscribe to ${topics.join(", ")}`, (done) =>
      this.client.subscribe(topics, { qos: 1 }, (err, granted) => {
        // MQTT.js 5 rejects a SUBACK holding a 0x80 return code (MQTT 3.1.1 §3.9.3) with an
        // error that carries the SUBACK (ErrorWithSubackPacket); in topic order, as sent.
        const codes = (err as (Error & { packet?: { granted?: number[] } }) | null)?.packet?.granted;
        const refused = codes ? topics.filter((_, i) => ((codes[i] ?? 0) & 0x80) !== 0) : (granted?.filter((g) => g.qos === 128).map((g) => g.topic) ?? []);
        done(refused.length ? new SubscriptionRefused(`the broker refused the subscription to ${refused.join(", ")} (SUBACK 128)`) : (err ?? undefined));
      }),
    );
  }

  /**
   * Finishes what is in flight (an ingress message being stored gets its PUBACK), sends
   * DISCONNECT and closes, bounded by `connectDisconnectTimeout`.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.reconnectTimer);
    // What waits for a group commit is stored now, and its PUBACKs leave before the DISCONNECT.
    this.options.ingress?.flush?.();
    await new Promise((resolve) => setImmediate(resolve));
    const timeoutMs = this.options.config.timeouts.connectMs;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.client.end(true, {}, () => resolve()), Math.min(timeoutMs, 5000));
      this.client.end(false, {}, () => (clearTimeout(timer), resolve()));
    });
  }

  /**
   * Connects with `identity` from now on (a renewed certificate and key, or the previous pair
   * put back): the next TLS handshakes use it, and the current connection is dropped so the next
   * one is made at once (through the usual backoff). MQTT.js builds each connection's TLS stream
   * from the options object it was given, so changing it is enough.
   */
  reconnectWith(identity: Pick<ThingIdentity, "caPem" | "certPem" | "keyPem">, why: string): void {
    Object.assign(this.client.options, { ca: identity.caPem, cert: identity.certPem, key: identity.keyPem });
    this.options.log.info("mqtt.identity_changed", { reason: why });
    this.dropConnection();
  }

  private handle(packet: IPublishPacket, done: (err?: Error) => void): void {
    const ingress = this.options.ingress;
    if (!ingress) {
      done();
      return;
    }
    // Stopping: the database may be closing; no PUBACK, the broker sends it again next time.
    if (this.stopping) {
      done(new Error("stopping"));
      return;
    }
    // Group commit: MQTT.js reads on at once; this message's PUBACK follows its commit, on the
    // connection it came on (after a reconnect the broker sends it again: a repeat, acknowledged then).
    this.pubacks.handle(packet, done, () => ingress.handle(packet));
  }

  private wire(): void {
    const { log, subscriptions } = this.options;
    this.client.on("connect", (connack) => {
      // A connect that was under way when stop() began: stop() ends it.
      if (this.stopping) return;
      this.pubacks.connectionStarted();
      this.backoff.connected(Date.now());
      this.dropCause = "broker";
      this.lastError = undefined;
      this.refusedWith = undefined;
      this.accepted = true;
      this.connectedBefore = true;
      this.answered = true;
      this.silentCloseTold = false;
      this.hintsTold.clear();
      log.info("mqtt.connected", { broker: this.brokerName(), sessionPresent: connack.sessionPresent });
      // Before any PUBLISH of this connection is handled (MQTT.js emits `connect` first).
      this.options.ingress?.connectionStarted(connack.sessionPresent, this.brokerName());
      // Every connection subscribes, a resumed session too: a SUBSCRIBE replaces the
      // subscription without interrupting its flow (MQTT 3.1.1 §3.8.4), and what the broker then
      // sends again, the topic's retained message, is recognised (isRetainedRepeat). Remembering
      // what a session held went wrong whenever the broker's session and the memory parted:
      // a collect or another data directory beginning a session, a broker restored from a save.
      this.subscribe(subscriptions).then(
        () => {
          if (subscriptions.length) log.info("mqtt.subscribed", { topics: subscriptions.join(","), session: connack.sessionPresent ? "resumed" : "new" });
          this.emit("connected");
        },
        (err: Error) => {
          const refused = err instanceof SubscriptionRefused;
          log.error(refused ? "mqtt.subscription_refused" : "mqtt.subscribe_failed", {
            error: err,
            hint: refused ? subscriptionRefusedHint(subscriptions, this.options.config.yaml.thing.name) : undefined,
          });
          if (refused) this.backoff.penalise();
          this.emit("fatal", err);
          this.dropConnection();
        },
      );
    });
    this.client.on("error", (err) => {
      this.erredSinceClose = true;
      // one failure, one line, however many times it is passed on
      if (err === this.lastError) return;
      this.dropCause = "error";
      this.lastError = err;
      if (!NOT_ANSWERED.has((err as NodeJS.ErrnoException).code ?? "")) this.answered = true;
      const refusal = connackRefusal(err);
      if (refusal) {
        this.refused(refusal);
        return;
      }
      // While stopping, a broker that closes first makes a reset we asked for: not worth a WARN.
      // A cause-specific fix (a wrong port, a wrong name) rides on the first such line, not on every retry.
      const hint = this.accepted ? undefined : connectFailureHint(err, this.options.config, this.connectedBefore);
      const told = hint !== undefined && this.hintsTold.has(hint);
      if (hint) this.hintsTold.add(hint);
      (this.stopping ? log.debug : log.warn)("mqtt.error", { error: err, hint: told ? undefined : hint });
    });
    this.client.on("close", () => {
      if (this.stopping) return;
      const silentlyRefused = !this.accepted && !this.erredSinceClose;
      this.accepted = false;
      this.erredSinceClose = false;
      if (silentlyRefused) this.answered = true;
      if (silentlyRefused && !this.silentCloseTold) {
        // A broker that will not take the thing's certificate may end the TLS connection after
        // the thing's side of the handshake is done: no error reaches this side, only a close.
        this.silentCloseTold = true;
        log.warn("mqtt.closed_before_connack", {
          broker: this.brokerName(),
          hint: `${silentClose(this.client.options.cert)}. Retrying; said once until a connection is accepted`,
        });
      }
      this.backoff.disconnected(Date.now(), this.dropCause);
      this.dropCause = "error"; // until the next CONNACK, a close is a failed connect
      if (this.backoff.takeoverSuspected && !this.takeoverWarned) {
        this.takeoverWarned = true;
        log.warn("mqtt.session_taken_over", {
          client: this.options.clientId ?? this.options.identity.thingName,
          hint: "the broker keeps closing this connection right after it is made: another device or process is probably connected with the same thing name and certificate (a copied distribution, or a second serve). Stop the other one, or give each device its own thing. Reconnecting more slowly meanwhile.",
        });
      } else if (!this.backoff.takeoverSuspected) {
        this.takeoverWarned = false;
      }
      this.emit("disconnected");
      if (this.options.reconnect === false) {
        this.emit("fatal", new Error(closeReason(this.lastError, silentlyRefused, this.client.options.cert), { cause: this.lastError }));
        return;
      }
      const delay = this.backoff.nextDelayMs();
      log.info("mqtt.reconnect_scheduled", { inMs: delay });
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = setTimeout(() => this.client.reconnect(), delay);
    });
  }

  /**
   * The broker answered CONNECT with a refusal (MQTT 3.1.1 §3.2.2.3). Retrying soon cannot help
   * (the thing is revoked, its name is not its certificate's, the broker wants a password), so
   * the next wait is the longest (except for "unavailable", which may pass), and the owner is
   * told once per episode, at WARN, what the refusal means and what to do; the episode ends at
   * the next accepted connection, or when the broker refuses for another reason.
   */
  private refused(refusal: { code: number; meaning: string; fix: string }): void {
    const { log } = this.options;
    if (!this.stopping && refusal.code !== 3) this.backoff.penalise();
    if (this.stopping || this.refusedWith === refusal.code) {
      log.debug("mqtt.connect_refused", { code: refusal.code, reason: refusal.meaning });
      return;
    }
    this.refusedWith = refusal.code;
    log.warn("mqtt.connect_refused", {
      broker: this.brokerName(),
      client: this.options.clientId ?? this.options.identity.thingName,
      code: refusal.code,
      reason: refusal.meaning,
      fix: refusal.fix,
      note: this.options.reconnect === false ? undefined : "retrying at the longest backoff; said once until a connection is accepted",
    });
  }

  /** Ends the connection from our side (the broker then redelivers what we did not acknowledge). */
  private dropConnection(): void {
    this.dropCause = "self";
    this.client.stream?.destroy();
  }

  private brokerName(): string {
    const thing = this.options.config.yaml.thing;
    return `${thing.endpoint}:${thing.mqtt.port}`;
  }

  private withTimeout(what: string, start: (done: (err?: Error) => void) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new OperationTimeout(`${what} not acknowledged within ${this.operationTimeoutMs / 1000} s`)),
        this.operationTimeoutMs,
      );
      start((err) => {
        clearTimeout(timer);
        err ? reject(err) : resolve();
      });
    });
  }
}

function clientOptions(options: SessionOptions): IClientOptions {
  const thing = options.config.yaml.thing;
  const { identity } = options;
  return {
    // what tlsStream connects with, each time
    host: thing.endpoint,
    port: thing.mqtt.port,
    ca: identity.caPem,
    cert: identity.certPem,
    key: identity.keyPem,
    clientId: options.clientId ?? identity.thingName,
    clean: options.clean ?? false,
    protocolVersion: 4,
    keepalive: thing.mqtt.keepAliveIntervalSecond,
    // Reconnects are ours (Backoff); MQTT.js only knows a fixed period.
    reconnectPeriod: 0,
    connectTimeout: options.config.timeouts.connectMs,
    // Our own queue is the durable outbox; MQTT.js's in-memory one would lose messages on a crash.
    queueQoSZero: false,
    // Otherwise mqtt-packet makes a Buffer for every packet id (65,536 of them) before the first
    // packet leaves: ~13 ms in a CPU profile of serve's start, and ~5 MiB held, for 2-byte writes.
    writeCache: false,
  };
}

/** CONNACK return codes that refuse a connection (MQTT 3.1.1 §3.2.2.3), and what to check. */
const CONNACK_REFUSALS: Record<number, string> = {
  1: "the broker does not speak MQTT 3.1.1",
  2: "the broker refused the client id: it must be the thing's name, as in its certificate",
  3: "the broker is unavailable",
  4: "the broker refused the user name or password",
  5: "the broker refused this thing (not authorized): it may be revoked, or unknown to this hub",
};

/** What to do about each refusal, for the owner of the thing. */
const CONNACK_FIXES: Record<number, string> = {
  1: "point flashlex.thing.endpoint and mqtt.port at an MQTT 3.1.1 broker (the hub's, or Mosquitto)",
  2: "use the config and keys of the same distribution: flashlex.thing.name must be the name in the thing's certificate",
  3: "the broker is up but not taking connections: it is retried; if it lasts, ask the hub's operator",
  // broker-neutral: a Mosquitto that wants passwords answers 4, and so does a RabbitMQ cluster
  // whose auth backend (the hub) could not answer, e.g. while the hub's database is down
  4: "the broker did not accept this thing's login: it is retried; if it lasts, ask the hub's operator to check that the broker authenticates things by their certificate and that the hub answers the broker's auth requests (its database is up)",
  5: "this thing is revoked or unknown to this hub: ask the hub's operator (`flashlex hub thing list` on the hub shows it); a revoked or deleted thing needs a new identity: a new distribution (`hub thing delete`, then `hub thing create`, frees and reuses the name) or a new enrolment (`flashlex enroll` into an empty folder)",
};

/**
 * What a SUBACK 128 (MQTT 3.1.1 §3.9.3) for the thing's subscriptions points at. Its own ingress
 * or pubsub topic (app.thread basicPubsub) refused is, on a hub's broker, a thing the hub revoked or deleted (Mosquitto's dynamic
 * security and RabbitMQ take its connection and refuse its topics; the embedded broker refuses
 * the CONNECT); another topic is the config's or the broker's rules.
 */
function subscriptionRefusedHint(subscriptions: string[], thingName: string): string {
  const { ingress, pubsub } = thingTopics(thingName);
  const own = subscriptions.find((topic) => topic === ingress || topic === pubsub);
  const topics = subscriptions.join(", ");
  if (own !== undefined) {
    return `the broker does not allow this thing to subscribe to its own ${own}: most likely ${CONNACK_FIXES[5]}; if it is not, check the broker's rules`;
  }
  return `the broker does not allow this thing to subscribe to ${topics}: check flashlex.thing.mqtt.ingress.topic (ingress/<thing name>) and the broker's rules`;
}

/** The refusal an MQTT.js error reports (its `code` is the CONNACK return code), or undefined. */
function connackRefusal(err: Error | undefined): { code: number; meaning: string; fix: string } | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code !== "number" || !CONNACK_REFUSALS[code]) return undefined;
  return { code, meaning: CONNACK_REFUSALS[code]!, fix: CONNACK_FIXES[code]! };
}

/** What a close without CONNACK and without an error most often means. */
const SILENT_CLOSE =
  "the broker closed the connection before answering CONNECT: most often it does not accept this thing's certificate (one signed by another hub's CA, keys from another distribution, or a certificate its CRL revokes); the broker's log says why";

/**
 * SILENT_CLOSE, unless the certificate the thing connects with (`certPem`) has expired: then
 * that, which is why a broker refuses it (the thing knows its own dates; the broker's side does
 * not reach it).
 */
function silentClose(certPem: unknown, now = Date.now()): string {
  try {
    const { notAfter } = describeCertificate(String(certPem));
    if (notAfter.getTime() <= now) {
      return `the broker closed the connection before answering CONNECT: this thing's certificate expired at ${notAfter.toISOString()}, which brokers refuse; serve renews it from the hub as soon as the hub answers (the renewal lines say how it goes), and a device clock set wrong makes a valid one look expired`;
    }
  } catch {
    // a certificate we cannot read: the general words
  }
  return SILENT_CLOSE;
}

/** Why a one-shot session's connection ended, in one phrase: a CONNACK refusal, an error, or the broker closing it (`beforeConnack`: before any CONNACK). */
function closeReason(err: Error | undefined, beforeConnack: boolean, certPem: unknown): string {
  const refusal = connackRefusal(err);
  if (refusal) return `${refusal.meaning} (CONNACK ${refusal.code})`;
  if (err) return `the MQTT connection failed: ${describeError(err)}`;
  return beforeConnack ? silentClose(certPem) : "the broker closed the MQTT connection";
}
