/**
 * What a row module gets and gives back. Each row of issue 13's table is one module under
 * bench/rows/ exporting a `Row`; bench/run.ts runs them and prints, stores and documents their
 * `RowResult`s.
 */
import { median, type Paired } from "./stats.ts";

export interface BenchContext {
  /** fewer repetitions and smaller counts: a smoke run, not figures to quote */
  quick: boolean;
  /** pairs per measure (>= 5 unless quick) */
  runs: number;
  /** the compiled host binary (also in FLASHLEX_BIN for test/support) */
  binary: string;
  /** a temporary directory of this run, removed at the end */
  work: string;
  /** bench/.cache: slow-to-make inputs kept between runs (certificates, compiled peers) */
  cache: string;
  /** progress on stderr */
  progress(message: string): void;
}

export interface Target {
  /** ratio (ours / peer, the default) or FlashLex's own figure (`ours`, in the row's unit) must be >= or <= value */
  op: ">=" | "<=";
  value: number;
  on?: "ratio" | "ours";
}

export interface RowResult {
  /** stable key, e.g. ingress-queued-5k */
  id: string;
  /** the row of issue 13's table (1..7) */
  row: number;
  measure: string;
  /** unit of `ours` and `peer` */
  unit: string;
  /** higher is better (a rate) or lower is better (a time, a size) */
  better: "higher" | "lower";
  peerName: string;
  ours?: number;
  peer?: number;
  /** median of the per-pair ratios ours / peer */
  ratio?: number;
  /** shown after the number, e.g. "p99 40 ms" */
  oursExtra?: string;
  peerExtra?: string;
  target?: Target;
  runs?: number;
  samples?: Paired;
  notes?: string[];
  /** why the row was not measured */
  skipped?: string;
}

export interface Row {
  /** `--only` takes this id or the row number */
  id: string;
  number: number;
  run(ctx: BenchContext): Promise<RowResult[]>;
}

/** A measured result from interleaved pairs. */
export function measured(base: Omit<RowResult, "ours" | "peer" | "ratio" | "runs" | "samples">, samples: Paired): RowResult {
  return { ...base, ours: median(samples.ours), peer: median(samples.peer), ratio: median(samples.ratios), runs: samples.ours.length, samples };
}

/** A row (or part of one) that could not run, and why. */
export function skipped(base: Pick<RowResult, "id" | "row" | "measure" | "unit" | "better" | "peerName" | "target">, why: string): RowResult {
  return { ...base, skipped: why };
}

export function targetMet(result: RowResult): boolean | undefined {
  const value = result.target?.on === "ours" ? result.ours : result.ratio;
  if (!result.target || value === undefined || !Number.isFinite(value)) return undefined;
  return result.target.op === ">=" ? value >= result.target.value : value <= result.target.value;
}
