import { ingressTopic } from "../../protocol/topics.ts";
import { UsageError } from "../../shared/errors.ts";
import { type CommandSpec, type Options, text } from "../command.ts";
import { ExitCode } from "../exit-codes.ts";
import { readDocument, sourceName } from "../input.ts";
import { printLine } from "../output.ts";
import { DB_OPTION, DIR_OPTION, JSON_OPTION, openedHub, thingsOrFail } from "./common.ts";

export const hubSendCommand: CommandSpec = {
  name: "hub send",
  args: "<...things>",
  description: 'Send the JSON document on stdin to one thing or several, as {"message": <document>} on each one\'s ingress topic (needs a running hub)',
  options: [DIR_OPTION, DB_OPTION, { flags: "-f, --file <file>", description: "read the document from this file instead of stdin" }, JSON_OPTION],
  bunOnly: true,
  run: send,
};

/**
 * Checks the things and the document here, naming the file, then hands it to the running hub,
 * which holds the broker. 0 when every thing got it; 69 when the broker did not take it for some.
 */
function send(args: string[], options: Options): Promise<number> {
  return openedHub(options, async (hub) => {
    if (args.length === 0) throw new UsageError("missing the thing");
    const things = await thingsOrFail(hub, args);
    const named = new Set<string>();
    for (const [i, thing] of things.entries()) {
      if (named.has(thing.id)) throw new UsageError(`${args[i]}: ${thing.name} is named twice`);
      named.add(thing.id);
    }
    const file = text(options.file);
    const limit = hub.home.settings.api.payloadLimitBytes;
    const [{ parseIngressDocument, publishTextLimit }, { publishThroughService }] = await Promise.all([
      import("../../hub/messages/messages.ts"),
      import("../../hub/http/local-client.ts"),
    ]);
    const message = parseIngressDocument(await readDocument(file, publishTextLimit(limit)), limit, sourceName(file));
    const answer = await publishThroughService(
      hub.home,
      things.map((t) => t.id),
      message,
    );
    if (options.json) printLine(JSON.stringify(things.length === 1 ? { ...answer, result: answer.result[0] } : answer));
    else {
      for (const [i, { flmessagespk, online, error }] of answer.result.entries()) {
        const topic = ingressTopic(things[i]!.name);
        // `online: false` comes only from the embedded broker, which keeps the message until the thing acknowledges it.
        const offline = " (the thing is not connected now; the hub keeps the message until the thing has it)";
        printLine(error ? `not sent to ${topic}: ${error}` : `sent to ${topic} as ${flmessagespk}${online === false ? offline : ""}`);
      }
    }
    return answer.result.some((r) => r.error) ? ExitCode.UNAVAILABLE : ExitCode.OK;
  });
}
