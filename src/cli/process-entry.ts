/**
 * The process around a command: where its outcome becomes the exit code and the one line on
 * stderr, whatever way it ends (main.ts runs every command through `runAsProcess`).
 */
import { actingAsOwnerNote } from "../shared/act-as-owner.ts";
import { FlashlexError } from "../shared/errors.ts";
import { toFlashlexError } from "../shared/foreign-errors.ts";
import { escapeUnsafe } from "../shared/log.ts";
import { redactUrl } from "../shared/redact-url.ts";
import { exitCodeOf } from "./exit-codes.ts";

/**
 * Prints the one line a failure gets on stderr and returns its exit code: the error's kind
 * decides the code (cli/exit-codes.ts). A bug (70) says so; its stack only with
 * FLASHLEX_LOG_LEVEL=debug.
 */
export function report(err: unknown): number {
  const error = toFlashlexError(err);
  const bug = error.kind === "bug";
  // Whoever typed sudo reads any failure as root's unless told whose it was (a lock file that
  // "belongs to root, not to pi"); a permission failure, whatever kind it was given (an
  // unreadable config is 78), gets the chown too.
  const denied = error.kind === "permission" || /\(EACCES\)|permission denied/.test(error.message);
  // A mistyped word or a bad value (64, 65) is the same whoever runs: the note made such a line
  // twice as long and read as if the user switch were the cause (new-user pass 21, F12).
  const aboutWords = !denied && (error.kind === "usage" || error.kind === "data");
  const note = bug
    ? "(an internal error in flashlex: please report it)"
    : aboutWords
      ? undefined
      : actingAsOwnerNote(denied ? undefined : false, error.message);
  // One line, whatever the message quotes: a path or a link target given with a newline or a
  // terminal escape in it is shown escaped, never acted on by the terminal.
  console.error(escapeUnsafe(`flashlex: ${redactUrl(error.message)}${note ? ` ${note}` : ""}`));
  if (bug && process.env.FLASHLEX_LOG_LEVEL === "debug") console.error((err as Error)?.stack);
  return exitCodeOf(error);
}

/**
 * Runs `command` as the process's one job and exits with the code it resolves to. Three ways
 * out besides that, each one line on stderr and the exit code of its kind, never a stack trace:
 * - whatever escapes the command (a failure in a timer or an event handler of a long-running
 *   serve): its kind's code;
 * - the event loop runs dry before the command's promise settled (it waited on a socket that
 *   closed, on a timer that was unref'd): 70, a bug in FlashLex. Without this the process
 *   would end with 0 and print nothing, as if the command had worked (`beforeExit` is emitted
 *   exactly then, by Node and by Bun);
 * - the command settled but left a socket or timer open: the process exits anyway, 100 ms later.
 * `word` names the command in the 70 line (process.argv[2]).
 */
export function runAsProcess(command: () => Promise<number>, word?: string): void {
  let settled = false;
  const last = (err: unknown) => {
    settled = true;
    process.exitCode = report(err);
    setTimeout(() => process.exit(process.exitCode as number), 100).unref();
  };
  process.on("uncaughtException", last);
  process.on("unhandledRejection", last);
  process.on("beforeExit", () => {
    if (settled) return;
    settled = true;
    const name = word && !word.startsWith("-") ? word : "the command";
    process.exit(report(new FlashlexError(`${name} stopped before it finished, with nothing left to wait on`, "bug")));
  });
  command().then(
    (code) => {
      settled = true;
      process.exitCode = code;
      setTimeout(() => process.exit(code), 100).unref();
    },
    (err) => last(err),
  );
}
