/**
 * What the ingress rows (1 and 5) share: a thing fixture (test/support) with Debian's Mosquitto
 * over mutual TLS, a publisher with its own certificate, `mosquitto_pub -l` to publish a stream,
 * and counting what `serve` stored from its `ingress.stored count=N` log lines as they come.
 */
import { existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { CONFIG_CACHE_NAME } from "../../src/thing/settings.ts";
import type { Background } from "../../test/support/binary.ts";
import type { MosquittoBroker } from "../../test/support/mosquitto.ts";
import { makeThingFixture, type ThingFixture } from "../../test/support/thing-fixture.ts";
import { storedCount } from "../../test/support/wait.ts";
import { startBenchBroker } from "./broker.ts";

export interface IngressSetup {
  thing: ThingFixture;
  broker: MosquittoBroker;
  /** the thing's ingress topic, what serve subscribes to */
  topic: string;
  /** -h -p --cafile for the Mosquitto clients */
  tls: string[];
  publisher: { certPath: string; privateKeyPath: string };
  close(): Promise<void>;
}

export async function ingressSetup(): Promise<IngressSetup> {
  const thing = await makeThingFixture({ brokerPort: 1, apiUrl: "http://127.0.0.1:1" });
  const broker = await startBenchBroker(
    { dir: thing.dir, caFile: thing.pki.caCertPath, certFile: thing.pki.brokerCertPath, keyFile: thing.pki.brokerKeyPath },
    ["max_queued_messages 2000000"],
  );
  thing.editConfig((doc) => (doc.flashlex.thing.mqtt.port = broker.port));
  return {
    thing,
    broker,
    topic: `ingress/${thing.thingName}`,
    tls: ["-h", "127.0.0.1", "-p", String(broker.port), "--cafile", thing.pki.caCertPath],
    publisher: await thing.pki.issueThing("bench-publisher"),
    async close() {
      await broker.stop();
      rmSync(thing.dir, { recursive: true, force: true });
    },
  };
}

/**
 * The thing's data directory as after a restart with an emptied database: the message database
 * and everything else serve left go (so each run's count is exact), except the config serve read
 * at its last start (data/config.parsed.json), which a device that restarts keeps too.
 */
export function restartWithEmptyDatabase(dataDir: string): void {
  if (!existsSync(dataDir)) return;
  for (const name of readdirSync(dataDir)) if (name !== CONFIG_CACHE_NAME) rmSync(join(dataDir, name), { recursive: true, force: true });
}

/** `count` lines of JSON, each `bytes` long (0: short readings, ~35 bytes). */
export function payloadLines(count: number, bytes = 0): string {
  const lines: string[] = [];
  for (let n = 0; n < count; n++) {
    const base = JSON.stringify({ n, reading: Math.round(Math.random() * 1e6) / 1e3 });
    lines.push(bytes === 0 ? base : `${base.slice(0, -1)},"pad":"${"x".repeat(Math.max(0, bytes - base.length - 9))}"}`);
  }
  return `${lines.join("\n")}\n`;
}

/**
 * mosquitto_pub 2.0.11 in line mode (-l) silently loses messages on a long fast stdin: 100,000
 * lines reached the broker as ~35,000, exit status 0, whatever -M. Up to 30,000 lines arrive
 * whole, so a stream is published in runs of CHUNK lines, one mosquitto_pub after another.
 */
const CHUNK = 20_000;

/** What Mosquitto logs when a client id connects again while its connection is still open. */
const PUBLISHER_RECONNECTED = "Client bench-pub already connected";

/**
 * mosquitto_pub 2.0.11 in line mode sometimes connects again in the middle of a stream (4 KiB
 * lines, one run in ~20): Mosquitto logs the new connection as taking over the old one, what the
 * old one had in flight is lost, and mosquitto_pub still exits 0. The run would then wait for
 * messages that never come ("serve stopped short").
 */
export class PublisherReconnected extends Error {}

/**
 * Publishes every line as one QoS 1 message (mosquitto_pub -l, up to `maxInflight`
 * unacknowledged). Throws PublisherReconnected when Mosquitto saw the publisher connect again
 * meanwhile (messages lost), an Error when mosquitto_pub fails.
 */
export async function publishLines(s: IngressSetup, topic: string, lines: string, maxInflight = 1000): Promise<void> {
  const argv = ["mosquitto_pub", ...s.tls, "--cert", s.publisher.certPath, "--key", s.publisher.privateKeyPath];
  const all = lines.split("\n").filter(Boolean);
  for (let i = 0; i < all.length; i += CHUNK) {
    const chunk = `${all.slice(i, i + CHUNK).join("\n")}\n`;
    const from = s.broker.log().length;
    const pub = Bun.spawn([...argv, "-i", "bench-pub", "-q", "1", "-M", String(maxInflight), "-t", topic, "-l"], { stdin: new Blob([chunk]), stderr: "pipe" });
    const [code, err] = await Promise.all([pub.exited, new Response(pub.stderr).text()]);
    if (code !== 0) throw new Error(`mosquitto_pub exited ${code}: ${err}`);
    if (s.broker.log().slice(from).includes(PUBLISHER_RECONNECTED)) {
      throw new PublisherReconnected(`mosquitto_pub connected again while publishing to ${topic} (Mosquitto: "${PUBLISHER_RECONNECTED}"): messages were lost`);
    }
  }
}

/** A persistent session of the bench: its client id and the topic it subscribes to at QoS 1, with the thing's certificate. */
export interface BenchSession {
  clientId: string;
  topic: string;
}

/** Empties `session`'s queue at the broker (a clean connect drops the session) and makes it again, subscribed, offline. */
export async function emptySessionQueue(s: IngressSetup, session: BenchSession): Promise<void> {
  const thing = s.thing.pki.thing;
  const tls = [...s.tls, "--cert", thing.certPath, "--key", thing.privateKeyPath];
  const sub = (extra: string[]) => ["mosquitto_sub", ...tls, "-i", session.clientId, "-t", session.topic, "-E", ...extra];
  for (const argv of [sub([]), sub(["-c", "-q", "1"])]) {
    if ((await Bun.spawn(argv, { stdout: "ignore", stderr: "ignore" }).exited) !== 0) throw new Error(`${argv.join(" ")} failed`);
  }
}

/**
 * `run` (a run that publishes to `session`'s topic), again when its publisher lost messages
 * (PublisherReconnected), at most three times in all; before each new try `session`'s queue is
 * emptied (what reached the broker after the run stopped waiting is queued there). `onRetry` is
 * told why. Resolves with the run's value and the number of tries it took.
 */
export async function retryingLostMessages<T>(
  s: IngressSetup,
  session: BenchSession,
  run: () => Promise<T>,
  onRetry: (why: string) => void,
): Promise<{ value: T; attempts: number }> {
  for (let attempts = 1; ; attempts++) {
    try {
      return { value: await run(), attempts };
    } catch (err) {
      if (!(err instanceof PublisherReconnected) || attempts === 3) throw err;
      onRetry(err.message);
    }
    await emptySessionQueue(s, session);
  }
}

/** Queues every line for the offline `session` (publishLines, retryingLostMessages); resolves with the number of tries. */
export async function queueLines(s: IngressSetup, session: BenchSession, lines: string, onRetry: (why: string) => void): Promise<number> {
  return (await retryingLostMessages(s, session, () => publishLines(s, session.topic, lines), onRetry)).attempts;
}

/** Never resolves; rejects as `publishing` does (a live run whose publisher failed ends its wait at once). */
export function unlessFails(publishing: Promise<void> | undefined): Promise<never> {
  return new Promise((_, reject) => void publishing?.catch(reject));
}

/** How many messages `serve` has stored so far; reads only the log that came since the last call. */
export function storedCounter(serve: Background): () => number {
  let offset = 0;
  let total = 0;
  return () => {
    const out = serve.output();
    const end = out.lastIndexOf("\n") + 1;
    if (end > offset) {
      total += storedCount(out.slice(offset, end));
      offset = end;
    }
    return total;
  };
}

/** Waits until `serve` stored `count` messages; throws when it exits first or after `timeoutMs`. */
export async function untilStored(serve: Background, count: number, opts: { timeoutMs?: number; broker?: MosquittoBroker } = {}): Promise<void> {
  const stored = storedCounter(serve);
  const deadline = Date.now() + (opts.timeoutMs ?? 300_000);
  let last = 0;
  let lastChange = Date.now();
  for (let n = stored(); n < count; n = stored()) {
    if (n !== last) (last = n), (lastChange = Date.now());
    // nothing new for 20 s: messages were lost on the way, say where
    if (serve.proc.exitCode !== null || Date.now() > deadline || Date.now() - lastChange > 20_000) {
      const broker = opts.broker ? `\n--- Mosquitto ---\n${opts.broker.log().slice(-3000)}` : "";
      throw new Error(`serve stopped short of ${count} (at ${n}):\n${serve.output().slice(-3000)}${broker}`);
    }
    await Bun.sleep(3);
  }
  const n = stored();
  if (n !== count) throw new Error(`serve stored ${n} of ${count}: a repeat stored twice?`);
}
