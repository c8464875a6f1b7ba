/**
 * src/hub/updates: signed self-update, the hub's half (docs/updates.md).
 *
 *   update-key.ts    the hub's Ed25519 update key pair, in the hub home
 *   releases.ts      `hub release add`: a signed release checked and stored
 *   update-store.ts  the update tables (own connection to hub.db)
 *   updates.ts       Updates: releases, rollouts in batches with a failure threshold, and what
 *                    things poll and report
 *
 * A rollout offers a release to its things batch by batch: the first batch's things are
 * `pending` (offered when they next poll), later ones `queued`. When every thing of the
 * released batches has finished (healthy, rolled back, failed), the next batch is released,
 * unless more than `maxFailures` things failed or rolled back: then the rollout stops and the
 * things not yet offered are `cancelled`. A new rollout replaces a running one.
 */
import { InputError } from "../../shared/errors.ts";
import type { HubHome } from "../home/home.ts";
import type { HubStore, ThingRecord } from "../store/hub-store.ts";
import { readSignedRelease, releaseFilePath, type StoredRelease, storeReleaseFiles } from "./releases.ts";
import { ensureUpdateKey } from "./update-key.ts";
import {
  FAILURE_STATES,
  openUpdateStore,
  type ReleaseRow,
  type RolloutRow,
  TERMINAL_STATES,
  type ThingUpdateRow,
  type UpdateState,
  type UpdateStore,
} from "./update-store.ts";

export type { RolloutRow, ThingUpdateRow, UpdateState };

/** The states a thing may report (the rest are the hub's). */
export const REPORTED_STATES = ["downloading", "installed", "healthy", "rolled-back", "failed"] as const;
export type ReportedState = (typeof REPORTED_STATES)[number];

/** A thing's outbox as it reports it with a poll: entries waiting, and the age of the oldest in seconds (0 when empty). */
export interface OutboxReport {
  depth: number;
  oldestAgeSeconds: number;
}

/** The outboxes things reported, over the fleet (the hub's /metrics, docs/metrics.md). */
export interface OutboxSummary {
  /** things that reported their outbox at least once */
  reporting: number;
  /** entries waiting, summed over the things */
  depthSum: number;
  /** the largest one thing reported */
  depthMax: number;
  /** the oldest waiting entry of any thing, in seconds at `now` (0 when none waits) */
  oldestAgeSeconds: number;
}

/** What a thing is told when it polls: the release to install, or nothing. */
export interface Assignment {
  version: string;
  /** the manifest's signed bytes and their signature: the thing verifies them itself */
  manifest: string;
  signature: string;
}

export interface RolloutRequest {
  version: string;
  /** thing records to update; `all` takes every thing not revoked */
  things: ThingRecord[];
  /** `10%` (of the things, rounded up) or a count; default 10% */
  batch?: string;
  /** the rollout stops once more things than this failed or rolled back; default 0 */
  maxFailures?: number;
}

export interface RolloutStatus {
  rollout: RolloutRow | undefined;
  things: (ThingUpdateRow & { name: string })[];
}

/** `10%` or `3` → things per batch for `count` things (at least 1). Throws InputError otherwise. */
export function batchSize(spec: string, count: number): number {
  const percent = /^(\d{1,3})%$/.exec(spec.trim());
  if (percent) {
    const p = Number(percent[1]);
    if (p < 1 || p > 100) throw new InputError(`--batch ${spec}: a percentage is 1% to 100%`);
    return Math.max(1, Math.ceil((count * p) / 100));
  }
  if (/^\d{1,6}$/.test(spec.trim()) && Number(spec) >= 1) return Number(spec);
  throw new InputError(`--batch ${spec}: give a percentage of the things (10%) or a number of things (5)`);
}

export interface UpdatesDeps {
  home: HubHome;
  store: HubStore;
  /** Unix ms */
  now?: () => number;
}

export class Updates {
  private readonly now: () => number;
  private opened: UpdateStore | undefined;

  constructor(private readonly deps: UpdatesDeps) {
    this.now = deps.now ?? Date.now;
  }

