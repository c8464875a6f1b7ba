/**
 * What systemd does for flashlex.service, for test machines where systemd is not PID 1. Two ways
 * to run it:
 *
 *   bun test/support/supervisor.ts --unit <flashlex.service> [-- <prefix...>]
 *     runs a unit rendered by `install-service --print` by its own lines (systemd-unit.ts): its
 *     ExecStartPre= commands before every start (a `-` prefix ignores a failure), its ExecStart=,
 *     as its User=/Group= when the supervisor is root (setpriv, groups from initgroups), and
 *     decides each restart by its Restart=, SuccessExitStatus=, RestartForceExitStatus= and
 *     RestartPreventExitStatus=; stops when more than StartLimitBurst= starts fall within
 *     StartLimitIntervalSec=. Not emulated: the sandbox (namespaces, bind mounts, filters).
 *     Words after `--` go before ExecStart='s argv at every start (not before ExecStartPre=,
 *     which is /bin/sh): `-- qemu-aarch64-static -L /usr/aarch64-linux-gnu` runs an arm64 unit's
 *     binary under emulation, as binfmt_misc would on a machine that registers qemu (these
 *     containers do not), and each restart starts the emulator again on whatever binary is then
 *     at the unit's path.
 *
 *   bun test/support/supervisor.ts <guard.sh> -- <binary> serve -c ... -k ... -d ...
 *     the fixed reading: `/bin/sh <guard.sh>` before every start when it exists, then the
 *     command, restarted after any exit but 0, 64, 77 and 78 (and death by SIGTERM, SIGHUP, SIGINT
 *     or SIGPIPE, clean for systemd too).
 *
 * `RestartSec` is FLASHLEX_RESTART_MS (default 300 ms; the unit says 5 s). SIGTERM stops the child
 * and the loop. At most 20 starts, so a test that goes wrong cannot spin. Each start and exit is
 * one line on stderr: `supervisor: start N`, `supervisor: exit CODE|SIGNAL`, plus, with --unit,
 * `supervisor: ExecStartPre exit N (ignored)`, `supervisor: clean|failed, restart|no restart`.
 */
import { readFileSync } from "node:fs";
import { type Ending, isClean, parseServiceUnit, type ServiceUnit, shallRestart } from "./systemd-unit.ts";

const args = process.argv.slice(2);
let unit: ServiceUnit;
if (args[0] === "--unit" && args[1] && (args.length === 2 || (args[2] === "--" && args.length > 3))) {
  unit = parseServiceUnit(readFileSync(args[1], "utf8"));
  const prefix = args.slice(3);
  unit.execStart = { ...unit.execStart, argv: [...prefix, ...unit.execStart.argv] };
} else {
  const [guard, separator, ...command] = args;
  if (!guard || separator !== "--" || !command.length) {
    console.error("usage: supervisor.ts --unit <file.service> [-- <prefix...>] | <guard.sh> -- <command...>");
    process.exit(64);
  }
  unit = {
    // the guard only when it exists at that start (serve writes it at its first start)
    execStartPre: [{ argv: ["/bin/sh", "-c", '[ ! -f "$1" ] || exec /bin/sh "$1"', "guard", guard], ignoreFailure: true }],
    execStart: { argv: command, ignoreFailure: false },
    restart: "on-failure",
    restartSec: 0.3,
    successExitStatus: new Set(),
    restartForceExitStatus: new Set(),
    restartPreventExitStatus: new Set(["64", "77", "78"]),
    startLimitBurst: 1000,
    startLimitIntervalSec: 1,
  };
}
const restartMs = Number(process.env.FLASHLEX_RESTART_MS ?? 300);

/** As the unit's User=/Group= when we are root and they are set (systemd sets the groups with initgroups). */
function asUser(argv: string[]): string[] {
  if (process.getuid?.() !== 0 || !unit.user || unit.user === "root") return argv;
  const group = unit.group ? [`--regid=${unit.group}`] : [];
  return ["setpriv", `--reuid=${unit.user}`, ...group, "--init-groups", "--", ...argv];
}

let child: ReturnType<typeof Bun.spawn> | undefined;
let stopping = false;
process.on("SIGTERM", () => {
  stopping = true;
  child?.kill("SIGTERM");
});

const starts: number[] = [];
for (let start = 1; start <= 20 && !stopping; start++) {
  const now = Date.now();
  starts.push(now);
  const recent = starts.filter((t) => now - t < unit.startLimitIntervalSec * 1000);
  if (recent.length > unit.startLimitBurst) {
    console.error("supervisor: start-limit-hit");
    break;
  }
  let end: Ending | undefined;
  for (const pre of unit.execStartPre) {
    const run = Bun.spawnSync(asUser(pre.argv), { stdout: "inherit", stderr: "inherit" });
    if (run.exitCode === 0) continue;
    console.error(`supervisor: ExecStartPre exit ${run.signalCode ?? run.exitCode}${pre.ignoreFailure ? " (ignored)" : ""}`);
    if (!pre.ignoreFailure) {
      end = run.signalCode ? { signal: String(run.signalCode) } : { code: run.exitCode ?? 1 };
      break;
    }
  }
  if (!end) {
    console.error(`supervisor: start ${start}`);
    child = Bun.spawn(asUser(unit.execStart.argv), { stdout: "inherit", stderr: "inherit" });
    const code = await child.exited;
    end = child.signalCode !== null ? { signal: String(child.signalCode) } : { code };
    console.error(`supervisor: exit ${end.signal ?? end.code}`);
  }
  const restart = !stopping && shallRestart(unit, end);
  console.error(`supervisor: ${isClean(unit, end) ? "clean" : "failed"}, ${restart ? "restart" : "no restart"}`);
  if (!restart) break;
  await Bun.sleep(restartMs);
}
