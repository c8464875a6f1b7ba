/**
 * `hub release add|list|remove|key` and `hub update [status|stop]`: signed self-update, the operator's side
 * (src/hub/updates; docs/updates.md). Each opens the hub home as the other hub commands do, so
 * it works beside a running `hub serve`, which offers the update to things as they poll.
 */
import { resolve } from "node:path";
import { UsageError } from "../../shared/errors.ts";
import { quoteGiven } from "../../shared/log.ts";
import { type CommandSpec, list, type Options, required, text } from "../command.ts";
import { ExitCode } from "../exit-codes.ts";
import { printLine, printTable } from "../output.ts";
import { DB_OPTION, DIR_OPTION, JSON_OPTION, openedHub, openedHubToWrite, thingsOrFail } from "./common.ts";

export const hubUpdateCommands: CommandSpec[] = [
  {
    name: "hub release add",
    args: "<dir>",
    description: "Store a signed release (DIR has manifest.json, manifest.sig and the binaries: `npm run release -- --signing-key`)",
    options: [DIR_OPTION, DB_OPTION, JSON_OPTION],
    bunOnly: true,
    run: add,
  },
  {
    name: "hub release list",
    description: "List the stored releases and their targets",
    options: [DIR_OPTION, DB_OPTION, JSON_OPTION],
    bunOnly: true,
    run: (_args, options) => releases(options),
  },
  {
    name: "hub release remove",
    args: "<version>",
    description:
      "Remove a release's binaries from the hub's disk (its manifest stays: the version keeps naming them); refused while a rollout or a thing still needs it",
    options: [DIR_OPTION, DB_OPTION, JSON_OPTION],
    bunOnly: true,
    run: remove,
  },
  {
    name: "hub release key",
    description: "Print the hub's update public key (ed25519:...), which every thing pins in config.yml flashlex.update.publicKey",
    options: [DIR_OPTION, DB_OPTION],
    bunOnly: true,
    run: (_args, options) => openedHub(options, async (hub) => (printLine(await hub.updates.publicKey()), ExitCode.OK)),
  },
  {
    name: "hub update",
    description: "Roll a stored release out to things in batches; stop when more than --max-failures fail",
    options: [
      DIR_OPTION,
      DB_OPTION,
      { flags: "--to <version>", description: "the release to install (see hub release list)" },
      { flags: "--things <names>", description: "the things (names, typed names or ids), comma-separated or repeated", repeatable: true },
      { flags: "--all", description: "every thing that is not revoked" },
      { flags: "--batch <size>", description: "things per batch: a percentage (10%, the default) or a number" },
      { flags: "--max-failures <n>", description: "stop the rollout when more things than this fail or roll back (default 0)" },
      JSON_OPTION,
    ],
    bunOnly: true,
    run: (_args, options) => rollout(options),
  },
  {
    name: "hub update stop",
    description: "Stop the running rollout: things not yet downloading it are cancelled; those downloading or installing it finish",
    options: [DIR_OPTION, DB_OPTION, JSON_OPTION],
    bunOnly: true,
    run: (_args, options) => stop(options),
  },
  {
    name: "hub update status",
    description: "The latest rollout, and each thing's version and update state",
    options: [DIR_OPTION, DB_OPTION, JSON_OPTION],
    bunOnly: true,
    run: (_args, options) => status(options),
  },
];

function add(args: string[], options: Options): Promise<number> {
  return openedHubToWrite("hub release add", options, async (hub) => {
    const { release, outcome } = await hub.updates.addRelease(resolve(required(args, "the release directory")));
    const targets = Object.keys(release.manifest.targets);
    if (options.json) printLine(JSON.stringify({ version: release.manifest.version, targets, outcome }));
    else printLine(`release ${release.manifest.version} ${outcome} (signature verified; ${targets.join(", ")})`);
    return ExitCode.OK;
  });
}

function remove(args: string[], options: Options): Promise<number> {
  const version = required(args, "the release's version (see hub release list)");
  return openedHubToWrite("hub release remove", options, async (hub) => {
    const { bytes } = await hub.updates.removeRelease(version);
    if (options.json) printLine(JSON.stringify({ version, removedBytes: bytes }));
    else if (bytes === 0) printLine(`release ${version}: its binaries were already gone; its manifest stays (hub release add DIR puts them back)`);
    else printLine(`release ${version}: binaries removed, ${(bytes / 1048576).toFixed(1)} MiB freed; its manifest stays (hub release add DIR puts them back)`);
    return ExitCode.OK;
  });
}

