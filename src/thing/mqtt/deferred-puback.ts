/**
 * Group commit needs the PUBACK of a QoS 1 message to leave after the commit that made it
 * durable, while MQTT.js goes on reading the next messages. MQTT.js 5 hands over one message at a
 * time (`client.handleMessage(packet, done)`) and writes the PUBACK only when `done()` is called
 * without an error (lib/handlers/publish.js); `done(err)` lets it go on to the next packet and
 * writes no PUBACK. So the session calls `done(PUBACK_DEFERRED)` at once and, after the commit,
 * writes the PUBACK itself with the function MQTT.js's own handler uses for it,
 * `client._sendPacket({cmd: "puback", messageId})`.
 *
 * `_sendPacket` is not MQTT.js's public API: it is used here, and only here, on purpose, and
 * test/integration/mqttjs-deferred-puback.test.ts pins both behaviours against Mosquitto (no
 * PUBACK after `done(err)`; a PUBACK through `_sendPacket` acknowledges), so an MQTT.js upgrade
 * that changes either fails that test. Without `_sendPacket` the session falls back to one
 * commit per message (`deferredPuback` returns undefined).
 */
import type { MqttClient } from "mqtt";

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
