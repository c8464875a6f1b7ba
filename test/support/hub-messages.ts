/**
 * Reading a hub store's messages in tests: every message of a thing that matches a query, in the
 * store's order (fltimestamp, then storage order), through the same paging the API serves from.
 */
import type { HubStore, MessageQuery, MessageRecord } from "../../src/hub/store/hub-store.ts";

/** every stored message of `thingId` matching `query` (one page holds them all) */
export async function storedMessages(store: HubStore, thingId: string, query: MessageQuery = {}): Promise<MessageRecord[]> {
  return (await store.messagePage(thingId, query, { limit: 1_000_000 })).map((row) => row.message);
}
