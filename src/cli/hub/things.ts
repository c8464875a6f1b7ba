import { readFileSync, statSync } from "node:fs";
import { basename } from "node:path";
import type { HubHome } from "../../hub/home/home.ts";
import { thingTopics } from "../../protocol/topics.ts";
import { FlashlexError, InputError, UsageError } from "../../shared/errors.ts";
import { isOpenAs, writeFileAtomically } from "../../shared/files.ts";
import { toFlashlexError } from "../../shared/foreign-errors.ts";
import { escapeUnsafe } from "../../shared/log.ts";
import { shellWord } from "../../shared/shell-word.ts";
import { isoSeconds } from "../../shared/time.ts";
import { type CommandSpec, choice, Interrupted, type Options, required, text } from "../command.ts";
import { ExitCode } from "../exit-codes.ts";
import { printLine, printTable, writeSecretToStdout } from "../output.ts";
import { DB_OPTION, DIR_OPTION, JSON_OPTION, openedHub, openedHubToWrite, outputFile, partialOutput, reportBeside, thingOrFail } from "./common.ts";

/** `hub thing create|list|dist|revoke|delete`: the thing use cases of src/hub/things. */
export const hubThingCommands: CommandSpec[] = [
  {
    name: "hub thing create",
    args: "<name>",
    description: "Provision a thing: id, key pair, certificate, topics and its distribution zip",
    options: [
      DIR_OPTION,
      DB_OPTION,
      { flags: "--key-type <type>", description: "rsa (default: RSA-2048, RS256 tokens) or ec (P-256, ES256 tokens)" },
      { flags: "-o, --output <file>", description: "where to write the distribution zip (default: ./<name>.zip; mode 0600)" },
      JSON_OPTION,
    ],
    bunOnly: true,
    run: create,
  },
  {
    name: "hub thing list",
    description: "List things with their status (created, verified, revoked), certificate expiry and when they were last seen",
    options: [
      DIR_OPTION,
      DB_OPTION,
      { flags: "--name <text>", description: "only things whose name holds TEXT (any case)" },
      { flags: "--status <status>", description: "only things of this status: created, verified, revoked, or active (all but revoked)" },
      JSON_OPTION,
    ],
    bunOnly: true,
    run: (_args, options) => list(options),
  },
  {
    name: "hub thing dist",
    args: "<thing>",
    description: "Write a thing's distribution zip again, or (--curl) print a one-time cURL line that fetches it on the thing",
    options: [
      DIR_OPTION,
      DB_OPTION,
      { flags: "-o, --output <file>", description: "where to write it (default: ./<name>.zip)" },
      {
        flags: "--curl",
        description:
          "instead of writing the zip, print a cURL line that downloads it on the thing: it fetches this thing's zip only, once, within an hour (a token of its own, not the operator's)",
      },
    ],
    bunOnly: true,
    run: dist,
  },
  {
    name: "hub thing revoke",
    args: "<thing>",
    description: "Stop a thing from connecting and collecting; deletes its distribution",
    options: [DIR_OPTION, DB_OPTION],
    bunOnly: true,
    run: revoke,
  },
  {
    name: "hub thing delete",
    args: "<thing>",
    description: "Delete a thing, its messages and its distribution (what DELETE /things/{id} does); its name can be used again",
    options: [DIR_OPTION, DB_OPTION],
    bunOnly: true,
    run: remove,
  },
];

/**
 * `hub thing create`: the thing, then its zip at -o. A zip that does not reach -o whole (a write
 * that fails, or SIGINT/SIGTERM while a pipe's reader does not read) takes the thing back, so
 * the same command can run again; what a stream's reader got of the zip is said, not denied.
 */
