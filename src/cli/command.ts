/**
 * src/cli: the command line. Every command, thing and hub alike, is one `CommandSpec` in the one
 * table of src/main.ts; cac parses its flags and main.ts prints its help from the table. A
 * command parses its flags, calls a use case (src/thing, src/hub) and prints; it opens no
 * store, runs no SQL and holds no business rule (test/unit/layout.test.ts checks the imports).
 *
 *   command.ts     CommandSpec, and the readers of flag values
 *   exit-codes.ts  the exit codes and their help text
 *   input.ts       documents from stdin or a file; counts and times from flags
 *   thing/         bootstrap, serve, collect, messages, outbox, install-service
 *   hub/           init, thing ..., serve, send, export, mosquitto-config, token rotate
 *
 * Start-up: a command file imports use cases with `await import(...)` inside its `run`, never at
 * the top, so starting `flashlex` evaluates only the command table and cac, and each command
 * then loads what it needs and nothing else (`--version` and `collect` do not load the broker,
 * MQTT or X.509 libraries). test/unit/start-up.test.ts keeps it so.
 */
import { UsageError } from "../shared/errors.ts";
import { quoteGiven } from "../shared/log.ts";

/** Parsed flags, camelCased, as cac hands them over (see `text`, `list`). */
export type Options = Record<string, unknown>;

export interface OptionSpec {
  /** cac syntax, e.g. "-o, --output <file>" */
  flags: string;
  description: string;
  default?: unknown;
  /** may be given more than once and means each (`hub init --name`); otherwise twice is a usage error (64, argv.ts refuseRepeatedFlags) */
  repeatable?: boolean;
}

export interface CommandSpec {
  /** the words after `flashlex`, e.g. "hub thing create" */
  name: string;
  /** positional arguments in cac syntax, e.g. "<thing>", "<action> [...ids]"; absent when none */
  args?: string;
  description: string;
  options: OptionSpec[];
  /**
   * Runs the command with the positional values after its words; returns the exit code of what
   * it did (a failure throws, and main.ts maps its kind). Absent: a group (`hub`), whose help
   * lists the commands under it.
   */
  run?(args: string[], options: Options): Promise<number> | number;
  /** the command needs Bun (the armv7 Node build has no Bun.serve): the hub's commands */
  bunOnly?: boolean;
  /** a last line for the command's --help, from the flags given (the thing commands: which config) */
  helpNote?(options: Options): string | undefined;
}

/** A text flag's value, or undefined when absent or empty (a repeatable flag given more than once: its last value). */
export function text(value: unknown): string | undefined {
  if (Array.isArray(value)) value = value[value.length - 1];
  return value === undefined || value === null || value === "" ? undefined : String(value);
}

/** A repeatable flag's values, each also split at commas (`--name a,b --name c`). */
export function list(value: unknown): string[] {
  const values = Array.isArray(value) ? value : value === undefined ? [] : [value];
  return values
    .flatMap((v) => String(v).split(","))
    .map((v) => v.trim())
    .filter(Boolean);
}

/** A port flag: 1-65535 in decimal digits, else UsageError (64) naming `flag`. */
export function port(value: unknown, flag: string): number | undefined {
  const given = text(value);
  if (given === undefined) return undefined;
  if (!/^\d{1,5}$/.test(given) || Number(given) < 1 || Number(given) > 65535)
    throw new UsageError(`${flag} must be a port number (1-65535), not ${quoteGiven(given)}`);
  return Number(given);
}

/**
 * A flag whose value is one of a few words: the word given (undefined when the flag is absent),
 * else UsageError (64) naming `flag`, the words it takes and the value given (quoted, cut at 48
 * characters).
 */
export function choice<T extends string>(value: unknown, flag: string, words: readonly T[]): T | undefined {
  const given = text(value);
  if (given === undefined || (words as readonly string[]).includes(given)) return given as T | undefined;
  const named = words.length > 1 ? `${words.slice(0, -1).join(", ")} or ${words[words.length - 1]}` : words[0];
  throw new UsageError(`${flag} must be ${named}, not ${quoteGiven(given)}`);
}

