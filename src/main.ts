#!/usr/bin/env bun
/**
 * The one entrypoint: the one command table, wired to cac, and where a failure becomes its exit
 * code (`report`, by the kind's code in cli/exit-codes.ts). Each command lives in src/cli/;
 * nothing here does the work.
 *
 * cac matches a command by one word; a command of several words (`hub thing create`) is found
 * in the table first (cli/argv.ts `matchCommand`), its words joined into the one word cac then
 * matches, so cac parses every command's own flags and prints every command's help, all from
 * the table.
 */
import { type CAC, type Command, cac } from "cac";
import {
  keepArgumentsText,
  matchCommand,
  refuseEmptyValues,
  refuseMisreadWords,
  refuseRepeatedFlags,
  refuseSwitchValues,
  restoreArgumentsText,
  unknownOptionHint,
} from "./cli/argv.ts";
import type { CommandSpec } from "./cli/command.ts";
import { checkEnvironment } from "./cli/environment.ts";
import { EXIT_CODES_HELP, ExitCode, HUB_EXIT_CODES_HELP } from "./cli/exit-codes.ts";
import { hubBackupCommand } from "./cli/hub/backup.ts";
import { hubMosquittoConfigCommand, hubRabbitmqConfigCommand } from "./cli/hub/broker.ts";
import { hubEnrollTokenCommands } from "./cli/hub/enroll-token.ts";
import { hubExportCommand } from "./cli/hub/export.ts";
import { hubInitCommand } from "./cli/hub/init.ts";
import { hubRestoreCommand } from "./cli/hub/restore.ts";
import { hubThingRotateCommand } from "./cli/hub/rotate.ts";
import { hubSendCommand } from "./cli/hub/send.ts";
import { hubServeCommand } from "./cli/hub/serve.ts";
import { hubThingCommands } from "./cli/hub/things.ts";
import { hubTokenRotateCommand } from "./cli/hub/token.ts";
import { hubUpdateCommands } from "./cli/hub/updates.ts";
import { printLine } from "./cli/output.ts";
import { report, runAsProcess } from "./cli/process-entry.ts";
import { bootstrapCommand } from "./cli/thing/bootstrap.ts";
import { collectCommand } from "./cli/thing/collect.ts";
import { enrollCommand } from "./cli/thing/enroll.ts";
import { messagesCommand } from "./cli/thing/messages.ts";
import { outboxCommand } from "./cli/thing/outbox.ts";
import { restoreSchemaCommand } from "./cli/thing/restore-schema.ts";
import { serveCommand } from "./cli/thing/serve.ts";
import { installServiceCommand, uninstallServiceCommand } from "./cli/thing/service.ts";
import { trialExitCode } from "./cli/thing/trial-exit.ts";
import { answerMaterialJobs, isMaterialWorker } from "./hub/things/material-thread.ts";
import { FlashlexError, UsageError } from "./shared/errors.ts";
import { toFlashlexError } from "./shared/foreign-errors.ts";
import { quoteGiven } from "./shared/log.ts";
import { nearestSpelling } from "./shared/spelling.ts";
import { COMMIT, VERSION } from "./shared/version.ts";

/** Every command, in the order `flashlex --help` and `flashlex hub --help` list them. */
export const COMMANDS: readonly CommandSpec[] = [
  enrollCommand,
  bootstrapCommand,
  serveCommand,
  collectCommand,
  messagesCommand,
  outboxCommand,
  installServiceCommand,
  uninstallServiceCommand,
  restoreSchemaCommand,
  {
    name: "hub",
    args: "[...words]",
    description: "The hub, the cloud half: `flashlex hub --help` lists its commands (init, thing, serve, send, export, ...)",
    options: [],
    bunOnly: true,
  },
  hubInitCommand,
  ...hubThingCommands,
  hubThingRotateCommand,
  ...hubEnrollTokenCommands,
  hubServeCommand,
  hubSendCommand,
  hubExportCommand,
  hubBackupCommand,
  hubRestoreCommand,
  hubMosquittoConfigCommand,
  hubRabbitmqConfigCommand,
  hubTokenRotateCommand,
  ...hubUpdateCommands,
  { name: "version", description: "Print the version", options: [], run: printVersion },
];

