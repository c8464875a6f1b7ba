import { chmodSync, closeSync, existsSync, openSync, statSync } from "node:fs";
import { ConfigError } from "../../shared/errors.ts";
import type { SqlDatabase } from "../../shared/sqlite/driver.ts";
import { applyPragmas, migrate } from "../../shared/sqlite/migrate.ts";
import { openSqlDatabase } from "../../shared/sqlite/open.ts";

/**
 * The hub's database: things, the messages they exchanged, operator tokens. Everything else in
 * the hub talks to the `HubStore` interface, which is asynchronous although SQLite is not, so
 * that a served database (the DESIGN's scale path) can replace this file without touching the
 * API or the broker glue.
 *
 * Thing times are Unix milliseconds. Message times follow the old cloud's export format:
 * `fltimestamp` in Unix seconds and `datecreated` as an ISO string without milliseconds.
 */
export const HUB_MIGRATIONS: readonly string[] = [
  `CREATE TABLE things (
     id             TEXT    PRIMARY KEY,
     name           TEXT    NOT NULL UNIQUE,
     short_name     TEXT    NOT NULL,
     public_key_pem TEXT    NOT NULL,
     cert_pem       TEXT    NOT NULL,
     cert_serial    TEXT    NOT NULL,
     created_at     INTEGER NOT NULL,
     verified_at    INTEGER,
     last_seen_at   INTEGER,
     revoked_at     INTEGER
   );
   CREATE INDEX things_revoked ON things (revoked_at);
   CREATE TABLE messages (
     flmessagespk TEXT    PRIMARY KEY,
     thing_id     TEXT    NOT NULL,
     messagetype  TEXT    NOT NULL CHECK (messagetype IN ('egress', 'ingress')),
     payload      TEXT    NOT NULL,
     fltimestamp  INTEGER NOT NULL,
     datecreated  TEXT    NOT NULL
   );
   CREATE INDEX messages_thing_time ON messages (thing_id, fltimestamp);
   CREATE TABLE tokens (
     hash       TEXT    PRIMARY KEY,
     kind       TEXT    NOT NULL CHECK (kind IN ('operator', 'cli')),
     created_at INTEGER NOT NULL,
     expires_at INTEGER
   );`,
  // Ingress delivery (the embedded broker resends what a thing has not acknowledged, even after
  // a hub restart). Ingress stored before this migration was never tracked: it is 'unknown', so
  // an upgrade does not resend a thing's whole history.
  `ALTER TABLE messages ADD COLUMN delivery TEXT CHECK (delivery IN ('pending', 'delivered', 'unknown'));
   ALTER TABLE messages ADD COLUMN delivered_at INTEGER;
   UPDATE messages SET delivery = 'unknown' WHERE messagetype = 'ingress';
   CREATE INDEX messages_pending ON messages (thing_id, fltimestamp) WHERE delivery = 'pending';`,
  // Signed self-update (src/hub/updates, docs/updates.md): the releases the hub stores, the
  // rollouts of one to many things in batches, and per thing what it runs and how its update goes.
  `CREATE TABLE releases (
     version   TEXT    PRIMARY KEY,
     manifest  TEXT    NOT NULL,
     signature TEXT    NOT NULL,
     added_at  INTEGER NOT NULL
   );
   CREATE TABLE rollouts (
     id           INTEGER PRIMARY KEY,
     version      TEXT    NOT NULL,
     batch_size   INTEGER NOT NULL,
     max_failures INTEGER NOT NULL,
     state        TEXT    NOT NULL CHECK (state IN ('running', 'stopped', 'done')),
     stop_reason  TEXT,
     created_at   INTEGER NOT NULL,
     finished_at  INTEGER
   );
   CREATE TABLE thing_updates (
     thing_id    TEXT PRIMARY KEY,
     version     TEXT,
     target      TEXT,
     seen_at     INTEGER,
     rollout_id  INTEGER,
     to_version  TEXT,
     batch       INTEGER,
     state       TEXT CHECK (state IN ('queued', 'pending', 'downloading', 'installed', 'healthy', 'rolled-back', 'failed', 'cancelled')),
     detail      TEXT,
     updated_at  INTEGER
   );
   CREATE INDEX thing_updates_rollout ON thing_updates (rollout_id, batch);`,
  // Enrolment and renewal (issue 15): enrolment tokens (only their hash is kept), each thing's
  // certificate expiry, the key that signed its last renewal (still accepted for its tokens until
  // the new key is used once) and an operator's request to renew now. cert_not_after of things
  // made before stays NULL; the presenters read it from the certificate then.
  `CREATE TABLE enrollment_tokens (
     id          TEXT    PRIMARY KEY,
     hash        TEXT    NOT NULL UNIQUE,
     name_prefix TEXT,
     max_uses    INTEGER NOT NULL CHECK (max_uses > 0),
     uses        INTEGER NOT NULL DEFAULT 0,
     created_at  INTEGER NOT NULL,
     expires_at  INTEGER NOT NULL,
     revoked_at  INTEGER
   );
   ALTER TABLE things ADD COLUMN cert_not_after INTEGER;
   ALTER TABLE things ADD COLUMN previous_public_key_pem TEXT;
   ALTER TABLE things ADD COLUMN renew_requested_at INTEGER;
   ALTER TABLE things ADD COLUMN enrolled_with TEXT;`,
  // Metrics (issue 16): the outbox a thing reported with its last update poll, for the hub's
  // /metrics (docs/metrics.md). outbox_oldest_at is on the hub's clock (the poll's time less the
  // age the thing reported), so a device's wrong clock does not skew it.
  `ALTER TABLE thing_updates ADD COLUMN outbox_depth INTEGER;
   ALTER TABLE thing_updates ADD COLUMN outbox_oldest_at INTEGER;`,
];

