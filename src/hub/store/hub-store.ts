/**
 * The hub's database as the rest of the hub sees it: things, the messages they exchanged,
 * enrolment and operator tokens, and the update tables. Everything in the hub talks to the
 * `HubStore` interface; two drivers implement it over one SQL implementation (sql-hub-store.ts):
 * SQLite, one file in the hub home (the default, sqlite-driver.ts), and PostgreSQL, a served
 * database several hubs can share (postgres-driver.ts). open-store.ts picks one by the database
 * setting (docs/scaling.md, "Storage"). This module holds the interface and its records only.
 *
 * Thing times are Unix milliseconds. Message times follow the old cloud's export format:
 * `fltimestamp` in Unix seconds and `datecreated` as an ISO string without milliseconds. Both
 * drivers give every integer back as a number, exactly (PostgreSQL's BIGINT included).
 */
import { FlashlexError } from "../../shared/errors.ts";
import { sqliteCodeOf, toFlashlexError } from "../../shared/foreign-errors.ts";
import type { UpdateTables } from "./update-tables.ts";

export type { UpdateTables } from "./update-tables.ts";

/**
 * A failure of the database itself (I/O, disk full, locked, corrupt), as opposed to anything
 * about the data a caller brought. Code that must tell the two apart (the MQTT egress path: only
 * a storage failure may withhold the PUBACK, so the thing sends again) wraps its store calls
 * with `fromStore`; `cause` is what the driver threw.
 *
 * It is a FlashlexError of the kind of what it wraps (the driver's `unavailable`, SQLite's
 * `try-later` or `full`, ...), so every edge that maps kinds (HTTP status, exit code, metrics'
 * errors_total, the broker's auth answers) treats a failing database the same way. It once was a
 * plain Error: the collect route, the one route that wraps its store calls, answered a stopped
 * PostgreSQL with 500 `bug` while every other route answered 503 `unavailable`.
 */
export class StoreFailure extends FlashlexError {
  constructor(cause: unknown) {
    const known = toFlashlexError(cause);
    super(known.message, known.kind, { cause, clientSafe: known.clientSafe });
    this.name = "StoreFailure";
  }
}

/**
 * True when `err`, or an error it wraps (`cause`), is the database refusing a second thing with
 * one name: SQLite's SQLITE_CONSTRAINT_UNIQUE on `things.name`, PostgreSQL's SQLSTATE 23505 on
 * `things_name_key`, raised by the hub's own statement (not inside a routine: a trigger someone
 * added that trips over a key of its own is the database's refusal). By the code and the
 * constraint, never by the message's words: a lock timeout on a database named "unique_hub", or a
 * trigger whose RAISE said "unique", read as "a thing with that name exists" (65 / 409).
 */
export function isThingNameTaken(err: unknown): boolean {
  for (let e = err; e !== null && typeof e === "object"; e = (e as { cause?: unknown }).cause) {
    const found = e as { message?: unknown; errno?: unknown; constraint?: unknown; where?: unknown };
    if (sqliteCodeOf(e) === "SQLITE_CONSTRAINT_UNIQUE") return found.message === "UNIQUE constraint failed: things.name";
    if (found.errno === "23505") return found.constraint === "things_name_key" && !found.where;
  }
  return false;
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
  /** the serial (hex) and notAfter (Unix ms) of the certificate of that previous key; null when none, or kept before the hub kept them */
  previousCertSerial?: string | null;
  previousCertNotAfter?: number | null;
  /** Unix ms an operator asked for a renewal now (`hub thing rotate`); cleared by the renewal */
  renewRequestedAt?: number | null;
  /** the id of the enrolment token it enrolled with; null for a thing made by `hub thing create` */
  enrolledWith?: string | null;
}

/**
 * What sending to a thing needs of it (Messages.send, sendToMany): a fan-out reads this for up to
 * MAX_FAN_OUT_THINGS things, not their certificates and keys (~3 KB a thing).
 */
export type ThingTarget = Pick<ThingRecord, "id" | "name" | "revokedAt">;

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

/** A one-time download token for a thing's distribution zip, as stored: its hash, never the token. */
export interface DownloadTokenRecord {
  /** SHA-256 of the token, hex */
  hash: string;
  thingId: string;
  /** Unix ms */
  createdAt: number;
  expiresAt: number;
}

