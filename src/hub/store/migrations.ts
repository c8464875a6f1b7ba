/**
 * The hub database's migrations, one list, each step in both dialects. Step N brings the schema
 * from version N-1 to N; a step is never edited once released (a database made by it would no
 * longer match), only new steps are added, to both dialects at once.
 *
 * - SQLite keeps its version in `PRAGMA user_version` and checks the tables and columns against
 *   what the steps make (src/shared/sqlite/migrate.ts), as hub.db files always have.
 * - PostgreSQL keeps it in the table `schema_version` (one row per applied step), and applies
 *   steps under an advisory lock, so hubs starting together migrate once (postgres-driver.ts).
 *
 * The dialects differ in types only where they must: integers that hold Unix milliseconds are
 * BIGINT in PostgreSQL (SQLite's INTEGER is 64-bit already), and PostgreSQL's messages have an
 * identity column `seq` for the order of insertion, which SQLite has as the rowid.
 */
export interface Migration {
  sqlite: string;
  postgres: string;
}

/** Every column of `things` but verified_at and last_seen_at, as of step 9 (its things_version triggers); part of that step's text, so never edited. */
const THINGS_VERSIONED_COLUMNS =
  "name, short_name, public_key_pem, cert_pem, cert_serial, created_at, revoked_at, cert_not_after, previous_public_key_pem, renew_requested_at, enrolled_with, previous_cert_serial, previous_cert_not_after";

