import { InputError, UsageError } from "../../shared/errors.ts";
import type { CommandSpec } from "../command.ts";
import { ExitCode } from "../exit-codes.ts";
import { idList, printLine } from "../output.ts";
import { DB_OPTION, DIR_OPTION, openedHubToWrite, thingsOrFail } from "./common.ts";

/**
 * `hub thing rotate THING...` or `--all`: ask things to renew their certificates (a new key made
 * on each device) at their next check. The named things are all looked up, and a revoked one
 * refused, before any is asked; `--all` asks every thing not revoked (a fleet's keys after its
 * distribution zips leaked).
 */
export const hubThingRotateCommand: CommandSpec = {
  name: "hub thing rotate",
  args: "[...things]",
  description: "Ask things to renew their certificates now: a new key made on each device, a new certificate (at its next check); name them, or --all",
  options: [DIR_OPTION, DB_OPTION, { flags: "--all", description: "every thing that is not revoked" }],
  bunOnly: true,
  run: (args, options) =>
    openedHubToWrite("hub thing rotate", options, async (hub) => {
      if (options.all && args.length) throw new UsageError("give the things to rotate or --all, not both");
      if (!options.all && !args.length) throw new UsageError("missing the thing (name one or more, or --all for every thing not revoked)");
      const things = options.all ? (await hub.things.list()).filter((thing) => thing.revokedAt === null) : await thingsOrFail(hub, args.map(String));
      const revoked = things.filter((thing) => thing.revokedAt !== null).map((thing) => thing.name);
      if (revoked.length) {
        throw new InputError(`${idList(revoked)} ${revoked.length === 1 ? "is" : "are"} revoked and cannot renew; nothing was asked`);
      }
      const asked: string[] = [];
      let checkAfterMs = 0;
      for (const thing of things) {
        try {
          ({ checkAfterMs } = await hub.certificates.requestRotation(thing));
          asked.push(thing.name);
        } catch (err) {
          // revoked since the list was read: it cannot renew, and the others are still asked
          if (!(options.all && err instanceof InputError)) throw err;
        }
      }
      if (!asked.length) {
        printLine("no thing to ask: the hub has none that is not revoked");
        return ExitCode.OK;
      }
      const { formatDuration } = await import("../../shared/duration.ts");
      const whom = asked.length === 1 ? `${asked[0]} to renew its certificate` : `${asked.length} things to renew their certificates (${idList(asked)})`;
      printLine(
        `asked ${whom}: a running agent does so at its next check, within ${formatDuration(checkAfterMs * 1.2)} (hub.yml certificates.renewalCheck, +20% jitter; one told a longer renewalCheck at its last check waits that out first), or within seconds of its serve restarting (systemctl restart flashlex on the thing); \`flashlex hub thing list\` shows the new expiry`,
      );
      return ExitCode.OK;
    }),
};
