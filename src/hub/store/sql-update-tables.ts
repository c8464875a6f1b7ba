import type { HubSql } from "./sql.ts";
import type { ReleaseRow, RolloutRow, ThingUpdateRow, UpdateState, UpdateTables } from "./update-tables.ts";

/** The advisory lock key of rollout changes ("flroll" in ASCII, under 2^53): hub processes take it in turn (PostgreSQL). */
const ROLLOUT_LOCK = 0x666c726f6c6c;

/**
 * The update tables (update-tables.ts) over the HubSql seam, for both drivers. Inside
 * `transaction` the tables given to `fn` run on the transaction.
 */
export function sqlUpdateTables(sql: HubSql): UpdateTables {
  const list = (states: readonly string[]) => states.map(() => "?").join(", ");
  return {
    async insertRelease(r) {
      await sql.run("INSERT INTO releases (version, manifest, signature, added_at) VALUES (?, ?, ?, ?) ON CONFLICT (version) DO NOTHING", [
        r.version,
        r.manifest,
        r.signature,
        r.added_at,
      ]);
    },
    listReleases: () => sql.all<ReleaseRow>("SELECT * FROM releases ORDER BY added_at, version"),
    release: (version) => sql.get<ReleaseRow>("SELECT * FROM releases WHERE version = ?", [version]),

    rollout: (id) => sql.get<RolloutRow>("SELECT * FROM rollouts WHERE id = ?", [id]),
    latestRollout: () => sql.get<RolloutRow>("SELECT * FROM rollouts ORDER BY id DESC LIMIT 1"),
    runningRollout: () => sql.get<RolloutRow>("SELECT * FROM rollouts WHERE state = 'running' ORDER BY id LIMIT 1"),
    async insertRollout(r) {
      // RETURNING in both dialects (SQLite 3.35+): no driver-specific last-insert id
      const row = await sql.get<{ id: number }>(
        "INSERT INTO rollouts (version, batch_size, max_failures, state, created_at) VALUES (?, ?, ?, 'running', ?) RETURNING id",
        [r.version, r.batchSize, r.maxFailures, r.at],
      );
      return Number(row!.id);
    },
    async stopRollout(id, reason, at) {
      await sql.run("UPDATE rollouts SET state = 'stopped', stop_reason = ?, finished_at = ? WHERE id = ? AND state = 'running'", [reason, at, id]);
      await sql.run("UPDATE thing_updates SET state = 'cancelled', detail = ?, updated_at = ? WHERE rollout_id = ? AND state IN ('queued', 'pending')", [
        reason,
        at,
        id,
      ]);
    },
    async finishRollout(id, at) {
      await sql.run("UPDATE rollouts SET state = 'done', finished_at = ? WHERE id = ?", [at, id]);
    },
    async countStates(rolloutId, states, not = false) {
      const row = await sql.get<{ n: number }>(
        `SELECT COUNT(*) AS n FROM thing_updates WHERE rollout_id = ? AND state ${not ? "NOT IN" : "IN"} (${list(states)})
           AND thing_id IN (SELECT id FROM things WHERE revoked_at IS NULL)`,
        [rolloutId, ...states],
      );
      return row!.n;
    },
    async nextQueuedBatch(rolloutId) {
      const row = await sql.get<{ batch: number | null }>("SELECT MIN(batch) AS batch FROM thing_updates WHERE rollout_id = ? AND state = 'queued'", [
        rolloutId,
      ]);
      return row?.batch ?? null;
    },
    async releaseBatch(rolloutId, batch, at) {
      await sql.run("UPDATE thing_updates SET state = 'pending', updated_at = ? WHERE rollout_id = ? AND state = 'queued' AND batch = ?", [
        at,
        rolloutId,
        batch,
      ]);
    },

    thingRows: () => sql.all<ThingUpdateRow>("SELECT * FROM thing_updates"),
    thingRow: (thingId) => sql.get<ThingUpdateRow>("SELECT * FROM thing_updates WHERE thing_id = ?", [thingId]),
    async assign(a) {
      await sql.run(
        `INSERT INTO thing_updates (thing_id, rollout_id, to_version, batch, state, detail, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (thing_id) DO UPDATE SET rollout_id = excluded.rollout_id, to_version = excluded.to_version, batch = excluded.batch,
           state = excluded.state, detail = excluded.detail, updated_at = excluded.updated_at`,
        [a.thingId, a.rolloutId, a.toVersion, a.batch, a.state, a.detail, a.at],
      );
    },
    async recordRunning(thingId, running, at) {
      if (running.target === undefined) {
        await sql.run("UPDATE thing_updates SET version = ?, seen_at = ? WHERE thing_id = ?", [running.version, at, thingId]);
        return;
      }
      const outbox = running.outbox;
      await sql.run(
        `INSERT INTO thing_updates (thing_id, version, target, seen_at, outbox_depth, outbox_oldest_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (thing_id) DO UPDATE SET version = excluded.version, target = excluded.target, seen_at = excluded.seen_at,
           outbox_depth = COALESCE(excluded.outbox_depth, thing_updates.outbox_depth),
           outbox_oldest_at = CASE WHEN excluded.outbox_depth IS NULL THEN thing_updates.outbox_oldest_at ELSE excluded.outbox_oldest_at END`,
        [thingId, running.version, running.target, at, outbox?.depth ?? null, outbox?.oldestAt ?? null],
      );
    },
    async outboxAggregate() {
      const row = (await sql.get<{ reporting: number; depth_sum: number | null; depth_max: number | null; oldest_at: number | null }>(
        `SELECT COUNT(u.outbox_depth) AS reporting, SUM(u.outbox_depth) AS depth_sum, MAX(u.outbox_depth) AS depth_max, MIN(u.outbox_oldest_at) AS oldest_at
         FROM thing_updates u JOIN things t ON t.id = u.thing_id WHERE t.revoked_at IS NULL`,
      ))!;
      return { reporting: row.reporting, depthSum: row.depth_sum ?? 0, depthMax: row.depth_max ?? 0, oldestAt: row.oldest_at };
    },
    async rolloutAggregate() {
      const notRevoked = "JOIN things t ON t.id = u.thing_id WHERE t.revoked_at IS NULL";
      const running = await sql.get<{ n: number | bigint }>("SELECT COUNT(*) AS n FROM rollouts WHERE state = 'running'");
      const states = await sql.all<{ state: UpdateState; n: number | bigint }>(
        `SELECT u.state AS state, COUNT(*) AS n FROM thing_updates u ${notRevoked}
         AND u.state IS NOT NULL AND u.rollout_id = (SELECT MAX(id) FROM rollouts) GROUP BY u.state`,
      );
      const versions = await sql.all<{ version: string | null; n: number | bigint }>(
        "SELECT u.version AS version, COUNT(*) AS n FROM things t LEFT JOIN thing_updates u ON u.thing_id = t.id WHERE t.revoked_at IS NULL GROUP BY u.version",
      );
      return {
        running: Number(running?.n ?? 0),
        states: states.map((r) => ({ state: r.state, n: Number(r.n) })),
        versions: versions.map((r) => ({ version: r.version, n: Number(r.n) })),
      };
    },
    async setState(thingId, state, detail, at) {
      await sql.run("UPDATE thing_updates SET state = ?, detail = ?, updated_at = ? WHERE thing_id = ?", [state, detail, at, thingId]);
    },

    transaction: (fn) => sql.transaction((tx) => fn(sqlUpdateTables(tx))),
    async lockRollouts() {
      if (sql.dialect === "postgres") await sql.get("SELECT pg_advisory_xact_lock(?)", [ROLLOUT_LOCK]);
    },
  };
}
