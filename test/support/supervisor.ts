/**
 * What systemd does for flashlex.service, for test machines where systemd is not PID 1: before
 * every start it runs the pre-start guard (`ExecStartPre=-/bin/sh <data>/update/guard.sh`: a
 * missing guard or a failing one does not stop the start, as the `-` prefix says), then runs the
 * command, and restarts it after it exits as `Restart=on-failure` + `RestartPreventExitStatus=64
 * 77 78` do: not after 0, 64, 77 or 78; always after another code or a signal. `RestartSec` is
 * FLASHLEX_RESTART_MS (default 300 ms; the unit says 5 s). SIGTERM stops the child and the loop.
 * At most 20 starts, so a test that goes wrong cannot spin.
 *
 *   bun test/support/supervisor.ts <guard.sh> -- <binary> serve -c ... -k ... -d ...
 *
 * Each start and exit is one line on stderr: `supervisor: start N` / `supervisor: exit CODE`.
 */
import { existsSync } from "node:fs";

const [guard, separator, ...command] = process.argv.slice(2);
if (!guard || separator !== "--" || !command.length) {
  console.error("usage: supervisor.ts <guard.sh> -- <command...>");
  process.exit(64);
}
const restartMs = Number(process.env.FLASHLEX_RESTART_MS ?? 300);
const PREVENT = new Set([0, 64, 77, 78]);
let child: ReturnType<typeof Bun.spawn> | undefined;
let stopping = false;
process.on("SIGTERM", () => {
  stopping = true;
  child?.kill("SIGTERM");
});

for (let start = 1; start <= 20 && !stopping; start++) {
  if (existsSync(guard)) Bun.spawnSync(["/bin/sh", guard], { stdout: "inherit", stderr: "inherit" });
  console.error(`supervisor: start ${start}`);
  child = Bun.spawn(command, { stdout: "inherit", stderr: "inherit" });
  const code = await child.exited;
  console.error(`supervisor: exit ${child.signalCode ?? code}`);
  if (stopping || (child.signalCode === null && PREVENT.has(code))) break;
  await Bun.sleep(restartMs);
}
