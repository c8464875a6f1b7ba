/**
 * A hub store's things and messages in tests: every message of a thing that matches a query, in
 * the store's order (fltimestamp, then storage order), through the same paging the API serves
 * from; and a thing row for messages to belong to (the store keeps no message of a thing that is
 * not there).
 */
import type { HubStore, MessageQuery, MessageRecord, ThingRecord } from "../../src/hub/store/hub-store.ts";

/** every stored message of `thingId` matching `query` (one page holds them all) */
export async function storedMessages(store: HubStore, thingId: string, query: MessageQuery = {}): Promise<MessageRecord[]> {
  return (await store.messagePage(thingId, query, { limit: 1_000_000 })).map((row) => row.message);
}

/** stores a thing with id `id` (placeholder key and certificate; name from the id) and gives it back */
export async function storeThing(store: HubStore, id: string, extra: Partial<ThingRecord> = {}): Promise<ThingRecord> {
  const thing: ThingRecord = {
    id,
    name: `ecd13b11-t${id.slice(0, 8)}`,
    shortName: `t${id.slice(0, 8)}`,
    publicKeyPem: "placeholder key",
    certPem: "placeholder certificate",
    certSerial: `serial-${id}`,
    createdAt: 1_700_000_000_000,
    verifiedAt: null,
    lastSeenAt: null,
    revokedAt: null,
    certNotAfter: 8_640_000_000_000_000,
    enrolledWith: null,
    ...extra,
  };
  await store.insertThing(thing);
  return thing;
}
