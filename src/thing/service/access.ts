/**
 * What the service user must be able to reach before install-service writes a unit: every file
 * `serve` opens at its start (the config, the keys directory and each key file it reads), and
 * the data directory it writes, with what another user left in it and the session lock. A file
 * the user cannot read makes the service exit 77 at once, and the unit's RestartPreventExitStatus
 * leaves it failed: checked here first, so the refusal comes from install-service, naming the
 * file and the fix, with nothing written.
 *
 * By mode bits and the account's groups (owner, then group, then other, as the kernel decides
 * without ACLs), every directory on the way needing search permission. Only node: APIs, and
 * serve-lock.ts for where the session lock lies.
 */
import { lstatSync, readdirSync, realpathSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { getent, getentAll } from "../../shared/accounts.ts";
import { ConfigError, FlashlexError } from "../../shared/errors.ts";
import { userLabel } from "../../shared/passwd.ts";
import { fileOnTheWay, pathExists, pathKind } from "../../shared/path-exists.ts";
import { shellWord } from "../../shared/shell-word.ts";
import { sessionLockFile } from "../local/serve-lock.ts";

export interface ServiceAccount {
  name: string;
  uid: number;
  gid: number;
  group: string;
  /** every group id the account has (primary and supplementary) */
  groups: number[];
}

export interface ServiceFiles {
  /** the thing's folder: the directory the config was named in, links not followed */
  folder: string;
  config: string;
  keysDir: string;
  /** the key files serve reads (root CA, certificate, private key) */
  keyFiles: string[];
  /** the private key among them: serve's MQTT session lock is made beside it */
  privateKey: string;
  data: string;
  /** the thing's folder when self-update is on and replaces the binary there (install.ts's selfUpdateCheck warns for the rest) */
  selfUpdateDir?: string;
}

/** Whether `account` has every permission in `need` ("r", "w", "x") on `path` by its mode bits. */
export function permitted(path: string, account: ServiceAccount, need: string): boolean {
  const st = statSync(path);
  const shift = st.uid === account.uid ? 6 : account.groups.includes(st.gid) ? 3 : 0;
  const bits = (st.mode >> shift) & 0o7;
  const wanted = (need.includes("r") ? 4 : 0) | (need.includes("w") ? 2 : 0) | (need.includes("x") ? 1 : 0);
  return (bits & wanted) === wanted;
}

/**
 * The mode (`0777`) of `path` when users other than `account` (and root) may change it: written by
 * everyone (with `stickyIsEnough`, a directory's sticky bit aside, which keeps others from
 * replacing what they do not own), or by a group other than root's and the account's private
 * group (isPrivateGroup). Undefined when only the account may, or when
 * `path` is not there. What the service runs (its binary, the update guard in data/, its config)
 * lies in such places: any local user could then run code as the service's user, who holds the
 * thing's private key (attack round 28, F6).
 */
export function writableByOthers(path: string, account: ServiceAccount, { stickyIsEnough = false } = {}): string | undefined {
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st) return undefined;
  // sticky keeps others from renaming what they do not own, not from making what is not there
  // yet (data/update before serve: verify pass 32, F5): enough only for a folder's parent
  const sticky = stickyIsEnough && st.isDirectory() && (st.mode & 0o1000) !== 0;
  const byEveryone = (st.mode & 0o002) !== 0 && !sticky;
  const byAGroup = (st.mode & 0o020) !== 0 && !isPrivateGroup(st.gid, account);
  return byEveryone || byAGroup ? `0${(st.mode & 0o7777).toString(8)}` : undefined;
}

/** isPrivateGroup on this system's group and user databases (getent). */
function isPrivateGroup(gid: number, account: ServiceAccount): boolean {
  if (gid !== 0 && gid !== account.gid) return false;
  let groups = getentAll("group");
  // a system that lists nothing may still answer for one group
  if (!groups.length) groups = [getent("group", String(gid))].filter((group) => group !== undefined);
  return groupIsPrivate(gid, account, groups, getentAll("passwd"));
}

/**
 * True when only the account and root can use group `gid`: root's group (0), or the account's
 * user private group (its primary group, named as the account, as Debian's adduser makes it),
 * where every entry of that gid has that name, lists no member but the account or root, and no
 * other user has it as primary group. `groups` and `users` are the group and passwd databases as
 * getent gives them (fields split on `:`). A primary group alone was taken as the account's own:
 * one shared with others (`users`, a group other users are members of, verify pass 32; another
 * user's primary group, which no member list shows, verify pass 33; a second group of the same
 * gid under another name, `groupadd -o`, or a member added to root's group, attack round 30) let
 * each of them change what the service runs.
 */
