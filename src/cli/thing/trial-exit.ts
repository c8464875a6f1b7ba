/**
 * An update on trial must be able to fail its way back. The unit's `RestartPreventExitStatus=64
 * 77 78` keeps systemd from restarting a binary that refuses its usage, permissions or config
 * (a restart cannot fix those), but a *new* binary that exits so at start (it refuses a flag or
 * a config key the previous version took) would then never be started again, so the update
 * guard (src/thing/update/guard.ts) would never reach the third start at which it puts the
 * previous binary back. So while `<data>/update/pending` names the running version, `serve` ends
 * with 75 (EX_TEMPFAIL: systemd restarts it, the guard counts the start) instead of 64, 77 or 78,
 * and says why on stderr. Outside a trial the codes are unchanged.
 *
 * It reads the data directory from the raw arguments (`-d`/`--data`, else `data/` beside
 * `-c`/`--config`), because a usage error may come before the flags are parsed at all.
 */
import { dirname, join, resolve } from "node:path";
import { readPending } from "../../thing/update/marker.ts";
import { ExitCode } from "../exit-codes.ts";

const NOT_RESTARTED: ReadonlySet<number> = new Set([ExitCode.USAGE, ExitCode.PERMISSION, ExitCode.CONFIG]);

/** The value of flag `short`/`long` in `words` (`-d X`, `--data X`, `--data=X`), or undefined. */
function flagValue(words: readonly string[], short: string, long: string): string | undefined {
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    if (w === short || w === long) return words[i + 1];
    if (w.startsWith(`${long}=`)) return w.slice(long.length + 1);
  }
  return undefined;
}

/**
 * The exit code `serve` ends with: `code`, or 75 when it is 64, 77 or 78 and an update of
 * `version` is on trial (see above). `words` are the arguments after the program; never throws
 * (a marker that cannot be read leaves the code as it is).
 */
export function trialExitCode(words: readonly string[], code: number, version: string, warn: (line: string) => void = console.error): number {
  if (!NOT_RESTARTED.has(code) || words[0] !== "serve") return code;
  try {
    const data = flagValue(words, "-d", "--data");
    const config = flagValue(words, "-c", "--config");
    const dataDir = data ? resolve(data) : config ? join(dirname(resolve(config)), "data") : undefined;
    const pending = dataDir ? readPending(dataDir) : undefined;
    if (!pending || pending.version !== version) return code;
    warn(
      `flashlex: exit ${code} turned into ${ExitCode.TEMPFAIL}: version ${version} is on trial (update from ${pending.from}), so the service is restarted and the update guard can put the previous binary back`,
    );
    return ExitCode.TEMPFAIL;
  } catch {
    return code;
  }
}
