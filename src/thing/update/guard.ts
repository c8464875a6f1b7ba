/**
 * The pre-start guard: a POSIX sh script the supervisor runs before every start of the agent
 * (the unit's `ExecStartPre=-/bin/sh <data>/update/guard.sh`; docs/updates.md). It decides a
 * rollback that the new binary cannot decide itself because it may not run at all (it crashes
 * before its JavaScript starts, or a moment after): while an update is pending it counts the
 * starts, and at the third start of the same pending version it renames the previous binary back
 * over the new one and leaves `rolled-back` for the previous binary to report. Before that, if the
 * new binary migrated the message database, it runs that binary's `restore-schema` (trial-schema.ts):
 * an older binary refuses a newer schema with 78, which the unit does not restart. A restore that
 * found the database locked (75) past its wait twice does not swap the binary: the version on trial
 * starts once more and the next start tries again (verify pass 31, F14). With no update
 * pending it reads one file and exits. It needs only sh, sed, cat, dirname, id, ls, mv, rm and
 * sync, and never sources a file it reads. Run as root for a data directory another user owns, it
 * does nothing: the files it acts on are that user's to write, so it would run that user's choice
 * of binary as root (attack round 28, F3). That catches a supervisor set up wrong, not that user,
 * who can rewrite this script as well: only running it as the service's user protects root.
 *
 * serve writes it at every start (atomically, when it changed), so the unit can name it from
 * the day the service is installed.
 */
import { mkdirSync, readFileSync, statSync } from "node:fs";
import { ConfigError } from "../../shared/errors.ts";
import { writeFileAtomicallySync } from "../../shared/files.ts";
import { pathExists } from "../../shared/path-exists.ts";
import { markerPaths, updateDir } from "./marker.ts";

/** Starts of a pending version before the guard rolls back: the third start restores the previous binary. */
export const MAX_TRIAL_STARTS = 2;

export const GUARD_SCRIPT = `#!/bin/sh
# FlashLex update guard, written by flashlex serve (docs/updates.md). Run before every start of
# the agent (ExecStartPre). It only acts while an update is pending (the file "pending" beside it).
set -u
dir=$(dirname -- "$0")
pending="$dir/pending"
[ -f "$pending" ] || exit 0
# not as root for a data directory another user owns, who writes pending (a supervisor set up
# wrong; that user could rewrite this script too, so only running it as them protects root)
if [ "$(id -u)" = 0 ]; then
  owner=$(ls -nd -- "$dir" 2>/dev/null | { read -r _ _ uid _; echo "$uid"; })
  if [ -n "$owner" ] && [ "$owner" != 0 ]; then
    echo "flashlex update guard: refused to run as root: $dir is another user's; run it as the service's user (the unit's User=)" >&2
    exit 0
  fi
fi
value() { sed -n "s/^$1='\\(.*\\)'\\$/\\1/p" "$pending"; }
binary=$(value FLASHLEX_UPDATE_BINARY)
previous=$(value FLASHLEX_UPDATE_PREVIOUS)
version=$(value FLASHLEX_UPDATE_VERSION)
starts=$(cat "$dir/starts" 2>/dev/null || echo 0)
case $starts in ''|*[!0-9]*) starts=0 ;; esac
starts=$((starts + 1))
if [ "$starts" -gt ${MAX_TRIAL_STARTS} ]; then
  keep_record=no
  if [ -n "$binary" ] && [ -f "$previous" ]; then
    # the binary on trial takes the database back to the schema the previous one knew, if it
    # migrated it; 75 is a lock another process held past the wait: once more, then at the next start
    if [ -f "$dir/trial-schema" ]; then
      tries=0
      while :; do
        "$binary" restore-schema -d "$(dirname -- "$dir")" >&2
        rc=$?
        tries=$((tries + 1))
        [ "$rc" -eq 75 ] && [ "$tries" -lt 2 ] || break
      done
      if [ "$rc" -eq 75 ]; then
        echo "flashlex update guard: the message database stayed locked, so $version starts once more and the rollback is tried again at the next start" >&2
        echo "$starts" > "$dir/starts.tmp" && mv -f -- "$dir/starts.tmp" "$dir/starts"
        exit 0
      fi
      # any other failure: the previous binary all the same (it may open the file), and the record
      # kept for a restore-schema by hand
      [ "$rc" -eq 0 ] || {
        keep_record=yes
        echo "flashlex update guard: $version could not take the database back to the schema before it; the previous binary may refuse it (exit 78): run flashlex restore-schema -d $(dirname -- "$dir") with the $version binary (its release, from the hub)" >&2
      }
    fi
    mv -f -- "$previous" "$binary" || exit 0
    { cat "$pending"; echo "FLASHLEX_UPDATE_REASON='$version started $((starts - 1)) times without reporting healthy'"; } > "$dir/rolled-back.tmp"
    mv -f -- "$dir/rolled-back.tmp" "$dir/rolled-back"
    echo "flashlex update guard: $version did not come up healthy; the previous binary is back" >&2
  fi
  rm -f -- "$pending" "$dir/starts"
  [ "$keep_record" = yes ] || rm -f -- "$dir/trial-schema"
  sync
  exit 0
fi
echo "$starts" > "$dir/starts.tmp" && mv -f -- "$dir/starts.tmp" "$dir/starts"
exit 0
`;

/**
 * Writes `<data>/update/guard.sh` (0700) unless it is already this script. Throws ConfigError (78)
 * when `<data>/update` is another user's, or others may write in it: whoever made it first could
 * replace the script the unit runs before every start (verify pass 32, F5).
 */
export function writeGuard(dataDir: string): void {
  const file = markerPaths(dataDir).guard;
  mkdirSync(updateDir(dataDir), { recursive: true, mode: 0o700 });
  const dir = statSync(updateDir(dataDir));
  const uid = process.getuid?.();
  if ((uid !== undefined && dir.uid !== uid) || (dir.mode & 0o022) !== 0) {
    throw new ConfigError(
      `${updateDir(dataDir)} is ${uid !== undefined && dir.uid !== uid ? "another user's" : `writable by others (mode 0${(dir.mode & 0o777).toString(8)})`}: it holds the update guard the service runs before every start; remove it (serve makes it again, 0700)`,
    );
  }
  if (pathExists(file) && readFileSync(file, "utf8") === GUARD_SCRIPT) return;
  writeFileAtomicallySync(file, GUARD_SCRIPT, 0o700);
}
