/**
 * Row 1, ingress: how fast `flashlex serve` (the compiled binary) takes QoS 1 messages off
 * Debian's Mosquitto over mutual TLS on loopback and commits them (`synchronous=FULL`, group
 * commit, PUBACKs only after the COMMIT), next to the peer `mosquitto_sub -q 1 -c` (a persistent
 * session that only prints the messages, to /dev/null), on a stream of the same messages to a
 * topic of its own. Unit: messages per second (higher is better); ratio = serve / mosquitto_sub.
 *
 * - queued: the whole stream is published (mosquitto_pub -l, QoS 1) while the subscriber is
 *   offline, then the clock runs from the subscriber's start (process start and TLS connect
 *   included, for both) until it has the last message: serve's `ingress.stored` log lines add
 *   up to the count, mosquitto_sub exits after `-C count`. 5k and 20k short JSON messages
 *   (~35 bytes), and 20k of 256 bytes and of 4 KiB.
 * - live: the subscriber is connected (serve: `mqtt.subscribed`; mosquitto_sub: Mosquitto logged
 *   the connection of its persistent session) when the publisher starts; the clock runs from
 *   the publisher's start (`mosquitto_pub -l -q 1 -M 1000`) to the subscriber's last message.
 * - armv7 store driver: the linux-armv7 build's JavaScript bundle (scripts/bundle-node.ts: the
 *   WebAssembly SQLite, node-sqlite3-wasm, in place of bun:sqlite) run by this machine's Node 20
 *   on x64, queued, against the same mosquitto_sub. Not the armv7 binary under qemu: emulation
 *   would measure qemu.
 *
 * Also reported: serve's peak RSS (VmHWM) in the queued runs.
 */
import { join } from "node:path";
import { commitSha, packageVersion } from "../../scripts/build.ts";
import { bundleForNode } from "../../scripts/bundle-node.ts";
import { start } from "../../test/support/binary.ts";
import { connected } from "../lib/broker.ts";
import {
  type BenchSession,
  type IngressSetup,
  ingressSetup,
  payloadLines,
  publishLines,
  queueLines,
  restartWithEmptyDatabase,
  retryingLostMessages,
  unlessFails,
  untilStored,
} from "../lib/ingress-setup.ts";
import { mib, statusKb } from "../lib/procs.ts";
import { type BenchContext, measured, type Row, type RowResult, skipped } from "../lib/row.ts";
import { interleave, median, perSecond } from "../lib/stats.ts";

const PEER = "mosquitto_sub -q 1 -c";
const SUB_ID = "bench-sub";
/** mosquitto_sub's own topic: a stream for it must not queue up for serve too (TOOLCHAIN.md) */
const SUB_TOPIC = "bench/mosquitto_sub";

interface Subject {
  label: string;
  /** the command in front of `serve` (default: the compiled binary) */
  command?: string[];
}

function subArgs(s: IngressSetup, extra: string[]): string[] {
  const thing = s.thing.pki.thing;
  return ["mosquitto_sub", ...s.tls, "--cert", thing.certPath, "--key", thing.privateKeyPath, "-i", SUB_ID, "-c", "-q", "1", "-t", SUB_TOPIC, ...extra];
}

/** serve until `count` messages are stored: ms from serve's start (or, live, from `during`'s start) and serve's peak RSS. */
async function serveUntil(s: IngressSetup, subject: Subject, count: number, during?: () => Promise<void>) {
  restartWithEmptyDatabase(s.thing.dataDir);
  const before = during ? undefined : performance.now();
  const serve = start(["serve", ...s.thing.flags], { command: subject.command });
  let t0 = before ?? 0;
  try {
    let publishing: Promise<void> | undefined;
    if (during) {
      await serve.waitFor(/mqtt\.subscribed/, 30_000);
      t0 = performance.now();
      publishing = during();
    }
    await Promise.race([untilStored(serve, count, { broker: s.broker }), unlessFails(publishing)]);
    const result = { ms: performance.now() - t0, peakKb: statusKb(serve.proc.pid, "VmHWM") };
    // the publisher may still be saying goodbye: the next run's must not take its client id over
    await publishing?.catch(() => {});
    return result;
  } finally {
    await serve.stop();
  }
}

async function subUntil(s: IngressSetup, count: number, during?: () => Promise<void>): Promise<number> {
  if (!during) {
    const t0 = performance.now();
    const code = await Bun.spawn(subArgs(s, ["-C", String(count)]), { stdout: "ignore", stderr: "ignore" }).exited;
    if (code !== 0) throw new Error(`mosquitto_sub exited ${code}`);
    return performance.now() - t0;
  }
  const from = s.broker.log().length;
  const sub = Bun.spawn(subArgs(s, ["-C", String(count)]), { stdout: "ignore", stderr: "ignore" });
  await connected(s.broker, SUB_ID, from);
  const t0 = performance.now();
  const publishing = during();
  try {
    await Promise.race([sub.exited, unlessFails(publishing)]);
  } finally {
    // the publisher failed: -C count would wait for ever; gone before its session is emptied
    sub.kill();
    await sub.exited;
  }
  if (sub.exitCode !== 0) throw new Error(`mosquitto_sub exited ${sub.exitCode}`);
  const ms = performance.now() - t0;
  await publishing.catch(() => {}); // as in serveUntil
  return ms;
}

