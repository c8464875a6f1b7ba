/** What the hub commands share: --dir, --db and --json, the hub they name, a thing by any of its names. */
import { accessSync, constants, lstatSync, statSync } from "node:fs";
import { dirname, extname, join, resolve } from "node:path";
import { defaultHubDir } from "../../hub/home/paths.ts";
import type { OpenedHub } from "../../hub/hub.ts";
import type { ThingRecord } from "../../hub/things/things.ts";
import { actAsOwnerOf } from "../../shared/act-as-owner.ts";
import { FlashlexError, InputError, UsageError } from "../../shared/errors.ts";
import { isOpenAs, isWithin } from "../../shared/files.ts";
import { createLogger, escapeUnsafe, quoteGiven } from "../../shared/log.ts";
import { endsAsDirectory, fileOnTheWay, pathKind } from "../../shared/path-exists.ts";
import { isoSeconds } from "../../shared/time.ts";
import { interruptible, type OptionSpec, type Options, text } from "../command.ts";
import { printLine } from "../output.ts";

export const DIR_OPTION: OptionSpec = { flags: "--dir <dir>", description: "the hub home (default: $FLASHLEX_HUB_DIR or ~/.flashlex-hub)" };
export const DB_OPTION: OptionSpec = {
  flags: "--db <url>",
  description:
    "the hub database: sqlite (hub.db in the hub home) or postgres://USER:PASSWORD@HOST:PORT/DATABASE (default: $FLASHLEX_HUB_DB, else hub.yml's hub.database.url, else sqlite)",
};
export const JSON_OPTION: OptionSpec = { flags: "--json", description: "print JSON instead of text" };

/**
 * The file `-o` names (`-` is stdout, as /dev/stdout; else `fallback`), absolute, checked before
 * the command changes anything: its directory exists, it is not a directory itself, it is
 * outside the hub home (`-o hub.db` replaced the hub's database with a zip), and it is not a
 * terminal: UsageError (64) naming the flag. A directory this process may not write in (as the
 * home's owner, when root started it: shared/act-as-owner.ts) is FlashlexError permission (77). So a
 * mistyped path never leaves a thing made without its zip, or an export half done.
 */
export function outputFile(options: Options, fallback: string): string {
  const given = text(options.output);
  const file = given === "-" ? "/dev/stdout" : resolve(given ?? fallback);
  const flag = given === undefined ? `the output file ${file}` : `-o ${JSON.stringify(given)}`;
  const home = hubDir(options);
  // resolve() drops what makes the path a directory: `-o newdir/` (or newdir/. or new/x/..) wrote a
  // file named newdir, `-o afile/` replaced afile
  if (given !== undefined && given !== "-" && endsAsDirectory(given))
    throw new UsageError(`${flag}: a path ending in /, /. or /.. names a directory; name the file to write`);
  if (isWithin(file, home)) throw new UsageError(`${flag}: ${file} is inside the hub home ${home}, whose files are the hub's own; write it elsewhere`);
  const elsewhere =
    given === undefined ? "pass -o FILE in a directory this user may write, or run the command from one" : "name a file in a directory this user may write";
  const mayNotWrite = () => new FlashlexError(`${flag}: may not write in ${dirname(file)}; ${elsewhere}`, "permission");
  let here: ReturnType<typeof pathKind>;
  let parent: ReturnType<typeof pathKind>;
  try {
    here = pathKind(file);
    parent = pathKind(dirname(file));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EACCES" || code === "EPERM") throw mayNotWrite(); // a directory on the way this user may not enter
    throw err;
  }
  if (here === "directory") throw new UsageError(`${flag}: ${file} is a directory; name the file to write`);
  if (parent === "other") throw new UsageError(`${flag}: ${dirname(file)} is a file, not a directory`);
  const inTheWay = parent === "none" ? fileOnTheWay(dirname(file)) : undefined;
  if (inTheWay !== undefined) throw new UsageError(`${flag}: ${inTheWay} is a file, not a directory`);
  if (parent === "none") throw new UsageError(`${flag}: the directory ${dirname(file)} does not exist`);
  // a zip on a terminal is noise, and a distribution's holds the thing's private key
  if (isOpenAs(file, 1) && process.stdout.isTTY) throw new UsageError(`${flag}: stdout is a terminal; send the zip to a file (> FILE.zip) or a pipe`);
  const foreign = foreignStream(file);
  if (foreign)
    throw new FlashlexError(
      `${flag}: ${file} is ${foreign}, and what is written there (a thing's private key, messages) is never handed to another user's stream; name a new file`,
      "permission",
    );
  if (!cannotWriteBeside(file)) return file;
  throw mayNotWrite();
}

