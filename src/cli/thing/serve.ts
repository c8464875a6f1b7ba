import { createLogger } from "../../shared/log.ts";
import { startAgent } from "../../thing/agent.ts";
import { type CommandSpec, untilSignal } from "../command.ts";
import { ExitCode } from "../exit-codes.ts";
import { loadConfigFromFlags, type ThingFlags, thingCommand } from "./common.ts";

export const serveCommand: CommandSpec = thingCommand({
  name: "serve",
  description: "Run the agent: MQTT over mutual TLS, store ingress, deliver the outbox (the systemd service)",
  options: [{ flags: "--exec <cmd>", description: "run CMD once per ingress message, payload on stdin; exit 0 acknowledges it" }],
  run: (_args, options) => serve(options),
});

/** Runs the agent until SIGTERM or SIGINT; a second signal exits at once. */
async function serve(flags: ThingFlags & { exec?: string }): Promise<number> {
  const log = createLogger();
  const config = loadConfigFromFlags(flags, log);
  const agent = await startAgent({ config, log, exec: flags.exec });
  const signal = await untilSignal();
  log.info("serve.signal", { signal });
  // A second signal while stopping means "now".
  const force = () => process.exit(ExitCode.OK);
  process.once("SIGTERM", force).once("SIGINT", force);
  await agent.stop();
  return ExitCode.OK;
}