  private get db() {
    this.opened ??= openUpdateStore(this.deps.home.paths.database);
    return this.opened.db;
  }

  /** The hub's update public key (`ed25519:<base64>`), made on first use: for distributions and enrolment. */
  publicKey(): string {
    return ensureUpdateKey(this.deps.home.paths.dir);
  }

  /** Checks and stores the signed release in `dir` (releases.ts). Throws InputError or ConflictError. */
  async addRelease(dir: string): Promise<{ release: StoredRelease; outcome: "stored" | "already stored" }> {
    const release = readSignedRelease(dir, this.publicKey());
    const outcome = await storeReleaseFiles(this.deps.home.paths.dir, dir, release);
    this.db.run("INSERT OR IGNORE INTO releases (version, manifest, signature, added_at) VALUES (?, ?, ?, ?)", [
      release.manifest.version,
      release.manifestText,
      release.signature,
      this.now(),
    ]);
    return { release, outcome };
  }

  listReleases(): ReleaseRow[] {
    return this.db.all<ReleaseRow>("SELECT * FROM releases ORDER BY added_at");
  }

  release(version: string): ReleaseRow | undefined {
    return this.db.get<ReleaseRow>("SELECT * FROM releases WHERE version = ?", [version]);
  }

  /**
   * The stored binary of `version` for `target`: its path and size, or undefined when the
   * release or its target is not there.
   */
  binary(version: string, target: string): { path: string; size: number; sha256: string } | undefined {
    const row = this.release(version);
    if (!row) return undefined;
    const entry = (JSON.parse(row.manifest) as { targets: Record<string, { file: string; size: number; sha256: string }> }).targets[target];
    return entry ? { path: releaseFilePath(this.deps.home.paths.dir, version, entry.file), size: entry.size, sha256: entry.sha256 } : undefined;
  }

  /**
   * Starts a rollout of `version` to `things` (a new one replaces a running one; its things not
   * yet offered are cancelled). Things that already run `version` are healthy at once and take
   * no batch. Returns the rollout. Throws InputError for an unknown release, no things, a bad batch.
   */
  startRollout(request: RolloutRequest): RolloutRow {
    if (!this.release(request.version)) throw new InputError(`no release ${request.version}; add it first with \`flashlex hub release add DIR\``);
    const things = request.things.filter((t) => t.revokedAt === null);
    if (!things.length) throw new InputError("no things to update (revoked things are left out)");
    const size = batchSize(request.batch ?? "10%", things.length);
    const maxFailures = request.maxFailures ?? 0;
    const at = this.now();
    return this.db.transaction(() => {
      const running = this.db.get<RolloutRow>("SELECT * FROM rollouts WHERE state = 'running'");
      if (running) this.stop(running.id, `replaced by the rollout to ${request.version}`, at);
      const id = Number(
        this.db.run("INSERT INTO rollouts (version, batch_size, max_failures, state, created_at) VALUES (?, ?, ?, 'running', ?)", [
          request.version,
          size,
          maxFailures,
          at,
        ]).lastInsertRowid,
      );
      let index = 0;
      for (const thing of things) {
        const current = this.row(thing.id);
        const already = current?.version === request.version;
        const batch = already ? null : Math.floor(index++ / size);
        this.db.run(
          `INSERT INTO thing_updates (thing_id, rollout_id, to_version, batch, state, detail, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (thing_id) DO UPDATE SET rollout_id = excluded.rollout_id, to_version = excluded.to_version, batch = excluded.batch,
             state = excluded.state, detail = excluded.detail, updated_at = excluded.updated_at`,
          [thing.id, id, request.version, batch, already ? "healthy" : "queued", already ? `already runs ${request.version}` : null, at],
        );
      }
      this.advanceInTransaction(id, at);
      return this.db.get<RolloutRow>("SELECT * FROM rollouts WHERE id = ?", [id])!;
    });
  }