/** A thing's new certificate after a renewal. */
export interface CertificateUpdate {
  publicKeyPem: string;
  certPem: string;
  certSerial: string;
  certNotAfter: number;
  /** the key that authenticated the renewal: kept as the previous key, with its certificate's serial and notAfter (Unix ms) */
  previousPublicKeyPem: string;
  previousCertSerial: string | null;
  previousCertNotAfter: number | null;
  /** certificates the hub stops accepting with this renewal (listed in the CRL, reason superseded) */
  superseded: { serial: string; notAfter: number }[];
  /** Unix ms of the renewal */
  at: number;
  /**
   * The thing as the renewal read it: its current key and certificate serial. The update is made
   * only while the thing is still so, and not revoked: a delete, a revoke or another renewal that
   * came first wins.
   */
  expected: { publicKeyPem: string; certSerial: string | null };
  /**
   * When the thing is no longer as expected, whether the new certificate (certSerial) is listed
   * as superseded: a renewal's just-issued certificate is ("supersede"), so that it works
   * nowhere; a certificate a device presented for adoption is left as it is ("keep").
   */
  onConflict: "supersede" | "keep";
}

/** A certificate the hub no longer accepts because a renewal replaced it (RFC 5280 §5.3.1 reason superseded). */
export interface SupersededCertificate {
  serial: string;
  thingId: string;
  /** Unix ms: the certificate's own notAfter; the CRL lists it until a day after */
  notAfter: number;
  /** Unix ms: when the hub stopped accepting it */
  supersededAt: number;
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

/** What storing a message did: stored now, found stored already (`inserted: false`), or not stored because its thing is gone (`message` undefined). */
export type MessageInsert = { inserted: boolean; message: MessageRecord } | { inserted: false; message: undefined };

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
  /** the earliest notAfter (Unix ms) of the certificates of things not revoked; null when there is none */
  earliestCertificateEnd: number | null;
  /** the database's size in bytes (SQLite: its pages, the WAL aside; PostgreSQL: pg_database_size) */
  databaseBytes: number;
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

/**
 * A console sign-in as stored (console/sessions.ts): the SHA-256 of its id, never the id, and
 * the operator token sealed under a key derived from the id, never the token in clear.
 */
export interface ConsoleSessionRecord {
  /** SHA-256 of the session id (the browser's cookie), hex */
  idHash: string;
  /** the operator token, sealed (AES-256-GCM, console/sessions.ts) */
  tokenBox: string;
  /** Unix ms */
  createdAt: number;
  /** Unix ms of the last request (written at most once a minute) */
  lastUsedAt: number;
}

/** A message with its place in the order of insertion and its thing's name (the live view of a served database). */
export interface StoredMessage {
  seq: number;
  message: MessageRecord;
  thingName: string;
}

/** Which hub a database belongs to: the owner (account) id and the hub CA's SHA-256 fingerprint. */
export interface HubIdentity {
  ownerId: string;
  caFingerprint: string;
}

/** True when `a` and `b` are one hub: the same owner and the same CA. */
export function sameHubIdentity(a: HubIdentity, b: HubIdentity): boolean {
  return a.ownerId === b.ownerId && a.caFingerprint === b.caFingerprint;
}

export interface HubStore {
  insertThing(thing: ThingRecord): Promise<void>;
  getThing(id: string): Promise<ThingRecord | undefined>;
  getThingByName(name: string): Promise<ThingRecord | undefined>;
  /**
   * A number that changes, once committed, whenever a thing is deleted or changed in anything but
   * when it was last seen (verified_at, last_seen_at), whoever changed it: this hub, a `hub thing`
   * command in another process, another hub on the same PostgreSQL (the table things_version and
   * its triggers, migration 9). A thing row read after this number is as new as it.
   */
  thingsVersion(): Promise<number>;
  /**
   * How many writes to things (all but verified_at and last_seen_at) this store has made in this
   * process, committed or failed: read synchronously, it tells a reader that keeps thing rows
   * (the collector reads thingsVersion once per turn of the event loop) to read it again after
   * a write of its own, which may come in the same turn.
   */
  localThingsWrites(): number;
  /** the things of `ids` (lower-case UUIDs) that exist, as targets to send to, in no particular order; unknown ids are left out */
  getThingTargets(ids: readonly string[]): Promise<ThingTarget[]>;
  listThings(): Promise<ThingRecord[]>;
  /** the revoked things, oldest first: one indexed read (things_revoked), not every thing's row, for the CRL and the broker's deny list */
  revokedThings(): Promise<ThingRecord[]>;
  /** every thing's id, in id order (for work done thing by thing, such as expiring messages) */
  thingIds(): Promise<string[]>;
  /** sets verified_at (first time only) and last_seen_at */
  markVerified(id: string, at: number): Promise<void>;
  /**
   * last_seen_at = `at` (Unix ms) for each thing, where it is later than what is stored, and
   * verified_at the first time: a thing the broker let in by its certificate, or that published
   * over it, was heard from (a thing that only receives never sends a test or collect message,
   * and stayed "created" for ever, which the offline alert could not count). Several
   * in one transaction that is not durable: "last seen" is informational, and a power cut that
   * undoes it only makes a thing look seen a little earlier (no fsync per connecting thing).
   */
  markSeen(items: readonly { id: string; at: number }[]): Promise<void>;
  /** returns false when the thing is unknown or already revoked */
  revokeThing(id: string, at: number): Promise<boolean>;
  /** names of things revoked at or after `since` (ms), for kicking them off the broker */
  revokedSince(since: number): Promise<string[]>;
  /**
   * Deletes the thing and all its messages; false when unknown. In the same transaction
   * `retired.certificates` (the thing's own, current and previous) are listed as superseded at
   * `retired.at` (Unix ms): the CRLs go on refusing them once the row is gone, and a hub running
   * in another process learns of the deletion from `lastSupersededAt`.
   */
  deleteThing(id: string, retired?: { at: number; certificates: readonly { serial: string; notAfter: number }[] }): Promise<boolean>;
  /** counts for the fleet-wide gauges of /metrics: things by state and pending ingress (two indexed counts) */
  fleetCounts(): Promise<FleetCounts>;
  /** one page of things (oldest first, as `listThings`) and how many match in all */
  thingPage(query: ThingPageQuery): Promise<{ total: number; things: ThingRecord[] }>;