/** The commands whose name starts with `prefix` and a space: what `flashlex <prefix> --help` lists. */
function commandsUnder(prefix: string): CommandSpec[] {
  return COMMANDS.filter((spec) => spec.name.startsWith(`${prefix} `));
}

/**
 * The commands a group's help lists: those under the group's words and the words typed after it
 * when any are (`hub thing --help`: the `hub thing` commands), else all of the group's.
 */
function listedUnder(group: CommandSpec, words: readonly string[]): CommandSpec[] {
  const narrower = words.length ? commandsUnder(`${group.name} ${words.join(" ")}`) : [];
  return narrower.length ? narrower : commandsUnder(group.name);
}

/**
 * A cac instance for this command line: `only` when the table matched the command line, else
 * every one-word command (for the listing of `flashlex --help` and the unknown-command error).
 * Registering one command instead of all saves a one-shot command (`collect`) a few ms of
 * start: cac parses every option's flags when it is registered. `setExit` receives what the
 * matched command's run returns.
 */
function buildCli(only: CommandSpec | undefined, setExit: (code: number | Promise<number>) => void): CAC {
  const cli = cac("flashlex");
  const specOf = new Map<Command, CommandSpec>();
  for (const spec of only ? [only] : COMMANDS) {
    if (!only && spec.name.includes(" ")) continue;
    const command = cli.command(spec.args ? `${spec.name} ${spec.args}` : spec.name, spec.description);
    for (const option of spec.options) command.option(option.flags, option.description, option.default === undefined ? undefined : { default: option.default });
    command.action(() => setExit(runCommand(cli, spec)));
    specOf.set(command, spec);
  }
  cli.help((sections) => {
    const spec = cli.matchedCommand && specOf.get(cli.matchedCommand);
    if (!spec) return [...sections, { body: EXIT_CODES_HELP }];
    const [header, usage, ...rest] = sections;
    const children = listedUnder(spec, cli.args);
    const listing = children.length
      ? [
          { title: "Commands", body: children.map((c) => `  ${c.name}${c.args ? ` ${c.args}` : ""}\n      ${c.description}`).join("\n") },
          { title: "For more info, run any command with the `--help` flag", body: children.map((c) => `  $ flashlex ${c.name} --help`).join("\n") },
        ]
      : [];
    const note = spec.helpNote?.(cli.options);
    const exitCodes = spec.name === "hub" || spec.name.startsWith("hub ") ? HUB_EXIT_CODES_HELP : EXIT_CODES_HELP;
    return [header!, usage!, { body: `  ${spec.description}` }, ...listing, ...rest, ...(note ? [{ body: note }] : []), { body: exitCodes }];
  });
  // Printed by main once it knows the command exists: cac would print the whole listing for an
  // unknown one (`flashlex nosuch --help`) and main could only exit 0 after it.
  cli.showHelpOnExit = false;
  // Not cac's `version()`: it appends Node's compatibility version (`bun-v26.3.0` under Bun).
  cli.option("-v, --version", "Display the version: flashlex, its commit, the runtime inside");
  return cli;
}

/** Runs the matched command: a group says which of its commands the words did not name. */
async function runCommand(cli: CAC, spec: CommandSpec): Promise<number> {
  // The linux-armv7 build is a Node single executable, without Bun.serve or Bun's SQL client
  // (PostgreSQL): the hub is for Bun builds. Asked for PostgreSQL, it says that too.
  if (spec.bunOnly && typeof Bun === "undefined") {
    const db = `${cli.options.db ?? process.env.FLASHLEX_HUB_DB ?? ""}`;
    const postgres = /^postgres(ql)?:/i.test(db)
      ? "; PostgreSQL (--db postgres://...) needs Bun's SQL client, which this armv7 (Node) build does not have"
      : "";
    throw new FlashlexError(`the hub needs a Bun build: linux-x64 or linux-arm64${postgres}`, "unavailable");
  }
  if (spec.run) return spec.run([...cli.args], cli.options);
  if (cli.args.length) throw unknownGroupCommand(spec, cli.args);
  printHelp(cli);
  return ExitCode.USAGE;
}

