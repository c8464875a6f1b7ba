/**
 * The archive's zip (src/hub/messages/archive-zip.ts, written by zip-stream) as `openArchive` makes it,
 * read by three readers that share no code with the writer: fflate's unzip, Info-ZIP's
 * `unzip -t` (Debian's unzip) and the byte layout itself (methods, modes, ZIP64 end records);
 * and the pace: a page is read from the store only when the reader asks for more.
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unzipSync } from "fflate";
import { type Archive, archiveFolderName, openArchive, storedMessageText } from "../../src/hub/messages/archive.ts";
import { ArchiveZip } from "../../src/hub/messages/archive-zip.ts";
import type { HubStore, MessageRecord } from "../../src/hub/store/hub-store.ts";
import { openHubStore } from "../../src/hub/store/open-store.ts";
import { pullStream } from "../../src/shared/pull-stream.ts";
import { storeThing } from "../support/hub-messages.ts";
import { tally } from "../support/tally.ts";

const OWNER = "ecd13b11-6d91-4e8e-9156-60e451a3c975";
const at = new Date(2019, 6, 20, 1, 45, 44);
let dir: string;
let database: string;
let store: HubStore;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "flashlex-zip-"));
  database = join(dir, "hub.db");
  store = await openHubStore(database, { create: true });
});
afterAll(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

function message(thingId: string, i: number, payload: unknown): MessageRecord {
  return {
    flmessagespk: randomUUID(),
    thingId,
    messagetype: "egress",
    payload: JSON.stringify(payload),
    fltimestamp: 1_563_587_144 + i,
    datecreated: "2019-07-20T01:45:44Z",
  };
}

async function archiveBytes(archive: Archive): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const chunk of archive.chunks) parts.push(chunk);
  return Buffer.concat(parts);
}

/** `unzip -t` on the bytes: Info-ZIP's own check of every entry's CRC and of the directory. */
function infoZipTest(bytes: Uint8Array, name: string): string {
  const file = join(dir, name);
  writeFileSync(file, bytes);
  const result = Bun.spawnSync(["unzip", "-tq", file]);
  const output = result.stdout.toString() + result.stderr.toString();
  expect(result.exitCode, output).toBe(0);
  return output;
}

/** name → [method, unix mode, platform that made it] from the central directory. */
function centralEntries(bytes: Uint8Array): Record<string, [number, number, number]> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let eocd = bytes.length - 22;
  while (view.getUint32(eocd, true) !== 0x06054b50) eocd--;
  let offset = view.getUint32(eocd + 16, true);
  const entries: Record<string, [number, number, number]> = {};
  while (view.getUint32(offset, true) === 0x02014b50) {
    const nameLength = view.getUint16(offset + 28, true);
    const name = new TextDecoder().decode(bytes.subarray(offset + 46, offset + 46 + nameLength));
    entries[name] = [view.getUint16(offset + 10, true), view.getUint32(offset + 38, true) >>> 16, view.getUint16(offset + 4, true) >> 8];
    offset += 46 + nameLength + view.getUint16(offset + 30, true) + view.getUint16(offset + 32, true);
  }
  return entries;
}

