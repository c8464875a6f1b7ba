/**
 * What systemd makes of the [Service] lines of flashlex.service that decide what runs and when
 * it runs again, for test machines where systemd is not PID 1 (test/support/supervisor.ts runs a
 * rendered unit with it). Our reading of systemd.service(5) and systemd 252's service.c
 * (`service_shall_restart`), not systemd itself:
 *
 *   - ExecStartPre= runs before every start, automatic restarts included; a `-` prefix ignores
 *     its failure, without one a failure fails the start;
 *   - a run is clean when it exits 0 or with a code in SuccessExitStatus=, or dies of SIGHUP,
 *     SIGINT, SIGTERM or SIGPIPE;
 *   - RestartPreventExitStatus= wins over everything, then RestartForceExitStatus= restarts
 *     whatever Restart= says, then Restart= (on-failure: any run that was not clean);
 *   - more than StartLimitBurst= starts within StartLimitIntervalSec= stops the restarts.
 */

export interface Command {
  argv: string[];
  /** the `-` prefix: a failure is ignored */
  ignoreFailure: boolean;
}

export interface ServiceUnit {
  execStartPre: Command[];
  execStart: Command;
  user?: string;
  group?: string;
  restart: string;
  restartSec: number;
  successExitStatus: Set<string>;
  restartForceExitStatus: Set<string>;
  restartPreventExitStatus: Set<string>;
  startLimitBurst: number;
  startLimitIntervalSec: number;
}

/** One run's end: an exit code, or the signal that ended it (e.g. "SIGABRT"). */
export type Ending = { code: number; signal?: undefined } | { code?: undefined; signal: string };

const CLEAN_SIGNALS = new Set(["SIGHUP", "SIGINT", "SIGTERM", "SIGPIPE"]);

/** systemd's time spans as the unit spells them: "5s", "10min", "300ms", "1min 30s", a bare number of seconds. */
export function parseTimeSpan(text: string): number {
  const units: Record<string, number> = { ms: 0.001, s: 1, sec: 1, m: 60, min: 60, h: 3600, hr: 3600 };
  let total = 0;
  for (const part of text.trim().split(/\s+/)) {
    const match = /^(\d+(?:\.\d+)?)([a-z]*)$/.exec(part);
    const factor = match ? units[match[2] || "s"] : undefined;
    if (!match || factor === undefined) throw new Error(`not a systemd time span: ${text}`);
    total += Number(match[1]) * factor;
  }
  return total;
}

/** Splits a command line as systemd does for the paths we write: double quotes, `%%` for `%` (no other specifiers or escapes). */
export function splitCommand(line: string): Command {
  let rest = line.trim();
  let ignoreFailure = false;
  while (/^[-@:+!]/.test(rest)) {
    if (rest[0] === "-") ignoreFailure = true;
    rest = rest.slice(1);
  }
  const argv: string[] = [];
  for (const match of rest.matchAll(/"([^"]*)"|(\S+)/g)) argv.push((match[1] ?? match[2]!).replaceAll("%%", "%"));
  return { argv, ignoreFailure };
}

/** The settings above from a unit file's text (a key given twice: the last one, or the lists joined, as systemd does). */
export function parseServiceUnit(text: string): ServiceUnit {
  const values = new Map<string, string[]>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";") || line.startsWith("[")) continue;
    const eq = line.indexOf("=");
    if (eq < 0) continue;
    const key = line.slice(0, eq);
    values.set(key, [...(values.get(key) ?? []), line.slice(eq + 1)]);
  }
  const last = (key: string) => values.get(key)?.at(-1);
  const list = (key: string) => new Set((values.get(key) ?? []).flatMap((v) => v.split(/\s+/).filter(Boolean)));
  const start = last("ExecStart");
  if (!start) throw new Error("the unit has no ExecStart=");
  return {
    execStartPre: (values.get("ExecStartPre") ?? []).map(splitCommand),
    execStart: splitCommand(start),
    user: last("User"),
    group: last("Group"),
    restart: last("Restart") ?? "no",
    restartSec: parseTimeSpan(last("RestartSec") ?? "100ms"),
    successExitStatus: list("SuccessExitStatus"),
    restartForceExitStatus: list("RestartForceExitStatus"),
    restartPreventExitStatus: list("RestartPreventExitStatus"),
    startLimitBurst: Number(last("StartLimitBurst") ?? 5),
    startLimitIntervalSec: parseTimeSpan(last("StartLimitIntervalSec") ?? "10s"),
  };
}

const inSet = (set: Set<string>, end: Ending) => (end.signal ? set.has(end.signal) || set.has(end.signal.replace(/^SIG/, "")) : set.has(String(end.code)));

/** Whether systemd counts the run as a success (no "Failed with result" in the journal). */
export function isClean(unit: ServiceUnit, end: Ending): boolean {
  if (end.signal) return CLEAN_SIGNALS.has(end.signal) || inSet(unit.successExitStatus, end);
  return end.code === 0 || inSet(unit.successExitStatus, end);
}

/** Whether systemd starts the service again after a run that ended so (not after a manual stop). */
export function shallRestart(unit: ServiceUnit, end: Ending): boolean {
  if (inSet(unit.restartPreventExitStatus, end)) return false;
  if (inSet(unit.restartForceExitStatus, end)) return true;
  const clean = isClean(unit, end);
  switch (unit.restart) {
    case "always":
      return true;
    case "on-success":
      return clean;
    case "on-failure":
      return !clean;
    case "on-abnormal":
    case "on-abort":
      return end.signal !== undefined && !CLEAN_SIGNALS.has(end.signal);
    default:
      return false;
  }
}
