/**
 * Row 5, memory (MiB, lower is better), read from /proc/PID/status:
 *
 * - idle: VmRSS of `flashlex serve` (the compiled binary) connected to Mosquitto over mutual
 *   TLS and subscribed, nothing arriving, 5 s after `mqtt.subscribed`, next to the peer: a
 *   compiled Bun binary that only waits (bench/peers/idle.ts, compiled like flashlex), read
 *   after the same 5 s. The two run side by side in each pair. Ratio = serve / idle floor.
 *   A second figure compares the same serve with a compiled Bun binary that only holds one
 *   MQTT.js connection to the same broker, subscribed (bench/peers/mqtt-idle.ts): the part of
 *   serve's memory that is the MQTT client and Bun's TLS and streams underneath it.
 * - a large ingress run: the same serve, idle as above (its VmRSS is the peer here), then a
 *   live stream of 1,000,000 QoS 1 messages (100,000 with --quick) published by
 *   `mosquitto_pub -l -q 1 -M 1000` while it is connected; when all are stored: its peak
 *   (VmHWM) and, 5 s later, its VmRSS after the drain. Ratios = peak / idle and after-drain /
 *   idle of the same process; a note splits idle and after-drain into anonymous and file-mapped
 *   pages. One run (it takes about a minute); not a median.
 */
import { start } from "../../test/support/binary.ts";
import { compiledFloor } from "../lib/floors.ts";
import { ingressSetup, payloadLines, publishLines, restartWithEmptyDatabase, unlessFails, untilStored } from "../lib/ingress-setup.ts";
import { mib, statusKb } from "../lib/procs.ts";
import { type BenchContext, measured, type Row, type RowResult } from "../lib/row.ts";
import { median, type Paired } from "../lib/stats.ts";

const SETTLE_MS = 5_000;

