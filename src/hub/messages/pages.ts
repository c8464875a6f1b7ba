import type { HubStore, MessageCursor, MessageQuery, MessageRecord } from "../store/hub-store.ts";

/** The messages of one thing matching a query, counted first, then read a page at a time. */
export interface MessagePages {
  /** how many matched when the pages were opened (those deleted meanwhile are left out of the pages) */
  count: number;
  /** pages of at most the page size, oldest first ((fltimestamp, seq) order); read once */
  pages: AsyncGenerator<MessageRecord[], void, undefined>;
}

/**
 * The messages of `thingId` matching `query`, in keyset pages of at most `pageRows`: memory holds
 * one page, whatever the range holds, and a page is read only when the reader asks for it (a slow
 * reader holds the hub to one page). The range ends at the last message matching when opened:
 * one stored meanwhile is left for the next reader.
 */
export async function openMessagePages(store: HubStore, thingId: string, query: MessageQuery, pageRows: number): Promise<MessagePages> {
  const { count, last } = await store.messageRange(thingId, query);
  async function* pages(): AsyncGenerator<MessageRecord[], void, undefined> {
    let after: MessageCursor | undefined;
    while (last) {
      const page = await store.messagePage(thingId, query, { after, through: last, limit: pageRows });
      if (page.length === 0) return;
      after = page[page.length - 1]!.cursor;
      yield page.map((row) => row.message);
    }
  }
  return { count, pages: pages() };
}
