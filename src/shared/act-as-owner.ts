/**
 * A command run as root (`sudo flashlex hub thing create ...`, `sudo flashlex serve`) on a place
 * another user controls (the hub home or the thing's folder of the service user) acts as that
 * user: everything it writes there (a distribution zip, the database's files, serve's lock files)
 * is then the user's, so the user's service can use it; before, a root-owned 0600 zip made the
 * hub answer 500, and a root-owned `data/serve.lock` stopped the thing's unit (78, then 77). And
 * root's rights are never used on what another user controls: a directory the user swapped for a
 * symbolic link would aim root's writes anywhere, and a file the user wrote names files root
 * would replace (hub.yml's `broker.crlFiles`, a config's key files) and a command it would run
 * (hub.yml's `broker.reloadCommand`).
 *
 * "Controls" is about every step of the way, not only the last: whoever owns a directory on the
 * path (or the path a link on it leads to) can swap what comes after it, between the look taken
 * here and the opens that follow. So root stays root only where root owns every step and no one
 * else may write in any of them; anywhere else it becomes the one user who does, whose rights a
 * swap cannot raise.
 */
import { accessSync, constants, lstatSync, readFileSync, readlinkSync, realpathSync, type Stats } from "node:fs";
import { dirname, join, parse, resolve, sep } from "node:path";
import { FlashlexError } from "./errors.ts";
import { passwdEntryOf } from "./passwd.ts";
import { lstatOrUndefined, realpathOrUndefined } from "./path-exists.ts";
import { shellWord } from "./shell-word.ts";

/** A place a command acts on, and how its messages name it. */
export interface OwnedPlace {
  /** the place's directory (made or not yet) */
  dir: string;
  /** what the messages call it: "hub home", "thing's folder" */
  name: string;
  /** what the note calls this process: "hub command", "thing command" */
  actor: string;
  /** whom the fixes give it to: "the hub's user" */
  user: string;
  /**
   * Whether the command writes in `dir` itself (default true: a hub home, an enrolled folder);
   * false where only the telling paths are written (a thing command's folder holds the config,
   * and a `-c` may name a file in /tmp, where nothing else is written). Others may not write in
   * a directory written in, even a sticky one.
   */
  writesInDir?: boolean;
  /**
   * Paths besides the directory that say whose the place is (absent ones skipped): those naming
   * files it writes or commands it runs (hub.yml, a thing's config.yml) and where it reads keys
   * and writes (dists/, a thing's keys and data directories, wherever -k and -d put them).
   * Entries that may rightly be another program's (a Mosquitto persistence directory given to
   * `mosquitto`) are not among them.
   */
  telling: string[];
}

/** The owner this process took on (actAsOwnerOf), and the path of theirs that made it so, for the messages that depend on it. */
let tookOn: { uid: number; name?: string; place: OwnedPlace; because: string } | undefined;

/** The user this process took on (actAsOwnerOf), as the messages name it; undefined when it acts as nobody else. */
export function actingAs(): string | undefined {
  return tookOn ? who(tookOn.uid, tookOn.name) : undefined;
}

/**
 * What a failure of this process adds while it acts as a place's owner: root started it, so
 * "permission denied" would read as nonsense without it. `fix` is what to do instead of the
 * default (a `chown -R` of the place, for files an older root run left there); false for none,
 * where the failure is not about access. `about`, the failure's message: the default is given
 * only when it names the place or a path in it. Undefined when this process acts as nobody else.
 */
