#!/usr/bin/env bun
/**
 * The one entrypoint: the command table, and the mapping of errors to exit codes. Each
 * command lives in src/commands/; nothing here does the work.
 */
import { cac, type CAC, type Command } from "cac";
import { bootstrap } from "./commands/bootstrap.ts";
import { collectCommand } from "./commands/collect.ts";
import { THING_FLAG_HELP } from "./commands/common.ts";
import { messagesAck, messagesDelete, messagesList } from "./commands/messages.ts";
import { outboxDrop, outboxList, outboxRetry } from "./commands/outbox.ts";
import { serve } from "./commands/serve.ts";
import { installService, uninstallService } from "./commands/service.ts";
import { hubCommandTable, hubOptionUnion, matchHubCommand, type HubCommandSpec } from "./commands/hub.ts";
import { ExitCode, exitCodeOf, FlashlexError, UsageError } from "./errors.ts";
import { VERSION, COMMIT } from "./version.ts";

const EXIT_CODES = `Exit codes:
  0   ok
  1   a bootstrap check failed
  64  usage: unknown command, flag or argument
  65  bad input data: not JSON, too large, unknown message id; nothing was queued;
      collect: the API refused the message for good (kept as rejected, see \`outbox list\`)
  69  service unavailable: the message is queued and \`serve\` delivers it later
  70  internal error (a bug; please report it)
  74  I/O error
  75  try again later: not delivered and nothing was queued (offlinePublishQueueing: 0, or N
      messages already wait), or another serve runs on this data directory
  77  permission denied (install-service needs root)
  78  configuration error: the message names the file and the key`;

function thingCommand(cli: CAC, name: string, description: string): Command {
  return cli
    .command(name, description)
    .option("-c, --config <file>", THING_FLAG_HELP.config)
    .option("-d, --data <dir>", THING_FLAG_HELP.data)
    .option("-k, --keys <dir>", THING_FLAG_HELP.keys);
}

export function buildCli(setExit: (code: number | Promise<number>) => void): CAC {
  const cli = cac("flashlex");

  thingCommand(cli, "bootstrap", "Self-test: config, keys, clock, database, broker, ingress and egress; one line per check")
    .option("--json", "print the checklist as one JSON document")
    .action((flags) => setExit(bootstrap(flags)));

  thingCommand(cli, "serve", "Run the agent: MQTT over mutual TLS, store ingress, deliver the outbox (the systemd service)")
    .option("--exec <cmd>", "run CMD once per ingress message, payload on stdin; exit 0 acknowledges it")
    .action((flags) => setExit(serve(flags)));

  thingCommand(cli, "collect", "Egress: send one JSON document from stdin (or --file) to the collect API; queued if unreachable")
    .option("--file <path>", "read the document from a file instead of stdin")
    .option("--via <http|mqtt>", "http: POST to the collect API (default); mqtt: publish to the egress topic")
    .option("--json", "print the result as one JSON line")
    .action((flags) => setExit(collectCommand(flags)));

  thingCommand(cli, "messages <action> [...ids]", "What arrived: `list` (--json, --follow, --all, --acked, --topic, --since, --limit), `ack ID...`, `delete ID...`")
    .option("--json", "list: one JSON object per line")
    .option("--follow", "list: keep printing messages as they arrive, until Ctrl-C")
    .option("--all", "list: acknowledged messages too")
    .option("--acked", "list: only acknowledged messages")
    .option("--topic <topic>", "list: only this topic")
    .option("--since <time>", "list: received at or after (ISO date or Unix seconds)")
    .option("--limit <n>", "list: at most N messages")
    .action((action: string, ids: string[], flags) => {
      if (action === "list") {
        if (ids.length) throw new UsageError("messages list takes no ids");
        return setExit(messagesList(flags));
      }
      if (action === "ack") return setExit(messagesAck(flags, ids));
      if (action === "delete") return setExit(messagesDelete(flags, ids));
      throw new UsageError(`messages: unknown action ${JSON.stringify(action)} (list, ack, delete)`);
    });

  thingCommand(cli, "outbox <action> [...ids]", "Egress not yet delivered or refused: `list` (--state, --json), `retry ID...` (rejected → pending, due now), `drop ID...`")
    .option("--state <state>", "list: only pending, sent or rejected messages")
    .option("--json", "list: one JSON object per line")
    .action((action: string, ids: string[], flags) => {
      if (action === "list") {
        if (ids.length) throw new UsageError("outbox list takes no ids");
        return setExit(outboxList(flags));
      }
      if (action === "retry") return setExit(outboxRetry(flags, ids));
      if (action === "drop") return setExit(outboxDrop(flags, ids));
      throw new UsageError(`outbox: unknown action ${JSON.stringify(action)} (list, retry, drop)`);
    });

  thingCommand(cli, "install-service", "Install, enable and start the systemd unit for `serve` (root)")
    .option("--user <name>", "the user the service runs as (default: the config file's owner)")
    .option("--dry-run", "print the unit and change nothing")
    .option("--print", "same as --dry-run")
    .action((flags) => setExit(installService({ ...flags, dryRun: flags.dryRun || flags.print })));

  thingCommand(cli, "uninstall-service", "Stop, disable and remove the systemd unit (root)")
    .option("--dry-run", "say what would be done and change nothing")
    .action((flags) => setExit(uninstallService(flags)));

  const hub = cli.command("hub [...words]", "The hub, the cloud half: `flashlex hub --help` lists its commands (init, thing, serve, send, export, ...)");
  for (const option of hubOptionUnion()) hub.option(option.flags, option.description);
  hub.action((words: string[], flags: Record<string, unknown>) => setExit(runHubCommand(words, flags)));

  cli.command("version", "Print the version").action(() => setExit(printVersion()));

  cli.help((sections) => {
    // `flashlex hub ... --help` describes the hub's commands, not the one cac command behind them.
    if (cli.matchedCommand === hub) return [{ body: hubHelp(matchHubCommand(["hub", ...cli.args])?.command) }];
    return [...sections, { body: EXIT_CODES }];
  });
  cli.version(`${VERSION} (${COMMIT})`);
  return cli;
}

