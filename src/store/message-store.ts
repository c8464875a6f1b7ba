import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import type { Logger } from "../log.ts";
import type { OpenSqlDatabase, SqlDatabase, SqlValue } from "./driver.ts";
import { applyPragmas, migrate } from "./migrate.ts";
import { openSqlDatabase } from "./open.ts";

/**
 * The thing's message database. The schema is a public contract (README, "The message
 * database"): applications in any language read `ingress_messages` with their own SQLite.
 * Times are Unix milliseconds.
 */
export const THING_MIGRATIONS: readonly string[] = [
  `CREATE TABLE ingress_messages (
     id          INTEGER PRIMARY KEY AUTOINCREMENT,
     topic       TEXT    NOT NULL,
     payload     BLOB    NOT NULL,
     qos         INTEGER NOT NULL,
     retain      INTEGER NOT NULL DEFAULT 0,
     received_at INTEGER NOT NULL,
     acked_at    INTEGER
   );
   CREATE INDEX ingress_messages_unacked ON ingress_messages (acked_at, id);
   CREATE TABLE outbox (
     message_id      TEXT    PRIMARY KEY,
     body            TEXT    NOT NULL,
     via             TEXT    NOT NULL CHECK (via IN ('http', 'mqtt')),
     state           TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'rejected')),
     created_at      INTEGER NOT NULL,
     attempts        INTEGER NOT NULL DEFAULT 0,
     next_attempt_at INTEGER NOT NULL,
     last_error      TEXT,
     sent_at         INTEGER,
     response_status INTEGER,
     response_body   TEXT
   );
   CREATE INDEX outbox_due ON outbox (state, next_attempt_at);`,
  // 2: the MQTT packet identifier, to recognise the broker's redelivery of the last message
  `ALTER TABLE ingress_messages ADD COLUMN packet_id INTEGER;`,
];

export interface IngressMessage {
  id: number;
  topic: string;
  /** TEXT when the payload was valid UTF-8 without NUL (JSON always is), BLOB otherwise */
  payload: string | Uint8Array;
  qos: number;
  retain: number;
  received_at: number;
  acked_at: number | null;
  /** the MQTT packet identifier it arrived with (QoS 1), null for QoS 0 */
  packet_id: number | null;
}

export interface NewIngress {
  topic: string;
  payload: Uint8Array;
  qos: number;
  retain: boolean;
  receivedAt: number;
  packetId?: number;
}

export interface IngressQuery {
  /** only messages with a larger id (for --follow and paging) */
  afterId?: number;
  /** `unacked` (default), `acked` or `all` */
  state?: "unacked" | "acked" | "all";
  topic?: string;
  /** received at or after, Unix ms */
  since?: number;
  limit?: number;
}

export type OutboxVia = "http" | "mqtt";

export interface OutboxEntry {
  message_id: string;
  body: string;
  via: OutboxVia;
  state: "pending" | "sent" | "rejected";
  created_at: number;
  attempts: number;
  next_attempt_at: number;
  last_error: string | null;
  sent_at: number | null;
  response_status: number | null;
  response_body: string | null;
}

/** What `retryOutbox` / `dropOutbox` did, id by id. */
export interface OutboxChange {
  changed: string[];
  /** no such entry */
  missing: string[];
  /** retry only: already delivered, left alone */
  sent: string[];
}

/**
 * No legitimate schedule is further ahead than the longest outbox backoff (5 min) or a
 * collect's lease (1 min); 10 minutes leaves room for both.
 */
export const MAX_SCHEDULE_AHEAD_MS = 10 * 60_000;

export interface ExpiryResult {
  ingress: number;
  outbox: number;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function payloadValue(payload: Uint8Array): SqlValue {
  // NUL is valid UTF-8, but C readers of the file (and the wasm driver) stop a TEXT value there
  if (payload.includes(0)) return payload;
  try {
    return utf8.decode(payload);
  } catch {
    return payload;
  }
}

/**
 * The file is public and other programs write to it; SQLite keeps whatever type a writer gave.
 * A row read back always has a text topic and a text-or-bytes payload (a number becomes its
 * decimal text, as SQLite's own CAST would), so one foreign row cannot break a list, the
 * `--exec` runner or the redelivery check for every other row.
 */
function ingressRow(row: IngressMessage): IngressMessage {
  const payload: unknown = row.payload;
  const topic: unknown = row.topic;
  if ((typeof payload === "string" || payload instanceof Uint8Array) && typeof topic === "string") return row;
  return {
    ...row,
    topic: typeof topic === "string" ? topic : topic instanceof Uint8Array ? new TextDecoder().decode(topic) : String(topic),
    payload: typeof payload === "string" || payload instanceof Uint8Array ? payload : String(payload),
  };
}

export class MessageStore {
  private constructor(
    readonly db: SqlDatabase,
    readonly file: string,
  ) {}

