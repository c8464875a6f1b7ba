import type { MessageStore } from "./message-store.ts";

/** Unacknowledged messages from which `serve` warns that the application falls behind. */
export const UNACKED_WARNING = 10_000;

/** How often, at most, the warning comes again while the backlog stays over the threshold, ms. */
export const UNACKED_REWARN_MS = 3_600_000;

/**
 * Decides, at each retention sweep, whether to warn about a backlog of unacknowledged messages.
 * The returned function takes the time (Unix ms) and gives the exact number waiting when a warning
 * is due, else undefined: at once when the backlog reaches UNACKED_WARNING, then at most once per
 * UNACKED_REWARN_MS while it stays there. Each call counts only up to the threshold (the unacked
 * index, stopped at 10,000 rows); the exact count, which reads the whole backlog (about 28 ms at a
 * million rows on x64, several times that on a Pi, with the event loop held), runs only when the
 * warning is written.
 */
export function unackedWatch(store: MessageStore): (now: number) => number | undefined {
  let warnedAt: number | undefined;
  return (now) => {
    if (store.countUnacked(UNACKED_WARNING) < UNACKED_WARNING) {
      warnedAt = undefined;
      return undefined;
    }
    if (warnedAt !== undefined && now - warnedAt < UNACKED_REWARN_MS) return undefined;
    warnedAt = now;
    return store.countUnacked();
  };
}
