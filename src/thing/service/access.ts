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
import { ConfigError, FlashlexError } from "../../shared/errors.ts";
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
  data: string;
}

/** Whether `account` has every permission in `need` ("r", "w", "x") on `path` by its mode bits. */
export function permitted(path: string, account: ServiceAccount, need: string): boolean {
  const st = statSync(path);
  const shift = st.uid === account.uid ? 6 : account.groups.includes(st.gid) ? 3 : 0;
  const bits = (st.mode >> shift) & 0o7;
  const wanted = (need.includes("r") ? 4 : 0) | (need.includes("w") ? 2 : 0) | (need.includes("x") ? 1 : 0);
  return (bits & wanted) === wanted;
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

/** The session lock of key file `key` (serve-lock.ts) when another user owns it. */
function foreignLock(key: string, account: ServiceAccount): { path: string; uid: number }[] {
  if (account.uid === 0) return [];
  const lock = sessionLockFile(key);
  const st = lstatSync(lock, { throwIfNoEntry: false });
  return st && st.uid !== account.uid ? [{ path: lock, uid: st.uid }] : [];
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

/**
 * Throws FlashlexError `permission` (77), one line naming the file, the service user and the
 * fix, when `account` could not read the config, the keys directory or a key file, or could
 * not write the data directory (a missing one is made for it later, so its parent must only be
 * reachable). Returns the warnings that do not stop serve: a keys directory it cannot write
 * (certificate renewal writes its new key there).
 */
export function checkServiceAccess(files: ServiceFiles, account: ServiceAccount): string[] {
  const who = account.name;
  const fix = (path: string, recursive = false) => ownershipFix(path, account, files.folder, recursive);
  const reach = (path: string) => reachable(path, account, [files.folder]);
  checkConfigAccess(files.config, files.folder, account);
  reach(files.keysDir);
  if (!permitted(files.keysDir, account, "rx")) throw refuse(`${who} cannot open the keys directory ${files.keysDir} (fix: ${fix(files.keysDir, true)})`);
  for (const file of files.keyFiles) {
    reach(file); // a key outside the keys directory (the config may name any path)
    if (!pathExists(file)) continue; // loadIdentity says what is missing
    if (!permitted(file, account, "r")) throw refuse(`${who} cannot read ${file} (fix: ${fix(file)})`);
  }
  reachable(files.data, account, [files.folder, files.data]);
  // before the permission: "cannot write" and a chown would send the owner the wrong way
  if (pathKind(files.data) === "other") throw new ConfigError(`${files.data}: the data directory is not a directory`);
  if (pathExists(files.data) && !permitted(files.data, account, "rwx"))
    throw refuse(`${who} cannot write the data directory ${files.data} (fix: ${fix(files.data, true)})`);
  // what a serve run by hand as another user (root) left: the service's serve stops on it
  const left = [...(pathExists(files.data) ? foreignEntries(files.data, account) : []), ...files.keyFiles.flatMap((key) => foreignLock(key, account))];
  if (left.length) {
    const [first] = left;
    const fixed = isInFolder(first!.path, files.data) ? fix(files.data, true) : fix(first!.path);
    throw refuse(
      `${who} cannot use ${first!.path}: it belongs to uid ${first!.uid}, left there by another user (a serve run as root?), and the service's serve would stop on it (fix: ${fixed})`,
    );
  }
  return permitted(files.keysDir, account, "wx")
    ? []
    : [`${who} cannot write ${files.keysDir}: certificate renewal, which writes the new key there, will fail (fix: ${fix(files.keysDir)})`];
}
