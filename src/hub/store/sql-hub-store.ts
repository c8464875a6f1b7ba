import { FlashlexError } from "../../shared/errors.ts";
import type {
  ConsoleSessionRecord,
  Delivery,
  EnrolmentTokenRecord,
  HubIdentity,
  HubStore,
  MessageCounts,
  MessageInsert,
  MessageQuery,
  MessageRecord,
  MessageType,
  ThingRecord,
  ThingTarget,
  TokenKind,
} from "./hub-store.ts";
import { sameHubIdentity } from "./hub-store.ts";
import { type HubSql, type HubSqlValue, seqColumn } from "./sql.ts";
import { sqlUpdateTables } from "./sql-update-tables.ts";

/**
 * The HubStore, written once over the HubSql seam (sql.ts): the SQLite and PostgreSQL drivers
 * differ only in how they connect, migrate and report failures, never in what the hub stores.
 * The contract suite (test/integration/hub-store-contract.test.ts) runs against both.
 */
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
  previous_cert_serial?: string | null;
  previous_cert_not_after?: number | null;
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
  previousCertSerial: r.previous_cert_serial ?? null,
  previousCertNotAfter: r.previous_cert_not_after ?? null,
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
function messageFilter(thingId: string, q: MessageQuery): { where: string; params: HubSqlValue[] } {
  const clauses = ["thing_id = ?"];
  const params: HubSqlValue[] = [thingId];
  if (q.startts !== undefined) clauses.push("fltimestamp >= ?"), params.push(q.startts);
  if (q.endts !== undefined) clauses.push("fltimestamp <= ?"), params.push(q.endts);
  if (q.messagetype !== undefined) clauses.push("messagetype = ?"), params.push(q.messagetype);
  return { where: clauses.join(" AND "), params };
}

/**
 * A HubStore over `sql`; `close` closes `sql`. Throws nothing itself: each method rejects with
 * what the driver threw (a FlashlexError with a kind for a database that is gone, full or locked).
 */
