import { ingressTopic } from "../../protocol/topics.ts";
import { type CommandSpec, type Options, required, text } from "../command.ts";
import { ExitCode } from "../exit-codes.ts";
import { readDocument } from "../input.ts";
import { DB_OPTION, DIR_OPTION, JSON_OPTION, openedHub, thingOrFail } from "./common.ts";

export const hubSendCommand: CommandSpec = {
  name: "hub send",
  args: "<thing>",
  description: 'Send the JSON document on stdin to a thing, as {"message": <document>} on its ingress topic (needs a running hub)',
  options: [DIR_OPTION, DB_OPTION, { flags: "-f, --file <file>", description: "read the document from this file instead of stdin" }, JSON_OPTION],
  bunOnly: true,
  run: send,
};

/** Checks the document here, naming the file, then hands it to the running hub, which holds the broker. */
function send(args: string[], options: Options): Promise<number> {
  return openedHub(options, async (hub) => {
    const thing = await thingOrFail(hub, required(args, "the thing"));
    const file = text(options.file);
    const limit = hub.home.settings.api.payloadLimitBytes;
    const [{ parseIngressDocument }, { publishThroughService }] = await Promise.all([
      import("../../hub/messages/messages.ts"),
      import("../../hub/http/local-client.ts"),
    ]);
    const message = parseIngressDocument(await readDocument(file, limit), limit, file ?? "stdin");
    const answer = await publishThroughService(hub.home, thing.id, message);
    if (options.json) console.log(JSON.stringify(answer));
    else {
      const { flmessagespk, online } = answer.result;
      // `online: false` comes only from the embedded broker, which keeps the message until the thing acknowledges it.
      const offline = " (the thing is not connected now; the hub keeps the message until the thing has it)";
      console.log(`sent to ${ingressTopic(thing.name)} as ${flmessagespk}${online === false ? offline : ""}`);
    }
    return ExitCode.OK;
  });
}
