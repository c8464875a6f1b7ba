/**
 * `bun run bench:fleet`: a simulated fleet against each setup of bench/fleet/setups.ts (one hub
 * with its embedded broker; one hub against a three-node RabbitMQ cluster), side by side in one
 * run: things held, connect time, ingress and egress msg/s, p50/p99 end-to-end latency, hub RSS
 * per connected thing, messages lost and repeated (counted by id); a resilience run that kills a
 * broker node mid-run; and how many things one hub with its embedded broker holds here. Prints
 * the tables, writes bench/results/fleet-latest.json and, after a full run, the 'Fleet figures'
 * section of docs/scaling.md. A benchmark, not a test: nothing is asserted.
 *
 *   bun run bench:fleet [--things N] [--setups embedded,rabbitmq] [--rounds R] [--per-thing K]
 *                       [--procs P] [--no-resilience] [--no-capacity] [--max-things M]
 *                       [--capacity-step S] [--no-build] [--docs | --no-docs]
 *
 * --things: the fleet of each setup (1,000). --procs: simulator processes sharing it (1).
 * --max-things: the capacity ramp's ceiling (20,000), in steps of --capacity-step (4,000).
 * Every process it starts (hubs, broker nodes, simulators) is stopped at the end, failure or not.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ROOT } from "../scripts/build.ts";
import { type Capacity, capacityRamp } from "./fleet/capacity.ts";
import { drive } from "./fleet/drive.ts";
import { type FleetRun, markdownRun, printRun, replaceSection, type SetupResult } from "./fleet/report.ts";
import { type RunningSetup, SETUPS, setupMissing, startSetup } from "./fleet/setups.ts";
import { fleetCache } from "./fleet/things.ts";
import { hostBinary } from "./lib/host-binary.ts";
import { loadNow, machine, machineLine } from "./lib/report.ts";

const { values: args } = parseArgs({
  options: {
    things: { type: "string", default: "1000" },
    setups: { type: "string", default: SETUPS.map((s) => s.id).join(",") },
    rounds: { type: "string", default: "3" },
    "per-thing": { type: "string", default: "1" },
    procs: { type: "string", default: "1" },
    "no-resilience": { type: "boolean", default: false },
    "no-capacity": { type: "boolean", default: false },
    "max-things": { type: "string", default: "20000" },
    "capacity-step": { type: "string", default: "4000" },
    "no-build": { type: "boolean", default: false },
    docs: { type: "boolean" },
    "no-docs": { type: "boolean", default: false },
  },
});

/** A positive integer flag, or exit 64 naming it. */
function count(name: string, value: string | undefined): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) {
    console.error(`--${name} must be a positive integer, not ${JSON.stringify(value)}`);
    process.exit(64);
  }
  return n;
}

const things = count("things", args.things);
const rounds = count("rounds", args.rounds);
const perThing = count("per-thing", args["per-thing"]);
const procs = count("procs", args.procs);
const maxThings = count("max-things", args["max-things"]);
const capacityStep = count("capacity-step", args["capacity-step"]);
const setupIds = args.setups!.split(",").filter(Boolean);
const unknown = setupIds.filter((id) => !SETUPS.some((s) => s.id === id));
if (unknown.length) {
  console.error(`unknown setup ${unknown.join(", ")}; setups: ${SETUPS.map((s) => s.id).join(", ")}`);
  process.exit(64);
}
const selected = SETUPS.filter((s) => setupIds.includes(s.id));
const full = selected.length === SETUPS.length && !args["no-capacity"] && !args["no-resilience"];
const writeDocs = args.docs ?? (!args["no-docs"] && full);

const started = performance.now();
const progress = (message: string) => console.error(`  [${((performance.now() - started) / 1000).toFixed(0).padStart(3)} s] ${message}`);
process.chdir(ROOT);
const binary = hostBinary(Boolean(args["no-build"]));

const cache = join(ROOT, "bench", ".cache");
mkdirSync(cache, { recursive: true });
const work = mkdtempSync(join(tmpdir(), "flashlex-fleet-"));
const m = machine(binary);
console.error(`bench:fleet: ${machineLine(m)}`);
console.error(`setups: ${selected.map((s) => s.id).join(", ")}; ${things} things, ${rounds} rounds\n`);

// Signals: the finally blocks below stop what was started; an interrupted run still cleans up.
const stoppers = new Set<() => Promise<void>>();
let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"] as const)
  process.on(signal, () => {
    interrupted = true;
    console.error(`${signal}: stopping what the bench started`);
    for (const stop of stoppers) void stop();
    setTimeout(() => process.exit(130), 15_000).unref();
  });

const results: SetupResult[] = [];
let capacity: Capacity | undefined;
let capacitySkipped: string | undefined;
let failed = false;
try {
  const fleet = await fleetCache(cache, things, progress);
  for (const setup of selected) {
    if (interrupted) break;
    const missing = setupMissing(setup);
    if (missing) {
      results.push({ id: setup.id, label: setup.label, skipped: missing });
      continue;
    }
    console.error(`== ${setup.label}`);
    const t0 = performance.now();
    let running: RunningSetup | undefined;
    try {
      running = await startSetup(setup, fleet, join(work, setup.id), progress);
      stoppers.add(running.stop);
      progress(`${setup.id}: started in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
      const figures = await drive(running, running.fleet ?? fleet, join(work, setup.id), {
        rounds,
        perThing,
        procs,
        resilience: !args["no-resilience"],
        progress,
      });
      results.push({ id: setup.id, label: setup.label, figures });
    } catch (err) {
      failed = true;
      console.error(`setup ${setup.id} failed: ${(err as Error).stack ?? err}`);
      results.push({ id: setup.id, label: setup.label, skipped: `FAILED: ${(err as Error).message.split("\n")[0]}` });
    } finally {
      if (running) {
        await running.stop();
        stoppers.delete(running.stop);
      }
    }
    progress(`${setup.id}: ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  if (args["no-capacity"]) capacitySkipped = "--no-capacity";
  else if (!interrupted) {
    console.error("== capacity: one hub with its embedded broker");
    try {
      const big = await fleetCache(cache, maxThings, progress);
      // the whole run stays near ten minutes: no new step after 9 minutes from the start
      capacity = await capacityRamp(big, join(work, "capacity"), {
        step: capacityStep,
        maxStepSeconds: 60,
        maxP99Ms: 10_000,
        deadline: Date.now() + Math.max(60_000, 540_000 - (performance.now() - started)),
        progress,
      });
    } catch (err) {
      failed = true;
      console.error(`capacity failed: ${(err as Error).stack ?? err}`);
      capacitySkipped = `FAILED: ${(err as Error).message.split("\n")[0]}`;
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}

m.load.end = loadNow();
const run: FleetRun = { machine: m, things, rounds, perThing, procs, seconds: (performance.now() - started) / 1000, results, capacity, capacitySkipped };
printRun(run);
mkdirSync(join(ROOT, "bench", "results"), { recursive: true });
const json = join(ROOT, "bench", "results", "fleet-latest.json");
writeFileSync(json, `${JSON.stringify(run, null, 2)}\n`);
console.log(`\nwrote ${json}`);
if (writeDocs && !failed) {
  const file = join(ROOT, "docs", "scaling.md");
  writeFileSync(file, replaceSection(readFileSync(file, "utf8"), markdownRun(run)));
  console.log(`wrote the figures in ${file}`);
}
process.exit(failed ? 1 : 0);
