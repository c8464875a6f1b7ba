/**
 * Ingress throughput: how fast `flashlex serve` takes QoS 1 messages off Mosquitto (mutual
 * TLS) and commits each to SQLite before its PUBACK, next to `mosquitto_sub -q 1` (which only
 * prints them) on the same stream, run alternately so both see the same machine load. Reports
 * medians and the ratio; also serve's peak RSS. Not a test.
 *
 *   bun bench/ingress.ts [--messages 5000] [--runs 5]
 */

import { Database } from "bun:sqlite";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { binaryPath, start } from "../test/support/binary.ts";
import { makeThingFixture, startBrokerFor } from "../test/support/thing-fixture.ts";

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const messages = arg("messages", 5000);
const runs = arg("runs", 5);

binaryPath();
const thing = await makeThingFixture({ brokerPort: 1, apiUrl: "http://127.0.0.1:1" });
const broker = await startBrokerFor(thing, "max_queued_messages 100000");
const publisher = await thing.pki.issueThing("bench-publisher");
const topic = `ingress/${thing.thingName}`;
// mosquitto_sub gets a topic of its own: a stream for it must not queue up for the thing too.
const subTopic = "bench/mosquitto_sub";
const tls = ["-h", "127.0.0.1", "-p", String(broker.port), "--cafile", thing.pki.caCertPath];
const payloads = `${Array.from({ length: messages }, (_, i) => JSON.stringify({ n: i, reading: Math.random() })).join("\n")}\n`;

/** Queues the whole stream for an offline persistent session, then times how long its client takes to drain it. */
async function publishAll(to: string): Promise<void> {
  const pub = Bun.spawn(
    ["mosquitto_pub", ...tls, "--cert", publisher.certPath, "--key", publisher.privateKeyPath, "-i", "bench-pub", "-q", "1", "-t", to, "-l"],
    { stdin: new Blob([payloads]) },
  );
  if ((await pub.exited) !== 0) throw new Error("mosquitto_pub failed");
}

async function timeServe(): Promise<{ ms: number; rssKb: number }> {
  rmSync(thing.dataDir, { recursive: true, force: true });
  // Make the persistent session exist, then go offline while the stream is queued.
  let serve = start(["serve", ...thing.flags]);
  await serve.waitFor(/mqtt\.subscribed/);
  await serve.stop();
  await publishAll(topic);
  const t0 = performance.now();
  serve = start(["serve", ...thing.flags]);
  let peak = 0;
  const db = () => new Database(join(thing.dataDir, "subscription.db"), { readonly: true });
  for (;;) {
    const status = await Bun.file(`/proc/${serve.proc.pid}/status`)
      .text()
      .catch(() => "");
    peak = Math.max(peak, Number(status.match(/VmRSS:\s+(\d+)/)?.[1] ?? 0));
    try {
      const handle = db();
      const n = (handle.query("SELECT COUNT(*) AS n FROM ingress_messages").get() as { n: number }).n;
      handle.close();
      if (n >= messages) break;
    } catch {
      // the database is being created
    }
    await Bun.sleep(5);
  }
  const ms = performance.now() - t0;
  await serve.stop();
  return { ms, rssKb: peak };
}

async function timeMosquittoSub(): Promise<number> {
  const sub = (count?: number) =>
    Bun.spawn(
      [
        "mosquitto_sub",
        ...tls,
        "--cert",
        thing.pki.thing.certPath,
        "--key",
        thing.pki.thing.privateKeyPath,
        "-i",
        "bench-sub",
        "-c",
        "-q",
        "1",
        "-t",
        subTopic,
        ...(count ? ["-C", String(count)] : ["-W", "1"]),
      ],
      { stdout: "ignore", stderr: "ignore" },
    );
  await sub().exited; // registers the persistent session
  await publishAll(subTopic);
  const t0 = performance.now();
  await sub(messages).exited;
  return performance.now() - t0;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const serveMs: number[] = [];
const subMs: number[] = [];
const rss: number[] = [];
for (let i = 0; i < runs; i++) {
  const s = await timeServe();
  serveMs.push(s.ms);
  rss.push(s.rssKb);
  subMs.push(await timeMosquittoSub());
  console.error(`run ${i + 1}/${runs}: serve ${s.ms.toFixed(0)} ms, mosquitto_sub ${subMs.at(-1)!.toFixed(0)} ms`);
}
const rate = (ms: number) => Math.round((messages / ms) * 1000);
console.log(`ingress, ${messages} queued QoS 1 messages over mutual TLS, median of ${runs}:`);
console.log(`  flashlex serve (commit before PUBACK, synchronous=FULL): ${rate(median(serveMs))} msg/s, peak RSS ${Math.round(median(rss) / 1024)} MiB`);
console.log(`  mosquitto_sub -q 1 (prints only):                       ${rate(median(subMs))} msg/s`);
console.log(`  ratio serve / mosquitto_sub: ${(median(subMs) / median(serveMs)).toFixed(2)}`);
await broker.stop();
rmSync(thing.dir, { recursive: true, force: true });
