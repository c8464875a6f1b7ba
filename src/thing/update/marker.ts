/**
 * The files of an update in progress, in `<data>/update/` (the one directory the service may
 * always write, docs/updates.md):
 *
 *   pending      written (atomically, fsynced) by the old binary just before it renames the new
 *                one into place; removed by the new one once it reported healthy
 *   starts       how many times the supervisor started the pending version; the guard counts
 *   rolled-back  written by whoever rolled back (the guard, or the new binary itself), read
 *                and removed by the previous binary once the hub took its report
 *   release      the release that runs: `pending` as it was when that version reported healthy,
 *                with the signing time of its manifest, below which no offer is taken
 *   guard.sh     the pre-start guard (guard.ts), run by `/bin/sh` before each start
 *   trial-schema the message database's schema before the version on trial migrated it, for a
 *                rollback to take it back to (trial-schema.ts)
 *
 * `pending` and `rolled-back` are lines of `NAME='value'`, so the guard reads them with `sed`
 * (never by sourcing them); values that cannot be written so (a `'` or a line break) are refused.
 */
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { FlashlexError } from "../../shared/errors.ts";
import { writeFileAtomicallySync } from "../../shared/files.ts";
import { pathExists } from "../../shared/path-exists.ts";
import { fsyncDirectory } from "./fsync.ts";

export interface PendingUpdate {
  /** the version being tried */
  version: string;
  /** the version it replaced */
  from: string;
  /** the binary the service runs */
  binary: string;
  /** the previous binary, kept beside it */
  previous: string;
  /** why it was rolled back (rolled-back only) */
  reason?: string;
  /** the SHA-256 (hex) of the binary put in place, from the signed manifest; absent in markers of older versions */
  sha256?: string;
  /** when the release's manifest was signed (its `created`, ISO 8601); absent in markers of older versions */
  created?: string;
}

const FIELDS: Record<keyof PendingUpdate, string> = {
  version: "FLASHLEX_UPDATE_VERSION",
  from: "FLASHLEX_UPDATE_FROM",
  binary: "FLASHLEX_UPDATE_BINARY",
  previous: "FLASHLEX_UPDATE_PREVIOUS",
  reason: "FLASHLEX_UPDATE_REASON",
  sha256: "FLASHLEX_UPDATE_SHA256",
  created: "FLASHLEX_UPDATE_CREATED",
};

/** `<data>/update`, the directory of the files above. */
export function updateDir(dataDir: string): string {
  return join(dataDir, "update");
}

export const markerPaths = (dataDir: string) => ({
  pending: join(updateDir(dataDir), "pending"),
  starts: join(updateDir(dataDir), "starts"),
  rolledBack: join(updateDir(dataDir), "rolled-back"),
  release: join(updateDir(dataDir), "release"),
  guard: join(updateDir(dataDir), "guard.sh"),
  trialSchema: join(updateDir(dataDir), "trial-schema"),
});

/** The marker text; throws FlashlexError (io) for a value the shell format cannot hold. */
export function formatMarker(update: PendingUpdate): string {
  return `${Object.entries(FIELDS)
    .filter(([key]) => update[key as keyof PendingUpdate] !== undefined)
    .map(([key, name]) => {
      const value = update[key as keyof PendingUpdate]!;
      if (/['\n\r\0]/.test(value)) throw new FlashlexError(`cannot update: ${key} ${JSON.stringify(value)} holds a quote or a line break`, "io");
      return `${name}='${value}'`;
    })
    .join("\n")}\n`;
}

/**
 * The fields of a marker's `NAME='value'` lines (other lines ignored); undefined when version,
 * from, binary or previous is missing. Never throws.
 */
export function parseMarker(text: string): PendingUpdate | undefined {
  const values: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const match = /^([A-Z][A-Z0-9_]*)='([^']*)'$/.exec(line);
    if (match) values[match[1]!] = match[2]!;
  }
  const get = (key: keyof PendingUpdate) => values[FIELDS[key]];
  const [version, from, binary, previous] = [get("version"), get("from"), get("binary"), get("previous")];
  if (!version || !from || !binary || !previous) return undefined;
  return { version, from, binary, previous, reason: get("reason"), sha256: get("sha256"), created: get("created") };
}

function readMarker(file: string): PendingUpdate | undefined {
  return pathExists(file) ? parseMarker(readFileSync(file, "utf8")) : undefined;
}

export const readPending = (dataDir: string) => readMarker(markerPaths(dataDir).pending);
export const readRolledBack = (dataDir: string) => readMarker(markerPaths(dataDir).rolledBack);
export const readRelease = (dataDir: string) => readMarker(markerPaths(dataDir).release);

/** Records `update` as the release that runs (it reported healthy), durably, before `pending` goes. */
export function writeRelease(dataDir: string, update: PendingUpdate): void {
  writeFileAtomicallyDurable(markerPaths(dataDir).release, formatMarker({ ...update, reason: undefined }));
}

/**
 * Writes `pending` (and clears the start count, and the schema a trial before it started from),
 * durably: the file and its directory are synced.
 */
export function writePending(dataDir: string, update: PendingUpdate): void {
  const paths = markerPaths(dataDir);
  rmSync(paths.starts, { force: true });
  rmSync(paths.trialSchema, { force: true });
  writeFileAtomicallyDurable(paths.pending, formatMarker(update));
}

/** Replaces `pending` by `rolled-back` with `reason`. */
export function writeRolledBack(dataDir: string, update: PendingUpdate, reason: string): void {
  const paths = markerPaths(dataDir);
  writeFileAtomicallyDurable(paths.rolledBack, formatMarker({ ...update, reason: reason.replace(/['\n\r\0]/g, " ") }));
  clearPending(dataDir);
}

/** Removes `pending` and `starts`, then syncs the directory (best effort); a missing file is no error. */
export function clearPending(dataDir: string): void {
  const paths = markerPaths(dataDir);
  rmSync(paths.pending, { force: true });
  rmSync(paths.starts, { force: true });
  fsyncDirectory(updateDir(dataDir));
}

/** Removes `rolled-back` once the hub took its report; a missing file is no error. Not synced. */
export function clearRolledBack(dataDir: string): void {
  rmSync(markerPaths(dataDir).rolledBack, { force: true });
}

/** Writes `file` (0600) atomically, then syncs its directory; makes the directory (0700) first. */
export function writeFileAtomicallyDurable(file: string, text: string): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  writeFileAtomicallySync(file, text, 0o600);
  fsyncDirectory(dirname(file));
}
