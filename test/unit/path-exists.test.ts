import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileOnTheWay, pathExists } from "../../src/shared/path-exists.ts";

const dir = mkdtempSync(join(tmpdir(), "flashlex-path-exists-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("a file, a directory and a link to one exist", () => {
  writeFileSync(join(dir, "file"), "x");
  symlinkSync(join(dir, "file"), join(dir, "link"));
  expect(pathExists(join(dir, "file"))).toBe(true);
  expect(pathExists(dir)).toBe(true);
  expect(pathExists(join(dir, "link"))).toBe(true);
});

test("nothing there (ENOENT), a dangling link, and a path through a file (ENOTDIR) do not", () => {
  writeFileSync(join(dir, "plain"), "x");
  symlinkSync(join(dir, "gone"), join(dir, "dangling"));
  expect(pathExists(join(dir, "none"))).toBe(false);
  expect(pathExists(join(dir, "dangling"))).toBe(false);
  expect(pathExists(join(dir, "plain", "below"))).toBe(false);
});

test("a path that cannot be looked at is thrown, not called missing (existsSync said false)", () => {
  symlinkSync(join(dir, "loop-b"), join(dir, "loop-a"));
  symlinkSync(join(dir, "loop-a"), join(dir, "loop-b"));
  expect(() => pathExists(join(dir, "loop-a"))).toThrow(expect.objectContaining({ code: "ELOOP" }));
  expect(() => pathExists(join(dir, "x".repeat(300)))).toThrow(expect.objectContaining({ code: "ENAMETOOLONG" }));
});

test("fileOnTheWay names the file a path goes through, at any depth, and nothing for a path that only lacks directories", () => {
  writeFileSync(join(dir, "in-the-way"), "x");
  expect(fileOnTheWay(join(dir, "in-the-way", "sub"))).toBe(join(dir, "in-the-way"));
  expect(fileOnTheWay(join(dir, "in-the-way", "sub", "deeper", "x.zip"))).toBe(join(dir, "in-the-way"));
  expect(fileOnTheWay(join(dir, "not-yet", "sub"))).toBeUndefined();
  expect(fileOnTheWay(join(dir, "in-the-way"))).toBeUndefined(); // the path itself is not looked at
  expect(fileOnTheWay("/")).toBeUndefined();
  // as written, as the kernel walks it: a trailing slash, `..` after the file, a relative path
  expect(fileOnTheWay(`${join(dir, "in-the-way")}/`)).toBe(join(dir, "in-the-way"));
  expect(fileOnTheWay(`${join(dir, "in-the-way")}/../in-the-way`)).toBe(join(dir, "in-the-way"));
  expect(fileOnTheWay(`${dir}//in-the-way/./x`)).toBe(`${dir}//in-the-way`);
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    expect(fileOnTheWay("in-the-way/sub")).toBe("in-the-way");
  } finally {
    process.chdir(cwd);
  }
});
