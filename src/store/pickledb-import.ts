import { existsSync, readFileSync, renameSync, statSync } from "node:fs";
import { FlashlexError, oneLine, toFlashlexError } from "../errors.ts";
import type { MessageStore } from "./message-store.ts";

/**
 * The Python SDK kept ingress messages in a pickleDB file (one JSON object, key → message)
 * named by `db.subscriptionData`. When such a file sits in the data directory, its entries
 * are imported once as ingress messages, in one transaction, and the file is renamed to
 * `<name>.imported` so it is neither read twice nor lost.
 *
 * Returns the number of messages imported (0 when there is no file).
 */
export function importPickleDb(store: MessageStore, jsonPath: string, defaultTopic: string): number {
  if (!jsonPath.endsWith(".json") || !existsSync(jsonPath)) return 0;
  let entries: [string, unknown][];
  try {
    const parsed = JSON.parse(readFileSync(jsonPath, "utf8"));
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("not a JSON object");
    entries = Object.entries(parsed);
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ? toFlashlexError(err).message.replace(`${jsonPath}: `, "") : (err as Error).message;
    const kind = (err as NodeJS.ErrnoException).code ? toFlashlexError(err).kind : "damaged";
    throw new FlashlexError(`${jsonPath}: cannot import the old pickleDB file (${oneLine(reason)}); move it aside to start without it`, kind, { cause: err });
  }
  const fallbackTime = statSync(jsonPath).mtimeMs;
  store.db.transaction(() => {
    for (const [, value] of entries) {
      const record = (value && typeof value === "object" ? value : {}) as Record<string, unknown>;
      store.insertIngress({
        topic: typeof record.topic === "string" ? record.topic : defaultTopic,
        payload: Buffer.from(JSON.stringify(value)),
        qos: 1,
        retain: false,
        receivedAt: typeof record.timestamp === "number" ? record.timestamp * 1000 : fallbackTime,
      });
    }
  });
  renameSync(jsonPath, `${jsonPath}.imported`);
  return entries.length;
}
