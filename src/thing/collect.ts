import { randomUUID } from "node:crypto";
import { ExitCode, FlashlexError, InputError, toFlashlexError } from "../errors.ts";
import type { MessageStore, OutboxEntry, OutboxVia } from "../store/message-store.ts";
import { MAX_EGRESS_BYTES, type DeliveryOutcome } from "./egress.ts";
import { recordOutcome } from "./outbox.ts";

export interface CollectResult {
  messageId: string;
  /** `queued`: not delivered yet; it waits in the outbox and `serve` delivers it */
  outcome: "sent" | "rejected" | "queued";
  status?: number;
  body?: string;
  error?: string;
  /**
   * The attempt's outcome could not be written to the outbox (a full disk): the row stays
   * pending under its lease, so `serve` may deliver it again later, with the same message id,
   * which the hub stores once. The outcome above is still what happened.
   */
  recordError?: string;
}

/** While one delivery attempt of a fresh message runs, the outbox drainer leaves the row alone. */
const LEASE_MS = 60_000;

/** Checks that `text` is one JSON document within the size limit; returns it compacted. */
export function parseEgressDocument(text: string, source: string): string {
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_EGRESS_BYTES) throw new InputError(`${source}: ${bytes} bytes is over the ${MAX_EGRESS_BYTES}-byte limit; nothing was queued`);
  if (!text.trim()) throw new InputError(`${source}: empty input, expected one JSON document; nothing was queued`);
  try {
    return JSON.stringify(JSON.parse(text));
  } catch (err) {
    throw new InputError(`${source}: not JSON (${(err as Error).message}); nothing was queued`);
  }
}

/**
 * Egress: the message is committed to the outbox first, then delivered once now. Whatever
 * happens to that attempt, the message is either delivered, refused by the API for good, or
 * still queued for `serve`: never lost.
 */
export async function collect(deps: {
  store: MessageStore;
  body: string;
  via: OutboxVia;
  /** offlinePublishQueueing: -1 no limit, N at most N messages waiting */
  queueLimit: number;
  deliver: (entry: OutboxEntry) => Promise<DeliveryOutcome>;
}): Promise<CollectResult> {
  const { store, queueLimit } = deps;
  const pending = store.countPending();
  if (queueLimit >= 0 && pending >= Math.max(queueLimit, 1)) {
    throw new FlashlexError(`the outbox holds ${pending} undelivered messages (offlinePublishQueueing: ${queueLimit}); nothing was queued`, ExitCode.TEMPFAIL);
  }
  const messageId = randomUUID();
  const now = Date.now();
  store.enqueue({ messageId, body: deps.body, via: deps.via, now, notBefore: now + LEASE_MS });
  const entry = store.getOutbox(messageId)!;
  const outcome = await deps.deliver(entry);
  // A message that was delivered is never reported as failed because the disk filled up meanwhile.
  let recordError: string | undefined;
  try {
    recordOutcome(store, entry, outcome, Date.now());
  } catch (err) {
    recordError = toFlashlexError(err).message;
  }
  if (outcome.kind === "sent") return { messageId, outcome: "sent", status: outcome.status, body: outcome.body, recordError };
  if (outcome.kind === "rejected") return { messageId, outcome: "rejected", status: outcome.status, body: outcome.body, error: outcome.error, recordError };
  return { messageId, outcome: "queued", status: outcome.status, error: outcome.error, recordError };
}