function releases(options: Options): Promise<number> {
  return openedHub(options, async (hub) => {
    const { releaseJson } = await import("../../hub/http/presenters.ts");
    const rows = (await hub.updates.listReleases()).map(releaseJson);
    if (options.json) printLine(JSON.stringify(rows));
    else if (!rows.length) printLine("no releases; add one with `flashlex hub release add DIR`");
    else for (const r of rows) printLine(`${r.version}  ${r.addedAt}  ${r.targets.join(", ")}${r.binaries === "removed" ? "  (binaries removed)" : ""}`);
    return ExitCode.OK;
  });
}

function count(value: unknown, flag: string): number | undefined {
  const given = text(value);
  if (given === undefined) return undefined;
  if (!/^\d{1,6}$/.test(given)) throw new UsageError(`${flag} must be a whole number, not ${quoteGiven(given)}`);
  return Number(given);
}

function rollout(options: Options): Promise<number> {
  return openedHubToWrite("hub update", options, async (hub) => {
    const version = text(options.to);
    if (!version) throw new UsageError("--to VERSION is required (see `flashlex hub release list`)");
    const batch = text(options.batch);
    if (batch !== undefined) {
      // the flag's syntax and range first: a bad value is usage (64), before any release or thing is looked up
      const { batchSize } = await import("../../hub/updates/updates.ts");
      try {
        batchSize(batch, 1);
      } catch (err) {
        throw new UsageError(`--${(err as Error).message}`);
      }
    }
    const maxFailures = count(options.maxFailures, "--max-failures");
    const refs = list(options.things);
    if (options.all === true && refs.length) throw new UsageError("give --things or --all, not both");
    if (options.all !== true && !refs.length) throw new UsageError("give the things to update: --things a,b or --all");
    const things = options.all === true ? await hub.things.list() : await thingsOrFail(hub, refs);
    const started = await hub.updates.startRollout({ version, things, batch, maxFailures });
    if (options.json) printLine(JSON.stringify((await import("../../hub/http/presenters.ts")).rolloutJson(started)));
    else {
      printLine(
        `rollout ${started.id}: ${version}, ${started.batch_size} per batch; it stops when more than ${started.max_failures} ${started.max_failures === 1 ? "thing fails" : "things fail"} or roll back`,
      );
      printLine("things get it when they next poll (serve checks every few minutes); follow it with `flashlex hub update status`");
    }
    return ExitCode.OK;
  });
}

function stop(options: Options): Promise<number> {
  return openedHubToWrite("hub update stop", options, async (hub) => {
    const rollout = await hub.updates.stopRunningRollout("stopped by the operator");
    if (options.json) printLine(JSON.stringify((await import("../../hub/http/presenters.ts")).rolloutJson(rollout)));
    else printLine(`rollout ${rollout.id} to ${rollout.version} stopped; things not yet downloading it are cancelled (flashlex hub update status)`);
    return ExitCode.OK;
  });
}

function status(options: Options): Promise<number> {
  return openedHub(options, async (hub) => {
    const { rollout, things } = await hub.updates.status();
    if (options.json) {
      const { rolloutStatusJson } = await import("../../hub/http/presenters.ts");
      printLine(JSON.stringify(rolloutStatusJson({ rollout, things })));
      return ExitCode.OK;
    }
    if (rollout) {
      const reason = rollout.stop_reason ? ` (${rollout.stop_reason})` : "";
      printLine(
        `rollout ${rollout.id} to ${rollout.version}: ${rollout.state}${reason}, ${rollout.batch_size} per batch, max failures ${rollout.max_failures}`,
      );
    } else printLine("no rollout yet");
    const rows = [["thing", "runs", "target", "update", "to", "detail"]];
    for (const t of things) rows.push([t.name, t.version ?? "?", t.target ?? "?", t.state ?? "-", t.to_version ?? "-", t.detail ?? ""]);
    printTable(rows);
    return ExitCode.OK;
  });
}
