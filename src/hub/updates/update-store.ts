/**
 * The update tables of the hub database (the migration is in src/hub/store/hub-store.ts):
 * releases, rollouts and one row per thing. A connection of its own to hub.db (SQLite WAL lets
 * several connections share a file; busy_timeout makes writers wait their turn), so the update
 * feature adds no method to the HubStore that the other features share.
 *
 * Times are Unix milliseconds.
 */
import type { SqlDatabase } from "../../shared/sqlite/driver.ts";
import { applyPragmas } from "../../shared/sqlite/migrate.ts";
import { openSqlDatabase } from "../../shared/sqlite/open.ts";

/**
 * A thing's update state, as the hub shows it:
 * - `queued`: in a rollout's later batch; `pending`: offered to the thing, not yet picked up;
 * - `downloading`, `installed`: the thing said so (installed: the new binary is in place and
 *   starting); `healthy`: the new version started, passed its self-test and reported;
 * - `rolled-back`: the new version did not come up healthy and the previous binary is back;
 * - `failed`: the thing refused the update (signature, SHA-256, target) or could not install it;
 * - `cancelled`: the rollout stopped (too many failures, or another rollout replaced it) first.
 */
export type UpdateState = "queued" | "pending" | "downloading" | "installed" | "healthy" | "rolled-back" | "failed" | "cancelled";
export const TERMINAL_STATES: readonly UpdateState[] = ["healthy", "rolled-back", "failed", "cancelled"];
export const FAILURE_STATES: readonly UpdateState[] = ["rolled-back", "failed"];

export interface ReleaseRow {
  version: string;
  /** the manifest's exact signed bytes, as text (UTF-8 JSON) */
  manifest: string;
  signature: string;
  added_at: number;
}

export interface RolloutRow {
  id: number;
  version: string;
  batch_size: number;
  max_failures: number;
  state: "running" | "stopped" | "done";
  stop_reason: string | null;
  created_at: number;
  finished_at: number | null;
}

export interface ThingUpdateRow {
  thing_id: string;
  /** what the thing last said it runs */
  version: string | null;
  target: string | null;
  seen_at: number | null;
  rollout_id: number | null;
  to_version: string | null;
  batch: number | null;
  state: UpdateState | null;
  detail: string | null;
  updated_at: number | null;
  /** the thing's outbox (egress not yet delivered) at its last poll, in messages; null: never reported */
  outbox_depth: number | null;
  /** Unix ms, on the hub's clock, when the oldest of those entries was made; null: the outbox was empty */
  outbox_oldest_at: number | null;
}

export interface UpdateStore {
  db: SqlDatabase;
  close(): void;
}

/** Opens another connection to the (already migrated) hub database `file`. */
export function openUpdateStore(file: string): UpdateStore {
  const db = openSqlDatabase(file, { create: false });
  applyPragmas(db);
  return { db, close: () => db.close() };
}