/** The first positional value, or UsageError (64) saying what is missing. */
export function required(args: string[], what: string): string {
  const value = args[0];
  if (!value) throw new UsageError(`missing ${what}`);
  return value;
}

/** The signals a long-running command stops on: systemd's stop, Ctrl-C, and the terminal or ssh session that started it closing. */
const STOP_SIGNALS = ["SIGTERM", "SIGINT", "SIGHUP"] as const;
type StopSignal = (typeof STOP_SIGNALS)[number];

/**
 * Resolves with the first of SIGTERM (systemd stop), SIGINT (Ctrl-C) or SIGHUP (the terminal or
 * ssh session closed: by default it would kill the process without its clean stop, leaving its
 * socket and WAL behind). It keeps listening for the life of the process: a second signal while
 * the command stops means "now", and the process exits at once with 0. Call it before the command
 * starts its work: until a process listens, these signals kill it at once (143, nothing closed).
 */
export function untilSignal(): Promise<StopSignal> {
  return new Promise((resolve) => {
    let heard = false;
    const on = (signal: StopSignal) => {
      if (heard) process.exit(0);
      heard = true;
      resolve(signal);
    };
    for (const s of STOP_SIGNALS) process.on(s, on);
  });
}

/** SIGINT, SIGTERM or SIGHUP (the terminal or ssh session closing) stopped an `interruptible` command. */
export class Interrupted extends Error {
  constructor(readonly signal: StopSignal) {
    super(`stopped by ${signal}`);
    this.name = "Interrupted";
  }
}

/** POSIX's numbers for the signals `interruptible` handles (the same on every Linux architecture). */
const SIGNAL_NUMBERS = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as const;

/**
 * Runs `work` with SIGINT (Ctrl-C), SIGTERM and SIGHUP turned into an abort of the signal it is given,
 * for a command that writes something it must not leave half-done (`hub export`, `hub init`):
 * `work` checks the signal between its steps (shared/files.ts `checkpoint`), undoes what it
 * started and throws the signal's reason, an Interrupted. Then one line goes to stderr, `what`
 * stopped and `undone` (what was cleaned up; a function is asked once `work` has unwound, for
 * work whose leftovers depend on how far it got: a zip part-sent to a pipe), and the exit code is the shell's for a death by that
 * signal, 128 + its number (130, 143, 129), so scripts see the same code as before. Work that finishes
 * before it notices the signal returns its own code.
 */
export async function interruptible(what: string, undone: string | (() => string), work: (signal: AbortSignal) => Promise<number>): Promise<number> {
  const controller = new AbortController();
  const stop = (signal: StopSignal) => controller.abort(new Interrupted(signal));
  for (const signal of STOP_SIGNALS) process.on(signal, stop);
  // Work stuck where it cannot see the signal (a statement a frozen server never answers) gets
  // UNWIND_MS to clean up after it, then the command ends anyway: Ctrl-C always stops it.
  let unwind: ReturnType<typeof setTimeout> | undefined;
  const gaveUp = Symbol("gave up");
  const givenUp = new Promise<typeof gaveUp>((resolve) =>
    controller.signal.addEventListener("abort", () => (unwind = setTimeout(() => resolve(gaveUp), UNWIND_MS))),
  );
  const working = work(controller.signal);
  working.catch(() => {}); // settled after the command gave up on it: nothing to report
  try {
    const outcome = await Promise.race([working, givenUp]);
    if (outcome !== gaveUp) return outcome;
    const { signal } = controller.signal.reason as Interrupted;
    console.error(
      `flashlex: ${what} stopped by ${signal}; it was waiting for something that did not answer within ${UNWIND_MS / 1000} s, so what it had started may be left (the next run removes it)`,
    );
    return 128 + SIGNAL_NUMBERS[signal];
  } catch (err) {
    if (!(err instanceof Interrupted)) throw err;
    console.error(`flashlex: ${what} stopped by ${err.signal}; ${typeof undone === "string" ? undone : undone()}`);
    return 128 + SIGNAL_NUMBERS[err.signal];
  } finally {
    clearTimeout(unwind);
    for (const signal of STOP_SIGNALS) process.off(signal, stop);
  }
}

/** How long an interrupted command's work has to unwind (remove its temporary file) before the command ends without it. */
const UNWIND_MS = 5000;
