/**
 * install-service / uninstall-service: what the guide's makeservice.py and five sudo commands
 * did, in one idempotent step (the command is src/cli/thing/service.ts). The unit comes from the
 * template embedded in the binary (unit.ts); this module gathers the values and talks to the system.
 *
 * Only node: APIs here (no Bun globals), so the armv7 Node build runs it unchanged.
 */
import { spawnSync } from "node:child_process";
import { accessSync, closeSync, constants, fchownSync, mkdirSync, openSync, readdirSync, readFileSync, realpathSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { getent } from "../../shared/accounts.ts";
import { ConfigError, FlashlexError, UsageError } from "../../shared/errors.ts";
import { writeFileAtomicallySync } from "../../shared/files.ts";
import { cutGiven } from "../../shared/log.ts";
import { notADirectory, notThereNote, pathExists, pathKind } from "../../shared/path-exists.ts";
import { shellWord } from "../../shared/shell-word.ts";
import { COMMIT, VERSION } from "../../shared/version.ts";
import { keyFileTooOpen, loadIdentity } from "../identity.ts";
import { defaultKeysDir, loadThingConfig } from "../settings.ts";
import { checkConfigAccess, checkServiceAccess, isInFolder, writableByOthers } from "./access.ts";
import { type Executable, runningExecutable } from "./executable.ts";
import { renderUnit, UNIT_TEMPLATE } from "./unit.ts";

export const DEFAULT_UNIT_PATH = "/etc/systemd/system/flashlex.service";
/** Where the Python distribution's guide told users to copy its unit. */
const LEGACY_UNIT_PATH = "/lib/systemd/system/flashlex.service";

export interface ServiceIO {
  out(text: string): void;
  err(text: string): void;
}

interface CommonOptions {
  dryRun?: boolean;
  /** default /etc/systemd/system/flashlex.service; the unit's name is its basename */
  unitPath?: string;
  /** default "systemctl" */
  systemctl?: string;
  /** exists only where systemd runs as PID 1 (sd_booted(3)); a seam for tests. Default /run/systemd/system */
  systemdRunDir?: string;
  /** a seam for tests: the effective uid */
  uid?: number;
  /** where progress and warnings go (the command prints them) */
  io: ServiceIO;
}

export interface InstallOptions extends CommonOptions {
  /**
   * aborted by SIGINT/SIGTERM (cli/command.ts `interruptible`): looked at before the unit is
   * written and after each systemctl step up to `enable`; an abort there takes the unit back
   * and throws the signal's reason
   */
  signal?: AbortSignal;
  /** required; optional in the type because cac hands over whatever flags it got */
  config?: string;
  /** default: as `serve` finds them (settings.ts `defaultKeysDir`) */
  keys?: string;
  /** default: `data/` beside the config file */
  data?: string;
  /** default: the owner of the config file; never root */
  user?: string;
  /** write the unit even when it runs another thing's config (one unit name per machine) */
  replace?: boolean;
  executable?: Executable;
}

export type UninstallOptions = CommonOptions;

/**
 * Installs, enables and (re)starts the unit for `serve`: checks everything the service will need
 * first (config, identity, user), writes the unit atomically, then runs systemctl. Idempotent.
 * Reports progress through `opts.io`. Throws a FlashlexError: permission (not root), usage (a
 * source run, a root or unusable user), config (the config or keys `serve` would refuse),
 * unavailable (a systemctl step failed).
 */
export async function installService(opts: InstallOptions): Promise<void> {
  await install(opts, opts.io);
}

/** Stops, disables and removes the unit; the config, keys and data stay. Throws like installService. */
export async function uninstallService(opts: UninstallOptions): Promise<void> {
  uninstall(opts, opts.io);
}

async function install(opts: InstallOptions, io: ServiceIO): Promise<void> {
  const dryRun = opts.dryRun ?? false;
  requireRoot(opts, "install-service");
  const exe = opts.executable ?? runningExecutable();
  if (!exe.compiled && !dryRun) {
    throw new UsageError("install-service needs the compiled binary; run `npm run build` and use dist/flashlex-<target> (--dry-run works from source)");
  }

  if (!opts.config) throw new UsageError("-c/--config is required");
  const config = existingConfig(opts.config);
  // the folder the config was named in, links not followed: a chown is offered inside it only
  const folder = dirname(resolve(opts.config));
  // the service user first: a dry run, which the systemd refusal points to, must not then refuse
  // for it; and the config as that user reads it before root parses it (checkConfigAccess)
  // (the config is not read yet: the keys' owner, for a hint, from where they usually are)
  const keysGuess = [opts.keys, join(dirname(config), "keys")].find((dir) => dir !== undefined && pathExists(dir)) ?? dirname(config);
  const user = serviceAccount(opts.user, config, keysGuess, folder);
  const account = { ...user, groups: groupsOf(user) };
  checkConfigAccess(config, folder, account);
  // The unit would start a serve that exits 78 at once: the config, the keys as serve will find
  // them and the thing's identity are checked before anything is written (the dry run checks
  // too, so it shows the same refusal).
  const thing = loadThingConfig({ config, keys: opts.keys, data: opts.data });
  const keys = existingDir(opts.keys ?? defaultKeysDir(dirname(config), thing.yaml.thing.keys.privateKey), "keys directory");
  const data = absolute(opts.data ?? join(dirname(config), "data"));
  // Everything serve opens, as the service user, before anything is written (a dry run too), and
  // before root reads a key file: a config naming a file only root may read as its key
  // (/etc/shadow) had root read it and say what it found there (no key; a key, not this one).
  const warnings = checkServiceAccess(
    {
      folder,
      config,
      keysDir: keys,
      keyFiles: [thing.paths.rootCA, thing.paths.cert, thing.paths.privateKey],
      privateKey: thing.paths.privateKey,
      data,
      selfUpdateDir: thing.yaml.update !== undefined && exe.compiled && resolve(dirname(exe.command)) === resolve(folder) ? folder : undefined,
    },
    account,
  );
  loadIdentity(thing);
  if (!dryRun) requireSystemd(opts.systemdRunDir ?? SYSTEMD_RUN_DIR);
  // serve runs with it (and warns in its log); bootstrap fails it: the installer says it too
  const openKey = keyFileTooOpen(thing.paths.privateKey);
  if (openKey)
    warnings.push(
      `other users can read the thing's private key ${thing.paths.privateKey} (mode ${openKey}) (fix: chmod 600 ${shellWord(thing.paths.privateKey)})`,
    );
  const binaryDir = dirname(exe.command);
  const parent = dirname(folder);
  for (const path of new Set([binaryDir, exe.command, folder, parent, config, keys, data, join(data, "update")])) {
    const mode = writableByOthers(path, account, { stickyIsEnough: path === parent });
    if (mode) {
      warnings.push(
        `other users may change ${path} (mode ${mode}): they could replace what the service runs as ${account.name} (the binary, the update guard in data/, the config, the keys) (fix: chmod go-w ${shellWord(path)})`,
      );
    }
  }
  for (const warning of warnings) io.err(`warning: ${warning}\n`);
  const systemctl = opts.systemctl ?? "systemctl";
  // what a suggested run of install-service again must repeat: a rerun without --user was refused (64)
  const flags = [
    ...(opts.user !== undefined ? ["--user", opts.user] : []),
    ...["-c", config],
    ...(opts.keys !== undefined ? ["-k", keys] : []),
    ...(opts.data !== undefined ? ["-d", data] : []),
  ];
  const selfUpdate = selfUpdateCheck(thing.yaml.update !== undefined, exe, account, dirname(config), flags);
  if (typeof selfUpdate === "string" && thing.yaml.update !== undefined) {
    io.err(`warning: self-update will not work: ${selfUpdate}; the unit keeps the binary read-only. Fix it, then run install-service again\n`);
  }

  const unit = renderUnit(UNIT_TEMPLATE, {
    binary: exe.command,
    binaryArgs: exe.args,
    config,
    keys,
    data,
    user: account.name,
    group: account.group,
    systemdVersion: systemdVersion(systemctl),
    selfUpdate,
    generated: `flashlex ${VERSION} (${COMMIT})${exe.compiled ? "" : ", from a source run: install the compiled binary for real use"}`,
  });

  const unitPath = opts.unitPath ?? DEFAULT_UNIT_PATH;
  const name = basename(unitPath);
  const previous = readIfExists(unitPath);
  // One unit name, so one thing's service per machine: installing a second thing rewrote the
  // first one's unit and restarted it as the second, without a word (new-user pass 26, F4).
  const runsNow = previous === undefined ? undefined : configOfUnit(previous);
  if (previous !== undefined && runsNow !== configOfUnit(unit) && !opts.replace) {
    const why = `${unitPath} runs another thing's serve (${runsNow ? `its config is ${runsNow}` : "not one install-service wrote"}): a machine runs one thing's service`;
    // the preview says what the install would do (attack round 28, I1: it said nothing)
    if (dryRun) io.err(`warning: ${why}; installing this would be refused without --replace\n`);
    else throw new UsageError(`${why}; flashlex uninstall-service first, or pass --replace to make it run this one`);
  }
  if (dryRun) {
    io.out(unit);
    return;
  }
  await noInterrupt(opts.signal);
  ensureDataDir(data, account, io);

  if (previous === unit) {
    io.out(`${unitPath} is up to date\n`);
  } else {
    writeFileAtomicallySync(unitPath, unit, 0o644); // systemd never reads half a unit
    // as the unit's ReadWritePaths= (unit.ts): a directory named once, with every reason it is there
    const reasons = new Map<string, string[]>();
    const add = (dir: string, why?: string) => reasons.set(dir, [...(reasons.get(dir) ?? []), ...(why ? [why] : [])]);
    if (selfUpdate === true) add(binaryDir, "self-update");
    add(keys, "certificate renewal");
    add(data);
    const writes = [...reasons].map(([dir, why]) => (why.length ? `${dir} (${why.join(", ")})` : dir)).join(", ");
    io.out(`${previous === undefined ? "wrote" : "updated"} ${unitPath} (runs as ${account.name}, writes only ${writes})\n`);
  }
  warnAboutGuardDropIns(unitPath, io);
  if (opts.unitPath === undefined && pathExists(LEGACY_UNIT_PATH)) {
    io.out(`note: ${LEGACY_UNIT_PATH} (the Python distribution's unit) is overridden by ${unitPath}; remove it when you no longer need it\n`);
  }

  // Always: a changed binary behind an unchanged unit still needs the restart. A unit systemd
  // would not load, or an install interrupted before it is enabled, is taken back, so it leaves
  // nothing behind (a unit on disk that systemd knows of but nothing enables).
  let enabled = false;
  try {
    run(systemctl, ["daemon-reload"], io);
    await noInterrupt(opts.signal);
    run(systemctl, ["enable", name], io);
    enabled = true;
    await noInterrupt(opts.signal);
  } catch (err) {
    if (enabled && previous === undefined) run(systemctl, ["disable", name], io, undefined, true);
    if (previous === undefined) rmSync(unitPath, { force: true });
    else if (previous !== unit) writeFileAtomicallySync(unitPath, previous, 0o644);
    run(systemctl, ["daemon-reload"], io, undefined, true);
    io.err(`${unitPath}: ${previous === undefined ? "removed again" : "put back as it was"}\n`);
    // Ctrl-C reaches systemctl too, which then fails: the interrupt is what happened
    throw opts.signal?.aborted ? opts.signal.reason : err;
  }
  run(systemctl, ["restart", name], io, `see: journalctl -u ${name} -e`);
  io.out(`${name} is enabled and started.\n  status: systemctl status ${stem(name)}\n  logs:   journalctl -u ${stem(name)} -f\n`);
}

function uninstall(opts: UninstallOptions, io: ServiceIO): void {
  const unitPath = opts.unitPath ?? DEFAULT_UNIT_PATH;
  const name = basename(unitPath);
  const systemctl = opts.systemctl ?? "systemctl";
  requireRoot(opts, "uninstall-service");
  if (!pathExists(unitPath)) {
    io.out(`${unitPath} is not installed; nothing to do\n`);
    return;
  }
  if (opts.dryRun) {
    io.out(`would run: ${systemctl} stop ${name}; ${systemctl} disable ${name}; rm ${unitPath}; ${systemctl} daemon-reload\n`);
    return;
  }
  // stop/disable of a unit systemd never loaded fail harmlessly: report, go on.
  run(systemctl, ["stop", name], io, undefined, true);
  run(systemctl, ["disable", name], io, undefined, true);
  rmSync(unitPath, { force: true });
  run(systemctl, ["daemon-reload"], io);
  run(systemctl, ["reset-failed", name], io, undefined, true);
  io.out(`removed ${unitPath}; the config, keys and data directory are left as they were\n`);
}

/**
 * Lets a SIGINT or SIGTERM that came during the synchronous steps before reach its handler (a
 * turn of the event loop), then throws its reason if it did.
 */
async function noInterrupt(signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return;
  await new Promise((resolve) => setTimeout(resolve, 0));
  signal.throwIfAborted();
}

/** Where systemd keeps its runtime state; it exists only when systemd is PID 1 (sd_booted(3)). */
const SYSTEMD_RUN_DIR = "/run/systemd/system";

/** A container or WSL without systemd: say so before anything is written. */
function requireSystemd(runDir: string): void {
  if (pathExists(runDir)) return;
  throw new FlashlexError(
    `systemd is not running on this machine (no ${runDir}: a container, WSL or another init): run \`flashlex serve\` under your own supervisor, or print the unit with --dry-run; nothing was written`,
    "unavailable",
  );
}

function requireRoot(opts: CommonOptions, command: "install-service" | "uninstall-service"): void {
  if (opts.dryRun) return;
  const uid = opts.uid ?? process.getuid?.() ?? 0;
  if (uid !== 0) {
    const unit = opts.unitPath ?? DEFAULT_UNIT_PATH;
    const what =
      command === "install-service"
        ? `writes ${unit} and runs systemctl: run it with sudo (or use --dry-run to print the unit)`
        : `removes ${unit} and runs systemctl: run it with sudo (or use --dry-run to see what it would do)`;
    throw new FlashlexError(`${command} ${what}`, "permission");
  }
}

/** An absolute path with symlinks resolved where it exists (the unit must name real paths). */
function absolute(path: string): string {
  const full = resolve(path);
  // one this user may not look at (a --dry-run as a user): kept as given, and the access check names what blocks it
  if (pathExists(full, { cannotLook: false })) return realpathSync(full);
  // not made yet (the data directory): resolve what exists above it
  const parent = dirname(full);
  return parent === full ? full : join(absolute(parent), basename(full));
}

function existingConfig(path: string): string {
  const file = absolute(path);
  try {
    if (!statSync(file).isFile()) throw new ConfigError(`${file}: the configuration is not a file`);
    accessSync(file, constants.R_OK);
  } catch (err) {
    if (err instanceof FlashlexError) throw err;
    throw new ConfigError(`${file}: cannot read the configuration file${notThereNote(err, file)} (${(err as NodeJS.ErrnoException).code ?? "error"})`);
  }
  return file;
}

/** `path` as the unit must name it; ConfigError naming the path as given, and what is wrong with it, when it is not a directory. */
function existingDir(path: string, what: string): string {
  const given = resolve(path);
  if (pathKind(given) !== "directory") {
    const why = notADirectory(given);
    if (why === undefined) throw new ConfigError(`${given}: the ${what} does not exist`);
    // a file on the way makes the path absent ("X is a file, not a directory"); else the path itself is wrong
    throw new ConfigError(`${given}: the ${what} ${why.includes(" is a file") ? "does not exist: " : "is "}${why}`);
  }
  return absolute(given);
}

interface Account {
  name: string;
  uid: number;
  gid: number;
  group: string;
}

/** --user, else the config file's owner; never root, whatever the name. */
function serviceAccount(user: string | undefined, config: string, keys: string, folder: string): Account {
  const key = user ?? String(statSync(config).uid);
  const entry = getent("passwd", key);
  if (!entry)
    throw new UsageError(user ? `--user ${cutGiven(user)}: no such user` : `${config} is owned by uid ${key}, which has no user name: pass --user NAME`);
  const [name = key, , uid = "", gid = ""] = entry;
  if (Number(uid) === 0) {
    throw new UsageError(
      user
        ? `--user ${user}: the service never runs as root; name an ordinary user`
        : `${config} is owned by root and the service never runs as root: ${userHint(keys, folder, config)}`,
    );
  }
  // systemd warns that nobody is not safe: files owned by nobody belong to every such service.
  if (Number(uid) === 65534) {
    throw new UsageError(
      user
        ? `--user ${user}: the service needs a real user, not nobody`
        : `${config} is owned by ${name}: the service needs a real user, not nobody: ${giveFolderHint(folder, config)}`,
    );
  }
  const group = getent("group", gid)?.[0] ?? gid;
  return { name, uid: Number(uid), gid: Number(gid), group };
}

/** The data directory is the one place the service writes, so it must belong to the service user. */
function ensureDataDir(data: string, account: Account, io: ServiceIO): void {
  if (!pathExists(data)) {
    mkdirSync(dirname(data), { recursive: true }); // parents keep the usual 0755: the user must traverse them
    mkdirSync(data, { mode: 0o750 });
    // through a descriptor of the directory just made: chown(2) of the path follows a link, and
    // whoever may write in the folder could swap one in between (it gave a root-only file to the user)
    let fd: number;
    try {
      fd = openSync(data, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
    } catch (err) {
      throw new FlashlexError(
        `${data}: replaced by something else right after install-service made it (${(err as NodeJS.ErrnoException).code}); nothing was given to ${account.name}`,
        "permission",
      );
    }
    try {
      fchownSync(fd, account.uid, account.gid);
    } finally {
      closeSync(fd);
    }
    io.out(`created ${data} (owner ${account.name})\n`);
    return;
  }
  const st = statSync(data);
  if (!st.isDirectory()) throw new ConfigError(`${data}: the data directory is not a directory`);
  if (st.uid !== account.uid) {
    io.err(
      `warning: ${data} is owned by uid ${st.uid}, not ${account.name}; the service may not write it (fix: sudo chown -R ${account.name}:${account.group} ${shellWord(data)})\n`,
    );
  }
}

/**
 * Whether the unit can let serve update itself: true, or why not. The updater renames a new
 * binary over the running one in its directory and keeps `<binary>.previous` beside it
 * (update/install.ts), so the service user must be able to create and rename files there. A
 * directory that is not the thing's folder (`thingDir`), such as /usr/local/bin, is never to be
 * handed to the service user (it could then replace what root runs): the fix is to put the binary
 * in the thing's folder, and run install-service from there with the same `flags`.
 */
function selfUpdateCheck(configured: boolean, exe: Executable, account: Account, thingDir: string, flags: string[]): true | string {
  if (!configured) return "config.yml has no flashlex.update.publicKey";
  if (!exe.compiled) return "a source run never updates itself";
  const dir = dirname(exe.command);
  if (dir === "/") return `${exe.command} is in /: put it in its own directory`;
  const home = getent("passwd", account.name)?.[5];
  if (home && resolve(home) === dir) {
    return `${exe.command} is directly in ${account.name}'s home directory, which the unit would have to make writable as a whole: move it into its own folder (the thing's folder)`;
  }
  if (!writableBy(dir, account)) {
    if (resolve(dir) !== resolve(thingDir)) {
      const target = join(thingDir, "flashlex");
      return `${account.name} cannot write ${dir}, where the binary is replaced, and should not be given it: copy the binary into the thing's folder (sudo install -o ${account.name} -g ${account.group} -m 755 ${shellWord(exe.command)} ${shellWord(target)}) and run install-service with that one (sudo ${[target, "install-service", ...flags].map(shellWord).join(" ")})`;
    }
    return `${account.name} cannot write ${dir}, where the binary is replaced (fix: sudo chown ${account.name}:${account.group} ${shellWord(dir)})`;
  }
  const st = statSync(dir);
  if (st.mode & 0o1000 && st.uid !== account.uid && statSync(exe.command).uid !== account.uid) {
    return `${dir} is sticky and ${exe.command} belongs to someone else, so ${account.name} cannot replace it (fix: sudo chown ${account.name} ${shellWord(exe.command)})`;
  }
  return true;
}

/** Write and search permission on `dir` for `account` by its mode bits, with the account's supplementary groups (no ACLs). */
function writableBy(dir: string, account: Account): boolean {
  const st = statSync(dir);
  if (st.uid === account.uid) return (st.mode & 0o300) === 0o300;
  if (groupsOf(account).includes(st.gid)) return (st.mode & 0o030) === 0o030;
  return (st.mode & 0o003) === 0o003;
}

/** The account's group ids, as `id -G` reports them (NSS, like systemd's initgroups); the primary one if `id` fails. */
function groupsOf(account: Account): number[] {
  const result = spawnSync("id", ["-G", account.name], { encoding: "utf8", timeout: HELPER_TIMEOUT_MS });
  if (result.error || result.status !== 0) return [account.gid];
  return result.stdout.trim().split(/\s+/).map(Number).concat(account.gid);
}

/**
 * docs/updates.md once told users to add the guard in a drop-in; with the unit running it too,
 * the guard would run twice per start and count every start twice.
 */
function warnAboutGuardDropIns(unitPath: string, io: ServiceIO): void {
  const dir = `${unitPath}.d`;
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith(".conf"));
  } catch {
    return;
  }
  for (const name of names) {
    if (/^\s*ExecStartPre=.*update\/guard\.sh/m.test(readIfExists(join(dir, name)) ?? "")) {
      io.err(
        `warning: ${join(dir, name)} runs the update guard too (the drop-in docs/updates.md used to suggest): remove it (the unit does this now), then run systemctl daemon-reload\n`,
      );
    }
  }
}

