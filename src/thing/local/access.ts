/**
 * src/thing/local: how the application side (`messages`, `outbox`, `collect`, the SDK) reaches
 * the thing's data, on every target alike (DESIGN.md, "How applications reach their messages").
 *
 *   access.ts      ThingAccess, the one interface both ways answer
 *   open.ts        openThingAccess: through the running serve if there is one, else in process
 *   in-process.ts  the data in this process (serve itself, or a command while serve is stopped)
 *   server.ts      serve's control socket: a ThingAccess served over a Unix socket
 *   client.ts      the other end: a ThingAccess that calls the running serve
 *   wire.ts        what travels on the socket
 *   serve-lock.ts  one serve per data directory, and one MQTT session per thing
 *
 * When `serve` runs, everything goes through its control socket: serve owns the one MQTT
 * session, and on armv7 the WebAssembly SQLite holds the database file exclusively. When it does
 * not run, the command opens the database itself. Both answer the same way.
 */
import type { CollectResult } from "../egress/collect.ts";
import type { IngressMessage, IngressQuery, OutboxChange, OutboxEntry, OutboxPage, OutboxVia } from "../store/message-store.ts";

export type { CollectResult, IngressMessage, IngressQuery, OutboxChange, OutboxEntry, OutboxPage, OutboxVia };

/** The outbox states (src/thing/egress/outbox.ts documents them). */
export type OutboxState = OutboxEntry["state"];

/** What the application side does with the thing's data. */
export interface ThingAccess {
  readonly via: "serve" | "database";
  /**
   * A `serve` runs, or has run, on this data directory, so a message left queued is delivered;
   * false for a database only `collect` or an SDK has used (a serve started with another -d never
   * sees it).
   */
  readonly served: boolean;
  listMessages(query: IngressQuery): Promise<IngressMessage[]>;
  /** resolves to the ids that existed */
  ackMessages(ids: readonly number[]): Promise<number[]>;
  deleteMessages(ids: readonly number[]): Promise<number[]>;
  /** queues `body` (one JSON document, checked) and delivers it once now (egress/collect.ts) */
  collect(body: string, via: OutboxVia): Promise<CollectResult>;
  /** the egress outbox, oldest first; every state unless one is given; `page`: a part of it (OutboxPage) */
  listOutbox(state?: OutboxState, page?: OutboxPage): Promise<OutboxEntry[]>;
  /** rejected (or pending) entries become pending and due now */
  retryOutbox(ids: readonly string[]): Promise<OutboxChange>;
  /** sent entries sent at or after `sentSince` (Unix ms) become pending and due now: the receiver lost them */
  resendOutbox(sentSince: number): Promise<OutboxChange>;
  /** deletes entries in any state */
  dropOutbox(ids: readonly string[]): Promise<OutboxChange>;
  close(): void;
}
