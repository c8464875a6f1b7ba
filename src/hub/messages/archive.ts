import { ENVELOPE_DEPTH, jsonNestingDepth, MAX_JSON_DEPTH } from "../../protocol/limits.ts";
import { type AtomicWriteOptions, writeFileAtomically } from "../../shared/files.ts";
import type { HubStore, MessageQuery, MessageRecord } from "../store/hub-store.ts";
import { ArchiveZip } from "./archive-zip.ts";
import { openMessagePages } from "./pages.ts";

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

/**
 * `m` with those keys, its payload parsed (`fltimestamp` in Unix seconds). A payload that is not
 * JSON (a damaged row, or one another program wrote) is the stored text as a JSON string: one
 * such row must not fail a whole page of messages (it was a 500) or an archive.
 */
export function storedMessageJson(m: MessageRecord, ownerId: string): StoredMessageJson {
  return {
    payload: parsedPayload(m.payload),
    flthingspk: m.thingId,
    messagetype: m.messagetype,
    fltimestamp: m.fltimestamp,
    datecreated: m.datecreated,
    fluserspk: ownerId,
    flmessagespk: m.flmessagespk,
  };
}

/** `<thing id>_messages_<YYYY-MM-DD>`: the folder name of the guide's download. */
export function archiveFolderName(thingId: string, at: Date): string {
  return `${thingId}_messages_${at.toISOString().slice(0, 10)}`;
}

/** Stands for the payload while the rest of a message is pretty-printed (see `storedMessageText`). */
const RAW_PAYLOAD = "\u0000flashlex raw payload\u0000";

/**
 * One message's file in the archive: pretty-printed JSON (two spaces), as the old exports were.
 * A payload nested deeper than the protocol allows (stored before the limit existed) is copied
 * as stored, compact: pretty-printing indents every level, so its cost grows with the square of
 * the depth (a 30,000-deep array took 30 s and 3.5 GB). A payload that is not JSON at all (a
 * damaged row) is kept as a JSON string rather than failing the whole archive.
 */
export function storedMessageText(m: MessageRecord, ownerId: string): string {
  const maxDepth = MAX_JSON_DEPTH + ENVELOPE_DEPTH; // ingress is stored as {"message": ...}
  const shell = storedMessageJson({ ...m, payload: "null" }, ownerId);
  if (jsonNestingDepth(m.payload, maxDepth) > maxDepth) {
    // The marker cannot occur in the other fields (ids, numbers, dates); the payload is JSON
    // already (it was parsed when it was stored).
    const text = JSON.stringify({ ...shell, payload: RAW_PAYLOAD }, null, 2);
    return `${text.replace(JSON.stringify(RAW_PAYLOAD), () => m.payload)}\n`;
  }
  return `${JSON.stringify({ ...shell, payload: parsedPayload(m.payload) }, null, 2)}\n`;
}