export const ingress: Row = {
  id: "ingress",
  number: 1,
  async run(ctx: BenchContext): Promise<RowResult[]> {
    const s = await ingressSetup();
    const { thing, topic } = s;
    const results: RowResult[] = [];
    /** mosquitto_pub alone, into the queue of an offline session: the ceiling of the live rows */
    const publisherRates: number[] = [];
    try {
      // The two persistent sessions exist from here on; each run drains what it queued.
      const register = start(["serve", ...thing.flags]);
      await register.waitFor(/mqtt\.subscribed/, 30_000);
      await register.stop();
      if ((await Bun.spawn(subArgs(s, ["-E"]), { stdout: "ignore", stderr: "ignore" }).exited) !== 0) throw new Error("mosquitto_sub -E failed");

      const serveSession: BenchSession = { clientId: thing.thingName, topic };
      const subSession: BenchSession = { clientId: SUB_ID, topic: SUB_TOPIC };
      const queued = async (id: string, measure: string, count: number, bytes: number, subject: Subject, target: RowResult["target"]) => {
        const lines = payloadLines(count, bytes);
        const peaks: number[] = [];
        const retry = (why: string) => ctx.progress(`${id}: ${why}; the queue is emptied and published again`);
        const samples = await interleave(
          ctx.runs,
          async () => {
            const p0 = performance.now();
            const attempts = await queueLines(s, serveSession, lines, retry);
            if (bytes === 0 && attempts === 1) publisherRates.push(perSecond(count, performance.now() - p0));
            const r = await serveUntil(s, subject, count);
            peaks.push(r.peakKb);
            return perSecond(count, r.ms);
          },
          async () => {
            await queueLines(s, subSession, lines, retry);
            return perSecond(count, await subUntil(s, count));
          },
          (i, a, b) => ctx.progress(`${id} ${i + 1}/${ctx.runs}: ${subject.label} ${a.toFixed(0)} msg/s, ${PEER} ${b.toFixed(0)} msg/s`),
        );
        results.push(
          measured(
            { id, row: 1, measure, unit: "msg/s", better: "higher", peerName: PEER, target, oursExtra: `peak RSS ${mib(median(peaks)).toFixed(0)} MiB` },
            samples,
          ),
        );
      };

      const big = ctx.quick ? 5_000 : 20_000;
      const small = ctx.quick ? 2_000 : 5_000;
      const k = (n: number) => `${n / 1000}k`;
      const serve: Subject = { label: "serve" };
      await queued(`ingress-queued-${k(small)}`, `ingress, ${k(small)} queued QoS 1`, small, 0, serve, { op: ">=", value: 0.6 });
      await queued(`ingress-queued-${k(big)}`, `ingress, ${k(big)} queued QoS 1`, big, 0, serve, { op: ">=", value: 0.9 });
      await queued(`ingress-queued-${k(big)}-256b`, `ingress, ${k(big)} queued, 256-byte payloads`, big, 256, serve, { op: ">=", value: 0.6 });
      await queued(`ingress-queued-${k(big)}-4kib`, `ingress, ${k(big)} queued, 4 KiB payloads`, big, 4096, serve, { op: ">=", value: 0.6 });

      // live: the publisher runs while the subscriber is connected
      const lines = payloadLines(big);
      const liveRetry = (why: string) => ctx.progress(`ingress-live: ${why}; the run is made again`);
      const samples = await interleave(
        ctx.runs,
        async () =>
          (
            await retryingLostMessages(
              s,
              serveSession,
              async () => perSecond(big, (await serveUntil(s, serve, big, () => publishLines(s, topic, lines))).ms),
              liveRetry,
            )
          ).value,
        async () =>
          (await retryingLostMessages(s, subSession, async () => perSecond(big, await subUntil(s, big, () => publishLines(s, SUB_TOPIC, lines))), liveRetry))
            .value,
        (i, a, b) => ctx.progress(`ingress-live ${i + 1}/${ctx.runs}: serve ${a.toFixed(0)} msg/s, ${PEER} ${b.toFixed(0)} msg/s`),
      );
      const ceiling = `for scale: mosquitto_pub -l -q 1 -M 1000 put ${median(publisherRates).toFixed(0)} msg/s into an offline session's queue (the queued rows' set-up)`;
      results.push(
        measured(
          {
            id: `ingress-live-${k(big)}`,
            row: 1,
            measure: `ingress, live stream of ${k(big)} QoS 1`,
            unit: "msg/s",
            better: "higher",
            peerName: PEER,
            target: { op: ">=", value: 0.9 },
            notes: [ceiling],
          },
          samples,
        ),
      );

      // the armv7 store driver: the Node bundle on x64 Node 20
      const armv7 = {
        id: `ingress-armv7-${k(big)}`,
        row: 1,
        measure: `ingress, ${k(big)} queued, armv7 build (wasm SQLite) on x64 Node`,
        unit: "msg/s",
        better: "higher" as const,
        peerName: PEER,
      };
      const nodeVersion = Bun.which("node") ? Bun.spawnSync(["node", "--version"]).stdout.toString().trim() : "";
      if (!nodeVersion.startsWith("v20.")) {
        results.push(skipped(armv7, `needs Node 20 on PATH, the armv7 build's runtime (found ${nodeVersion || "none"})`));
      } else {
        const version = await packageVersion();
        const bundle = await bundleForNode(join(ctx.work, "flashlex-armv7.cjs"), {
          define: { FLASHLEX_VERSION: JSON.stringify(version), FLASHLEX_COMMIT: JSON.stringify(commitSha()) },
        });
        await queued(armv7.id, armv7.measure, big, 0, { label: `node ${nodeVersion} bundle`, command: ["node", bundle.outFile] }, undefined);
        results.at(-1)!.notes = [`the linux-armv7 build's bundle (node-sqlite3-wasm) under ${nodeVersion} on this x64 machine, not under qemu`];
      }
    } finally {
      await s.close();
    }
    return results;
  },
};
