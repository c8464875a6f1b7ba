/**
 * The fleet bench's tables: one row per setup (things held, connect time, rates, latencies,
 * memory per thing, messages lost and repeated), the resilience run, and the capacity ramp; on
 * the terminal and as the 'Fleet figures' section of docs/scaling.md (between BEGIN and END).
 */
import type { Machine } from "../lib/report.ts";
import { machineLine } from "../lib/report.ts";
import { median } from "../lib/stats.ts";
import type { Capacity } from "./capacity.ts";
import type { PhaseFigures, SetupFigures } from "./drive.ts";

export const BEGIN = "<!-- fleet:table:start -->";
export const END = "<!-- fleet:table:end -->";

export interface SetupResult {
  id: string;
  label: string;
  figures?: SetupFigures;
  skipped?: string;
}

const int = (v: number) => (Number.isFinite(v) ? Math.round(v).toLocaleString("en-US") : "—");
const ms = (v: number) => (Number.isFinite(v) ? (v < 10 ? v.toFixed(1) : Math.round(v).toLocaleString("en-US")) : "—");
const range = (values: number[]) => (values.length > 1 ? ` (${int(Math.min(...values))}–${int(Math.max(...values))})` : "");

const SETUP_HEADER = [
  "setup",
  "things held",
  "connect all",
  "ingress msg/s",
  "egress msg/s",
  "ingress p50 / p99",
  "egress p50 / p99",
  "RSS per thing",
  "lost in / eg",
  "repeats in / eg",
];

function memory(f: SetupFigures): string {
  const hub = `hub ${f.hubKiBPerThing.toFixed(1)} KiB`;
  return f.brokerKiBPerThing === undefined ? hub : `${hub}; nodes ${f.brokerKiBPerThing.toFixed(1)} KiB`;
}

const lost = (p: PhaseFigures) => `${p.ingress.lost} / ${p.egress.lost}`;
const repeats = (p: PhaseFigures) => `${p.ingress.duplicates} / ${p.egress.duplicates}`;

export function setupRows(results: SetupResult[]): string[][] {
  const rows: string[][] = [];
  for (const r of results) {
    const f = r.figures;
    if (!f) {
      rows.push([r.label, `SKIPPED: ${r.skipped}`, "", "", "", "", "", "", "", ""]);
      continue;
    }
    rows.push([
      r.label,
      `${int(f.held)} of ${int(f.things)}`,
      `${f.connectSeconds.toFixed(1)} s`,
      `${int(median(f.ingressRates))}${range(f.ingressRates)}`,
      `${int(median(f.egressRates))}${range(f.egressRates)}`,
      `${ms(f.ingressLatencyMs.p50)} / ${ms(f.ingressLatencyMs.p99)} ms`,
      `${ms(f.egressLatencyMs.p50)} / ${ms(f.egressLatencyMs.p99)} ms`,
      memory(f),
      lost(f.steady),
      repeats(f.steady),
    ]);
  }
  return rows;
}

const RESILIENCE_HEADER = [
  "setup",
  "killed (SIGKILL)",
  "all back after",
  "ingress accepted / arrived / lost / repeats",
  "egress acked / stored / lost / repeats at the hub",
  "reconnects",
];

export function resilienceRows(results: SetupResult[]): string[][] {
  return results
    .filter((r) => r.figures?.resilience)
    .map((r) => {
      const p = r.figures!.resilience!;
      return [
        r.label,
        p.hubKilled ? `node 2, ${p.hubKilled}` : "node 2",
        p.reconnectSeconds === undefined ? "—" : `${p.reconnectSeconds.toFixed(1)} s`,
        `${p.ingress.accepted} / ${p.ingress.arrived} / ${p.ingress.lost} / ${p.ingress.duplicates}`,
        `${p.egress.accepted} / ${p.egress.arrived} / ${p.egress.lost} / ${p.egress.hubRepeats}${p.egress.otherHubCopies ? ` (+ ${p.egress.otherHubCopies} copies at the other hub)` : ""}${p.egress.storedTwice ? ` (stored twice: ${p.egress.storedTwice})` : ""}`,
        String(p.reconnects),
      ];
    });
}