/**
 * What to pass when the config is root's: the owner of the keys directory when that is an
 * ordinary user (they unpacked the thing), else any ordinary user, given the folder first.
 */
function userHint(keys: string, folder: string, config: string): string {
  const uid = statSync(keys).uid;
  const owner = uid !== 0 ? getent("passwd", String(uid))?.[0] : undefined;
  if (owner) return `pass --user ${owner} (the user who owns the keys)`;
  return `pass --user NAME, an ordinary user, after giving it the thing's folder (the keys are root's too: ${giveFolder(folder, config, "root")})`;
}

/** For a folder whose files are nobody's: give it to the user the service is to run as. */
function giveFolderHint(folder: string, config: string): string {
  return `give the thing's folder to an ordinary user (${giveFolder(folder, config, "nobody")}), then run install-service again (or pass --user NAME)`;
}

/**
 * The chown that gives the thing's folder to a user NAME; a chown line only for the thing's own
 * folder: a config that is a link to a file elsewhere (/etc/shadow) got `sudo chown -R NAME: /etc`.
 */
function giveFolder(folder: string, config: string, owner: string): string {
  return isInFolder(config, folder)
    ? `sudo chown -R NAME: ${shellWord(folder)}`
    : `its config.yml is a link out of it, to a file of ${owner}'s: put the thing's own config in it`;
}

