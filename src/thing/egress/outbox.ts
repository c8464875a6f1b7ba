import { describeError, type Logger, quoteLogText } from "../../shared/log.ts";
import type { MessageStore, OutboxEntry, OutboxVia } from "../store/message-store.ts";
import { type DeliveryOutcome, retryDelayMs } from "./delivery.ts";

/**
 * The egress outbox. A message's row moves through these states (`outbox.state`):
 *
 * | state      | meaning                                                     | leaves it                         |
 * |------------|-------------------------------------------------------------|-----------------------------------|
 * | `pending`  | waiting; tried at `next_attempt_at`, backoff 2 s … 5 min    | delivered → sent; refused → rejected; `outbox drop` |
 * | `sent`     | the receiver took it (HTTP 2xx, or the broker's PUBACK)     | deleted `db.expireSeconds` after it was created |
 * | `rejected` | the receiver refused the content for good (400, 409, 413,   | `outbox retry` → pending (due now); `outbox drop` |
 * |            | 415, 422), or the stored row cannot be sent at all (its     | (never deleted by itself)         |
 * |            | body is not JSON, its id is not a header-safe token, or     |                                   |
 * |            | another thing id queued it)                                 |                                   |
 *
 * Every other answer — 401/403 (a wrong clock, a revoked thing), 404, 408, 429, 5xx, network
 * errors, and any exception while delivering one row — keeps the row `pending`, with
 * `attempts` counted and `last_error` saying why.
 */

/** Delivers one row; `signal` ends the attempt early (serve stopping): the outcome is then `retry`. */
export type Deliver = (entry: OutboxEntry, signal?: AbortSignal) => Promise<DeliveryOutcome>;

/**
 * Writes a delivery attempt's outcome to the outbox row. A retry with `waitingLimit`
 * (offlinePublishQueueing's N, for collect's first attempt) waits only while fewer than N others
 * do (MessageStore.markRetry): false when it may not, the row unchanged; true otherwise.
 */
export function recordOutcome(store: MessageStore, entry: OutboxEntry, outcome: DeliveryOutcome, now: number, waitingLimit?: number): boolean {
  if (outcome.kind === "sent") store.markSent(entry.message_id, now, outcome.status ? { status: outcome.status, body: outcome.body ?? "" } : undefined);
  else if (outcome.kind === "rejected") store.markRejected(entry.message_id, outcome.error, { status: outcome.status, body: outcome.body });
  else return store.markRetry(entry.message_id, outcome.error, now + Math.max(retryDelayMs(entry.attempts), outcome.retryAfterMs ?? 0), waitingLimit);
  return true;
}

const HEADER_SAFE_ID = /^[\x21-\x7e]{1,200}$/;
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** How many rows of an earlier identity are set aside per transaction at serve's start. */
const SET_ASIDE_PAGE = 500;

/**
 * Why a stored row cannot be sent by the thing `thingId` (its flashlex.thing.id), or undefined
 * when it can. Rows are written by `collect` (which checks them), but the file is public and
 * other programs write to it: a body that is not one JSON document, or an id that cannot travel
 * as a header value, would fail the same way on every try. A row another thing id queued is the
 * data directory's earlier identity (a revoked thing re-created under a new id and unzipped over
 * it): sent now, it would reach the hub as the new thing's. Returns the row with its body as text
 * when it is fine.
 */
export function sendableEntry(entry: OutboxEntry, thingId: string): { entry: OutboxEntry } | { problem: string } {
  const id: unknown = entry.message_id;
  if (typeof id !== "string" || !HEADER_SAFE_ID.test(id)) return { problem: "the stored message id is not 1-200 visible ASCII characters" };
  const queuedBy: unknown = entry.thing_id;
  if (queuedBy !== null && queuedBy !== undefined && queuedBy !== thingId) return { problem: queuedByAnother(id, queuedBy, thingId) };
  let body: unknown = entry.body;
  if (body instanceof Uint8Array) {
    try {
      body = utf8.decode(body);
    } catch {
      return { problem: "the stored body is not UTF-8 text" };
    }
  }
  if (typeof body !== "string") return { problem: `the stored body is not text (${body === null ? "null" : typeof body})` };
  try {
    JSON.parse(body);
  } catch (err) {
    return { problem: `the stored body is not JSON (${err instanceof RangeError ? "nested too deeply" : (err as Error).message})` };
  }
  return { entry: { ...entry, body } };
}

