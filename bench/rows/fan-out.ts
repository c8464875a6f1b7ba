/**
 * Row 4, hub fan-out: one message to each of N things (5,000; 1,000 with --quick), every thing
 * connected and subscribed at QoS 1 as an MQTT client with its own certificate, counted when it
 * arrives at the thing. Unit: messages delivered per second (higher is better), N divided by
 * the time from the first publish to the last thing's message.
 *
 * - FlashLex: `hub serve` (the compiled binary) and one POST /dev/v1/publish naming all N things
 *   (the operator API's fan-out: stored in one transaction, published by the embedded broker and
 *   tracked until each thing's PUBACK). A second figure, with no target: one POST
 *   /dev/v1/things/{id}/publish per thing, 32 requests in flight, as a client of the per-thing
 *   route would send it.
 * - peer: Debian's Mosquitto (mutual TLS with the hub's CA and broker certificate) and one
 *   MQTT.js publisher sending the same N QoS 1 messages straight to the N topics.
 *
 * The things are bench/peers/fan-out-sim.ts, one process with 2 x N connections (each thing
 * to both brokers, connected before the first round). The N things are made once through the
 * hub's API (`POST /things`, keyType ec: an RSA key each would take minutes) and kept in
 * bench/.cache/fan-out-N (a hub home, its operator token and every thing's certificate and
 * key); each run serves a copy of that home. Between a hub round and the next, the bench waits
 * (untimed) until the hub's log is quiet: it has recorded the round's PUBACKs.
 */
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { unzipSync } from "fflate";
import mqtt from "mqtt";
import { parseDocument } from "yaml";
import { binaryPath } from "../../test/support/binary.ts";
import { listenOnLoopback, makeHubFixture } from "../../test/support/hub-fixture.ts";
import { freePort } from "../../test/support/mosquitto.ts";
import { startBenchBroker } from "../lib/broker.ts";
import { type LoggedProcess, startLogged } from "../lib/procs.ts";
import { type BenchContext, measured, type Row, type RowResult } from "../lib/row.ts";
import { interleave, perSecond } from "../lib/stats.ts";

interface CachedThing {
  id: string;
  name: string;
  cert: string;
  key: string;
}

interface Cache {
  /** the cached hub home (never served itself: each run copies it) */
  home: string;
  token: string;
  things: CachedThing[];
}

const IN_FLIGHT = 32;

/** Runs `task` over 0..count-1, `parallel` at a time. */
async function pool(count: number, parallel: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < count) await task(next++);
    }),
  );
}

function setPorts(home: string, apiPort: number, brokerPort: number): void {
  const file = join(home, "hub.yml");
  const doc = parseDocument(readFileSync(file, "utf8"));
  doc.setIn(["hub", "api", "port"], apiPort);
  doc.setIn(["hub", "api", "publicUrl"], `http://127.0.0.1:${apiPort}`);
  doc.setIn(["hub", "broker", "port"], brokerPort);
  writeFileSync(file, doc.toString());
  listenOnLoopback(home);
}

async function serveHome(home: string, logFile: string): Promise<LoggedProcess> {
  const hub = startLogged([binaryPath(), "hub", "serve", "--dir", home], logFile);
  await hub.waitFor(/hub\.started/, 60_000);
  return hub;
}

