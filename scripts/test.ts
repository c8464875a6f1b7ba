/**
 * `npm test`: builds the host binary once (integration tests run it, as a user would), then
 * runs the whole bun test suite and ends with one plain summary line, `N passed, N failed`,
 * so a run that executed no test is visible to CI.
 *
 * The suite runs as two `bun test` processes side by side (FLASHLEX_TEST_SHARDS, default 2):
 * most integration tests wait on brokers, clusters and child processes rather than compute, so
 * two shards finish in about two thirds of the time on two cores. Files are spread by a rough
 * weight (below) so both shards end together; the first shard's output streams live, each other
 * shard's follows as soon as the ones before it are done, and meanwhile says every
 * PROGRESS_EVERY_MS how far it is (a line `(shard 2 of 2, shown after shard 1: 412 passed, 0
 * failed so far)`), so a failure there is not first seen at the end. `npm test -- FILE...` runs
 * just those files in one process.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { summariseTally } from "../test/support/tally.ts";

const root = join(import.meta.dir, "..");
const bun = process.execPath;

/**
 * Seconds a file took in a full run on two cores (setup included), for the ones far above the
 * rest; any other file counts as 5. Only the balance between shards depends on these.
 */
const WEIGHTS: Record<string, number> = {
  "test/integration/renewal.test.ts": 70,
  "test/integration/lifecycle.test.ts": 60,
  "test/integration/rabbitmq-cluster.test.ts": 60,
  "test/integration/several-hubs.test.ts": 60,
  "test/integration/targets.test.ts": 35,
  "test/integration/self-update-arm64.test.ts": 35, // measured alone; qemu, so mostly compute
  "test/integration/mosquitto-revocation.test.ts": 25,
  "test/integration/identity.test.ts": 18,
  "test/integration/mqtt-faults.test.ts": 15,
  "test/integration/bad-inputs.property.test.ts": 15,
};
/**
 * The bound of a test that sets none. bun reads it only from the command line (a `timeout` in
 * bunfig.toml's [test] is ignored; its own default is 5 s), while the suite's helpers wait longer
 * than that (waitFor 15 s, waitUntil 10 s): two thirds of the tests set no bound and were cut at
 * 5 s, which a slow machine reaches.
 */
const DEFAULT_TEST_TIMEOUT_MS = 60_000;
/** How often a shard whose output is held back says how far it is. */
const PROGRESS_EVERY_MS = 30_000;
/** Files that must not run at the same time: each starts a three-node RabbitMQ cluster. */
const SAME_SHARD = ["test/integration/rabbitmq-cluster.test.ts", "test/integration/several-hubs.test.ts"];

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
const shardCount = Math.max(1, Number(process.env.FLASHLEX_TEST_SHARDS ?? 2) || 1);
const shards = args.length ? [args] : partition(testFiles(), shardCount);
// The reliability tally (test/support/tally.ts): tests append to it, this script sums it.
const tallyDir = mkdtempSync(join(tmpdir(), "flashlex-tally-"));
const tallyFile = join(tallyDir, "tally.jsonl");

interface ShardResult {
  code: number;
  passed: number;
  failed: number;
  skipped: number;
  /** Each failed test's `(fail)` line with the error bun printed before it. */
  failures: string[];
}

/** Output of shard i waits until every shard before it has printed everything. */
const printedUpTo = shards.map(() => Promise.withResolvers<void>());
const results = await Promise.all(shards.map((files, i) => runShard(files, i)));
const sum = (key: "passed" | "failed" | "skipped") => results.reduce((total, r) => total + r[key], 0);
const passed = sum("passed");
const failed = sum("failed");
const skipped = sum("skipped");
// CI keeps only the end of the log: the failures are repeated here, where it is kept.
const failures = results.flatMap((r) => r.failures);
if (failures.length) console.log(`\nthe ${failures.length} failed test(s), repeated:\n${failures.join("\n\n")}`);
if (shards.length > 1) console.log(`\nall ${shards.length} shards:\n ${passed} pass\n ${skipped} skip\n ${failed} fail`);
console.log(summariseTally(existsSync(tallyFile) ? readFileSync(tallyFile, "utf8") : ""));
rmSync(tallyDir, { recursive: true, force: true });
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);

