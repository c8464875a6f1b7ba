/**
 * Numbers for the bench: medians, percentiles and the interleaved pairing every row uses. A
 * pair is one measurement of FlashLex and one of its peer taken back to back; the order inside a
 * pair alternates (peer first, then ours first, ...) so neither side always meets a warmer or a
 * busier machine. The reported ratio is the median of the per-pair ratios: a drift of the
 * machine's speed during the run moves both halves of a pair together.
 */

export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Nearest-rank percentile (p in 0..100) of values. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export interface Paired {
  ours: number[];
  peer: number[];
  /** ours / peer, pair by pair */
  ratios: number[];
}

/**
 * Runs `ours` and `peer` alternately, `runs` pairs, and returns both series and the per-pair
 * ratios ours/peer. `onPair` is told of each pair (progress on stderr).
 */
export async function interleave(
  runs: number,
  ours: (i: number) => Promise<number>,
  peer: (i: number) => Promise<number>,
  onPair?: (i: number, ours: number, peer: number) => void,
): Promise<Paired> {
  const result: Paired = { ours: [], peer: [], ratios: [] };
  for (let i = 0; i < runs; i++) {
    let a: number;
    let b: number;
    if (i % 2 === 0) {
      b = await peer(i);
      a = await ours(i);
    } else {
      a = await ours(i);
      b = await peer(i);
    }
    result.ours.push(a);
    result.peer.push(b);
    result.ratios.push(a / b);
    onPair?.(i, a, b);
  }
  return result;
}

/** Milliseconds to a rate per second for `count` things done. */
export const perSecond = (count: number, ms: number) => (count / ms) * 1000;