/**
 * A failure of the database itself (I/O, disk full, locked, corrupt), as opposed to anything
 * about the data a caller brought. Code that must tell the two apart (the MQTT egress path: only
 * a storage failure may withhold the PUBACK, so the thing sends again) wraps its store calls
 * with `fromStore`; `cause` is what the driver threw.
 */
export class StoreFailure extends Error {
  constructor(cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.name = "StoreFailure";
  }
}

/** Awaits a store call; whatever it rejects with comes back as a StoreFailure. */
export async function fromStore<T>(call: () => Promise<T> | T): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw err instanceof StoreFailure ? err : new StoreFailure(err);
  }
}

export interface ThingRecord {
  id: string;
  /** the full name: owner prefix, dash, typed name; MQTT client id and certificate CN */
  name: string;
  /** the name the owner typed */
  shortName: string;
  publicKeyPem: string;
  certPem: string;
  certSerial: string;
  createdAt: number;
  verifiedAt: number | null;
  lastSeenAt: number | null;
  revokedAt: number | null;
  /** Unix ms of the certificate's notAfter; null for a thing stored before the hub kept it (read it from certPem) */
  certNotAfter?: number | null;
  /** the key that signed the last renewal, still accepted for the thing's tokens until the new key is used once */
  previousPublicKeyPem?: string | null;
  /** Unix ms an operator asked for a renewal now (`hub thing rotate`); cleared by the renewal */
  renewRequestedAt?: number | null;
  /** the id of the enrolment token it enrolled with; null for a thing made by `hub thing create` */
  enrolledWith?: string | null;
}

/** An enrolment token as stored: its hash, never the token itself. */
export interface EnrolmentTokenRecord {
  /** a short public id for `hub enroll-token list|revoke` (not secret, not the token) */
  id: string;
  /** SHA-256 of the token, hex */
  hash: string;
  /** typed names enrolled with it must start with this */
  namePrefix: string | null;
  maxUses: number;
  uses: number;
  /** Unix ms */
  createdAt: number;
  expiresAt: number;
  revokedAt: number | null;
}

/** A thing's new certificate after a renewal. */
export interface CertificateUpdate {
  publicKeyPem: string;
  certPem: string;
  certSerial: string;
  certNotAfter: number;
  /** the key that authenticated the renewal: kept as the previous key */
  previousPublicKeyPem: string;
}

export type MessageType = "egress" | "ingress";

/**
 * What the hub knows about an ingress message reaching its thing (egress has none):
 * - `pending`: handed to the embedded broker, the thing has not acknowledged it yet; resent
 *   when the thing next subscribes after a hub start;
 * - `delivered`: the thing's PUBACK arrived (`deliveredAt`);
 * - `unknown`: an external broker took it (the hub never sees the thing's PUBACK), or it was
 *   stored before the hub tracked delivery.
 */
export type Delivery = "pending" | "delivered" | "unknown";

