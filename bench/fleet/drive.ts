/**
 * One setup's run of the fleet bench: connect every thing, read the hubs' (and brokers') memory,
 * drive ingress rounds through the hub's API and egress rounds from the things, then count every
 * message by its id end to end.
 *
 * - ingress: the bench POSTs `{"message": {"fleet": ID}}` to `/things/{id}/publish` (32 calls in
 *   flight, spread over the setup's hubs); the message counts when it arrives at its thing. Its
 *   latency is arrival − the moment the bench sent the POST.
 * - egress: each thing publishes QoS 1 collect envelopes with its own message id; a message counts
 *   when the hub logs it stored (`hub.collect`, written after the commit). Its latency is that log
 *   line's time − the moment the thing published. Afterwards the stored ids are read back through
 *   the API (`GET /things/{id}/messages?messagetype=egress`): an acknowledged id missing there is lost.
 * - a round's rate is its messages over the time from its first send to its last arrival.
 *
 * The resilience phase (setups with broker nodes): an ingress round and two egress rounds, with
 * broker node 2 killed (SIGKILL) a third of the way through the ingress round and, with two
 * hubs, hub A killed (SIGKILL) halfway through it; things reconnect to
 * the other nodes (their MQTT.js `servers`), and every message the hub accepted or the broker
 * acknowledged must arrive. Repeats are counted, not hidden.
 */
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { mib, statusKb } from "../lib/procs.ts";
import { percentile } from "../lib/stats.ts";
import type { RunningSetup } from "./setups.ts";
import { type SimGroup, type SimReport, slicesOf, startSims } from "./sims.ts";
import { type FleetCache, pool } from "./things.ts";

export interface DriveOptions {
  rounds: number;
  /** egress messages per thing per round */
  perThing: number;
  /** simulator processes */
  procs: number;
  resilience: boolean;
  progress(message: string): void;
}

/** Counted by id: what was accepted, what arrived once, what never did, what came again. */
export interface Tally {
  accepted: number;
  arrived: number;
  lost: number;
  duplicates: number;
}

export interface PhaseFigures {
  ingress: Tally;
  egress: Tally & { unacknowledged: number; storedTwice: number; hubRepeats: number; otherHubCopies?: number };
  reconnects: number;
  /** the hub killed with SIGKILL during the resilience phase, when the setup has two */
  hubKilled?: string;
  /** seconds from the node's kill until every thing was connected again (resilience only) */
  reconnectSeconds?: number;
}

export interface SetupFigures {
  things: number;
  held: number;
  connectFailed: number;
  firstConnectError?: string;
  connectSeconds: number;
  ingressRates: number[];
  egressRates: number[];
  ingressLatencyMs: { p50: number; p99: number };
  egressLatencyMs: { p50: number; p99: number };
  hubRssIdleMiB: number;
  hubRssHeldMiB: number;
  /** KiB per connected thing: (RSS at N − RSS idle) / N */
  hubKiBPerThing: number;
  brokerRssIdleMiB?: number;
  brokerRssHeldMiB?: number;
  brokerKiBPerThing?: number;
  steady: PhaseFigures;
  resilience?: PhaseFigures;
}

const IN_FLIGHT = 32;
const RESILIENCE_ROUND = 1000;

/** Sum of VmRSS (KiB) of live `pids`. */
export const rssKb = (pids: number[]) => pids.reduce((sum, pid) => sum + (statusKb(pid, "VmRSS") || 0), 0);

/**
 * Stored egress ids and their first `hub.collect` time, from every hub's log. `repeats`: a hub
 * logging an id it logged before (the broker delivered it to that hub again: a PUBACK lost with
 * a node, a connection dropped before the PUBACK). `otherHub`: an id a second hub logged too —
 * every hub has its own session and gets its own copy of each message (RabbitMQ 3.10's MQTT has
 * no shared subscriptions); the database stores it once by its id.
 */
