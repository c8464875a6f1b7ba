import { isUtf8 } from "node:buffer";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import type { FlashlexError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { type OpenSqlDatabase, refuseOddDatabaseFiles, reportingDamage, type SqlDatabase, type SqlValue } from "../../shared/sqlite/driver.ts";
import { applyPragmas, migrate, migrateDown, type SchemaSnapshot } from "../../shared/sqlite/migrate.ts";
import { openSqlDatabase } from "../../shared/sqlite/open.ts";
import { refuseNonDirectory } from "../config-location.ts";

/**
 * The thing's message database. The schema is a public contract (docs/database.md):
 * applications in any language read `ingress_messages` with their own SQLite.
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
  // 3: the hub message ids already stored (exactly once, whatever the broker resends), and what
  // the broker's persistent session holds for this thing (its subscriptions)
  `CREATE TABLE ingress_seen (
     message_id TEXT    PRIMARY KEY,
     seen_at    INTEGER NOT NULL
   ) WITHOUT ROWID;
   CREATE INDEX ingress_seen_time ON ingress_seen (seen_at);
   CREATE INDEX ingress_messages_packet ON ingress_messages (packet_id) WHERE packet_id IS NOT NULL;
   CREATE TABLE session_state (
     key   TEXT PRIMARY KEY,
     value TEXT NOT NULL
   );`,
  // 4: the acknowledged rows by age, for retention (EXPIRE_ACKED_INGRESS). Without it every
  // minute's sweep read the whole table (80 ms at 1M rows on x64, far more on a Pi), and the
  // table is largest exactly when the application has fallen behind. Partial: an arriving
  // message has no acked_at, so ingress does not pay for it; only an ack adds an entry.
  `CREATE INDEX ingress_messages_acked ON ingress_messages (received_at) WHERE acked_at IS NOT NULL;`,
  // 5: the thing that queued each outbox row (its flashlex.thing.id), so a row queued under an
  // identity the data directory has since replaced (a revoked thing re-created under a new id) is
  // set aside, not sent under the new thing's name. NULL: queued before schema 5, or by a program
  // that does not say; sent as before.
  `ALTER TABLE outbox ADD COLUMN thing_id TEXT;`,
];

/**
 * What undoes each of THING_MIGRATIONS (entry N-1 undoes migration N), for a self-update rolled
 * back after the new binary migrated the file (migrateDown, src/thing/update/trial-schema.ts):
 * every index, table and column a migration made goes, in the reverse order, so the file is what
 * migrations 1..N make and nothing else (an older binary compares the columns exactly, and its own
 * migrations, run again at the next update, must not find what they make already there). A
 * migration added above needs its entry here (test/support/store-contract.ts, on both drivers).
 */
export const THING_DOWN_MIGRATIONS: readonly string[] = [
  // 1: there is no schema before the first to go back to (migrateDown refuses a version below 1)
  "",
  "ALTER TABLE ingress_messages DROP COLUMN packet_id;",
  `DROP TABLE session_state;
   DROP INDEX ingress_messages_packet;
   DROP TABLE ingress_seen;`,
  "DROP INDEX ingress_messages_acked;",
  "ALTER TABLE outbox DROP COLUMN thing_id;",
];

/**
 * Retention of ingress: the acknowledged messages received before the cutoff (Unix ms). Its
 * WHERE implies the partial index's, so SQLite reads only the rows it deletes (migration 4).
 */
export const EXPIRE_ACKED_INGRESS = "DELETE FROM ingress_messages WHERE acked_at IS NOT NULL AND received_at < ?";

/**
 * The oldest schema version whose flashlex can still use what THING_MIGRATIONS leave
 * (MigrationOptions.readableFrom). A self-update that migrates the database and is then rolled
 * back hands it to the previous binary: if that binary's version is below this, it stops with 78
 * and the thing stays down until the newer release is put back. So a migration that only adds a
 * table, or a column older code need not fill (nullable or with a DEFAULT), leaves this where it
 * was; one that renames, drops or narrows anything raises it to its own version. Every query here
 * names its columns, so added ones are harmless (test/support/store-contract.ts opens a database a
 * later migration widened).
 */
export const THING_READABLE_FROM = 4;

/** The tables THING_MIGRATIONS leave (migrate.ts SchemaSnapshot; test/unit/store-contract.test.ts holds it to them). */
export const THING_SCHEMA: SchemaSnapshot = {
  ingress_messages: ["id", "topic", "payload", "qos", "retain", "received_at", "acked_at", "packet_id"],
  ingress_seen: ["message_id", "seen_at"],
  outbox: [
    "message_id",
    "body",
    "via",
    "state",
    "created_at",
    "attempts",
    "next_attempt_at",
    "last_error",
    "sent_at",
    "response_status",
    "response_body",
    "thing_id",
  ],
  session_state: ["key", "value"],
};

/** The session_state key of serve's last start (markServed). */
const SERVED_KEY = "serve.started_at";

/** The session_state key of the last ingress row stored before the broker's current session began (markSessionBegan). */
const SESSION_BEGAN_KEY = "broker.session_began_after";

/** The session_state key of the broker the current session is on (setSessionBroker). */
const SESSION_BROKER_KEY = "broker.address";

/**
 * How long the id of a stored hub message is remembered, so that a redelivery is recognised
 * even after the message itself was acknowledged and deleted by retention: at least a week
 * (a hub that was down replays what it never saw acknowledged), longer if retention is longer.
 */
export const SEEN_ID_MIN_KEEP_MS = 7 * 24 * 3600 * 1000;

/**
 * How many stored messages a broker's redelivery is compared with when it carries no hub id
 * (matched by packet identifier, topic and payload): every message that can have been committed
 * without its PUBACK reaching the broker. With group commit that is up to a whole batch
 * (MAX_BATCH_MESSAGES, src/thing/ingress/handler.ts) plus PUBACKs lost with the connection;
 * Mosquitto 2.0.11 was seen sending a queue of 1,680 before the first PUBACKs came back, so
 * its max_inflight_messages does not bound it. The hub's own messages carry ids.
 */
export const REDELIVERY_WINDOW = 4000;

/** How many of a topic's newest rows a retained message is compared with (isRetainedRepeat). */
const RETAINED_LOOKBACK = 1000;

/** Ingress rows `afterId < id <= upToId`: where a redelivery without a hub id is looked for. */
export interface RedeliveryRange {
  afterId: number;
  upToId: number;
  /**
   * The range's rows by packet id (`withPacketIndex`), for a range asked about many times: a
   * resumed session checks every message it receives against the same rows, and a message
   * whose packet id no row carries (most of them) then costs no query at all.
   */
  byPacketId?: Map<number, number[]>;
}

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
  /** the hub's message id (flmessagespk) when the payload carries one: stored once, ever */
  messageId?: string;
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

/** A page of the outbox in its order (created_at, then message_id): the entries after `after`, at most `limit`. */
export interface OutboxPage {
  after?: { createdAt: number; messageId: string };
  limit?: number;
}

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
  /** the flashlex.thing.id of the thing that queued it; null before schema 5 (see THING_MIGRATIONS) */
  thing_id: string | null;
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

/**
 * Whether a payload is stored as TEXT: valid UTF-8 (the applications' JSON reads as text in any
 * SQLite reader) without NUL (valid UTF-8, but C readers of the file, and the wasm driver, stop a
 * TEXT value there); anything else is a BLOB. Either way its bytes are kept as they came: the
 * TEXT is the bytes themselves (SQLite's CAST of a BLOB), never decoded and encoded again: that
 * dropped a leading byte order mark (TextDecoder's default), so the application got other bytes
 * than were sent, and a broker's resend of such a message no longer matched it and was stored twice.
 */
const INSERT_INGRESS_BLOB = "INSERT INTO ingress_messages (topic, payload, qos, retain, received_at, packet_id) VALUES (?, ?, ?, ?, ?, ?)";
const INSERT_INGRESS_TEXT = "INSERT INTO ingress_messages (topic, payload, qos, retain, received_at, packet_id) VALUES (?, CAST(? AS TEXT), ?, ?, ?, ?)";

function storedAsText(payload: Uint8Array): boolean {
  return isUtf8(payload) && !payload.includes(0);
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

function samePayload(stored: string | Uint8Array, incoming: Uint8Array): boolean {
  return (typeof stored === "string" ? Buffer.from(stored, "utf8") : Buffer.from(stored)).equals(Buffer.from(incoming));
}

export interface StoreOpenOptions {
  /** the SQLite driver (tests run both); default this build's */
  open?: OpenSqlDatabase;
  log?: Logger;
  /** how long an open waits for another process holding the file, ms (OpenOptions.holderWaitMs) */
  holderWaitMs?: number;
  /** told when a statement finds the file damaged, before the error is thrown (reportingDamage) */
  onDamaged?: (err: FlashlexError) => void;
  /** told the version an older file is at before it is migrated (MigrationOptions.beforeMigrating) */
  beforeMigrating?: (from: number) => void;
  /** told, once it committed, that an older file was migrated (MigrationOptions.migrated) */
  migrated?: (from: number, to: number) => void;
}

/** Opens and migrates the file: ConfigError (78) for a database of another application or a newer flashlex. */
function connect(file: string, options: StoreOpenOptions): SqlDatabase {
  refuseOddDatabaseFiles(file, "message database");
  const opened = (options.open ?? openSqlDatabase)(file, { log: options.log, holderWaitMs: options.holderWaitMs });
  const db = options.onDamaged ? reportingDamage(opened, options.onDamaged) : opened;
  try {
    applyPragmas(db);
    const { beforeMigrating, migrated } = options;
    migrate(db, THING_MIGRATIONS, file, { current: THING_SCHEMA, readableFrom: THING_READABLE_FROM, beforeMigrating, migrated });
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

/**
 * Takes the message database `file` back to schema version `to` (THING_DOWN_MIGRATIONS), with
 * every commit synced (synchronous=FULL), and closes it. `lockWaitMs` is how long to wait for
 * another process's lock (default LOCK_WAIT_MS). Returns the version it was at. Throws as
 * migrateDown does; FlashlexError for a file that cannot be opened or written (a full disk, a
 * lock held past the wait: `try-later`).
 */
export function downgradeThingDatabase(file: string, to: number, options: { open?: OpenSqlDatabase; lockWaitMs?: number } = {}): number {
  refuseOddDatabaseFiles(file, "message database");
  const db = (options.open ?? openSqlDatabase)(file, { holderWaitMs: options.lockWaitMs });
  try {
    applyPragmas(db, options.lockWaitMs);
    db.exec("PRAGMA synchronous = FULL");
    return migrateDown(db, THING_MIGRATIONS, THING_DOWN_MIGRATIONS, file, to);
  } finally {
    db.close();
  }
}

/**
 * One connection to the thing's message database: ingress, outbox, the MQTT session's state.
 * `open` makes the directory and migrates the file (ConfigError, exit 78, for a database of
 * another application or a newer flashlex); `close` when done. Times are Unix milliseconds.
 */
export class MessageStore {
  private connection: SqlDatabase | undefined;
  private closed = false;

  private constructor(
    connection: SqlDatabase,
    readonly file: string,
    private readonly options: StoreOpenOptions,
  ) {
    this.connection = connection;
  }

  /**
   * Opens `file`, making its directory (0700) when it is not there. `open` picks the driver
   * (tests run both); the default is this build's. Throws ConfigError (78) when something else is
   * where the directory belongs (refuseNonDirectory), and what connect throws.
   */
  static open(file: string, options: StoreOpenOptions = {}): MessageStore {
    refuseNonDirectory(dirname(file));
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    return new MessageStore(connect(file, options), file, options);
  }

  /**
   * The connection. After releaseFile() the next use opens the file again, waiting as `open`
   * does, and throws what `open` throws (DatabaseLockedError, 75, while another process holds it).
   */
  get db(): SqlDatabase {
    if (this.closed) throw new Error(`${this.file}: the message store is closed`);
    this.connection ??= connect(this.file, this.options);
    return this.connection;
  }

  /**
   * Lets other processes open the file until this store's next use, where the driver keeps it to
   * itself for as long as it is open (armv7's WebAssembly SQLite): `collect` calls it once its
   * network attempt (up to 40 s) has been out a second, so a serve started meanwhile is not
   * refused (75). A no-op for bun:sqlite, which locks only while it reads or writes.
   */
  releaseFile(): void {
    const connection = this.connection;
    if (!connection?.holdsFileWhileOpen) return;
    this.connection = undefined;
    connection.close();
  }

  /**
   * SQLite's `PRAGMA quick_check` of the whole file (every page read: O(size), ~1.5 s for 270 MB
   * on x64): the problems it finds, none when the file is sound. Throws FlashlexError "damaged"
   * when the file is too damaged to check.
   */
  problems(): string[] {
    const rows = this.db.all<{ quick_check: string }>("PRAGMA quick_check");
    return rows.length === 1 && rows[0]!.quick_check === "ok" ? [] : rows.map((row) => row.quick_check);
  }

  close(): void {
    this.closed = true;
    this.connection?.close();
    this.connection = undefined;
  }

  // ---- ingress: what the thing received, for the application ----

  /**
   * Stores an ingress message and commits before returning: the caller acknowledges to the
   * broker only after this. A message whose hub id (`messageId`) was stored before is not
   * stored again: returns undefined for such a repeat, else the new row's id.
   */
  insertIngress(message: Omit<NewIngress, "messageId">): number;
  insertIngress(message: NewIngress): number | undefined;
  insertIngress(message: NewIngress): number | undefined {
    if (message.messageId === undefined) return this.insertOne(message);
    return this.db.transaction(() => this.insertOne(message));
  }

  /**
   * Stores several ingress messages in one transaction, committed before this returns (group
   * commit: one fsync for the batch). Returns, per message and in order, its new row id, or
   * undefined when its hub id was stored before (in an earlier batch or earlier in this one).
   * Throws (and stores none of them) when the commit fails.
   */
  insertIngressBatch(messages: readonly NewIngress[]): (number | undefined)[] {
    return this.db.transaction(() => messages.map((message) => this.insertOne(message)));
  }

  /** True when a message with this hub id was stored (its id is remembered: SEEN_ID_MIN_KEEP_MS). */
  hasSeenMessageId(messageId: string): boolean {
    return this.db.get("SELECT 1 AS seen FROM ingress_seen WHERE message_id = ?", [messageId]) !== undefined;
  }

  /** One message, inside the caller's transaction when it has a hub id. */
  private insertOne(message: NewIngress): number | undefined {
    const { messageId } = message;
    // One statement decides: a second process storing the same id at once gets changes = 0.
    if (
      messageId !== undefined &&
      this.db.run("INSERT OR IGNORE INTO ingress_seen (message_id, seen_at) VALUES (?, ?)", [messageId, message.receivedAt]).changes === 0
    ) {
      return undefined;
    }
    return this.db.run(storedAsText(message.payload) ? INSERT_INGRESS_TEXT : INSERT_INGRESS_BLOB, [
      message.topic,
      message.payload,
      message.qos,
      message.retain ? 1 : 0,
      message.receivedAt,
      message.packetId ?? null,
    ]).lastInsertRowid;
  }

  /** The newest ingress row id (0 when there is none): where a connection's messages start. */
  lastIngressId(): number {
    return this.db.get<{ id: number | null }>("SELECT MAX(id) AS id FROM ingress_messages")!.id ?? 0;
  }

  /**
   * True when `message` repeats one of the `window` newest rows up to row `upToId`: same packet
   * identifier, topic and payload. This is how a broker's redelivery of a message without a hub
   * id is recognised: MQTT 3.1.1 §4.4 has the broker resend what it never saw acknowledged, with
   * its original packet identifier, when the session resumes; and §2.3.1 forbids reusing that
   * identifier until the PUBACK arrived. So the rows that can be redelivered are the last ones
   * stored before the session resumed (`upToId`), at most the broker's in-flight window of them.
   */
  isPacketRedelivery(message: NewIngress, range: RedeliveryRange): boolean {
    if (message.packetId === undefined) return false;
    let candidates: IngressMessage[];
    if (range.byPacketId) {
      const ids = range.byPacketId.get(message.packetId);
      if (!ids) return false;
      candidates = this.db.all<IngressMessage>(`SELECT * FROM ingress_messages WHERE id IN (${ids.map(() => "?").join(",")}) AND topic = ?`, [
        ...ids,
        message.topic,
      ]);
    } else {
      // Through the packet id's index: no payload is read but those of the rows that carry it.
      candidates = this.db.all<IngressMessage>("SELECT * FROM ingress_messages WHERE packet_id = ? AND id > ? AND id <= ? AND topic = ?", [
        message.packetId,
        range.afterId,
        range.upToId,
        message.topic,
      ]);
    }
    return candidates.map(ingressRow).some((row) => samePayload(row.payload, message.payload));
  }

  /** `range` with its rows' packet ids read into memory (RedeliveryRange.byPacketId): one query, ids and packet ids only. */
  withPacketIndex(range: RedeliveryRange): RedeliveryRange {
    const byPacketId = new Map<number, number[]>();
    const rows = this.db.all<{ id: number; packet_id: number }>(
      "SELECT id, packet_id FROM ingress_messages WHERE id > ? AND id <= ? AND packet_id IS NOT NULL",
      [range.afterId, range.upToId],
    );
    for (const row of rows) {
      const ids = byPacketId.get(row.packet_id);
      if (ids) ids.push(row.id);
      else byPacketId.set(row.packet_id, [row.id]);
    }
    return { ...range, byPacketId };
  }

  /**
   * The rows a broker may send again when it resumes a session: the newest `window` rows up to
   * row `upToId`, none stored before the broker's session began (sessionBeganAfter): a broker
   * resends only from the session it kept, and one that began a new session counts its packet
   * identifiers from 1 again, so older rows would match its new messages (for
   * `isPacketRedelivery`; computed once per connection, from the rowid alone).
   */
  redeliveryRange(upToId: number, window = REDELIVERY_WINDOW): RedeliveryRange {
    const lowest = this.db.get<{ id: number }>("SELECT id FROM ingress_messages WHERE id <= ? ORDER BY id DESC LIMIT 1 OFFSET ?", [upToId, window]);
    return { afterId: Math.max(lowest?.id ?? 0, this.sessionBeganAfter()), upToId };
  }

  /**
   * The broker began a new session for the thing (CONNACK sessionPresent 0): what was stored
   * until now (rows up to `after`) can never be sent again (redeliveryRange). Kept in the
   * database, as serve's own restarts resume the broker's session.
   */
  markSessionBegan(after: number): void {
    this.setSessionState(SESSION_BEGAN_KEY, String(after));
  }

  /** The broker (`host:port`) the current session is on (setSessionBroker); undefined: none recorded. */
  sessionBroker(): string | undefined {
    return this.sessionState(SESSION_BROKER_KEY) || undefined;
  }

  setSessionBroker(broker: string): void {
    this.setSessionState(SESSION_BROKER_KEY, broker);
  }

  /** The last ingress row stored before the broker's current session began (markSessionBegan); 0: none recorded. */
  sessionBeganAfter(): number {
    const value = Number(this.sessionState(SESSION_BEGAN_KEY));
    return Number.isSafeInteger(value) && value > 0 ? value : 0;
  }

  /**
   * True when a retained message repeats a row of its topic from the topic's newest retained row
   * on (at most the newest RETAINED_LOOKBACK of them). A broker sends the topic's retained
   * message (RETAIN set, MQTT 3.1.1 §3.3.1.3) at every subscription, serve's every connection
   * included; the same bytes on the same topic are that message again, whether it was stored
   * then or when it arrived live (RETAIN 0 on a subscription that already existed, §3.3.1.3).
   */
  isRetainedRepeat(message: NewIngress): boolean {
    if (!message.retain) return false;
    const rows = this.db.all<IngressMessage>(
      `SELECT * FROM ingress_messages WHERE topic = ?
         AND id >= COALESCE((SELECT MAX(id) FROM ingress_messages WHERE topic = ? AND retain = 1), 0)
       ORDER BY id DESC LIMIT ${RETAINED_LOOKBACK}`,
      [message.topic, message.topic],
    );
    return rows.some((row) => samePayload(ingressRow(row).payload, message.payload));
  }

  /** Marks the database as one a `serve` runs on (at its start, Unix ms): what waits in its outbox gets delivered. */
  markServed(at: number): void {
    this.setSessionState(SERVED_KEY, String(at));
  }

  /** True once a `serve` has run on this database (markServed); a database only collect or the SDK used: false. */
  wasServed(): boolean {
    return this.sessionState(SERVED_KEY) !== undefined;
  }

  /** A small key-value memory of what serve keeps between starts (the broker session's subscriptions, the old stores imported). */
  sessionState(key: string): string | undefined {
    return this.db.get<{ value: string }>("SELECT value FROM session_state WHERE key = ?", [key])?.value;
  }

  setSessionState(key: string, value: string): void {
    this.db.run("INSERT INTO session_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", [key, value]);
  }

  listIngress(query: IngressQuery = {}): IngressMessage[] {
    const where: string[] = [];
    const params: SqlValue[] = [];
    const state = query.state ?? "unacked";
    if (state === "unacked") where.push("acked_at IS NULL");
    if (state === "acked") where.push("acked_at IS NOT NULL");
    if (query.afterId !== undefined) where.push("id > ?"), params.push(query.afterId);
    if (query.topic !== undefined) where.push("topic = ?"), params.push(query.topic);
    if (query.since !== undefined) where.push("received_at >= ?"), params.push(query.since);
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

  /**
   * How many messages wait unacknowledged, counted up to `atMost` (-1: all). Read from the
   * unacked index and stops at `atMost`: a periodic check stays cheap however far behind the
   * application is.
   */
  countUnacked(atMost = -1): number {
    return this.db.get<{ n: number }>("SELECT COUNT(*) AS n FROM (SELECT 1 FROM ingress_messages WHERE acked_at IS NULL LIMIT ?)", [atMost])!.n;
  }

  /** Every ingress row and the unacknowledged ones: reads the whole table (for metrics and `messages`, not for a timer). */
  countIngress(): { unacked: number; total: number } {
    return this.db.get<{ unacked: number; total: number }>("SELECT COUNT(*) AS total, COALESCE(SUM(acked_at IS NULL), 0) AS unacked FROM ingress_messages")!;
  }

  /**
   * Retention: an ingress message is deleted once it is older than `expireSeconds` AND the
   * application has acknowledged it; an unacknowledged one is never dropped. Outbox entries
   * are deleted once delivered (`sent`) and older than `expireSeconds`; a `rejected` one stays
   * until the owner retries or drops it (`flashlex outbox`), a `pending` one until delivered.
   * The ids of stored hub messages are kept while their message is stored, and after that for
   * `SEEN_ID_MIN_KEEP_MS`, or `expireSeconds` if longer: an id is dropped only when older than the
   * oldest stored message, so neither an unacknowledged message kept for weeks (the hub may
   * replay it) nor a clock stepped forward forgets the id of a row that is still there.
   * `expireSeconds` 0 or below keeps every message and outbox row (the Python SDK's meaning).
   */
  expire(now: number, expireSeconds: number): ExpiryResult {
    const cutoff = now - expireSeconds * 1000;
    return this.db.transaction(() => {
      // an id's seen_at is its row's received_at; the oldest rows come from two indexes (the
      // oldest unacknowledged by id, the acknowledged by time), not a scan of the table
      const oldestUnacked = this.db.get<{ t: number }>("SELECT received_at AS t FROM ingress_messages WHERE acked_at IS NULL ORDER BY acked_at, id LIMIT 1")?.t;
      const oldestAcked = this.db.get<{ t: number | null }>("SELECT MIN(received_at) AS t FROM ingress_messages WHERE acked_at IS NOT NULL")?.t ?? undefined;
      const keepFrom = Math.min(cutoff, now - SEEN_ID_MIN_KEEP_MS, oldestUnacked ?? Number.POSITIVE_INFINITY, oldestAcked ?? Number.POSITIVE_INFINITY);
      this.db.run("DELETE FROM ingress_seen WHERE seen_at < ?", [keepFrom]);
      if (expireSeconds <= 0) return { ingress: 0, outbox: 0 };
      return {
        ingress: this.db.run(EXPIRE_ACKED_INGRESS, [cutoff]).changes,
        outbox: this.db.run("DELETE FROM outbox WHERE state = 'sent' AND created_at < ?", [cutoff]).changes,
      };
    });
  }

  // ---- outbox: egress waiting to be delivered ----

  /**
   * Queues a message from the thing `thingId` (its flashlex.thing.id). `notBefore` lets the
   * enqueuing process try it first without `serve` racing it for the same row.
   */
  enqueue(entry: { messageId: string; body: string; via: OutboxVia; thingId: string; now: number; notBefore?: number }): void {
    this.db.run("INSERT INTO outbox (message_id, body, via, thing_id, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?)", [
      entry.messageId,
      entry.body,
      entry.via,
      entry.thingId,
      entry.now,
      entry.notBefore ?? entry.now,
    ]);
  }

  countPending(): number {
    return this.db.get<{ n: number }>("SELECT COUNT(*) AS n FROM outbox WHERE state = 'pending'")!.n;
  }

  /**
   * The outbox for metrics, in one read of the entries not yet delivered: how many wait to be
   * delivered (`pending`), how many the hub refused (`rejected`, kept until retried or dropped),
   * and when the oldest of either was made (Unix ms on this device's clock; null when none waits).
   */
  outboxStats(): { pending: number; rejected: number; oldestCreatedAt: number | null } {
    const row = this.db.get<{ pending: number; rejected: number; oldest: number | null }>(
      `SELECT COALESCE(SUM(state = 'pending'), 0) AS pending, COALESCE(SUM(state = 'rejected'), 0) AS rejected, MIN(created_at) AS oldest
       FROM outbox WHERE state IN ('pending', 'rejected')`,
    )!;
    return { pending: row.pending, rejected: row.rejected, oldestCreatedAt: row.oldest };
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

  /** Oldest first (created_at, then message_id); `page`: only entries after `after` in that order, at most `limit`. */
  listOutbox(state?: OutboxEntry["state"], page: OutboxPage = {}): OutboxEntry[] {
    const where: string[] = [];
    const params: SqlValue[] = [];
    if (state) where.push("state = ?"), params.push(state);
    if (page.after) where.push("(created_at, message_id) > (?, ?)"), params.push(page.after.createdAt, page.after.messageId);
    params.push(page.limit ?? -1);
    const clause = where.length ? `WHERE ${where.join(" AND ")}` : "";
    return this.db.all<OutboxEntry>(`SELECT * FROM outbox ${clause} ORDER BY created_at, message_id LIMIT ?`, params);
  }

  /**
   * `flashlex outbox retry`: makes `pending` and `rejected` entries pending and due at `now`
   * (their attempts and last error are kept), to be sent as the thing `thingId`: a row an earlier
   * identity of the data directory queued (set aside, outbox.ts sendableEntry) goes as this one
   * when its owner asks. A `sent` entry is left alone: the receiver has it.
   */
  retryOutbox(ids: readonly string[], now: number, thingId: string): OutboxChange {
    return this.db.transaction(() => {
      const change: OutboxChange = { changed: [], missing: [], sent: [] };
      for (const id of ids) {
        const row = this.getOutbox(id);
        if (!row) change.missing.push(id);
        else if (row.state === "sent") change.sent.push(id);
        else {
          this.db.run("UPDATE outbox SET state = 'pending', next_attempt_at = ?, thing_id = ? WHERE message_id = ?", [now, thingId, id]);
          change.changed.push(id);
        }
      }
      return change;
    });
  }

  /**
   * `flashlex outbox resend`: every entry this thing (`thingId`) sent at or after `sentSince`
   * (Unix ms) becomes pending and due at `now`, oldest first, for a receiver that lost them (a
   * hub restored from a backup made before they came). Each goes again under its message id,
   * which a FlashLex hub stores once: one it still has is not stored twice. Entries without a
   * thing id (this directory's own, from before schema 5) go too, as the drainer sends them;
   * those of an earlier identity of the data directory are left alone. Gives the ids changed
   * (`missing` and `sent` empty).
   */
  resendOutbox(sentSince: number, now: number, thingId: string): OutboxChange {
    return this.db.transaction(() => {
      const chosen = "FROM outbox WHERE state = 'sent' AND (thing_id = ? OR thing_id IS NULL) AND sent_at >= ?";
      const changed = this.db.all<{ message_id: string }>(`SELECT message_id ${chosen} ORDER BY created_at, message_id`, [thingId, sentSince]);
      this.db.run(`UPDATE outbox SET state = 'pending', next_attempt_at = ? WHERE message_id IN (SELECT message_id ${chosen})`, [now, thingId, sentSince]);
      return { changed: changed.map((row) => row.message_id), missing: [], sent: [] };
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

  /**
   * Runs one write as a commit SQLite does not fsync (synchronous=NORMAL for it alone, FULL again
   * after): for what a delivery attempt came to. A power cut may undo it, and harmlessly: the
   * message is then pending again and goes again under its message id, which the receiver stores
   * once. The next durable commit's fsync (or a checkpoint) puts it on disk anyway. It saves
   * `collect` one of its two fsyncs, which on an SD card take milliseconds each, and an offline
   * thing's retries a write each.
   */
  private withoutFsync(write: () => void): void {
    this.db.exec("PRAGMA synchronous = NORMAL");
    try {
      write();
    } finally {
      this.db.exec("PRAGMA synchronous = FULL");
    }
  }

  /** Gives back the memory SQLite holds for this connection (its page cache), once a burst is over. */
  releaseMemory(): void {
    this.db.exec("PRAGMA shrink_memory");
  }

  markSent(messageId: string, at: number, response?: { status: number; body: string }): void {
    this.withoutFsync(() =>
      this.db.run(
        "UPDATE outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1, last_error = NULL, response_status = ?, response_body = ? WHERE message_id = ?",
        [at, response?.status ?? null, response?.body ?? null, messageId],
      ),
    );
  }

  /** The receiver refused the content for good (400, 409, 413, 415, 422): retrying cannot help. */
  markRejected(messageId: string, error: string, response: { status: number; body: string }): void {
    this.withoutFsync(() =>
      this.db.run(
        "UPDATE outbox SET state = 'rejected', attempts = attempts + 1, last_error = ?, response_status = ?, response_body = ? WHERE message_id = ?",
        [error, response.status, response.body, messageId],
      ),
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

  /**
   * At most `limit` of the rows waiting to be sent that another thing id queued (not `thingId`,
   * not NULL): the data directory's earlier identity (outbox.ts sendableEntry). Oldest first, their
   * ids only: such a backlog can be a revoked thing's whole outage.
   */
  pendingOfOtherThings(thingId: string, limit: number): Pick<OutboxEntry, "message_id" | "thing_id">[] {
    return this.db.all<Pick<OutboxEntry, "message_id" | "thing_id">>(
      "SELECT message_id, thing_id FROM outbox WHERE state = 'pending' AND thing_id IS NOT NULL AND thing_id <> ? ORDER BY created_at, message_id LIMIT ?",
      [thingId, limit],
    );
  }

  /** markUnsendable for several rows, in one transaction. */
  markAllUnsendable(rows: readonly { messageId: string; error: string }[]): void {
    this.db.transaction(() => {
      for (const row of rows) this.markUnsendable(row.messageId, row.error);
    });
  }

  /**
   * A delivery attempt failed for a reason that may pass (network, 5xx, 401): try again at
   * `nextAttemptAt`. With `waitingLimit` (offlinePublishQueueing's N), only while fewer than N
   * other messages wait, counting those whose first attempt is over (`attempts` > 0), not those
   * of collects still trying: the count and the change are one statement, so collects deciding
   * at once keep exactly N between them. Gives false, changing nothing, when N already wait.
   */
  markRetry(messageId: string, error: string, nextAttemptAt: number, waitingLimit?: number): boolean {
    let changes = 0;
    this.withoutFsync(() => {
      changes = this.db.run(
        `UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE message_id = ?${
          waitingLimit === undefined ? "" : " AND (SELECT COUNT(*) FROM outbox WHERE state = 'pending' AND attempts > 0 AND message_id <> ?) < ?"
        }`,
        waitingLimit === undefined ? [error, nextAttemptAt, messageId] : [error, nextAttemptAt, messageId, messageId, waitingLimit],
      ).changes;
    });
    return changes > 0;
  }

  /** How many messages wait for a retry: pending, their first attempt over (markRetry's count). */
  countWaiting(): number {
    return this.db.get<{ n: number }>("SELECT COUNT(*) AS n FROM outbox WHERE state = 'pending' AND attempts > 0")!.n;
  }

  /**
   * Makes every pending entry sent by `via` that waits for a later retry due at `now` (the
   * receiver is reachable again: the MQTT session reconnected, or the hub answered). Their
   * attempts and last error are kept. Returns how many entries it moved.
   */
  dueNowVia(via: OutboxVia, now: number): number {
    return this.db.run("UPDATE outbox SET next_attempt_at = ? WHERE state = 'pending' AND via = ? AND next_attempt_at > ?", [now, via, now]).changes;
  }

  /**
   * Makes the oldest pending entry sent by `via` that waits for a later retry due at `now`: one
   * row to try whether the receiver is back. Returns whether there was one.
   */
  dueNowFirst(via: OutboxVia, now: number): boolean {
    return (
      this.db.run(
        "UPDATE outbox SET next_attempt_at = ? WHERE message_id = (SELECT message_id FROM outbox WHERE state = 'pending' AND via = ? ORDER BY created_at, message_id LIMIT 1) AND next_attempt_at > ?",
        [now, via, now],
      ).changes > 0
    );
  }

  /** The receivers (`via`) with a pending row that failed before: a drainer starting treats them as resting. */
  viasRetried(): OutboxVia[] {
    return this.db.all<{ via: OutboxVia }>("SELECT DISTINCT via FROM outbox WHERE state = 'pending' AND attempts > 0").map((r) => r.via);
  }

  /** Makes a pending entry due now (another process asked for it). */
  wake(messageId: string, now: number): void {
    this.db.run("UPDATE outbox SET next_attempt_at = ? WHERE message_id = ? AND state = 'pending'", [now, messageId]);
  }
}