export function groupIsPrivate(gid: number, account: ServiceAccount, groups: readonly string[][], users: readonly string[][]): boolean {
  const name = gid === 0 ? "root" : gid === account.gid ? account.name : undefined;
  if (name === undefined) return false;
  const mayUse = (user: string | undefined) => user === "" || user === account.name || user === "root";
  const entries = groups.filter((group) => group[2] === String(gid));
  if (!entries.length || !entries.every((group) => group[0] === name && (group[3] ?? "").split(",").every(mayUse))) return false;
  return users.every((user) => user[3] !== String(gid) || mayUse(user[0]));
}

/** The first directory above `path` that `account` cannot search, or undefined when it reaches it. */
function blockedOnTheWay(path: string, account: ServiceAccount): string | undefined {
  const dirs: string[] = [];
  for (let dir = dirname(resolve(path)); ; dir = dirname(dir)) {
    dirs.unshift(dir);
    if (dir === dirname(dir)) break;
  }
  // a directory not made yet (the data directory's parents) is made by root for the service later
  return dirs.find((dir) => pathExists(dir) && !permitted(dir, account, "x"));
}

const refuse = (message: string) => new FlashlexError(message, "permission");

/**
 * Throws FlashlexError `permission` (77) naming the fix when `account` cannot reach `path` (a
 * directory on the way it may not enter): a `chmod o+x` of that directory when it is one of
 * `homes` (the thing's folder; for the data directory, that directory too, which -d chose), in
 * one, or above one (a 0700 home the folder is in); else, as for a chown, the thing's own copy in
 * the folder (a key under /root got `sudo chmod o+x /root`).
 */
function reachable(path: string, account: ServiceAccount, homes: readonly string[]): void {
  const inTheWay = fileOnTheWay(path);
  if (inTheWay !== undefined) throw new ConfigError(`${path}: ${inTheWay} is a file, not a directory`);
  const blocked = blockedOnTheWay(path, account);
  if (!blocked) return;
  const opens = homes.some((home) => isInFolder(blocked, home) || realOrAsIs(home).startsWith(`${realOrAsIs(blocked)}/`));
  const fix = opens
    ? `sudo chmod o+x ${shellWord(blocked)}, or move the thing's folder`
    : `it is outside the thing's folder ${shellWord(homes[0]!)}: put the thing's own copy in the folder and name it in config.yml`;
  throw refuse(`${account.name} cannot reach ${path}: it may not enter ${blocked} (fix: ${fix})`);
}

/**
 * Throws FlashlexError `permission` (77) naming the fix when `account` could not reach or read
 * the config: checked before root parses it, since what a parse error says (the keys it found,
 * their types) would tell the thing's owner about a file only root may read (a config.yml that
 * is a link to /etc/shadow).
 */
export function checkConfigAccess(config: string, folder: string, account: ServiceAccount): void {
  reachable(config, account, [folder]);
  if (!permitted(config, account, "r")) throw refuse(`${account.name} cannot read ${config} (fix: ${ownershipFix(config, account, folder)})`);
}

/**
 * The fix for a file or directory the service user cannot use: a chown of it when it lies in the
 * thing's folder `folder` (by real paths: a link out of the folder is out), else the thing's own
 * copy in the folder. A config or a link may name anything (/etc/shadow, /root), and a chown of
 * that, pasted by root, gave a system file to the service user.
 */
function ownershipFix(path: string, account: ServiceAccount, folder: string, recursive = false): string {
  // a file with other names (hard links) is also elsewhere, where no realpath shows it
  const links = statSync(path, { throwIfNoEntry: false });
  if (links?.isFile() && links.nlink > 1) {
    return `it has ${links.nlink - 1} other name(s) (hard links), which may lie outside the thing's folder: put the thing's own copy in its place; do not give it to ${account.name}`;
  }
  if (isInFolder(path, folder)) return `sudo chown ${recursive ? "-R " : ""}${account.name}:${account.group} ${shellWord(path)}`;
  const real = realOrAsIs(path);
  return `it is ${real === path ? "" : `${real}, `}outside the thing's folder ${shellWord(folder)}: put the thing's own copy in the folder and name it in config.yml; do not give it to ${account.name}`;
}

/**
 * The entries of the data directory `dir` (and of its directories, such as update/) that are not
 * `account`'s: serve refuses a lock file another user owns (78) and cannot write the rest. None
 * for root, whose serve uses what the folder's owner left. At most the first few hundred looked at.
 */
function foreignEntries(dir: string, account: ServiceAccount, depth = 2): { path: string; uid: number }[] {
  if (account.uid === 0) return [];
  let names: string[];
  try {
    names = readdirSync(dir).slice(0, 500);
  } catch {
    return []; // unreadable: the permission check above said so
  }
  return names.flatMap((name) => {
    const path = join(dir, name);
    const st = lstatSync(path, { throwIfNoEntry: false });
    if (!st) return [];
    if (st.uid !== account.uid) return [{ path, uid: st.uid }];
    return st.isDirectory() && depth > 1 ? foreignEntries(path, account, depth - 1) : [];
  });
}

