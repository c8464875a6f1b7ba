import type { InstallOptions, ServiceIO, UninstallOptions } from "../../thing/service/install.ts";
import { type CommandSpec, interruptible } from "../command.ts";
import { ExitCode } from "../exit-codes.ts";
import { chooseConfig, type ThingFlags, thingCommand } from "./common.ts";

/** install-service writes its progress to stdout and systemctl's own words to stderr. */
const stdio: ServiceIO = {
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
};

/** What an install stopped by Ctrl-C leaves: what it was before (installService takes its unit back). */
export const INSTALL_UNDONE = "the unit is as it was before (a unit it wrote was taken back)";

export const installServiceCommand: CommandSpec = thingCommand(
  {
    name: "install-service",
    description: "Install, enable and start the systemd unit for `serve` (root)",
    options: [
      { flags: "--user <name>", description: "the user the service runs as (default: the config file's owner)" },
      { flags: "--dry-run", description: "print the unit and change nothing" },
      { flags: "--print", description: "same as --dry-run" },
      { flags: "--replace", description: "install even when flashlex.service runs another thing (one thing's service per machine)" },
    ],
    async run(_args, options) {
      const choice = chooseConfig(options as ThingFlags);
      const { installService } = await import("../../thing/service/install.ts");
      return interruptible("install-service", INSTALL_UNDONE, async (signal) => {
        await installService({
          ...(options as Omit<InstallOptions, "io">),
          config: choice.file,
          dryRun: Boolean(options.dryRun || options.print),
          io: stdio,
          signal,
        });
        return ExitCode.OK;
      });
    },
  },
  { keepRoot: true },
);

export const uninstallServiceCommand: CommandSpec = {
  name: "uninstall-service",
  description: "Stop, disable and remove the systemd unit (root)",
  options: [
    { flags: "--dry-run", description: "say what would be done and change nothing" },
    // The unit is found by its name; older scripts still pass the thing's flags.
    { flags: "-c, --config <file>", description: "not needed (accepted, and ignored, for older scripts)" },
    { flags: "-d, --data <dir>", description: "not needed (ignored)" },
    { flags: "-k, --keys <dir>", description: "not needed (ignored)" },
  ],
  async run(_args, options) {
    const { uninstallService } = await import("../../thing/service/install.ts");
    await uninstallService({ ...(options as Omit<UninstallOptions, "io">), io: stdio });
    return ExitCode.OK;
  },
};
