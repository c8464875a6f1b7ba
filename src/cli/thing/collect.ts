import { EGRESS_TEXT_LIMIT_BYTES } from "../../protocol/limits.ts";
import { escapeUnsafe } from "../../shared/log.ts";
import { dataDirFor } from "../../thing/config-location.ts";
import { type CommandSpec, choice } from "../command.ts";
import { ExitCode } from "../exit-codes.ts";
import { readDocument, sourceName } from "../input.ts";
import { printLine } from "../output.ts";
import { chooseConfig, openAccessFromFlags, type ThingFlags, thingCommand } from "./common.ts";

export const collectCommand: CommandSpec = thingCommand({
  name: "collect",
  description: "Egress: send one JSON document from stdin (or --file) to the collect API; queued if unreachable",
  options: [
    { flags: "-f, --file <path>", description: "read the document from a file instead of stdin (as hub send -f)" },
    { flags: "--via <http|mqtt>", description: "http: POST to the collect API (default); mqtt: publish to the egress topic" },
    { flags: "--json", description: "print the result as one JSON line" },
  ],
  run: (_args, options) => collect(options),
});

/** 0 delivered, 65 refused for good (kept as rejected), 69 queued for serve. */
async function collect(flags: ThingFlags & { file?: string; via?: string; json?: boolean }): Promise<number> {
  const via = choice(flags.via, "--via", ["http", "mqtt"]) ?? "http";
  // Identity first when collect delivers itself: a key that does not fit its certificate is a
  // configuration error (78), and the message must not be queued only to be refused by the hub
  // later. A running serve delivers with the identity it has already checked.
  // The document is read while the running serve is looked for (or the config and keys load);
  // a problem with the access is still reported first.
  const reading = readDocument(flags.file, EGRESS_TEXT_LIMIT_BYTES);
  reading.catch(() => {});
  const access = await openAccessFromFlags(flags, { identityFirst: true, postsCollect: via === "http" });
  try {
    const { parseEgressDocument } = await import("../../thing/egress/document.ts");
    const body = parseEgressDocument(await reading, sourceName(flags.file));
    const result = await access.collect(body, via);
    if (flags.json) {
      printLine(JSON.stringify(result));
    } else if (via === "mqtt") {
      // no answer but the broker's PUBACK: say what went, with the id the hub stores it under
      if (result.outcome === "sent") printLine(`published message ${result.messageId} to the egress topic (the broker acknowledged it)`);
    } else {
      if (result.body) printLine(shownBody(result.body));
      if (result.status) printLine(`status code: ${result.status}`);
    }
    if (result.recordError) {
      console.error(
        `collect: message ${result.messageId} was ${result.outcome === "sent" ? "delivered" : result.outcome}, but the outbox could not record it (${result.recordError}); ` +
          "serve may send it again later, with the same message id, and the hub stores it once",
      );
    }
    if (result.outcome === "sent") return ExitCode.OK;
    if (result.outcome === "rejected") {
      // unrecorded, the row is still pending: serve sends it again and records the refusal then
      const kept = result.recordError
        ? "serve records it as rejected when it sends it again"
        : "it is kept as rejected (flashlex outbox list --state rejected)";
      console.error(`collect: the API refused message ${result.messageId}: ${result.error}; ${kept}`);
      return ExitCode.DATA;
    }
    // Unrecorded: most often a serve started meanwhile holds the database (armv7), so whether
    // one ran when collect began says nothing now.
    if (access.served || result.recordError) {
      // "will deliver it" was too sure: a revoked thing's message is refused (401) for ever
      const until = result.status === 401 ? "until the hub takes it (a revoked thing's, never)" : "until the hub takes it";
      console.error(`collect: message ${result.messageId} is queued (${result.error}); \`flashlex serve\` sends it again ${until}`);
    } else {
      // The guide ran serve with -d and collect without: a second database no serve drains.
      const dir = dataDirFor(chooseConfig(flags).file, flags.data);
      console.error(
        `collect: message ${result.messageId} is queued in ${dir} (${result.error}), where no \`flashlex serve\` has run yet: ` +
          `a serve started with -d ${dir} delivers it (once no other serve of this thing runs here: one MQTT session per thing), one with another -d never sees it (give collect the serve's -d)`,
      );
    }
    return ExitCode.UNAVAILABLE;
  } finally {
    access.close();
  }
}

/**
 * The hub's answer as the terminal shows it: JSON indented, anything else as it came, and either
 * way with every control or format character escaped line by line (log.ts escapeUnsafe): an
 * answer holding ESC sequences cleared or recoloured the user's terminal.
 */
function shownBody(text: string): string {
  let shown = text;
  try {
    shown = JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    // not JSON: shown as it came
  }
  return shown.split("\n").map(escapeUnsafe).join("\n");
}