  /** `open` picks the driver (tests run both); the default is this build's. */
  static open(file: string, options: { open?: OpenSqlDatabase; log?: Logger } = {}): MessageStore {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    const db = (options.open ?? openSqlDatabase)(file, { log: options.log });
    try {
      applyPragmas(db);
      migrate(db, THING_MIGRATIONS, file);
    } catch (err) {
      db.close();
      throw err;
    }
    return new MessageStore(db, file);
  }

  close(): void {
    this.db.close();
  }

  // ---- ingress: what the thing received, for the application ----

  /** Commits before returning: the caller acknowledges to the broker only after this. */
  insertIngress(message: NewIngress): number {
    return this.db.run("INSERT INTO ingress_messages (topic, payload, qos, retain, received_at, packet_id) VALUES (?, ?, ?, ?, ?, ?)", [
      message.topic,
      payloadValue(message.payload),
      message.qos,
      message.retain ? 1 : 0,
      message.receivedAt,
      message.packetId ?? null,
    ]).lastInsertRowid;
  }

  /**
   * True when `message` repeats one of the last few stored messages: same packet identifier,
   * topic and payload. A broker redelivers (with DUP set) what it sent but never saw
   * acknowledged; when the agent stopped between its commit and its PUBACK, that message is
   * already among the newest rows (at most the broker's in-flight window of them). Only that
   * window is compared: brokers hand out packet identifiers in turn, so an older row with the
   * same identifier is a different message that happened to look the same.
   */
  isRecentRedelivery(message: NewIngress, window = 32): boolean {
    if (message.packetId === undefined) return false;
    const candidates = this.db.all<IngressMessage>(
      "SELECT * FROM (SELECT * FROM ingress_messages ORDER BY id DESC LIMIT ?) WHERE packet_id = ? AND topic = ?",
      [window, message.packetId, message.topic],
    );
    const incoming = Buffer.from(message.payload);
    return candidates.map(ingressRow).some((row) => (typeof row.payload === "string" ? Buffer.from(row.payload, "utf8") : Buffer.from(row.payload)).equals(incoming));
  }

  listIngress(query: IngressQuery = {}): IngressMessage[] {
    const where: string[] = [];
    const params: SqlValue[] = [];
    const state = query.state ?? "unacked";
    if (state === "unacked") where.push("acked_at IS NULL");
    if (state === "acked") where.push("acked_at IS NOT NULL");
    if (query.afterId !== undefined) (where.push("id > ?"), params.push(query.afterId));
    if (query.topic !== undefined) (where.push("topic = ?"), params.push(query.topic));
    if (query.since !== undefined) (where.push("received_at >= ?"), params.push(query.since));
    params.push(query.limit ?? -1);
    const clause = where.length ? `WHERE ${where.join(" AND ")}` : "";
    return this.db.all<IngressMessage>(`SELECT * FROM ingress_messages ${clause} ORDER BY id LIMIT ?`, params).map(ingressRow);
  }

  getIngress(id: number): IngressMessage | undefined {
    const row = this.db.get<IngressMessage>("SELECT * FROM ingress_messages WHERE id = ?", [id]);
    return row && ingressRow(row);
  }

  /** Marks messages read by the application; returns the ids that exist. Already-acked ids keep their first time. */
  ackIngress(ids: readonly number[], at: number): number[] {
    return this.db.transaction(() =>
      ids.filter((id) => {
        this.db.run("UPDATE ingress_messages SET acked_at = COALESCE(acked_at, ?) WHERE id = ?", [at, id]);
        return this.getIngress(id) !== undefined;
      }),
    );
  }

  /** Deletes messages; returns the ids that existed. */
  deleteIngress(ids: readonly number[]): number[] {
    return this.db.transaction(() => ids.filter((id) => this.db.run("DELETE FROM ingress_messages WHERE id = ?", [id]).changes > 0));
  }

  countIngress(): { unacked: number; total: number } {
    return this.db.get<{ unacked: number; total: number }>(
      "SELECT COUNT(*) AS total, COALESCE(SUM(acked_at IS NULL), 0) AS unacked FROM ingress_messages",
    )!;
  }

  /**
   * Retention: an ingress message is deleted once it is older than `expireSeconds` AND the
   * application has acknowledged it; an unacknowledged one is never dropped. Outbox entries
   * are deleted once delivered (`sent`) and older than `expireSeconds`; a `rejected` one stays
   * until the owner retries or drops it (`flashlex outbox`), a `pending` one until delivered.
   */
  expire(now: number, expireSeconds: number): ExpiryResult {
    const cutoff = now - expireSeconds * 1000;
    return this.db.transaction(() => ({
      ingress: this.db.run("DELETE FROM ingress_messages WHERE acked_at IS NOT NULL AND received_at < ?", [cutoff]).changes,
      outbox: this.db.run("DELETE FROM outbox WHERE state = 'sent' AND created_at < ?", [cutoff]).changes,
    }));
  }

  // ---- outbox: egress waiting to be delivered ----