function storedFromLogs(setup: RunningSetup): { first: Map<string, number>; repeats: number; otherHub: number } {
  const first = new Map<string, number>();
  let repeats = 0;
  let otherHub = 0;
  const line = /^(\S+) INFO\s+hub\.collect .*?message=([0-9a-f-]{36})/gm;
  for (const hub of setup.hubs) {
    const seen = new Set<string>();
    for (const m of hub.log().matchAll(line)) {
      const id = m[2]!;
      if (seen.has(id)) repeats++;
      else if (seen.add(id) && first.has(id)) otherHub++;
      else first.set(id, Date.parse(m[1]!));
    }
  }
  return { first, repeats, otherHub };
}

/** Polls `check` every 100 ms until it is true or `timeoutMs` passed; false on timeout. */
export async function until(check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<boolean> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; ) {
    if (await check()) return true;
    await Bun.sleep(100);
  }
  return await check();
}

export const sumOf = (events: { [k: string]: unknown }[], key: string) => events.reduce((s, e) => s + Number(e[key]), 0);

/** One ingress message per thing; resolves when every POST was answered. */
export async function ingressRound(
  setup: RunningSetup,
  fleet: FleetCache,
  round: number,
  sent: Map<string, { at: number; round: number; ok: boolean }>,
  onProgress?: (done: number) => void,
): Promise<void> {
  const headers = { Authorization: `Bearer ${setup.token}`, "Content-Type": "application/json" };
  let done = 0;
  await pool(fleet.things.length, IN_FLIGHT, async (i) => {
    const id = randomUUID();
    const api = setup.apis[i % setup.apis.length]!;
    const at = performance.timeOrigin + performance.now();
    let ok = false;
    try {
      const answer = await fetch(`${api}/things/${fleet.things[i]!.id}/publish`, {
        method: "POST",
        headers,
        body: JSON.stringify({ message: { fleet: id } }),
        signal: AbortSignal.timeout(30_000),
      });
      ok = answer.status === 200;
      await answer.arrayBuffer();
    } catch {
      // not accepted: not counted as lost if it never arrives
    }
    sent.set(id, { at, round, ok });
    onProgress?.(++done);
  });
}

/** p50 and p99 of `values` (ms). */
const latency = (values: number[]) => ({ p50: percentile(values, 50), p99: percentile(values, 99) });

/** The rate of each round: its messages over first send → last arrival. */
function ratesByRound(entries: { round: number; sent: number; arrived?: number }[], rounds: number[]): number[] {
  return rounds.map((r) => {
    const mine = entries.filter((e) => e.round === r && e.arrived !== undefined);
    if (!mine.length) return 0;
    const start = Math.min(...mine.map((e) => e.sent));
    const end = Math.max(...mine.map((e) => e.arrived!));
    return (mine.length / (end - start)) * 1000;
  });
}

/** Egress ids stored in the database, read back through the API (one call per thing). */
async function storedInDatabase(setup: RunningSetup, fleet: FleetCache): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  const headers = { Authorization: `Bearer ${setup.token}` };
  await pool(fleet.things.length, 16, async (i) => {
    const api = setup.apis[i % setup.apis.length]!;
    const answer = await fetch(`${api}/things/${fleet.things[i]!.id}/messages?messagetype=egress`, { headers, signal: AbortSignal.timeout(30_000) });
    if (answer.status !== 200) throw new Error(`GET messages answered ${answer.status}`);
    for (const m of ((await answer.json()) as { result: { flmessagespk: string }[] }).result) counts.set(m.flmessagespk, (counts.get(m.flmessagespk) ?? 0) + 1);
  });
  return counts;
}

