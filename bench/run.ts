/**
 * `bun run bench`: every row of issue 13's table, FlashLex side by side with its peer in the
 * same run (interleaved pairs, medians), in about ten minutes on a 2-core machine. Prints the
 * table (measure | FlashLex | peer | ratio | target), writes bench/results/latest.json (with the
 * machine) and, after a full run, the table section of docs/benchmarks.md. A benchmark, not a
 * test: ratios are reported, never asserted.
 *
 *   bun run bench [--only ROW[,ROW]] [--quick] [--runs N] [--no-build] [--docs | --no-docs]
 *
 * ROW: a row's id (ingress, collect, hub-collect, fan-out, rss, start, thing-create) or its
 * number in the issue. --quick: fewer pairs and smaller counts, a smoke run. --no-build: use
 * dist/flashlex-linux-x64 as it is (FLASHLEX_BIN overrides it) instead of building it first.
 * docs/benchmarks.md is rewritten after a full run of every row, or with --docs.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ROOT } from "../scripts/build.ts";
import { hostBinary } from "./lib/host-binary.ts";
import { loadNow, machine, machineLine, markdownTable, printTable, replaceBetweenMarkers } from "./lib/report.ts";
import type { BenchContext, Row, RowResult } from "./lib/row.ts";
import { collect } from "./rows/collect.ts";
import { fanOut } from "./rows/fan-out.ts";
import { hubCollect } from "./rows/hub-collect.ts";
import { ingress } from "./rows/ingress.ts";
import { rss } from "./rows/rss.ts";
import { startTime } from "./rows/start.ts";
import { thingCreate } from "./rows/thing-create.ts";

const ROWS: Row[] = [ingress, collect, hubCollect, fanOut, rss, startTime, thingCreate];

const { values: args } = parseArgs({
  options: {
    only: { type: "string", multiple: true },
    quick: { type: "boolean", default: false },
    runs: { type: "string" },
    "no-build": { type: "boolean", default: false },
    docs: { type: "boolean" },
    "no-docs": { type: "boolean", default: false },
  },
});

const only = (args.only ?? []).flatMap((o) => o.split(",")).filter(Boolean);
const unknown = only.filter((o) => !ROWS.some((r) => r.id === o || String(r.number) === o));
if (unknown.length) {
  console.error(`unknown row ${unknown.join(", ")}; rows: ${ROWS.map((r) => `${r.number} ${r.id}`).join(", ")}`);
  process.exit(64);
}
const selected = only.length ? ROWS.filter((r) => only.includes(r.id) || only.includes(String(r.number))) : ROWS;
const quick = args.quick ?? false;
const runs = args.runs ? Number(args.runs) : quick ? 2 : 5;
const writeDocs = args.docs ?? (!args["no-docs"] && !quick && selected.length === ROWS.length);

const started = performance.now();
process.chdir(ROOT);
const binary = hostBinary(Boolean(args["no-build"]));

const cache = join(ROOT, "bench", ".cache");
mkdirSync(cache, { recursive: true });
const work = mkdtempSync(join(tmpdir(), "flashlex-bench-"));
chmodSync(work, 0o755); // Mosquitto, started as root, reads its files as the mosquitto user
const ctx: BenchContext = {
  quick,
  runs,
  binary,
  work,
  cache,
  progress: (message) => console.error(`  [${((performance.now() - started) / 1000).toFixed(0).padStart(3)} s] ${message}`),
};

const m = machine(binary);
console.error(`bench: ${machineLine(m)}`);
console.error(`rows: ${selected.map((r) => r.id).join(", ")}; ${quick ? "quick, " : ""}${runs} pairs each\n`);

const results: RowResult[] = [];
let failed = false;
for (const row of selected) {
  const t0 = performance.now();
  console.error(`== row ${row.number}: ${row.id}`);
  try {
    // each row its own directory: test/support's hub fixture makes `<work>/hub`
    const rowWork = join(work, row.id);
    mkdirSync(rowWork, { mode: 0o755 });
    results.push(...(await row.run({ ...ctx, work: rowWork })));
  } catch (err) {
    failed = true;
    console.error(`row ${row.id} failed: ${(err as Error).stack ?? err}`);
    results.push({
      id: row.id,
      row: row.number,
      measure: row.id,
      unit: "",
      better: "higher",
      peerName: "",
      skipped: `FAILED: ${(err as Error).message.split("\n")[0]}`,
    });
  }
  console.error(`   row ${row.id}: ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}
rmSync(work, { recursive: true, force: true });
const seconds = (performance.now() - started) / 1000;
m.load.end = loadNow();

console.log(`\n${machineLine(m)}\n${quick ? "quick run" : `medians of ${runs} interleaved pairs`}, ${Math.round(seconds)} s\n`);
printTable(results);
for (const r of results) for (const note of r.notes ?? []) console.log(`  note, ${r.measure}: ${note}`);
for (const r of results) if (r.skipped) console.log(`SKIPPED ${r.measure}: ${r.skipped}`);

mkdirSync(join(ROOT, "bench", "results"), { recursive: true });
const json = join(ROOT, "bench", "results", "latest.json");
writeFileSync(json, `${JSON.stringify({ machine: m, quick, runs, seconds: Math.round(seconds), results }, null, 2)}\n`);
console.log(`\nwrote ${json}`);
if (writeDocs) {
  const file = join(ROOT, "docs", "benchmarks.md");
  writeFileSync(file, replaceBetweenMarkers(readFileSync(file, "utf8"), markdownTable(results, m, runs, quick, seconds)));
  console.log(`wrote the table in ${file}`);
}
process.exit(failed ? 1 : 0);