function create(args: string[], options: Options): Promise<number> {
  // what the line for an interrupted create says: set once the thing was made
  let left = "nothing was created";
  return openedHubToWrite(
    "hub thing create",
    options,
    async (hub, signal) => {
      const { THING_KEY_TYPES } = await import("../../crypto/keys.ts");
      const keyType = choice(options.keyType, "--key-type", THING_KEY_TYPES) ?? "rsa";
      // -o is checked before the thing is made; the default, <name>.zip here (where both READMEs
      // say the zip is), once the name is known, and its directory before: a command root started
      // acts as the home's owner, who may not write in the admin's working directory.
      const given = text(options.output) === undefined ? undefined : outputFile(options, "");
      const typedName = required(args, "the thing name");
      if (given === undefined) {
        // the name the thing will have: the hub's owner prefix, then the typed name, once it is
        // one (a name of 300 characters failed as a path too long, 74, not as a name, 65)
        const [{ ownerPrefix }, { validateThingName }] = await Promise.all([import("../../hub/home/settings.ts"), import("../../hub/things/provision.ts")]);
        const prefix = ownerPrefix(hub.home.settings);
        outputFile(options, `${prefix}-${validateThingName(typedName, prefix)}.zip`);
      }
      const { thing, distribution } = await hub.things.create(typedName, { keyType });
      let output = "";
      let streamed: number | undefined;
      try {
        output = given ?? outputFile(options, `${thing.name}.zip`);
        // 0600: it holds the thing's private key; replaced whole, never written through a link.
        // Awaited, with the signal: a pipe whose reader does not read is waited for with SIGTERM
        // heard (the synchronous write blocked the thread, and only SIGKILL ended it).
        await writeFileAtomically(output, readFileSync(distribution), 0o600, { signal, onStreamed: (bytes) => (streamed = bytes) });
      } catch (err) {
        // Nothing half-done: a thing whose zip (its only copy of the key) did not reach -o is taken
        // back, so running the same command again, once the cause is fixed, makes it.
        const error = toFlashlexError(err);
        const written = partialOutput(output, streamed);
        try {
          await hub.things.delete(thing);
        } catch (undoErr) {
          if (err instanceof Interrupted) {
            left = `thing ${thing.name} (id ${thing.id}) was created, but ${written}, and taking the thing back failed (${toFlashlexError(undoErr).message}); get the zip with \`flashlex hub thing dist ${thing.name} -o FILE\``;
            throw err;
          }
          throw new FlashlexError(
            `created thing ${thing.name} (id ${thing.id}), but its distribution could not be written: ${error.message}, and taking the thing back failed too (${toFlashlexError(undoErr).message}); get the zip with \`flashlex hub thing dist ${thing.name} -o FILE\``,
            error.kind,
            { cause: err },
          );
        }
        if (err instanceof Interrupted) {
          left = `thing ${thing.name} was not kept (run the command again); ${written}`;
          throw err;
        }
        throw new FlashlexError(
          `the distribution could not be written: ${error.message}; thing ${thing.name} was not kept (run the command again once that is fixed)`,
          error.kind,
          {
            cause: err,
          },
        );
      }
      const toStdout = isOpenAs(output, 1);
      const say = reportBeside(output);
      if (options.json) {
        const { thingJson } = await import("../../hub/http/presenters.ts");
        say(JSON.stringify({ ...thingJson(thing, hub.home.settings.env), distributionFile: output }));
        return ExitCode.OK;
      }
      const topics = thingTopics(thing.name);
      say(`created thing ${thing.name} (id ${thing.id}, ${keyType === "ec" ? "EC P-256 key, ES256 tokens" : "RSA-2048 key, RS256 tokens"})`);
      say(
        toStdout
          ? "distribution: written to stdout (it holds the thing's private key: keep what received it private)"
          : `distribution: ${output} (mode 0600: it holds the thing's private key)`,
      );
      say(`topics:       ${topics.ingress} (ingress), ${topics.pubsub} (pubsub), ${topics.egress} (egress)`);
      const unnamed = await brokerHostUnnamed(hub.home);
      if (unnamed) {
        const fix = unnamed.hubsOwn
          ? "restart hub serve, which issues it again for hub.yml's names at its start"
          : "it is not the hub CA's, so issue it again for that name with the CA that made it";
        say(
          `note: the broker certificate does not name ${unnamed.host} (hub.yml broker.host, which the thing connects to) yet: ${fix}, or the thing's connection is refused`,
        );
      }
      // the home as given, so the command runs as printed (a default home needs no --dir)
      const home = text(options.dir) === undefined ? "" : ` --dir ${shellWord(hub.home.paths.dir)}`;
      say(
        `next: copy the zip and the flashlex binary for the board to the thing (or fetch the zip there: flashlex hub thing dist ${thing.name} --curl${home}); there:`,
      );
      // piped on (`-o -`) or sent through a device or FIFO, the zip's name is the receiver's
      const zipName = toStdout || !isRegularFile(output) ? "FILE.zip" : basename(output);
      say(`  unzip ${zipName} && chmod +x flashlex && mv flashlex ${thing.name}/ && cd ${thing.name}`);
      say("  ./flashlex bootstrap && sudo ./flashlex install-service");
      return ExitCode.OK;
    },
    () => left,
  );
}

