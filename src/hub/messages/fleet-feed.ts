/**
 * The console's live feed on a served database (several hubs): what every hub stored, not only
 * this process. The in-process MessageFeed (feed.ts) hears only of messages this hub stored; here
 * one poller per hub process reads the messages inserted since its last look, by insertion order
 * (`seq`), once a second and only while someone watches, and hands them to the console's feed:
 * one query per second per hub, however many browsers watch.
 *
 * Why polling and not PostgreSQL's LISTEN/NOTIFY: Bun 1.4.5's SQL object has `listen` and
 * `notify` methods, not tried here yet; NOTIFY would also need every insert (or a trigger) to
 * send one and a dedicated connection per hub, while one indexed query a second, only while a
 * browser watches, costs little and needs nothing of the writers.
 *
 * Holes: PostgreSQL hands out `seq` values at insert, not at commit, so a row with a lower seq
 * can become visible after a higher one; and an insert that does nothing (a message id stored
 * already, which several hubs receiving one MQTT message make routine) burns a value for good.
 * A seq skipped over is kept as a hole for HOLE_MS and looked for again at each poll; a row
 * committed that late is missed by the live view (never by the database: a reload shows it).
 *
 * `delivered` events (a thing's PUBACK) come only from the embedded broker, which is one hub's:
 * they are passed on from the in-process feed as they are.
 */
import type { Logger } from "../../shared/log.ts";
import type { HubStore } from "../store/hub-store.ts";
import type { MessageFeed } from "./feed.ts";

/** How long a skipped seq is looked for again (ms): far longer than an insert's commit takes. */
export const HOLE_MS = 3000;
/** The most holes kept; beyond it the oldest are given up (a burst of repeats). */
const MAX_HOLES = 20_000;
/** Rows read per poll at most; more wait for the next poll. */
const PAGE = 500;

export interface FleetFeedDeps {
  store: Pick<HubStore, "messagesAfter" | "lastMessageSeq">;
  /** this process's feed: only its `delivered` events are passed on */
  local: MessageFeed;
  /** the console's feed, fed by the poll */
  live: MessageFeed;
  log: Logger;
  /** ms between polls; default 1000 */
  intervalMs?: number;
  /** Unix ms */
  now?: () => number;
}

/** Starts the poller; returns the function that stops it. */
export function startFleetFeed(deps: FleetFeedDeps): () => void {
  const now = deps.now ?? Date.now;
  let cursor: number | undefined;
  const holes = new Map<number, number>();
  let polling = false;

  const stopForwarding = deps.local.watch((event) => {
    if (event.type === "delivered") deps.live.publish(event);
  });

  async function poll(): Promise<void> {
    if (deps.live.watchers === 0) {
      // Nobody watches: no queries, and the next watcher starts from then, not from here.
      cursor = undefined;
      holes.clear();
      return;
    }
    if (cursor === undefined) {
      cursor = await deps.store.lastMessageSeq();
      return;
    }
    let from = cursor;
    for (const seq of holes.keys()) from = Math.min(from, seq - 1);
    const rows = await deps.store.messagesAfter(from, PAGE);
    const at = now();
    let top = cursor;
    for (const row of rows) {
      const wasHole = holes.delete(row.seq);
      if (row.seq <= cursor && !wasHole) continue; // seen at an earlier poll
      top = Math.max(top, row.seq);
      const { message, thingName } = row;
      deps.live.publish({ type: message.messagetype === "egress" ? "collected" : "sent", thingId: message.thingId, thingName, message });
    }
    const found = new Set(rows.map((r) => r.seq));
    for (let seq = cursor + 1; seq < top; seq++) if (!found.has(seq)) holes.set(seq, at);
    cursor = top;
    for (const [seq, since] of holes) if (at - since > HOLE_MS || holes.size > MAX_HOLES) holes.delete(seq);
  }

  const timer = setInterval(() => {
    if (polling) return;
    polling = true;
    poll()
      .catch((err) => deps.log.warn("hub.live_poll_failed", { error: err }))
      .finally(() => {
        polling = false;
      });
  }, deps.intervalMs ?? 1000);
  timer.unref?.();
  return () => {
    clearInterval(timer);
    stopForwarding?.();
  };
}
