import { escapeUnsafe } from "../../shared/log.ts";
import { type CommandSpec, interruptible, required } from "../command.ts";
import { ExitCode } from "../exit-codes.ts";
import { counted, printLine } from "../output.ts";
import { DIR_OPTION, hubHome, JSON_OPTION, resendCommand } from "./common.ts";

export const hubRestoreCommand: CommandSpec = {
  name: "hub restore",
  args: "<backup>",
  description: "Put a backup (hub backup) back as the hub home while the hub is stopped: checked first, the home it replaces kept aside",
  options: [DIR_OPTION, JSON_OPTION],
  bunOnly: true,
  run: (args, options) =>
    interruptible("hub restore", "the hub home was not changed", async (signal) => {
      const backup = required(args, "the backup directory");
      const { restoreHub } = await import("../../hub/home/restore.ts");
      const restored = await restoreHub(backup, hubHome(options), signal);
      if (options.json) {
        printLine(JSON.stringify(restored));
        return ExitCode.OK;
      }
      const { database: db } = restored;
      const asOf = restored.takenAt ? ` as of ${restored.takenAt}` : "";
      printLine(
        escapeUnsafe(
          `restored ${restored.home} from ${restored.from}${asOf}: hub.db (schema ${db.schema}, ${counted(db.things, "thing")}, ${counted(db.messages, "message")}, integrity ok) and ${counted(restored.files, "other file")} (${restored.bytes} bytes)`,
        ),
      );
      if (restored.aside) printLine(escapeUnsafe(`the home it replaced is at ${restored.aside}: remove it once the restored hub runs well`));
      for (const note of restored.notes) printLine(escapeUnsafe(`note: ${note}`));
      const takenAt = restored.takenAt === undefined ? undefined : Date.parse(restored.takenAt);
      printLine(
        `next: start hub serve; then on each thing ${resendCommand(Number.isNaN(takenAt) ? undefined : takenAt)} sends the egress stored after the backup; what the restored hub has forgotten (things made, revoked or deleted since): docs/hub.md, Backups`,
      );
      return ExitCode.OK;
    }),
};
