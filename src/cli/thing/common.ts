/** What the thing commands share: the -c/-d/-k flags, the config they name, the thing's data. */
import { dirname, join, resolve } from "node:path";
import { actAsOwnerOf } from "../../shared/act-as-owner.ts";
import { FlashlexError, UsageError } from "../../shared/errors.ts";
import { toFlashlexError } from "../../shared/foreign-errors.ts";
import { createLogger, type Logger } from "../../shared/log.ts";
import { type ConfigChoice, checkDataDirectory, dataDirFor, locateConfig } from "../../thing/config-location.ts";
import type { ThingAccess } from "../../thing/local/access.ts";
import type { ThingConfig } from "../../thing/settings.ts";
import type { CommandSpec, OptionSpec, Options } from "../command.ts";

/** The flags every thing command shares, with the guide's meanings. */
export interface ThingFlags {
  config?: string;
  data?: string;
  keys?: string;
}

export const THING_OPTIONS: OptionSpec[] = [
  { flags: "-c, --config <file>", description: "the YAML configuration file (default: ./config.yml, else config.yml beside the flashlex binary)" },
  { flags: "-d, --data <dir>", description: "the directory for the message database (default: data/ beside the config)" },
  {
    flags: "-k, --keys <dir>",
    description: "the directory holding the key files named in the config (default: keys/ beside the config when they are there, else the config's directory)",
  },
];

/**
 * The lookup a root process made before it chose whom to act as (actAsConfigOwner): the command
 * uses that one, never a second lookup, which another user could answer differently (a
 * config.yml linked into the working directory in between).
 */
let decided: { choice: ConfigChoice } | { error: unknown } | undefined;

/** The config the flags lead to (see locateConfig in src/thing/config-location.ts); throws UsageError when there is none. */
export function chooseConfig(flags: ThingFlags): ConfigChoice {
  if (decided) {
    if ("error" in decided) throw decided.error;
    return decided.choice;
  }
  return locateConfig(flags.config, { cwd: process.cwd(), binaryDir: dirname(process.execPath) });
}

const GIVEN = "given with -c";

/** The config this process chose, once it did: every failure of a thing command names it. */
let chosen: ConfigChoice | undefined;

/**
 * Loads the config the flags lead to, warning once about keys it does not know (`keepParsed`:
 * serve keeps the parse for the next commands, thing/settings.ts). Throws UsageError when there
 * is none, ConfigError for a bad one.
 */
export async function loadConfigFromFlags(flags: ThingFlags, log: Logger, options: { keepParsed?: boolean } = {}): Promise<ThingConfig> {
  chosen = chooseConfig(flags);
  const { loadThingConfig, unknownConfigKeyNote } = await import("../../thing/settings.ts");
  const config = loadThingConfig({ config: chosen.file, data: flags.data, keys: flags.keys }, chosen.origin, options);
  for (const key of config.unknownKeys) log.warn("config.unknown_key", { file: config.file, key, note: unknownConfigKeyNote(key) });
  if (config.yaml.thing.mqtt.useWebsocket) {
    log.warn("config.websocket_ignored", { file: config.file, note: "MQTT over WebSocket is not supported; using MQTT over TLS" });
  }
  return config;
}

/**
 * The thing's data for `messages`, `outbox` and `collect`: through the serve running on the data
 * directory the flags lead to, without reading the config (that serve loaded and checked its
 * own, and answers with it); else the database opened here (src/thing/local/open.ts), the
 * config loaded first, and with `identityFirst` the thing's keys too, so a key that does not fit
 * its certificate fails (78) before anything is queued. `postsCollect` (collect over HTTP): the
 * connection to the collect API opens meanwhile. Throws UsageError when there is no
 * config, ConfigError for a bad one, and what opening the database throws.
 */
export async function openAccessFromFlags(flags: ThingFlags, { identityFirst = false, existingData = false, postsCollect = false } = {}): Promise<ThingAccess> {
  const serve = await runningServeFromFlags(flags, { existingData });
  if (serve) return serve;
  const log = createLogger();
  const config = await loadConfigFromFlags(flags, log);
  const { openThingAccess } = await import("../../thing/local/open.ts");
  // A token a collect kept (thing/egress/token-file.ts) stands for the identity check it passed,
  // with the same files: the keys (and node:crypto) are then loaded only if the hub refuses it.
  const kept = postsCollect && (await import("../../thing/egress/token-file.ts")).keptTokenFor(config);
  const identity = identityFirst && !kept ? (await import("../../thing/identity.ts")).loadIdentity(config) : undefined;
  // once the keys are known good (a thing whose key is not its certificate's connects nowhere)
  if (postsCollect) (await import("../../thing/egress/collect-url.ts")).preconnectCollect(config);
  return openThingAccess(config, log, identity, { existing: existingData });
}

/**
 * The thing's data for `messages` and `outbox` (openAccessFromFlags with existingData), going on
 * through the next serve or the file when the running serve goes away under a call
 * (thing/local/resuming.ts): a listing carries on where it was (it ended with 74 or 69 after a
 * part of it), a change serve never had is asked again. Throws as openAccessFromFlags.
 */