/**
 * Prints cac's help for what `cli` matched through printLine, so a help that cannot be written
 * (`--help > /dev/full`) is exit 74 as any other output is: cac writes it with console.info,
 * which drops a failed write. Throws as printLine does.
 */
function printHelp(cli: CAC): void {
  const lines: string[] = [];
  const info = console.info;
  console.info = (...parts: unknown[]) => void lines.push(parts.join(" "));
  try {
    cli.outputHelp();
  } finally {
    console.info = info;
  }
  printLine(lines.join("\n"));
}

/**
 * `hub thing` (or `hub`) with no command: one line on stderr naming the words that may follow,
 * as `messages` with no action gets; the listing is `--help`'s (it came on stdout, with 64).
 */
function groupNeedsCommand(prefix: string): UsageError {
  const next = [...new Set(commandsUnder(prefix).map((c) => c.name.slice(prefix.length + 1).split(" ")[0]!))];
  return new UsageError(`${prefix} needs a command: ${next.join(", ")}; see flashlex ${prefix} --help`);
}

function unknownGroupCommand(group: CommandSpec, words: readonly string[]): UsageError {
  // the words that still name a group (`hub thing` of `hub thing lst`), then a hint for the first that does not
  let prefix = group.name;
  let at = 0;
  while (at < words.length && commandsUnder(`${prefix} ${words[at]}`).length) prefix += ` ${words[at++]}`;
  // `hub --dir X thing list`: the words name a command, but a flag came between them
  const command = at < words.length ? `${prefix} ${words[at]}` : undefined;
  if (command && COMMANDS.some((c) => c.name === command)) {
    return new UsageError(
      `"${command}" is a command, but a flag came between its words: write the words first, then the flags; see flashlex ${command} --help`,
    );
  }
  const meant = at < words.length ? meantWords(prefix, words.slice(at)) : undefined;
  return new UsageError(
    `unknown ${group.name} command ${quoteGiven(words.join(" "))}${meant ? `; did you mean flashlex ${meant}?` : ""}; see flashlex ${group.name} --help`,
  );
}

/**
 * The command (or group) `words` after `prefix` likely meant, each word taken as it is or as the
 * one at most two letters off it, up to a whole command: `hub thing list` for `hub thng list`
 * (not `hub thing`, which alone runs nothing); undefined when a word is near none.
 */
function meantWords(prefix: string, words: readonly string[]): string | undefined {
  let path = prefix;
  for (const word of words) {
    const under = path ? commandsUnder(path) : COMMANDS;
    const next = new Set(under.map((c) => c.name.slice(path ? path.length + 1 : 0).split(" ")[0]!));
    const chosen = next.has(word) ? word : nearestSpelling(word, next);
    if (chosen === undefined) break;
    path = path ? `${path} ${chosen}` : chosen;
    if (!commandsUnder(path).length) break; // a command: the words after it are its own
  }
  return path === prefix ? undefined : path;
}

/** UsageError (64) when a word that is no flag follows `--version` (`-v`) after the command `spec`: it was meant as a value. */
function refuseVersionValue(argv: readonly string[], spec: CommandSpec): void {
  const at = argv.findIndex((word, i) => i >= 2 && (word === "--version" || word === "-v"));
  const next = at >= 0 ? argv[at + 1] : undefined;
  if (next !== undefined && !next.startsWith("-")) {
    throw new UsageError(`--version prints flashlex's version and takes no value (it was given ${quoteGiven(next)}); see flashlex ${spec.name} --help`);
  }
}

/** `flashlex 0.1.0 (abc1234), Bun 1.4.5, linux-x64`: what was built, and what runs it (the armv7 build: Node). */
function printVersion(): number {
  const runtime = typeof Bun === "undefined" ? `Node ${process.versions.node}` : `Bun ${Bun.version}`;
  printLine(`flashlex ${VERSION} (${COMMIT}), ${runtime}, ${process.platform}-${process.arch}`);
  return ExitCode.OK;
}

