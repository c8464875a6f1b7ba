/**
 * Why the OS refused this user a path (EACCES, EPERM), in words that name whose it is. A bare
 * "permission denied" left a newcomer to find with `ls -l` which file, or which directory on the
 * way, an earlier `sudo` run left root's; this names it, its owner and its mode, so the `chown`
 * or `chmod` that fixes it is plain.
 */
import { accessSync, constants, type Stats } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { actingAs } from "./act-as-owner.ts";
import { accountName, userLabel } from "./passwd.ts";
import { lstatOrUndefined, readlinkOrUndefined } from "./path-exists.ts";

/**
 * Why this process may not use `path`, looked at after a failed call: the first directory on the
 * way it may not enter ("pi (uid 1000) may not enter /root (root's, mode 0700)"), else the path
 * itself when another user's ("it is root's (mode 0600), and this command runs as pi (uid
 * 1000)"), else its directory when this user may not write in it ("pi (uid 1000) may not write
 * in /opt/thing (root's, mode 0755)"); for a symbolic link, the same of where it leads ("it links
 * to /x: ..."). Undefined when none of these holds (root, an ACL or a security module refused)
 * or nothing can be looked at. Never throws.
 */
export function whyDenied(path: string): string | undefined {
  const uid = process.geteuid?.();
  if (uid === undefined || uid === 0) return undefined;
  const me = userLabel(uid);
  const full = resolve(path);
  let parts = full.split("/").filter(Boolean);
  let at = "/";
  let via = "";
  // As the kernel walks it, a link anywhere on the way followed (a few deep): what refuses is
  // where a link leads, never the link (whose own mode is 0777), so a directory that is a link
  // is looked at by its target.
  for (let i = 0, links = 0; i < parts.length; i++) {
    if (!allowed(at, constants.X_OK)) return `${via}${me} may not enter ${at} (${ownerAndMode(at)})`;
    const next = join(at, parts[i]!);
    const stats = lstatOrUndefined(next);
    if (stats?.isSymbolicLink() && links >= 8) return undefined; // a loop, or a chain that long: ELOOP says it
    if (stats?.isSymbolicLink()) {
      const target = readlinkOrUndefined(next);
      if (target === undefined) return undefined;
      const to = resolve(at, target);
      via = `${next === full ? "it" : next} links to ${to}: `;
      parts = [...to.split("/").filter(Boolean), ...parts.slice(i + 1)];
      [at, i, links] = ["/", -1, links + 1];
      continue;
    }
    if (i < parts.length - 1) {
      if (!stats) return undefined; // a directory on the way not there: ENOENT's to say, not this
      at = next;
      continue;
    }
    if (stats && stats.uid !== uid)
      // started by root and acting as a user, the line's own note says whom it runs as
      return `${via}${via ? `${next} is` : "it is"} ${nameOf(stats.uid)}'s (mode ${modeOf(stats)})${actingAs() ? "" : `, and this command runs as ${me}`}`;
    if (!allowed(at, constants.W_OK)) return `${via}${me} may not write in ${at} (${ownerAndMode(at)})`;
    return undefined;
  }
  return undefined;
}

/** The first directory from the root down to `dir` (itself included) this user may not search; undefined when it may search them all. */
export function firstUnsearchable(dir: string): string | undefined {
  const chain: string[] = [];
  for (let at = resolve(dir); ; at = dirname(at)) {
    chain.unshift(at);
    if (dirname(at) === at) break;
  }
  return chain.find((at) => !allowed(at, constants.X_OK));
}

const nameOf = (uid: number) => accountName(uid) ?? `uid ${uid}`;

function ownerAndMode(path: string): string {
  const stats = lstatOrUndefined(path);
  return stats ? `${nameOf(stats.uid)}'s, mode ${modeOf(stats)}` : "cannot be looked at";
}

const modeOf = (stats: Stats) => (stats.mode & 0o7777).toString(8).padStart(4, "0");

function allowed(path: string, mode: number): boolean {
  try {
    accessSync(path, mode);
    return true;
  } catch {
    return false;
  }
}

/**
 * For a message about `path` that could not be read or written with `err`: ": " and whyDenied's
 * reason when `err` is EACCES or EPERM and one can be told, else "".
 */
export function deniedNote(err: unknown, path: string): string {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  const why = code === "EACCES" || code === "EPERM" ? whyDenied(path) : undefined;
  return why ? `: ${why}` : "";
}
