import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { bundleForNode } from "../scripts/bundle-node.ts";

/**
 * bun:sqlite against the wasm driver: rows/s inserting ingress rows one commit each (in a fresh
 * process, then again once warm), open time and process start. Not a test: numbers depend on the
 * disk's fsync.
 * `bun bench/store-drivers.ts [--rows 5000] [--runs 5] [--dir DIR]` (DIR: where the databases go).
 */
const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : fallback;
};
const rows = arg("rows", "5000");
const runs = Number(arg("runs", "5"));
const work = mkdtempSync(join(arg("dir", tmpdir()), "flashlex-bench-"));
const entry = resolve(import.meta.dir, "store-drivers-entry.ts");

interface Run {
  driver: string;
  loadedMs: number;
  openFreshMs: number;
  insertMs: number;
  rowsPerSec: number;
  warmRowsPerSec: number;
  reopenMs: number;
  count: number;
  wallMs: number;
}

const median = (values: number[]) => {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

function measure(command: string[], sync: string, extra: string[] = []): Run[] {
  return Array.from({ length: runs }, () => {
    const started = performance.now();
    const proc = Bun.spawnSync([...command, join(work, "bench.db"), rows, sync, ...extra], { stderr: "pipe" });
    const wallMs = performance.now() - started;
    if (proc.exitCode !== 0) throw new Error(`${command.join(" ")} failed: ${proc.stderr.toString()}`);
    const run = JSON.parse(proc.stdout.toString()) as Run;
    if (run.count !== Number(rows)) throw new Error(`expected ${rows} rows, found ${run.count}`);
    return { ...run, wallMs };
  });
}

try {
  const bundle = await bundleForNode(join(work, "bench.cjs"), { entry });
  const nodeVersion = Bun.spawnSync(["node", "--version"]).stdout.toString().trim();
  console.log(`${rows} ingress rows, one commit each; median of ${runs} runs; databases in ${work}`);
  console.log(`node bundle ${bundle.bytes} bytes; node ${nodeVersion}; bun ${Bun.version}\n`);
  const configs: [string, string[], string[]][] = [
    ["bun:sqlite (bun)", [process.execPath, entry], []],
    ["wasm (node, bundle)", ["node", bundle.outFile], []],
    ["wasm (bun)", [process.execPath, entry], ["wasm"]],
  ];
  const header = ["driver", "sync", "rows/s", "warm rows/s", "open new ms", "reopen ms", "load ms", "process ms"];
  const table: string[][] = [];
  for (const sync of ["full", "normal"]) {
    for (const [name, command, extra] of configs) {
      const r = measure(command, sync, extra);
      const m = (key: keyof Run) => median(r.map((x) => x[key] as number));
      table.push([
        name,
        sync,
        m("rowsPerSec").toFixed(0),
        m("warmRowsPerSec").toFixed(0),
        m("openFreshMs").toFixed(1),
        m("reopenMs").toFixed(1),
        m("loadedMs").toFixed(0),
        m("wallMs").toFixed(0),
      ]);
    }
  }
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
  for (const row of [header, ...table]) console.log(row.map((cell, i) => cell.padEnd(widths[i]!)).join("  "));
} finally {
  rmSync(work, { recursive: true, force: true });
}
