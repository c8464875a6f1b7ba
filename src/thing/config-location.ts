/**
 * Which config.yml a thing command uses when -c is not given: a question every thing command
 * asks before it loads anything, so this module loads nothing (no YAML, no schema) and a
 * command's `--help` can answer it at once.
 */
import { accessSync, constants, readdirSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { ConfigError, UsageError } from "../shared/errors.ts";
import { danglingTarget, endsAsDirectory, notADirectory, pathExists, pathKind } from "../shared/path-exists.ts";

/** The config file's name where the thing commands look for it without -c. */
export const CONFIG_FILE_NAME = "config.yml";

/** Which config a thing command uses, and why (for its log, its errors and its --help). */
export interface ConfigChoice {
  file: string;
  origin: string;
}

/**
 * The config a thing command uses: the one given with -c; else `config.yml` in the current
 * directory (`./flashlex serve` run in the thing's folder); else `config.yml` beside the binary
 * (the binary copied into the thing's folder, as systemd runs it from anywhere). Throws a
 * UsageError (64) saying where it looked, and naming the one `<folder>/config.yml` below the
 * current directory when there is exactly one (the unzipped distribution, one level down); a
 * ConfigError (78) when the current directory's config.yml is a link to nothing.
 */
export function locateConfig(given: string | undefined, places: { cwd: string; binaryDir: string }): ConfigChoice {
  if (given) {
    // resolve() drops what makes the path a directory: `-c config.yml/` read config.yml
    if (endsAsDirectory(given)) throw new UsageError(`-c ${given}: a path ending in /, /. or /.. names a directory; name the configuration file`);
    return { file: resolve(places.cwd, given), origin: "given with -c" };
  }
  const here = join(places.cwd, CONFIG_FILE_NAME);
  // A working directory this user may not search (`sudo -u pi /home/pi/thing/flashlex` typed in
  // /root) holds no config for it: the one beside the binary still counts; with none there, say why.
  // Only then: a ./config.yml it may not look at in a directory it may enter (a link into a closed
  // one) is this folder's config all the same, and taking another thing's instead would be wrong.
  let cannotLookHere: unknown;
  try {
    if (pathExists(here)) return { file: here, origin: "found in the current directory" };
    // a config.yml that is a link to nothing is this folder's config, broken: never "none here"
    const target = danglingTarget(here);
    if (target !== undefined)
      throw new ConfigError(`${here}: a symbolic link to ${target}, which does not exist; point it at the thing's config, or pass -c FILE`);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    if (mayEnter(places.cwd)) throw err;
    cannotLookHere = err;
  }
  const beside = join(places.binaryDir, CONFIG_FILE_NAME);
  if (pathExists(beside)) return { file: beside, origin: "found beside the flashlex binary" };
  if (cannotLookHere) throw cannotLookHere;
  const below = configsOneLevelDown(places.cwd);
  const hint = below.length === 1 ? `; found ${below[0]}: cd ${dirname(below[0]!)}, or pass -c ${below[0]}` : "";
  throw new UsageError(
    `no ${CONFIG_FILE_NAME} in the current directory (${places.cwd}) or beside the flashlex binary (${places.binaryDir}): pass -c FILE${hint}`,
  );
}

/**
 * The thing's data directory (its message database and serve's control socket): `given` (-d),
 * else `data/` beside the config. Known before the config is read, so a command can find the
 * running serve without reading the config at all.
 */
export function dataDirFor(configFile: string, given?: string): string {
  return resolve(given ?? join(dirname(resolve(configFile)), "data"));
}

/**
 * A data directory given explicitly (`-d`, the SDK's `data`) that is a file, or under a
 * directory that is not there, is a typo rather than a new thing: a database made there would
 * answer "no messages", or queue a message no serve ever sends. Throws UsageError (64) naming
 * `flag`. A missing last level is made, as serve makes `data/`, except where only what is there
 * counts (`existing`: reading and changing messages or the outbox), as nothing can be in a
 * directory serve never made.
 */
export function checkDataDirectory(given: string, options: { flag: string; existing: boolean }): void {
  const { flag } = options;
  const dir = resolve(given);
  const advice = "pass the data directory serve uses (by default data/ beside the config)";
  const why = notADirectory(dir);
  if (why !== undefined) throw new UsageError(`${flag} ${given}: ${why}; ${advice}`);
  const here = pathKind(dir);
  if (here === "none" && pathKind(dirname(dir)) !== "directory") throw new UsageError(`${flag} ${given}: no such directory, nor ${dirname(dir)}; ${advice}`);
  if (here === "none" && options.existing) {
    throw new UsageError(`${flag} ${given}: no such directory (serve makes its data directory when it first runs); ${advice}`);
  }
}

/**
 * Throws ConfigError (78) naming `dir` when it cannot be the thing's data directory: a
 * file, a link to nothing, a file on the way (the default data/ beside the config is no flag a
 * user typed, so not 64 as `-d` is). Making it failed with EEXIST, 74, which blames the disk,
 * and `messages` answered "no messages".
 */
export function refuseNonDirectory(dir: string): void {
  const why = notADirectory(dir);
  if (why !== undefined) throw new ConfigError(`${dir}: ${why}, where the thing's data directory belongs; move it aside, or pass -d`);
}

/** Whether this user may search `dir` (access(2) X_OK). */
function mayEnter(dir: string): boolean {
  try {
    accessSync(dir, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** `<folder>/config.yml` paths one level below `dir`, relative to it (an unreadable dir: none). */
function configsOneLevelDown(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((entry) => entry.isDirectory() && pathExists(join(dir, entry.name, CONFIG_FILE_NAME)))
      .map((entry) => relative(dir, join(dir, entry.name, CONFIG_FILE_NAME)));
  } catch {
    return [];
  }
}