/**
 * What `file` is when it is a stream another user made (a FIFO, a socket, a device, or a link of
 * another user's to one), which the zip would be written straight into (files.ts): another user
 * planted it to read what root writes. Undefined for a regular file or none (written by a
 * rename, which replaces a link rather than follow it), this process's own streams, and what
 * the shell opened for it (`-o - > FILE`).
 */
function foreignStream(file: string): string | undefined {
  if (isOpenAs(file, 1) || isOpenAs(file, 2)) return undefined;
  const link = lstatSync(file, { throwIfNoEntry: false });
  const target = link && statSync(file, { throwIfNoEntry: false });
  if (!link || !target || target.isFile()) return undefined;
  const me = process.geteuid?.();
  const owner = link.uid !== me ? link.uid : target.uid !== me ? target.uid : undefined;
  if (owner === undefined || owner === 0) return undefined;
  const kind = target.isFIFO() ? "a FIFO" : target.isSocket() ? "a socket" : "not a file";
  return `${kind} of uid ${owner}${link.isSymbolicLink() ? " (through a link)" : ""}`;
}

/**
 * True when this process may not write `file` in its directory (access(2) W_OK); false for a
 * stream written straight through (/dev/stdout, a FIFO: files.ts). Found before a thing is made,
 * not when its zip is written.
 */
function cannotWriteBeside(file: string): boolean {
  if (isOpenAs(file, 1) || isOpenAs(file, 2)) return false; // `-o - > FILE`: the shell opened it
  try {
    if (!statSync(file).isFile()) return false;
  } catch {
    // not there yet: a new file in its directory
  }
  try {
    accessSync(dirname(file), constants.W_OK);
    return false;
  } catch {
    return true;
  }
}

/**
 * The names `file`, `<stem>-2<ext>`, `<stem>-3<ext>`... that nothing (not even a dangling link)
 * has when each is asked for: for a default name that says less than the content (`hub
 * export`'s is the thing and the day, not the range), so an earlier file of that name is never
 * replaced. Write the first exclusively, giving the rest as the names to try when it is taken
 * meanwhile (files.ts `exclusive`, `nextName`).
 */
export function* untakenNames(file: string): Generator<string, never> {
  const ext = extname(file);
  const stem = file.slice(0, file.length - ext.length);
  for (let n = 1; ; n++) {
    const candidate = n === 1 ? file : `${stem}-${n}${ext}`;
    if (!isTaken(candidate)) yield candidate;
  }
}

