/**
 * src/thing/egress: what the thing sends. `collect` (here) queues a message durably and tries
 * it once; the outbox drainer (outbox.ts) delivers what waits; delivery.ts sends one message
 * over HTTP or MQTT with a freshly signed token, whose time the hub clock (hub-clock.ts) corrects.
 */
import { newMessageId } from "../../protocol/ids.ts";
import { FlashlexError } from "../../shared/errors.ts";
import { toFlashlexError } from "../../shared/foreign-errors.ts";
import type { MessageStore, OutboxEntry, OutboxVia } from "../store/message-store.ts";
import type { DeliveryOutcome } from "./delivery.ts";
import { recordOutcome } from "./outbox.ts";

export interface CollectResult {
  messageId: string;
  /** `queued`: not delivered yet; it waits in the outbox and `serve` delivers it */
  outcome: "sent" | "rejected" | "queued";
  status?: number;
  body?: string;
  error?: string;
  /**
   * The attempt's outcome could not be written to the outbox (a full disk, or on armv7 a serve
   * that opened the database during the attempt): the row stays pending under its lease, so
   * `serve` may deliver it again later, with the same message id, which the hub stores once,
   * even past an offlinePublishQueueing limit. The outcome above is still what happened.
   */
  recordError?: string;
}

/** While one delivery attempt of a fresh message runs, the outbox drainer leaves the row alone. */
const LEASE_MS = 60_000;

/**
 * How long the attempt at once may take before the message is left queued: well inside the lease
 * (the drainer would send it a second time) and inside the 120 s a command or SDK call waits for
 * the running serve (local/client.ts), which an MQTT publish waiting `mqttOperationTimeout` (120 s
 * in the hub's distributions) on a half-open link used to outlast ("serve did not answer", 75).
 */
export const FIRST_ATTEMPT_MS = 40_000;

/**
 * How long an attempt may take before collect lets go of the database file
 * (releaseFileDuringAttempt): an answer within it costs no second open, whose WAL and lock
 * records are five more fsyncs on armv7's WebAssembly SQLite.
 */
const RELEASE_AFTER_MS = 1_000;

/**
 * Egress: the message is committed to the outbox first, then delivered once now. Whatever
 * happens to that attempt, the message is either delivered, refused by the API for good, or
 * still queued for `serve`: never lost.
 *
 * `queueLimit` is `offlinePublishQueueing`, with the Python SDK's meaning: -1 queues without a
 * limit; N > 0 lets at most N messages wait; 0 means no offline queueing at all. When the
 * attempt does not deliver and the message may not wait (0, or N already waiting), its row is
 * taken out again and a FlashlexError of kind try-later (exit 75) says that nothing was queued,
 * or, when no answer came (DeliveryOutcome.mayHaveArrived), that it may or may not have arrived,
 * so sending it again may store it twice.
 */
export async function collect(deps: {
  store: MessageStore;
  body: string;
  via: OutboxVia;
  /** the flashlex.thing.id the message is queued under (OutboxDrainer sends it only as that thing) */
  thingId: string;
  /** offlinePublishQueueing: -1 no limit, 0 no queueing, N at most N messages waiting */
  queueLimit: number;
  deliver: (entry: OutboxEntry, signal?: AbortSignal) => Promise<DeliveryOutcome>;
  /** how long the attempt at once may take, ms (default FIRST_ATTEMPT_MS) */
  attemptMs?: number;
  /**
   * The store is this command's own, and `deliver` does not use it: once the attempt has been out
   * for RELEASE_AFTER_MS, let other processes open its file (MessageStore.releaseFile), and open
   * it again to record the outcome.
   */
  releaseFileDuringAttempt?: boolean;
}): Promise<CollectResult> {
  const { store, queueLimit } = deps;
  const messageId = newMessageId();
  const now = Date.now();
  store.enqueue({ messageId, body: deps.body, via: deps.via, thingId: deps.thingId, now, notBefore: now + LEASE_MS });
  const entry = store.getOutbox(messageId)!;
  const release = deps.releaseFileDuringAttempt ? setTimeout(() => store.releaseFile(), RELEASE_AFTER_MS) : undefined;
  let outcome: DeliveryOutcome;
  const attempt = new AbortController();
  const attemptMs = deps.attemptMs ?? FIRST_ATTEMPT_MS;
  const timer = setTimeout(() => attempt.abort(new Error(`no answer within ${attemptMs / 1000} s`)), attemptMs);
  try {
    outcome = await deps.deliver(entry, attempt.signal);
  } catch (err) {
    // Kept as a retry: the row is on disk, and serve logs and retries it with backoff.
    outcome = { kind: "retry", error: `delivery failed: ${(err as Error)?.message ?? String(err)}` };
  } finally {
    clearTimeout(timer);
    clearTimeout(release);
  }
  // A message that was delivered is never reported as failed because the store failed meanwhile.
  let recordError: string | undefined;
  let notQueued: FlashlexError | undefined;
  try {
    const kept = recordOutcome(store, entry, outcome, Date.now(), queueLimit >= 0 ? queueLimit : undefined);
    if (!kept && outcome.kind === "retry") notQueued = refuseOverLimit(store, messageId, outcome, queueLimit);
  } catch (err) {
    recordError = toFlashlexError(err).message;
  }
  if (notQueued) throw notQueued;
  if (outcome.kind === "sent") return { messageId, outcome: "sent", status: outcome.status, body: outcome.body, recordError };
  if (outcome.kind === "rejected") return { messageId, outcome: "rejected", status: outcome.status, body: outcome.body, error: outcome.error, recordError };
  const error = outcome.mayHaveArrived
    ? `${outcome.error}; it may or may not have arrived, and goes again under the same message id, which the hub stores once`
    : outcome.error;
  return { messageId, outcome: "queued", status: outcome.status, error, recordError };
}

/**
 * The message may not wait (offlinePublishQueueing 0, or N already waiting): takes its row out
 * again and gives the try-later error (75) to throw.
 */
function refuseOverLimit(store: MessageStore, messageId: string, outcome: DeliveryOutcome & { kind: "retry" }, queueLimit: number): FlashlexError {
  store.dropOutbox([messageId]);
  const waiting = store.countWaiting();
  const rule =
    queueLimit === 0 ? "offlinePublishQueueing is 0 (no offline queueing)" : `${waiting} messages already wait (offlinePublishQueueing: ${queueLimit})`;
  // No answer: whether the hub holds it is not known (the request may have gone before the
  // answer was lost, or never left: a connect or TLS handshake that timed out looks the same),
  // and a retry is a new message with a new id.
  if (outcome.mayHaveArrived) {
    return new FlashlexError(
      `no answer (${outcome.error}): message ${messageId} may or may not have arrived, and ${rule}, so it was not queued; sending it again may store it twice`,
      "try-later",
    );
  }
  return new FlashlexError(`not delivered (${outcome.error}) and ${rule}: nothing was queued, try again later`, "try-later");
}