  /**
   * Queues a message. `notBefore` lets the enqueuing process try it first without `serve`
   * racing it for the same row.
   */
  enqueue(entry: { messageId: string; body: string; via: OutboxVia; now: number; notBefore?: number }): void {
    this.db.run("INSERT INTO outbox (message_id, body, via, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?)", [
      entry.messageId,
      entry.body,
      entry.via,
      entry.now,
      entry.notBefore ?? entry.now,
    ]);
  }

  countPending(): number {
    return this.db.get<{ n: number }>("SELECT COUNT(*) AS n FROM outbox WHERE state = 'pending'")!.n;
  }

  countRejected(): number {
    return this.db.get<{ n: number }>("SELECT COUNT(*) AS n FROM outbox WHERE state = 'rejected'")!.n;
  }

  /**
   * Pending entries whose next attempt is due, oldest first. An entry scheduled further ahead
   * than any backoff or lease reaches (`MAX_SCHEDULE_AHEAD_MS`) was scheduled by a clock that
   * has since gone back (NTP stepping a clock that ran a day ahead): it is due now rather than
   * stranded until the clock catches up.
   */
  due(now: number, limit: number, via?: OutboxVia): OutboxEntry[] {
    const viaClause = via ? "AND via = ?" : "";
    const params: SqlValue[] = via ? [now, now + MAX_SCHEDULE_AHEAD_MS, via, limit] : [now, now + MAX_SCHEDULE_AHEAD_MS, limit];
    return this.db.all<OutboxEntry>(
      `SELECT * FROM outbox WHERE state = 'pending' AND (next_attempt_at <= ? OR next_attempt_at > ?) ${viaClause} ORDER BY created_at, message_id LIMIT ?`,
      params,
    );
  }

  getOutbox(messageId: string): OutboxEntry | undefined {
    return this.db.get<OutboxEntry>("SELECT * FROM outbox WHERE message_id = ?", [messageId]);
  }

  listOutbox(state?: OutboxEntry["state"]): OutboxEntry[] {
    return state
      ? this.db.all<OutboxEntry>("SELECT * FROM outbox WHERE state = ? ORDER BY created_at, message_id", [state])
      : this.db.all<OutboxEntry>("SELECT * FROM outbox ORDER BY created_at, message_id");
  }

  /**
   * `flashlex outbox retry`: makes `pending` and `rejected` entries pending and due at `now`
   * (their attempts and last error are kept). A `sent` entry is left alone: the receiver has it.
   */
  retryOutbox(ids: readonly string[], now: number): OutboxChange {
    return this.db.transaction(() => {
      const change: OutboxChange = { changed: [], missing: [], sent: [] };
      for (const id of ids) {
        const row = this.getOutbox(id);
        if (!row) change.missing.push(id);
        else if (row.state === "sent") change.sent.push(id);
        else {
          this.db.run("UPDATE outbox SET state = 'pending', next_attempt_at = ? WHERE message_id = ?", [now, id]);
          change.changed.push(id);
        }
      }
      return change;
    });
  }

  /** `flashlex outbox drop`: deletes entries in any state. */
  dropOutbox(ids: readonly string[]): OutboxChange {
    return this.db.transaction(() => {
      const change: OutboxChange = { changed: [], missing: [], sent: [] };
      for (const id of ids) (this.db.run("DELETE FROM outbox WHERE message_id = ?", [id]).changes > 0 ? change.changed : change.missing).push(id);
      return change;
    });
  }

  markSent(messageId: string, at: number, response?: { status: number; body: string }): void {
    this.db.run(
      "UPDATE outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1, last_error = NULL, response_status = ?, response_body = ? WHERE message_id = ?",
      [at, response?.status ?? null, response?.body ?? null, messageId],
    );
  }

  /** The receiver refused the content for good (400, 409, 413, 415, 422): retrying cannot help. */
  markRejected(messageId: string, error: string, response: { status: number; body: string }): void {
    this.db.run(
      "UPDATE outbox SET state = 'rejected', attempts = attempts + 1, last_error = ?, response_status = ?, response_body = ? WHERE message_id = ?",
      [error, response.status, response.body, messageId],
    );
  }

  /**
   * A row that cannot be sent at all (see outbox.ts `sendableEntry`). Matched with `IS`, so a
   * row another program wrote with a NULL id is marked too instead of being tried forever.
   */
  markUnsendable(messageId: unknown, error: string): void {
    this.db.run("UPDATE outbox SET state = 'rejected', attempts = attempts + 1, last_error = ? WHERE message_id IS ?", [
      error,
      (typeof messageId === "string" ? messageId : messageId === null || messageId === undefined ? null : String(messageId)) as SqlValue,
    ]);
  }

  /** A delivery attempt failed for a reason that may pass (network, 5xx, 401): try again at `nextAttemptAt`. */
  markRetry(messageId: string, error: string, nextAttemptAt: number): void {
    this.db.run("UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE message_id = ?", [
      error,
      nextAttemptAt,
      messageId,
    ]);
  }

  /** Makes a pending entry due now (another process asked for it). */
  wake(messageId: string, now: number): void {
    this.db.run("UPDATE outbox SET next_attempt_at = ? WHERE message_id = ? AND state = 'pending'", [now, messageId]);
  }
}
