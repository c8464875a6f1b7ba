/**
 * Waiting in tests: every wait polls a condition with a bound, and says what it waited for, and
 * what the processes logged, when the bound is reached. No test waits a fixed time for something
 * to happen.
 */

/**
 * Polls `probe` until it returns something other than undefined or false, and returns that.
 * Throws `<what>: not within <timeoutMs> ms`, followed by the end of `explain()` (a log), when
 * the time is up.
 */
export async function waitUntil<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 10_000,
  explain?: () => string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms${explain ? `\n--- log ---\n${explain().slice(-6000)}` : ""}`);
    await Bun.sleep(25);
  }
}

/**
 * Waits until `pattern` appears in what `source` logged after its first `from` characters, and
 * returns the match. Throws with that part of the log when it does not appear within `timeoutMs`.
 */
export async function waitForLog(source: { output(): string }, pattern: RegExp, from = 0, timeoutMs = 5_000): Promise<string> {
  const found = await waitUntil(`${pattern} in the log`, () => source.output().slice(from).match(pattern)?.[0], timeoutMs).catch(() => undefined);
  if (found === undefined) throw new Error(`no ${pattern} in the log within ${timeoutMs} ms:\n${source.output().slice(from)}`);
  return found;
}

/** How often `pattern` occurs in `text`. */
export function occurrences(text: string, pattern: RegExp): number {
  return (text.match(new RegExp(pattern.source, "g")) ?? []).length;
}

/** How many messages `serve` logged as stored (`ingress.stored count=N ...`, one line per commit). */
export function storedCount(serveOutput: string): number {
  return [...serveOutput.matchAll(/ingress\.stored count=(\d+)/g)].reduce((sum, m) => sum + Number(m[1]), 0);
}
