import { resolve } from "node:path";
import { UsageError } from "../../shared/errors.ts";
import { parseListenAddress } from "../../shared/listen-address.ts";
import { createLogger, cutGiven } from "../../shared/log.ts";
import { notADirectory } from "../../shared/path-exists.ts";
import { type CommandSpec, text, untilSignal } from "../command.ts";
import { ExitCode } from "../exit-codes.ts";
import { countFlag } from "../input.ts";
import { loadConfigFromFlags, type ThingFlags, thingCommand } from "./common.ts";

/** How long one run of CMD may take by default (--exec-timeout), in seconds. */
const DEFAULT_EXEC_TIMEOUT_SECONDS = 300;

export const serveCommand: CommandSpec = thingCommand({
  name: "serve",
  description: "Run the agent: MQTT over mutual TLS, store ingress, deliver the outbox (the systemd service)",
  options: [
    { flags: "--exec <cmd>", description: "run CMD once per ingress message, payload on stdin; exit 0 acknowledges it" },
    {
      flags: "--exec-timeout <seconds>",
      description: `--exec: end a run of CMD (its whole process group) after this many seconds; it counts as failed (default ${DEFAULT_EXEC_TIMEOUT_SECONDS})`,
    },
    {
      flags: "--metrics <address>",
      description: "answer Prometheus scrapes at http://ADDRESS/metrics: HOST:PORT, or PORT for 127.0.0.1 (default: flashlex.metrics.listen, else off)",
    },
  ],
  run: (_args, options) => serve(options),
});

/** The longest --exec-timeout: a week. */
const MAX_EXEC_TIMEOUT_SECONDS = 7 * 24 * 3600;

/** Runs the agent until SIGTERM, SIGINT or SIGHUP; a second signal exits at once. */
async function serve(flags: ThingFlags & { exec?: string; execTimeout?: unknown; metrics?: unknown }): Promise<number> {
  const execTimeout = countFlag(flags.execTimeout, "--exec-timeout", MAX_EXEC_TIMEOUT_SECONDS);
  const exec = text(flags.exec);
  // Blanks only (an empty value is refused for every flag, main.ts): serve would start with no
  // handler, its messages piling up unacknowledged without a word.
  if (flags.exec !== undefined && !exec?.trim()) throw new UsageError("--exec needs a command; it was given only blanks");
  if (execTimeout !== undefined && exec === undefined) throw new UsageError("--exec-timeout bounds the runs of --exec CMD: give --exec too");
  const log = createLogger();
  const metricsFlag = text(flags.metrics);
  const metricsAt = metricsFlag === undefined ? undefined : parseListenAddress(metricsFlag);
  if (metricsFlag !== undefined && !metricsAt) throw new UsageError(`--metrics ${cutGiven(metricsFlag)}: give HOST:PORT (127.0.0.1:9465) or a PORT (9465)`);
  // serve makes a data directory that is not there yet; a file in its place is a typo (64), as for the other commands
  const notDir = flags.data === undefined ? undefined : notADirectory(resolve(String(flags.data)));
  if (notDir !== undefined) throw new UsageError(`-d ${flags.data}: ${notDir}; pass the data directory serve uses (by default data/ beside the config)`);
  const config = await loadConfigFromFlags(flags, log, { keepParsed: true });
  const configured = config.yaml.metrics?.listen;
  const metrics = metricsAt
    ? { at: metricsAt, setting: "--metrics" }
    : configured
      ? { at: parseListenAddress(configured)!, setting: `${config.file}: flashlex.metrics.listen` }
      : undefined;
  const { startAgent } = await import("../../thing/agent.ts");
  // Listening before the agent starts: a SIGTERM while it starts (an --exec run may already be
  // going) stops it cleanly once started, instead of killing the process with its runs orphaned.
  const stopRequested = untilSignal();
  // A self-update (or its rollback) replaced the binary: stop as for a signal, then exit 3 so
  // that the supervisor (systemd's Restart=) starts the binary now in place (docs/updates.md).
  let restart: ((reason: string) => void) | undefined;
  const restartRequested = new Promise<string>((resolve) => (restart = resolve));
  const agent = await startAgent({
    config,
    log,
    exec,
    execTimeoutMs: (execTimeout ?? DEFAULT_EXEC_TIMEOUT_SECONDS) * 1000,
    requestRestart: (reason) => restart?.(reason),
    metrics,
  });
  const outcome = await Promise.race([
    stopRequested.then((signal) => ({ signal })),
    restartRequested.then((reason) => ({ reason })),
    agent.failed.then((failure) => ({ failure })),
  ]);
  if ("failure" in outcome) {
    // its database gone: stop as for a signal, then the one line and its exit code (74)
    await agent.stop();
    throw outcome.failure;
  }
  if ("reason" in outcome) {
    log.info("serve.restarting", { reason: outcome.reason, exit: ExitCode.RESTART });
    await agent.stop();
    return ExitCode.RESTART;
  }
  const signal = outcome.signal;
  log.info("serve.signal", { signal });
  await agent.stop();
  return ExitCode.OK;
}
