/**
 * The process around a command (src/cli/process-entry.ts), in real child processes: a command
 * whose promise never settles once the event loop is empty must not pass for one that worked.
 */
import { expect, test } from "bun:test";
import { join } from "node:path";

const ENTRY = join(import.meta.dir, "../../src/cli/process-entry.ts");

async function runScript(body: string): Promise<{ code: number; stderr: string; stdout: string }> {
  const script = `import { runAsProcess } from ${JSON.stringify(ENTRY)};\n${body}`;
  const proc = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "pipe", env: { ...process.env, FLASHLEX_LOG_LEVEL: "" } });
  const timer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, stderr, stdout };
}

test("a command left waiting on nothing (an unref'd timer, a closed socket) exits 70 with one line, not 0 in silence", async () => {
  const result = await runScript(`runAsProcess(() => new Promise((resolve) => setTimeout(() => resolve(0), 60_000).unref()), "bootstrap");`);
  expect(result.code).toBe(70);
  expect(result.stdout).toBe("");
  expect(result.stderr.trim().split("\n")).toEqual([
    "flashlex: bootstrap stopped before it finished, with nothing left to wait on (an internal error in flashlex: please report it)",
  ]);
});

test("a command that settles exits with its code, even with a socket left open; a rejection exits with its kind's code", async () => {
  const settled = await runScript(`import { createServer } from "node:net";
runAsProcess(async () => { createServer().listen(0, "127.0.0.1"); return 69; }, "collect");`);
  expect(settled.code).toBe(69);
  expect(settled.stderr).toBe("");
  const rejected = await runScript(`import { UsageError } from ${JSON.stringify(join(import.meta.dir, "../../src/shared/errors.ts"))};
runAsProcess(async () => { throw new UsageError("--via must be http or mqtt, not bogus"); }, "collect");`);
  expect(rejected.code).toBe(64);
  expect(rejected.stderr.trim()).toBe("flashlex: --via must be http or mqtt, not bogus");
});
