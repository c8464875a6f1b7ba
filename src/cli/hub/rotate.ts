import { type CommandSpec, required } from "../command.ts";
import { ExitCode } from "../exit-codes.ts";
import { printLine } from "../output.ts";
import { DB_OPTION, DIR_OPTION, openedHubToWrite, thingOrFail } from "./common.ts";

/** `hub thing rotate NAME`: ask a thing to renew its certificate (new key on the device) at its next check. */
export const hubThingRotateCommand: CommandSpec = {
  name: "hub thing rotate",
  args: "<thing>",
  description: "Ask a thing to renew its certificate now: a new key made on the device, a new certificate (at its next check)",
  options: [DIR_OPTION, DB_OPTION],
  bunOnly: true,
  run: (args, options) =>
    openedHubToWrite("hub thing rotate", options, async (hub) => {
      const thing = await thingOrFail(hub, required(args, "the thing"));
      const { checkAfterMs } = await hub.certificates.requestRotation(thing);
      const { formatDuration } = await import("../../shared/duration.ts");
      printLine(
        `asked ${thing.name} to renew its certificate: a running agent does so at its next check, within ${formatDuration(checkAfterMs * 1.2)} (hub.yml certificates.renewalCheck, +20% jitter; one told a longer renewalCheck at its last check waits that out first), or within seconds of its serve restarting (systemctl restart flashlex on the thing); \`flashlex hub thing list\` shows the new expiry`,
      );
      return ExitCode.OK;
    }),
};