/** Whether `path`, its links followed, lies in `folder` (its links followed too; never "/"). */
export function isInFolder(path: string, folder: string): boolean {
  const real = realOrAsIs(path);
  const home = realOrAsIs(folder);
  return home !== "/" && (real === home || real.startsWith(`${home}/`));
}

/** `path` with its links followed, or as it is when that cannot be done (not there yet). */
function realOrAsIs(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}

/** One thing the service user could not do that serve does at its start, and its own fix. */
interface Unusable {
  path: string;
  /** what the user cannot do, after its name: "cannot read /x/key.pem" */
  cannot: string;
  fix: Fix;
}

/** A fix as the line gives it, and, when it is a chown of the path, what it changes (to join several into one command). */
interface Fix {
  text: string;
  chown?: { path: string; recursive: boolean };
}

/**
 * Throws FlashlexError `permission` (77), one line naming the service user, every file it could
 * not use and the fix, when `account` could not read the config, the keys directory or a key
 * file, could not write the data directory (a missing one is made for it later, so its parent
 * must only be reachable), would find what another user left there, or could not make or open
 * the thing's MQTT session lock beside the private key (serve exits 77 on each). Everything is
 * looked at before it throws: a folder unzipped as root names all of its files in one run, and
 * their chowns as one command (it took three runs, one file each). A directory on the way the
 * user may not enter is thrown at once (its fix is a chmod).
 * Returns the warnings that do not stop serve: a keys directory it cannot write (certificate
 * renewal writes its new key there). With a refusal, that directory and `selfUpdateDir` when the
 * user cannot write them are named in it too, their chowns joined with the rest.
 */
export function checkServiceAccess(files: ServiceFiles, account: ServiceAccount): string[] {
  const who = account.name;
  const fix = (path: string, recursive = false): Fix => {
    // ownershipFix gives a chown only for what may be given (in the folder, no other names)
    const text = ownershipFix(path, account, files.folder, recursive);
    return text.startsWith("sudo chown ") ? { text, chown: { path, recursive } } : { text };
  };
  const reach = (path: string) => reachable(path, account, [files.folder]);
  checkConfigAccess(files.config, files.folder, account);
  const unusable: Unusable[] = [];
  reach(files.keysDir);
  const keysOpen = permitted(files.keysDir, account, "rx");
  if (!keysOpen) unusable.push({ path: files.keysDir, cannot: `cannot open the keys directory ${files.keysDir}`, fix: fix(files.keysDir, true) });
  for (const file of files.keyFiles) {
    // in a keys directory named above, whose chown -R covers it (reach() would stop the run at
    // once with a `chmod o+x` of the keys directory: a detour that opened it to everyone)
    if (!keysOpen && isInFolder(file, files.keysDir)) continue;
    reach(file); // a key outside the keys directory (the config may name any path)
    if (!pathExists(file)) continue; // loadIdentity says what is missing
    if (!permitted(file, account, "r")) unusable.push({ path: file, cannot: `cannot read ${file}`, fix: fix(file) });
  }
  reachable(files.data, account, [files.folder, files.data]);
  // before the permission: "cannot write" and a chown would send the owner the wrong way
  if (pathKind(files.data) === "other") throw new ConfigError(`${files.data}: the data directory is not a directory`);
  if (pathExists(files.data) && !permitted(files.data, account, "rwx")) {
    unusable.push({ path: files.data, cannot: `cannot write the data directory ${files.data}`, fix: fix(files.data, true) });
  }
  // what a serve run by hand as another user (root) left: the service's serve stops on it
  const left = pathExists(files.data) ? foreignEntries(files.data, account) : [];
  if (left.length) {
    const more = left.length > 1 ? ` (and ${left.length - 1} more there)` : "";
    unusable.push({
      path: left[0]!.path,
      cannot: `cannot use ${left[0]!.path}${more}: it belongs to ${userLabel(left[0]!.uid)}, ${leftBy(left[0]!.uid)}, and the service's serve would stop on it`,
      fix: fix(files.data, true),
    });
  }
  if (pathExists(files.privateKey)) unusable.push(...sessionLockProblems(files.privateKey, account, fix));
  // Serve runs without these, so alone they are warnings; with a refusal they join its one chown
  // (after pasting it, the next run warned with two more commands).
  const renewal = !permitted(files.keysDir, account, "wx");
  const selfUpdate = files.selfUpdateDir !== undefined && !permitted(files.selfUpdateDir, account, "wx");
  const later: Unusable[] = [
    ...(renewal
      ? [{ path: files.keysDir, cannot: `cannot write ${files.keysDir}, where certificate renewal writes the new key`, fix: fix(files.keysDir) }]
      : []),
    ...(selfUpdate
      ? [{ path: files.selfUpdateDir!, cannot: `cannot write ${files.selfUpdateDir}, where self-update replaces the binary`, fix: fix(files.selfUpdateDir!) }]
      : []),
  ].filter((u) => !unusable.some((named) => named.path === u.path));
  if (unusable.length) throw refuse(unusableLine(who, [...unusable, ...later], account));
  return renewal
    ? [`${who} cannot write ${files.keysDir}: certificate renewal, which writes the new key there, will fail (fix: ${fix(files.keysDir).text})`]
    : [];
}