  /**
   * Stores a message once: when `flmessagespk` is already stored, nothing changes and the stored
   * row comes back with `inserted: false` (a retry of an acknowledged message). When its thing
   * is not (or no longer) there, nothing is stored and `message` is undefined: a message stored
   * for a thing is always deleted with it.
   */
  insertMessage(message: MessageRecord): Promise<MessageInsert>;
  /**
   * Several messages in one transaction (one fsync; the group commits of src/shared/group-commit.ts),
   * each stored once as `insertMessage` does. With `seenAt` (Unix ms; egress) the message's thing
   * is also marked verified and seen, unless the id was already another thing's (the stored row
   * comes back; the caller refuses it). One result per item, in order; a message whose thing is
   * gone (deleted while the caller held its record) is not stored, as `insertMessage` says.
   */
  insertMessages(items: { message: MessageRecord; seenAt?: number }[]): Promise<MessageInsert[]>;
  deleteMessage(flmessagespk: string): Promise<void>;
  deleteMessages(thingId: string, query: MessageQuery): Promise<number>;
  /**
   * Looks at the next `limit` of the thing's messages stored before `olderThan` (Unix seconds,
   * fltimestamp), oldest first and strictly after `after`, deletes those of them that may go and
   * returns how many went, and where to go on from (`next`; undefined when fewer than `limit`
   * were left to look at). Ingress still `pending` (its thing has not acknowledged it) is kept: it
   * goes once delivered. Each call reads at most `limit` rows, however many pending ones lie
   * before the rest (a scan for `limit` deletable rows read every old pending row of the thing in
   * one statement). The retention sweep (messages/retention.ts).
   */
  expireMessages(thingId: string, olderThan: number, limit: number, after?: MessageCursor): Promise<{ deleted: number; next: MessageCursor | undefined }>;
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

  /** stores a download token, and forgets those that expired before `forgetBefore` (Unix ms) */
  addDownloadToken(token: DownloadTokenRecord, forgetBefore: number): Promise<void>;
  /** whether the token of `hash` is for `thingId`, unused and unexpired at `at` (Unix ms) */
  downloadTokenUsable(hash: string, thingId: string, at: number): Promise<boolean>;
  /** uses the token up at `at` if it is usable then; false, and nothing changed, if not (two requests racing: one wins) */
  useDownloadToken(hash: string, thingId: string, at: number): Promise<boolean>;

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
  /**
   * One transaction: stores a renewed certificate and key, keeps the authenticating key as
   * previous, clears a renewal request, lists `superseded`; only while the thing is as
   * `update.expected` says and not revoked. True when it was replaced; false when not (the new
   * certificate listed as superseded when `onConflict` says so).
   */
  replaceCertificate(id: string, update: CertificateUpdate): Promise<boolean>;
  /**
   * One transaction: forgets the previous key (the thing used its new key) and lists its
   * certificate as superseded at `at` (Unix ms). False when there was no previous key.
   */
  forgetPreviousKey(id: string, at: number): Promise<boolean>;
  /** superseded certificates whose notAfter is after `expiredAfter` (Unix ms), oldest first */
  supersededCertificates(expiredAfter: number): Promise<SupersededCertificate[]>;
  /** whether the certificate with this serial (upper-case hex) was superseded by a renewal */
  certificateSuperseded(serial: string): Promise<boolean>;
  /** forgets superseded certificates whose notAfter is at or before `expiredBefore` (Unix ms); how many */
  pruneSupersededCertificates(expiredBefore: number): Promise<number>;
  /** Unix ms of the newest superseded certificate; 0 when none (other hubs' CRL refresh polls this) */
  lastSupersededAt(): Promise<number>;
  /** asks for a renewal at the thing's next check; false when unknown or revoked */
  requestRenewal(id: string, at: number): Promise<boolean>;

