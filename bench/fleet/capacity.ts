/**
 * How many things one hub with its embedded broker holds on this machine: things are added in
 * steps (one simulator process per step, each holding its step's connections), and after each
 * step one ingress message goes to every thing held. The ramp stops at the first step where a
 * connection fails, a step's connections take longer than `maxStepSeconds`, the ingress round's
 * p99 exceeds `maxP99Ms` or loses a message, the fleet is used up, or the time budget is spent;
 * it says which.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { mib } from "../lib/procs.ts";
import { percentile } from "../lib/stats.ts";
import { ingressRound, rssKb, sumOf, until } from "./drive.ts";
import { SETUPS, startSetup } from "./setups.ts";
import { type SimGroup, startSims } from "./sims.ts";
import type { FleetCache } from "./things.ts";

export interface CapacityStep {
  things: number;
  held: number;
  failed: number;
  firstError?: string;
  /** seconds to connect and subscribe this step's things (the others stay connected) */
  stepConnectSeconds: number;
  hubRssMiB: number;
  /** (RSS now − RSS idle) / held */
  hubKiBPerThing: number;
  ingressRate: number;
  p50: number;
  p99: number;
  lost: number;
  /** the hub's open file descriptors after the step */
  openFiles: number;
}

export interface Capacity {
  step: number;
  steps: CapacityStep[];
  /** the most things held with every check passing */
  held: number;
  stoppedBecause: string;
  hubRssIdleMiB: number;
  /** the hub's open-file limit (RLIMIT_NOFILE, soft): one descriptor per connection */
  fileLimit: number;
}

export interface CapacityOptions {
  step: number;
  maxStepSeconds: number;
  maxP99Ms: number;
  /** Date.now() after which no new step starts */
  deadline: number;
  progress(message: string): void;
}

/** Soft RLIMIT_NOFILE of process `pid` (from /proc), NaN when unreadable. */
function fileLimit(pid: number): number {
  try {
    const line = readFileSync(`/proc/${pid}/limits`, "utf8").match(/^Max open files\s+(\d+)/m);
    return line ? Number(line[1]) : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** Open file descriptors of process `pid` now. */
function openFiles(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return Number.NaN;
  }
}

export async function capacityRamp(fleet: FleetCache, work: string, opts: CapacityOptions): Promise<Capacity> {
  const setup = await startSetup(SETUPS.find((s) => s.id === "embedded")!, fleet, work);
  const groups: SimGroup[] = [];
  const steps: CapacityStep[] = [];
  let stoppedBecause = `the fleet of ${fleet.things.length} things was used up (--max-things)`;
  let held = 0;
  const pid = setup.hubs[0]!.proc.pid;
  try {
    await Bun.sleep(2000);
    const idle = rssKb([pid]);
    for (let offset = 0; offset < fleet.things.length; offset += opts.step) {
      if (Date.now() > opts.deadline) {
        stoppedBecause = "the time budget was spent";
        break;
      }
      const slice = fleet.things.slice(offset, offset + opts.step);
      const group = startSims(
        [{ things: slice, offset }],
        { ca: fleet.ca, key: fleet.key, servers: setup.servers, connectTimeoutMs: 30_000 },
        join(work, `sims-${offset}`),
      );
      groups.push(group);
      const ready = (await group.sims[0]!.next("ready", opts.maxStepSeconds * 1000 + 30_000)) as unknown as {
        connected: number;
        failed: number;
        ms: number;
        firstError?: string;
      };
      await Bun.sleep(2000);
      if (ready.failed > 0) {
        // No ingress round: a hub out of descriptors cannot accept the API's connections either.
        const open = openFiles(pid);
        const limit = fileLimit(pid);
        const rss = rssKb([pid]);
        const reached = held + ready.connected;
        steps.push({
          things: offset + slice.length,
          held: reached,
          failed: ready.failed,
          firstError: ready.firstError,
          stepConnectSeconds: ready.ms / 1000,
          hubRssMiB: mib(rss),
          hubKiBPerThing: (rss - idle) / reached,
          ingressRate: Number.NaN,
          p50: Number.NaN,
          p99: Number.NaN,
          lost: 0,
          openFiles: open,
        });
        stoppedBecause =
          open >= limit - 16
            ? `the hub ran out of file descriptors at ${reached} connected things (${open} open, RLIMIT_NOFILE ${limit}); ${ready.failed} connections got no CONNACK`
            : `${ready.failed} connections failed at ${offset + slice.length} things (${ready.firstError})`;
        opts.progress(`capacity: ${stoppedBecause}`);
        break;
      }
      const all = fleet.things.slice(0, offset + slice.length);
      const arrivals = async () => sumOf((await Promise.all(groups.map((g) => g.ask({ cmd: "count" }, "count")))).flat(), "ingress");
      const before = await arrivals();
      const sent = new Map<string, { at: number; round: number; ok: boolean }>();
      const round = offset + 1;
      await ingressRound(setup, { ...fleet, things: all }, round, sent);
      const accepted = [...sent.values()].filter((s) => s.ok).length;
      await until(async () => (await arrivals()) - before >= accepted, 60_000);
      const first = new Map<string, number>();
      for (const g of groups) for (const [id, at] of (await g.report()).ingress) if (sent.has(id) && !first.has(id)) first.set(id, at);
      const latencies = [...first].map(([id, at]) => at - sent.get(id)!.at);
      const start = Math.min(...[...sent.values()].map((s) => s.at));
      const end = Math.max(...first.values());
      const rss = rssKb([pid]);
      const step: CapacityStep = {
        things: all.length,
        held: held + ready.connected,
        failed: ready.failed,
        firstError: ready.firstError,
        stepConnectSeconds: ready.ms / 1000,
        hubRssMiB: mib(rss),
        hubKiBPerThing: (rss - idle) / (held + ready.connected),
        ingressRate: (first.size / (end - start)) * 1000,
        p50: percentile(latencies, 50),
        p99: percentile(latencies, 99),
        lost: accepted - first.size,
        openFiles: openFiles(pid),
      };
      steps.push(step);
      opts.progress(
        `capacity: ${step.held}/${step.things} held (step connected in ${step.stepConnectSeconds.toFixed(1)} s), hub ${step.hubRssMiB.toFixed(0)} MiB, ingress ${step.ingressRate.toFixed(0)} msg/s p99 ${step.p99.toFixed(0)} ms`,
      );
      if (step.lost > 0) {
        stoppedBecause = `${step.lost} ingress messages did not arrive within 60 s at ${step.things}`;
        break;
      }
      held = step.held;
      if (step.stepConnectSeconds > opts.maxStepSeconds) {
        stoppedBecause = `connecting ${opts.step} more things took over ${opts.maxStepSeconds} s`;
        break;
      }
      if (step.p99 > opts.maxP99Ms) {
        stoppedBecause = `ingress p99 went over ${opts.maxP99Ms} ms`;
        break;
      }
    }
    return { step: opts.step, steps, held, stoppedBecause, hubRssIdleMiB: mib(idle), fileLimit: fileLimit(pid) };
  } finally {
    for (const g of groups) await g.stop();
    await setup.stop();
  }
}
