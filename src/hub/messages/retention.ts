/**
 * The hub's message retention (hub.yml `hub.messages.keepFor`): `hub serve` deletes the messages
 * stored longer ago than that, so a hub that runs for years does not fill its disk. Absent, every
 * message is kept, as before the setting existed.
 *
 * What goes: egress, and ingress its thing acknowledged (or whose delivery the broker cannot
 * tell). Ingress still waiting for its thing's PUBACK stays until it is delivered, however old:
 * retention never takes a message from a thing that has not had it.
 *
 * The sweep goes thing by thing, looking at most at SWEEP_BATCH messages per statement (pending
 * ones included, so a thing with a million undelivered old messages costs a thousand short
 * statements, not one long one), and lets the event loop run between statements, so the API and
 * the broker keep answering while a large backlog is deleted (the first sweep after the setting
 * is added may find years of messages).
 */
import type { Logger } from "../../shared/log.ts";
import type { HubObserver } from "../metrics/observer.ts";
import type { HubStore, MessageCursor } from "../store/hub-store.ts";

/** The most messages one statement of the sweep looks at (and so deletes). */
export const SWEEP_BATCH = 1000;

/** How often the sweep runs, in ms (hub.yml's shortest `keepFor` is a day). */
export const SWEEP_EVERY_MS = 10 * 60_000;

export interface RetentionOptions {
  store: Pick<HubStore, "thingIds" | "expireMessages">;
  /** how long a message is kept, in ms (hub.yml `hub.messages.keepFor`) */
  keepForMs: number;
  log: Logger;
  /** Unix ms; tests move it */
  now?: () => number;
  /** ms between sweeps; default SWEEP_EVERY_MS */
  everyMs?: number;
  /** told how many each sweep deleted (the metrics' flashlex_hub_messages_expired_total) */
  observer?: Pick<HubObserver, "expired">;
}

/**
 * Deletes, for every thing, the messages stored before `now - keepForMs` (pending ingress kept),
 * SWEEP_BATCH at a time with a turn of the event loop between statements, until done or until
 * `stopping()` says so. Resolves with how many went; rejects with the store's error (what was
 * deleted before it stays deleted).
 */
export async function sweepExpiredMessages(options: Pick<RetentionOptions, "store" | "keepForMs" | "now"> & { stopping?: () => boolean }): Promise<number> {
  const { store } = options;
  const olderThan = Math.floor(((options.now ?? Date.now)() - options.keepForMs) / 1000);
  let deleted = 0;
  for (const thingId of await store.thingIds()) {
    let after: MessageCursor | undefined;
    do {
      if (options.stopping?.()) return deleted;
      const step = await store.expireMessages(thingId, olderThan, SWEEP_BATCH, after);
      deleted += step.deleted;
      after = step.next;
      await new Promise((resolve) => setImmediate(resolve));
    } while (after);
  }
  return deleted;
}

/**
 * Sweeps at once and then every `everyMs` (one sweep at a time); logs INFO
 * `hub.messages_expired` when a sweep deleted any, WARN `hub.message_expiry_failed` when it
 * failed (the next sweep tries again). Returns the function that stops it; that resolves once a
 * sweep under way has stopped (after its current statement), so the database can then be closed.
 */
export function startMessageRetention(options: RetentionOptions): () => Promise<void> {
  const { log, keepForMs } = options;
  const now = options.now ?? Date.now;
  let running: Promise<void> | undefined;
  let stopped = false;
  const sweep = () => {
    if (running || stopped) return;
    const started = now();
    running = sweepExpiredMessages({ ...options, now: () => started, stopping: () => stopped })
      .then((count) => {
        if (!count) return;
        log.info("hub.messages_expired", { count, stored_before: new Date(started - keepForMs).toISOString() });
        options.observer?.expired(count);
      })
      .catch((err) => log.warn("hub.message_expiry_failed", { error: err, note: "tried again at the next sweep" }))
      .finally(() => (running = undefined));
  };
  sweep();
  const timer = setInterval(sweep, options.everyMs ?? SWEEP_EVERY_MS);
  timer.unref?.();
  return async () => {
    stopped = true;
    clearInterval(timer);
    await running;
  };
}
