import { ExitCode } from "../shared/errors.ts";
import { createLogger } from "../shared/log.ts";
import { runBootstrapChecks, type BootstrapReport } from "../thing/bootstrap/checks.ts";
import type { ThingFlags } from "./common.ts";
import { UsageError } from "../shared/errors.ts";

const MARK = { pass: "PASS", fail: "FAIL", skip: "SKIP" } as const;

export async function bootstrap(flags: ThingFlags & { json?: boolean }): Promise<number> {
  if (!flags.config) throw new UsageError("-c/--config is required");
  const log = createLogger({ level: process.env.FLASHLEX_LOG_LEVEL === "debug" ? "debug" : "error" });
  const report = await runBootstrapChecks({ config: flags.config, data: flags.data, keys: flags.keys }, log);
  console.log(flags.json ? JSON.stringify(report, null, 2) : formatReport(report));
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
  const verdict = report.ok ? "all checks passed: this thing works with its hub" : "bootstrap failed: fix the first FAIL above and run it again";
  return [title, ...lines, `${passed} of ${report.checks.length} checks passed; ${verdict}`].join("\n");
}