export const HUB_MIGRATIONS: readonly Migration[] = [
  {
    sqlite: `CREATE TABLE things (
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
    postgres: `CREATE TABLE things (
       id             TEXT   PRIMARY KEY,
       name           TEXT   NOT NULL UNIQUE,
       short_name     TEXT   NOT NULL,
       public_key_pem TEXT   NOT NULL,
       cert_pem       TEXT   NOT NULL,
       cert_serial    TEXT   NOT NULL,
       created_at     BIGINT NOT NULL,
       verified_at    BIGINT,
       last_seen_at   BIGINT,
       revoked_at     BIGINT
     );
     CREATE INDEX things_revoked ON things (revoked_at);
     CREATE TABLE messages (
       flmessagespk TEXT   PRIMARY KEY,
       seq          BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
       thing_id     TEXT   NOT NULL,
       messagetype  TEXT   NOT NULL CHECK (messagetype IN ('egress', 'ingress')),
       payload      TEXT   NOT NULL,
       fltimestamp  BIGINT NOT NULL,
       datecreated  TEXT   NOT NULL
     );
     CREATE INDEX messages_thing_time ON messages (thing_id, fltimestamp, seq);
     CREATE TABLE tokens (
       hash       TEXT   PRIMARY KEY,
       kind       TEXT   NOT NULL CHECK (kind IN ('operator', 'cli')),
       created_at BIGINT NOT NULL,
       expires_at BIGINT
     );`,
  },
  // Ingress delivery (the embedded broker resends what a thing has not acknowledged, even after
  // a hub restart). Ingress stored before this migration was never tracked: it is 'unknown', so
  // an upgrade does not resend a thing's whole history.
  {
    sqlite: `ALTER TABLE messages ADD COLUMN delivery TEXT CHECK (delivery IN ('pending', 'delivered', 'unknown'));
     ALTER TABLE messages ADD COLUMN delivered_at INTEGER;
     UPDATE messages SET delivery = 'unknown' WHERE messagetype = 'ingress';
     CREATE INDEX messages_pending ON messages (thing_id, fltimestamp) WHERE delivery = 'pending';`,
    postgres: `ALTER TABLE messages ADD COLUMN delivery TEXT CHECK (delivery IN ('pending', 'delivered', 'unknown'));
     ALTER TABLE messages ADD COLUMN delivered_at BIGINT;
     UPDATE messages SET delivery = 'unknown' WHERE messagetype = 'ingress';
     CREATE INDEX messages_pending ON messages (thing_id, fltimestamp, seq) WHERE delivery = 'pending';`,
  },
  // Signed self-update (src/hub/updates, docs/updates.md): the releases the hub stores, the
  // rollouts of one to many things in batches, and per thing what it runs and how its update goes.
  {
    sqlite: `CREATE TABLE releases (
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
    postgres: `CREATE TABLE releases (
       version   TEXT   PRIMARY KEY,
       manifest  TEXT   NOT NULL,
       signature TEXT   NOT NULL,
       added_at  BIGINT NOT NULL
     );
     CREATE TABLE rollouts (
       id           BIGINT  GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
       version      TEXT    NOT NULL,
       batch_size   INTEGER NOT NULL,
       max_failures INTEGER NOT NULL,
       state        TEXT    NOT NULL CHECK (state IN ('running', 'stopped', 'done')),
       stop_reason  TEXT,
       created_at   BIGINT  NOT NULL,
       finished_at  BIGINT
     );
     CREATE TABLE thing_updates (
       thing_id    TEXT PRIMARY KEY,
       version     TEXT,
       target      TEXT,
       seen_at     BIGINT,
       rollout_id  BIGINT,
       to_version  TEXT,
       batch       INTEGER,
       state       TEXT CHECK (state IN ('queued', 'pending', 'downloading', 'installed', 'healthy', 'rolled-back', 'failed', 'cancelled')),
       detail      TEXT,
       updated_at  BIGINT
     );
     CREATE INDEX thing_updates_rollout ON thing_updates (rollout_id, batch);`,
  },
  // Enrolment and renewal (issue 15): enrolment tokens (only their hash is kept), each thing's
  // certificate expiry, the key that signed its last renewal (still accepted for its tokens until
  // the new key is used once) and an operator's request to renew now. cert_not_after of things
  // made before stays NULL; the presenters read it from the certificate then.
  {
    sqlite: `CREATE TABLE enrollment_tokens (
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
    postgres: `CREATE TABLE enrollment_tokens (
       id          TEXT    PRIMARY KEY,
       hash        TEXT    NOT NULL UNIQUE,
       name_prefix TEXT,
       max_uses    INTEGER NOT NULL CHECK (max_uses > 0),
       uses        INTEGER NOT NULL DEFAULT 0,
       created_at  BIGINT  NOT NULL,
       expires_at  BIGINT  NOT NULL,
       revoked_at  BIGINT
     );
     ALTER TABLE things ADD COLUMN cert_not_after BIGINT;
     ALTER TABLE things ADD COLUMN previous_public_key_pem TEXT;
     ALTER TABLE things ADD COLUMN renew_requested_at BIGINT;
     ALTER TABLE things ADD COLUMN enrolled_with TEXT;`,
  },
  // Metrics (issue 16): the outbox a thing reported with its last update poll, for the hub's
  // /metrics (docs/metrics.md). outbox_oldest_at is on the hub's clock (the poll's time less the
  // age the thing reported), so a device's wrong clock does not skew it.
  {
    sqlite: `ALTER TABLE thing_updates ADD COLUMN outbox_depth INTEGER;
     ALTER TABLE thing_updates ADD COLUMN outbox_oldest_at INTEGER;`,
    postgres: `ALTER TABLE thing_updates ADD COLUMN outbox_depth INTEGER;
     ALTER TABLE thing_updates ADD COLUMN outbox_oldest_at BIGINT;`,
  },
  // Several hubs on one database (issue 16, docs/scaling.md "Several hubs"): what one hub
  // process used to keep in memory moves here. Console sign-ins, keyed by the SHA-256 of the
  // session id, the operator token sealed under a key only the browser's cookie holds
  // (console/sessions.ts); claims, so that what must happen once per fleet (the bootstrap echo)
  // happens on one hub; and at most one running rollout, whichever hub starts it.
  {
    sqlite: `CREATE TABLE console_sessions (
       id_hash      TEXT    PRIMARY KEY,
       token_box    TEXT    NOT NULL,
       created_at   INTEGER NOT NULL,
       last_used_at INTEGER NOT NULL
     );
     CREATE INDEX console_sessions_used ON console_sessions (last_used_at);
     CREATE TABLE hub_claims (
       key        TEXT    PRIMARY KEY,
       claimed_at INTEGER NOT NULL
     );
     UPDATE rollouts SET state = 'stopped', stop_reason = 'another rollout was running', finished_at = created_at
       WHERE state = 'running' AND id <> (SELECT MAX(id) FROM rollouts WHERE state = 'running');
     CREATE UNIQUE INDEX rollouts_one_running ON rollouts (state) WHERE state = 'running';`,
    postgres: `CREATE TABLE console_sessions (
       id_hash      TEXT   PRIMARY KEY,
       token_box    TEXT   NOT NULL,
       created_at   BIGINT NOT NULL,
       last_used_at BIGINT NOT NULL
     );
     CREATE INDEX console_sessions_used ON console_sessions (last_used_at);
     CREATE TABLE hub_claims (
       key        TEXT   PRIMARY KEY,
       claimed_at BIGINT NOT NULL
     );
     UPDATE rollouts SET state = 'stopped', stop_reason = 'another rollout was running', finished_at = created_at
       WHERE state = 'running' AND id <> (SELECT MAX(id) FROM rollouts WHERE state = 'running');
     CREATE UNIQUE INDEX rollouts_one_running ON rollouts (state) WHERE state = 'running';`,
  },
  // Superseded certificates (docs/enrolment.md "Renewal"): the serial and notAfter of the
  // certificate a renewal keeps as the previous one, and the certificates the hub has stopped
  // accepting, listed in the CRL (reason superseded) until a day after they expire.
  {
    sqlite: `ALTER TABLE things ADD COLUMN previous_cert_serial TEXT;
     ALTER TABLE things ADD COLUMN previous_cert_not_after INTEGER;
     CREATE TABLE superseded_certificates (
       serial        TEXT    PRIMARY KEY,
       thing_id      TEXT    NOT NULL,
       not_after     INTEGER NOT NULL,
       superseded_at INTEGER NOT NULL
     );
     CREATE INDEX superseded_certificates_not_after ON superseded_certificates (not_after);`,
    postgres: `ALTER TABLE things ADD COLUMN previous_cert_serial TEXT;
     ALTER TABLE things ADD COLUMN previous_cert_not_after BIGINT;
     CREATE TABLE superseded_certificates (
       serial        TEXT   PRIMARY KEY,
       thing_id      TEXT   NOT NULL,
       not_after     BIGINT NOT NULL,
       superseded_at BIGINT NOT NULL
     );
     CREATE INDEX superseded_certificates_not_after ON superseded_certificates (not_after);`,
  },
  // Which hub the database belongs to (home/identity.ts): its owner id and CA fingerprint, one
  // row, so a hub home pointed at another hub's database (a wrong --db, a leftover
  // $FLASHLEX_HUB_DB) is refused instead of mixing two owners' things.
  {
    sqlite: `CREATE TABLE hub_identity (
       id             INTEGER PRIMARY KEY CHECK (id = 1),
       owner_id       TEXT    NOT NULL,
       ca_fingerprint TEXT    NOT NULL,
       recorded_at    INTEGER NOT NULL
     );`,
    postgres: `CREATE TABLE hub_identity (
       id             INTEGER PRIMARY KEY CHECK (id = 1),
       owner_id       TEXT    NOT NULL,
       ca_fingerprint TEXT    NOT NULL,
       recorded_at    BIGINT  NOT NULL
     );`,
  },
  // A counter that changes with the things (messages/collect.ts keeps thing rows between requests
  // while it does not): its triggers fire for every writer, this hub, a `hub thing` command in
  // another process, another hub on the same PostgreSQL. They fire on a delete and on an update
  // of any column but the two that record when a thing was last seen (markVerified, markSeen: one
  // per batch of messages); a column added later needs a step that makes the update trigger
  // again with it (this step's text never changes). An insert needs
  // nothing: a thing that was not found is never remembered.
  {
    sqlite: `CREATE TABLE things_version (
       id      INTEGER PRIMARY KEY CHECK (id = 1),
       version INTEGER NOT NULL
     );
     INSERT INTO things_version (id, version) VALUES (1, 0);
     CREATE TRIGGER things_version_on_update AFTER UPDATE OF ${THINGS_VERSIONED_COLUMNS} ON things
       BEGIN UPDATE things_version SET version = version + 1 WHERE id = 1; END;
     CREATE TRIGGER things_version_on_delete AFTER DELETE ON things
       BEGIN UPDATE things_version SET version = version + 1 WHERE id = 1; END;`,
    postgres: `CREATE TABLE things_version (
       id      INTEGER PRIMARY KEY CHECK (id = 1),
       version BIGINT  NOT NULL
     );
     INSERT INTO things_version (id, version) VALUES (1, 0);
     CREATE FUNCTION things_version_bump() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN UPDATE things_version SET version = version + 1 WHERE id = 1; RETURN NULL; END $$;
     CREATE TRIGGER things_version_on_update AFTER UPDATE OF ${THINGS_VERSIONED_COLUMNS} ON things
       FOR EACH STATEMENT EXECUTE FUNCTION things_version_bump();
     CREATE TRIGGER things_version_on_delete AFTER DELETE ON things
       FOR EACH STATEMENT EXECUTE FUNCTION things_version_bump();`,
  },
  // The update public key every thing pins (updates/update-key.ts), recorded the first time it is
  // used: a home whose update-key files were lost (or swapped for another hub's) is refused
  // instead of making a new key that the fleet made so far would never accept.
  {
    sqlite: `CREATE TABLE update_key (
       id          INTEGER PRIMARY KEY CHECK (id = 1),
       public_key  TEXT    NOT NULL,
       recorded_at INTEGER NOT NULL
     );`,
    postgres: `CREATE TABLE update_key (
       id          INTEGER PRIMARY KEY CHECK (id = 1),
       public_key  TEXT    NOT NULL,
       recorded_at BIGINT  NOT NULL
     );`,
  },
  // One-time download lines (things/download-tokens.ts): a thing's zip fetched on the device
  // itself without the operator's token there. Only the token's hash is kept.
  {
    sqlite: `CREATE TABLE download_tokens (
       hash       TEXT    PRIMARY KEY,
       thing_id   TEXT    NOT NULL,
       created_at INTEGER NOT NULL,
       expires_at INTEGER NOT NULL,
       used_at    INTEGER
     );
     CREATE INDEX download_tokens_expiry ON download_tokens (expires_at);
     CREATE INDEX download_tokens_thing ON download_tokens (thing_id);`,
    postgres: `CREATE TABLE download_tokens (
       hash       TEXT    PRIMARY KEY,
       thing_id   TEXT    NOT NULL,
       created_at BIGINT  NOT NULL,
       expires_at BIGINT  NOT NULL,
       used_at    BIGINT
     );
     CREATE INDEX download_tokens_expiry ON download_tokens (expires_at);
     CREATE INDEX download_tokens_thing ON download_tokens (thing_id);`,
  },
];

/**
 * The oldest schema version whose hub can still use what HUB_MIGRATIONS leave: a hub binary
 * rolled back after a newer one migrated the database (or an older hub beside a newer one on one
 * PostgreSQL, mid rolling upgrade) starts if its version is this or later, and stops with 78
 * otherwise. A step that only adds a table older hubs need not know, or a column they need not
 * fill (nullable or with a DEFAULT), leaves it where it was; one that renames, drops or narrows
 * anything, or adds a rule every writer must keep, raises it to its own number.
 * - 10 (update_key): a hub before it would make a new update key where the fleet pins the
 *   recorded one, which is what that step stops.
 * - 11 (download_tokens) leaves it at 10: a hub of version 10 does not take download tokens at
 *   all, so those made before the rollback are dead until the newer hub is back (and expire
 *   within the hour); its `hub token rotate` does not end them.
 */
export const HUB_READABLE_FROM = 10;

/** The SQLite text of every step, for src/shared/sqlite/migrate.ts. */
export const SQLITE_MIGRATIONS: readonly string[] = HUB_MIGRATIONS.map((m) => m.sqlite);
