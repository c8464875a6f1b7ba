/**
 * The reliability tally: what the suite threw at the product and what came out, summed by
 * `scripts/test.ts` into one line printed just before `N passed, N failed`:
 *
 *   reliability: 40 faults survived, 1200 bad inputs tried, 300 attacks refused, 0 messages lost, 0 duplicates, 0 exit-70 runs
 *
 * A test records what it measured, zeros included (`tally("lost", expected - stored)`), and still
 * asserts on it: the tally reports, the assertion decides. Every run of the binary through
 * `test/support/binary.ts` that exits 70 is counted as an exit-70 run automatically.
 *
 * Lines are appended to the file named by FLASHLEX_TALLY_FILE (one JSON object per line, so
 * several test processes can write to it); without it (a test file run alone) nothing is kept.
 */
import { appendFileSync } from "node:fs";

export type TallyKind = "faults" | "badInputs" | "attacks" | "lost" | "duplicates" | "exit70";

export const TALLY_LABELS: Record<TallyKind, string> = {
  faults: "faults survived",
  badInputs: "bad inputs tried",
  attacks: "attacks refused",
  lost: "messages lost",
  duplicates: "duplicates",
  exit70: "exit-70 runs",
};

export function tally(kind: TallyKind, count = 1): void {
  const file = process.env.FLASHLEX_TALLY_FILE;
  if (!file) return;
  appendFileSync(file, `${JSON.stringify({ kind, count })}\n`);
}

/** Sums a tally file into one line (missing kinds are 0). */
export function summariseTally(text: string): string {
  const totals = Object.fromEntries(Object.keys(TALLY_LABELS).map((k) => [k, 0])) as Record<TallyKind, number>;
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const { kind, count } = JSON.parse(line) as { kind: TallyKind; count: number };
    if (kind in totals) totals[kind] += count;
  }
  return `reliability: ${(Object.keys(TALLY_LABELS) as TallyKind[]).map((k) => `${totals[k]} ${TALLY_LABELS[k]}`).join(", ")}`;
}
