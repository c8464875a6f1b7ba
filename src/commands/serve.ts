import { ExitCode } from "../shared/errors.ts";
import { createLogger } from "../shared/log.ts";
import { startAgent } from "../thing/agent.ts";
import { loadConfigFromFlags, untilSignal, type ThingFlags } from "./common.ts";

export async function serve(flags: ThingFlags & { exec?: string }): Promise<number> {
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
