/**
 * What a command prints on stdout, written so that a write that fails is not lost in silence:
 * console.log drops a failed write, and a command printing to a full disk (`> batch.json`) exited
 * 0 with nothing written, its output the only record of what it did (a list, a sent message's id).
 */
import { FlashlexError } from "../shared/errors.ts";
import { isOpenAs, writeAll } from "../shared/files.ts";
import { cutGiven, escapeUnsafe } from "../shared/log.ts";

/** Set once stdout's reader went away (EPIPE): what is left to print is dropped. */
let readerGone = false;

/**
 * Writes `line` and a newline to stdout at once. A reader that went away (`| head -n1`: EPIPE)
 * is not a fault: the rest is dropped and the command ends as it would have. Any other failure
 * (a full disk, an I/O error) throws an `io` FlashlexError (exit 74) saying that the output is
 * lost and what the command did stands.
 */
export function printLine(line: string): void {
  if (readerGone) return;
  try {
    writeAll(1, Buffer.from(`${line}\n`));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    if (code === "EPIPE") {
      readerGone = true;
      return;
    }
    throw new FlashlexError(`could not write to stdout (${code}): the output is lost; what the command did is done`, "io", { cause: err });
  }
}

/** The most of one cell a table prints, in characters; the rest is `…`. */
const MAX_CELL = 200;

/**
 * Prints `rows` (the first the header) as columns two spaces apart, each line through printLine.
 * Every cell is one printable line: control, format and line-separator characters are written
 * as `\uXXXX` (a thing's update detail held terminal escapes that forged or hid rows of
 * `hub update status`), and a cell over 200 characters is cut. Throws as printLine does.
 */
export function printTable(rows: readonly (readonly string[])[]): void {
  const cells = rows.map((row) =>
    row.map((cell) => {
      const safe = escapeUnsafe(cell);
      return safe.length > MAX_CELL ? `${safe.slice(0, MAX_CELL - 1)}…` : safe;
    }),
  );
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((row) => row[i]?.length ?? 0)));
  for (const row of cells) printLine(row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  "));
}

/**
 * Writes all of `text` to stdout at once, for output that is the only copy of a secret (a token
 * whose hash alone the hub keeps): console.log drops a failed write (a full disk, a closed pipe)
 * and the command would exit 0 with the secret lost. Throws an `io` FlashlexError (exit 74):
 * "could not write `what` to stdout (ENOSPC): `outcome`", where `outcome` says what the caller
 * did about it.
 */
export function writeSecretToStdout(text: string, what: string, outcome: string): void {
  // A closed stdout (`>&-`) is reopened on /dev/null by the runtime: the write "succeeds".
  if (isOpenAs("/dev/null", 1)) throw new FlashlexError(`could not write ${what} to stdout (it is /dev/null, or was closed): ${outcome}`, "io");
  try {
    writeAll(1, Buffer.from(text));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new FlashlexError(`could not write ${what} to stdout (${code}): ${outcome}`, "io", { cause: err });
  }
}

/**
 * Ids for a one-line message: all of them up to `max`, else the first `max` and how many more
 * (a `messages ack` of 100,000 missing ids printed them all on one line).
 */
export function idList(ids: readonly (string | number)[], max = 20): string {
  const shown = ids
    .slice(0, max)
    .map((id) => cutGiven(String(id)))
    .join(", ");
  return ids.length > max ? `${shown} and ${ids.length - max} more` : shown;
}

/** `n` and `what`, plural but for one: `1 thing`, `3 things`. */
export function counted(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? "" : "s"}`;
}
