/**
 * src/thing/ingress: what happens to a message that arrives: stored once, before its PUBACK
 * (handler.ts), then handed to the application by `serve --exec` (exec-runner.ts).
 */
import type { IPublishPacket } from "mqtt";
import { ingressMessageId } from "../../protocol/ingress.ts";
import type { Logger } from "../../shared/log.ts";
import type { IngressHandler } from "../mqtt/session.ts";
import type { ThingConfig } from "../settings.ts";
import type { MessageStore, NewIngress } from "../store/message-store.ts";

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
 *   the session (CONNACK sessionPresent), DUP flag or not; and with DUP set, one of the newest
 *   rows of this connection too;
 * - a retained message that repeats the topic's newest retained row is the broker's re-send at a
 *   new subscription (MQTT 3.1.1 §3.3.1.3), not a new message.
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
  /** the newest row stored before the broker resumed this session; undefined: a fresh session */
  let resumedAfterId: number | undefined;

  const isRepeat = (message: NewIngress, dup: boolean): string | undefined => {
    if (message.messageId === undefined) {
      const upToId = dup ? Number.MAX_SAFE_INTEGER : resumedAfterId;
      if (upToId !== undefined && store.isPacketRedelivery(message, upToId)) return "packet id";
    }
    if (store.isRetainedRepeat(message)) return "retained";
    return undefined;
  };

  return {
    connectionStarted(sessionPresent) {
      resumedAfterId = undefined;
      if (!persistent || !sessionPresent) return;
      try {
        resumedAfterId = store.lastIngressId();
      } catch (err) {
        // Called inside MQTT.js's packet handling, where a throw would kill the process. Without
        // the boundary, a resend without a hub id and without DUP would be stored again.
        log.error("ingress.session_boundary_failed", { error: err });
      }
    },
    async handle(packet: IPublishPacket) {
      const payload = typeof packet.payload === "string" ? Buffer.from(packet.payload) : packet.payload;
      if (!persistent) {
        log.info("ingress.received", { topic: packet.topic, callback: config.yaml.app.callback, payload: payload.toString("utf8") });
        return;
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
      const repeat = isRepeat(message, packet.dup);
      const id = repeat ? undefined : store.insertIngress(message);
      if (id === undefined) {
        // Already stored (its PUBACK was lost, or the broker sent it twice): acknowledge it again.
        log.info("ingress.redelivery_skipped", {
          topic: packet.topic,
          packetId: packet.messageId,
          messageId: message.messageId,
          matchedBy: repeat ?? "message id",
        });
        return;
      }
      log.info("ingress.stored", { id, topic: packet.topic, bytes: payload.length, messageId: message.messageId, dup: packet.dup || undefined });
      onStored?.(id);
    },
  };
}
