/**
 * The update feature's part of the hub database (src/hub/updates, docs/updates.md): the releases
 * the hub stores, rollouts of one to many things in batches, and per thing what it runs and how
 * its update goes. The rules (batches, thresholds) live in src/hub/updates/updates.ts; this is
 * only what it reads and writes, so both drivers serve it (sql-hub-store.ts).
 *
 * Times are Unix milliseconds.
 */

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
/** Every update state, in the order a thing goes through them. */
export const UPDATE_STATES: readonly UpdateState[] = ["queued", "pending", "downloading", "installed", "healthy", "rolled-back", "failed", "cancelled"];
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
  /** the outbox the thing reported with its last poll that carried one (entries waiting) */
  outbox_depth: number | null;
  /** when its oldest waiting entry was made, on the hub's clock (null: none waits, or never reported) */
  outbox_oldest_at: number | null;
}

/** The outboxes reported by things not revoked, aggregated in one query (Updates.outboxSummary). */
export interface OutboxAggregate {
  reporting: number;
  depthSum: number;
  depthMax: number;
  /** the earliest outbox_oldest_at, or null */
  oldestAt: number | null;
}

/** Where the fleet's things (not revoked) stand on updates, counted in the database (Updates.rolloutSummary). */
export interface RolloutAggregate {
  /** rollouts running (0 or 1) */
  running: number;
  /** the things of the latest rollout, by their update state */
  states: { state: UpdateState; n: number }[];
  /** things by the version they last reported; null: never polled */
  versions: { version: string | null; n: number }[];
}

/** A thing's place in a rollout, as `assign` writes it. */
export interface RolloutAssignment {
  thingId: string;
  rolloutId: number;
  toVersion: string;
  /** null: takes no batch (it already runs the version) */
  batch: number | null;
  state: UpdateState;
  detail: string | null;
  at: number;
}

export interface UpdateTables {
  /** stores a release once; a version already stored is left as it is */
  insertRelease(row: ReleaseRow): Promise<void>;
  /** oldest first */
  listReleases(): Promise<ReleaseRow[]>;
  release(version: string): Promise<ReleaseRow | undefined>;

  rollout(id: number): Promise<RolloutRow | undefined>;
  /** the newest rollout (the highest id), whatever its state */
  latestRollout(): Promise<RolloutRow | undefined>;
  runningRollout(): Promise<RolloutRow | undefined>;
  /** a new `running` rollout; its id */
  insertRollout(rollout: { version: string; batchSize: number; maxFailures: number; at: number }): Promise<number>;
  /** running → stopped with `reason`; its things still `queued` or `pending` are `cancelled` */
  stopRollout(id: number, reason: string, at: number): Promise<void>;
  /** → done */
  finishRollout(id: number, at: number): Promise<void>;
  /** how many of the rollout's things (those that exist and are not revoked) are in one of `states` (or, with `not`, in none of them) */
  countStates(rolloutId: number, states: readonly string[], not?: boolean): Promise<number>;
  /** the lowest batch number still `queued`, or null */
  nextQueuedBatch(rolloutId: number): Promise<number | null>;
  /** the rollout's `queued` things of `batch` → `pending` */
  releaseBatch(rolloutId: number, batch: number, at: number): Promise<void>;

  /** every thing's row */
  thingRows(): Promise<ThingUpdateRow[]>;
  thingRow(thingId: string): Promise<ThingUpdateRow | undefined>;
  /** puts the thing in a rollout (replacing its place in an earlier one) */
  assign(assignment: RolloutAssignment): Promise<void>;
  /**
   * what the thing says it runs, and when it said so (creates its row); with `outbox`, its
   * outbox as well (a poll without one keeps the last report)
   */
  recordRunning(thingId: string, running: { version: string; target?: string; outbox?: { depth: number; oldestAt: number | null } }, at: number): Promise<void>;
  /** the outboxes of the things not revoked, summed and maxed (docs/metrics.md) */
  outboxAggregate(): Promise<OutboxAggregate>;
  /** the running rollout, the latest one's things by state, and the things by version (docs/metrics.md) */
  rolloutAggregate(): Promise<RolloutAggregate>;
  setState(thingId: string, state: UpdateState, detail: string | null, at: number): Promise<void>;

  /** runs `fn` in one transaction over these tables (rolled back if it throws) */
  transaction<T>(fn: (tables: UpdateTables) => Promise<T>): Promise<T>;
  /**
   * Inside `transaction`, before its first write: waits until no other transaction (of any hub on
   * the database) changes rollouts, and keeps them out until this one ends. PostgreSQL: a
   * transaction-level advisory lock (its READ COMMITTED would otherwise let two hubs both start a
   * rollout, or both release the next batch); SQLite: nothing to do (BEGIN IMMEDIATE already
   * runs writers one at a time).
   */
  lockRollouts(): Promise<void>;
}
