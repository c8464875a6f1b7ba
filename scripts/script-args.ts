/**
 * The command line of a build script (build.ts, release.ts, sign-release.ts), read with
 * node:util's parseArgs: `--help` prints `usage` and exits 0; an unknown flag or a missing value
 * prints one line and the usage and exits 64, never a stack trace.
 */
import { type ParseArgsConfig, parseArgs } from "node:util";

export function scriptArgs<T extends NonNullable<ParseArgsConfig["options"]>>(name: string, usage: string, options: T) {
  if (process.argv.slice(2).some((word) => word === "--help" || word === "-h")) {
    console.log(usage);
    process.exit(0);
  }
  try {
    return parseArgs({ options, strict: true }).values;
  } catch (err) {
    console.error(`${name}: ${(err as Error).message}\n${usage}`);
    process.exit(64);
  }
}