  /**
   * The latest rollout (or rollout `id`) and every thing that is not revoked, with what it last
   * said it runs and its update state (null fields: it never polled, or was never in a rollout).
   */
  async status(id?: number): Promise<RolloutStatus> {
    const rollout =
      id === undefined
        ? this.db.get<RolloutRow>("SELECT * FROM rollouts ORDER BY id DESC LIMIT 1")
        : this.db.get<RolloutRow>("SELECT * FROM rollouts WHERE id = ?", [id]);
    const rows = this.thingRows();
    const things = (await this.deps.store.listThings()).filter((t) => t.revokedAt === null);
    const empty = (thingId: string): ThingUpdateRow => ({
      thing_id: thingId,
      version: null,
      target: null,
      seen_at: null,
      rollout_id: null,
      to_version: null,
      batch: null,
      state: null,
      detail: null,
      updated_at: null,
      outbox_depth: null,
      outbox_oldest_at: null,
    });
    return { rollout, things: things.map((t) => ({ ...(rows.get(t.id) ?? empty(t.id)), name: t.name })) };
  }

  /** Every thing's row (what it runs, its update state), by thing id: for lists of things. */
  thingRows(): Map<string, ThingUpdateRow> {
    return new Map(this.db.all<ThingUpdateRow>("SELECT * FROM thing_updates").map((r) => [r.thing_id, r] as const));
  }

  /**
   * A thing polls: records what it runs (`version`, `target`) and answers the release it should
   * install, when its rollout is running and has offered it one. A thing that already runs the
   * offered version is healthy (an earlier report was lost). `outbox`, when the thing sends it,
   * is kept for the fleet's gauges (`outboxSummary`); a poll without it keeps the last report.
   */
  poll(thing: ThingRecord, running: { version: string; target: string; outbox?: OutboxReport }): Assignment | undefined {
    const at = this.now();
    const outbox = running.outbox;
    // The age is turned into a time on the hub's clock: a device whose clock is wrong still reports right.
    const oldestAt = outbox && outbox.depth > 0 ? at - Math.round(outbox.oldestAgeSeconds * 1000) : null;
    return this.db.transaction(() => {
      this.db.run(
        `INSERT INTO thing_updates (thing_id, version, target, seen_at, outbox_depth, outbox_oldest_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (thing_id) DO UPDATE SET version = excluded.version, target = excluded.target, seen_at = excluded.seen_at,
           outbox_depth = COALESCE(excluded.outbox_depth, outbox_depth),
           outbox_oldest_at = CASE WHEN excluded.outbox_depth IS NULL THEN outbox_oldest_at ELSE excluded.outbox_oldest_at END`,
        [thing.id, running.version, running.target, at, outbox?.depth ?? null, oldestAt],
      );
      const row = this.row(thing.id)!;
      if (!row.rollout_id || !row.to_version || (row.state !== "pending" && row.state !== "downloading")) return undefined;
      const rollout = this.db.get<RolloutRow>("SELECT * FROM rollouts WHERE id = ?", [row.rollout_id]);
      if (rollout?.state !== "running") return undefined;
      if (row.version === row.to_version) {
        this.setState(thing.id, "healthy", `runs ${row.to_version}`, at);
        this.advanceInTransaction(rollout.id, at);
        return undefined;
      }
      const release = this.release(row.to_version)!;
      return { version: release.version, manifest: release.manifest, signature: release.signature };
    });
  }

  /**
   * A thing reports how its update of `version` goes. Ignored (false) when the thing has no
   * update of that version (a late report of an older rollout). A failure counts toward the
   * rollout's threshold; a finished batch releases the next one.
   */
  report(thing: ThingRecord, report: { state: ReportedState; version: string; running: string; detail?: string }): boolean {
    const at = this.now();
    return this.db.transaction(() => {
      const row = this.row(thing.id);
      if (!row?.rollout_id || row.to_version !== report.version || row.state === "cancelled") return false;
      this.db.run("UPDATE thing_updates SET version = ?, seen_at = ? WHERE thing_id = ?", [report.running, at, thing.id]);
      this.setState(thing.id, report.state, report.detail?.slice(0, 500) ?? null, at);
      this.advanceInTransaction(row.rollout_id, at);
      return true;
    });
  }

