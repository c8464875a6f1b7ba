import type { HubHandle } from "../../hub/service.ts";
import { UsageError } from "../../shared/errors.ts";
import { createLogger } from "../../shared/log.ts";
import { type CommandSpec, Interrupted, type Options, text, untilSignal } from "../command.ts";
import { ExitCode } from "../exit-codes.ts";
import { DB_OPTION, DIR_OPTION, databaseOverride, hubHome } from "./common.ts";

export const hubServeCommand: CommandSpec = {
  name: "hub serve",
  description: "Run the hub: MQTT broker, HTTP API and database in one process",
  options: [
    DIR_OPTION,
    DB_OPTION,
    {
      flags: "--broker <broker>",
      description:
        "embedded, rabbitmq (the cluster hub.yml names: hub rabbitmq-config), or an external broker mqtts://HOST[:PORT] (port 8883 when not given; the hub logs in with its client certificate) (default: the broker hub.yml names, a cluster or hub mosquitto-config's Mosquitto, else embedded)",
    },
  ],
  bunOnly: true,
  run: (_args, options) => hubServe(options),
};

/** Runs the hub until SIGTERM, SIGINT or SIGHUP, then stops it within 5 s (a second signal exits at once). */
async function hubServe(options: Options): Promise<number> {
  const log = createLogger();
  const broker = text(options.broker);
  if (broker !== undefined && broker !== "embedded" && broker !== "rabbitmq") {
    // A bad flag value is usage (64); the same URL in hub.yml stays a configuration error (78).
    const { parseBrokerUrl } = await import("../../hub/broker/external.ts");
    try {
      parseBrokerUrl(broker);
    } catch (err) {
      throw new UsageError(`--broker must be embedded, rabbitmq or mqtts://HOST[:PORT]: ${(err as Error).message}`);
    }
  }
  const { serveHub } = await import("../../hub/service.ts");
  // Listening before the hub starts: a SIGTERM while it starts (or the moment it logged
  // hub.started) stops it cleanly, instead of killing it with 143 and nothing closed. A wait for
  // an external broker (up to 30 s) ends at once; any other step finishes first (opening a
  // PostgreSQL database may take up to its 10 s deadline).
  const stopRequested = untilSignal();
  const starting = new AbortController();
  void stopRequested.then((signal) => starting.abort(new Interrupted(signal)));
  let handle: HubHandle;
  try {
    handle = await serveHub({ dir: hubHome(options), broker, log, database: databaseOverride(options), signal: starting.signal });
  } catch (err) {
    // Asked to stop while it started: stopped, as asked, whatever the start came to (said here).
    if (!starting.signal.aborted) throw err;
    const { signal } = starting.signal.reason as Interrupted;
    const failed = err === starting.signal.reason ? {} : { start_failed: err };
    log.info("hub.stopped", { signal, note: "before it started", ...failed });
    return ExitCode.OK;
  }
  const outcome = await Promise.race([stopRequested.then((signal) => ({ signal })), handle.failed.then((failure) => ({ failure }))]);
  log.info("hub.stopping", "signal" in outcome ? { signal: outcome.signal } : { reason: "the hub home is gone" });
  // A stuck close must not keep systemd waiting for its own stop timeout.
  const deadline = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 5000).unref?.());
  if ((await Promise.race([handle.close(), deadline])) === "timeout") log.warn("hub.stop_timeout", { note: "exiting anyway" });
  // the home gone: the one line and its exit code (74), as any failure of the command
  if ("failure" in outcome) throw outcome.failure;
  return ExitCode.OK;
}
