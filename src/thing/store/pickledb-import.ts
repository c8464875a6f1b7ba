import { closeSync, fstatSync, openSync, readFileSync, renameSync } from "node:fs";
import { pathExists } from "../../shared/path-exists.ts";
import type { MessageStore } from "./message-store.ts";

/** The old store is not one JSON object: nothing was imported and the file is where it was. */
export class PickleDbUnreadable extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PickleDbUnreadable";
  }
}

/** What `importPickleDb` did. */
export interface PickleDbImport {
  /** messages stored now (0 when the file was imported before) */
  messages: number;
  /** the same file (byte for byte) was imported before: nothing was stored again */
  alreadyImported: boolean;
  /** where the old file went (another process may have moved it first: undefined) */
  renamedTo: string | undefined;
}

/** A Unix time above this is in milliseconds (as seconds it would be after the year 5000). */
const MILLISECONDS_FROM = 1e11;

/**
 * The Python SDK kept ingress messages in one JSON file named by `db.subscriptionData`, in one
 * of two formats: TinyDB (the SDK of the guide's time, `{"_default": {"<doc id>": entry}}`) or,
 * from September 2019, pickleDB (`{"<pk>": entry}`). Each entry is
 * `{pk, timestamp (Unix seconds), datetime, message: {topic, payload (the parsed JSON), pos (QoS),
 * retain, mid}}`. When such a file sits in the data directory, each entry is imported as the
 * ingress message it was (its topic, its payload as JSON text, QoS, retain flag and time), in
 * time order, in one transaction; then the file is renamed to `<name>.imported` (or
 * `.imported.2`, ... : an earlier copy is never overwritten). The packet id (`mid`) is not kept:
 * it belonged to a connection long gone, and a stored one would make a new message with the same
 * id, topic and payload look like the broker's redelivery. An entry of another shape is kept
 * whole as the payload, under `defaultTopic`.
 *
 * Once only: the file's SHA-256 is recorded with the messages, and the check and the inserts run
 * under the database's write lock, so two processes opening the store at once (serve at boot and
 * a `messages list`), or the same file put back later, store its messages once.
 *
 * One entry that cannot be taken in (nested too deeply to store, say) does not stop the others:
 * it is reported to `onSkipped` and stays in the renamed file; so are TinyDB tables other than
 * `_default`, which the SDK never used for messages.
 *
 * Returns undefined when there is no such file. Throws PickleDbUnreadable, leaving the file in
 * place, when the file is not one JSON object; the database's own errors otherwise.
 */
export function importPickleDb(
  store: MessageStore,
  jsonPath: string,
  defaultTopic: string,
  onSkipped?: (key: string, reason: string) => void,
): PickleDbImport | undefined {
  if (!jsonPath.endsWith(".json") || !pathExists(jsonPath)) return undefined;
  let bytes: Buffer;
  let fallbackTime: number;
  try {
    const fd = openSync(jsonPath, "r");
    try {
      fallbackTime = fstatSync(fd).mtimeMs;
      bytes = readFileSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined; // another process took it
    throw err;
  }
  let entries: [string, unknown][];
  try {
    entries = entriesOf(JSON.parse(bytes.toString("utf8")), onSkipped);
  } catch (err) {
    throw new PickleDbUnreadable(`${jsonPath}: cannot import the old pickleDB file (${(err as Error).message}); fix it, or move it aside`);
  }
  // node:crypto only here, where an old store is there to import: loading it costs every open ~2 ms
  const { createHash } = require("node:crypto") as typeof import("node:crypto");
  const importKey = `imported:${createHash("sha256").update(bytes).digest("hex")}`;
  const messages = entries.map(([key, value]) => ({ key, ...oldMessage(value, defaultTopic, fallbackTime) }));
  messages.sort((a, b) => a.receivedAt - b.receivedAt);
  let imported = 0;
  let alreadyImported = false;
  store.db.transaction(() => {
    if (store.sessionState(importKey) !== undefined) {
      alreadyImported = true;
      return;
    }
    for (const { key, ...message } of messages) {
      try {
        store.insertIngress(message);
        imported++;
      } catch (err) {
        onSkipped?.(key, (err as Error)?.message ?? String(err));
      }
    }
    store.setSessionState(importKey, JSON.stringify({ file: jsonPath, messages: imported, at: Date.now() }));
  });
  return { messages: imported, alreadyImported, renamedTo: moveAside(jsonPath) };
}

/** The entries of a pickleDB object, or of a TinyDB file's `_default` table. */
function entriesOf(parsed: unknown, onSkipped?: (key: string, reason: string) => void): [string, unknown][] {
  if (!isObject(parsed)) throw new Error("not a JSON object");
  const table = parsed._default;
  if (!isObject(table) || !Object.values(table).every(isObject)) return Object.entries(parsed);
  for (const name of Object.keys(parsed)) {
    if (name !== "_default") onSkipped?.(name, "a TinyDB table other than _default (the SDK kept its messages in _default)");
  }
  return Object.entries(table);
}

/** One old entry as the ingress message it was. */
function oldMessage(value: unknown, defaultTopic: string, fallbackTime: number) {
  const entry = isObject(value) ? value : {};
  const mqtt = isObject(entry.message) && "payload" in entry.message ? entry.message : undefined;
  const seconds = entry.timestamp;
  let receivedAt = typeof seconds === "number" && seconds > 0 ? (seconds >= MILLISECONDS_FROM ? seconds : seconds * 1000) : fallbackTime;
  if (!Number.isFinite(receivedAt) || receivedAt > 8.64e15) receivedAt = fallbackTime;
  return {
    topic: typeof mqtt?.topic === "string" && mqtt.topic ? mqtt.topic : defaultTopic,
    payload: Buffer.from(JSON.stringify(mqtt ? mqtt.payload : value) ?? "null"),
    qos: mqtt?.pos === 0 || mqtt?.pos === 2 ? mqtt.pos : 1,
    retain: mqtt?.retain === 1 || mqtt?.retain === true,
    receivedAt: Math.round(receivedAt),
  };
}

/** Renames `path` to the first free `<path>.imported`, `.imported.2`, ...; undefined when it is gone already. */
function moveAside(path: string): string | undefined {
  for (let n = 1; ; n++) {
    const target = n === 1 ? `${path}.imported` : `${path}.imported.${n}`;
    if (pathExists(target)) continue;
    try {
      renameSync(path, target);
      return target;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}
