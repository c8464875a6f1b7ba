/**
 * src/hub/updates: signed self-update, the hub's half (docs/updates.md).
 *
 *   update-key.ts    the hub's Ed25519 update key pair, in the hub home
 *   releases.ts      `hub release add`: a signed release checked and stored
 *   the tables       src/hub/store/update-tables.ts: part of the HubStore, in both drivers
 *   updates.ts       Updates: releases, rollouts in batches with a failure threshold, and what
 *                    things poll and report
 *
 * A rollout offers a release to its things batch by batch: the first batch's things are
 * `pending` (offered when they next poll), later ones `queued`. When every thing of the
 * released batches has finished (healthy, rolled back, failed), the next batch is released,
 * unless more than `maxFailures` things failed or rolled back: then the rollout stops and the
 * things not yet offered are `cancelled`. A new rollout replaces a running one.
 */
import { MANIFEST_FILE } from "../../protocol/release-manifest.ts";
import { ConflictError, InputError } from "../../shared/errors.ts";
import { cutGiven, quoteGiven } from "../../shared/log.ts";
import { pathExists } from "../../shared/path-exists.ts";
import type { HubHome } from "../home/home.ts";
import type { HubStore, ThingRecord, UpdateTables } from "../store/hub-store.ts";
import {
  FAILURE_STATES,
  type ReleaseRow,
  type RolloutRow,
  TERMINAL_STATES,
  type ThingUpdateRow,
  UPDATE_STATES,
  type UpdateState,
} from "../store/update-tables.ts";
import { readSignedRelease, releaseFilePath, releasesDir, removeSetAside, type StoredRelease, setReleaseFilesAside, storeReleaseFiles } from "./releases.ts";
import { updateKey } from "./update-key.ts";

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

/** Where the fleet stands on updates, for the gauges (docs/metrics.md); things revoked are left out. */
export interface RolloutSummary {
  /** a rollout is running */
  running: boolean;
  /** the latest rollout's things by update state, every state present (0 when none) */
  states: Record<UpdateState, number>;
  /** things by the version they last reported; `unknown`: never polled (no update section, or not yet) */
  versions: Record<string, number>;
}

/** The most failures a rollout may be told to let pass. */
export const MAX_FAILURES_LIMIT = 1_000_000;
/** How much of a thing's report `detail` is kept, and logged, in characters: its reason, not its whole body. */
export const MAX_DETAIL_CHARS = 500;

/** `10%` or `3` → things per batch for `count` things (at least 1). Throws InputError otherwise. */
export function batchSize(spec: string, count: number): number {
  const percent = /^(\d{1,3})%$/.exec(spec.trim());
  if (percent) {
    const p = Number(percent[1]);
    if (p < 1 || p > 100) throw new InputError(`batch ${cutGiven(spec)}: a percentage is 1% to 100%`);
    return Math.max(1, Math.ceil((count * p) / 100));
  }
  if (/^\d{1,6}$/.test(spec.trim()) && Number(spec) >= 1) return Number(spec);
  throw new InputError(`batch ${cutGiven(spec)}: give a percentage of the things (10%) or a number of things (5)`);
}

export interface UpdatesDeps {
  home: HubHome;
  store: HubStore;
  /** Unix ms */
  now?: () => number;
}

/**
 * The update use cases above, over the hub store and the home's files; it keeps nothing in
 * memory but its clock. Times are Unix ms.
 */
export class Updates {
  private readonly now: () => number;

  constructor(private readonly deps: UpdatesDeps) {
    this.now = deps.now ?? Date.now;
  }

  private get tables(): UpdateTables {
    return this.deps.store.updates;
  }

  /** The hub's update public key (`ed25519:<base64>`), made on first use; throws ConfigError (78) as update-key.ts `updateKey`. */
  publicKey(): Promise<string> {
    return updateKey(this.deps.home, this.deps.store, this.now());
  }