/** Why the row `messageId` that the thing `queuedBy` queued is not sent as the thing `thingId`, and what its owner can do. */
function queuedByAnother(messageId: string, queuedBy: unknown, thingId: string): string {
  return `queued by thing ${shownId(queuedBy)}, an identity this data directory had before; it is not sent as thing ${thingId} unless you ask (flashlex outbox retry ${messageId} sends it as this thing, flashlex outbox drop ${messageId} removes it)`;
}

/** A thing id from the file as it may be shown in one line: a plain id as it is, anything else quoted, cut and escaped (log.ts quoteLogText). */
function shownId(value: unknown): string {
  const text = String(value);
  return /^[\w.-]{1,100}$/.test(text) ? text : quoteLogText(text.slice(0, 60));
}

/**
 * Delivers what waits in the outbox, oldest first, at most `ratePerSecond` messages a second
 * (the config's `drainingFrequency`, so a thing back from a long outage does not flood the
 * API). It looks again every `pollMs` because `collect` adds rows from another process, and
 * at once when `wake()` is called.
 *
 * One row never stops it: a row that cannot be sent is marked `rejected`; an exception while
 * delivering or recording one row is logged (ERROR, once per row and attempt), recorded on the
 * row when the database lets us, and the drainer goes on with the next row. A row is tried at
 * most once per pass, so a row whose outcome cannot be written does not spin.
 */
export class OutboxDrainer {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  /** ends the delivery in flight when serve stops: a hub that does not answer must not hold the stop (systemd SIGKILLs at 15 s) */
  private readonly stopping = new AbortController();
  /**
   * Receivers that asked for a retry (refused, unreachable, 429/503), with how many times in a
   * row and until when the whole receiver rests: 2 s, 4 s ... 5 min, or its Retry-After when
   * longer. Each row has its own backoff too, but a backlog always has a row that is due: without
   * the receiver's, a hub away for a day got a request, a WARN line and a database write every
   * 1.5 s, and an overloaded hub's Retry-After went unheard. Their next success makes the rest of
   * their backlog due. Rows that had failed before serve started count as such a receiver.
   */
  private readonly resting = new Map<OutboxVia, { failures: number; until: number; oldestFirst?: boolean }>();

  constructor(
    private readonly deps: {
      store: MessageStore;
      /** the flashlex.thing.id this serve sends as: rows another thing id queued are set aside (sendableEntry) */
      thingId: string;
      deliverers: Partial<Record<OutboxVia, Deliver>>;
      log: Logger;
      ratePerSecond: number;
      pollMs?: number;
    },
  ) {}

  start(): void {
    try {
      for (const via of this.deps.store.viasRetried()) this.resting.set(via, { failures: 0, until: 0 });
    } catch (err) {
      this.deps.log.error("outbox.record_failed", { error: err, note: "a backlog from before this start keeps its retry times" });
    }
    this.setAsideOtherThings();
    this.schedule(0);
  }

  /**
   * What an earlier identity of this data directory left waiting (a revoked thing re-created
   * under a new id and unzipped over it) is marked rejected at the start, in one WARN line rather
   * than an ERROR per row; a row queued by another thing id later is caught row by row (deliverOne).
   */
  private setAsideOtherThings(): void {
    const { store, thingId, log } = this.deps;
    try {
      let count = 0;
      const queuedBy = new Set<string>();
      // a page at a time, ids only: a revoked thing's backlog (200,000 rows of 2 KB) loaded whole took 735 MB
      // (a page whose rows stayed pending, ids another program wrote as blobs, ends it: they are caught row by row)
      let previousFirst: unknown;
      let page = store.pendingOfOtherThings(thingId, SET_ASIDE_PAGE);
      while (page.length && page[0]!.message_id !== previousFirst) {
        previousFirst = page[0]!.message_id;
        store.markAllUnsendable(page.map((row) => ({ messageId: row.message_id, error: queuedByAnother(row.message_id, row.thing_id, thingId) })));
        count += page.length;
        for (const row of page) queuedBy.add(shownId(row.thing_id));
        page = store.pendingOfOtherThings(thingId, SET_ASIDE_PAGE);
      }
      if (!count) return;
      const named = [...queuedBy];
      log.warn("egress.other_thing_set_aside", {
        count,
        queuedBy: named.slice(0, 5).join(",") + (named.length > 5 ? ` and ${named.length - 5} more` : ""),
        thingId,
        note: "messages another thing id queued in this data directory (an identity it had before) are not sent as this thing unless you ask; marked rejected: flashlex outbox list --state rejected shows them, flashlex outbox retry ID sends one as this thing, flashlex outbox drop ID removes it",
      });
    } catch (err) {
      log.error("outbox.record_failed", { error: err, note: "rows another thing id queued are set aside one by one as they come due" });
    }
  }

