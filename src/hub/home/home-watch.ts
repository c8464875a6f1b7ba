/**
 * Notices the hub home going away under a running hub (`rm -rf` of the directory, hub.db
 * replaced by a restore while it runs): SQLite goes on writing to the file it holds open, which
 * no longer has a name, so every message acknowledged from then on would be lost when the hub
 * stops. Checked once a second: hub.yml still there, and hub.db (for a SQLite hub) still the file
 * the hub opened (its inode). What it cannot see: a change within the second before the check.
 */
import { statSync } from "node:fs";
import { FlashlexError } from "../../shared/errors.ts";
import type { HubDatabase } from "../store/database-url.ts";
import type { HubPaths } from "./paths.ts";

/** How often the home is looked at, in ms. */
export const HOME_CHECK_MS = 1000;

/**
 * Starts watching; `onGone` is called once, with a FlashlexError (kind io, exit 74) saying what
 * went, when the home or the database file is no longer the one the hub started with. Returns
 * the function that stops the watch.
 */
export function watchHome(paths: HubPaths, database: HubDatabase, onGone: (err: FlashlexError) => void, everyMs = HOME_CHECK_MS): () => void {
  const inodeOf = (file: string) => {
    try {
      return statSync(file).ino;
    } catch {
      return undefined;
    }
  };
  const databaseInode = database.kind === "sqlite" ? inodeOf(database.file) : undefined;
  const timer = setInterval(() => {
    const gone =
      inodeOf(paths.config) === undefined
        ? `${paths.config} is gone: the hub home ${paths.dir} was removed or moved while the hub ran`
        : database.kind === "sqlite" && inodeOf(database.file) !== databaseInode
          ? `${database.file} was removed or replaced while the hub ran`
          : undefined;
    if (gone === undefined) return;
    clearInterval(timer);
    onGone(new FlashlexError(`${gone}; the hub stops rather than acknowledge messages it cannot keep`, "io"));
  }, everyMs);
  timer.unref?.();
  return () => clearInterval(timer);
}
