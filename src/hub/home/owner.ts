/**
 * A hub command run as root (`sudo flashlex hub thing create ...`) on a hub home that another
 * user owns (the service user the hub runs as) acts as that user: everything it writes there (a
 * distribution zip, `dists/`, hub.yml, the database's files) is then the user's, so the hub can
 * read it; before, a root-owned 0600 zip made the hub answer 500 and the user's own commands 77.
 * And root's rights are never used inside a tree that user controls: a directory the user swapped
 * for a symbolic link would otherwise aim root's writes anywhere on the machine.
 */
import { statSync } from "node:fs";
import { dirname } from "node:path";

/** The owner this process took on (actAsHomeOwner), for the messages that depend on it. */
let tookOn: { uid: number; home: string } | undefined;

/** The uid and home of the owner this process acts as, or undefined when it acts as who started it. */
export function actingAsHomeOwner(): { uid: number; home: string } | undefined {
  return tookOn;
}

/**
 * When this process is root and the hub home `dir` (or, for one not made yet, its nearest
 * existing parent) belongs to another user, becomes that user for good: the user's groups with
 * the directory's group, then its gid and uid (POSIX setgroups/setgid/setuid, which glibc applies
 * to every thread). Call it before anything is opened or any worker thread starts. Returns the
 * uid taken on, or undefined when nothing changed: not root, a home root owns, or a process that
 * may not change its user (a container without CAP_SETUID or CAP_SETGID), which goes on as root
 * as before. Never throws.
 */
export function actAsHomeOwner(dir: string): number | undefined {
  if (process.geteuid?.() !== 0) return undefined;
  const owner = ownerOf(dir);
  if (!owner || owner.uid === 0) return undefined;
  try {
    // the supplementary groups first: once the uid changes, nothing more may change
    try {
      (process as { initgroups?: (user: number, extraGroup: number) => void }).initgroups?.(owner.uid, owner.gid);
    } catch {
      process.setgroups?.([owner.gid]); // a uid without a passwd entry has no groups of its own
    }
    process.setgid?.(owner.gid);
    process.setuid?.(owner.uid);
  } catch {
    return undefined; // not allowed here: root it stays
  }
  if (process.geteuid?.() !== owner.uid) return undefined;
  tookOn = { uid: owner.uid, home: dir };
  return owner.uid;
}

/** The uid and gid of `path`, or of its nearest existing parent; undefined when none can be looked at. */
function ownerOf(path: string): { uid: number; gid: number } | undefined {
  for (let at = path; ; at = dirname(at)) {
    try {
      const { uid, gid } = statSync(at);
      return { uid, gid };
    } catch {
      if (dirname(at) === at) return undefined;
    }
  }
}
