/**
 * Tells an external broker to re-read its files: hub.yml `broker.reloadCommand`, e.g.
 * `[sudo, -n, systemctl, reload, mosquitto]` (Debian's unit sends SIGHUP). Mosquitto 2.0.11 reads
 * its `crlfile` only at start and on SIGHUP (measured: a rewritten file changes nothing until
 * then, and once the loaded CRL passes its nextUpdate every handshake fails), so the hub runs this
 * after every CRL it writes: a new revocation, and each renewal (crl-renewal.ts).
 *
 * The command is an argv list, run without a shell (nothing to inject). Requests that arrive
 * while one runs are folded into one more run, so a burst of revocations is one or two reloads.
 */
import { type ExecException, execFile } from "node:child_process";
import type { Logger } from "../../shared/log.ts";

export interface BrokerReloader {
  /** asks for a reload; resolves when one that started after this call has finished (never throws) */
  request(reason: string): Promise<void>;
}

/** A reloader for `argv`; with no command, `request` only resolves (nothing to tell). */
export function createBrokerReloader(argv: readonly string[] | undefined, log: Logger, timeoutMs = 10_000): BrokerReloader {
  if (!argv?.length) return { request: async () => {} };
  const [file, ...args] = argv as [string, ...string[]];
  let running: Promise<void> | undefined;
  let next: Promise<void> | undefined;
  let reasons: string[] = [];

  const runOnce = (): Promise<void> =>
    new Promise((resolve) => {
      const why = [...new Set(reasons)].join(",");
      reasons = [];
      const started = performance.now();
      execFile(file, args, { timeout: timeoutMs }, (err, _stdout, stderr) => {
        const ms = Math.round(performance.now() - started);
        // The command's own words, shortened: an operator needs them to fix sudoers or a path.
        // Not err.message: it repeats the whole argv, which may carry a password.
        if (err)
          log.warn("hub.broker_reload_failed", {
            command: file,
            reason: why,
            ms,
            error: howItEnded(err, timeoutMs),
            stderr: stderr.trim().slice(0, 200) || undefined,
          });
        else log.info("hub.broker_reloaded", { command: file, reason: why, ms });
        resolve();
      });
    });

  return {
    request(reason) {
      reasons.push(reason);
      if (!running) {
        running = runOnce().finally(() => (running = undefined));
        return running;
      }
      // One is running: what it read may predate this call, so one more run follows it.
      next ??= running.then(() => {
        next = undefined;
        running = runOnce().finally(() => (running = undefined));
        return running;
      });
      return next;
    },
  };
}

/** How a reload command ended, without its arguments: `exit 3`, `not found (ENOENT)`, `killed by SIGTERM`, `no answer within 10 s`. */
function howItEnded(err: ExecException, timeoutMs: number): string {
  if (typeof err.code === "number") return `exit ${err.code}`;
  if (err.killed && err.signal === "SIGTERM") return `no answer within ${Math.round(timeoutMs / 1000)} s`;
  if (err.signal) return `killed by ${err.signal}`;
  if (err.code === "ENOENT") return "not found (ENOENT)";
  return typeof err.code === "string" ? err.code : "failed";
}
