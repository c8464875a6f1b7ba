/**
 * The bench's output: the machine it ran on, the table on the terminal, the JSON file and the
 * table section of docs/benchmarks.md (between BEGIN and END below).
 */
import { cpus, loadavg, totalmem } from "node:os";
import type { RowResult, Target } from "./row.ts";
import { targetMet } from "./row.ts";

export const BEGIN = "<!-- bench:table:start -->";
export const END = "<!-- bench:table:end -->";

export interface Machine {
  cpu: string;
  cores: number;
  ramGiB: number;
  kernel: string;
  bun: string;
  node: string;
  mosquitto: string;
  date: string;
  commit: string;
  flashlex: string;
  /** 1-minute load average when the run started and when it ended (others' work on a shared machine shows here) */
  load: { start: number; end?: number };
}

const firstLine = (argv: string[]) => {
  try {
    const run = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
    return `${run.stdout.toString()}${run.stderr.toString()}`.split("\n")[0]!.trim();
  } catch {
    return "not found";
  }
};

export const loadNow = () => Math.round(loadavg()[0]! * 100) / 100;

export function machine(binary: string): Machine {
  const dirty = Bun.spawnSync(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.toString().trim() !== "";
  return {
    cpu: cpus()[0]?.model.trim() ?? "unknown",
    cores: cpus().length,
    ramGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: firstLine(["uname", "-r"]),
    bun: Bun.version,
    node: firstLine(["node", "--version"]),
    mosquitto: firstLine(["mosquitto", "-h"]).replace(/^mosquitto version /, ""),
    date: new Date().toISOString(),
    commit: `${Bun.spawnSync(["git", "rev-parse", "--short=12", "HEAD"]).stdout.toString().trim()}${dirty ? " (with uncommitted changes)" : ""}`,
    flashlex: firstLine([binary, "--version"]),
    load: { start: loadNow() },
  };
}

const UNIT_DIGITS: Record<string, number> = { "msg/s": 0, "req/s": 0, ms: 1, MiB: 1 };

export function formatNumber(value: number | undefined, unit: string): string {
  if (value === undefined || !Number.isFinite(value)) return "—";
  const digits = UNIT_DIGITS[unit] ?? (value < 10 ? 2 : value < 100 ? 1 : 0);
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

const cell = (value: number | undefined, unit: string, extra?: string) =>
  value === undefined ? "—" : `${formatNumber(value, unit)} ${unit}${extra ? ` (${extra})` : ""}`;

export const formatTarget = (t: Target | undefined, unit = "") =>
  t ? `${t.op === ">=" ? "≥" : "≤"} ${t.value}${t.on === "ours" ? ` ${unit} (FlashLex's own)` : "×"}` : "—";

function ratioCell(r: RowResult): string {
  if (r.skipped) return "—";
  if (r.ratio === undefined || !Number.isFinite(r.ratio)) return "—";
  const ratios = r.samples?.ratios ?? [];
  const spread = ratios.length > 1 ? ` (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})` : "";
  return `${r.ratio.toFixed(2)}×${spread}`;
}

function metCell(r: RowResult): string {
  const met = targetMet(r);
  return met === undefined ? "" : met ? " ✓" : " ✗";
}

/** Rows of cells: measure | FlashLex | peer | ratio | target */
export function tableRows(results: RowResult[]): string[][] {
  return results.map((r) =>
    r.skipped
      ? [r.measure, `SKIPPED: ${r.skipped}`, r.peerName, "—", formatTarget(r.target, r.unit)]
      : [
          r.measure,
          cell(r.ours, r.unit, r.oursExtra),
          `${r.peerName}: ${cell(r.peer, r.unit, r.peerExtra)}`,
          ratioCell(r),
          `${formatTarget(r.target, r.unit)}${metCell(r)}`,
        ],
  );
}

const HEADER = ["measure", "FlashLex", "peer", "ratio", "target"];

export function printTable(results: RowResult[]): void {
  const rows = [HEADER, ...tableRows(results)];
  const widths = HEADER.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const row of rows)
    console.log(
      row
        .map((c, i) => c.padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    );
}

export function machineLine(m: Machine): string {
  const load = `load average ${m.load.start}${m.load.end === undefined ? "" : ` at the start, ${m.load.end} at the end`}`;
  return `${m.date.slice(0, 16).replace("T", " ")} UTC, commit ${m.commit}, ${m.flashlex}; ${m.cpu}, ${m.cores} cores, ${m.ramGiB} GiB, Linux ${m.kernel}; Bun ${m.bun}, Node ${m.node}, Mosquitto ${m.mosquitto}; ${load}`;
}

export function markdownTable(results: RowResult[], m: Machine, runs: number, quick: boolean, seconds: number): string {
  const esc = (s: string) => s.replace(/\|/g, "\\|");
  const notes = results.flatMap((r) => (r.notes ?? []).map((n) => `- ${r.measure}: ${n}`));
  return [
    `Measured ${machineLine(m)}.`,
    `${quick ? "A --quick smoke run" : `Medians of ${runs} interleaved pairs`}; the whole run took ${Math.round(seconds)} s. ` +
      "Ratio = FlashLex / peer, the median of the per-pair ratios (their range in brackets); ✓/✗: issue 13's target met or not.",
    "",
    `| ${HEADER.join(" | ")} |`,
    `|${HEADER.map(() => "---").join("|")}|`,
    ...tableRows(results).map((row) => `| ${row.map(esc).join(" | ")} |`),
    ...(notes.length ? ["", ...notes] : []),
  ].join("\n");
}

/** `doc` with the text between the markers replaced (the markers kept); throws when they are missing. */
export function replaceBetweenMarkers(doc: string, body: string): string {
  const a = doc.indexOf(BEGIN);
  const b = doc.indexOf(END);
  if (a < 0 || b < a) throw new Error(`docs/benchmarks.md has no ${BEGIN} ... ${END} section`);
  return `${doc.slice(0, a + BEGIN.length)}\n${body}\n${doc.slice(b)}`;
}
