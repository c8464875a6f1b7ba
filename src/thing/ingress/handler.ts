/**
 * src/thing/ingress: what happens to a message that arrives: stored once, before its PUBACK
 * (handler.ts), then handed to the application by `serve --exec` (exec-runner.ts).
 */
import type { IPublishPacket } from "mqtt";
import { ingressMessageId } from "../../protocol/ingress.ts";
import type { Logger } from "../../shared/log.ts";
import type { IngressHandler } from "../mqtt/session.ts";
import type { ThingConfig } from "../settings.ts";
import type { MessageStore, NewIngress, RedeliveryRange } from "../store/message-store.ts";

/** A batch commits at once when it holds this many messages (or bytes): it bounds memory and latency. */
export const MAX_BATCH_MESSAGES = 1000;
export const MAX_BATCH_BYTES = 4 * 1024 * 1024;

interface Pending {
  message: NewIngress;
  packet: IPublishPacket;
  /** why it is not stored again (a repeat found before the batch), or undefined */
  repeat: string | undefined;
}

/**
 * What happens to an ingress message, by `app.callback` (the guide's meanings): `persistent`
 * commits it to the message database (the broker's PUBACK waits for the commit); `basicPubsub`
 * and `test` only log it, as the Python SDK printed it.
 *
 * Exactly once, whatever the broker does. A QoS 1 message may arrive again for many reasons, and
 * a repeat is acknowledged but not stored twice:
 * - a message from a FlashLex hub carries the hub's id (`flmessagespk`, src/protocol/ingress.ts):
 *   each id is stored once, ever (remembered for a week after the row is gone). This covers
 *   every broker behaviour, including aedes resending without the DUP flag and delivering one
 *   message from its session queue and live, and the hub replaying after its own restart;
 * - a message without an id (published by something else) is a redelivery when its packet
 *   identifier, topic and payload repeat one of the last rows stored before the broker resumed
 *   the session (CONNACK sessionPresent), DUP flag or not, while the broker's resends may still
 *   come; and with DUP set, one of the newest rows too. Only rows of the broker's current
 *   session count: one that began a new session (sessionPresent 0) resends nothing older and
 *   counts its packet identifiers from 1 again (MessageStore.markSessionBegan). A broker resends
 *   what it had (or, restored from an older save, thinks it had) in flight or queued before
 *   anything new (MQTT 3.1.1 §4.4), so once a message of the connection is new (none of the
 *   rows matched), a packet without DUP is new whatever its packet identifier. Packet
 *   identifiers are 16 bits: a broker that keeps counting (Mosquitto) hands out the same ones
 *   again after 65,535 messages, and a command sent again and again (`ON`) repeats its topic
 *   and payload;
 * - a retained message that repeats a message of its topic stored since the topic's newest
 *   retained row is the broker's re-send at a subscription (MQTT 3.1.1 §3.3.1.3), not a new
 *   message (MessageStore.isRetainedRepeat).
 */