/** Figures of the rounds in `rounds`, counted by id. */
function phaseFigures(
  report: SimReport,
  sent: Map<string, { at: number; round: number; ok: boolean }>,
  stored: { first: Map<string, number>; repeats: number; otherHub: number },
  database: Map<string, number>,
  rounds: Set<number>,
): PhaseFigures & { ingressEntries: { round: number; sent: number; arrived?: number }[]; egressEntries: { round: number; sent: number; arrived?: number }[] } {
  const arrivals = new Map<string, number[]>();
  for (const [id, at] of report.ingress) {
    const s = sent.get(id);
    if (!s || !rounds.has(s.round)) continue;
    const list = arrivals.get(id);
    if (list) list.push(at);
    else arrivals.set(id, [at]);
  }
  const ingressEntries: { round: number; sent: number; arrived?: number }[] = [];
  let accepted = 0;
  let lost = 0;
  let duplicates = 0;
  for (const [id, s] of sent) {
    if (!rounds.has(s.round)) continue;
    const got = arrivals.get(id);
    if (s.ok) accepted++;
    if (s.ok && !got) lost++;
    if (got) duplicates += got.length - 1;
    ingressEntries.push({ round: s.round, sent: s.at, arrived: got ? Math.min(...got) : undefined });
  }
  const egress = report.egress.filter((e) => rounds.has(e[4]));
  const egressEntries = egress.map(([id, , at, , round]) => ({ round, sent: at, arrived: stored.first.get(id) }));
  const acked = egress.filter((e) => e[3] !== null);
  return {
    ingress: { accepted, arrived: arrivals.size, lost, duplicates },
    egress: {
      accepted: acked.length,
      arrived: egress.filter(([id]) => database.has(id)).length,
      lost: acked.filter(([id]) => !database.has(id)).length,
      duplicates: 0,
      unacknowledged: egress.length - acked.length,
      storedTwice: egress.filter(([id]) => (database.get(id) ?? 0) > 1).length,
      hubRepeats: 0, // the log's repeats are counted over the whole run below
    },
    reconnects: report.reconnects,
    ingressEntries,
    egressEntries,
  };
}

