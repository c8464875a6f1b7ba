import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { watchFileEdits, watchFileIdentity } from "../../src/shared/file-watch.ts";

const dir = mkdtempSync(join(tmpdir(), "flashlex-file-watch-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const rounds = (n: number) => new Promise((resolve) => setTimeout(resolve, n * 20 + 10));

test("a file replaced under its name is reported", async () => {
  const file = join(dir, "replaced.db");
  writeFileSync(file, "a");
  const gone: string[] = [];
  const stop = watchFileIdentity([file], (f) => gone.push(f), 20);
  try {
    await rounds(2);
    expect(gone).toEqual([]);
    writeFileSync(`${file}.new`, "b");
    renameSync(`${file}.new`, file);
    await rounds(3);
    expect(gone).toEqual([file]);
  } finally {
    stop();
  }
});

test("a round that cannot look (ELOOP, as EACCES when a directory's mode changes for a moment) is no sign the file went", async () => {
  // the watched file is reached through a link that is made a loop for a few rounds, then restored
  const real = join(dir, "real");
  mkdirSync(real);
  writeFileSync(join(real, "hub.db"), "x");
  const link = join(dir, "home");
  symlinkSync(real, link);
  const file = join(link, "hub.db");
  const gone: string[] = [];
  const stop = watchFileIdentity([file], (f) => gone.push(f), 20);
  try {
    unlinkSync(link);
    symlinkSync(join(dir, "loop"), link);
    symlinkSync(link, join(dir, "loop"));
    await rounds(4);
    unlinkSync(link);
    symlinkSync(real, link);
    await rounds(3);
    expect(gone).toEqual([]); // it was "removed or moved while the hub ran", and the hub stopped
  } finally {
    stop();
  }
});

test("edits of a file read once at the start are reported as they come: in place or replaced, undone; a touch, a moment unreadable or gone says nothing (new-user pass 24, F3)", async () => {
  const file = join(dir, "config.yml");
  writeFileSync(file, "env: dev\n");
  const edits: boolean[] = [];
  const stop = watchFileEdits(file, (differs) => edits.push(differs), 20);
  try {
    await rounds(2);
    utimesSync(file, new Date(), new Date(Date.now() + 5000)); // touched: same bytes
    await rounds(2);
    expect(edits).toEqual([]);
    writeFileSync(file, "env: prod\n"); // in place (an editor that writes over the file)
    await rounds(2);
    expect(edits).toEqual([true]);
    writeFileSync(`${file}.new`, "env: test\n"); // replaced under its name (sed -i)
    renameSync(`${file}.new`, file);
    await rounds(2);
    expect(edits).toEqual([true, true]);
    unlinkSync(file); // gone for a moment (an editor's save): nothing to say
    await rounds(2);
    writeFileSync(file, "env: dev\n"); // back as it was read
    await rounds(2);
    expect(edits).toEqual([true, true, false]);
  } finally {
    stop();
  }
});
