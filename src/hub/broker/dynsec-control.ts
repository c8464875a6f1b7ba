/**
 * Sends dynamic-security commands over the hub's own MQTT connection and matches the answers
 * (spec: Mosquitto 2.0 dynamic security plugin, `$CONTROL/dynamic-security/v1`; see dynsec.ts).
 * The connection is external.ts's: it subscribes to the response topic and hands every message
 * on it to `handleResponse`.
 */
import { randomUUID } from "node:crypto";
import { FlashlexError } from "../../shared/errors.ts";
import {
  DYNSEC_TOPIC,
  type DynsecCommand,
  type DynsecResponse,
  ensureRevokedRoleCommands,
  isHarmless,
  parseDynsecResponses,
  revokeCommands,
} from "./dynsec.ts";

export interface DynsecControlOptions {
  /** publishes one command document to DYNSEC_TOPIC (QoS 1); rejects when the broker is not connected */
  publish(topic: string, payload: string): Promise<void>;
  /** how long to wait for the answer to one document, in ms; default 5000 */
  timeoutMs?: number;
  /** things per command document; default 100 (4 commands each) */
  batchSize?: number;
}

export interface DynsecControl {
  /** a message that arrived on DYNSEC_RESPONSE_TOPIC */
  handleResponse(payload: Buffer): void;
  /**
   * Sends `commands` as one document and resolves to their responses, in order. Throws
   * FlashlexError (kind `unavailable`) when no answer comes within the timeout: the plugin is
   * not loaded, or the hub's dynsec role does not grant the control topics.
   */
  run(commands: DynsecCommand[]): Promise<DynsecResponse[]>;
  /**
   * Shuts every named thing out (dynsec.ts revokeCommands): denied everything, disconnected now.
   * Idempotent. Throws FlashlexError (`unavailable`) as `run`, and also naming the commands the
   * broker refused with a real error (the caller retries later either way).
   */
  revoke(thingNames: readonly string[]): Promise<void>;
}

/**
 * Commands go out through `opts.publish`; answers come in through `handleResponse` and are matched
 * by correlationData, so several documents may wait at once (each up to `timeoutMs`, ms).
 */
export function createDynsecControl(opts: DynsecControlOptions): DynsecControl {
  const timeoutMs = opts.timeoutMs ?? 5_000;
  const batchSize = opts.batchSize ?? 100;
  // correlationData prefix of a document -> its waiter
  const waiting = new Map<string, (responses: DynsecResponse[]) => void>();
  let roleEnsured = false;

  const run = async (commands: DynsecCommand[]): Promise<DynsecResponse[]> => {
    const id = randomUUID();
    const tagged = commands.map((c, i) => ({ ...c, correlationData: `${id}:${i}` }));
    const answered = new Promise<DynsecResponse[]>((resolve) => waiting.set(id, resolve));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new FlashlexError(
              `the broker did not answer dynamic-security commands within ${timeoutMs} ms (is mosquitto_dynamic_security.so loaded, with the hub as its admin? see docs/broker.md)`,
              "unavailable",
            ),
          ),
        timeoutMs,
      );
    });
    try {
      await opts.publish(DYNSEC_TOPIC, JSON.stringify({ commands: tagged }));
      const responses = await Promise.race([answered, timeout]);
      // Back in the order sent; a response without our tag cannot be placed and is dropped.
      const byIndex = new Map(responses.map((r) => [Number(String(r.correlationData).split(":")[1]), r]));
      return tagged.map((c, i) => byIndex.get(i) ?? { command: c.command, error: "no response" });
    } finally {
      clearTimeout(timer);
      waiting.delete(id);
    }
  };

  return {
    handleResponse(payload) {
      let responses: DynsecResponse[];
      try {
        responses = parseDynsecResponses(payload);
      } catch {
        return; // someone else's garbage on the topic: not ours to answer
      }
      const id = String(responses[0]?.correlationData ?? "").split(":")[0] ?? "";
      waiting.get(id)?.(responses);
    },
    run,
    async revoke(thingNames) {
      if (!roleEnsured) {
        const [created] = await run(ensureRevokedRoleCommands());
        if (created?.error && !isHarmless(created.command, created.error)) {
          throw new FlashlexError(`dynamic-security createRole failed: ${created.error}`, "unavailable");
        }
        roleEnsured = true;
      }
      for (let i = 0; i < thingNames.length; i += batchSize) {
        const names = thingNames.slice(i, i + batchSize);
        const commands = names.flatMap(revokeCommands);
        const responses = await run(commands);
        const failed = responses.filter((r) => r.error && !isHarmless(r.command, r.error));
        if (failed.length) {
          const detail = failed
            .slice(0, 3)
            .map((r, k) => `${r.command} ${String(commands[responses.indexOf(r)]?.username ?? k)}: ${r.error}`)
            .join("; ");
          throw new FlashlexError(`dynamic-security refused ${failed.length} command(s): ${detail}`, "unavailable");
        }
      }
    },
  };
}