  /** Drain now (a new message was queued, or the connection came back). */
  wake(): void {
    if (!this.stopped && !this.running) this.schedule(0);
  }

  /**
   * The receiver behind `via` is reachable again (the MQTT session (re)connected): what waits
   * for a retry time of that receiver is due now, and the drainer runs at once instead of
   * leaving it until its backoff (up to 5 min) runs out.
   */
  receiverBack(via: OutboxVia): void {
    if (this.stopped) return;
    this.resting.delete(via);
    this.makeDue(via);
    this.wake();
  }

  /**
   * Another way out came back (the MQTT session connected): the device's network, and most often
   * the hub behind `via` too, are back, so `via`'s rest ends now rather than when it runs out (up
   * to 5 min), and its oldest waiting row tries it, as at the end of any rest. When it goes, the
   * rest of the backlog follows; when it fails, `via` rests on, one failure more.
   */
  probe(via: OutboxVia): void {
    const rest = this.resting.get(via);
    if (this.stopped || !rest || !this.deps.deliverers[via]) return;
    this.resting.set(via, { failures: rest.failures, until: 0, oldestFirst: true });
    this.wake();
  }

  /** Makes `via`'s oldest waiting row due now (a resting receiver is tried with it); never throws. */
  private oldestFirst(via: OutboxVia, now: number): void {
    try {
      this.deps.store.dueNowFirst(via, now);
    } catch (err) {
      this.deps.log.error("outbox.record_failed", { error: err, note: `the ${via} backlog keeps its retry times` });
    }
  }

  /**
   * A delivery outside the drainer (`collect` through serve) reached `via`: when the receiver was
   * resting, it is back (receiverBack); otherwise nothing happens (no write per message).
   */
  delivered(via: OutboxVia): void {
    if (this.resting.has(via)) this.receiverBack(via);
  }

  /**
   * Stops: the delivery in flight is cut off (its row stays pending and goes again, with the same
   * message id, at the next start), and this resolves once it has been recorded.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.stopping.abort(new Error("serve is stopping"));
    await this.running;
  }

  private schedule(delayMs: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.running = this.drain()
        .catch((err) => this.deps.log.error("outbox.drain_failed", { error: err, note: "trying again at the next poll" }))
        .finally(() => {
          this.running = undefined;
          if (!this.stopped) this.schedule(this.deps.pollMs ?? 1000);
        });
    }, delayMs);
  }

  private async drain(): Promise<void> {
    const { store, deliverers } = this.deps;
    const gapMs = 1000 / this.deps.ratePerSecond;
    // A receiver that just failed would fail the rest of the batch too: wait for the next poll.
    const down = new Set<OutboxVia>();
    const tried = new Set<unknown>();
    while (!this.stopped) {
      const now = Date.now();
      // Each receiver's own due rows: one resting must not hide the other's behind its backlog.
      const batch = (Object.keys(deliverers) as OutboxVia[])
        .filter((via) => !down.has(via) && (this.resting.get(via)?.until ?? 0) <= now)
        .flatMap((via) => {
          // A rest this drainer began is over: its oldest row tries the receiver, whatever that
          // row's own retry time (a younger row went first, and the hub stored the backlog out of
          // order). Rows that failed before serve started keep their own times.
          const rest = this.resting.get(via);
          if (rest?.oldestFirst) {
            rest.oldestFirst = false;
            this.oldestFirst(via, now);
          }
          return store.due(now, 20, via);
        })
        .filter((e) => !tried.has(e.message_id))
        .sort((a, b) => a.created_at - b.created_at || (a.message_id < b.message_id ? -1 : 1));
      if (!batch.length) return;
      for (const entry of batch) {
        if (this.stopped) return;
        if (down.has(entry.via)) continue;
        tried.add(entry.message_id);
        const { kind, retryAfterMs } = await this.deliverOne(entry);
        if (kind === "retry" || kind === "threw") down.add(entry.via);
        // Only the receiver's own "later" makes it rest: a row whose delivery throws is that
        // row's problem and keeps its backoff.
        if (kind === "retry") {
          const failures = (this.resting.get(entry.via)?.failures ?? 0) + 1;
          this.resting.set(entry.via, { failures, until: Date.now() + Math.max(retryDelayMs(failures - 1), retryAfterMs ?? 0), oldestFirst: true });
        } else if (kind === "sent" && this.resting.delete(entry.via)) {
          // The receiver answers again (the hub is back): the rest of its backlog need not wait
          // for each row's own retry time, and goes oldest first (the batch is fetched again).
          this.makeDue(entry.via);
          await new Promise((r) => setTimeout(r, gapMs));
          break;
        }
        if (kind !== "skipped") await new Promise((r) => setTimeout(r, gapMs));
      }
    }
  }

  /** Makes `via`'s waiting rows due now; never throws (a database refusal is logged). */
  private makeDue(via: OutboxVia): void {
    try {
      const moved = this.deps.store.dueNowVia(via, Date.now());
      if (moved) this.deps.log.info("outbox.receiver_back", { via, due: moved });
    } catch (err) {
      this.deps.log.error("outbox.record_failed", { via, error: err, note: "the waiting rows keep their retry times" });
    }
  }