/** `hub` is one cac command whose words pick an entry of the hub's own command table. */
async function runHubCommand(words: string[], flags: Record<string, unknown>): Promise<number> {
  // The linux-armv7 build is a Node single executable, without Bun.serve: the hub is for Bun builds.
  if (typeof Bun === "undefined") throw new FlashlexError("the hub needs a Bun build: linux-x64 or linux-arm64", ExitCode.UNAVAILABLE);
  const match = matchHubCommand(["hub", ...words]);
  if (!match) {
    if (words.length) throw new UsageError(`unknown hub command ${JSON.stringify(words.join(" "))}; see flashlex hub --help`);
    console.log(hubHelp());
    return ExitCode.USAGE;
  }
  const allowed = new Set(["--", "help", ...match.command.options.flatMap((o) => optionNames(o.flags))]);
  const unknown = Object.keys(flags).filter((name) => !allowed.has(name));
  if (unknown.length) throw new UsageError(`${match.command.name}: unknown option --${unknown[0]}; see flashlex ${match.command.name} --help`);
  const required = match.command.args.match(/<[^>]+>/g) ?? [];
  if (match.args.length < required.length) throw new UsageError(`${match.command.name}: missing ${required.slice(match.args.length).join(" ")}`);
  return match.command.run(match.args, flags);
}

/** The names cac gives an option's value: `-o, --output <file>` → o, output. */
function optionNames(flags: string): string[] {
  return [...flags.matchAll(/--?([a-z][\w-]*)/gi)].map((m) => m[1]!.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()));
}

function hubHelp(command?: HubCommandSpec): string {
  const commands = command ? [command] : hubCommandTable;
  return [
    "Usage:",
    ...commands.flatMap((c) => [
      `  $ flashlex ${c.name}${c.args ? " " + c.args : ""}`,
      `      ${c.description}`,
      ...c.options.map((o) => `      ${o.flags.padEnd(26)} ${o.description}`),
    ]),
    "",
    EXIT_CODES,
  ].join("\n");
}

function printVersion(): number {
  console.log(`flashlex ${VERSION} (${COMMIT})`);
  return ExitCode.OK;
}

export async function main(argv: string[]): Promise<number> {
  let result: number | Promise<number> | undefined;
  try {
    const cli = buildCli((code) => (result = code));
    cli.parse(argv, { run: false });
    if (!cli.matchedCommand) {
      if (cli.options.help || cli.options.version) return ExitCode.OK;
      if (cli.args.length) throw new UsageError(`unknown command ${JSON.stringify(cli.args[0])}; see flashlex --help`);
      cli.outputHelp();
      return ExitCode.USAGE;
    }
    if (cli.options.help) return ExitCode.OK;
    cli.runMatchedCommand();
    return (await result) ?? ExitCode.OK;
  } catch (err) {
    const code = (err as Error)?.name === "CACError" ? ExitCode.USAGE : exitCodeOf(err);
    const message = err instanceof Error ? err.message : String(err);
    console.error(`flashlex: ${message}`);
    if (code === ExitCode.SOFTWARE && process.env.FLASHLEX_LOG_LEVEL === "debug") console.error((err as Error)?.stack);
    return code;
  }
}

if (import.meta.main) {
  main(process.argv).then((code) => {
    process.exitCode = code;
    // An MQTT socket or timer left open by a failed command must not keep the process alive.
    setTimeout(() => process.exit(code), 100).unref();
  });
}
