/**
 * Row 5, memory (MiB, lower is better), read from /proc/PID/status:
 *
 * - idle: VmRSS of `flashlex serve` (the compiled binary) connected to Mosquitto over mutual
 *   TLS and subscribed, nothing arriving, 5 s after `mqtt.subscribed`, next to the peer: a
 *   compiled Bun binary that only waits (bench/peers/idle.ts, compiled like flashlex), read
 *   after the same 5 s. The two run side by side in each pair. Ratio = serve / idle floor.
 * - a large ingress run: the same serve, idle as above (its VmRSS is the peer here), then a
 *   live stream of 1,000,000 QoS 1 messages (100,000 with --quick) published by
 *   `mosquitto_pub -l -q 1 -M 1000` while it is connected; when all are stored: its peak
 *   (VmHWM) and, 5 s later, its VmRSS after the drain. Ratios = peak / idle and after-drain /
 *   idle of the same process. One run (it takes about a minute); not a median.
 */
import { rmSync } from "node:fs";
import { start } from "../../test/support/binary.ts";
import { compiledFloor } from "../lib/floors.ts";
import { ingressSetup, payloadLines, publishLines, untilStored } from "../lib/ingress-setup.ts";
import { mib, statusKb } from "../lib/procs.ts";
import { type BenchContext, measured, type Row, type RowResult } from "../lib/row.ts";
import type { Paired } from "../lib/stats.ts";

const SETTLE_MS = 5_000;

export const rss: Row = {
  id: "rss",
  number: 5,
  async run(ctx: BenchContext): Promise<RowResult[]> {
    const idleBinary = await compiledFloor(ctx, "idle");
    const s = await ingressSetup();
    const results: RowResult[] = [];
    try {
      const idle: Paired = { ours: [], peer: [], ratios: [] };
      for (let i = 0; i < ctx.runs; i++) {
        rmSync(s.thing.dataDir, { recursive: true, force: true });
        const floor = Bun.spawn([idleBinary], { stdout: "ignore", stderr: "ignore" });
        const serve = start(["serve", ...s.thing.flags]);
        try {
          await serve.waitFor(/mqtt\.subscribed/, 30_000);
          await Bun.sleep(SETTLE_MS);
          const [a, b] = [mib(statusKb(serve.proc.pid, "VmRSS")), mib(statusKb(floor.pid, "VmRSS"))];
          idle.ours.push(a);
          idle.peer.push(b);
          idle.ratios.push(a / b);
          ctx.progress(`rss idle ${i + 1}/${ctx.runs}: serve ${a.toFixed(1)} MiB, idle Bun binary ${b.toFixed(1)} MiB`);
        } finally {
          floor.kill("SIGTERM");
          await Promise.all([serve.stop(), floor.exited]);
        }
      }
      results.push(
        measured(
          {
            id: "rss-idle",
            row: 5,
            measure: "RSS of idle `serve`",
            unit: "MiB",
            better: "lower",
            peerName: "compiled Bun binary that only waits",
            target: { op: "<=", value: 2 },
          },
          idle,
        ),
      );

      const count = ctx.quick ? 100_000 : 1_000_000;
      const label = count >= 1e6 ? `${count / 1e6}M` : `${count / 1000}k`;
      rmSync(s.thing.dataDir, { recursive: true, force: true });
      const lines = payloadLines(count);
      const serve = start(["serve", ...s.thing.flags]);
      try {
        await serve.waitFor(/mqtt\.subscribed/, 30_000);
        await Bun.sleep(SETTLE_MS);
        const before = mib(statusKb(serve.proc.pid, "VmRSS"));
        const t0 = performance.now();
        ctx.progress(`rss: serve idle at ${before.toFixed(1)} MiB; publishing ${count} messages`);
        const published = publishLines(s, s.topic, lines);
        await untilStored(serve, count, { timeoutMs: 900_000, broker: s.broker });
        const seconds = (performance.now() - t0) / 1000;
        await published;
        const peak = mib(statusKb(serve.proc.pid, "VmHWM"));
        await Bun.sleep(SETTLE_MS);
        const after = mib(statusKb(serve.proc.pid, "VmRSS"));
        ctx.progress(`rss: ${count} stored in ${seconds.toFixed(0)} s; peak ${peak.toFixed(1)} MiB, after the drain ${after.toFixed(1)} MiB`);
        const one = (x: number): Paired => ({ ours: [x], peer: [before], ratios: [x / before] });
        const base = { row: 5, unit: "MiB", better: "lower" as const, peerName: "the same serve idle before the run" };
        const how = `one run: a live stream of ${count.toLocaleString("en-US")} QoS 1 messages (~35 bytes) stored in ${seconds.toFixed(0)} s (${Math.round(count / seconds)} msg/s)`;
        results.push(measured({ ...base, id: `rss-peak-${label}`, measure: `peak RSS of \`serve\` over ${label} messages`, notes: [how] }, one(peak)));
        results.push(
          measured(
            {
              ...base,
              id: `rss-after-${label}`,
              measure: `RSS of \`serve\` ${SETTLE_MS / 1000} s after ${label} messages`,
              target: { op: "<=", value: 1.2 },
              notes: ["target: the issue's 'no lasting growth', read here as at most 1.2× the idle RSS"],
            },
            one(after),
          ),
        );
      } finally {
        await serve.stop();
      }
    } finally {
      await s.close();
    }
    return results;
  },
};