function isTaken(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Where a command that wrote `output` says so: stderr when `output` was its stdout (`-o -`,
 * `-o /dev/stdout`), where a line after the zip would break it; else stdout. Each line is
 * printed as one printable line (control and format characters escaped: log.ts escapeUnsafe).
 */
export function reportBeside(output: string): (line: string) => void {
  const print = isOpenAs(output, 1) ? console.error : printLine;
  // one printable line each, whatever a path in it holds (a newline, ESC): log.ts escapeUnsafe
  return (line) => print(escapeUnsafe(line));
}

/** `--dir`, else `$FLASHLEX_HUB_DIR`, else `~/.flashlex-hub`, absolute. */
export function hubDir(options: Options): string {
  return resolve(text(options.dir) ?? defaultHubDir());
}

/**
 * The database chosen for this command: `--db`, else `$FLASHLEX_HUB_DB`, else none (hub.yml's
 * `hub.database.url`, else hub.db). Every hub command that opens the database takes it from
 * here, so `hub serve` and the commands beside it agree.
 */
export function databaseOverride(options: Options): { value: string; where: string } | undefined {
  const flag = text(options.db);
  if (flag !== undefined) return { value: flag, where: "--db" };
  const env = process.env.FLASHLEX_HUB_DB;
  return env ? { value: env, where: "$FLASHLEX_HUB_DB" } : undefined;
}

/**
 * `hubDir`, with this process acting as the home's owner from here on when root started it
 * (shared/act-as-owner.ts): every command that opens or makes the home takes it from here, before
 * it opens anything. Throws FlashlexError permission (77) for a home root must not act on.
 */
export function hubHome(options: Options): string {
  const dir = hubDir(options);
  // hub.yml names files the hub writes and a command it runs; dists/ is where a zip is written
  actAsOwnerOf({ dir, name: "hub home", actor: "hub command", user: "the hub's user", telling: [join(dir, "hub.yml"), join(dir, "dists")] });
  return dir;
}

/** The hub home named by `--dir`, on the database of `--db`, opened for the length of `fn` (src/hub/hub.ts). */
export async function openedHub<T>(options: Options, fn: (hub: OpenedHub) => Promise<T>): Promise<T> {
  const dir = hubHome(options);
  const { withHub } = await import("../../hub/hub.ts");
  return withHub(dir, createLogger(), fn, databaseOverride(options));
}

/**
 * `openedHub` for a command that changes the hub and writes files (the database, CRLs, hub.yml,
 * a distribution zip), all in well under a second: SIGINT and SIGTERM wait until it is done
 * (command.ts `interruptible`), so a signal never leaves a temporary file, or a change made to
 * the database but not to the files, behind. The one step that may wait without end, a zip
 * written to a pipe whose reader does not read (`-o -`), takes `signal` (files.ts
 * `writeFileAtomically`): stopped there, `fn` puts the hub back as it was and throws the
 * Interrupted, and `undone` says what was left (command.ts `interruptible`).
 */
export function openedHubToWrite(
  what: string,
  options: Options,
  fn: (hub: OpenedHub, signal: AbortSignal) => Promise<number>,
  undone: string | (() => string) = "nothing was changed",
): Promise<number> {
  return interruptible(what, undone, (signal) => openedHub(options, (hub) => fn(hub, signal)));
}

/**
 * What a zip written to `file` left behind when its writing stopped part way: `streamed` bytes
 * when `file` was a stream written straight through (stdout, a FIFO: files.ts `onStreamed`),
 * undefined for a regular file (its temporary file removed, nothing there). The words say so:
 * a reader that got part of a zip must not be told that nothing was written.
 */
export function partialOutput(file: string, streamed: number | undefined): string {
  if (streamed === undefined) return "nothing was written (its temporary file was removed)";
  const shown = file === "/dev/stdout" ? "stdout" : file;
  if (streamed === 0) return `nothing was written to ${shown}`;
  return `the output is incomplete: ${streamed} byte${streamed === 1 ? "" : "s"} of the zip were written to ${shown}`;
}

/** The thing `ref` names (its id, name or typed name), or InputError (65) saying how to find one. */
export async function thingOrFail(hub: OpenedHub, ref: string): Promise<ThingRecord> {
  return (await thingsOrFail(hub, [ref]))[0]!;
}

/** The things `refs` name, in order, or one InputError (65) naming the refs that name none (the first three, then how many more). */
export async function thingsOrFail(hub: OpenedHub, refs: readonly string[]): Promise<ThingRecord[]> {
  const found = await Promise.all(refs.map((ref) => hub.things.find(ref)));
  const unknown = refs.filter((_, i) => !found[i]).map((ref) => quoteGiven(ref));
  if (unknown.length) {
    const more = unknown.length > 3 ? ` and ${unknown.length - 3} more` : "";
    const one = unknown.length === 1;
    throw new InputError(
      `${one ? "no thing" : "no things"} ${unknown.slice(0, 3).join(", ")}${more} (give ${one ? "its" : "each its"} name, typed name or id; see \`flashlex hub thing list\`)`,
    );
  }
  return found as ThingRecord[];
}

/**
 * How far before a backup's time the things' `outbox resend` starts, in ms: a thing whose clock
 * is behind the hub's recorded its sends earlier than the hub's time says (new-user pass 30, F3:
 * a message sent a second after the backup, by a clock some seconds behind, was never resent).
 * Starting earlier costs nothing: the hub stores once a message it already holds.
 */
const RESEND_MARGIN_MS = 10 * 60_000;

/** The command each thing runs after a restore of a backup that shows the hub at `takenAtMs` (Unix ms; undefined: not known). */
export function resendCommand(takenAtMs: number | undefined): string {
  const since = takenAtMs === undefined ? "<10 min before the time hub backup printed>" : isoSeconds(takenAtMs - RESEND_MARGIN_MS);
  return `\`flashlex outbox resend --since ${since}\` (10 min before the backup, for a thing whose clock is behind the hub's; what the hub has it stores once)`;
}
