/**
 * QoS 1 PUBACKs that leave after the commit that made each message durable, while MQTT.js goes
 * on reading the next messages, so a group commit (group-commit.ts) gets more than one message.
 * Used by the thing's session (thing/mqtt/session.ts) and by the hub as a client of an external
 * broker (hub/broker/external.ts).
 *
 * MQTT.js 5 hands over one message at a time (`client.handleMessage(packet, done)`) and writes
 * the PUBACK only when `done()` is called without an error (lib/handlers/publish.js); `done(err)`
 * lets it go on to the next packet and writes no PUBACK. So the caller calls `done(PUBACK_DEFERRED)`
 * at once and, after the commit, writes the PUBACK itself with the function MQTT.js's own handler
 * uses for it, `client._sendPacket({cmd: "puback", messageId})`.
 *
 * `_sendPacket` is not MQTT.js's public API: it is used here, and only here, on purpose, and
 * test/integration/mqttjs-deferred-puback.test.ts pins both behaviours against Mosquitto (no
 * PUBACK after `done(err)`; a PUBACK through `_sendPacket` acknowledges), so an MQTT.js upgrade
 * that changes either fails that test. Without `_sendPacket` the callers fall back to one
 * commit per message (`deferredPuback` returns undefined).
 */
import type { IPublishPacket, MqttClient } from "mqtt";

/** What the session passes to MQTT.js's `done` to say "no PUBACK now: it follows the commit". */
export const PUBACK_DEFERRED = new Error("PUBACK deferred until the message is committed");

type WithSendPacket = { _sendPacket?: (packet: { cmd: "puback"; messageId: number }, cb?: (err?: Error) => void) => void };

/**
 * A function that writes the PUBACK for `messageId` (MQTT 3.1.1 §3.4) on `client`'s current
 * connection, or undefined when this MQTT.js has no `_sendPacket` (then PUBACKs are MQTT.js's).
 */
export function deferredPuback(client: MqttClient): ((messageId: number) => void) | undefined {
  const send = (client as unknown as WithSendPacket)._sendPacket;
  if (typeof send !== "function") return undefined;
  return (messageId) => send.call(client, { cmd: "puback", messageId });
}

export interface OrderedPubacksOptions {
  client: MqttClient;
  /**
   * At most this many QoS 1 messages handed over and not yet acknowledged (default 1,000): the
   * next one's `done` is held until the oldest is acknowledged, and MQTT.js reads nothing more
   * meanwhile, so memory and the size of a commit stay bounded whatever the broker sends.
   */
  maxPending?: number;
  /**
   * A message could not be made durable: it gets no PUBACK, nor does anything after it on this
   * connection. The caller drops the connection so the broker sends them again (MQTT.js would
   * otherwise go on, and a broker resends an unacknowledged message only on a new connection).
   * Told once per failure: the messages of one failed group commit share its error, and a line
   * for each of them was a line per message at every reconnect (a full disk under a backlog).
   * `packet` is the first of them.
   */
  onFailure(err: Error, packet: IPublishPacket): void;
}

interface Pending {
  messageId: number;
  connection: number;
  settled: boolean;
}

/**
 * Writes QoS 1 PUBACKs after each message's `durable()` resolves, in the order the messages
 * came (MQTT 3.1.1 §4.6: a client sends PUBACKs in the order the PUBLISHes were received), on
 * the connection they came on. Call `connectionStarted()` on every `connect`, before that
 * connection's messages (MQTT.js emits `connect` first): what waits from an earlier connection
 * is forgotten, the broker sends it again (a repeat, stored once by its id).
 */
export class OrderedPubacks {
  private readonly puback: ((messageId: number) => void) | undefined;
  private readonly maxPending: number;
  private queue: Pending[] = [];
  private connection = 0;
  /** the failure last told (onFailure): the same error again is the same commit's */
  private told: Error | undefined;
  /** the `done` of a message held because `maxPending` were waiting */
  private held: (() => void) | undefined;

  constructor(private readonly options: OrderedPubacksOptions) {
    this.puback = deferredPuback(options.client);
    this.maxPending = Math.max(1, options.maxPending ?? 1000);
  }

  /** How many messages wait for their PUBACK (for tests and metrics). */
  get pending(): number {
    return this.queue.length;
  }

  /** A new connection was accepted: PUBACKs of earlier connections' messages are never written. */
  connectionStarted(): void {
    this.connection++;
    this.queue = [];
    this.release();
  }

  /**
   * Takes one message from `client.handleMessage`: starts `durable()` (it resolves once the
   * message is committed, or dropped on purpose; it rejects when it must be sent again) and
   * calls `done` as MQTT.js expects. QoS 0, and an MQTT.js without `_sendPacket`: `done` after
   * `durable()`, MQTT.js then writing the PUBACK itself (one message at a time).
   */
  handle(packet: IPublishPacket, done: (err?: Error) => void, durable: () => Promise<void>): void {
    if (packet.qos !== 1 || !this.puback) {
      durable().then(
        () => done(),
        (err: Error) => {
          done(err);
          this.fail(err, packet);
        },
      );
      return;
    }
    const entry: Pending = { messageId: packet.messageId!, connection: this.connection, settled: false };
    this.queue.push(entry);
    durable().then(
      () => {
        entry.settled = true;
        this.drain();
      },
      (err: Error) => {
        if (entry.connection === this.connection) this.fail(err, packet);
      },
    );
    const handOn = () => done(PUBACK_DEFERRED);
    if (this.queue.length < this.maxPending) handOn();
    else this.held = handOn;
  }

  private fail(err: Error, packet: IPublishPacket): void {
    if (err === this.told) return;
    this.told = err;
    this.options.onFailure(err, packet);
  }

  /** Writes the PUBACKs of the settled messages at the head of the queue. */
  private drain(): void {
    const connected = this.options.client.connected;
    while (this.queue.length && this.queue[0]!.settled) {
      const entry = this.queue.shift()!;
      if (entry.connection === this.connection && connected) this.puback!(entry.messageId);
    }
    if (this.queue.length < this.maxPending) this.release();
  }

  private release(): void {
    const held = this.held;
    this.held = undefined;
    held?.();
  }
}