export interface MessageRecord {
  flmessagespk: string;
  thingId: string;
  messagetype: MessageType;
  /** the payload as JSON text */
  payload: string;
  /** Unix seconds */
  fltimestamp: number;
  /** ISO 8601, seconds precision, UTC (`2019-07-20T01:45:44Z`) */
  datecreated: string;
  /** ingress only; on insert an ingress message without one is `unknown`, egress is always null */
  delivery?: Delivery | null;
  /** Unix ms of the thing's PUBACK, when `delivery` is `delivered` */
  deliveredAt?: number | null;
}

export interface MessageQuery {
  /** Unix seconds, inclusive */
  startts?: number;
  /** Unix seconds, inclusive */
  endts?: number;
  messagetype?: MessageType;
}

/**
 * A position in a thing's messages for keyset pagination: messages are ordered by
 * (fltimestamp, seq), `seq` being the order of insertion (SQLite's rowid). Unlike OFFSET, a page
 * after a cursor costs the same however far in it is, and rows inserted or deleted meanwhile
 * neither repeat nor skip a message.
 */
export interface MessageCursor {
  fltimestamp: number;
  seq: number;
}

export interface MessagePageOptions {
  /** only messages strictly after this one */
  after?: MessageCursor;
  /** only messages at or before this one (a snapshot's end) */
  through?: MessageCursor;
  /** at most this many */
  limit: number;
}

export type TokenKind = "operator" | "cli";

/** A page of things: `nameContains` matches the full name, ASCII letters in any case. */
export interface ThingPageQuery {
  nameContains?: string;
  /** things to skip, oldest first */
  offset: number;
  /** at most this many */
  limit: number;
}

/** What the fleet-wide gauges of /metrics read from the database, in one cheap query (docs/metrics.md). */
export interface FleetCounts {
  /** every thing known, revoked ones included */
  things: number;
  /** things revoked */
  revoked: number;
  /** things not revoked that proved themselves once (ThingStatus `verified`) */
  verified: number;
  /** ingress messages stored and not yet acknowledged by their thing (`pending`) */
  pendingIngress: number;
}

/** How many messages of each type a thing has stored. */
export interface MessageCounts {
  egress: number;
  ingress: number;
}

/** Messages of one type stored in one hour: `hour` is the hour's start in Unix seconds. */
export interface HourlyCount {
  hour: number;
  messagetype: MessageType;
  count: number;
}

/** The newest messages, of one thing or of all, of one type or both. */
export interface LatestMessagesQuery {
  thingId?: string;
  messagetype?: MessageType;
  limit: number;
}

export interface HubStore {
  insertThing(thing: ThingRecord): Promise<void>;
  getThing(id: string): Promise<ThingRecord | undefined>;
  getThingByName(name: string): Promise<ThingRecord | undefined>;
  listThings(): Promise<ThingRecord[]>;
  /** sets verified_at (first time only) and last_seen_at */
  markVerified(id: string, at: number): Promise<void>;
  markSeen(id: string, at: number): Promise<void>;
  /** returns false when the thing is unknown or already revoked */
  revokeThing(id: string, at: number): Promise<boolean>;
  /** names of things revoked at or after `since` (ms), for kicking them off the broker */
  revokedSince(since: number): Promise<string[]>;
  /** deletes the thing and all its messages; false when unknown */
  deleteThing(id: string): Promise<boolean>;
  /** counts for the fleet-wide gauges of /metrics: things by state and pending ingress (two indexed counts) */
  fleetCounts(): Promise<FleetCounts>;
  /** one page of things (oldest first, as `listThings`) and how many match in all */
  thingPage(query: ThingPageQuery): Promise<{ total: number; things: ThingRecord[] }>;

