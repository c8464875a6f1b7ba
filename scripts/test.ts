/**
 * `npm test`: builds the host binary once (integration tests run it, as a user would), then
 * runs the whole bun test suite and ends with one plain summary line, `N passed, N failed`,
 * so a run that executed no test is visible to CI.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { summariseTally } from "../test/support/tally.ts";

const root = join(import.meta.dir, "..");
const bun = process.execPath;

function step(args: string[], env: Record<string, string | undefined> = process.env): number {
  return Bun.spawnSync([bun, ...args], { cwd: root, stdout: "inherit", stderr: "inherit", env }).exitCode;
}

const binary = join(root, "dist", hostBinaryName());
if (step(["scripts/build.ts", "--host"]) !== 0 || !existsSync(binary)) {
  console.error("test: building the host binary failed");
  console.log("0 passed, 1 failed");
  process.exit(1);
}

const args = process.argv.slice(2);
// The reliability tally (test/support/tally.ts): tests append to it, this script sums it.
const tallyDir = mkdtempSync(join(tmpdir(), "flashlex-tally-"));
const tallyFile = join(tallyDir, "tally.jsonl");
const proc = Bun.spawn([bun, "test", ...(args.length ? args : ["test/"])], {
  cwd: root,
  stdout: "pipe",
  stderr: "pipe",
  env: { ...process.env, FLASHLEX_BIN: binary, FLASHLEX_TALLY_FILE: tallyFile },
});

// bun test writes results to stderr; pass both streams through and keep the tail to count.
let tail = "";
async function pump(stream: ReadableStream<Uint8Array>, out: NodeJS.WriteStream) {
  const decoder = new TextDecoder();
  for await (const chunk of stream) {
    const text = decoder.decode(chunk, { stream: true });
    out.write(text);
    tail = (tail + text).slice(-4000);
  }
}
await Promise.all([pump(proc.stdout, process.stdout), pump(proc.stderr, process.stderr)]);
const code = await proc.exited;

const count = (word: string) => Number(tail.match(new RegExp(`^\\s*(\\d+) ${word}$`, "m"))?.[1] ?? 0);
const passed = count("pass");
const failed = count("fail") + (code !== 0 && count("fail") === 0 ? 1 : 0);
const skipped = count("skip");
console.log(summariseTally(existsSync(tallyFile) ? readFileSync(tallyFile, "utf8") : ""));
rmSync(tallyDir, { recursive: true, force: true });
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
process.exit(code === 0 && passed > 0 ? 0 : 1);

function hostBinaryName(): string {
  const arch = process.arch === "arm64" ? "arm64" : "x64";
  return `flashlex-linux-${arch}`;
}
