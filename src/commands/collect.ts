import { readFileSync } from "node:fs";
import { ExitCode, InputError, UsageError } from "../errors.ts";
import { createLogger } from "../log.ts";
import { openThingAccess } from "../thing/access.ts";
import { parseEgressDocument } from "../thing/collect.ts";
import { MAX_EGRESS_BYTES } from "../thing/egress.ts";
import { loadConfigFromFlags, type ThingFlags } from "./common.ts";

export async function collectCommand(flags: ThingFlags & { file?: string; via?: string; json?: boolean }): Promise<number> {
  const log = createLogger();
  const via = flags.via ?? "http";
  if (via !== "http" && via !== "mqtt") throw new UsageError(`--via must be http or mqtt, not ${via}`);
  const config = loadConfigFromFlags(flags, log);
  const body = parseEgressDocument(await readInput(flags.file), flags.file ?? "stdin");
  const access = await openThingAccess(config, log);
  try {
    const result = await access.collect(body, via);
    if (flags.json) {
      console.log(JSON.stringify(result));
    } else {
      if (result.body) console.log(prettyJson(result.body));
      if (result.status) console.log(`status code: ${result.status}`);
    }
    if (result.outcome === "sent") return ExitCode.OK;
    if (result.outcome === "rejected") {
      console.error(`collect: the API refused message ${result.messageId}: ${result.error}`);
      return ExitCode.DATA;
    }
    console.error(`collect: message ${result.messageId} is queued (${result.error}); \`flashlex serve\` will deliver it`);
    return ExitCode.UNAVAILABLE;
  } finally {
    access.close();
  }
}

/** Reads at most one byte over the limit, so an endless stdin cannot fill memory. */
async function readInput(file: string | undefined): Promise<string> {
  if (file) {
    try {
      return readFileSync(file, "utf8");
    } catch (err) {
      throw new InputError(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? "error"})`);
    }
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    chunks.push(chunk as Buffer);
    size += (chunk as Buffer).length;
    if (size > MAX_EGRESS_BYTES) break;
  }
  return Buffer.concat(chunks).toString("utf8");
}

function prettyJson(text: string): string {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}