  /**
   * Stores a message once: when `flmessagespk` is already stored, nothing changes and the stored
   * row comes back with `inserted: false` (a retry of an acknowledged message).
   */
  insertMessage(message: MessageRecord): Promise<{ inserted: boolean; message: MessageRecord }>;
  /**
   * Several messages in one transaction (one fsync; the group commits of src/shared/group-commit.ts),
   * each stored once as `insertMessage` does. With `seenAt` (Unix ms; egress) the message's thing
   * is also marked verified and seen, unless the id was already another thing's (the stored row
   * comes back; the caller refuses it). One result per item, in order.
   */
  insertMessages(items: { message: MessageRecord; seenAt?: number }[]): Promise<{ inserted: boolean; message: MessageRecord }[]>;
  deleteMessage(flmessagespk: string): Promise<void>;
  queryMessages(thingId: string, query: MessageQuery): Promise<MessageRecord[]>;
  deleteMessages(thingId: string, query: MessageQuery): Promise<number>;
  /** one page of the thing's messages matching `query`, in (fltimestamp, seq) order, each with its cursor */
  messagePage(thingId: string, query: MessageQuery, page: MessagePageOptions): Promise<{ message: MessageRecord; cursor: MessageCursor }[]>;
  /** how many messages match `query`, and the cursor of the last (undefined when none) */
  messageRange(thingId: string, query: MessageQuery): Promise<{ count: number; last: MessageCursor | undefined }>;
  /** per thing id of `thingIds`, its stored messages by type (a thing without any is absent) */
  messageCounts(thingIds: readonly string[]): Promise<Map<string, MessageCounts>>;
  /** the thing's messages stored at or after `since` (Unix seconds), counted per hour and type */
  hourlyMessageCounts(thingId: string, since: number): Promise<HourlyCount[]>;
  /** the newest messages matching `query`, newest (last stored) first */
  latestMessages(query: LatestMessagesQuery): Promise<MessageRecord[]>;
  /** the thing's `pending` ingress messages, oldest first */
  pendingIngress(thingId: string): Promise<MessageRecord[]>;
  /** pending → delivered at `at` (Unix ms), several in one transaction; per item false when the message is gone or was not pending */
  markDelivered(items: { flmessagespk: string; at: number }[]): Promise<boolean[]>;

  addEnrolmentToken(token: EnrolmentTokenRecord): Promise<void>;
  listEnrolmentTokens(): Promise<EnrolmentTokenRecord[]>;
  enrolmentTokenByHash(hash: string): Promise<EnrolmentTokenRecord | undefined>;
  /** sets revoked_at; false when unknown or already revoked */
  revokeEnrolmentToken(id: string, at: number): Promise<boolean>;
  /**
   * One transaction: uses the token once (only while it is unrevoked, unexpired at `at` and has
   * uses left) and inserts the thing. False, and nothing changed, when the token could not be
   * used; throws (nothing changed) when the insert fails (a name taken meanwhile).
   */
  enrolThing(thing: ThingRecord, tokenHash: string, at: number): Promise<boolean>;
  /** stores a renewed certificate and key, keeps the authenticating key as previous, clears a renewal request */
  replaceCertificate(id: string, update: CertificateUpdate): Promise<void>;
  /** forgets the previous key (the thing used its new key) */
  forgetPreviousKey(id: string): Promise<void>;
  /** asks for a renewal at the thing's next check; false when unknown or revoked */
  requestRenewal(id: string, at: number): Promise<boolean>;

  addToken(hash: string, kind: TokenKind, createdAt: number, expiresAt: number | null): Promise<void>;
  /** hashes of the tokens valid at `now` (a read only: it runs on every operator request) */
  activeTokenHashes(now: number): Promise<string[]>;
  deleteTokens(kind: TokenKind): Promise<number>;
  deleteToken(hash: string): Promise<void>;

  close(): Promise<void>;
}

interface ThingRow {
  id: string;
  name: string;
  short_name: string;
  public_key_pem: string;
  cert_pem: string;
  cert_serial: string;
  created_at: number;
  verified_at: number | null;
  last_seen_at: number | null;
  revoked_at: number | null;
  cert_not_after: number | null;
  previous_public_key_pem: string | null;
  renew_requested_at: number | null;
  enrolled_with: string | null;
}

interface EnrolmentTokenRow {
  id: string;
  hash: string;
  name_prefix: string | null;
  max_uses: number;
  uses: number;
  created_at: number;
  expires_at: number;
  revoked_at: number | null;
}

const toEnrolmentToken = (r: EnrolmentTokenRow): EnrolmentTokenRecord => ({
  id: r.id,
  hash: r.hash,
  namePrefix: r.name_prefix,
  maxUses: r.max_uses,
  uses: r.uses,
  createdAt: r.created_at,
  expiresAt: r.expires_at,
  revokedAt: r.revoked_at,
});

interface MessageRow {
  flmessagespk: string;
  thing_id: string;
  messagetype: MessageType;
  payload: string;
  fltimestamp: number;
  datecreated: string;
  delivery: Delivery | null;
  delivered_at: number | null;
}

