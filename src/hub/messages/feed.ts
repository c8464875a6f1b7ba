/**
 * The hub's live feed: what happened to messages, as it happens, for whoever watches (the
 * console's server-sent events). The use cases publish into it after their database write, so a
 * watcher never hears of a message the database does not hold; nothing waits for a watcher, and
 * a watcher that throws is dropped rather than allowed to disturb a collect or a delivery.
 *
 * It is in-process and keeps no history: a watcher that connects later reads the database first
 * (Messages.latest) and then listens. Commands in other processes (`hub export`) never publish;
 * everything that makes these events (collect over HTTP or MQTT, publish, a thing's PUBACK) runs
 * inside `hub serve`.
 */
import type { MessageRecord } from "../store/hub-store.ts";

export type FeedEvent =
  /** a thing's egress message was stored for the first time (not a retry of a stored one) */
  | { type: "collected"; thingId: string; thingName: string; message: MessageRecord; via?: "http" | "mqtt" }
  /** an ingress message was stored and the broker took it */
  | { type: "sent"; thingId: string; thingName: string; message: MessageRecord }
  /** the thing's PUBACK for this ingress message arrived; `at` in Unix ms */
  | { type: "delivered"; thingName: string; flmessagespk: string; at: number };

export type FeedListener = (event: FeedEvent) => void;

/**
 * The feed above: the use cases `publish`; the console's streams, the metrics and the fleet feed
 * `watch` (the console bounds its own streams: events.ts MAX_LIVE_VIEWS). Never throws.
 */
export class MessageFeed {
  private readonly listeners = new Set<FeedListener>();

  /** Calls `listener` with every event from now on. Returns the function that stops it. */
  watch(listener: FeedListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** How many watch now. */
  get watchers(): number {
    return this.listeners.size;
  }

  /** Hands `event` to every watcher, synchronously; one that throws is removed, the rest still hear it. */
  publish(event: FeedEvent): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch {
        this.listeners.delete(listener);
      }
    }
  }
}
