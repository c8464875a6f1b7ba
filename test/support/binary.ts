/**
 * Integration tests run the compiled binary, as a user would. `scripts/test.ts` builds it
 * once before the suite and passes its path in FLASHLEX_BIN; a test file run alone builds it
 * here.
 */
import { join } from "node:path";
import { tally } from "./tally.ts";

const ROOT = join(import.meta.dir, "../..");

export function binaryPath(): string {
  const fromEnv = process.env.FLASHLEX_BIN;
  if (fromEnv) return fromEnv;
  // Built afresh once per test process, with the release build script, so a stale binary never
  // hides new code and tests run what users run.
  const outdir = join(ROOT, "dist", "test");
  const result = Bun.spawnSync([process.execPath, join(ROOT, "scripts/build.ts"), "--host", "--outdir", outdir], { stdout: "inherit", stderr: "inherit" });
  if (result.exitCode !== 0) throw new Error("building the test binary failed");
  const local = join(outdir, `flashlex-linux-${process.arch === "arm64" ? "arm64" : "x64"}`);
  process.env.FLASHLEX_BIN = local;
  return local;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the binary to completion with a time bound; `input` goes to stdin. */
export interface SpawnOptions {
  env?: Record<string, string>;
  /** what to run instead of the host binary: another target's, under its emulator */
  command?: string[];
  /** the working directory (default: the test process's) */
  cwd?: string;
}

export async function run(args: string[], opts: SpawnOptions & { input?: string | Uint8Array; timeoutMs?: number } = {}): Promise<RunResult> {
  const proc = Bun.spawn([...(opts.command ?? [binaryPath()]), ...args], {
    stdin: opts.input === undefined ? "ignore" : new Blob([opts.input]),
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, ...opts.env },
    cwd: opts.cwd,
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? 30_000);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  // Exit 70 means a bug in FlashLex, whatever the test expected: the suite's summary counts them.
  if (code === 70) tally("exit70");
  return { code, stdout, stderr };
}

/** A long-running child (serve): its stderr is kept so a test can wait for a log line. */
export interface Background {
  proc: ReturnType<typeof Bun.spawn>;
  output(): string;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** SIGTERM, then the exit code (SIGKILL after `graceMs`), once the output is read to its end */
  stop(graceMs?: number): Promise<number>;
}

/** Every child `start` made: a test process that ends (or crashes) takes them with it. */
const started = new Set<ReturnType<typeof Bun.spawn>>();
process.once("exit", () => {
  for (const proc of started) if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
});

export function start(args: string[], opts: SpawnOptions = {}): Background {
  const proc = Bun.spawn([...(opts.command ?? [binaryPath()]), ...args], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, ...opts.env },
    cwd: opts.cwd,
  });
  started.add(proc);
  void proc.exited.then(() => started.delete(proc));
  let text = "";
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  };
  const pumped = Promise.all([pump(proc.stdout as ReadableStream<Uint8Array>), pump(proc.stderr as ReadableStream<Uint8Array>)]);
  // The process has exited, but what it wrote last may still be in the pipes: read to their end
  // (bounded: a child of its own may hold them open) before anyone looks at the output.
  const drained = () => Promise.race([pumped, Bun.sleep(2000)]);
  return {
    proc,
    output: () => text,
    async waitFor(pattern, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const match = text.match(pattern);
        if (match) return match[0];
        if (proc.exitCode !== null) {
          await drained();
          const last = text.match(pattern);
          if (last) return last[0];
          break;
        }
        await Bun.sleep(25);
      }
      throw new Error(`no ${pattern} in the output within ${timeoutMs} ms (exit ${proc.exitCode}):\n${text}`);
    },
    async stop(graceMs = 10_000) {
      let code = proc.exitCode;
      if (code === null) {
        proc.kill("SIGTERM");
        const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
        code = await proc.exited;
        clearTimeout(timer);
        if (code === 70) tally("exit70");
      }
      await drained();
      return code;
    },
  };
}