async function list(options: Options): Promise<number> {
  const [{ thingJson }, { thingStatus, parseThingFilter }] = await Promise.all([import("../../hub/http/presenters.ts"), import("../../hub/things/things.ts")]);
  // a bad flag is refused before the hub's database is opened
  const filter = parseThingFilter({ name: text(options.name), status: text(options.status) });
  return openedHub(options, async (hub) => {
    const things = await hub.things.list(filter);
    const connected = await connectedNow(hub.home);
    const connectedOf = (t: (typeof things)[number]) => (connected ? (connected.get(t.id) ?? null) : null);
    if (options.json) {
      printLine(JSON.stringify(things.map((t) => ({ ...thingJson(t, hub.home.settings.env), connected: connectedOf(t) }))));
      return ExitCode.OK;
    }
    const { certificateNotAfter } = await import("../../hub/things/certificates.ts");
    const expiry = (t: (typeof things)[number]) => {
      const notAfter = certificateNotAfter(t);
      return `${notAfter === null ? "unknown" : isoSeconds(notAfter)}${t.renewRequestedAt != null ? " (renewal asked)" : ""}`;
    };
    const connectedWord = (t: (typeof things)[number]) => {
      const now = connectedOf(t);
      return now === null ? "unknown" : now ? "yes" : "no";
    };
    const rows = [
      ["NAME", "ID", "STATUS", "CONNECTED", "CERTIFICATE EXPIRES", "LAST SEEN"],
      ...things.map((t) => [t.name, t.id, thingStatus(t), connectedWord(t), expiry(t), t.lastSeenAt === null ? "never" : isoSeconds(t.lastSeenAt)]),
    ];
    printTable(rows);
    if (things.length === 0) printLine(filter.nameContains || filter.status ? "(no thing matches)" : "(no things yet: flashlex hub thing create NAME)");
    else if (!connected)
      printLine("(CONNECTED: unknown: no hub serve answered on this home's socket within 5 s; start it, or wait for it, to see which things are connected)");
    else if (things.some((t) => connectedOf(t) === null)) printLine("(CONNECTED: unknown behind an external broker, which does not tell the hub)");
    return ExitCode.OK;
  });
}

/** How long `hub thing list` waits for the running hub to say which things are connected, ms. */
const CONNECTED_WAIT_MS = 5_000;

/**
 * Which things are connected now, by id, as the running `hub serve` of `home` answers over its
 * socket (GET /things: true or false with the embedded broker, null behind an external one); undefined
 * when no hub answers within CONNECTED_WAIT_MS. Only that process can tell: the broker is in it.
 */
async function connectedNow(home: HubHome): Promise<Map<string, boolean | null> | undefined> {
  const { localRequest } = await import("../../hub/http/local-client.ts");
  try {
    const answer = await localRequest<{ id: string; connected: boolean | null }[]>(home, "GET", "/things", undefined, CONNECTED_WAIT_MS);
    const things = answer.status === 200 ? answer.body?.result : undefined;
    return things ? new Map(things.map((t) => [t.id, t.connected])) : undefined;
  } catch {
    // not running, stopping, busy: the listing goes on from the database, saying so
    return undefined;
  }
}

/** `hub thing dist`: the zip again. SIGINT/SIGTERM while a pipe's reader does not read stop it (130/143), saying what the reader got. */
function dist(args: string[], options: Options): Promise<number> {
  let output = "";
  let streamed: number | undefined;
  return openedHubToWrite(
    "hub thing dist",
    options,
    async (hub, signal) => {
      const thing = await thingOrFail(hub, required(args, "the thing"));
      if (options.curl) {
        if (options.output !== undefined) throw new UsageError("--curl prints a line instead of writing the zip: give it without -o");
        // Written out before it is stored, in one checked write: the line exists nowhere else.
        await hub.downloads.line(thing, ({ line, expiresAt }) => {
          const report = [
            `one download of ${thing.name}.zip, until ${isoSeconds(expiresAt)}; this line is shown once (the hub keeps only its token's hash)`,
            "on the thing, in the folder to unzip it in:",
            `  ${line}`,
          ];
          writeSecretToStdout(`${report.join("\n")}\n`, "the download line", "no token was made");
        });
        warnIfMoved(hub.things.distribution(thing));
        return ExitCode.OK;
      }
      const found = hub.things.distribution(thing);
      if ("missing" in found) throw new InputError(`${thing.name} has no distribution: ${found.missing}`);
      const zip = found.zip;
      output = outputFile(options, `${thing.name}.zip`);
      await writeFileAtomically(output, zip, 0o600, { signal, onStreamed: (bytes) => (streamed = bytes) });
      reportBeside(output)(output);
      warnIfMoved(found);
      return ExitCode.OK;
    },
    () => partialOutput(output, streamed),
  );
}