/** The stored payload parsed, or the text itself when it is not JSON (see storedMessageJson). */
function parsedPayload(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * What an archive is read in: pages of about this many bytes at most (rows at the payload
 * limit). Measured on the compiled hub: 1 MiB pages left it 31 MB larger after a 40 MB archive,
 * 4 MiB pages 47 MB.
 */
export const ARCHIVE_PAGE_BYTES = 1024 * 1024;
const MAX_PAGE_ROWS = 500;

/** Rows per page so that a page of messages at the payload limit stays near ARCHIVE_PAGE_BYTES. */
export function archivePageRows(payloadLimitBytes: number): number {
  return Math.max(1, Math.min(MAX_PAGE_ROWS, Math.floor(ARCHIVE_PAGE_BYTES / Math.max(1, payloadLimitBytes))));
}

export interface ArchiveOptions {
  thingId: string;
  ownerId: string;
  query: MessageQuery;
  /** the archive's date: its folder name and every entry's time */
  at: Date;
  /** the hub's payload limit, which sizes the pages read from the store */
  payloadLimitBytes: number;
}

export interface Archive {
  /** `<folder>.zip` */
  fileName: string;
  /** messages in range when the archive was opened (those deleted meanwhile are left out) */
  count: number;
  /** the zip's bytes, produced as they are read; read once */
  chunks: AsyncGenerator<Uint8Array, void, undefined>;
  /** messages written so far */
  written(): number;
}

/**
 * The export zip, streamed: one pretty-printed `<flmessagespk>.json` per message, in one folder
 * named `<thing id>_messages_<date>` (an empty range gives the folder alone, so "no messages" is
 * visible, not an error). Messages are read from the store in keyset pages, so memory does not
 * grow with the data, only with the number of messages: about one page (ARCHIVE_PAGE_BYTES at the
 * payload limit) plus what the zip writer keeps per entry until the end (ArchiveZip: about 500
 * bytes per message, and about 1.1 KB more for a moment while it writes the central directory).
 * A page is read when the reader asks for more, so a slow reader holds the hub to one page. The
 * archive holds the messages in range when it was opened; one stored meanwhile is left for the
 * next archive.
 */
export async function openArchive(store: HubStore, opts: ArchiveOptions): Promise<Archive> {
  const folder = archiveFolderName(opts.thingId, opts.at);
  const { count, pages } = await openMessagePages(store, opts.thingId, opts.query, archivePageRows(opts.payloadLimitBytes));
  let written = 0;

  async function* chunks(): AsyncGenerator<Uint8Array, void, undefined> {
    const zip = new ArchiveZip(opts.at);
    try {
      let sinceCollection = 0;
      for await (const page of pages) {
        for (const message of page) await zip.file(`${folder}/${message.flmessagespk}.json`, storedMessageText(message, opts.ownerId));
        written += page.length;
        const chunk = zip.take();
        sinceCollection += chunk.length;
        if (sinceCollection > COLLECT_EVERY_BYTES) {
          sinceCollection = 0;
          collectGarbage();
        }
        // One page in, its zip out: the next page is read when the reader asks for more.
        if (chunk.length > 0) yield chunk;
      }
      if (written === 0) await zip.directory(`${folder}/`);
      yield await zip.finish();
    } finally {
      zip.destroy(); // a no-op once finished; otherwise the reader left or a page failed
    }
  }

  return { fileName: `${folder}.zip`, count, chunks: chunks(), written: () => written };
}

/**
 * Rendering a message makes a few copies of it (row, parsed value, pretty text, bytes,
 * compressed bytes, and zip-stream's per-entry streams) that are garbage a moment later. JSC collects by heap growth, so over a long
 * archive the garbage piles up: measured on the compiled hub, +55 MB of peak RSS for a 197 MB
 * archive without this, +34 MB with a full collection every 4 MiB of zip (about 15% slower).
 * Bun only: Node (the armv7 build) has no collector call without a flag.
 */
const COLLECT_EVERY_BYTES = 4 * 1024 * 1024;

function collectGarbage(): void {
  const bun = (globalThis as { Bun?: { gc?: (force: boolean) => void } }).Bun;
  bun?.gc?.(true);
}

/**
 * Writes an archive to `file`, mode 0600 whatever the umask (it holds the thing's data), through
 * a temporary file in the same folder that is synced and renamed into place at the end: a
 * failed or stopped export leaves nothing, and an existing file is replaced only by a complete
 * one (shared/files.ts `writeFileAtomically`, which also removes temporary files of `file` that a
 * killed export left); with `options.exclusive` a file there is never replaced (EEXIST, or the
 * next of `options.nextName`). Returns the file written and the number of messages in it. Throws what the file system throws (ENOSPC, EACCES, EEXIST),
 * or `options.signal`'s reason once it is aborted.
 */
export async function writeArchiveFile(archive: Archive, file: string, options: AtomicWriteOptions = {}): Promise<{ file: string; count: number }> {
  const written = await writeFileAtomically(file, archive.chunks, 0o600, options);
  return { file: written, count: archive.written() };
}