export function actingAsOwnerNote(fix?: string | false, about?: string): string | undefined {
  if (!tookOn) return undefined;
  const { place } = tookOn;
  // a failure outside the place (an -o directory of root's) is not one a chown of the place fixes
  if (fix === undefined && about !== undefined && !about.includes(place.dir) && !about.includes(realOrAsIs(place.dir))) fix = false;
  const said = `started by root, this ${place.actor} runs as ${who(tookOn.uid, tookOn.name)}, ${whyThisUser(tookOn)}`;
  if (fix === false) return `(${said})`;
  return `(${said}: ${fix ?? `give that user what it needs, e.g. \`${actingAsOwnerChown()}\` for files an older root run left there`})`;
}

/** The `chown -R` that gives the place to the user this process took on; undefined when it acts as nobody else. */
export function actingAsOwnerChown(): string | undefined {
  return tookOn ? `sudo chown -R ${tookOn.name ?? tookOn.uid}: ${shellWord(realOrAsIs(tookOn.place.dir))}` : undefined;
}

/**
 * Why the user taken on is the one: it owns the place, a directory on the way to it (the place
 * itself may be root's), or one of the paths the command uses elsewhere (`-k` keys of the user's
 * with the folder root's), or a directory on the way to one. `placeNamed` false: the line
 * already begins with the place.
 */
function whyThisUser({ place, because, uid }: { place: OwnedPlace; because: string; uid: number }, { placeNamed = true } = {}): string {
  const ownsPlace = resolve(because) === resolve(place.dir) || statOrUndefined(place.dir)?.uid === uid;
  if (ownsPlace) return `the owner of the ${place.name}${placeNamed ? ` ${place.dir}` : ""}`;
  // as the kernel follows them: a -k that is a link to the user's keys leads to their real place
  const leadsTo = (path: string) => [resolve(path), realOrAsIs(resolve(path))].some((at) => at === resolve(because) || at.startsWith(`${resolve(because)}/`));
  const used = leadsTo(place.dir) ? undefined : place.telling.find(leadsTo);
  if (used === undefined) return `who owns ${because}, on the way to the ${place.name} ${place.dir}`;
  const isUsed = [resolve(used), realOrAsIs(resolve(used))].includes(resolve(because));
  return isUsed ? `who owns ${because}, which it uses` : `who owns ${because}, on the way to ${used}, which it uses`;
}

/**
 * When this process is root and a user other than root controls the place (owns its directory,
 * a telling path, or any directory on the way to them or to where their links lead; for a place
 * not made yet, its nearest existing parent), becomes that user for good: the user's groups,
 * then its primary gid (from /etc/passwd; the directory's group for a uid not there) and uid
 * (POSIX setgroups/setgid/setuid, which glibc applies to every thread), and the user's HOME,
 * USER and LOGNAME for what it runs. Call it before anything is opened or any worker thread
 * starts. Returns the uid taken on, or undefined when nothing changed: not root, or a place
 * root alone controls. Throws FlashlexError permission (77) for a place root must not act on:
 * one several other users control; one where others may write on the way (a directory or a
 * telling file writable by group or others, a sticky one such as /tmp excepted where what
 * follows it is there already); and one another user controls when this process may not change
 * its user (no CAP_SETUID or CAP_SETGID), or when that user may not enter the place.
 */
export function actAsOwnerOf(place: OwnedPlace): number | undefined {
  if (process.geteuid?.() !== 0) return undefined;
  const owner = ownerToActAs(place);
  if (owner === undefined) return undefined;
  const account = passwdEntryOf(owner.uid);
  const gid = account?.gid ?? owner.gid;
  const name = account?.name;
  if (!maySwitchUser()) {
    throw new FlashlexError(
      `${place.dir}: the ${place.name} is ${who(owner.uid, name)}'s (${owner.path}), and this process, started by root, may not become that user (no CAP_SETUID or CAP_SETGID): it does not act on the place with root's rights; run the command as ${name ?? `uid ${owner.uid}`}`,
      "permission",
    );
  }
  // the supplementary groups first: once the uid changes, nothing more may change
  try {
    (process as { initgroups?: (user: number, extraGroup: number) => void }).initgroups?.(owner.uid, gid);
  } catch {
    process.setgroups?.([gid]); // a uid without a passwd entry has no groups of its own
  }
  process.setgid?.(gid);
  process.setuid?.(owner.uid);
  // what --exec handlers and hooks it runs see: the user's, not root's (sudo keeps HOME=/root)
  if (account) Object.assign(process.env, { HOME: account.home, USER: account.name, LOGNAME: account.name });
  // said whole, before the note every later permission failure gets
  refuseUnreachable(place, owner.uid, name, owner.path);
  tookOn = { uid: owner.uid, name, place, because: owner.path };
  return owner.uid;
}

/** The owner taken on, with one path that made it so; undefined when root alone controls the place. Throws for a place root must not act on. */
function ownerToActAs(place: OwnedPlace): { uid: number; gid: number; path: string } | undefined {
  const steps = [place.dir, ...place.telling].flatMap((path) => stepsTo(resolve(path)));
  const others = steps.filter((step) => step.stats.uid !== 0);
  const uids = [...new Set(others.map((step) => step.stats.uid))];
  if (uids.length > 1) {
    const whose = uids.map((uid) => {
      const first = others.find((step) => step.stats.uid === uid)!;
      return `${who(uid, passwdEntryOf(uid)?.name)} owns ${first.path}`;
    });
    const folderOwner = uids.includes(statOrUndefined(place.dir)?.uid ?? -1) ? passwdEntryOf(statOrUndefined(place.dir)!.uid) : undefined;
    const fix = folderOwner ? `sudo chown -R ${folderOwner.name}: ${shellWord(realOrAsIs(place.dir))}` : `chown -R it to ${place.user}`;
    throw new FlashlexError(
      `${place.dir}: the ${place.name} and the way to it belong to several users (${whose.join("; ")}): root does not act on it; give it all to one user (${fix}) and run the command again`,
      "permission",
    );
  }
  if (uids.length === 1) {
    const first = others[0]!;
    return { uid: first.stats.uid, gid: first.stats.gid, path: first.path };
  }
  // root's all the way: no one else may be able to change any of it between here and its use;
  // in the place itself and its telling paths, not even by adding to a sticky directory
  // (a device or file named as the place is none at all: the commands' own checks say so)
  const own = [...(place.writesInDir === false ? [] : [place.dir]), ...place.telling].flatMap((path) => {
    const stats = statOrUndefined(path);
    return stats && (stats.isDirectory() || stats.isFile()) && writableByOthers(stats) ? [{ path: resolve(path), stats, own: true }] : [];
  });
  const open = own[0] ?? steps.find((step) => step.openToOthers);
  if (open) {
    const mode = (open.stats.mode & 0o7777).toString(8);
    const itself = open.path === resolve(place.dir);
    const what = itself
      ? `the ${place.name} is root's but others may write in it (mode ${mode}), so its files may be anyone's`
      : "own" in open
        ? `${open.path} is root's but others may write in it (mode ${mode}), so what it holds may be anyone's`
        : `${open.path}, on the way to it, is root's but others may write in it (mode ${mode}), so what lies beyond it may be anyone's`;
    // a directory everyone shares (/tmp) is never to be closed or given away
    const shared = open.stats.isDirectory() && (open.stats.mode & 0o1000) !== 0;
    const fix = !shared
      ? `give it to ${place.user} (chown -R), or chmod go-w`
      : itself
        ? `use a directory of its own inside it`
        : `make the ${place.name} there first, as ${place.user}`;
    throw new FlashlexError(`${place.dir}: ${what}: root does not act on it; ${fix}`, "permission");
  }
  return undefined;
}

/** One existing step on the way to a path: a directory, a link or the path itself, as lstat(2) saw it. */
interface Step {
  path: string;
  stats: Stats;
  /**
   * Others than its owner may change what follows it: a directory (or a file) writable by its
   * group or others; for a sticky directory (/tmp), only when the next step is not there yet
   * (anyone may make it).
   */
  openToOthers: boolean;
}

/**
 * Every existing step from `/` to `path` (lstat'ed: a link counts by its own owner), then, for a
 * link on the way, every step to where it leads (realpath; the link's own text when it leads to
 * a path not made yet). A path not made yet stops at its nearest existing parent.
 */
function stepsTo(path: string, seen = new Set<string>()): Step[] {
  if (seen.has(path)) return [];
  seen.add(path);
  const { root } = parse(path);
  const parts = path.slice(root.length).split(sep).filter(Boolean);
  const steps: Step[] = [];
  let at = root;
  for (let i = 0; i <= parts.length; i++) {
    if (i > 0) at = join(at, parts[i - 1]!);
    const stats = lstatOrUndefined(at);
    if (!stats) {
      // the next step is still to be made: in a directory others may write in, anyone may make it first
      const parent = steps.at(-1);
      if (parent?.stats.isDirectory() && writableByOthers(parent.stats)) parent.openToOthers = true;
      break;
    }
    const sticky = stats.isDirectory() && (stats.mode & 0o1000) !== 0;
    // a device on the way (/dev/zero given as the place) leads nowhere: the commands' own checks say so
    steps.push({ path: at, stats, openToOthers: writableByOthers(stats) && ((stats.isDirectory() && !sticky) || stats.isFile()) });
    if (stats.isSymbolicLink()) {
      // where it leads, made or not: a link to a path not there yet leads into whoever may make it
      const target = realpathOrUndefined(at) ?? linkTarget(at);
      if (target) steps.push(...stepsTo(target, seen));
    }
  }
  return steps;
}

/**
 * Writable by anyone but its owner: by others, or by its group, root's included. With a POSIX
 * ACL the group bits are the ACL's mask, so a directory whose ACL lets another user write shows
 * group write whatever its group (a link's own bits are meaningless).
 */
function writableByOthers(stats: Stats): boolean {
  if (stats.isSymbolicLink()) return false;
  return (stats.mode & 0o022) !== 0;
}

/** Where the link `path` points, absolute, whether or not it is there; undefined when it cannot be read. */
function linkTarget(path: string): string | undefined {
  try {
    return resolve(dirname(path), readlinkSync(path));
  } catch {
    return undefined;
  }
}

/**
 * Whether this root process may change its user: CAP_SETUID (7) and CAP_SETGID (6) in its
 * effective set (/proc/self/status CapEff). Checked before anything changes: a process that had
 * one and not the other ended half-switched (root's uid with the user's group).
 */
function maySwitchUser(): boolean {
  try {
    const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1];
    if (hex === undefined) return true; // no /proc: setuid(2) says
    const caps = BigInt(`0x${hex}`);
    return (caps & (1n << 6n)) !== 0n && (caps & (1n << 7n)) !== 0n;
  } catch {
    return true;
  }
}

/**
 * Throws FlashlexError permission (77) when the user taken on may not enter the place (a
 * directory on the way it may not search): the command would fail on its first file, and the
 * note's `chown -R` of the place would not help.
 */
function refuseUnreachable(place: OwnedPlace, uid: number, name: string | undefined, because: string): void {
  let existing = nearestExisting(resolve(place.dir));
  if (!existing) return;
  // A file where the place should be is entered by no one: only the way to it is this check's;
  // what it is, the command says (`a file, not a hub home`, 78), not "may not enter" and a chmod.
  if (!statOrUndefined(existing)?.isDirectory()) existing = dirname(existing);
  try {
    accessSync(existing, constants.X_OK);
  } catch {
    let blocked = existing;
    for (let at = existing; dirname(at) !== at; at = dirname(at)) {
      try {
        accessSync(dirname(at), constants.X_OK);
      } catch {
        blocked = dirname(at);
      }
    }
    throw new FlashlexError(
      `${place.dir}: started by root, this ${place.actor} runs as ${who(uid, name)}, ${whyThisUser({ place, because, uid }, { placeNamed: false })}, but may not enter ${blocked} (fix: sudo chmod o+x ${shellWord(blocked)}, or move the ${place.name})`,
      "permission",
    );
  }
}

const who = (uid: number, name?: string) => (name ? `${name} (uid ${uid})` : `uid ${uid}`);

/** `path`, or its nearest existing parent; undefined when none can be looked at. */
function nearestExisting(path: string): string | undefined {
  for (let at = path; ; at = dirname(at)) {
    if (statOrUndefined(at)) return at;
    if (dirname(at) === at) return undefined;
  }
}

function statOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(realpathSync(path));
  } catch {
    return undefined;
  }
}

/** `path` with its links followed (a `chown -R` of a link changes only the link), else as it is. */
function realOrAsIs(path: string): string {
  return realpathOrUndefined(path) ?? resolve(path);
}
