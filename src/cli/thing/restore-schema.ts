/**
 * `flashlex restore-schema -d DATA`: takes the thing's message database back to the schema it had
 * before a version on trial migrated it (src/thing/update/trial-schema.ts), so the previous binary
 * opens it. The update guard runs it with the binary it is about to roll back, the one that knows
 * how to undo its migrations; serve does the same itself when it rolls back.
 */
import { resolve } from "node:path";
import { UsageError } from "../../shared/errors.ts";
import { checkDataDirectory } from "../../thing/config-location.ts";
import { type CommandSpec, text } from "../command.ts";
import { ExitCode } from "../exit-codes.ts";
import { printLine } from "../output.ts";
import { actAsFolderOwner } from "./common.ts";

export const restoreSchemaCommand: CommandSpec = {
  name: "restore-schema",
  description:
    "Take the message database back to the schema it had before an update on trial migrated it, so the previous binary opens it (the update guard runs it when it rolls back)",
  options: [{ flags: "-d, --data <dir>", description: "the thing's data directory (default: ./data)" }],
  async run(args, options) {
    if (args.length) throw new UsageError("restore-schema takes no arguments (the data directory is -d DIR)");
    const given = text(options.data) ?? "data";
    checkDataDirectory(given, { flag: "-d", existing: true });
    const dataDir = resolve(given);
    if (process.geteuid?.() === 0) actAsFolderOwner(dataDir, [dataDir]);
    const { restoreTrialSchema } = await import("../../thing/update/trial-schema.ts");
    const done = restoreTrialSchema(dataDir);
    if (!done) printLine(`${dataDir}: no update on trial noted a migration (update/trial-schema): nothing to take back`);
    else if (done.from === done.to) printLine(`${done.database}: already at schema version ${done.to}`);
    else printLine(`${done.database}: schema version ${done.from} taken back to ${done.to}`);
    return ExitCode.OK;
  },
};