  /**
   * Checks and stores the signed release in `dir` (releases.ts). Throws InputError, or
   * ConflictError when its version names another manifest, in the database or on disk: a
   * version names one set of bytes for good (files removed to free space and another release
   * signed under the version would be offered with the first one's manifest: every thing fails).
   */
  async addRelease(dir: string): Promise<{ release: StoredRelease; outcome: "stored" | "already stored" }> {
    const release = readSignedRelease(dir, await this.publicKey());
    const known = await this.tables.release(release.manifest.version);
    if (known && known.manifest !== release.manifestText) {
      throw new ConflictError(`release ${release.manifest.version} is already stored with another manifest; a version names one set of binaries`);
    }
    const outcome = await storeReleaseFiles(this.deps.home.paths.shared, dir, release);
    await this.tables.insertRelease({
      version: release.manifest.version,
      manifest: release.manifestText,
      signature: release.signature,
      added_at: this.now(),
    });
    return { release, outcome };
  }

  /** The stored releases, each with whether its binaries are still on disk (`hub release remove` takes them away). */
  async listReleases(): Promise<(ReleaseRow & { stored: boolean })[]> {
    return (await this.tables.listReleases()).map((row) => ({ ...row, stored: this.stored(row.version) }));
  }

  /**
   * Removes the binaries of release `version` (its directory under releases/: ~120 MB a target)
   * to free the disk. Its row stays, so the version still names the same binaries (addRelease
   * refuses another manifest under it), and `hub release add` of the same directory puts them
   * back. Throws InputError (65) for an unknown version; ConflictError while a running rollout is
   * to it or a thing that is not revoked is on its way to it (queued, pending, downloading,
   * installed): it could not download it. Returns the bytes freed (0 when they were gone already).
   */
  async removeRelease(version: string): Promise<{ bytes: number }> {
    if (!(await this.release(version))) throw new InputError(`no release ${quoteGiven(version)} (see \`flashlex hub release list\`)`);
    // a revoked or deleted thing never polls again: its row holds nothing back
    const live = new Map((await this.deps.store.listThings()).filter((thing) => thing.revokedAt === null).map((thing) => [thing.id, thing.name]));
    // Under the rollouts' lock, as startRollout checks the files: a rollout started at the same
    // moment either comes first (and this is refused) or finds the files gone (verify pass 31, F2).
    const aside = await this.tables.transaction(async (t) => {
      await t.lockRollouts();
      const at = this.now();
      // a rollout whose things left were revoked or deleted is over (advance), though no hub serve said so yet
      const before = await t.runningRollout();
      if (before) await advance(t, before.id, at);
      const running = await t.runningRollout();
      if (running?.version === version) {
        throw new ConflictError(
          `release ${version} is being rolled out (rollout ${running.id}); stop it first (flashlex hub update stop), or remove it once it is done`,
        );
      }
      const onTheWay = (await t.thingRows()).filter(
        (row) => live.has(row.thing_id) && row.to_version === version && !TERMINAL_STATES.includes(row.state as UpdateState),
      );
      if (onTheWay.length) {
        // named, with their state: one left mid-download by a stopped rollout holds it until it
        // reports, is revoked, or a rollout to another release takes it (attack round 28, F1)
        const named = onTheWay.slice(0, 3).map((row) => `${live.get(row.thing_id)} (${row.state})`);
        const more = onTheWay.length > 3 ? ` and ${onTheWay.length - 3} more` : "";
        throw new ConflictError(
          `release ${version} is still on its way to ${onTheWay.length} thing${onTheWay.length === 1 ? "" : "s"}: ${named.join(", ")}${more}; remove it once they are done (flashlex hub update status), or once a rollout to another release takes them`,
        );
      }
      return setReleaseFilesAside(this.deps.home.paths.shared, version);
    });
    return { bytes: aside ? removeSetAside(aside) : 0 };
  }