const toThing = (r: ThingRow): ThingRecord => ({
  id: r.id,
  name: r.name,
  shortName: r.short_name,
  publicKeyPem: r.public_key_pem,
  certPem: r.cert_pem,
  certSerial: r.cert_serial,
  createdAt: r.created_at,
  verifiedAt: r.verified_at,
  lastSeenAt: r.last_seen_at,
  revokedAt: r.revoked_at,
  certNotAfter: r.cert_not_after,
  previousPublicKeyPem: r.previous_public_key_pem,
  renewRequestedAt: r.renew_requested_at,
  enrolledWith: r.enrolled_with,
});

const toMessage = (r: MessageRow): MessageRecord => ({
  flmessagespk: r.flmessagespk,
  thingId: r.thing_id,
  messagetype: r.messagetype,
  payload: r.payload,
  fltimestamp: r.fltimestamp,
  datecreated: r.datecreated,
  delivery: r.delivery,
  deliveredAt: r.delivered_at,
});

/** WHERE clause for a thing's messages in a time range and of one type. */
function messageFilter(thingId: string, q: MessageQuery): { where: string; params: (string | number)[] } {
  const clauses = ["thing_id = ?"];
  const params: (string | number)[] = [thingId];
  if (q.startts !== undefined) clauses.push("fltimestamp >= ?"), params.push(q.startts);
  if (q.endts !== undefined) clauses.push("fltimestamp <= ?"), params.push(q.endts);
  if (q.messagetype !== undefined) clauses.push("messagetype = ?"), params.push(q.messagetype);
  return { where: clauses.join(" AND "), params };
}

/**
 * The SQLite store has one synchronous extra: the embedded broker's directory is asked on every
 * connect and publish from inside aedes callbacks that expect an answer at once. A served
 * database would feed the directory from a cache instead.
 */
export interface SqliteHubStore extends HubStore {
  thingByNameSync(name: string): ThingRecord | undefined;
}

/**
 * What a damaged hub.db calls for. Not "move it aside": a hub without its database has no things
 * and refuses its own operator token (only the token's hash is kept, in here).
 */
export const HUB_DB_DAMAGED_ADVICE =
  'stop the hub and restore hub.db from your backup of the hub home (docs/hub.md, "Backups"); do not move it aside: the things and the operator token live in it';

/** ConfigError (78) for a hub home whose hub.db is not there: restore it, or start a new hub elsewhere. */
export function hubDatabaseMissing(file: string): ConfigError {
  return new ConfigError(
    `${file}: the hub database is missing (the things and the operator token live in it); restore it from your backup of the hub home (docs/hub.md, "Backups"), or run \`flashlex hub init --dir <a new directory>\` to start a new hub`,
  );
}

/**
 * Opens (migrating as needed) the hub database file, owner-only (0600) whatever the umask: it
 * holds every thing's messages and public keys. SQLite gives the `-wal` and `-shm` files it
 * creates the main file's mode, so the main file is made 0600 before SQLite opens it, and files
 * an older version left wider are narrowed here. Only `hub init` passes `create`: for any other
 * command a missing hub.db is lost data, not a new hub (home.ts `openHubHome` says so first).
 * Throws what the file system or SQLite throws (a file the caller may not chmod: EPERM; a missing
 * file without `create`: io), a damaged file with HUB_DB_DAMAGED_ADVICE.
 */
export function openHubStore(file: string, options: { create?: boolean } = {}): SqliteHubStore {
  const create = options.create ?? false;
  if (!create && !existsSync(file)) throw hubDatabaseMissing(file);
  ownerOnlyDatabase(file, create);
  const db = openSqlDatabase(file, { create, damagedAdvice: HUB_DB_DAMAGED_ADVICE });
  try {
    applyPragmas(db);
    migrate(db, HUB_MIGRATIONS, file);
    // A driver that makes its journal itself (the WebAssembly one) may not copy the mode.
    ownerOnlyDatabase(file, false);
  } catch (err) {
    db.close();
    throw err;
  }
  return sqliteHubStore(db);
}

const DATABASE_SIDE_FILES = ["-wal", "-shm", "-journal"];

/**
 * With `create`, creates `file` empty with mode 0600 if absent (an empty file is an empty SQLite
 * database); narrows it and its side files to 0600.
 */