/** Runs the fleet against a started setup; the caller stops the setup. */
export async function drive(setup: RunningSetup, fleet: FleetCache, work: string, opts: DriveOptions): Promise<SetupFigures> {
  const n = fleet.things.length;
  const hubPids = setup.hubs.map((h) => h.proc.pid);
  await Bun.sleep(2000);
  const hubIdle = rssKb(hubPids);
  const brokerIdle = rssKb(setup.brokerPids());
  const slices = slicesOf(fleet.things, opts.procs);
  const sims: SimGroup = startSims(slices, { ca: fleet.ca, key: fleet.key, servers: setup.servers }, join(work, "sims"));
  try {
    const ready = await Promise.all(sims.sims.map((s) => s.next("ready", 120_000 + n * 30)));
    const held = sumOf(ready, "connected");
    const connectFailed = sumOf(ready, "failed");
    const connectSeconds = Math.max(...ready.map((r) => Number(r.ms))) / 1000;
    opts.progress(
      `${held}/${n} things connected and subscribed in ${connectSeconds.toFixed(1)} s${connectFailed ? ` (${connectFailed} failed: ${ready.find((r) => r.firstError)?.firstError})` : ""}`,
    );
    await Bun.sleep(3000);
    const hubHeld = rssKb(hubPids);
    const brokerHeld = rssKb(setup.brokerPids());

    const sent = new Map<string, { at: number; round: number; ok: boolean }>();
    const count = async () => {
      const c = await sims.ask({ cmd: "count" }, "count");
      return { ingress: sumOf(c, "ingress"), sent: sumOf(c, "sent"), acked: sumOf(c, "acked") };
    };
    const accepted = () => [...sent.values()].filter((s) => s.ok).length;
    const waitMs = 30_000 + n * 20;
    const steadyRounds = new Set<number>();
    for (let r = 1; r <= opts.rounds; r++) {
      steadyRounds.add(r);
      await ingressRound(setup, fleet, r, sent);
      const inOk = await until(async () => (await count()).ingress >= accepted(), waitMs);
      await sims.ask({ cmd: "egress", round: r, perThing: opts.perThing }, "egress-sent", 60_000);
      const egOk = await until(async () => {
        const c = await count();
        return c.acked >= c.sent && storedFromLogs(setup).first.size >= c.acked;
      }, waitMs);
      opts.progress(`round ${r}/${opts.rounds}: ingress ${inOk ? "all arrived" : "NOT all arrived"}, egress ${egOk ? "all stored" : "NOT all stored"}`);
    }

    let reconnectSeconds: number | undefined;
    let hubKilled: string | undefined;
    let resilienceReconnects = 0;
    const resilienceRounds = new Set<number>();
    if (opts.resilience && setup.killNode) {
      const [before] = [await sims.ask({ cmd: "status" }, "status")];
      const reconnectsBefore = sumOf(before, "reconnects");
      resilienceRounds.add(RESILIENCE_ROUND).add(RESILIENCE_ROUND + 1);
      await sims.ask({ cmd: "egress", round: RESILIENCE_ROUND, perThing: opts.perThing }, "egress-sent", 60_000);
      let killedAt = 0;
      const killing = ingressRound(setup, fleet, RESILIENCE_ROUND, sent, (done) => {
        if (done === Math.floor(n / 3)) {
          killedAt = Date.now();
          void setup.killNode!(1).then(() => opts.progress("broker node 2 killed (SIGKILL)"));
        }
        // Two hubs: hub A goes too, halfway (its API is taken out of the rotation, as a load balancer would).
        if (done === Math.floor(n / 2) && setup.killHub) {
          hubKilled = "hub A";
          void setup.killHub(0).then(() => opts.progress("hub A killed (SIGKILL)"));
        }
      });
      await killing;
      await sims.ask({ cmd: "egress", round: RESILIENCE_ROUND + 1, perThing: opts.perThing }, "egress-sent", 60_000);
      // Back: the things of the lost node reconnected (counted) and every thing is connected.
      const back = await until(async () => {
        const status = await sims.ask({ cmd: "status" }, "status");
        return sumOf(status, "reconnects") > reconnectsBefore && sumOf(status, "connected") >= held;
      }, 120_000);
      reconnectSeconds = (Date.now() - killedAt) / 1000;
      opts.progress(`things ${back ? "all connected again" : "NOT all connected again"} ${reconnectSeconds.toFixed(1)} s after the kill`);
      const all = await until(async () => {
        const c = await count();
        return c.ingress >= accepted() && c.acked >= c.sent && storedFromLogs(setup).first.size >= c.acked;
      }, 120_000);
      resilienceReconnects = sumOf(await sims.ask({ cmd: "status" }, "status"), "reconnects") - reconnectsBefore;
      opts.progress(`resilience: ${all ? "everything arrived" : "NOT everything arrived within 120 s"}; ${resilienceReconnects} reconnects`);
    }

    await Bun.sleep(1000); // late repeats show in the counts
    const report = await sims.report();
    const stored = storedFromLogs(setup);
    const database = await storedInDatabase(setup, fleet);
    const steady = phaseFigures(report, sent, stored, database, steadyRounds);
    const resilience = resilienceRounds.size ? phaseFigures(report, sent, stored, database, resilienceRounds) : undefined;
    // The hub's repeats (a message delivered to it again, stored once) over the whole run, in the last phase.
    (resilience ?? steady).egress.hubRepeats = stored.repeats;
    (resilience ?? steady).egress.duplicates = stored.repeats;
    (resilience ?? steady).egress.otherHubCopies = stored.otherHub;
    const ingressLat = steady.ingressEntries.filter((e) => e.arrived !== undefined).map((e) => e.arrived! - e.sent);
    const egressLat = steady.egressEntries.filter((e) => e.arrived !== undefined).map((e) => e.arrived! - e.sent);
    const rounds = [...steadyRounds];
    const strip = ({ ingressEntries: _i, egressEntries: _e, ...rest }: ReturnType<typeof phaseFigures>): PhaseFigures => rest;
    return {
      things: n,
      held,
      connectFailed,
      firstConnectError: ready.find((r) => r.firstError)?.firstError as string | undefined,
      connectSeconds,
      ingressRates: ratesByRound(steady.ingressEntries, rounds),
      egressRates: ratesByRound(steady.egressEntries, rounds),
      ingressLatencyMs: latency(ingressLat),
      egressLatencyMs: latency(egressLat),
      hubRssIdleMiB: mib(hubIdle),
      hubRssHeldMiB: mib(hubHeld),
      hubKiBPerThing: held ? (hubHeld - hubIdle) / held : Number.NaN,
      ...(setup.brokerPids().length || brokerIdle
        ? { brokerRssIdleMiB: mib(brokerIdle), brokerRssHeldMiB: mib(brokerHeld), brokerKiBPerThing: held ? (brokerHeld - brokerIdle) / held : Number.NaN }
        : {}),
      steady: strip(steady),
      resilience: resilience ? { ...strip(resilience), reconnects: resilienceReconnects, reconnectSeconds, hubKilled } : undefined,
    };
  } finally {
    await sims.stop();
  }
}