  /** Whether the binaries of `version` are on disk (its manifest, written last, says the directory is whole). */
  private stored(version: string): boolean {
    return pathExists(releaseFilePath(this.deps.home.paths.shared, version, MANIFEST_FILE));
  }

  release(version: string): Promise<ReleaseRow | undefined> {
    return this.tables.release(version);
  }

  /**
   * The stored binary of `version` for `target`: its path and size, or undefined when the
   * release or its target is not there.
   */
  async binary(version: string, target: string): Promise<{ path: string; size: number; sha256: string } | undefined> {
    const row = await this.release(version);
    if (!row) return undefined;
    const entry = (JSON.parse(row.manifest) as { targets: Record<string, { file: string; size: number; sha256: string }> }).targets[target];
    return entry ? { path: releaseFilePath(this.deps.home.paths.shared, version, entry.file), size: entry.size, sha256: entry.sha256 } : undefined;
  }

  /**
   * Starts a rollout of `version` to `things` (a new one replaces a running one; its things not
   * yet offered are cancelled). Things that already run `version` are healthy at once and take
   * no batch. Returns the rollout. Throws InputError for an unknown release, no things, a bad batch.
   */
  async startRollout(request: RolloutRequest): Promise<RolloutRow> {
    if (!(await this.release(request.version)))
      throw new InputError(`no release ${quoteGiven(request.version)}; add it first with \`flashlex hub release add DIR\``);
    const filesGone = () =>
      new InputError(
        `release ${request.version}'s files are gone from ${releasesDir(this.deps.home.paths.shared)} (removed, or by hand); add it again with \`flashlex hub release add DIR\` (things could not download it)`,
      );
    if (!this.stored(request.version)) throw filesGone();
    // a thing named twice (by its name and its id, say) is one thing of the rollout
    const things = [...new Map(request.things.filter((t) => t.revokedAt === null).map((t) => [t.id, t])).values()];
    if (!things.length) throw new InputError("no things to update (revoked things are left out)");
    const size = batchSize(request.batch ?? "10%", things.length);
    const maxFailures = request.maxFailures ?? 0;
    // from the API as given: -5 stopped the rollout at once, 1.5 was stored
    if (!Number.isSafeInteger(maxFailures) || maxFailures < 0 || maxFailures > MAX_FAILURES_LIMIT) {
      throw new InputError(
        `maxFailures must be a whole number from 0 to ${MAX_FAILURES_LIMIT}, not ${cutGiven(JSON.stringify(maxFailures) ?? String(maxFailures))}`,
      );
    }
    const at = this.now();
    return this.tables.transaction(async (t) => {
      // One start at a time fleet-wide (several hubs): two would both see no running rollout.
      // The partial unique index rollouts_one_running stands behind this.
      await t.lockRollouts();
      // again under the lock: a `hub release remove` of it may have come in between (removeRelease)
      if (!this.stored(request.version)) throw filesGone();
      const running = await t.runningRollout();
      if (running) await t.stopRollout(running.id, `replaced by the rollout to ${request.version}`, at);
      const id = await t.insertRollout({ version: request.version, batchSize: size, maxFailures, at });
      let index = 0;
      for (const thing of things) {
        const current = await t.thingRow(thing.id);
        const already = current?.version === request.version;
        const batch = already ? null : Math.floor(index++ / size);
        await t.assign({
          thingId: thing.id,
          rolloutId: id,
          toVersion: request.version,
          batch,
          state: already ? "healthy" : "queued",
          detail: already ? `already runs ${request.version}` : null,
          at,
        });
      }
      await advance(t, id, at);
      return (await t.rollout(id))!;
    });
  }

  /**
   * Stops the running rollout (verify pass 31, F5: the only way was a rollout to another release,
   * which offered that one). Its things still queued or offered and not yet downloading are
   * cancelled; those downloading or installed go on to their outcome, which is still recorded.
   * Returns the rollout as stopped. Throws ConflictError (65 / 409) when no rollout is running.
   */
  async stopRunningRollout(reason: string): Promise<RolloutRow> {
    const at = this.now();
    return this.tables.transaction(async (t) => {
      await t.lockRollouts();
      const running = await t.runningRollout();
      if (!running) throw new ConflictError("no rollout is running (flashlex hub update status)");
      await t.stopRollout(running.id, reason, at);
      return (await t.rollout(running.id))!;
    });
  }

