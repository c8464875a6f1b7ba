import { zipSync, type ZipOptions } from "fflate";
import type { MessageRecord } from "./hub-store.ts";

/**
 * A stored message as the old cloud exported it (the guide's "Collecting Messages" section):
 * the same keys, in the same order, so scripts written against old exports keep working.
 */
export interface StoredMessageJson {
  payload: unknown;
  flthingspk: string;
  messagetype: "egress" | "ingress";
  fltimestamp: number;
  datecreated: string;
  fluserspk: string;
  flmessagespk: string;
}

export function storedMessageJson(m: MessageRecord, ownerId: string): StoredMessageJson {
  return {
    payload: JSON.parse(m.payload),
    flthingspk: m.thingId,
    messagetype: m.messagetype,
    fltimestamp: m.fltimestamp,
    datecreated: m.datecreated,
    fluserspk: ownerId,
    flmessagespk: m.flmessagespk,
  };
}

/** `2019-07-20T01:45:44Z`: ISO 8601 in UTC, seconds precision, as the old exports had it. */
export function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** `<thing id>_messages_<YYYY-MM-DD>`: the folder name of the guide's download. */
export function archiveFolderName(thingId: string, at: Date): string {
  return `${thingId}_messages_${at.toISOString().slice(0, 10)}`;
}

/** The export zip: one pretty-printed `<flmessagespk>.json` per message, in one folder. */
export function buildArchive(thingId: string, messages: readonly MessageRecord[], ownerId: string, at: Date): { fileName: string; zip: Uint8Array } {
  const folder = archiveFolderName(thingId, at);
  const attrs: ZipOptions = { os: 3, attrs: (0o100644 << 16) >>> 0, mtime: at } as ZipOptions;
  const files: Record<string, [Uint8Array, ZipOptions]> = {};
  const encoder = new TextEncoder();
  for (const m of messages) {
    files[`${folder}/${m.flmessagespk}.json`] = [encoder.encode(JSON.stringify(storedMessageJson(m, ownerId), null, 2) + "\n"), attrs];
  }
  // An empty range still gives a zip with the folder, so "no messages" is visible, not an error.
  if (messages.length === 0) files[`${folder}/`] = [new Uint8Array(), { os: 3, attrs: (0o40755 << 16) >>> 0, mtime: at } as ZipOptions];
  return { fileName: `${folder}.zip`, zip: zipSync(files) };
}
