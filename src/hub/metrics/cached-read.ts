import { FlashlexError } from "../../shared/errors.ts";

/**
 * A database read that scrapes share: at most one runs at a time, and its answer serves every
 * scrape for `ttlMs` (milliseconds) after it settled. 64 scrapes at once used to run 64 sets of
 * counting queries on the hub's 10-connection PostgreSQL pool and slow the API from ms to seconds;
 * the fleet's gauges are minutes-scale signals, a few seconds old is fine.
 *
 * A read that has not settled within `deadlineMs` rejects with FlashlexError `unavailable`, so a
 * frozen database cannot hold a scrape open (the read itself is left to finish or fail; no new
 * one starts while it runs). A failure is not cached: the next scrape tries again.
 * `now` is the clock in milliseconds (tests pass their own).
 */
export function cachedRead<T>(read: () => Promise<T>, options: { ttlMs: number; deadlineMs: number; what: string; now?: () => number }): () => Promise<T> {
  const now = options.now ?? Date.now;
  let value: { at: number; data: T } | undefined;
  let running: Promise<T> | undefined;
  return () => {
    if (value && now() - value.at < options.ttlMs) return Promise.resolve(value.data);
    running ??= read()
      .then((data) => {
        value = { at: now(), data };
        return data;
      })
      .finally(() => {
        running = undefined;
      });
    return withDeadline(running, options.deadlineMs, options.what);
  };
}

function withDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new FlashlexError(`${what}: no answer from the hub database within ${ms / 1000} s`, "unavailable")), ms);
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}