  addToken(hash: string, kind: TokenKind, createdAt: number, expiresAt: number | null): Promise<void>;
  /**
   * One transaction, an operator token rotation: the operator token becomes `hash` (made at
   * `createdAt`, Unix ms), and the other operator tokens, every console session and every
   * download token (all made with the old token, which may have leaked) are deleted; expired CLI
   * tokens are purged, as by addToken. When it throws, nothing changed: the old token still works.
   */
  replaceOperatorToken(hash: string, createdAt: number): Promise<void>;
  /** hashes of the tokens valid at `now` (a read only: it runs on every operator request) */
  activeTokenHashes(now: number): Promise<string[]>;
  deleteToken(hash: string): Promise<void>;

  /** messages stored after insertion position `seq`, in that order, at most `limit` (the live view of a served database, console/fleet-feed.ts) */
  messagesAfter(seq: number, limit: number): Promise<StoredMessage[]>;
  /** the newest insertion position; 0 when no message is stored */
  lastMessageSeq(): Promise<number>;

  /**
   * One transaction: forgets sessions unused since `keep.usedSince` or made before
   * `keep.createdSince` (Unix ms), then the least recently used until fewer than `keep.max` are
   * left, then stores `session`.
   */
  addConsoleSession(session: ConsoleSessionRecord, keep: { usedSince: number; createdSince: number; max: number }): Promise<void>;
  consoleSession(idHash: string): Promise<ConsoleSessionRecord | undefined>;
  /** sets last_used_at (only forward) */
  touchConsoleSession(idHash: string, at: number): Promise<void>;
  deleteConsoleSession(idHash: string): Promise<void>;

  /**
   * True for the first caller, fleet-wide, that claims `key` (several hubs handle the same MQTT
   * message: the one whose claim wins does what must happen once); false for every later one.
   * Claims older than `forgetBefore` (Unix ms) are forgotten on the way.
   */
  claimOnce(key: string, at: number, forgetBefore: number): Promise<boolean>;

  /**
   * The hub the database belongs to: records `identity` (at `at`, Unix ms) when none is recorded
   * yet, and gives what is recorded either way (home/identity.ts compares).
   */
  adoptHubIdentity(identity: HubIdentity, at: number): Promise<HubIdentity>;

  /** The update public key (`ed25519:<base64>`) recorded for this hub, or undefined before its first use. */
  updateKey(): Promise<string | undefined>;
  /** Records `publicKey` (at `at`, Unix ms) as the hub's update key when none is recorded yet; gives what is recorded either way. */
  adoptUpdateKey(publicKey: string, at: number): Promise<string>;

  /**
   * `hub init`'s claim, in one transaction: as adoptHubIdentity, and when the identity recorded
   * is `identity`, the operator token's hash too (no expiry). A failure leaves neither, so an
   * init that stopped half way leaves a database the next init may take over.
   */
  claimForNewHub(identity: HubIdentity, operatorTokenHash: string, at: number): Promise<HubIdentity>;

  /**
   * Undoes claimForNewHub, in one transaction, for a `hub init` that failed after it (its home is
   * gone): the operator token goes, and the claim when `identity` is the one recorded (another
   * hub's is left alone). The next init may then take the database over.
   */
  releaseNewHubClaim(identity: HubIdentity, operatorTokenHash: string): Promise<void>;

  /** the update feature's tables (releases, rollouts, what each thing runs): update-tables.ts */
  readonly updates: UpdateTables;

  /** which driver answers: for logs and error messages */
  readonly driver: "sqlite" | "postgres";

  close(): Promise<void>;
}