export async function resumingAccessFromFlags(flags: ThingFlags): Promise<ThingAccess> {
  const [first, { resumingAccess }] = await Promise.all([openAccessFromFlags(flags, { existingData: true }), import("../../thing/local/resuming.ts")]);
  return resumingAccess(first, () => openAccessFromFlags(flags, { existingData: true }));
}

/**
 * The thing's data through the serve running on the data directory the flags lead to, or
 * undefined when none answers there; reads no config. Throws UsageError when there is no config
 * or -d is not a directory.
 */
export async function runningServeFromFlags(flags: ThingFlags, { existingData = false } = {}): Promise<ThingAccess | undefined> {
  if (flags.data !== undefined) checkDataDirectory(String(flags.data), { flag: "-d", existing: existingData });
  chosen = chooseConfig(flags);
  const { runningServeAccess } = await import("../../thing/local/client.ts");
  return runningServeAccess(dataDirFor(chosen.file, flags.data));
}

/**
 * Started by root on a thing's folder another user controls (its directory, config.yml, keys
 * or data directory, or a directory on the way to them), this process acts as that user from
 * here on (shared/act-as-owner.ts), before it opens anything: what `sudo flashlex serve` makes
 * (serve.lock, the message database, the session lock beside the key) is then the user's, and
 * the unit that runs as the user can use it. A folder root alone controls leaves root as it is.
 * `writesInFolder`: false where only the telling paths are written (actAsOwnerOf's
 * `writesInDir`). Throws FlashlexError permission (77) for a folder root must not act on.
 */
export function actAsFolderOwner(folder: string, telling: string[], { writesInFolder = true } = {}): void {
  actAsOwnerOf({ dir: folder, name: "thing's folder", actor: "thing command", user: "the thing's user", telling, writesInDir: writesInFolder });
}

/** actAsFolderOwner for the config the flags lead to, found once for the whole command (`decided`); a lookup that finds none changes nothing, and the command fails on it. */
function actAsConfigOwner(flags: ThingFlags): void {
  if (process.geteuid?.() !== 0) return;
  let choice: ConfigChoice;
  try {
    choice = chooseConfig(flags);
    decided = { choice };
  } catch (err) {
    // none found: the command says so, from this same lookup
    decided = { error: err };
    return;
  }
  const folder = dirname(choice.file);
  const keys = flags.keys !== undefined ? resolve(String(flags.keys)) : join(folder, "keys");
  // what it writes is in the data and keys directories (data/ made in the folder is judged as a path to make)
  actAsFolderOwner(folder, [choice.file, dataDirFor(choice.file, flags.data), keys], { writesInFolder: false });
}

/**
 * A thing command: the -c/-d/-k flags first; every failure after the config was chosen says
 * which config it used and why (`(config /home/pi/thing/config.yml, found in the current
 * directory)`), and `--help` says which config the command would use. Started by root, it acts
 * as the thing folder's owner (actAsFolderOwner) unless `keepRoot` (install-service, which
 * writes a unit into /etc).
 */
export function thingCommand(spec: CommandSpec, { keepRoot = false } = {}): CommandSpec {
  const run = spec.run;
  return {
    ...spec,
    options: [...THING_OPTIONS, ...spec.options],
    helpNote: (options: Options) => {
      try {
        const choice = chooseConfig(options as ThingFlags);
        return `Config: ${choice.file} (${choice.origin})`;
      } catch (err) {
        return `Config: ${(err as Error).message}`;
      }
    },
    run: run
      ? async (args, options) => {
          try {
            if (!keepRoot) actAsConfigOwner(options as ThingFlags);
            return await run(args, options);
          } catch (err) {
            // -c named it: the user knows which config it was.
            if (!chosen || chosen.origin === GIVEN) throw err;
            const error = toFlashlexError(err);
            // a line that begins with the file says only how it was chosen, as a sentence: "(found in
            // the current directory)" after "rename it to endpoint" read as if endpoint were found
            const note = error.message.startsWith(chosen.file) ? `(this config was ${chosen.origin})` : `(config ${chosen.file}, ${chosen.origin})`;
            throw new FlashlexError(`${error.message} ${note}`, error.kind, { cause: err });
          }
        }
      : undefined,
  };
}

/**
 * Refuses, for an action other than `list`, a flag only `list` takes (`names`, as cac keys them):
 * `messages delete 12 --acked` deleted 12 unacknowledged, the flag read as "only if" by its user
 * and ignored by the command. UsageError (64) naming the flag, the action and what it `takes` instead.
 */
export function refuseListFlags(command: string, action: string, flags: Record<string, unknown>, names: readonly string[], takes = "message ids only"): void {
  const given = names.find((name) => flags[name] !== undefined && flags[name] !== false);
  if (given !== undefined) throw new UsageError(`--${given} is an option of \`${command} list\`; \`${command} ${action}\` takes ${takes}`);
}
