/**
 * Files a long-running process depends on, looked at once a second.
 *
 * watchFileIdentity notices one going away under it: removed, moved, or replaced by another of
 * the same name (a restore from a backup). SQLite goes on writing to the file it holds open,
 * which then has no name left, so every message acknowledged from then on would be lost at the
 * next start. watchFileEdits notices an edit of one read only at the start (a config), which the
 * process does not see until it restarts. A change within the second before a look is not seen.
 */
import { readFileSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { isNotThere } from "./path-exists.ts";

/** How often the files are looked at, in ms. */
export const FILE_WATCH_MS = 1000;

/**
 * Starts watching `files`; calls `onGone` once, with the first file that is no longer the one
 * that was there when the watch started. Returns the function that stops the watch.
 */
export function watchFileIdentity(files: readonly string[], onGone: (file: string) => void, everyMs = FILE_WATCH_MS): () => void {
  // undefined: gone (ENOENT, ENOTDIR); null: cannot look this time (a directory's permissions
  // changed for a moment: EACCES), which is no sign the file went, so that round says nothing
  const inodeOf = (file: string): number | undefined | null => {
    try {
      return statSync(file).ino;
    } catch (err) {
      return isNotThere(err) ? undefined : null;
    }
  };
  const started = files.map(inodeOf);
  // The directories above each file, as they were: a round that cannot look at the file still
  // sees one of them removed or replaced (a data directory put back root's and 0700 by a `sudo`
  // run), where the file's own look fails.
  const above = files.map((file) => {
    const dirs: { dir: string; ino: number | undefined | null }[] = [];
    for (let at = dirname(file); ; at = dirname(at)) {
      dirs.push({ dir: at, ino: inodeOf(at) });
      if (dirname(at) === at) break;
    }
    return dirs;
  });
  const replacedAbove = (i: number) =>
    above[i]!.some(({ dir, ino }) => {
      const now = typeof ino === "number" ? inodeOf(dir) : null;
      return now !== null && now !== ino;
    });
  const timer = setInterval(() => {
    const gone = files.find((file, i) => {
      const now = inodeOf(file);
      if (now === null) return replacedAbove(i);
      if (started[i] === null) {
        started[i] = now; // seen for the first time now
        return false;
      }
      return now !== started[i];
    });
    if (gone === undefined) return;
    clearInterval(timer);
    onGone(gone);
  }, everyMs);
  timer.unref?.();
  return () => clearInterval(timer);
}

/**
 * Notices edits of a file a long-running process read once at its start (serve's config.yml):
 * calls `onEdited(differs)` each time the file's bytes change, `differs` saying whether they now
 * differ from what was there when the watch started (false: an edit undone). Looked at once a
 * second, as watchFileIdentity; the bytes are read again only when the file's size, mtime or
 * inode moved. A file that cannot be read for a moment says nothing. Returns the function that
 * stops the watch.
 */
export function watchFileEdits(file: string, onEdited: (differs: boolean) => void, everyMs = FILE_WATCH_MS): () => void {
  const stampOf = (): string | undefined => {
    try {
      const stat = statSync(file);
      return `${stat.ino}:${stat.size}:${stat.mtimeMs}`;
    } catch {
      return undefined;
    }
  };
  const read = (): Buffer | undefined => {
    try {
      return readFileSync(file);
    } catch {
      return undefined;
    }
  };
  const started = read();
  let lastStamp = stampOf();
  let last = started;
  const timer = setInterval(() => {
    const stamp = stampOf();
    if (stamp === undefined || stamp === lastStamp) return;
    const bytes = read();
    if (!bytes) return;
    lastStamp = stamp;
    if (last?.equals(bytes)) return;
    last = bytes;
    onEdited(!started?.equals(bytes));
  }, everyMs);
  timer.unref?.();
  return () => clearInterval(timer);
}