export function createIngressHandler(deps: {
  config: ThingConfig;
  store: MessageStore;
  log: Logger;
  /** told of every stored message (serve --exec, the control socket's followers) */
  onStored?: (id: number) => void;
}): IngressHandler {
  const { config, store, log, onStored } = deps;
  const persistent = config.yaml.app.callback === "persistent";
  /** the rows stored before the broker resumed this session, while its resends may come; undefined: none may (a fresh session, or past them) */
  let resumed: RedeliveryRange | undefined;
  /** where the broker's new session began (the last row before it), while that is not yet recorded (markSessionBegan failed) */
  let sessionBeganAfter: number | undefined;
  /** group commit: what arrived since the last commit, in arrival order (their PUBACKs too) */
  let batch: Pending[] = [];
  let batchBytes = 0;
  /** settles when the batch in hand is committed (or fails): every message of it waits on this one */
  let batchDone: Deferred | undefined;
  let scheduled = false;
  /**
   * A fault for the tests, and only for them: FLASHLEX_FAULT_KILL_AFTER_COMMIT=N makes the
   * process kill itself (SIGKILL) right after its Nth batch commit, before any of that batch's
   * PUBACKs leave: the one moment group commit adds (test/integration/exactly-once.test.ts).
   */
  let killAfterCommit = Number(process.env.FLASHLEX_FAULT_KILL_AFTER_COMMIT) || undefined;

  /** Writes where the broker's new session began, if that is still to be written; throws what the store throws. */
  const recordSessionBegan = () => {
    if (sessionBeganAfter === undefined) return;
    store.markSessionBegan(sessionBeganAfter);
    sessionBeganAfter = undefined;
  };

  const isRepeat = (message: NewIngress, dup: boolean): string | undefined => {
    if (message.messageId === undefined && message.packetId !== undefined) {
      const range = dup ? store.redeliveryRange(Number.MAX_SAFE_INTEGER) : resumed;
      if (range !== undefined && store.isPacketRedelivery(message, range)) return "packet id";
      // a new message came: the broker's resends are over (docstring)
      resumed = undefined;
    } else if (message.messageId !== undefined && resumed !== undefined && !store.hasSeenMessageId(message.messageId)) {
      resumed = undefined; // a new hub message: the resends are over for the others too
    }
    if (store.isRetainedRepeat(message)) return "retained";
    return undefined;
  };

  /**
   * Stores the batch in one transaction (one fsync for all of it), then lets each message's
   * PUBACK go, in arrival order. A failed commit stores none of them and acknowledges none: the
   * session drops the connection and the broker sends them again.
   */
  const commit = () => {
    scheduled = false;
    const pending = batch;
    const done = batchDone;
    batch = [];
    batchBytes = 0;
    batchDone = undefined;
    if (!pending.length || !done) return;
    const fresh = pending.filter((p) => p.repeat === undefined);
    let ids: (number | undefined)[];
    try {
      // recorded before anything of the new session is, or nothing of it is acknowledged
      recordSessionBegan();
      ids = store.insertIngressBatch(fresh.map((p) => p.message));
    } catch (err) {
      done.reject(err);
      return;
    }
    if (killAfterCommit !== undefined && --killAfterCommit === 0) process.kill(process.pid, "SIGKILL");
    const storedIds: number[] = [];
    fresh.forEach((p, i) => {
      const id = ids[i];
      if (id === undefined) p.repeat = "message id";
      else storedIds.push(id);
    });
    for (const p of pending) {
      if (p.repeat !== undefined) {
        // Already stored (its PUBACK was lost, or the broker sent it twice): acknowledge it again.
        log.info("ingress.redelivery_skipped", { topic: p.packet.topic, packetId: p.packet.messageId, messageId: p.message.messageId, matchedBy: p.repeat });
      }
    }
    done.resolve();
    // One line per commit (a line per message costs more than the commit at full speed); the
    // details of each at debug. Rows of one commit have consecutive ids.
    fresh.forEach((p, i) => {
      const id = ids[i];
      if (id !== undefined)
        log.debug("ingress.message", {
          id,
          topic: p.packet.topic,
          bytes: p.message.payload.length,
          messageId: p.message.messageId,
          dup: p.packet.dup || undefined,
        });
    });
    if (storedIds.length) {
      const bytes = fresh.reduce((sum, p, i) => sum + (ids[i] === undefined ? 0 : p.message.payload.length), 0);
      log.info("ingress.stored", { count: storedIds.length, first: storedIds[0], last: storedIds[storedIds.length - 1], bytes });
    }
    for (const id of storedIds) onStored?.(id);
  };

  return {
    connectionStarted(sessionPresent, broker) {
      resumed = undefined;
      if (!persistent) return;
      try {
        // Rows stored from another broker (config.yml pointed elsewhere meanwhile) are no resends
        // of this one's: its session is new to them. A database from before brokers were
        // recorded takes this one as theirs. The broker is recorded after the boundary, so a
        // write that fails in between makes the next connection a new session (a resend stored
        // twice at worst), never an old one.
        const lastBroker = store.sessionBroker();
        if (!sessionPresent || (lastBroker !== undefined && lastBroker !== broker)) {
          // kept until written: a write that fails now (another process holds the database) is
          // made again before this session's first messages are stored (commit) or it resumes
          sessionBeganAfter = store.lastIngressId();
          recordSessionBegan();
          if (lastBroker !== broker) store.setSessionBroker(broker);
          return;
        }
        if (lastBroker !== broker) store.setSessionBroker(broker);
        recordSessionBegan();
        resumed = store.withPacketIndex(store.redeliveryRange(store.lastIngressId()));
      } catch (err) {
        // Called inside MQTT.js's packet handling, where a throw would kill the process. Without
        // the boundary, a resend without a hub id and without DUP would be stored again.
        log.error("ingress.session_boundary_failed", { error: err });
      }
    },
    /**
     * Takes one message into the current batch; resolves once it is durable (committed, or
     * recognised as a repeat), when its PUBACK may go. The batch commits when the messages
     * already read from the connection are all in it (setImmediate runs after MQTT.js has handled
     * every packet of the chunk it read), or at once when it is full.
     */
    handle(packet: IPublishPacket) {
      const payload = typeof packet.payload === "string" ? Buffer.from(packet.payload) : packet.payload;
      if (!persistent) {
        log.info("ingress.received", { topic: packet.topic, callback: config.yaml.app.callback, payload: payload.toString("utf8") });
        return Promise.resolve();
      }
      const message: NewIngress = {
        topic: packet.topic,
        payload,
        qos: packet.qos,
        retain: packet.retain,
        receivedAt: Date.now(),
        packetId: packet.qos > 0 ? packet.messageId : undefined,
        messageId: ingressMessageId(payload),
      };
      let repeat: string | undefined;
      try {
        repeat = isRepeat(message, packet.dup);
      } catch (err) {
        return Promise.reject(err);
      }
      batch.push({ message, packet, repeat });
      batchBytes += payload.length;
      batchDone ??= deferred();
      const durable = batchDone.promise;
      if (batch.length >= MAX_BATCH_MESSAGES || batchBytes >= MAX_BATCH_BYTES) commit();
      else if (!scheduled) {
        scheduled = true;
        setImmediate(commit);
      }
      return durable;
    },
    flush: commit,
  };
}

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(err: unknown): void;
}

/**
 * A promise with its resolve and reject: Promise.withResolvers, which Node 20 (the linux-armv7
 * build) does not have.
 */
function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
