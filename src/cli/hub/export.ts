import type { MessageType } from "../../hub/messages/messages.ts";
import { type CommandSpec, choice, interruptible, type Options, required, text } from "../command.ts";
import { ExitCode } from "../exit-codes.ts";
import { parseTimeRange } from "../input.ts";
import { DB_OPTION, DIR_OPTION, openedHub, outputFile, partialOutput, reportBeside, thingOrFail, untakenNames } from "./common.ts";

export const hubExportCommand: CommandSpec = {
  name: "hub export",
  args: "<thing>",
  description: "Write a thing's messages to a zip, one <flmessagespk>.json each (the old cloud's export format)",
  options: [
    DIR_OPTION,
    DB_OPTION,
    { flags: "--since <time>", description: "from this time: Unix seconds or an ISO date/date-time" },
    { flags: "--until <time>", description: "up to this time, inclusive (a bare date means the end of that day)" },
    { flags: "--type <type>", description: "only egress or only ingress messages (default: both)" },
    { flags: "-o, --output <file>", description: "the zip file (default: ./<thing id>_messages_<date>.zip, or -2, -3... when that is there)" },
  ],
  bunOnly: true,
  run: exportMessages,
};

/**
 * SIGINT/SIGTERM stop the export between two pages, or while a pipe's reader does not read: a
 * file's temporary file is removed, the file left as it was; a stream (`-o -`, a FIFO) has what
 * its reader took, and the line says how many bytes of the zip that was.
 */
function exportMessages(args: string[], options: Options): Promise<number> {
  let target = "";
  let streamed: number | undefined;
  const onStreamed = (bytes: number) => (streamed = bytes);
  return interruptible(
    "hub export",
    () => partialOutput(target, streamed),
    (signal) =>
      openedHub(options, async (hub) => {
        // The flags first: a bad value is usage (64) whether or not the thing exists.
        const { startts, endts } = parseTimeRange(text(options.since), text(options.until));
        const type = choice<MessageType>(options.type, "--type", ["egress", "ingress"]);
        const given = text(options.output) === undefined ? undefined : outputFile(options, "");
        const thing = await thingOrFail(hub, required(args, "the thing"));
        const archive = await hub.messages.archive(thing, { startts, endts, messagetype: type }, new Date());
        const { writeArchiveFile } = await import("../../hub/messages/archive.ts");
        let written: { file: string; count: number };
        if (given !== undefined) {
          target = given;
          written = await writeArchiveFile(archive, given, { signal, onStreamed });
        } else {
          // The default name is the thing and the day: a second export that day (another range,
          // the other --type) went over the first, which may hold what is gone from the hub since.
          const names = untakenNames(outputFile(options, archive.fileName));
          target = names.next().value;
          written = await writeArchiveFile(archive, target, { signal, onStreamed, exclusive: true, nextName: () => names.next().value });
        }
        const { file, count } = written;
        reportBeside(file)(`${file}: ${count} message${count === 1 ? "" : "s"}`);
        return ExitCode.OK;
      }),
  );
}
