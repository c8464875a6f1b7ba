/**
 * Durations as people write them in flags and settings: a whole number and one unit, `45s`,
 * `30m`, `24h`, `90d`. One parser for `hub enroll-token create --expires` and hub.yml's
 * certificate lifetimes, so both read the same words.
 */

const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `90d` → 7776000000. Returns undefined for anything else (no unit, a fraction, a sign, a space). */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d{1,9})([smhd])$/.exec(text.trim());
  if (!match) return undefined;
  return Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
}

/** 7776000000 → `90d`: the largest unit that divides the duration (milliseconds rounded to seconds). */
export function formatDuration(ms: number): string {
  const seconds = Math.round(ms / 1000);
  if (seconds % 86_400 === 0 && seconds > 0) return `${seconds / 86_400}d`;
  if (seconds % 3_600 === 0 && seconds > 0) return `${seconds / 3_600}h`;
  if (seconds % 60 === 0 && seconds > 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}
