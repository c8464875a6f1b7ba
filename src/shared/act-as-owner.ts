/**
 * A command run as root (`sudo flashlex hub thing create ...`, `sudo flashlex serve`) on a place
 * another user owns (the hub home or the thing's folder of the service user) acts as that user:
 * everything it writes there (a distribution zip, the database's files, serve's lock files) is
 * then the user's, so the user's service can use it; before, a root-owned 0600 zip made the hub
 * answer 500, and a root-owned `data/serve.lock` stopped the thing's unit (78, then 77). And
 * root's rights are never used on what another user controls: a directory the user swapped for a
 * symbolic link would aim root's writes anywhere, and a file the user wrote names files root
 * would replace (hub.yml's `broker.crlFiles`, a config's key files) and a command it would run
 * (hub.yml's `broker.reloadCommand`).
 */
import { lstatSync, readFileSync, type Stats, statSync } from "node:fs";
import { dirname } from "node:path";
import { FlashlexError } from "./errors.ts";
import { shellWord } from "./shell-word.ts";

/** A place a command acts on, and how its messages name it. */
export interface OwnedPlace {
  /** the place's directory (made or not yet), absolute */
  dir: string;
  /** what the messages call it: "hub home", "thing's folder" */
  name: string;
  /** what the note calls this process: "hub command", "thing command" */
  actor: string;
  /** whom the fixes give it to: "the hub's user" */
  user: string;
  /**
   * Paths (absolute; lstat'ed, so a link counts by its own owner; absent ones skipped) that say
   * whose the place is besides its directory: those naming files it writes or commands it runs
   * (hub.yml, a thing's config.yml) and where it writes (dists/, a thing's data directory).
   * Entries that may rightly be another program's (a Mosquitto persistence directory given to
   * `mosquitto`) are not among them.
   */
  telling: string[];
}

/** The owner this process took on (actAsOwnerOf), for the messages that depend on it. */
let tookOn: { uid: number; name?: string; place: OwnedPlace } | undefined;

/**
 * What a permission failure (77) adds while this process acts as a place's owner: root started
 * it, so "permission denied" would read as nonsense without it. `fix` is what to do instead of
 * the default (a `chown -R` of the place, for files an older root run left there). Undefined when
 * this process acts as nobody else.
 */
export function actingAsOwnerNote(fix?: string): string | undefined {
  if (!tookOn) return undefined;
  const { place } = tookOn;
  const who = tookOn.name ? `${tookOn.name} (uid ${tookOn.uid})` : `uid ${tookOn.uid}`;
  const chown = `sudo chown -R ${tookOn.name ?? tookOn.uid}: ${shellWord(place.dir)}`;
  return `(started by root, this ${place.actor} runs as ${who}, the owner of the ${place.name} ${place.dir}: ${fix ?? `give that user what it needs, e.g. \`${chown}\` for files an older root run left there`})`;
}

/**
 * When this process is root and the place's directory (or, for one not made yet, its nearest
 * existing parent) or one of its telling paths belongs to another user, becomes that user for
 * good: the user's groups, then its primary gid (from /etc/passwd; the directory's group for a
 * uid not there) and uid (POSIX setgroups/setgid/setuid, which glibc applies to every thread).
 * Call it before anything is opened or any worker thread starts. Returns the uid taken on, or
 * undefined when nothing changed: not root, a place root owns, or a process that may not change
 * its user (a container without CAP_SETUID or CAP_SETGID), which goes on as root as before.
 * Throws FlashlexError permission (77) for a place root must not act on: one with paths of
 * several other users, or a root-owned directory others may write in (anyone could have put a
 * hub.yml or a config.yml there).
 */
export function actAsOwnerOf(place: OwnedPlace): number | undefined {
  if (process.geteuid?.() !== 0) return undefined;
  const owner = ownerToActAs(place);
  if (owner === undefined) return undefined;
  const account = passwdEntryOf(owner.uid);
  const gid = account?.gid ?? owner.gid;
  try {
    // the supplementary groups first: once the uid changes, nothing more may change
    try {
      (process as { initgroups?: (user: number, extraGroup: number) => void }).initgroups?.(owner.uid, gid);
    } catch {
      process.setgroups?.([gid]); // a uid without a passwd entry has no groups of its own
    }
    process.setgid?.(gid);
    process.setuid?.(owner.uid);
  } catch {
    return undefined; // not allowed here: root it stays
  }
  if (process.geteuid?.() !== owner.uid) return undefined;
  tookOn = { uid: owner.uid, name: account?.name, place };
  return owner.uid;
}

/** The one non-root owner of the place's directory and telling paths, undefined when root owns them all; throws for a place root must not act on. */
function ownerToActAs(place: OwnedPlace): { uid: number; gid: number } | undefined {
  const { dir } = place;
  const home = nearestExisting(dir);
  if (!home) return undefined;
  const owners = [home.stats, ...place.telling.flatMap(lstatOrNone)].filter((s) => s.uid !== 0);
  const uids = [...new Set(owners.map((s) => s.uid))];
  if (uids.length > 1) {
    throw new FlashlexError(
      `${dir}: the ${place.name} holds files of several users (uids ${uids.join(", ")}); give the whole ${place.name} to ${place.user} (chown -R) and run the command again`,
      "permission",
    );
  }
  if (uids.length === 1) return { uid: uids[0]!, gid: owners[0]!.gid };
  // a device or file named as the place is none at all: the commands' own checks say so
  if (home.path === dir && home.stats.isDirectory() && (home.stats.mode & 0o022) !== 0) {
    throw new FlashlexError(
      `${dir}: the ${place.name} is root's but others may write in it (mode ${(home.stats.mode & 0o7777).toString(8)}), so its files may be anyone's: root does not act on it; give it to ${place.user} (chown -R), or chmod go-w`,
      "permission",
    );
  }
  return undefined;
}

/** `path`, or its nearest existing parent, with what stat(2) says of it; undefined when none can be looked at. */
function nearestExisting(path: string): { path: string; stats: Stats } | undefined {
  for (let at = path; ; at = dirname(at)) {
    const stats = statOrUndefined(at);
    if (stats) return { path: at, stats };
    if (dirname(at) === at) return undefined;
  }
}

/** lstat(2) of `path` as a list of one, or none when it is not there. */
function lstatOrNone(path: string): Stats[] {
  try {
    return [lstatSync(path)];
  } catch {
    return [];
  }
}

function statOrUndefined(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

/**
 * The name and primary gid /etc/passwd gives `uid`; undefined for a uid not there (or no file to
 * read). Not accounts.ts's getent: this module loads with every command (process-entry.ts), and
 * node:child_process would then too.
 */
function passwdEntryOf(uid: number): { name: string; gid: number } | undefined {
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const fields = line.split(":");
      if (fields.length >= 4 && Number(fields[2]) === uid && fields[2] !== "") return { name: fields[0]!, gid: Number(fields[3]) };
    }
  } catch {
    // no passwd file (a minimal container): the directory's group
  }
  return undefined;
}