/** On stderr: each hub address the zip's config.yml gives that hub.yml no longer does (Things.distribution's `stale`). */
function warnIfMoved(found: { stale: string[] } | { missing: string }): void {
  if ("missing" in found) return;
  for (const stale of found.stale) {
    console.error(escapeUnsafe(`warning: the zip was made before the hub moved: its config.yml ${stale}; edit config.yml after unzipping it`));
  }
}

function revoke(args: string[], options: Options): Promise<number> {
  return openedHubToWrite("hub thing revoke", options, async (hub) => {
    const thing = await thingOrFail(hub, required(args, "the thing"));
    const { changed, brokerCrlFiles, reloadCommand, configuredBroker } = await hub.things.revoke(thing);
    if (!changed) {
      printLine(`${thing.name} was already revoked`);
      return ExitCode.OK;
    }
    const distribution = thing.enrolledWith != null ? "it enrolled itself, so the hub never held its key" : "its distribution was deleted";
    printLine(`revoked ${thing.name} (id ${thing.id}): it can no longer connect or collect, and ${distribution}`);
    if (configuredBroker === "rabbitmq")
      printLine(
        "a running `flashlex hub serve` closes its connections on the RabbitMQ cluster within a few seconds (management API), and its auth backend refuses the thing from now on",
      );
    else if (configuredBroker === "external")
      printLine(
        "a running `flashlex hub serve` has Mosquitto's dynamic security plugin disconnect it within a few seconds (without the plugin it stays connected until Mosquitto reloads the CRL)",
      );
    else printLine("a running `flashlex hub serve` disconnects it within a few seconds (its embedded broker)");
    if (brokerCrlFiles.length > 0)
      printLine(
        `CRL updated: ${brokerCrlFiles.join(", ")}; ${
          configuredBroker === "rabbitmq"
            ? "the RabbitMQ nodes read it at each new handshake (no reload)"
            : reloadCommand
              ? `a running hub then runs hub.yml broker.reloadCommand (${reloadCommand[0]} ...)`
              : "reload the broker that reads it (Mosquitto: systemctl reload mosquitto)"
        }`,
      );
    return ExitCode.OK;
  });
}

/** `hub thing delete`: the same use case as `DELETE /things/{id}` and the console's delete button. */
function remove(args: string[], options: Options): Promise<number> {
  return openedHubToWrite("hub thing delete", options, async (hub) => {
    const thing = await thingOrFail(hub, required(args, "the thing"));
    await hub.things.delete(thing);
    printLine(`deleted ${thing.name} (id ${thing.id}), its messages and its distribution; the name can be used again`);
    printLine(
      "a running `flashlex hub serve` with its own broker disconnects it within 3 s; its certificate is on the CRL (an external broker refuses it once reloaded)",
    );
    return ExitCode.OK;
  });
}

/** Whether `path` is a regular file now (a reader may have moved or removed it since it was written: not one then). */
function isRegularFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * hub.yml's broker.host when the broker certificate in place does not name it (hub.yml edited and
 * hub serve not restarted since), with whether the certificate is the hub CA's (which hub serve
 * issues again); undefined when it names it, or either file cannot be read (hub serve says what
 * is wrong with it).
 */
async function brokerHostUnnamed(home: HubHome): Promise<{ host: string; hubsOwn: boolean } | undefined> {
  const [{ namesMissing }, { publicKeyIssuedBy }] = await Promise.all([
    import("../../hub/home/broker-certificate.ts"),
    import("../../crypto/certificate-info.ts"),
  ]);
  const host = home.settings.broker.host;
  try {
    const certPem = readFileSync(home.paths.brokerCert, "utf8");
    if (namesMissing(certPem, [host]).length === 0) return undefined;
    return { host, hubsOwn: publicKeyIssuedBy(certPem, readFileSync(home.paths.caCert, "utf8")) !== undefined };
  } catch {
    return undefined;
  }
}