const CAPACITY_HEADER = ["things", "held", "last step connected in", "hub RSS", "per thing", "ingress msg/s", "p50 / p99"];

export function capacityRows(c: Capacity): string[][] {
  return c.steps.map((s) => [
    int(s.things),
    int(s.held),
    `${s.stepConnectSeconds.toFixed(1)} s`,
    `${int(s.hubRssMiB)} MiB`,
    `${s.hubKiBPerThing.toFixed(1)} KiB`,
    int(s.ingressRate),
    `${ms(s.p50)} / ${ms(s.p99)} ms`,
  ]);
}

export function printTable(header: string[], rows: string[][]): void {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  for (const row of all)
    console.log(
      row
        .map((c, i) => (c ?? "").padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    );
}

const markdown = (header: string[], rows: string[][]) => {
  const esc = (s: string) => s.replace(/\|/g, "\\|");
  return [`| ${header.join(" | ")} |`, `|${header.map(() => "---").join("|")}|`, ...rows.map((r) => `| ${r.map(esc).join(" | ")} |`)].join("\n");
};

export interface FleetRun {
  machine: Machine;
  things: number;
  rounds: number;
  perThing: number;
  procs: number;
  seconds: number;
  results: SetupResult[];
  capacity?: Capacity;
  capacitySkipped?: string;
}

/** Prints every table of `run` on stdout. */
export function printRun(run: FleetRun): void {
  console.log(`\n${machineLine(run.machine)}\n${describe(run)}\n`);
  printTable(SETUP_HEADER, setupRows(run.results));
  const res = resilienceRows(run.results);
  if (res.length) {
    console.log("\nresilience:");
    printTable(RESILIENCE_HEADER, res);
  }
  if (run.capacity) {
    console.log(`\ncapacity of one hub with its embedded broker: ${int(run.capacity.held)} things held; stopped because ${run.capacity.stoppedBecause}`);
    printTable(CAPACITY_HEADER, capacityRows(run.capacity));
  } else if (run.capacitySkipped) console.log(`\ncapacity: SKIPPED: ${run.capacitySkipped}`);
  for (const r of run.results) if (r.figures?.firstConnectError) console.log(`  ${r.id}: first connect error: ${r.figures.firstConnectError}`);
}

function describe(run: FleetRun): string {
  return (
    `${int(run.things)} things in ${run.procs} simulator process${run.procs > 1 ? "es" : ""}; rates are medians of ${run.rounds} rounds (range in brackets), ` +
    `each one ingress message per thing, then ${run.perThing} egress message${run.perThing > 1 ? "s" : ""} per thing; latencies over all rounds; the whole run took ${Math.round(run.seconds)} s.`
  );
}

/** The 'Fleet figures' tables in markdown (what goes between the markers). */
export function markdownRun(run: FleetRun): string {
  const parts = [`Measured ${machineLine(run.machine)}.`, describe(run), "", markdown(SETUP_HEADER, setupRows(run.results))];
  const res = resilienceRows(run.results);
  if (res.length) parts.push("", "Resilience run:", "", markdown(RESILIENCE_HEADER, res));
  if (run.capacity)
    parts.push(
      "",
      `Capacity of one hub with its embedded broker: **${int(run.capacity.held)} things held**; the ramp (steps of ${int(run.capacity.step)}) stopped because ${run.capacity.stoppedBecause}. The hub's open-file limit here: ${int(run.capacity.fileLimit)}; idle RSS ${int(run.capacity.hubRssIdleMiB)} MiB.`,
      "",
      markdown(CAPACITY_HEADER, capacityRows(run.capacity)),
    );
  else if (run.capacitySkipped) parts.push("", `Capacity: not measured in this run (${run.capacitySkipped}).`);
  return parts.join("\n");
}

/** `doc` with the text between the markers replaced; throws when they are missing. */
export function replaceSection(doc: string, body: string): string {
  const a = doc.indexOf(BEGIN);
  const b = doc.indexOf(END);
  if (a < 0 || b < a) throw new Error(`docs/scaling.md has no ${BEGIN} ... ${END} section`);
  return `${doc.slice(0, a + BEGIN.length)}\n${body}\n${doc.slice(b)}`;
}