async function runShard(files: string[], index: number): Promise<ShardResult> {
  const proc = Bun.spawn([bun, "test", "--timeout", String(DEFAULT_TEST_TIMEOUT_MS), ...files], {
    cwd: root,
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, FLASHLEX_BIN: binary, FLASHLEX_TALLY_FILE: tallyFile },
  });
  // bun test writes results to stderr; pass both streams through (held back until the shards
  // before this one are done) and keep this shard's own tail to count.
  let tail = "";
  const failures = new FailureCollector();
  let held: { text: string; out: NodeJS.WriteStream }[] | undefined = index === 0 ? undefined : [];
  const so = { passed: 0, failed: 0, partial: "" };
  const progress = held
    ? setInterval(() => {
        if (held) console.log(`(shard ${index + 1} of ${shards.length}, shown after shard ${index}: ${so.passed} passed, ${so.failed} failed so far)`);
      }, PROGRESS_EVERY_MS)
    : undefined;
  if (held) {
    const waitFor = printedUpTo[index - 1]!.promise;
    void waitFor.then(() => {
      for (const piece of held!) piece.out.write(piece.text);
      held = undefined;
    });
  }
  async function pump(stream: ReadableStream<Uint8Array>, out: NodeJS.WriteStream) {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      const text = decoder.decode(chunk, { stream: true });
      if (held) held.push({ text, out });
      else out.write(text);
      tail = (tail + text).slice(-4000);
      if (out === process.stderr) {
        failures.add(text);
        // whole lines only: a chunk may end inside one
        const lines = (so.partial + text).split("\n");
        so.partial = lines.pop() ?? "";
        for (const line of lines) {
          if (line.startsWith("(pass) ")) so.passed++;
          else if (line.startsWith("(fail) ")) so.failed++;
        }
      }
    }
  }
  await Promise.all([pump(proc.stdout, process.stdout), pump(proc.stderr, process.stderr)]);
  clearInterval(progress);
  const code = await proc.exited;
  if (index > 0) await printedUpTo[index - 1]!.promise;
  if (held) for (const piece of held) piece.out.write(piece.text);
  held = undefined;
  printedUpTo[index]!.resolve();
  const count = (word: string) => Number(tail.match(new RegExp(`^\\s*(\\d+) ${word}$`, "m"))?.[1] ?? 0);
  const failedHere = count("fail");
  // A shard that crashed without its summary counts as one failure.
  return { code, passed: count("pass"), failed: failedHere + (code !== 0 && failedHere === 0 ? 1 : 0), skipped: count("skip"), failures: failures.found };
}

/**
 * Finds bun test's `(fail)` lines in a shard's output, each with the lines bun printed for it
 * since the previous result line (the error and its source excerpt), at most 40 of them, and
 * the `  ^ this test timed out after N ms.` bun prints after it; and each `# Unhandled error
 * between tests` block (bun counts it as a failure without a `(fail)` line).
 */
class FailureCollector {
  readonly found: string[] = [];
  #partial = "";
  #since: string[] = [];
  #file = "";
  /** Past bun's own closing list (`N tests failed:` and each `(fail)` line again): not collected twice. */
  #summary = false;
  #lastWasFail = false;
  /** An unhandled-error block being read: its lines, and how many of its two ---- rules were seen. */
  #unhandled: { lines: string[]; rules: number } | undefined;

  add(text: string): void {
    const lines = (this.#partial + text).split("\n");
    this.#partial = lines.pop() ?? "";
    for (const line of lines) {
      if (/^\d+ tests? failed:$/.test(line)) this.#summary = true;
      if (this.#summary) continue;
      if (line === "# Unhandled error between tests") this.#unhandled = { lines: [this.#file], rules: 0 };
      if (this.#unhandled) {
        const block = this.#unhandled;
        if (block.lines.length < 42) block.lines.push(line);
        if (/^-{10,}$/.test(line) && ++block.rules === 2) {
          this.found.push(block.lines.join("\n"));
          this.#unhandled = undefined;
          this.#since = [];
        }
        continue;
      }
      if (line.startsWith("  ^ ") && this.#lastWasFail) {
        this.found[this.found.length - 1] += `\n${line}`;
        continue;
      }
      this.#lastWasFail = /^\(fail\) /.test(line);
      if (line.endsWith(".test.ts:")) this.#file = line;
      if (/^\(fail\) /.test(line)) this.found.push([this.#file, ...this.#since.slice(-40), line].join("\n"));
      if (/^\((pass|fail|skip|todo)\) /.test(line) || line.endsWith(".test.ts:")) this.#since = [];
      else this.#since.push(line);
    }
  }
}

/** Every test file under test/, as paths from the repository root. */
function testFiles(): string[] {
  return readdirSync(join(root, "test"), { recursive: true, encoding: "utf8" })
    .filter((path) => path.endsWith(".test.ts"))
    .map((path) => `test/${path}`)
    .sort();
}

/** Spreads `files` over `count` shards, heaviest first onto the lightest shard (SAME_SHARD kept together). */
function partition(files: string[], count: number): string[][] {
  const weight = (file: string) => WEIGHTS[file] ?? 5;
  const together = files.filter((f) => SAME_SHARD.includes(f));
  const units: string[][] = [...(together.length ? [together] : []), ...files.filter((f) => !SAME_SHARD.includes(f)).map((f) => [f])];
  units.sort((a, b) => b.reduce((s, f) => s + weight(f), 0) - a.reduce((s, f) => s + weight(f), 0));
  const shardsOut = Array.from({ length: Math.min(count, units.length) }, () => ({ files: [] as string[], load: 0 }));
  for (const unit of units) {
    const lightest = shardsOut.reduce((min, s) => (s.load < min.load ? s : min));
    lightest.files.push(...unit);
    lightest.load += unit.reduce((s, f) => s + weight(f), 0);
  }
  return shardsOut.map((s) => s.files.sort());
}

function hostBinaryName(): string {
  const arch = process.arch === "arm64" ? "arm64" : "x64";
  return `flashlex-linux-${arch}`;
}
