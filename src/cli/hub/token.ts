import type { CommandSpec } from "../command.ts";
import { ExitCode } from "../exit-codes.ts";
import { writeSecretToStdout } from "../output.ts";
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
      await hub.operators.rotate((token) =>
        writeSecretToStdout(
          `new operator access token (shown once; the old one no longer works, nor do console sign-ins and one-time download lines made before):\n${token}\n`,
          "the new token",
          "nothing changed, the old operator token still works",
        ),
      );
      return ExitCode.OK;
    }),
};