function systemdVersion(systemctl: string): number | null {
  const result = spawnSync(systemctl, ["--version"], { encoding: "utf8", timeout: HELPER_TIMEOUT_MS });
  const match = /systemd (\d+)/.exec(result.stdout ?? "");
  return match ? Number(match[1]) : null;
}

/** How long getent or `systemctl --version` may take: they answer at once or are stuck. */
const HELPER_TIMEOUT_MS = 10_000;
/** How long one systemctl step may take (a restart waits for the old serve to stop: 15 s at most, by the unit). */
const SYSTEMCTL_TIMEOUT_MS = 120_000;

/**
 * Runs systemctl, bounded by SYSTEMCTL_TIMEOUT_MS (then killed: ETIMEDOUT); its own output goes
 * to stderr, a failure becomes UNAVAILABLE (69).
 */
function run(systemctl: string, args: string[], io: ServiceIO, hint?: string, tolerate = false): void {
  const result = spawnSync(systemctl, args, { encoding: "utf8", timeout: SYSTEMCTL_TIMEOUT_MS });
  const output = `${result.stdout ?? ""}${result.stderr ?? ""}`.trim();
  if (output) io.err(`${output}\n`);
  if (result.error || result.status !== 0) {
    const why = result.error ? (result.error as NodeJS.ErrnoException).code : `exit ${result.status ?? result.signal}`;
    if (tolerate) return;
    throw new FlashlexError(`${systemctl} ${args.join(" ")} failed (${why})${hint ? `; ${hint}` : ""}`, "unavailable");
  }
}

/**
 * The config a unit's `serve` reads (its ExecStart's `-c`, as the unit writes it: in double quotes
 * when it holds a space, unit.ts systemdPath, as the binary's path may be), or undefined.
 */
function configOfUnit(unit: string): string | undefined {
  return /^ExecStart=.*? serve -c ("[^"]*"|\S+) -k /m.exec(unit)?.[1];
}

function readIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

function stem(unitName: string): string {
  return unitName.replace(/\.service$/, "");
}
