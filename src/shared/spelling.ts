/** What a misspelt word was likely meant to be, for "did you mean ...?" hints (flags, config keys). */

/**
 * The candidate nearest to `word` in spelling when it is at most `maxDistance` one-letter
 * insertions, deletions or changes away (Levenshtein distance; `--brokr-host` for `--broker-host`,
 * `calback` for `callback`), else undefined, letters compared without their case (`HUB` is `hub`
 * with the caps lock on). The first of equally near candidates wins.
 */
export function nearestSpelling(word: string, candidates: Iterable<string>, maxDistance = 2): string | undefined {
  let best: { candidate: string; distance: number } | undefined;
  const lower = word.toLowerCase();
  for (const candidate of candidates) {
    const distance = editDistance(lower, candidate.toLowerCase());
    if (distance <= maxDistance && (best === undefined || distance < best.distance)) best = { candidate, distance };
  }
  return best?.candidate;
}

/** Levenshtein distance: the fewest one-letter insertions, deletions and changes from `a` to `b`. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = row;
  }
  return previous[b.length]!;
}