  /**
   * The outboxes things reported with their last poll, summed and maxed over the things that are
   * not revoked: one aggregate query, whatever the fleet's size. A report is as old as the
   * thing's last poll (update.checkSeconds); the oldest entry's age keeps growing until the next.
   */
  outboxSummary(): OutboxSummary {
    const row = this.db.get<{ reporting: number; depth_sum: number | null; depth_max: number | null; oldest_at: number | null }>(
      `SELECT COUNT(u.outbox_depth) AS reporting, SUM(u.outbox_depth) AS depth_sum, MAX(u.outbox_depth) AS depth_max, MIN(u.outbox_oldest_at) AS oldest_at
       FROM thing_updates u JOIN things t ON t.id = u.thing_id WHERE t.revoked_at IS NULL`,
    )!;
    return {
      reporting: row.reporting,
      depthSum: row.depth_sum ?? 0,
      depthMax: row.depth_max ?? 0,
      oldestAgeSeconds: row.oldest_at === null ? 0 : Math.max(0, (this.now() - row.oldest_at) / 1000),
    };
  }

  close(): void {
    this.opened?.close();
    this.opened = undefined;
  }

  /** What the thing last said it runs and how its update goes (undefined: it never reported and was never in a rollout). */
  forThing(thingId: string): ThingUpdateRow | undefined {
    return this.row(thingId);
  }

  private row(thingId: string): ThingUpdateRow | undefined {
    return this.db.get<ThingUpdateRow>("SELECT * FROM thing_updates WHERE thing_id = ?", [thingId]);
  }

  private setState(thingId: string, state: UpdateState, detail: string | null, at: number): void {
    this.db.run("UPDATE thing_updates SET state = ?, detail = ?, updated_at = ? WHERE thing_id = ?", [state, detail, at, thingId]);
  }

  private stop(id: number, reason: string, at: number): void {
    this.db.run("UPDATE rollouts SET state = 'stopped', stop_reason = ?, finished_at = ? WHERE id = ? AND state = 'running'", [reason, at, id]);
    this.db.run("UPDATE thing_updates SET state = 'cancelled', detail = ?, updated_at = ? WHERE rollout_id = ? AND state IN ('queued', 'pending')", [
      reason,
      at,
      id,
    ]);
  }

  /** Inside a transaction: stop past the threshold, else release the next batch when the released ones are done. */
  private advanceInTransaction(id: number, at: number): void {
    const rollout = this.db.get<RolloutRow>("SELECT * FROM rollouts WHERE id = ?", [id]);
    if (rollout?.state !== "running") return;
    const list = (states: readonly string[]) => states.map((s) => `'${s}'`).join(", ");
    const failures = this.db.get<{ n: number }>(`SELECT COUNT(*) AS n FROM thing_updates WHERE rollout_id = ? AND state IN (${list(FAILURE_STATES)})`, [id])!.n;
    if (failures > rollout.max_failures) {
      this.stop(id, `${failures} things failed or rolled back, more than --max-failures ${rollout.max_failures}`, at);
      return;
    }
    const inFlight = this.db.get<{ n: number }>(
      `SELECT COUNT(*) AS n FROM thing_updates WHERE rollout_id = ? AND state NOT IN (${list(TERMINAL_STATES)}, 'queued')`,
      [id],
    )!.n;
    if (inFlight > 0) return;
    const next = this.db.get<{ batch: number | null }>("SELECT MIN(batch) AS batch FROM thing_updates WHERE rollout_id = ? AND state = 'queued'", [id]);
    if (next?.batch === null || next?.batch === undefined) {
      this.db.run("UPDATE rollouts SET state = 'done', finished_at = ? WHERE id = ?", [at, id]);
      return;
    }
    this.db.run("UPDATE thing_updates SET state = 'pending', updated_at = ? WHERE rollout_id = ? AND state = 'queued' AND batch = ?", [at, id, next.batch]);
  }
}