describe("the archive's zip", () => {
  test("every message reads back byte for byte (fflate, unzip -t); pretty JSON is deflated; files are Unix 0644", async () => {
    const { id: thingId } = await storeThing(store, randomUUID());
    const messages = [
      message(thingId, 0, { text: "flashlex ".repeat(5000) }),
      message(thingId, 1, {}),
      message(thingId, 2, { t: "température", emoji: "\u{1F321}" }),
    ];
    for (const m of messages) await store.insertMessage(m);
    const archive = await openArchive(store, { thingId, ownerId: OWNER, query: {}, at, payloadLimitBytes: 256 * 1024 });
    const bytes = await archiveBytes(archive);
    const folder = archiveFolderName(thingId, at);
    const files = unzipSync(bytes);
    expect(Object.keys(files)).toEqual(messages.map((m) => `${folder}/${m.flmessagespk}.json`));
    for (const m of messages)
      expect(new TextDecoder().decode(files[`${folder}/${m.flmessagespk}.json`])).toBe(storedMessageText({ ...m, delivery: null }, OWNER));
    expect(bytes.length).toBeLessThan(45_000 / 10); // the 45 KB text is deflated
    for (const [method, mode, madeBy] of Object.values(centralEntries(bytes))) expect([method, mode, madeBy]).toEqual([8, 0o100644, 3]);
    infoZipTest(bytes, "files.zip");
  });

  test("an empty range is a valid zip with the folder alone, Unix 0755", async () => {
    const thingId = randomUUID();
    const bytes = await archiveBytes(await openArchive(store, { thingId, ownerId: OWNER, query: {}, at, payloadLimitBytes: 256 * 1024 }));
    const folder = `${archiveFolderName(thingId, at)}/`;
    expect(Object.keys(unzipSync(bytes))).toEqual([folder]);
    expect(centralEntries(bytes)[folder]).toEqual([0, 0o40755, 3]);
    infoZipTest(bytes, "folder.zip");
  });

  test("past 65,535 entries the ZIP64 end records carry the count: every reader sees all 70,000 messages", async () => {
    const count = 70_000;
    const thingId = randomUUID();
    // Stored in one transaction straight into the hub's table (70,000 single inserts take long).
    const db = new Database(database);
    const insert = db.prepare("INSERT INTO messages (flmessagespk, thing_id, messagetype, payload, fltimestamp, datecreated) VALUES (?, ?, 'egress', ?, ?, ?)");
    db.transaction(() => {
      for (let i = 0; i < count; i++) insert.run(`${String(i).padStart(8, "0")}-0000-4000-8000-000000000000`, thingId, `{"i":${i}}`, i, "2019-07-20T01:45:44Z");
    })();
    db.close();

    // A 2 KiB payload limit: pages of 500 rows (the default limit would read 4 rows a page).
    const archive = await openArchive(store, { thingId, ownerId: OWNER, query: {}, at, payloadLimitBytes: 2048 });
    const bytes = await archiveBytes(archive);
    expect(archive.written()).toBe(count);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    // The end record says 0xFFFF; the ZIP64 record before the locator has the real count.
    expect(view.getUint16(bytes.length - 22 + 10, true)).toBe(0xffff);
    expect(view.getUint32(bytes.length - 22 - 20, true)).toBe(0x07064b50);
    const zip64Record = Number(view.getBigUint64(bytes.length - 22 - 20 + 8, true));
    expect(view.getUint32(zip64Record, true)).toBe(0x06064b50);
    expect(Number(view.getBigUint64(zip64Record + 32, true))).toBe(count);

    const files = unzipSync(bytes);
    const names = Object.keys(files);
    expect(names).toHaveLength(count);
    const last = JSON.parse(new TextDecoder().decode(files[names[count - 1]!]));
    expect(last).toMatchObject({ flthingspk: thingId, payload: { i: count - 1 } });
    expect(infoZipTest(bytes, "zip64.zip")).toContain("No errors detected");
    const listing = Bun.spawnSync(["unzip", "-Z1", join(dir, "zip64.zip")])
      .stdout.toString()
      .trim()
      .split("\n");
    expect(listing).toHaveLength(count);
  }, 60_000);

  test("pages are read as the reader pulls: one pull, one page; a reader that leaves stops the reading", async () => {
    const { id: thingId } = await storeThing(store, randomUUID());
    for (let i = 0; i < 12; i++) await store.insertMessage(message(thingId, i, { i }));
    let pages = 0;
    const counting: HubStore = Object.create(store, {
      messagePage: { value: async (...args: Parameters<HubStore["messagePage"]>) => (pages++, store.messagePage(...args)) },
    });
    // 3 rows per page: 4 pages of 12 messages, of which the reader takes two.
    const archive = await openArchive(counting, { thingId, ownerId: OWNER, query: {}, at, payloadLimitBytes: Math.floor((1024 * 1024) / 3) });
    const reader = pullStream(archive.chunks, (err) => {
      throw err;
    }).getReader();
    expect(pages).toBe(0);
    const first = await reader.read();
    expect(first.done).toBe(false);
    expect(pages).toBe(1);
    await reader.read();
    expect(pages).toBe(2);
    await reader.cancel(); // the client went away half way
    expect(pages).toBe(2);
    expect(archive.written()).toBe(6);
    tally("faults");
  });

  test("nothing may follow finish()", async () => {
    const zip = new ArchiveZip(at);
    await zip.file("a.json", "{}");
    expect((await zip.finish()).length).toBeGreaterThan(0);
    await expect(zip.file("late.json", "{}")).rejects.toThrow("already finished");
  });
});
