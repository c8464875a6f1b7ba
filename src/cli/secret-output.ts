import { FlashlexError } from "../shared/errors.ts";
import { isOpenAs, writeAll } from "../shared/files.ts";

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