/** N things made through the API of a hub of their own, kept in bench/.cache/fan-out-N. */
async function thingsCache(ctx: BenchContext, n: number): Promise<Cache> {
  const dir = join(ctx.cache, `fan-out-${n}`);
  const manifest = join(dir, "cache.json");
  if (existsSync(manifest)) {
    const cache = { ...(JSON.parse(readFileSync(manifest, "utf8")) as Cache), home: join(dir, "hub") };
    if (cache.things.length === n && existsSync(join(cache.home, "hub.db"))) return cache;
  }
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  ctx.progress(`fan-out: making ${n} things through the hub's API, once (kept in ${dir})`);
  const t0 = performance.now();
  const fixture = await makeHubFixture(dir);
  const hub = await serveHome(fixture.dir, join(dir, "make.log"));
  const api = `http://127.0.0.1:${fixture.apiPort}/dev/v1`;
  const headers = { Authorization: `Bearer ${fixture.token}`, "Content-Type": "application/json" };
  const things: CachedThing[] = new Array(n);
  try {
    await pool(n, 4, async (i) => {
      const created = await fetch(`${api}/things`, {
        method: "POST",
        headers,
        body: JSON.stringify({ name: `fan${String(i).padStart(5, "0")}`, keyType: "ec" }),
      });
      if (created.status !== 201) throw new Error(`POST /things answered ${created.status}: ${await created.text()}`);
      const thing = ((await created.json()) as { result: { id: string; name: string } }).result;
      const dist = await fetch(`${api}/things/${thing.id}/dist`, { headers });
      if (dist.status !== 200) throw new Error(`GET /things/${thing.id}/dist answered ${dist.status}`);
      const files = Object.entries(unzipSync(new Uint8Array(await dist.arrayBuffer())));
      const file = (suffix: string) => new TextDecoder().decode(files.find(([path]) => path.endsWith(suffix))![1]);
      things[i] = { id: thing.id, name: thing.name, cert: file("-certificate.pem"), key: file("-keypair-private.pem") };
      if ((i + 1) % 1000 === 0) ctx.progress(`fan-out: ${i + 1}/${n} things made`);
    });
  } finally {
    await hub.stop();
  }
  const cache: Cache = { home: fixture.dir, token: fixture.token, things }; // home is dir/hub (makeHubFixture)
  writeFileSync(manifest, JSON.stringify(cache));
  ctx.progress(`fan-out: ${n} things made in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  return cache;
}

/**
 * Waits until `file` (the hub's log, a line per delivery) has not grown for half a second, at
 * most a minute. Not tied to one log line's wording, which the hub's work on fan-out may change.
 */
async function quiet(file: string): Promise<void> {
  let size = -1;
  for (const deadline = Date.now() + 60_000; Date.now() < deadline; ) {
    const now = statSync(file).size;
    if (now === size) return;
    size = now;
    await Bun.sleep(500);
  }
}

export const fanOut: Row = {
  id: "fan-out",
  number: 4,
  async run(ctx: BenchContext): Promise<RowResult[]> {
    const n = ctx.quick ? 1000 : 5000;
    let cache = await thingsCache(ctx, n);
    const home = join(ctx.work, "fan-out-hub");
    const [apiPort, brokerPort] = [await freePort(), await freePort()];
    const serveCopy = () => {
      rmSync(home, { recursive: true, force: true });
      cpSync(cache.home, home, { recursive: true });
      setPorts(home, apiPort, brokerPort);
      return serveHome(home, join(ctx.work, "fan-out-hub.log"));
    };
    let hub: LoggedProcess;
    try {
      hub = await serveCopy();
    } catch (err) {
      // a home made by an older hub that this one will not serve: make the things again
      ctx.progress(`fan-out: the cached hub home did not start (${(err as Error).message.split("\n")[0]}); making it again`);
      rmSync(join(ctx.cache, `fan-out-${n}`), { recursive: true, force: true });
      cache = await thingsCache(ctx, n);
      hub = await serveCopy();
    }
    const ca = readFileSync(join(home, "ca-cert.pem"), "utf8");
    const mosquitto = await startBenchBroker(
      {
        dir: join(ctx.work, "fan-out-mosquitto"),
        caFile: join(home, "ca-cert.pem"),
        certFile: join(home, "broker-cert.pem"),
        keyFile: join(home, "broker-key.pem"),
      },
      ["max_connections -1"],
    );
    const simConfig = join(ctx.work, "fan-out-sim.json");
    writeFileSync(
      simConfig,
      JSON.stringify({
        ca,
        things: cache.things.map(({ name, cert, key }) => ({ name, cert, key })),
        brokers: [
          { label: "hub", port: brokerPort },
          { label: "mosquitto", port: mosquitto.port },
        ],
      }),
    );
    const sim = Bun.spawn([process.execPath, join(import.meta.dir, "../peers/fan-out-sim.ts"), simConfig], { stdout: "pipe", stderr: "inherit" });
    const lines: string[] = [];
    void (async () => {
      let rest = "";
      for await (const chunk of sim.stdout as ReadableStream<Uint8Array>) {
        const text = rest + new TextDecoder().decode(chunk);
        const parts = text.split("\n");
        rest = parts.pop()!;
        lines.push(...parts);
      }
    })();
    const waitLine = async (prefix: string, timeoutMs: number): Promise<string> => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const line = lines.find((l) => l.startsWith(prefix));
        if (line) return line;
        if (sim.exitCode !== null) throw new Error(`the fan-out things exited ${sim.exitCode}`);
        if (Date.now() > deadline) throw new Error(`no '${prefix}' from the fan-out things within ${timeoutMs / 1000} s`);
        await Bun.sleep(5);
      }
    };
    const publisher = mqtt.connect({
      protocol: "mqtts",
      host: "127.0.0.1",
      port: mosquitto.port,
      ca,
      cert: cache.things[0]!.cert,
      key: cache.things[0]!.key,
      clientId: "bench-publisher",
      reconnectPeriod: 0,
    });
    const now = () => performance.timeOrigin + performance.now();
    try {
      const t0 = performance.now();
      await waitLine("ready", 600_000);
      await new Promise<void>((resolve, reject) => (publisher.connected ? resolve() : publisher.once("connect", () => resolve()).once("error", reject)));
      const connectSeconds = (performance.now() - t0) / 1000;
      ctx.progress(`fan-out: ${n} things connected to the hub and to Mosquitto in ${connectSeconds.toFixed(0)} s`);
      const api = `http://127.0.0.1:${apiPort}/dev/v1`;
      const headers = { Authorization: `Bearer ${cache.token}`, "Content-Type": "application/json" };
      const hubRound = (label: string, send: (body: string) => Promise<void>) => async (r: number) => {
        const round = `${label}${r}`;
        const start = now();
        await send(JSON.stringify({ message: { round } }));
        const done = await waitLine(`done hub ${round} `, 300_000);
        const ms = Number(done.split(" ")[3]) - start;
        // untimed: the hub finishes recording the round's PUBACKs before the next round
        await quiet(hub.logFile);
        return perSecond(n, ms);
      };
      const mosquittoRound = (label: string) => async (r: number) => {
        const round = `${label}${r}`;
        const payload = JSON.stringify({ message: { round } });
        const start = now();
        for (const thing of cache.things) publisher.publish(`ingress/${thing.name}`, payload, { qos: 1 });
        const done = await waitLine(`done mosquitto ${round} `, 300_000);
        return perSecond(n, Number(done.split(" ")[3]) - start);
      };
      const answered = async (answer: Response) => {
        if (answer.status !== 200) throw new Error(`publish answered ${answer.status}: ${await answer.text()}`);
        await answer.arrayBuffer();
      };
      const ids = cache.things.map((thing) => thing.id);
      const fanOut = await interleave(
        ctx.runs,
        hubRound("f", (body) => fetch(`${api}/publish`, { method: "POST", headers, body: `{"things":${JSON.stringify(ids)},${body.slice(1)}` }).then(answered)),
        mosquittoRound("fm"),
        (i, a, b) => ctx.progress(`fan-out, one POST /publish ${i + 1}/${ctx.runs}: hub ${a.toFixed(0)} msg/s, Mosquitto ${b.toFixed(0)} msg/s`),
      );
      const perThing = await interleave(
        ctx.runs,
        hubRound("h", (body) =>
          pool(n, IN_FLIGHT, (i) => fetch(`${api}/things/${cache.things[i]!.id}/publish`, { method: "POST", headers, body }).then(answered)),
        ),
        mosquittoRound("m"),
        (i, a, b) => ctx.progress(`fan-out, a request per thing ${i + 1}/${ctx.runs}: hub ${a.toFixed(0)} msg/s, Mosquitto ${b.toFixed(0)} msg/s`),
      );
      const connected = `things: MQTT.js, QoS 1, persistent sessions, ${n} per broker in one process (connecting all ${2 * n} took ${connectSeconds.toFixed(0)} s)`;
      const base = {
        unit: "msg/s",
        better: "higher" as const,
        peerName: "Mosquitto, MQTT.js publishing directly",
      };
      return [
        measured(
          {
            ...base,
            id: `fan-out-${n}`,
            row: 4,
            measure: `hub fan-out: one message to each of ${n.toLocaleString("en-US")} connected things`,
            target: { op: ">=", value: 0.5 },
            notes: [`hub: one POST /publish naming all ${n} things; ${connected}`],
          },
          fanOut,
        ),
        measured(
          {
            ...base,
            id: `fan-out-per-thing-${n}`,
            row: 4,
            measure: `hub fan-out, a request per thing (${IN_FLIGHT} in flight) to ${n.toLocaleString("en-US")} things`,
            notes: [`hub: POST /things/{id}/publish per thing, ${IN_FLIGHT} in flight; the same things`],
          },
          perThing,
        ),
      ];
    } finally {
      publisher.end(true);
      sim.kill("SIGTERM");
      await sim.exited;
      await Promise.all([hub.stop(), mosquitto.stop()]);
    }
  },
};
