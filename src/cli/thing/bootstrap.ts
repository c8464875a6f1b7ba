import { createLogger } from "../../shared/log.ts";
import type { BootstrapReport } from "../../thing/bootstrap/checks.ts";
import { checkDataDirectory } from "../../thing/config-location.ts";
import type { CommandSpec } from "../command.ts";
import { ExitCode } from "../exit-codes.ts";
import { printLine } from "../output.ts";
import { chooseConfig, type ThingFlags, thingCommand } from "./common.ts";

const MARK = { pass: "PASS", fail: "FAIL", skip: "SKIP" } as const;

export const bootstrapCommand: CommandSpec = thingCommand({
  name: "bootstrap",
  description: "Self-test: config, keys, clock, database, broker, ingress and egress; one line per check",
  options: [{ flags: "--json", description: "print the checklist as one JSON document" }],
  run: (_args, options) => bootstrap(options),
});

/** Prints the checklist; 0 when every check passed, 78 when the config failed, else 1. */
async function bootstrap(flags: ThingFlags & { json?: boolean }): Promise<number> {
  // as for serve and collect: a typo (`-d /nonexistent/x`) is 64, not a new tree of directories
  if (flags.data !== undefined) checkDataDirectory(String(flags.data), { flag: "-d", existing: false });
  const choice = chooseConfig(flags);
  const log = createLogger({ level: process.env.FLASHLEX_LOG_LEVEL === "debug" ? "debug" : "error" });
  const { runBootstrapChecks } = await import("../../thing/bootstrap/checks.ts");
  const report = await runBootstrapChecks({ config: choice.file, data: flags.data, keys: flags.keys }, log, choice.origin);
  printLine(flags.json ? JSON.stringify(report, null, 2) : formatReport(report));
  if (report.ok) return ExitCode.OK;
  return report.checks[0]?.status === "fail" ? ExitCode.CONFIG : ExitCode.CHECK_FAILED;
}

function formatReport(report: BootstrapReport): string {
  const title = report.thing ? `flashlex bootstrap: ${report.thing.name} (${report.thing.id})` : "flashlex bootstrap";
  const lines = report.checks.map((c) => {
    const detail = c.detail ? `: ${c.detail}` : "";
    const fix = c.fix ? `\n       fix: ${c.fix}` : "";
    return `[${MARK[c.status]}] ${c.name}${detail}${fix}`;
  });
  const passed = report.checks.filter((c) => c.status === "pass").length;
  const skipped = report.checks.some((c) => c.status === "skip");
  const verdict = !report.ok
    ? "bootstrap failed: fix the first FAIL above and run it again"
    : skipped
      ? "none failed: this thing works with its hub (stop serve for the full round trip)"
      : "all checks passed: this thing works with its hub";
  return [title, ...lines, `${passed} of ${report.checks.length} checks passed; ${verdict}`].join("\n");
}