  /**
   * The latest rollout (or rollout `id`) and every thing that is not revoked, with what it last
   * said it runs and its update state (null fields: it never polled, or was never in a rollout).
   */
  async status(id?: number): Promise<RolloutStatus> {
    const rollout = id === undefined ? await this.tables.latestRollout() : await this.tables.rollout(id);
    const rows = await this.thingRows();
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

  /**
   * The outboxes things reported with their last poll, summed and maxed over the things that are
   * not revoked: one aggregate query, whatever the fleet's size. A report is as old as the
   * thing's last poll (update.checkSeconds); the oldest entry's age keeps growing until the next.
   */
  async outboxSummary(): Promise<OutboxSummary> {
    const a = await this.tables.outboxAggregate();
    return {
      reporting: a.reporting,
      depthSum: a.depthSum,
      depthMax: a.depthMax,
      oldestAgeSeconds: a.oldestAt === null ? 0 : Math.max(0, (this.now() - a.oldestAt) / 1000),
    };
  }

  /** Where the fleet stands on updates: three aggregate queries, whatever the fleet's size. */
  async rolloutSummary(): Promise<RolloutSummary> {
    const a = await this.tables.rolloutAggregate();
    const states = Object.fromEntries(UPDATE_STATES.map((state) => [state, 0])) as Record<UpdateState, number>;
    for (const { state, n } of a.states) states[state] = n;
    const versions: Record<string, number> = {};
    for (const { version, n } of a.versions) versions[version ?? "unknown"] = (versions[version ?? "unknown"] ?? 0) + n;
    return { running: a.running > 0, states, versions };
  }

  /** Every thing's row (what it runs, its update state), by thing id: for lists of things. */
  async thingRows(): Promise<Map<string, ThingUpdateRow>> {
    return new Map((await this.tables.thingRows()).map((r) => [r.thing_id, r] as const));
  }

  /**
   * A thing polls: records what it runs (`version`, `target`) and answers the release it should
   * install, when its rollout is running and has offered it one. A thing that already runs the
   * offered version is healthy (an earlier report was lost). `outbox`, when the thing sends it,
   * is kept for the fleet's gauges (`outboxSummary`); a poll without it keeps the last report.
   */
  poll(thing: ThingRecord, running: { version: string; target: string; outbox?: OutboxReport }): Promise<Assignment | undefined> {
    const at = this.now();
    const reported = running.outbox;
    // The age is turned into a time on the hub's clock: a device whose clock is wrong still reports right.
    const outbox = reported && { depth: reported.depth, oldestAt: reported.depth > 0 ? at - Math.round(reported.oldestAgeSeconds * 1000) : null };
    return this.tables.transaction(async (t) => {
      // A poll that will finish the thing's update advances its rollout: it takes the rollouts'
      // lock before its first write, as report() does, so that it cannot deadlock with a
      // startRollout (which holds the lock and writes thing rows).
      const before = await t.thingRow(thing.id);
      if (before?.rollout_id && before.to_version === running.version && (before.state === "pending" || before.state === "downloading")) {
        await t.lockRollouts();
      }
      await t.recordRunning(thing.id, { version: running.version, target: running.target, outbox }, at);
      const row = (await t.thingRow(thing.id))!;
      if (!row.rollout_id || !row.to_version || (row.state !== "pending" && row.state !== "downloading")) return undefined;
      const rollout = await t.rollout(row.rollout_id);
      if (rollout?.state !== "running") {
        await settleAfterStop(t, thing.id, row, at);
        return undefined;
      }
      if (row.version === row.to_version) {
        await t.setState(thing.id, "healthy", `runs ${row.to_version}`, at);
        await advance(t, rollout.id, at);
        return undefined;
      }
      const release = (await t.release(row.to_version))!;
      return { version: release.version, manifest: release.manifest, signature: release.signature };
    });
  }

  /**
   * A thing reports how its update of `version` goes. Ignored (false) when the thing has no
   * update of that version (a late report of an older rollout). A failure counts toward the
   * rollout's threshold; a finished batch releases the next one.
   */
  report(thing: ThingRecord, report: { state: ReportedState; version: string; running: string; detail?: string }): Promise<boolean> {
    const at = this.now();
    return this.tables.transaction(async (t) => {
      // Reports of two things handled by two hubs at once: one advances the rollout after the
      // other has committed, and sees its state (the lock, before any write).
      await t.lockRollouts();
      const row = await t.thingRow(thing.id);
      // A row cancelled by a stop may belong to a thing the hub had already offered it to, which
      // downloads and installs all the same: what it says is what happened (verify pass 32, F4).
      if (!row?.rollout_id || row.to_version !== report.version) return false;
      await t.recordRunning(thing.id, { version: report.running }, at);
      await t.setState(thing.id, report.state, report.detail?.slice(0, MAX_DETAIL_CHARS) ?? null, at);
      await advance(t, row.rollout_id, at);
      return true;
    });
  }

  /**
   * Advances the running rollout, if any (advance): for what no poll or report of a thing will
   * say, a thing of the current batch revoked or deleted (by any process). The hub's
   * revocation poll calls it.
   */
  advanceRunning(): Promise<void> {
    return this.tables.transaction(async (t) => {
      const running = await t.runningRollout();
      if (running) await advance(t, running.id, this.now());
    });
  }

  /** What the thing last said it runs and how its update goes (undefined: it never reported and was never in a rollout). */
  forThing(thingId: string): Promise<ThingUpdateRow | undefined> {
    return this.tables.thingRow(thingId);
  }
}

/**
 * Inside a transaction, for a thing that polls while its row is still on its way under a rollout
 * that no longer runs (stopped while it downloaded): the agent polls only between updates, so
 * that download is over. Running the version, it installed it (its report was lost): healthy.
 * Else it gave up (serve restarted, the network failed) and nothing will offer it the release
 * again: cancelled, which lets `hub release remove` go on and any later rollout take the thing,
 * where `downloading` stayed for ever (verify pass 32).
 */
async function settleAfterStop(t: UpdateTables, thingId: string, row: ThingUpdateRow, at: number): Promise<void> {
  if (row.version === row.to_version) await t.setState(thingId, "healthy", `runs ${row.to_version}`, at);
  else await t.setState(thingId, "cancelled", `the rollout stopped before it installed ${row.to_version}`, at);
}

/**
 * Inside a transaction: stop past the threshold, else release the next batch when the released
 * ones are done. Only things that still exist and are not revoked count (countStates): a thing
 * revoked or deleted mid-rollout never polls again, and would hold its batch for ever. A batch
 * with none of those left is passed over at once.
 */
async function advance(t: UpdateTables, id: number, at: number): Promise<void> {
  const rollout = await t.rollout(id);
  if (rollout?.state !== "running") return;
  const failures = await t.countStates(id, FAILURE_STATES);
  if (failures > rollout.max_failures) {
    const things = failures === 1 ? "thing failed or rolled back" : "things failed or rolled back";
    await t.stopRollout(id, `${failures} ${things}, more than --max-failures ${rollout.max_failures}`, at);
    return;
  }
  for (;;) {
    const inFlight = await t.countStates(id, [...TERMINAL_STATES, "queued"], true);
    if (inFlight > 0) return;
    const next = await t.nextQueuedBatch(id);
    if (next === null) {
      await t.finishRollout(id, at);
      return;
    }
    await t.releaseBatch(id, next, at);
  }
}