  /** Delivers and records one row; never throws. */
  private async deliverOne(raw: OutboxEntry): Promise<{ kind: DeliveryOutcome["kind"] | "skipped" | "threw"; retryAfterMs?: number }> {
    const { store, log, deliverers } = this.deps;
    const attempt = (typeof raw.attempts === "number" ? raw.attempts : 0) + 1;
    const fields = { messageId: raw.message_id, via: raw.via, attempt };
    const checked = sendableEntry(raw, this.deps.thingId);
    if ("problem" in checked) {
      log.error("egress.unsendable", { ...fields, error: checked.problem, note: "marked rejected; see flashlex outbox list --state rejected" });
      this.record(() => store.markUnsendable(raw.message_id, checked.problem), fields);
      return { kind: "skipped" };
    }
    const entry = checked.entry;
    let outcome: DeliveryOutcome;
    try {
      outcome = await deliverers[entry.via]!(entry, this.stopping.signal);
    } catch (err) {
      // A bug or an unusable key: the row waits with backoff instead of stopping the agent.
      const error = `delivery failed: ${describeError(err)}`;
      log.error("egress.delivery_failed", { ...fields, error, note: "the message stays pending and is tried again with backoff" });
      const failed: DeliveryOutcome = { kind: "retry", error };
      this.record(() => recordOutcome(store, entry, failed, Date.now()), fields);
      return { kind: "threw" };
    }
    this.record(() => recordOutcome(store, entry, outcome, Date.now()), fields);
    const status = "status" in outcome ? outcome.status : undefined;
    if (outcome.kind === "sent") log.info("egress.sent", { ...fields, status });
    else if (outcome.kind === "rejected") log.warn("egress.rejected", { ...fields, status, error: outcome.error });
    else
      log.warn("egress.retry_later", {
        ...fields,
        status,
        error: outcome.error,
        retryAfterSeconds: retryAfterSecondsOf(outcome),
        mayHaveArrived: outcome.mayHaveArrived,
      });
    return { kind: outcome.kind, retryAfterMs: outcome.kind === "retry" ? outcome.retryAfterMs : undefined };
  }

  private record(write: () => void, fields: Record<string, unknown>): void {
    try {
      write();
    } catch (err) {
      this.deps.log.error("outbox.record_failed", { ...fields, error: err, note: "the row stays as it was and is tried again later" });
    }
  }
}

/** A retry's Retry-After in whole seconds, for the log line; undefined when the receiver gave none. */
function retryAfterSecondsOf(outcome: DeliveryOutcome): number | undefined {
  return outcome.kind === "retry" && outcome.retryAfterMs !== undefined ? Math.round(outcome.retryAfterMs / 1000) : undefined;
}