/** Runs the command line `argv` (as process.argv: runtime, script, words...) and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  let result: number | Promise<number> | undefined;
  try {
    const matched = matchCommand(COMMANDS, argv.slice(2));
    refuseMisreadWords(argv, matched ? [matched.spec] : COMMANDS);
    const multiWord = matched?.spec.name.includes(" ") ? matched.spec : undefined;
    // cac matches args[0]: a multi-word command's words become its one (space-holding) name.
    const line = multiWord ? [argv[0]!, argv[1]!, multiWord.name, ...matched!.rest] : argv;
    const parse = (only: CommandSpec | undefined) => {
      const cli = buildCli(only, (code) => (result = code));
      cli.parse(keepArgumentsText(line), { run: false });
      return cli;
    };
    let cli = parse(matched?.spec);
    // cac saw another first word than the table did (a flag it took a value for): start over
    // with every command, as if nothing had matched.
    if (matched && !cli.matchedCommand) cli = parse(undefined);
    restoreArgumentsText(cli);
    const spec = cli.matchedCommand && COMMANDS.find((c) => c.name === cli.matchedCommand!.name);
    const help = Boolean(cli.options.help);
    if (spec && !help) {
      refuseRepeatedFlags(spec, argv.slice(2));
      refuseEmptyValues(spec, cli.options);
    }
    if (!cli.matchedCommand) {
      if (cli.args.length) {
        const meant = meantWords("", cli.args.map(String));
        throw new UsageError(`unknown command ${quoteGiven(String(cli.args[0]))}${meant ? `; did you mean flashlex ${meant}?` : ""}; see flashlex --help`);
      }
      // `flashlex --nosuch`: the flag named, not the whole listing with 64 and no word of why
      if (!help && !cli.options.version) {
        try {
          cli.globalCommand.checkUnknownOptions();
        } catch (err) {
          throw withOptionHint(err, { name: "flashlex", description: "", options: [] });
        }
      }
      if (cli.options.version && !help) return printVersion();
      printHelp(cli);
      return help ? ExitCode.OK : ExitCode.USAGE;
    }
    // A word right after --version was meant as a value: `hub update --version 1.2.3` printed the
    // version, exited 0 and rolled nothing out (attack round 26, F12; a group's too: verify pass 27, F4)
    if (spec && cli.options.version && !help) refuseVersionValue(argv, spec);
    // `hub thing --version`: the version, as `hub --version` and `collect --version` give it
    if (spec && !spec.run && cli.options.version && !help) return printVersion();
    // A group (`hub`, `hub thing`) followed by words it has no command for: say that, before cac
    // judges the flags by the group's own (none), which would call --dir an unknown option.
    if (spec && !spec.run && cli.args.length) {
      if (!commandsUnder(`${spec.name} ${cli.args.join(" ")}`).length) throw unknownGroupCommand(spec, cli.args);
      // `hub thing` names no command but starts some: their listing with --help, else one line naming them
      if (!help) throw mistypedHelpOrVersion(cli.matchedCommand, spec) ?? groupNeedsCommand(`${spec.name} ${cli.args.join(" ")}`);
      printHelp(cli);
      return ExitCode.OK;
    }
    if (help) {
      printHelp(cli);
      return ExitCode.OK;
    }
    // `collect --version` prints the version, as `collect --help` prints help: the command ran
    // (the message went to the hub; `hub init --version` made a hub), the flag unread.
    if (cli.options.version) return printVersion();
    // A group with or without flags and no command (`hub --dir X`): one line naming its commands,
    // not "Unknown option --dir" (the group has none; its commands do), unless a flag is cac's
    // own mistyped (`hub --HELP`: did you mean --help?)
    if (spec && !spec.run) throw mistypedHelpOrVersion(cli.matchedCommand, spec) ?? groupNeedsCommand(spec.name);
    if (spec) {
      // A flag the command does not have is said first: `hub thing create -x` answered "needs
      // <name>", and the user went on to type a name with the same wrong flag.
      try {
        cli.matchedCommand.checkUnknownOptions();
      } catch (err) {
        throw withOptionHint(err, spec);
      }
      refuseSwitchValues(spec, line);
      checkArgumentCount(spec, cli.args);
    }
    // After the command line (its usage errors come first, and --help always works), before the
    // command: a bad FLASHLEX_LOG_LEVEL must not first show up half way through a serve.
    checkEnvironment();
    try {
      cli.runMatchedCommand();
    } catch (err) {
      throw spec ? withOptionHint(err, spec) : err;
    }
    return (await result) ?? ExitCode.OK;
  } catch (err) {
    return report(err);
  }
}

/**
 * cac's "Unknown option" with what the flag was likely meant to be (argv.ts unknownOptionHint),
 * as a UsageError (64); any other error as it is.
 */
