import type { Logger } from "../log.ts";
import type { MessageStore, OutboxEntry, OutboxVia } from "../store/message-store.ts";
import { retryDelayMs, type DeliveryOutcome } from "./egress.ts";

export type Deliver = (entry: OutboxEntry) => Promise<DeliveryOutcome>;

/** Writes a delivery attempt's outcome to the outbox row. */
export function recordOutcome(store: MessageStore, entry: OutboxEntry, outcome: DeliveryOutcome, now: number): void {
  if (outcome.kind === "sent") store.markSent(entry.message_id, now, outcome.status ? { status: outcome.status, body: outcome.body ?? "" } : undefined);
  else if (outcome.kind === "rejected") store.markRejected(entry.message_id, outcome.error, { status: outcome.status, body: outcome.body });
  else store.markRetry(entry.message_id, outcome.error, now + retryDelayMs(entry.attempts));
}

/**
 * Delivers what waits in the outbox, oldest first, at most `ratePerSecond` messages a second
 * (the config's `drainingFrequency`, so a thing back from a long outage does not flood the
 * API). It looks again every `pollMs` because `collect` adds rows from another process, and
 * at once when `wake()` is called.
 */
export class OutboxDrainer {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly deps: {
      store: MessageStore;
      deliverers: Partial<Record<OutboxVia, Deliver>>;
      log: Logger;
      ratePerSecond: number;
      pollMs?: number;
    },
  ) {}

  start(): void {
    this.schedule(0);
  }

  /** Drain now (a new message was queued, or the connection came back). */
  wake(): void {
    if (!this.stopped && !this.running) this.schedule(0);
  }

  /** Waits for the delivery in flight, then stops. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private schedule(delayMs: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.running = this.drain().finally(() => {
        this.running = undefined;
        if (!this.stopped) this.schedule(this.deps.pollMs ?? 1000);
      });
    }, delayMs);
  }

  private async drain(): Promise<void> {
    const { store, log, deliverers } = this.deps;
    const gapMs = 1000 / this.deps.ratePerSecond;
    // A receiver that just failed would fail the rest of the batch too: wait for the next poll.
    const down = new Set<OutboxVia>();
    while (!this.stopped) {
      const batch = store.due(Date.now(), 20).filter((e) => deliverers[e.via] && !down.has(e.via));
      if (!batch.length) return;
      for (const entry of batch) {
        if (this.stopped) return;
        if (down.has(entry.via)) continue;
        const outcome = await deliverers[entry.via]!(entry);
        recordOutcome(store, entry, outcome, Date.now());
        const fields = { messageId: entry.message_id, via: entry.via, attempt: entry.attempts + 1, status: "status" in outcome ? outcome.status : undefined };
        if (outcome.kind === "sent") log.info("egress.sent", fields);
        else if (outcome.kind === "rejected") log.warn("egress.rejected", { ...fields, error: outcome.error });
        else (log.warn("egress.retry_later", { ...fields, error: outcome.error }), down.add(entry.via));
        await new Promise((r) => setTimeout(r, gapMs));
      }
    }
  }
}
