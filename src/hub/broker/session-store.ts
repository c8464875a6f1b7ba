/**
 * aedes' in-memory persistence (aedes-persistence 11), with packet identifiers that never
 * collide inside one client's outgoing queue.
 *
 * Why: aedes numbers the QoS 1 packets it sends from a counter that each new connection starts
 * at random (lib/client.js `_nextId`), while the packets a resumed session still owes keep the
 * identifiers of the connection that first sent them (MQTT 3.1.1 §4.4). With a few thousand
 * messages queued for a thing that reconnects, the two ranges overlap often enough: the thing's
 * PUBACK then clears the wrong queued packet (`outgoingClearMessageId` matches by identifier
 * only), aedes later fails to find the other one ("no such packet") and drops the resumed
 * session. MQTT 3.1.1 §2.3.1 requires identifiers to be unique among a client's unacknowledged
 * packets; this keeps that rule for aedes.
 *
 * How: aedes calls `outgoingUpdate(client, packet)` with the identifier it picked just before it
 * writes the packet (lib/client.js deliverQoS, lib/handlers/connect.js emptyQueue), and writes
 * that same packet object. When the identifier is already held by another queued packet, this
 * picks the next free one. It only applies to persistent sessions: aedes keeps nothing for clean
 * ones. A packet that is no longer queued (already acknowledged) is sent again instead of making
 * aedes drop the connection; the agent stores each hub message once (src/protocol/ingress.ts).
 */
import memoryPersistence from "aedes-persistence";

type Packet = { messageId?: number; brokerId?: string; brokerCounter?: number };
type Client = { id: string };
type Persistence = ReturnType<typeof memoryPersistence> & {
  outgoingUpdate(client: Client, packet: Packet): Promise<void>;
  outgoingClearMessageId(client: Client, packet: Packet): Promise<Packet | undefined>;
};

const MAX_PACKET_ID = 65535;

/** The memory persistence with the identifier rule above; pass it to `Aedes.createBroker({persistence})`. */
export function createSessionPersistence(onMissing?: (clientId: string, messageId: number | undefined) => void): Persistence {
  const persistence = memoryPersistence() as Persistence;
  /** per client id: identifier → the queued packet holding it (brokerId:brokerCounter) */
  const held = new Map<string, Map<number, string>>();
  const keyOf = (packet: Packet) => `${packet.brokerId}:${packet.brokerCounter}`;

  const update = persistence.outgoingUpdate.bind(persistence);
  persistence.outgoingUpdate = async (client, packet) => {
    let ids = held.get(client.id);
    if (!ids) {
      ids = new Map();
      held.set(client.id, ids);
    }
    const key = keyOf(packet);
    for (const [id, owner] of ids) if (owner === key && id !== packet.messageId) ids.delete(id); // renumbered
    if (packet.messageId !== undefined && ids.get(packet.messageId) !== undefined && ids.get(packet.messageId) !== key) {
      packet.messageId = nextFree(ids, packet.messageId);
    }
    try {
      await update(client, packet);
    } catch (err) {
      if ((err as Error)?.message !== "no such packet") throw err;
      onMissing?.(client.id, packet.messageId);
      return;
    }
    if (packet.messageId !== undefined) ids.set(packet.messageId, key);
  };

  const clear = persistence.outgoingClearMessageId.bind(persistence);
  persistence.outgoingClearMessageId = async (client, packet) => {
    const removed = await clear(client, packet);
    if (removed?.messageId !== undefined) {
      const ids = held.get(client.id);
      ids?.delete(removed.messageId);
      if (ids?.size === 0) held.delete(client.id);
    }
    return removed;
  };
  return persistence;
}

/** The first identifier after `from` (1…65535, wrapping) that no queued packet holds. */
function nextFree(ids: Map<number, string>, from: number): number {
  for (let step = 1; step <= MAX_PACKET_ID; step++) {
    const candidate = ((from - 1 + step) % MAX_PACKET_ID) + 1;
    if (!ids.has(candidate)) return candidate;
  }
  throw new Error("no free MQTT packet identifier: 65535 messages in flight for one client");
}