function withOptionHint(err: unknown, spec: CommandSpec): unknown {
  const unknown = unknownFlagOf(err);
  if (!unknown) return err;
  // with nothing near, where the command's flags are listed (new-user pass 22, F5)
  const hint = unknownOptionHint(spec, unknown.flag) ?? `see flashlex ${spec.name === "flashlex" ? "" : `${spec.name} `}--help`;
  return new UsageError(`${unknown.said}; ${hint}`);
}

/** cac's "Unknown option" as the user typed it (toFlashlexError undoes cac's camelCase: `--brokrHost` for --brokr-host), and the flag; undefined for any other error. */
function unknownFlagOf(err: unknown): { said: string; flag: string } | undefined {
  if ((err as Error)?.name !== "CACError") return undefined;
  const said = toFlashlexError(err).message;
  const flag = /^Unknown option `(-[^`]+)`/.exec(said)?.[1];
  return flag === undefined ? undefined : { said, flag };
}

/**
 * For a group (no flags of its own): a UsageError when one of its flags is cac's `--help` or
 * `--version` mistyped (`hub --HELP`), with the hint; undefined for any other flag (a command's,
 * given before the command's words).
 */
function mistypedHelpOrVersion(command: Command, group: CommandSpec): UsageError | undefined {
  try {
    command.checkUnknownOptions();
  } catch (err) {
    const unknown = unknownFlagOf(err);
    const hint = unknown && unknownOptionHint(group, unknown.flag);
    if (hint) return new UsageError(`${unknown.said}; ${hint}`);
  }
  return undefined;
}

/**
 * A missing argument, or a word past what `spec` takes, said with the command and what it takes
 * (cac says only "missing required args for command `messages <action> [...ids]`" and "Unused
 * args: `x`"): `hub update --to 2.0.0 pump-1` says where a value goes. Throws UsageError (64).
 */
function checkArgumentCount(spec: CommandSpec, args: readonly string[]): void {
  const taken = spec.args?.split(/\s+/).filter(Boolean) ?? [];
  const missing = taken.filter((arg) => arg.startsWith("<")).slice(args.length);
  // `<...things>` in words: cac's placeholder read as if it were the value to type
  const said = missing.map((arg) => (arg.startsWith("<...") ? `one or more ${arg.slice(4, -1)}` : arg));
  if (missing.length) throw new UsageError(`${spec.name} needs ${said.join(" ")}: ${spec.description}; see flashlex ${spec.name} --help`);
  if (taken.some((arg) => arg.includes("..."))) return;
  const extra = args.slice(taken.length);
  if (!extra.length) return;
  // with nothing to take, the word is most likely a flag's value; else one too many of what it takes
  const why = taken.length ? `takes ${taken.join(" ")}, one per run` : "takes no arguments: a value goes after its flag";
  // unless it is one of the command's own commands misspelt (`hub update Status`)
  const meant = commandsUnder(spec.name).length ? meantWords(spec.name, extra.map(String)) : undefined;
  throw new UsageError(
    `${spec.name} ${why}, so ${quoteGiven(String(extra[0]))} is one too many${extra.length > 1 ? ` (of ${extra.length})` : ""}${meant ? `; did you mean flashlex ${meant}?` : ""}; see flashlex ${spec.name} --help`,
  );
}

/**
 * Runs `argv` as this process and exits with its code; for `serve` on trial after a
 * self-update, an exit the unit would not restart becomes one it does (cli/thing/trial-exit.ts).
 */
export function runMain(argv: string[]): void {
  runAsProcess(async () => trialExitCode(argv.slice(2), await main(argv), VERSION), argv[2]);
}

// Started as a worker thread by this program (hub/things/material-thread.ts): it answers jobs and runs no command.
if (isMaterialWorker()) answerMaterialJobs();
else if (import.meta.main) runMain(process.argv);
