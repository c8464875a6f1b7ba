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
import { ExitCode, FlashlexError, UsageError } from "./shared/errors.ts";
import { toFlashlexError } from "./shared/foreign-errors.ts";
import { VERSION, COMMIT } from "./shared/version.ts";

const EXIT_CODES = `Exit codes:
  0   ok
  1   a bootstrap check failed
  64  usage: unknown command or flag, a flag value that is not valid (e.g. --limit abc)
  65  bad input data: not JSON, not UTF-8, too large, unknown message id; nothing was queued;
      collect: the API refused the message for good (kept as rejected, see \`outbox list\`)
  69  service unavailable: the message is queued and \`serve\` delivers it later
  70  internal error (a bug; please report it)
  74  I/O error: disk full, read-only file system, damaged database (the message names the file)
  75  try again later: not delivered and nothing was queued (offlinePublishQueueing: 0, or N
      messages already wait), the database is busy, or another serve runs on this data directory
  77  permission denied (install-service needs root)
  78  configuration error: the message names the file and the key (also: a certificate or key
      that cannot be used, a database of another application or of a newer flashlex)`;

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
    cli.parse(keepArgumentsText(argv), { run: false });
    restoreArgumentsText(cli);
    if (cli.matchedCommand && cli.matchedCommand.name !== "hub") lastValueOfRepeats(cli.matchedCommand, cli.options);
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
    return report(err);
  }
}

/**
 * Prints the one line a failure gets on stderr and returns its exit code: the error's kind
 * decides the code (src/shared/errors.ts). A bug (70) says so; its stack only with
 * FLASHLEX_LOG_LEVEL=debug.
 */
export function report(err: unknown): number {
  const error = toFlashlexError(err);
  const bug = error.kind === "bug";
  console.error(`flashlex: ${error.message}${bug ? " (an internal error in flashlex: please report it)" : ""}`);
  if (bug && process.env.FLASHLEX_LOG_LEVEL === "debug") console.error((err as Error)?.stack);
  return error.exitCode;
}

/**
 * cac (through mri) turns every value that looks like a number into one: `--limit 0x10` becomes
 * 16, `-c 1e3` becomes the path "1000", `--data ""` becomes 0. Arguments cannot hold NUL, so a
 * NUL put in front of each number-looking word keeps it text through parsing, and
 * `restoreArgumentsText` takes it off again; commands parse their numbers themselves, strictly.
 */
function keepArgumentsText(argv: string[]): string[] {
  // mri's own test (`+text * 0 === 0`), which also turns "" and "  " into 0
  const looksNumeric = (text: string) => Number(text) * 0 === 0;
  return argv.map((arg, i) => {
    if (i < 2) return arg;
    const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
    if (eq > 0) return looksNumeric(arg.slice(eq + 1)) ? `${arg.slice(0, eq + 1)}\0${arg.slice(eq + 1)}` : arg;
    return !arg.startsWith("-") && looksNumeric(arg) ? `\0${arg}` : arg;
  });
}

function restoreArgumentsText(cli: CAC): void {
  const strip = (value: unknown): unknown =>
    typeof value === "string" ? value.replace(/^\0/, "") : Array.isArray(value) ? value.map(strip) : value;
  cli.args = cli.args.map((arg) => strip(arg) as string);
  for (const key of Object.keys(cli.options)) cli.options[key] = strip(cli.options[key]);
}

/**
 * A thing command's value flag given twice (`-c a.yml -c b.yml`) arrives as an array: the last
 * one wins, as in most tools. (The hub's `--name` is meant to repeat; hub commands read arrays.)
 */
function lastValueOfRepeats(command: Command, options: Record<string, unknown>): void {
  for (const option of command.options) {
    if (!option.required) continue;
    const value = options[option.name];
    if (Array.isArray(value)) options[option.name] = value[value.length - 1];
  }
}

if (import.meta.main) {
  // Whatever escapes a command (a failure in a timer or an event handler of a long-running
  // serve) still ends as one line and the exit code of its kind, never as a stack trace.
  const last = (err: unknown) => {
    process.exitCode = report(err);
    setTimeout(() => process.exit(process.exitCode as number), 100).unref();
  };
  process.on("uncaughtException", last);
  process.on("unhandledRejection", last);
  main(process.argv).then((code) => {
    process.exitCode = code;
    // An MQTT socket or timer left open by a failed command must not keep the process alive.
    setTimeout(() => process.exit(code), 100).unref();
  });
}
