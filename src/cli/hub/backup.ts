import { escapeUnsafe } from "../../shared/log.ts";
import { isoSeconds } from "../../shared/time.ts";
import { type CommandSpec, interruptible, required } from "../command.ts";
import { ExitCode } from "../exit-codes.ts";
import { counted, printLine } from "../output.ts";
import { DB_OPTION, DIR_OPTION, databaseOverride, hubHome, JSON_OPTION, resendCommand } from "./common.ts";

export const hubBackupCommand: CommandSpec = {
  name: "hub backup",
  args: "<directory>",
  description: "Copy the hub home into a new directory while the hub runs: hub.db as a checked snapshot, the CA, keys, hub.yml, zips and releases",
  options: [DIR_OPTION, DB_OPTION, JSON_OPTION],
  bunOnly: true,
  run: (args, options) =>
    interruptible("hub backup", "the backup directory was not made", async (signal) => {
      const target = required(args, "the backup directory");
      const dir = hubHome(options);
      const [{ openHubHome }, { backUpHub }] = await Promise.all([import("../../hub/home/home.ts"), import("../../hub/home/backup.ts")]);
      const home = openHubHome(dir, undefined, databaseOverride(options));
      const backup = await backUpHub(home, target, signal);
      const takenAt = isoSeconds(backup.takenAt);
      if (options.json) {
        printLine(JSON.stringify({ ...backup, takenAt, home: home.paths.dir }));
        return ExitCode.OK;
      }
      const db = backup.database;
      const what = db ? `hub.db (schema ${db.schema}, ${counted(db.things, "thing")}, ${counted(db.messages, "message")}, integrity ok) and ` : "";
      printLine(
        escapeUnsafe(`backed up ${home.paths.dir} as of ${takenAt} to ${backup.dir}: ${what}${counted(backup.files, "other file")} (${backup.bytes} bytes)`),
      );
      for (const note of backup.notes) printLine(escapeUnsafe(`note: ${note}`));
      printLine(
        `to restore: stop hub serve, \`flashlex hub restore ${backup.dir} --dir ${home.paths.dir}\`, start hub serve; then on each thing ${resendCommand(backup.takenAt)} sends the egress stored after it (docs/hub.md, Backups)`,
      );
      return ExitCode.OK;
    }),
};
