/**
 * The schema the message database had before a version on trial migrated it, so that a rollback
 * can hand the previous binary a file it opens. A flashlex from before schema_compat (1 Dec 2026),
 * or one below a migration that raised THING_READABLE_FROM, refuses a newer schema with 78, which
 * the unit does not restart: a trial that failed for any reason (the hub down for its whole
 * healthy window) left the device stopped until someone logged in.
 *
 * `<data>/update/trial-schema` (JSON: `version`, `database`) is written, durably, by whichever
 * command of the new binary migrates the database first while `pending` is there
 * (recordSchemaBeforeTrial, inside the migrating transaction); it goes when the version reports
 * healthy, or when the next update is installed. A rollback takes the database back to it
 * (restoreTrialSchema): serve when it stops after deciding a rollback, or the update guard through
 * `flashlex restore-schema`, each before it puts the previous binary back. Both run the new
 * binary, the one that knows how to undo its migrations. From the restore's start the record says
 * `restored`, and while `pending` is still there no command of the new binary migrates the file again (an
 * application's `messages list` between the restore and the binary's swap would hand the previous
 * binary the newer schema: verify pass 31, F7).
 */
import { readFileSync, realpathSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { ConfigError, FlashlexError } from "../../shared/errors.ts";
import { toFlashlexError } from "../../shared/foreign-errors.ts";
import type { Logger } from "../../shared/log.ts";
import { pathExists } from "../../shared/path-exists.ts";
import { VERSION } from "../../shared/version.ts";
import { downgradeThingDatabase } from "../store/message-store.ts";
import { markerPaths, readPending, readRolledBack, writeFileAtomicallyDurable } from "./marker.ts";

/** What the record says: the schema version to go back to, the database it is of, and whether a rollback already took it back. */
export interface TrialSchema {
  version: number;
  database: string;
  restored?: true;
}

function writeTrialSchema(dataDir: string, record: TrialSchema): void {
  writeFileAtomicallyDurable(markerPaths(dataDir).trialSchema, `${JSON.stringify(record)}\n`);
}

/**
 * Notes that `database` was at schema version `from` before this binary migrated it, when an
 * update is pending and nothing was noted yet (the first migration of the trial is the one to
 * undo). Throws FlashlexError when the record cannot be written, and `try-later` (75) when a
 * rollback of the pending update already took the file back (the previous binary is about to
 * replace this one): the migration then does not happen (MigrationOptions.beforeMigrating).
 */
export function recordSchemaBeforeTrial(dataDir: string, database: string, from: number): void {
  if (!readPending(dataDir)) return;
  if (pathExists(markerPaths(dataDir).trialSchema)) {
    if (readTrialSchemaQuietly(dataDir)?.restored) {
      throw new FlashlexError(
        `${database}: the update on trial is being rolled back and its schema was taken back (${markerPaths(dataDir).trialSchema}); the previous flashlex opens it: try again`,
        "try-later",
      );
    }
    return;
  }
  writeTrialSchema(dataDir, { version: from, database });
}

/**
 * The record, or undefined when there is none. One this flashlex did not write (not JSON, no
 * whole version from 1, a database outside `dataDir`, where the thing's database always is, so
 * that a record written by hand cannot send the down-migration to another file) is a
 * ConfigError (78) naming the file.
 */
export function readTrialSchema(dataDir: string): TrialSchema | undefined {
  const file = markerPaths(dataDir).trialSchema;
  if (!pathExists(file)) return undefined;
  const refused = (why: string) => new ConfigError(`${file}: ${why}, not a record flashlex wrote; remove it (the database stays as it is)`);
  let record: Partial<TrialSchema>;
  try {
    record = JSON.parse(readFileSync(file, "utf8")) as Partial<TrialSchema>;
  } catch {
    throw refused("not JSON");
  }
  const { version, database, restored } = record ?? {};
  if (!Number.isInteger(version) || (version as number) < 1) throw refused("no schema version (a whole number from 1)");
  if (typeof database !== "string" || !inDirectory(database, dataDir)) throw refused(`its database is not a file of ${dataDir}`);
  if (restored !== undefined && restored !== true) throw refused("restored is not true");
  return restored ? { version: version as number, database, restored } : { version: version as number, database };
}

/**
 * Whether `file` lies directly in `dir`, both through their real paths: the file's own when it is
 * there (a symlink in the data directory sent the down-migration to another database: attack
 * round 28, F2), else its directory's; false when the directory is not there.
 */
function inDirectory(file: string, dir: string): boolean {
  try {
    const real = pathExists(file) ? realpathSync(file) : join(realpathSync(dirname(file)), basename(file));
    // a hard link is another name of a file that may live elsewhere (verify pass 32, F11)
    return dirname(real) === realpathSync(dir) && (statSync(real, { throwIfNoEntry: false })?.nlink ?? 1) === 1;
  } catch {
    return false;
  }
}

/** Removes the record (the trial is over); a missing file is no error. */
export function clearTrialSchema(dataDir: string): void {
  rmSync(markerPaths(dataDir).trialSchema, { force: true });
}

/**
 * How long, in ms, the restore waits for another process's write lock (an application's
 * transaction): longer than a command's LOCK_WAIT_MS, as a rollback that gives up hands the
 * previous binary a schema it may refuse. Twice this (the guard tries again once) stays below
 * systemd's 90 s for an ExecStartPre.
 */
export const RESTORE_LOCK_WAIT_MS = 30_000;

/**
 * Takes the database named in the record back to its version (downgradeThingDatabase, waiting up
 * `lockWaitMs` (default RESTORE_LOCK_WAIT_MS) for a lock). The record says `restored` first, durably, so no command of
 * the binary on trial migrates the file again from the moment the downgrade may commit (verify
 * pass 32, F2: one that came between the commit and the mark migrated it back); a record that
 * says so is taken back all the same (the downgrade leaves a file already there as it is). Only
 * while an update is pending or rolled back: otherwise the record is a ConfigError (78). Returns
 * what it did (`from` equals `to` when the file was already there), or undefined when there is no
 * record or no database. Throws as downgradeThingDatabase does (a lock held past the wait is
 * `try-later`, 75); the record is then kept, for another try.
 */
export function restoreTrialSchema(dataDir: string, lockWaitMs = RESTORE_LOCK_WAIT_MS): { database: string; from: number; to: number } | undefined {
  const record = readTrialSchema(dataDir);
  if (!record) return undefined;
  // a rollback is the only reason to go back: with no update pending or rolled back the record is
  // not one a trial left (attack round 28, F2)
  if (!readPending(dataDir) && !readRolledBack(dataDir)) {
    throw new ConfigError(
      `${markerPaths(dataDir).trialSchema}: no update is pending or rolled back (update/pending, update/rolled-back), so nothing asks for the database to go back; remove it`,
    );
  }
  if (!pathExists(record.database)) {
    clearTrialSchema(dataDir);
    return undefined;
  }
  if (!record.restored) writeTrialSchema(dataDir, { ...record, restored: true });
  const from = downgradeThingDatabase(record.database, record.version, { lockWaitMs });
  return { database: record.database, from, to: record.version };
}

/** What restoreSchemaAfterRollback did: taken back (or nothing to take back), or failed, `busy` when another process held the file past the wait. */
export type SchemaRestore = "done" | "busy" | "failed";

/**
 * For a serve that decided a rollback (only then: a `rolled-back` left unreported from an earlier
 * rollback says nothing of this run, verify pass 31, F3), once its database is closed and before
 * it puts the previous binary back: when its migration was noted (recordSchemaBeforeTrial), takes
 * the database back to the schema the previous binary knew. A failure is said (ERROR), not
 * thrown, and the record is kept for `flashlex restore-schema`; the caller decides on the swap.
 */
export function restoreSchemaAfterRollback(dataDir: string, log: Logger, lockWaitMs = RESTORE_LOCK_WAIT_MS): SchemaRestore {
  try {
    const done = restoreTrialSchema(dataDir, lockWaitMs);
    if (done && done.from !== done.to) log.warn("update.schema_restored", { database: done.database, from: done.from, to: done.to });
    return "done";
  } catch (err) {
    const busy = toFlashlexError(err).kind === "try-later";
    log.error("update.schema_restore_failed", {
      database: readTrialSchemaQuietly(dataDir)?.database,
      error: err,
      note: busy
        ? "another process held the database: the previous binary is not put back yet, and the next start tries again"
        : `the previous binary may refuse it (exit 78): the ${VERSION} binary (its release, from the hub) tries again with flashlex restore-schema -d ${dataDir}`,
    });
    return busy ? "busy" : "failed";
  }
}

function readTrialSchemaQuietly(dataDir: string): TrialSchema | undefined {
  try {
    return readTrialSchema(dataDir);
  } catch {
    return undefined;
  }
}
