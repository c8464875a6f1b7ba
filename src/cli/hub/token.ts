import { FlashlexError } from "../../shared/errors.ts";
import { writeAll } from "../../shared/files.ts";
import type { CommandSpec } from "../command.ts";
import { ExitCode } from "../exit-codes.ts";
import { DB_OPTION, DIR_OPTION, openedHubToWrite } from "./common.ts";

export const hubTokenRotateCommand: CommandSpec = {
  name: "hub token rotate",
  description: "Make a new operator access token; the old one stops working at once",
  options: [DIR_OPTION, DB_OPTION],
  bunOnly: true,
  run: (_args, options) =>
    openedHubToWrite("hub token rotate", options, async (hub) => {
      // Written out before it replaces the old one: console.log drops a failed write (a full disk,
      // a closed pipe), which locked the operator out with exit 0.
      await hub.operators.rotate((token) => writeSecret(`new operator access token (shown once; the old one no longer works):\n${token}\n`));
      return ExitCode.OK;
    }),
};

/** Writes all of `text` to stdout or throws an `io` FlashlexError (74) saying the old token still works. */
function writeSecret(text: string): void {
  try {
    writeAll(1, Buffer.from(text));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new FlashlexError(`could not write the new token to stdout (${code}): nothing changed, the old operator token still works`, "io", { cause: err });
  }
}
