import type { MessageStore } from "./message-store.ts";

/** Unacknowledged messages from which `serve` warns that the application falls behind. */
export const UNACKED_WARNING = 10_000;

/** How often, at most, the warning comes again while the backlog stays over the threshold, ms. */
export const UNACKED_REWARN_MS = 3_600_000;

/** Below this many, a backlog that was warned about is over: the next one is warned at once. */
export const UNACKED_WARNING_OVER = UNACKED_WARNING / 2;

/**
 * Decides, at each retention sweep, whether to warn about a backlog of unacknowledged messages.
 * The returned function takes the time (Unix ms) and gives the exact number waiting when a warning
 * is due, else undefined: at once when the backlog reaches UNACKED_WARNING, then at most once per
 * UNACKED_REWARN_MS while it lasts, which is until it falls below UNACKED_WARNING_OVER (an
 * application acknowledging in batches around the threshold is one backlog, not one a minute).
 * A clock set back starts the hour again from the new time. Each call counts only up to the
 * threshold (the unacked index, stopped at 10,000 rows); the exact count, which reads the whole
 * backlog (about 28 ms at a million rows on x64, several times that on a Pi, with the event loop
 * held), runs only when the warning is written.
 */
export function unackedWatch(store: MessageStore): (now: number) => number | undefined {
  let warnedAt: number | undefined;
  return (now) => {
    const waiting = store.countUnacked(UNACKED_WARNING);
    if (waiting < UNACKED_WARNING_OVER) warnedAt = undefined;
    if (waiting < UNACKED_WARNING) return undefined;
    if (warnedAt !== undefined && now >= warnedAt && now - warnedAt < UNACKED_REWARN_MS) return undefined;
    warnedAt = now;
    return store.countUnacked();
  };
}
