import { existsSync, readFileSync, renameSync, statSync } from "node:fs";
import type { MessageStore } from "./message-store.ts";

/** The old store is not one JSON object: nothing was imported and the file is where it was. */
export class PickleDbUnreadable extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PickleDbUnreadable";
  }
}

/**
 * The Python SDK kept ingress messages in a pickleDB file (one JSON object, key → message)
 * named by `db.subscriptionData`. When such a file sits in the data directory, its entries
 * are imported once as ingress messages, in one transaction, and the file is renamed to
 * `<name>.imported` so it is neither read twice nor lost.
 *
 * One entry that cannot be taken in (nested too deeply to store, say) does not stop the others:
 * it is reported to `onSkipped` and stays in the renamed file.
 *
 * Returns the number of messages imported (0 when there is no file). Throws, leaving the file
 * in place, when the file is not one JSON object.
 */
export function importPickleDb(store: MessageStore, jsonPath: string, defaultTopic: string, onSkipped?: (key: string, reason: string) => void): number {
  if (!jsonPath.endsWith(".json") || !existsSync(jsonPath)) return 0;
  let entries: [string, unknown][];
  try {
    const parsed = JSON.parse(readFileSync(jsonPath, "utf8"));
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("not a JSON object");
    entries = Object.entries(parsed);
  } catch (err) {
    throw new PickleDbUnreadable(`${jsonPath}: cannot import the old pickleDB file (${(err as Error).message}); fix it, or move it aside`);
  }
  const fallbackTime = statSync(jsonPath).mtimeMs;
  let imported = 0;
  store.db.transaction(() => {
    for (const [key, value] of entries) {
      try {
        const record = (value && typeof value === "object" ? value : {}) as Record<string, unknown>;
        const receivedAt = typeof record.timestamp === "number" ? record.timestamp * 1000 : fallbackTime;
        store.insertIngress({
          topic: typeof record.topic === "string" ? record.topic : defaultTopic,
          payload: Buffer.from(JSON.stringify(value)),
          qos: 1,
          retain: false,
          receivedAt: Number.isFinite(receivedAt) ? Math.round(receivedAt) : fallbackTime,
        });
        imported++;
      } catch (err) {
        onSkipped?.(key, (err as Error)?.message ?? String(err));
      }
    }
  });
  renameSync(jsonPath, `${jsonPath}.imported`);
  return imported;
}
