/**
 * Why the OS refused this user a path (EACCES, EPERM), in words that name whose it is. A bare
 * "permission denied" left a newcomer to find with `ls -l` which file, or which directory on the
 * way, an earlier `sudo` run left root's; this names it, its owner and its mode, so the `chown`
 * or `chmod` that fixes it is plain.
 */
import { accessSync, constants, lstatSync, readlinkSync, type Stats } from "node:fs";
import { dirname, resolve } from "node:path";
import { accountName, userLabel } from "./passwd.ts";

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
  let full = resolve(path);
  let via = "";
  // a link is not what is refused: where it leads is (a few links deep, as far as this user may look)
  for (let links = 0; links < 8; links++) {
    const blocked = firstUnsearchable(dirname(full));
    if (blocked !== undefined) return `${via}${me} may not enter ${blocked} (${ownerAndMode(blocked)})`;
    const stats = lstatOrUndefined(full);
    if (!stats?.isSymbolicLink()) {
      if (stats && stats.uid !== uid) return `${via}it is ${nameOf(stats.uid)}'s (mode ${modeOf(stats)}), and this command runs as ${me}`;
      const parent = dirname(full);
      if (!allowed(parent, constants.W_OK)) return `${via}${me} may not write in ${parent} (${ownerAndMode(parent)})`;
      return undefined;
    }
    const target = readlinkOrUndefined(full);
    if (target === undefined) return undefined;
    full = resolve(dirname(full), target);
    via = `it links to ${full}: `;
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

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

function readlinkOrUndefined(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch {
    return undefined;
  }
}
