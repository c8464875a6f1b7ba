/**
 * src/hub/zip-writer.ts against three readers that share no code with it: fflate's unzip,
 * Info-ZIP's `unzip -t` (Debian's unzip) and the byte layout itself (modes, methods, ZIP64).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unzipSync } from "fflate";
import { ZipWriter } from "../../src/hub/zip-writer.ts";

const dir = mkdtempSync(join(tmpdir(), "flashlex-zip-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const at = new Date(2019, 6, 20, 1, 45, 44);
const encoder = new TextEncoder();

function build(add: (zip: ZipWriter) => Uint8Array[]): Uint8Array {
  const zip = new ZipWriter();
  const parts = [...add(zip), ...zip.finish()];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) (out.set(part, offset), (offset += part.length));
  expect(zip.size).toBe(out.length);
  return out;
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

/** name → [method, unix mode, version needed] from the central directory. */
function centralEntries(bytes: Uint8Array): Record<string, [number, number, number]> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let eocd = bytes.length - 22;
  while (view.getUint32(eocd, true) !== 0x06054b50) eocd--;
  let offset = view.getUint32(eocd + 16, true);
  const entries: Record<string, [number, number, number]> = {};
  while (view.getUint32(offset, true) === 0x02014b50) {
    const nameLength = view.getUint16(offset + 28, true);
    const name = new TextDecoder().decode(bytes.subarray(offset + 46, offset + 46 + nameLength));
    entries[name] = [view.getUint16(offset + 10, true), view.getUint32(offset + 38, true) >>> 16, view.getUint16(offset + 6, true)];
    offset += 46 + nameLength + view.getUint16(offset + 30, true) + view.getUint16(offset + 32, true);
  }
  return entries;
}

describe("ZipWriter", () => {
  test("files read back byte for byte; compressible ones are deflated, tiny ones stored; modes are Unix", () => {
    const big = encoder.encode(JSON.stringify({ text: "flashlex ".repeat(5000) }, null, 2));
    const tiny = encoder.encode("{}");
    const utf8 = encoder.encode('{"t": "température"}');
    const bytes = build((zip) => [
      zip.file("folder/big.json", big, { mtime: at }),
      zip.file("folder/tiny.json", tiny, { mtime: at }),
      zip.file("folder/é.json", utf8, { mtime: at, mode: 0o600 }),
      zip.file("folder/empty.json", new Uint8Array(), { mtime: at }),
    ]);
    expect(bytes.length).toBeLessThan(big.length / 10);
    const files = unzipSync(bytes);
    expect(files["folder/big.json"]).toEqual(big);
    expect(files["folder/tiny.json"]).toEqual(tiny);
    expect(files["folder/é.json"]).toEqual(utf8);
    expect(files["folder/empty.json"]).toEqual(new Uint8Array());
    const entries = centralEntries(bytes);
    expect(entries["folder/big.json"]).toEqual([8, 0o100644, 20]);
    expect(entries["folder/tiny.json"]).toEqual([0, 0o100644, 20]);
    expect(entries["folder/é.json"]![1]).toBe(0o100600);
    infoZipTest(bytes, "files.zip");
  });

  test("a folder entry alone is a valid zip with the folder in it", () => {
    const bytes = build((zip) => [zip.directory("only-a-folder", { mtime: at })]);
    expect(Object.keys(unzipSync(bytes))).toEqual(["only-a-folder/"]);
    expect(centralEntries(bytes)["only-a-folder/"]![1]).toBe(0o40755);
    infoZipTest(bytes, "folder.zip");
  });

  test("past 65,535 entries the ZIP64 end records carry the count: every reader sees all 70,000", () => {
    const count = 70_000;
    const bytes = build((zip) => Array.from({ length: count }, (_, i) => zip.file(`m/${i}.json`, encoder.encode(`{"i":${i}}`), { mtime: at })));
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    // EOCD says 0xFFFF; the ZIP64 record before the locator has the real count.
    expect(view.getUint16(bytes.length - 22 + 10, true)).toBe(0xffff);
    expect(view.getUint32(bytes.length - 22 - 20, true)).toBe(0x07064b50);
    const files = unzipSync(bytes);
    expect(Object.keys(files)).toHaveLength(count);
    expect(new TextDecoder().decode(files[`m/${count - 1}.json`])).toBe(`{"i":${count - 1}}`);
    expect(infoZipTest(bytes, "zip64.zip")).toContain("No errors detected");
  });

  test("nothing may follow finish()", () => {
    const zip = new ZipWriter();
    zip.finish();
    expect(() => zip.file("late.json", new Uint8Array(), { mtime: at })).toThrow("already finished");
  });
});
