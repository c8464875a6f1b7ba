import type { IPublishPacket } from "mqtt";
import type { ThingConfig } from "../config/load.ts";
import type { Logger } from "../log.ts";
import type { MessageStore } from "../store/message-store.ts";
import type { MessageHandler } from "./session.ts";

/**
 * What happens to an ingress message, by `app.callback` (the guide's meanings): `persistent`
 * commits it to the message database (the broker's PUBACK waits for the commit); `basicPubsub`
 * and `test` only log it, as the Python SDK printed it.
 */
export function createIngressHandler(deps: {
  config: ThingConfig;
  store: MessageStore;
  log: Logger;
  /** told of every stored message (serve --exec, the control socket's followers) */
  onStored?: (id: number) => void;
}): MessageHandler {
  const { config, store, log, onStored } = deps;
  const persistent = config.yaml.app.callback === "persistent";
  return async (packet: IPublishPacket) => {
    const payload = typeof packet.payload === "string" ? Buffer.from(packet.payload) : packet.payload;
    if (!persistent) {
      log.info("ingress.received", { topic: packet.topic, callback: config.yaml.app.callback, payload: payload.toString("utf8") });
      return;
    }
    const message = {
      topic: packet.topic,
      payload,
      qos: packet.qos,
      retain: packet.retain,
      receivedAt: Date.now(),
      packetId: packet.qos > 0 ? packet.messageId : undefined,
    };
    if (packet.dup && store.isRecentRedelivery(message)) {
      // Stored before a crash cut off its PUBACK: acknowledge it again, store it once.
      log.info("ingress.redelivery_skipped", { topic: packet.topic, packetId: packet.messageId });
      return;
    }
    const id = store.insertIngress(message);
    log.info("ingress.stored", { id, topic: packet.topic, bytes: payload.length, dup: packet.dup || undefined });
    onStored?.(id);
  };
}
