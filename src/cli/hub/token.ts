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
      const token = await hub.operators.rotate();
      console.log("new operator access token (shown once; the old one no longer works):");
      console.log(token);
      return ExitCode.OK;
    }),
};