/** Resolves once `stream` has printed `text`; rejects after `timeoutMs`. */
async function untilPrinted(stream: ReadableStream<Uint8Array>, text: string, timeoutMs: number): Promise<void> {
  const decoder = new TextDecoder();
  let seen = "";
  const reader = stream.getReader();
  const timer = setTimeout(() => void reader.cancel(), timeoutMs);
  try {
    while (!seen.includes(text)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the MQTT.js peer did not print "${text}" within ${timeoutMs / 1000} s`);
      seen += decoder.decode(value, { stream: true });
    }
  } finally {
    clearTimeout(timer);
    reader.releaseLock();
  }
}

export const rss: Row = {
  id: "rss",
  number: 5,
  async run(ctx: BenchContext): Promise<RowResult[]> {
    const idleBinary = await compiledFloor(ctx, "idle");
    const mqttIdleBinary = await compiledFloor(ctx, "mqtt-idle");
    const s = await ingressSetup();
    const results: RowResult[] = [];
    try {
      const idle: Paired = { ours: [], peer: [], ratios: [] };
      const besideMqtt: Paired = { ours: [], peer: [], ratios: [] };
      const mqttPeerArgs = [
        mqttIdleBinary,
        "127.0.0.1",
        String(s.broker.port),
        s.thing.pki.caCertPath,
        s.publisher.certPath,
        s.publisher.privateKeyPath,
        "bench/mqtt-idle",
      ];
      /** serve's and the floor's anonymous memory, beside the pages mapped from their executables */
      const kinds = { serveAnon: [] as number[], serveFile: [] as number[], floorAnon: [] as number[], floorFile: [] as number[] };
      for (let i = 0; i < ctx.runs; i++) {
        restartWithEmptyDatabase(s.thing.dataDir);
        const floor = Bun.spawn([idleBinary], { stdout: "ignore", stderr: "ignore" });
        const mqttPeer = Bun.spawn(mqttPeerArgs, { stdout: "pipe", stderr: "ignore" });
        const serve = start(["serve", ...s.thing.flags]);
        try {
          await Promise.all([serve.waitFor(/mqtt\.subscribed/, 30_000), untilPrinted(mqttPeer.stdout, "subscribed", 30_000)]);
          await Bun.sleep(SETTLE_MS);
          const [a, b, c] = [mib(statusKb(serve.proc.pid, "VmRSS")), mib(statusKb(floor.pid, "VmRSS")), mib(statusKb(mqttPeer.pid, "VmRSS"))];
          idle.ours.push(a);
          idle.peer.push(b);
          idle.ratios.push(a / b);
          besideMqtt.ours.push(a);
          besideMqtt.peer.push(c);
          besideMqtt.ratios.push(a / c);
          kinds.serveAnon.push(mib(statusKb(serve.proc.pid, "RssAnon")));
          kinds.serveFile.push(mib(statusKb(serve.proc.pid, "RssFile")));
          kinds.floorAnon.push(mib(statusKb(floor.pid, "RssAnon")));
          kinds.floorFile.push(mib(statusKb(floor.pid, "RssFile")));
          ctx.progress(`rss idle ${i + 1}/${ctx.runs}: serve ${a.toFixed(1)} MiB, idle Bun binary ${b.toFixed(1)} MiB, MQTT.js subscriber ${c.toFixed(1)} MiB`);
        } finally {
          floor.kill("SIGTERM");
          mqttPeer.kill("SIGTERM");
          await Promise.all([serve.stop(), floor.exited, mqttPeer.exited]);
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
            notes: [
              `of which pages mapped from the executable (clean, shared, reclaimable under memory pressure): serve ${median(kinds.serveFile).toFixed(1)} MiB, the floor ${median(kinds.floorFile).toFixed(1)} MiB; the process's own (anonymous): serve ${median(kinds.serveAnon).toFixed(1)} MiB, the floor ${median(kinds.floorAnon).toFixed(1)} MiB`,
            ],
          },
          idle,
        ),
        measured(
          {
            id: "rss-idle-mqtt",
            row: 5,
            measure: "RSS of idle `serve`, next to the MQTT client alone",
            unit: "MiB",
            better: "lower",
            peerName: "compiled Bun binary holding one MQTT.js connection over mutual TLS, subscribed",
          },
          besideMqtt,
        ),
      );

      const count = ctx.quick ? 100_000 : 1_000_000;
      const label = count >= 1e6 ? `${count / 1e6}M` : `${count / 1000}k`;
      restartWithEmptyDatabase(s.thing.dataDir);
      const lines = payloadLines(count);
      const serve = start(["serve", ...s.thing.flags]);
      try {
        await serve.waitFor(/mqtt\.subscribed/, 30_000);
        await Bun.sleep(SETTLE_MS);
        const before = mib(statusKb(serve.proc.pid, "VmRSS"));
        const split = () =>
          `${mib(statusKb(serve.proc.pid, "RssAnon")).toFixed(1)} MiB its own (anonymous), ${mib(statusKb(serve.proc.pid, "RssFile")).toFixed(1)} MiB mapped from files`;
        const splitBefore = split();
        const t0 = performance.now();
        ctx.progress(`rss: serve idle at ${before.toFixed(1)} MiB; publishing ${count} messages`);
        const published = publishLines(s, s.topic, lines);
        // a publisher that lost messages (PublisherReconnected) fails the row now, not 20 s later
        await Promise.race([untilStored(serve, count, { timeoutMs: 900_000, broker: s.broker }), unlessFails(published)]);
        const seconds = (performance.now() - t0) / 1000;
        await published;
        const peak = mib(statusKb(serve.proc.pid, "VmHWM"));
        await Bun.sleep(SETTLE_MS);
        const after = mib(statusKb(serve.proc.pid, "VmRSS"));
        const splitAfter = split();
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
              notes: [
                "target: the issue's 'no lasting growth', read here as at most 1.2× the idle RSS",
                `idle: ${splitBefore}; after the drain: ${splitAfter} (pages mapped from the executable are clean and reclaimable; JIT code for the hot path is anonymous)`,
              ],
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