/** Who likely left a file another user owns: a serve started by hand as root, when root owns it. */
function leftBy(uid: number): string {
  return uid === 0 ? "left there by another user (a serve run as root?)" : "left there by another user";
}

/**
 * What keeps `account`'s serve from taking the thing's MQTT session lock beside the private key
 * `key` (serve-lock.ts): anything but a file there (a link, a directory: serve refuses it without
 * opening it, 78; a `chmod` of a link changed what it leads to), a lock another user left (78),
 * one of its own it may not open for writing, or none there and a directory it may not make it
 * in (serve exits 77). None for root.
 */
function sessionLockProblems(key: string, account: ServiceAccount, fix: (path: string) => Fix): Unusable[] {
  if (account.uid === 0) return [];
  const lock = sessionLockFile(key);
  const st = lstatSync(lock, { throwIfNoEntry: false });
  if (st && !st.isFile()) {
    const kind = st.isSymbolicLink() ? "a symbolic link" : st.isDirectory() ? "a directory" : "not a file";
    return [
      {
        path: lock,
        cannot: `cannot use ${lock}: it is ${kind} where the thing's MQTT session lock belongs, and the service's serve would refuse it`,
        fix: { text: `sudo rm ${st.isDirectory() ? "-r " : ""}${shellWord(lock)}; serve makes the lock itself` },
      },
    ];
  }
  if (st && st.uid !== account.uid) {
    return [
      {
        path: lock,
        cannot: `cannot use ${lock}: it belongs to ${userLabel(st.uid)}, ${leftBy(st.uid)}, and the service's serve would stop on it`,
        fix: fix(lock),
      },
    ];
  }
  if (st)
    return permitted(lock, account, "rw")
      ? []
      : [{ path: lock, cannot: `cannot open ${lock}, the thing's MQTT session lock, for writing`, fix: { text: `sudo chmod 600 ${shellWord(lock)}` } }];
  const dir = dirname(lock);
  if (permitted(dir, account, "wx")) return [];
  return [{ path: dir, cannot: `cannot write ${dir}, where serve makes the thing's MQTT session lock ${lock}`, fix: fix(dir) }];
}

/**
 * One line for what `who` cannot use: the one problem with its own fix; several, each named,
 * with their chowns joined into one command (a path inside a directory chowned with -R left
 * out), the others with their own fix. Never a chown of more than what was named: a config
 * given as /etc/x.yml had the whole of /etc given to the user.
 */
function unusableLine(who: string, unusable: Unusable[], account: ServiceAccount): string {
  if (unusable.length === 1) return `${who} ${unusable[0]!.cannot} (fix: ${unusable[0]!.fix.text})`;
  const chowns = unusable.flatMap((u) => (u.fix.chown ? [u.fix.chown] : []));
  const recursive = [...new Set(chowns.filter((c) => c.recursive).map((c) => c.path))];
  const under = (path: string, dirs: string[]) => dirs.some((dir) => dir !== path && isInFolder(path, dir));
  const whole = recursive.filter((path) => !under(path, recursive));
  const single = [...new Set(chowns.filter((c) => !c.recursive).map((c) => c.path))].filter((path) => !whole.includes(path) && !under(path, whole));
  const owner = `${account.name}:${account.group}`;
  const command = [
    ...(whole.length ? [`sudo chown -R ${owner} ${whole.map(shellWord).join(" ")}`] : []),
    ...(single.length ? [`sudo chown ${owner} ${single.map(shellWord).join(" ")}`] : []),
  ].join(" && ");
  // the others grouped by their fix: a key outside the folder and its lock's directory share one
  const byFix = new Map<string, Unusable[]>();
  for (const u of unusable) if (!u.fix.chown) byFix.set(u.fix.text, [...(byFix.get(u.fix.text) ?? []), u]);
  const parts = [
    ...unusable.filter((u) => u.fix.chown).map((u) => u.cannot),
    ...[...byFix].map(([fix, group]) => `${group.map((u) => u.cannot).join("; ")} (fix: ${fix})`),
  ];
  return `${who} cannot use ${unusable.length} of the paths the service's serve needs: ${parts.join("; ")}${command ? ` (fix: ${command})` : ""}`;
}
