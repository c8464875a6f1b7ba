/**
 * Processes for the bench: timing a whole process, reading a process's memory from /proc, and
 * long-running children whose log goes to a file (a busy hub logs a line per request: a file
 * costs it what a journal would, and the bench does not have to read it all).
 */
import { readFileSync } from "node:fs";

/** VmRSS, VmHWM, ... of a live process, in KiB (RssFile: the pages mapped from files, the executable's mostly; RssAnon: the process's own); NaN once it is gone. */
export function statusKb(pid: number, field: "VmRSS" | "VmHWM" | "RssAnon" | "RssFile"): number {
  try {
    const match = readFileSync(`/proc/${pid}/status`, "utf8").match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
    return match ? Number(match[1]) : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

export const mib = (kb: number) => kb / 1024;

/** Wall milliseconds of one run of `argv` to its exit; throws when it does not exit 0. */
export async function timeProcess(argv: string[], opts: { stdin?: Uint8Array | string; env?: Record<string, string> } = {}): Promise<number> {
  const t0 = performance.now();
  const proc = Bun.spawn(argv, {
    stdin: opts.stdin === undefined ? "ignore" : new Blob([opts.stdin]),
    stdout: "ignore",
    stderr: "pipe",
    env: opts.env ? { ...process.env, ...opts.env } : undefined,
  });
  const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
  const ms = performance.now() - t0;
  if (code !== 0) throw new Error(`${argv.join(" ")} exited ${code}: ${stderr.slice(-2000)}`);
  return ms;
}

export interface LoggedProcess {
  proc: ReturnType<typeof Bun.spawn>;
  logFile: string;
  log(): string;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
  stop(graceMs?: number): Promise<number | null>;
}

const children = new Set<ReturnType<typeof Bun.spawn>>();
process.once("exit", () => {
  for (const proc of children) if (proc.exitCode === null) proc.kill("SIGKILL");
});

/** Starts `argv` with stdout and stderr appended to `logFile`. */
export function startLogged(argv: string[], logFile: string, env?: Record<string, string>): LoggedProcess {
  const proc = Bun.spawn(argv, { stdin: "ignore", stdout: Bun.file(logFile), stderr: Bun.file(logFile), env: { ...process.env, ...env } });
  children.add(proc);
  void proc.exited.then(() => children.delete(proc));
  const log = () => {
    try {
      return readFileSync(logFile, "utf8");
    } catch {
      return "";
    }
  };
  return {
    proc,
    logFile,
    log,
    async waitFor(pattern, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      while (!pattern.test(log())) {
        if (proc.exitCode !== null) throw new Error(`${argv[0]} exited ${proc.exitCode} before ${pattern}:\n${log().slice(-3000)}`);
        if (Date.now() > deadline) throw new Error(`no ${pattern} from ${argv.join(" ")} within ${timeoutMs} ms:\n${log().slice(-3000)}`);
        await Bun.sleep(25);
      }
    },
    async stop(graceMs = 10_000) {
      if (proc.exitCode !== null) return proc.exitCode;
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      const code = await proc.exited;
      clearTimeout(timer);
      return code;
    },
  };
}