export function sqlHubStore(sql: HubSql): HubStore {
  const seq = seqColumn(sql);
  const thingBy = async (db: HubSql, column: "id" | "name", value: string) => {
    const row = await db.get<ThingRow>(`SELECT * FROM things WHERE ${column} = ?`, [value]);
    return row ? toThing(row) : undefined;
  };
  const getMessage = async (db: HubSql, id: string) => {
    const row = await db.get<MessageRow>("SELECT * FROM messages WHERE flmessagespk = ?", [id]);
    return row ? toMessage(row) : undefined;
  };
  const markVerified = async (db: HubSql, id: string, at: number) => {
    await db.run(
      `UPDATE things SET verified_at = COALESCE(verified_at, ?),
         last_seen_at = CASE WHEN last_seen_at IS NULL OR last_seen_at < ? THEN ? ELSE last_seen_at END
       WHERE id = ?`,
      [at, at, at, id],
    );
  };
  /** Inside a transaction: lists a certificate as superseded (once: the first time wins). */
  const supersede = async (db: HubSql, serial: string, thingId: string, notAfter: number, at: number) => {
    await db.run("INSERT INTO superseded_certificates (serial, thing_id, not_after, superseded_at) VALUES (?, ?, ?, ?) ON CONFLICT (serial) DO NOTHING", [
      serial,
      thingId,
      notAfter,
      at,
    ]);
  };
  /**
   * Inside a transaction: which of `thingIds` are things, each kept from being deleted until the
   * transaction ends (PostgreSQL: a KEY SHARE row lock; a DELETE waits for it, and one already
   * done makes the row absent here. SQLite: BEGIN IMMEDIATE already keeps every other writer out).
   * So a message stored for a thing is deleted with it, never left behind by a delete that ran
   * between the caller's look-up and the insert.
   */
  const existingThings = async (db: HubSql, thingIds: readonly string[]): Promise<Set<string>> => {
    const lock = db.dialect === "postgres" ? " FOR KEY SHARE" : "";
    const found = new Set<string>();
    for (const chunk of chunks([...new Set(thingIds)].sort())) {
      for (const row of await db.all<{ id: string }>(`SELECT id FROM things WHERE id IN (${placeholders(chunk)}) ORDER BY id${lock}`, chunk)) found.add(row.id);
    }
    return found;
  };
  /** Inside a transaction: stores `m` unless its id is stored, and gives the stored row either way. */
  const insertOnce = async (db: HubSql, m: MessageRecord): Promise<{ inserted: boolean; message: MessageRecord }> => {
    const delivery = m.messagetype === "ingress" ? (m.delivery ?? "unknown") : null;
    const deliveredAt = delivery === "delivered" ? (m.deliveredAt ?? null) : null;
    const { changes } = await db.run(
      `INSERT INTO messages (flmessagespk, thing_id, messagetype, payload, fltimestamp, datecreated, delivery, delivered_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (flmessagespk) DO NOTHING`,
      [m.flmessagespk, m.thingId, m.messagetype, m.payload, m.fltimestamp, m.datecreated, delivery, deliveredAt],
    );
    return { inserted: changes > 0, message: changes > 0 ? { ...m, delivery, deliveredAt } : (await getMessage(db, m.flmessagespk))! };
  };

  /** Inside a transaction or not: stores `t`; FlashlexError io when the database took the statement and stored nothing. */
  const insertThing = async (db: HubSql, t: ThingRecord) => {
    const { changes } = await db.run(
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
    // A trigger someone added to the database can skip the row (SQLite's RAISE(IGNORE), a
    // PostgreSQL BEFORE trigger returning NULL): the thing would be reported made, its zip
    // written, with no row behind it.
    if (changes !== 1) throw new FlashlexError(`the database did not store the thing ${t.name} (a trigger in it skipped the row)`, "io");
  };

  /** Writes to things made here (HubStore.localThingsWrites). */
  let thingsWrites = 0;
  /** `write`, counted in thingsWrites once it settled, committed or not (a reader then only looks again). */
  const writingThings =
    <A extends unknown[], R>(write: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      try {
        return await write(...args);
      } finally {
        thingsWrites++;
      }
    };

  return {
    driver: sql.dialect,
    updates: sqlUpdateTables(sql),
    insertThing: (t) => insertThing(sql, t),
    getThing: (id) => thingBy(sql, "id", id),
    getThingByName: (name) => thingBy(sql, "name", name),
    localThingsWrites: () => thingsWrites,
    thingsVersion: async () => Number((await sql.get<{ version: number | bigint }>("SELECT version FROM things_version WHERE id = 1"))?.version ?? 0),
    async getThingTargets(ids) {
      const things: ThingTarget[] = [];
      for (const chunk of chunks(ids)) {
        const rows = await sql.all<Pick<ThingRow, "id" | "name" | "revoked_at">>(
          `SELECT id, name, revoked_at FROM things WHERE id IN (${placeholders(chunk)})`,
          chunk,
        );
        for (const row of rows) things.push({ id: row.id, name: row.name, revokedAt: row.revoked_at });
      }
      return things;
    },
    listThings: async () => (await sql.all<ThingRow>("SELECT * FROM things ORDER BY created_at, name")).map(toThing),
    revokedThings: async () => (await sql.all<ThingRow>("SELECT * FROM things WHERE revoked_at IS NOT NULL ORDER BY created_at, name")).map(toThing),
    thingIds: async () => (await sql.all<{ id: string }>("SELECT id FROM things ORDER BY id")).map((row) => row.id),
    markVerified: (id, at) => markVerified(sql, id, at),
    async markSeen(items) {
      await sql.transaction(
        async (tx) => {
          // one update per thing, in id order: two hubs marking the same things lock them in one
          // order and wait for each other instead of deadlocking (PostgreSQL)
          const latest = new Map<string, number>();
          for (const { id, at } of items) latest.set(id, Math.max(latest.get(id) ?? at, at));
          for (const id of [...latest.keys()].sort()) {
            const at = latest.get(id)!;
            await tx.run(
              `UPDATE things SET verified_at = COALESCE(verified_at, ?),
                 last_seen_at = CASE WHEN last_seen_at IS NULL OR last_seen_at < ? THEN ? ELSE last_seen_at END
               WHERE id = ?`,
              [at, at, at, id],
            );
          }
        },
        { durable: false },
      );
    },
    revokeThing: writingThings(async (id, at) => (await sql.run("UPDATE things SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", [at, id])).changes > 0),
    async revokedSince(since) {
      return (await sql.all<{ name: string }>("SELECT name FROM things WHERE revoked_at >= ?", [since])).map((r) => r.name);
    },
    async fleetCounts() {
      const things = (await sql.get<{ things: number; revoked: number; verified: number; earliest: number | null }>(
        `SELECT COUNT(*) AS things, COUNT(revoked_at) AS revoked,
                COALESCE(SUM(CASE WHEN revoked_at IS NULL AND verified_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS verified,
                MIN(CASE WHEN revoked_at IS NULL THEN cert_not_after END) AS earliest
         FROM things`,
      ))!;
      // messages_pending is a partial index on exactly these rows: the count reads only them.
      const pending = (await sql.get<{ n: number }>("SELECT COUNT(*) AS n FROM messages WHERE delivery = 'pending'"))!;
      const size = (await sql.get<{ n: number }>(
        sql.dialect === "postgres"
          ? "SELECT pg_database_size(current_database()) AS n"
          : "SELECT page_count * page_size AS n FROM pragma_page_count(), pragma_page_size()",
      ))!;
      const { earliest, ...counts } = things;
      return { ...counts, pendingIngress: pending.n, earliestCertificateEnd: earliest, databaseBytes: size.n };
    },
    deleteThing: writingThings((id, retired) =>
      sql.transaction(async (tx) => {
        // The thing's row first: on PostgreSQL, a transaction storing a message for it holds the
        // row (existingThings) until it commits, and this waits for it; the messages it stored
        // are then committed and deleted below, and a later one finds no thing.
        const deleted = (await tx.run("DELETE FROM things WHERE id = ?", [id])).changes > 0;
        await tx.run("DELETE FROM messages WHERE thing_id = ?", [id]);
        await tx.run("DELETE FROM thing_updates WHERE thing_id = ?", [id]);
        await tx.run("DELETE FROM download_tokens WHERE thing_id = ?", [id]);
        if (deleted && retired) for (const c of retired.certificates) await supersede(tx, c.serial, id, c.notAfter, retired.at);
        return deleted;
      }),
    ),

    async thingPage(q) {
      // LIKE with its wildcards escaped: a typed `%` or `_` matches itself. Lower-cased on both
      // sides: SQLite's LIKE ignores ASCII case, PostgreSQL's does not.
      const pattern = `%${(q.nameContains ?? "").toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      const where = "LOWER(name) LIKE ? ESCAPE '\\'";
      const total = (await sql.get<{ n: number }>(`SELECT COUNT(*) AS n FROM things WHERE ${where}`, [pattern]))!.n;
      const rows = await sql.all<ThingRow>(`SELECT * FROM things WHERE ${where} ORDER BY created_at, name LIMIT ? OFFSET ?`, [
        pattern,
        Math.max(0, Math.floor(q.limit)),
        Math.max(0, Math.floor(q.offset)),
      ]);
      return { total, things: rows.map(toThing) };
    },

    // Insert-if-absent + read back in one transaction: a retried id returns what was stored first.
    insertMessage: (m) =>
      sql.transaction(async (tx) => ((await existingThings(tx, [m.thingId])).has(m.thingId) ? insertOnce(tx, m) : { inserted: false, message: undefined })),
    insertMessages: (items) =>
      sql.transaction(async (tx) => {
        // Rows are locked in one order, by (thing id, message id), whatever order the batch came
        // in: two hubs committing batches of the same messages (each gets its own copy from the
        // broker) then wait for each other instead of deadlocking (PostgreSQL 40P01).
        // Plain code-unit order: any one total order will do, and localeCompare stood out in the
        // profile of a 1,000-thing fan-out.
        const keys = items.map(({ message }) => lockKey(message));
        const order = keys.map((_, i) => i).sort((a, b) => (keys[a]! < keys[b]! ? -1 : keys[a]! > keys[b]! ? 1 : 0));
        const results: MessageInsert[] = new Array(items.length);
        const things = await existingThings(
          tx,
          items.map(({ message }) => message.thingId),
        );
        // Each thing is marked seen once per batch, at its latest message, after the messages (in
        // thing id order, so the row locks keep one order here too): a batch is mostly one busy
        // thing's messages, and one UPDATE per message was half of the batch's statements.
        const lastSeen = new Map<string, number>();
        for (const i of order) {
          const { message, seenAt } = items[i]!;
          if (!things.has(message.thingId)) {
            results[i] = { inserted: false, message: undefined };
            continue;
          }
          const result = await insertOnce(tx, message);
          if (seenAt !== undefined && result.message.thingId === message.thingId) {
            lastSeen.set(message.thingId, Math.max(lastSeen.get(message.thingId) ?? seenAt, seenAt));
          }
          results[i] = result;
        }
        for (const thingId of [...lastSeen.keys()].sort()) await markVerified(tx, thingId, lastSeen.get(thingId)!);
        return results;
      }),
    async deleteMessage(id) {
      await sql.run("DELETE FROM messages WHERE flmessagespk = ?", [id]);
    },
    async messagePage(thingId, q, page) {
      const { where, params } = messageFilter(thingId, q);
      const clauses = [where];
      // Row values compare as tuples and still use the (thing_id, fltimestamp) index, whose
      // entries end with the rowid (SQLite) or seq (PostgreSQL's index names it).
      if (page.after) clauses.push(`(fltimestamp, ${seq}) > (?, ?)`), params.push(page.after.fltimestamp, page.after.seq);
      if (page.through) clauses.push(`(fltimestamp, ${seq}) <= (?, ?)`), params.push(page.through.fltimestamp, page.through.seq);
      params.push(Math.max(1, Math.floor(page.limit)));
      const rows = await sql.all<MessageRow & { cursor_seq: number }>(
        `SELECT ${seq} AS cursor_seq, * FROM messages WHERE ${clauses.join(" AND ")} ORDER BY fltimestamp, ${seq} LIMIT ?`,
        params,
      );
      return rows.map((row) => ({ message: toMessage(row), cursor: { fltimestamp: row.fltimestamp, seq: row.cursor_seq } }));
    },
    async messageRange(thingId, q) {
      const { where, params } = messageFilter(thingId, q);
      const count = (await sql.get<{ n: number }>(`SELECT COUNT(*) AS n FROM messages WHERE ${where}`, params))!.n;
      const last = await sql.get<{ fltimestamp: number; cursor_seq: number }>(
        `SELECT fltimestamp, ${seq} AS cursor_seq FROM messages WHERE ${where} ORDER BY fltimestamp DESC, ${seq} DESC LIMIT 1`,
        params,
      );
      return { count, last: last ? { fltimestamp: last.fltimestamp, seq: last.cursor_seq } : undefined };
    },
    async deleteMessages(thingId, q) {
      const { where, params } = messageFilter(thingId, q);
      return (await sql.run(`DELETE FROM messages WHERE ${where}`, params)).changes;
    },
    // The index on (thing_id, fltimestamp) finds the oldest rows of one thing without a scan of the
    // table; the window is read first (its last row is the cursor), then its rows that may go deleted.
    expireMessages: (thingId, olderThan, limit, after) =>
      sql.transaction(async (tx) => {
        const from = after ? ` AND (fltimestamp, ${seq}) > (?, ?)` : "";
        const cursor = after ? [after.fltimestamp, after.seq] : [];
        const count = Math.max(1, Math.floor(limit));
        const visited = await tx.all<{ fltimestamp: number; cursor_seq: number }>(
          `SELECT fltimestamp, ${seq} AS cursor_seq FROM messages WHERE thing_id = ? AND fltimestamp < ?${from} ORDER BY fltimestamp, ${seq} LIMIT ?`,
          [thingId, olderThan, ...cursor, count],
        );
        const last = visited.at(-1);
        if (!last) return { deleted: 0, next: undefined };
        // Bounded by the window's last time itself, not by `olderThan`: SQLite takes no end of its
        // index range from a row value, and scanned on to the cut from every cursor.
        const { changes } = await tx.run(
          `DELETE FROM messages WHERE thing_id = ? AND fltimestamp <= ?${from} AND (fltimestamp, ${seq}) <= (?, ?)
             AND (delivery IS NULL OR delivery <> 'pending')`,
          [thingId, last.fltimestamp, ...cursor, last.fltimestamp, last.cursor_seq],
        );
        return { deleted: changes, next: visited.length < count ? undefined : { fltimestamp: last.fltimestamp, seq: last.cursor_seq } };
      }),
    async messageCounts(thingIds) {
      const counts = new Map<string, MessageCounts>();
      if (thingIds.length === 0) return counts;
      const rows = await sql.all<{ thing_id: string; messagetype: MessageType; n: number }>(
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
      const rows = await sql.all<{ hour: number; messagetype: MessageType; n: number }>(
        `SELECT (fltimestamp / 3600) * 3600 AS hour, messagetype, COUNT(*) AS n FROM messages
         WHERE thing_id = ? AND fltimestamp >= ? GROUP BY (fltimestamp / 3600) * 3600, messagetype ORDER BY hour, messagetype`,
        [thingId, since],
      );
      return rows.map((r) => ({ hour: r.hour, messagetype: r.messagetype, count: r.n }));
    },
    async latestMessages(q) {
      const clauses: string[] = [];
      const params: HubSqlValue[] = [];
      if (q.thingId !== undefined) clauses.push("thing_id = ?"), params.push(q.thingId);
      if (q.messagetype !== undefined) clauses.push("messagetype = ?"), params.push(q.messagetype);
      params.push(Math.max(1, Math.floor(q.limit)));
      const where = clauses.length ? `WHERE ${clauses.join(" AND ")}` : "";
      // The order of insertion: the last stored first, whatever a sender's clock said.
      return (await sql.all<MessageRow>(`SELECT * FROM messages ${where} ORDER BY ${seq} DESC LIMIT ?`, params)).map(toMessage);
    },
    async pendingIngress(thingId) {
      return (await sql.all<MessageRow>(`SELECT * FROM messages WHERE thing_id = ? AND delivery = 'pending' ORDER BY fltimestamp, ${seq}`, [thingId])).map(
        toMessage,
      );
    },
    // Not durable: a power cut that undoes it leaves the messages pending, as a kill -9 before
    // the write would, and they are sent again, stored once by the thing (ingress-delivery.ts).
    markDelivered: (items) =>
      sql.transaction(
        async (tx) => {
          const results: boolean[] = [];
          for (const { flmessagespk, at } of items) {
            const { changes } = await tx.run("UPDATE messages SET delivery = 'delivered', delivered_at = ? WHERE flmessagespk = ? AND delivery = 'pending'", [
              at,
              flmessagespk,
            ]);
            results.push(changes > 0);
          }
          return results;
        },
        { durable: false },
      ),

    async addDownloadToken(t, forgetBefore) {
      await sql.transaction(async (tx) => {
        await tx.run("DELETE FROM download_tokens WHERE expires_at < ?", [forgetBefore]);
        await tx.run("INSERT INTO download_tokens (hash, thing_id, created_at, expires_at) VALUES (?, ?, ?, ?)", [t.hash, t.thingId, t.createdAt, t.expiresAt]);
      });
    },
    async downloadTokenUsable(hash, thingId, at) {
      const row = await sql.get("SELECT 1 AS usable FROM download_tokens WHERE hash = ? AND thing_id = ? AND used_at IS NULL AND expires_at > ?", [
        hash,
        thingId,
        at,
      ]);
      return row !== undefined;
    },
    async useDownloadToken(hash, thingId, at) {
      const update = "UPDATE download_tokens SET used_at = ? WHERE hash = ? AND thing_id = ? AND used_at IS NULL AND expires_at > ?";
      return (await sql.run(update, [at, hash, thingId, at])).changes > 0;
    },
    async addEnrolmentToken(t) {
      await sql.run(
        `INSERT INTO enrollment_tokens (id, hash, name_prefix, max_uses, uses, created_at, expires_at, revoked_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
        [t.id, t.hash, t.namePrefix, t.maxUses, t.uses, t.createdAt, t.expiresAt, t.revokedAt],
      );
    },
    listEnrolmentTokens: async () => (await sql.all<EnrolmentTokenRow>("SELECT * FROM enrollment_tokens ORDER BY created_at, id")).map(toEnrolmentToken),
    async enrolmentTokenByHash(hash) {
      const row = await sql.get<EnrolmentTokenRow>("SELECT * FROM enrollment_tokens WHERE hash = ?", [hash]);
      return row ? toEnrolmentToken(row) : undefined;
    },
    async revokeEnrolmentToken(id, at) {
      return (await sql.run("UPDATE enrollment_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", [at, id])).changes > 0;
    },
    enrolThing: (thing, tokenHash, at) =>
      sql.transaction(async (tx) => {
        // The conditions are checked again inside the transaction (and, in PostgreSQL, on the
        // locked row): two devices racing for the last use of a token cannot both pass.
        const used = (
          await tx.run("UPDATE enrollment_tokens SET uses = uses + 1 WHERE hash = ? AND revoked_at IS NULL AND expires_at > ? AND uses < max_uses", [
            tokenHash,
            at,
          ])
        ).changes;
        if (used === 0) return false;
        await insertThing(tx, thing);
        return true;
      }),
    replaceCertificate: writingThings((id, u) =>
      sql.transaction(async (tx) => {
        // Compare and swap: a renewal signed its certificate for the thing it read; a delete, a
        // revoke or another renewal committed since then wins (a deleted thing's racing renewal
        // was handed a certificate no CRL listed, which a thing made again under its name adopted).
        const replaced =
          (
            await tx.run(
              `UPDATE things SET public_key_pem = ?, cert_pem = ?, cert_serial = ?, cert_not_after = ?, previous_public_key_pem = ?,
                 previous_cert_serial = ?, previous_cert_not_after = ?, renew_requested_at = NULL
               WHERE id = ? AND revoked_at IS NULL AND public_key_pem = ? AND cert_serial ${tx.dialect === "postgres" ? "IS NOT DISTINCT FROM" : "IS"} ?`,
              [
                u.publicKeyPem,
                u.certPem,
                u.certSerial,
                u.certNotAfter,
                u.previousPublicKeyPem,
                u.previousCertSerial,
                u.previousCertNotAfter,
                id,
                u.expected.publicKeyPem,
                u.expected.certSerial,
              ],
            )
          ).changes > 0;
        if (!replaced) {
          if (u.onConflict === "supersede") await supersede(tx, u.certSerial, id, u.certNotAfter, u.at);
          return false;
        }
        for (const c of u.superseded) await supersede(tx, c.serial, id, c.notAfter, u.at);
        return true;
      }),
    ),
    forgetPreviousKey: writingThings((id, at) =>
      sql.transaction(async (tx) => {
        const row = await tx.get<{ serial: string | null; not_after: number | null }>(
          "SELECT previous_cert_serial AS serial, previous_cert_not_after AS not_after FROM things WHERE id = ? AND previous_public_key_pem IS NOT NULL",
          [id],
        );
        if (!row) return false;
        // A previous key kept before the hub kept its certificate's serial has none to list.
        if (row.serial && row.not_after != null) await supersede(tx, row.serial, id, row.not_after, at);
        await tx.run("UPDATE things SET previous_public_key_pem = NULL, previous_cert_serial = NULL, previous_cert_not_after = NULL WHERE id = ?", [id]);
        return true;
      }),
    ),
    certificateSuperseded: async (serial) => (await sql.get("SELECT 1 AS one FROM superseded_certificates WHERE serial = ?", [serial])) !== undefined,
    supersededCertificates: async (expiredAfter) =>
      (
        await sql.all<{ serial: string; thing_id: string; not_after: number; superseded_at: number }>(
          "SELECT serial, thing_id, not_after, superseded_at FROM superseded_certificates WHERE not_after > ? ORDER BY superseded_at, serial",
          [expiredAfter],
        )
      ).map((r) => ({ serial: r.serial, thingId: r.thing_id, notAfter: Number(r.not_after), supersededAt: Number(r.superseded_at) })),
    pruneSupersededCertificates: async (expiredBefore) => (await sql.run("DELETE FROM superseded_certificates WHERE not_after <= ?", [expiredBefore])).changes,
    lastSupersededAt: async () => {
      const row = await sql.get<{ at: number | null }>("SELECT MAX(superseded_at) AS at FROM superseded_certificates");
      return row?.at == null ? 0 : Number(row.at);
    },
    requestRenewal: writingThings(
      async (id, at) => (await sql.run("UPDATE things SET renew_requested_at = ? WHERE id = ? AND revoked_at IS NULL", [at, id])).changes > 0,
    ),

    addToken: (hash, kind, createdAt, expiresAt) => sql.transaction((tx) => insertToken(tx, hash, kind, createdAt, expiresAt)),
    // One transaction: two statements left the hub with no operator token when the insert failed
    // after the delete (a full disk; attack round 27, F1).
    replaceOperatorToken: (hash, createdAt) =>
      sql.transaction(async (tx) => {
        await tx.run("DELETE FROM tokens WHERE kind = ?", ["operator"]);
        await insertToken(tx, hash, "operator", createdAt, null);
        await tx.run("DELETE FROM console_sessions");
        await tx.run("DELETE FROM download_tokens");
      }),
    async activeTokenHashes(now) {
      return (await sql.all<{ hash: string }>("SELECT hash FROM tokens WHERE expires_at IS NULL OR expires_at > ?", [now])).map((r) => r.hash);
    },
    async deleteToken(hash) {
      await sql.run("DELETE FROM tokens WHERE hash = ?", [hash]);
    },

    async messagesAfter(after, limit) {
      const rows = await sql.all<MessageRow & { cursor_seq: number; thing_name: string }>(
        `SELECT m.${seq} AS cursor_seq, t.name AS thing_name, m.* FROM messages m JOIN things t ON t.id = m.thing_id
         WHERE m.${seq} > ? ORDER BY m.${seq} LIMIT ?`,
        [after, Math.max(1, Math.floor(limit))],
      );
      return rows.map((r) => ({ seq: r.cursor_seq, thingName: r.thing_name, message: toMessage(r) }));
    },
    async lastMessageSeq() {
      return (await sql.get<{ n: number | null }>(`SELECT MAX(${seq}) AS n FROM messages`))?.n ?? 0;
    },

    addConsoleSession: (s, keep) =>
      sql.transaction(async (tx) => {
        await tx.run("DELETE FROM console_sessions WHERE last_used_at < ? OR created_at < ?", [keep.usedSince, keep.createdSince]);
        const count = (await tx.get<{ n: number }>("SELECT COUNT(*) AS n FROM console_sessions"))!.n;
        if (count >= keep.max) {
          await tx.run("DELETE FROM console_sessions WHERE id_hash IN (SELECT id_hash FROM console_sessions ORDER BY last_used_at, id_hash LIMIT ?)", [
            count - keep.max + 1,
          ]);
        }
        await tx.run("INSERT INTO console_sessions (id_hash, token_box, created_at, last_used_at) VALUES (?, ?, ?, ?)", [
          s.idHash,
          s.tokenBox,
          s.createdAt,
          s.lastUsedAt,
        ]);
      }),
    async consoleSession(idHash) {
      const row = await sql.get<{ id_hash: string; token_box: string; created_at: number; last_used_at: number }>(
        "SELECT * FROM console_sessions WHERE id_hash = ?",
        [idHash],
      );
      return row
        ? ({ idHash: row.id_hash, tokenBox: row.token_box, createdAt: row.created_at, lastUsedAt: row.last_used_at } satisfies ConsoleSessionRecord)
        : undefined;
    },
    async touchConsoleSession(idHash, at) {
      await sql.run("UPDATE console_sessions SET last_used_at = ? WHERE id_hash = ? AND last_used_at < ?", [at, idHash, at]);
    },
    async deleteConsoleSession(idHash) {
      await sql.run("DELETE FROM console_sessions WHERE id_hash = ?", [idHash]);
    },

    claimOnce: (key, at, forgetBefore) =>
      sql.transaction(async (tx) => {
        await tx.run("DELETE FROM hub_claims WHERE claimed_at < ?", [forgetBefore]);
        // Two hubs inserting the same key: PostgreSQL makes the second wait for the first to
        // commit and then do nothing; SQLite's writers queue. Exactly one sees a change.
        return (await tx.run("INSERT INTO hub_claims (key, claimed_at) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", [key, at])).changes > 0;
      }),

    adoptHubIdentity: (identity, at) => adoptIdentity(sql, identity, at),

    updateKey: async () => (await sql.get<{ public_key: string }>("SELECT public_key FROM update_key WHERE id = 1"))?.public_key,
    async adoptUpdateKey(publicKey, at) {
      await sql.run("INSERT INTO update_key (id, public_key, recorded_at) VALUES (1, ?, ?) ON CONFLICT (id) DO NOTHING", [publicKey, at]);
      return (await sql.get<{ public_key: string }>("SELECT public_key FROM update_key WHERE id = 1"))!.public_key;
    },

    claimForNewHub: (identity, operatorTokenHash, at) =>
      sql.transaction(async (tx) => {
        const recorded = await adoptIdentity(tx, identity, at);
        if (sameHubIdentity(recorded, identity)) {
          await tx.run("INSERT INTO tokens (hash, kind, created_at, expires_at) VALUES (?, 'operator', ?, NULL)", [operatorTokenHash, at]);
        }
        return recorded;
      }),

    releaseNewHubClaim: (identity, operatorTokenHash) =>
      sql.transaction(async (tx) => {
        await tx.run("DELETE FROM tokens WHERE hash = ?", [operatorTokenHash]);
        await tx.run("DELETE FROM hub_identity WHERE id = 1 AND owner_id = ? AND ca_fingerprint = ?", [identity.ownerId, identity.caFingerprint]);
      }),

    close: () => sql.close(),
  };
}

/** Records `identity` when the database has none yet; gives the one recorded either way. */
async function adoptIdentity(sql: HubSql, identity: HubIdentity, at: number): Promise<HubIdentity> {
  await sql.run("INSERT INTO hub_identity (id, owner_id, ca_fingerprint, recorded_at) VALUES (1, ?, ?, ?) ON CONFLICT (id) DO NOTHING", [
    identity.ownerId,
    identity.caFingerprint,
    at,
  ]);
  const row = (await sql.get<{ owner_id: string; ca_fingerprint: string }>("SELECT owner_id, ca_fingerprint FROM hub_identity WHERE id = 1"))!;
  return { ownerId: row.owner_id, caFingerprint: row.ca_fingerprint };
}

/** Placeholders for one IN list of `values`. */
const placeholders = (values: readonly unknown[]) => values.map(() => "?").join(", ");

/** `values` in parts of a few hundred, one IN list each: SQLite allows 32,766 placeholders a statement, PostgreSQL 65,535. */
function* chunks<T>(values: readonly T[]): Generator<T[]> {
  for (let i = 0; i < values.length; i += 500) yield values.slice(i, i + 500);
}

/** Stores a token's hash, purging expired CLI tokens first (a CLI killed before it could delete its own). */
async function insertToken(tx: HubSql, hash: string, kind: TokenKind, createdAt: number, expiresAt: number | null): Promise<void> {
  await tx.run("DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at <= ?", [createdAt]);
  await tx.run("INSERT INTO tokens (hash, kind, created_at, expires_at) VALUES (?, ?, ?, ?)", [hash, kind, createdAt, expiresAt]);
}

/** The order a batch's rows are locked in (insertMessages). */
const lockKey = (m: MessageRecord) => `${m.thingId}/${m.flmessagespk}`;
