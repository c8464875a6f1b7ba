import { join, resolve } from "node:path";
import { ENROLMENT_TOKEN_TAG } from "../../protocol/enrolment-token.ts";
import { actingAs } from "../../shared/act-as-owner.ts";
import { UsageError } from "../../shared/errors.ts";
import { pathExists } from "../../shared/path-exists.ts";
import { shellWord } from "../../shared/shell-word.ts";
import { type CommandSpec, choice, interruptible, type Options, text } from "../command.ts";
import { ExitCode } from "../exit-codes.ts";
import { printLine } from "../output.ts";
import { actAsFolderOwner } from "./common.ts";

/** `flashlex enroll`: make this device a thing with a key made here (src/thing/enrol). */
export const enrollCommand: CommandSpec = {
  name: "enroll",
  description: "Make this device a thing: a key pair made here (it never leaves), a certificate from the hub, config.yml and keys/",
  options: [
    { flags: "--hub <url>", description: "the hub's API URL as `hub enroll-token create` printed it (https://HOST:8080/ENV/v1)" },
    { flags: "--token <token>", description: "the enrolment token (or $FLASHLEX_ENROLL_TOKEN, which ps does not show)" },
    {
      flags: "--ca-fingerprint <sha256>",
      description: "the hub CA's SHA-256 fingerprint printed with the token; required: the hub is never trusted on first use",
    },
    { flags: "--name <name>", description: "the thing's name, without the owner prefix (default: this machine's hostname)" },
    { flags: "--dir <dir>", description: "the folder the thing lives in: config.yml and keys/ (default: the current directory)" },
    { flags: "--key-type <type>", description: "rsa (default: RSA-2048, RS256 tokens) or ec (P-256, ES256 tokens)" },
  ],
  run: (_args, options) => enroll(options),
};

async function enroll(options: Options): Promise<number> {
  const dir = resolve(text(options.dir) ?? ".");
  // `sudo flashlex enroll` in the user's folder (or a new one under the user's home) makes the user's thing
  actAsFolderOwner(dir, [join(dir, "config.yml"), join(dir, "keys"), join(dir, "data")]);
  // Stopped while it waits for the hub: the hub may have made the thing already, and the same
  // command finishes it (the key is kept in .enrol; the hub answers a retry with the same thing).
  // Once the hub answered, the folder is written whole and the command ends as enrolled: it said
  // "stopped, run it again" and then finished, and the run again it asked for failed (65).
  const retry = `run the same flashlex enroll again: it finishes what the hub may have done (with the key kept in ${dir}/.enrol, if one was made)`;
  return interruptible("enroll", retry, (signal) => enrollInto(dir, options, signal));
}

async function enrollInto(dir: string, options: Options, signal: AbortSignal): Promise<number> {
  const hub = text(options.hub);
  if (!hub) throw new UsageError("--hub is required: the hub's API URL `hub enroll-token create` printed");
  // trimmed as the fingerprint is: a token pasted with its line end is the same token
  const token = (text(options.token) ?? process.env.FLASHLEX_ENROLL_TOKEN)?.trim();
  if (!token) {
    // sudo's env_reset drops the variable set before it: the way to keep it, not only "required"
    let sudo = "";
    if (process.env.SUDO_USER) {
      const { runningExecutable } = await import("../../thing/service/executable.ts");
      const running = runningExecutable();
      const flashlex = [running.command, ...running.args].map(shellWord).join(" ");
      sudo = `; sudo drops $FLASHLEX_ENROLL_TOKEN unless told to keep it: export FLASHLEX_ENROLL_TOKEN=flxe_... first, then sudo --preserve-env=FLASHLEX_ENROLL_TOKEN ${flashlex} enroll ...`;
    }
    throw new UsageError(`--token (or $FLASHLEX_ENROLL_TOKEN) is required: the enrolment token \`hub enroll-token create\` printed${sudo}`);
  }
  if (!token.startsWith(ENROLMENT_TOKEN_TAG)) {
    const given = text(options.token) !== undefined ? "--token" : "$FLASHLEX_ENROLL_TOKEN";
    throw new UsageError(
      `${given} is not an enrolment token (those start with ${ENROLMENT_TOKEN_TAG}; the operator's access token is not one, and was not sent): make one on the hub with \`flashlex hub enroll-token create\``,
    );
  }
  const caFingerprint = text(options.caFingerprint);
  if (!caFingerprint)
    throw new UsageError("--ca-fingerprint is required: the hub CA's fingerprint printed with the token (FlashLex never trusts a hub on first use)");
  const { THING_KEY_TYPES } = await import("../../crypto/keys.ts");
  const keyType = choice(options.keyType, "--key-type", THING_KEY_TYPES);
  const { hostname } = await import("node:os");
  const name =
    text(options.name) ??
    hostname()
      .split(".")[0]!
      .replace(/[^A-Za-z0-9_-]/g, "-")
      .slice(0, 40);
  const [{ enrolDevice }, { createLogger }, { isoSeconds }, { runningExecutable }] = await Promise.all([
    import("../../thing/enrol/enrol.ts"),
    import("../../shared/log.ts"),
    import("../../shared/time.ts"),
    import("../../thing/service/executable.ts"),
  ]);
  const result = await enrolDevice({ hubUrl: hub, token, name, caFingerprint, dir, keyType, signal }, createLogger({ level: "warn" }));
  printLine(`enrolled ${result.thingName} (id ${result.thingId}); its key was made here and never left this device`);
  printLine(`config:      ${result.configPath}`);
  // started by root in a user's folder: whose the files are, so nobody is surprised by it later
  const owner = actingAs();
  printLine(`keys:        ${result.keysDir} (private key 0600${owner ? `, made as ${owner}, the folder's owner` : ""})`);
  printLine(`certificate: valid until ${isoSeconds(result.notAfter)}; \`flashlex serve\` renews it by itself`);
  // A token may enrol a fleet (--max-uses): the next device's line is better written the way
  // `hub enroll-token create` prints it.
  if (text(options.token) !== undefined) {
    printLine("token:       given with --token, which every user of this device could read with ps while enroll ran; $FLASHLEX_ENROLL_TOKEN is not");
  }
  // the folder holds no binary unless one was put there: name the one that ran, as it can be run
  const running = runningExecutable();
  // (the thing is enrolled already: a ./flashlex this user may not look at only costs the short name)
  const flashlex = pathExists(join(dir, "flashlex"), { cannotLook: false }) ? "./flashlex" : [running.command, ...running.args].map(shellWord).join(" ");
  if (process.geteuid?.() === 0 && !owner) {
    // made as root in a folder root controls: the service never runs as root, and install-service
    // refuses a root-owned config (64) until the folder is its user's
    const sudoUser = process.env.SUDO_USER && process.env.SUDO_USER !== "root" ? process.env.SUDO_USER : undefined;
    const user = sudoUser ?? "USER";
    printLine(
      `note:        made as root, and the service never runs as root: give the folder to the user it runs as${sudoUser ? "" : " (USER: an ordinary user, such as pi)"}`,
    );
    printLine(`next: sudo chown -R ${user}: ${shellWord(dir)} && cd ${shellWord(dir)} && ${flashlex} bootstrap && sudo ${flashlex} install-service`);
    return ExitCode.OK;
  }
  printLine(`next: cd ${shellWord(dir)} && ${flashlex} bootstrap && sudo ${flashlex} install-service`);
  return ExitCode.OK;
}
