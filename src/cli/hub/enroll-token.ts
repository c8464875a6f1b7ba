/** `hub enroll-token create|list|revoke`: the enrolment tokens of src/hub/enrolment. */
import { UsageError } from "../../shared/errors.ts";
import { quoteGiven } from "../../shared/log.ts";
import { shellWord } from "../../shared/shell-word.ts";
import { type CommandSpec, type Options, required, text } from "../command.ts";
import { ExitCode } from "../exit-codes.ts";
import { countFlag } from "../input.ts";
import { printLine, printTable, writeSecretToStdout } from "../output.ts";
import { DB_OPTION, DIR_OPTION, JSON_OPTION, openedHub, openedHubToWrite } from "./common.ts";

export const hubEnrollTokenCommands: CommandSpec[] = [
  {
    name: "hub enroll-token create",
    description: "Make an enrolment token (shown once) with which devices enrol themselves: `flashlex enroll` on the device",
    options: [
      DIR_OPTION,
      DB_OPTION,
      { flags: "--max-uses <n>", description: "how many devices may enrol with it (default: 1)" },
      { flags: "--expires <duration>", description: "how long it is valid: 30m, 24h, 7d, at most 30d (default: 24h)" },
      { flags: "--name-prefix <prefix>", description: "every name enrolled with it must start with this (e.g. sensor-)" },
      JSON_OPTION,
    ],
    bunOnly: true,
    run: (_args, options) => create(options),
  },
  {
    name: "hub enroll-token list",
    description: "List enrolment tokens: id, state, uses, expiry (never the tokens themselves)",
    options: [DIR_OPTION, DB_OPTION, JSON_OPTION],
    bunOnly: true,
    run: (_args, options) => list(options),
  },
  {
    name: "hub enroll-token revoke",
    args: "<id-or-token>",
    description: "Revoke an enrolment token by its id, or by the token itself (one that leaked): it enrols nothing more (things it enrolled stay)",
    options: [DIR_OPTION, DB_OPTION],
    bunOnly: true,
    run: (args, options) => revoke(args, options),
  },
];

function create(options: Options): Promise<number> {
  return openedHubToWrite("hub enroll-token create", options, async (hub) => {
    const [{ parseDuration, formatDuration }, { MAX_TOKEN_LIFETIME_MS, MAX_TOKEN_USES }] = await Promise.all([
      import("../../shared/duration.ts"),
      import("../../hub/enrolment/tokens.ts"),
    ]);
    // Every flag value is checked here, so a bad one is usage (64), as --help says, not the
    // use case's bad input (65, the API's 400).
    const expires = text(options.expires);
    const lifetimeMs = expires === undefined ? undefined : parseDuration(expires);
    if (expires !== undefined && (lifetimeMs === undefined || lifetimeMs < 1000 || lifetimeMs > MAX_TOKEN_LIFETIME_MS))
      throw new UsageError(`--expires must be a duration from 1s to 30d, such as 30m, 24h or 7d, not ${quoteGiven(expires)}`);
    const maxUses = countFlag(options.maxUses, "--max-uses", MAX_TOKEN_USES);
    const namePrefix = text(options.namePrefix);
    const refusal = namePrefix === undefined ? undefined : hub.enrolment.tokens.namePrefixRefusal(namePrefix);
    if (namePrefix !== undefined && refusal) throw new UsageError(`--name-prefix ${quoteGiven(namePrefix)} ${refusal}`);
    const info = hub.enrolment.info();
    const settings = hub.home.settings;
    const hubUrl = `${settings.api.publicUrl.replace(/\/+$/, "")}/${settings.env}/v1`;
    const [{ enrolmentTokenJson }, { isoSeconds }] = await Promise.all([import("../../hub/http/presenters.ts"), import("../../shared/time.ts")]);
    // Written out before it is stored, in one checked write: console.log drops a failed write (a
    // full disk, a closed pipe), and the token exists nowhere else.
    await hub.enrolment.tokens.create({ maxUses, lifetimeMs, namePrefix }, ({ token, record }) => {
      const name = record.namePrefix ? `${record.namePrefix}NAME` : "NAME";
      // The token in the environment, not a flag: `ps` shows every process's arguments to every user.
      const command = `FLASHLEX_ENROLL_TOKEN=${token} ./flashlex enroll --hub ${shellWord(hubUrl)} --ca-fingerprint ${info.caFingerprint} --name ${name}`;
      const report = options.json
        ? [JSON.stringify({ ...enrolmentTokenJson({ ...record, state: "active" }), token, hub: hubUrl, caFingerprint: info.caFingerprint, command })]
        : [
            `enrolment token ${record.id}: ${record.maxUses} use${record.maxUses === 1 ? "" : "s"}, expires ${isoSeconds(record.expiresAt)} (in ${formatDuration(record.expiresAt - record.createdAt)})${record.namePrefix ? `, names starting with ${record.namePrefix}` : ""}`,
            "token (shown once; the hub keeps only its hash):",
            `  ${token}`,
            `hub CA fingerprint (SHA-256; the device checks the hub against it): ${info.caFingerprint}`,
            "on each device, in the folder the thing will live in (the key is made there and never leaves it):",
            `  ${command}`,
            "  ./flashlex bootstrap && sudo ./flashlex install-service",
          ];
      writeSecretToStdout(`${report.join("\n")}\n`, "the enrolment token", "none was made");
    });
    return ExitCode.OK;
  });
}

function list(options: Options): Promise<number> {
  return openedHub(options, async (hub) => {
    const tokens = await hub.enrolment.tokens.list();
    const { enrolmentTokenJson } = await import("../../hub/http/presenters.ts");
    if (options.json) {
      printLine(JSON.stringify(tokens.map(enrolmentTokenJson)));
      return ExitCode.OK;
    }
    const rows = [
      ["ID", "STATE", "USES", "EXPIRES", "NAME PREFIX"],
      ...tokens.map(enrolmentTokenJson).map((t) => [t.id, t.state, `${t.uses}/${t.maxUses}`, t.expiresAt, t.namePrefix ?? "-"]),
    ];
    printTable(rows);
    if (tokens.length === 0) printLine("(no enrolment tokens yet: flashlex hub enroll-token create)");
    return ExitCode.OK;
  });
}

function revoke(args: string[], options: Options): Promise<number> {
  return openedHubToWrite("hub enroll-token revoke", options, async (hub) => {
    // the token's id, or the token itself (a leaked one): only the id is ever printed
    const given = required(args, "the token id (see flashlex hub enroll-token list), or the token itself");
    const { id, changed } = await hub.enrolment.tokens.revoke(given);
    printLine(changed ? `revoked enrolment token ${id}: it enrols nothing more (things it enrolled stay)` : `enrolment token ${id} was already revoked`);
    return ExitCode.OK;
  });
}
