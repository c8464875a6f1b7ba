/** Times as FlashLex shows them: ISO 8601 in UTC. */

/** `2019-07-20T01:45:44Z` for Unix ms: seconds precision, as the old cloud's exports had it. */
export function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/**
 * Unix ms as ISO 8601 with milliseconds; a value that is not a time (a row another program
 * wrote into the thing's database) is shown as it is.
 */
export function isoOrAsIs(ms: unknown): string {
  const date = new Date(typeof ms === "number" ? ms : Number.NaN);
  return Number.isNaN(date.getTime()) ? String(ms) : date.toISOString();
}

/**
 * Unix ms of a UTC date and time given as its parts (month 1-12), or NaN when a part is out of
 * its range: February 30th, April 31st, hour 24, minute 60. `Date.UTC` and `Date.parse` roll such
 * a date over into the next month or day without a word (2026-02-30 became March 2nd).
 */
export function utcFromParts(year: number, month: number, day: number, hour = 0, minute = 0, second = 0): number {
  const ms = Date.UTC(year, month - 1, day, hour, minute, second);
  const back = new Date(ms);
  const same =
    back.getUTCFullYear() === year &&
    back.getUTCMonth() === month - 1 &&
    back.getUTCDate() === day &&
    back.getUTCHours() === hour &&
    back.getUTCMinutes() === minute &&
    back.getUTCSeconds() === second;
  return same ? ms : Number.NaN;
}
