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