function ownerOnlyDatabase(file: string, create: boolean): void {
  if (create) closeSync(openSync(file, "a", 0o600));
  for (const path of [file, ...DATABASE_SIDE_FILES.map((suffix) => file + suffix)]) {
    let mode: number;
    try {
      mode = statSync(path).mode & 0o777;
    } catch {
      continue; // no such side file
    }
    if (mode !== 0o600) chmodSync(path, 0o600);
  }
}

export function sqliteHubStore(db: SqlDatabase): SqliteHubStore {
  const thingBy = (column: "id" | "name", value: string) => {
    const row = db.get<ThingRow>(`SELECT * FROM things WHERE ${column} = ?`, [value]);
    return row ? toThing(row) : undefined;
  };
  const getMessage = (id: string) => {
    const row = db.get<MessageRow>("SELECT * FROM messages WHERE flmessagespk = ?", [id]);
    return row ? toMessage(row) : undefined;
  };
  const markVerified = (id: string, at: number) => {
    db.run("UPDATE things SET verified_at = COALESCE(verified_at, ?), last_seen_at = MAX(COALESCE(last_seen_at, 0), ?) WHERE id = ?", [at, at, id]);
  };
  /** Inside a transaction: stores `m` unless its id is stored, and gives the stored row either way. */
  const insertOnce = (m: MessageRecord): { inserted: boolean; message: MessageRecord } => {
    const delivery = m.messagetype === "ingress" ? (m.delivery ?? "unknown") : null;
    const deliveredAt = delivery === "delivered" ? (m.deliveredAt ?? null) : null;
    const { changes } = db.run(
      `INSERT OR IGNORE INTO messages (flmessagespk, thing_id, messagetype, payload, fltimestamp, datecreated, delivery, delivered_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      [m.flmessagespk, m.thingId, m.messagetype, m.payload, m.fltimestamp, m.datecreated, delivery, deliveredAt],
    );
    return { inserted: changes > 0, message: changes > 0 ? { ...m, delivery, deliveredAt } : getMessage(m.flmessagespk)! };
  };

  const insertThing = (t: ThingRecord) => {
    db.run(
      `INSERT INTO things (id, name, short_name, public_key_pem, cert_pem, cert_serial, created_at, verified_at, last_seen_at, revoked_at, cert_not_after, enrolled_with)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [
        t.id,
        t.name,
        t.shortName,
        t.publicKeyPem,
        t.certPem,
        t.certSerial,
        t.createdAt,
        t.verifiedAt,
        t.lastSeenAt,
        t.revokedAt,
        t.certNotAfter ?? null,
        t.enrolledWith ?? null,
      ],
    );
  };

  return {
    thingByNameSync: (name) => thingBy("name", name),
    async insertThing(t) {
      insertThing(t);
    },
    getThing: async (id) => thingBy("id", id),
    getThingByName: async (name) => thingBy("name", name),
    listThings: async () => db.all<ThingRow>("SELECT * FROM things ORDER BY created_at, name").map(toThing),
    async markVerified(id, at) {
      markVerified(id, at);
    },
    async markSeen(id, at) {
      db.run("UPDATE things SET last_seen_at = MAX(COALESCE(last_seen_at, 0), ?) WHERE id = ?", [at, id]);
    },
    async revokeThing(id, at) {
      return db.run("UPDATE things SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", [at, id]).changes > 0;
    },
    async revokedSince(since) {
      return db.all<{ name: string }>("SELECT name FROM things WHERE revoked_at >= ?", [since]).map((r) => r.name);
    },
    async fleetCounts() {
      const things = db.get<{ things: number; revoked: number; verified: number }>(
        `SELECT COUNT(*) AS things, COUNT(revoked_at) AS revoked,
                COALESCE(SUM(CASE WHEN revoked_at IS NULL AND verified_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS verified
         FROM things`,
      )!;
      // messages_pending is a partial index on exactly these rows: the count reads only them.
      const pending = db.get<{ n: number }>("SELECT COUNT(*) AS n FROM messages WHERE delivery = 'pending'")!;
      return { ...things, pendingIngress: pending.n };
    },
    async deleteThing(id) {
      return db.transaction(() => {
        db.run("DELETE FROM messages WHERE thing_id = ?", [id]);
        return db.run("DELETE FROM things WHERE id = ?", [id]).changes > 0;
      });
    },

    async thingPage(q) {
      // LIKE with its wildcards escaped: a typed `%` or `_` matches itself.
      const pattern = `%${(q.nameContains ?? "").replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      const where = "name LIKE ? ESCAPE '\\'";
      const total = db.get<{ n: number }>(`SELECT COUNT(*) AS n FROM things WHERE ${where}`, [pattern])!.n;
      const rows = db.all<ThingRow>(`SELECT * FROM things WHERE ${where} ORDER BY created_at, name LIMIT ? OFFSET ?`, [
        pattern,
        Math.max(0, Math.floor(q.limit)),
        Math.max(0, Math.floor(q.offset)),
      ]);
      return { total, things: rows.map(toThing) };
    },

    async insertMessage(m) {
      // INSERT OR IGNORE + read back in one transaction: a retried id returns what was stored first.
      return db.transaction(() => insertOnce(m));
    },
    async insertMessages(items) {
      return db.transaction(() =>
        items.map(({ message, seenAt }) => {
          const result = insertOnce(message);
          if (seenAt !== undefined && result.message.thingId === message.thingId) markVerified(message.thingId, seenAt);
          return result;
        }),
      );
    },
    async deleteMessage(id) {
      db.run("DELETE FROM messages WHERE flmessagespk = ?", [id]);
    },
    async queryMessages(thingId, q) {
      const { where, params } = messageFilter(thingId, q);
      return db.all<MessageRow>(`SELECT * FROM messages WHERE ${where} ORDER BY fltimestamp, rowid`, params).map(toMessage);
    },
    async messagePage(thingId, q, page) {
      const { where, params } = messageFilter(thingId, q);
      const clauses = [where];
      // Row values compare as tuples and still use the (thing_id, fltimestamp) index, whose
      // entries end with the rowid.
      if (page.after) clauses.push("(fltimestamp, rowid) > (?, ?)"), params.push(page.after.fltimestamp, page.after.seq);
      if (page.through) clauses.push("(fltimestamp, rowid) <= (?, ?)"), params.push(page.through.fltimestamp, page.through.seq);
      params.push(Math.max(1, Math.floor(page.limit)));
      return db
        .all<MessageRow & { seq: number }>(`SELECT rowid AS seq, * FROM messages WHERE ${clauses.join(" AND ")} ORDER BY fltimestamp, rowid LIMIT ?`, params)
        .map((row) => ({ message: toMessage(row), cursor: { fltimestamp: row.fltimestamp, seq: row.seq } }));
    },
    async messageRange(thingId, q) {
      const { where, params } = messageFilter(thingId, q);
      const count = db.get<{ n: number }>(`SELECT COUNT(*) AS n FROM messages WHERE ${where}`, params)!.n;
      const last = db.get<{ fltimestamp: number; seq: number }>(
        `SELECT fltimestamp, rowid AS seq FROM messages WHERE ${where} ORDER BY fltimestamp DESC, rowid DESC LIMIT 1`,
        params,
      );
      return { count, last: last ? { fltimestamp: last.fltimestamp, seq: last.seq } : undefined };
    },
    async deleteMessages(thingId, q) {
      const { where, params } = messageFilter(thingId, q);
      return db.run(`DELETE FROM messages WHERE ${where}`, params).changes;
    },
    async messageCounts(thingIds) {
      const counts = new Map<string, MessageCounts>();
      if (thingIds.length === 0) return counts;
      const rows = db.all<{ thing_id: string; messagetype: MessageType; n: number }>(
        `SELECT thing_id, messagetype, COUNT(*) AS n FROM messages WHERE thing_id IN (${thingIds.map(() => "?").join(", ")}) GROUP BY thing_id, messagetype`,
        [...thingIds],
      );
      for (const row of rows) {
        const entry = counts.get(row.thing_id) ?? { egress: 0, ingress: 0 };
        entry[row.messagetype] = row.n;
        counts.set(row.thing_id, entry);
      }
      return counts;
    },
    async hourlyMessageCounts(thingId, since) {
      return db
        .all<{ hour: number; messagetype: MessageType; n: number }>(
          `SELECT (fltimestamp / 3600) * 3600 AS hour, messagetype, COUNT(*) AS n FROM messages
           WHERE thing_id = ? AND fltimestamp >= ? GROUP BY hour, messagetype ORDER BY hour`,
          [thingId, since],
        )
        .map((r) => ({ hour: r.hour, messagetype: r.messagetype, count: r.n }));
    },
    async latestMessages(q) {
      const clauses: string[] = [];
      const params: (string | number)[] = [];
      if (q.thingId !== undefined) clauses.push("thing_id = ?"), params.push(q.thingId);
      if (q.messagetype !== undefined) clauses.push("messagetype = ?"), params.push(q.messagetype);
      params.push(Math.max(1, Math.floor(q.limit)));
      const where = clauses.length ? `WHERE ${clauses.join(" AND ")}` : "";
      // rowid is the order of insertion: the last stored first, whatever a sender's clock said.
      return db.all<MessageRow>(`SELECT * FROM messages ${where} ORDER BY rowid DESC LIMIT ?`, params).map(toMessage);
    },
    async pendingIngress(thingId) {
      return db.all<MessageRow>("SELECT * FROM messages WHERE thing_id = ? AND delivery = 'pending' ORDER BY fltimestamp, rowid", [thingId]).map(toMessage);
    },
    async markDelivered(items) {
      return db.transaction(() =>
        items.map(
          ({ flmessagespk, at }) =>
            db.run("UPDATE messages SET delivery = 'delivered', delivered_at = ? WHERE flmessagespk = ? AND delivery = 'pending'", [at, flmessagespk]).changes >
            0,
        ),
      );
    },

    async addEnrolmentToken(t) {
      db.run(
        `INSERT INTO enrollment_tokens (id, hash, name_prefix, max_uses, uses, created_at, expires_at, revoked_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
        [t.id, t.hash, t.namePrefix, t.maxUses, t.uses, t.createdAt, t.expiresAt, t.revokedAt],
      );
    },
    listEnrolmentTokens: async () => db.all<EnrolmentTokenRow>("SELECT * FROM enrollment_tokens ORDER BY created_at, id").map(toEnrolmentToken),
    async enrolmentTokenByHash(hash) {
      const row = db.get<EnrolmentTokenRow>("SELECT * FROM enrollment_tokens WHERE hash = ?", [hash]);
      return row ? toEnrolmentToken(row) : undefined;
    },
    async revokeEnrolmentToken(id, at) {
      return db.run("UPDATE enrollment_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", [at, id]).changes > 0;
    },
    async enrolThing(thing, tokenHash, at) {
      return db.transaction(() => {
        // The conditions are checked again inside the transaction: two devices racing for the
        // last use of a token cannot both pass.
        const used = db.run("UPDATE enrollment_tokens SET uses = uses + 1 WHERE hash = ? AND revoked_at IS NULL AND expires_at > ? AND uses < max_uses", [
          tokenHash,
          at,
        ]).changes;
        if (used === 0) return false;
        insertThing(thing);
        return true;
      });
    },
    async replaceCertificate(id, u) {
      db.run(
        `UPDATE things SET public_key_pem = ?, cert_pem = ?, cert_serial = ?, cert_not_after = ?, previous_public_key_pem = ?, renew_requested_at = NULL
         WHERE id = ?`,
        [u.publicKeyPem, u.certPem, u.certSerial, u.certNotAfter, u.previousPublicKeyPem, id],
      );
    },
    async forgetPreviousKey(id) {
      db.run("UPDATE things SET previous_public_key_pem = NULL WHERE id = ?", [id]);
    },
    async requestRenewal(id, at) {
      return db.run("UPDATE things SET renew_requested_at = ? WHERE id = ? AND revoked_at IS NULL", [at, id]).changes > 0;
    },

    async addToken(hash, kind, createdAt, expiresAt) {
      db.transaction(() => {
        // Expired CLI tokens (a CLI killed before it could delete its own) are purged here.
        db.run("DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at <= ?", [createdAt]);
        db.run("INSERT INTO tokens (hash, kind, created_at, expires_at) VALUES (?, ?, ?, ?)", [hash, kind, createdAt, expiresAt]);
      });
    },
    async activeTokenHashes(now) {
      return db.all<{ hash: string }>("SELECT hash FROM tokens WHERE expires_at IS NULL OR expires_at > ?", [now]).map((r) => r.hash);
    },
    async deleteTokens(kind) {
      return db.run("DELETE FROM tokens WHERE kind = ?", [kind]).changes;
    },
    async deleteToken(hash) {
      db.run("DELETE FROM tokens WHERE hash = ?", [hash]);
    },

    async close() {
      db.close();
    },
  };
}
