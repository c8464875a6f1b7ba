/**
 * The things of `bun run bench:fleet` (bench/fleet.ts): one process holding a slice of the
 * fleet, each thing an MQTT 3.1.1 client (MQTT.js) over mutual TLS with its own certificate
 * (every certificate is for the fleet's one key), client id = its name, persistent session
 * (clean false), subscribed at QoS 1 to `ingress/<name>`, and publishing egress at QoS 1 to
 * `flashlex/collect` in the collect envelope (src/protocol/collect-envelope.ts) with a token it
 * signs itself, as the agent does.
 *
 *   bun bench/peers/fleet-sim.ts CONFIG.json
 *
 * CONFIG: {ca, key, things: [{id, name, cert}], servers: [{host, port}], offset, parallel}. Thing
 * i (offset + its index) tries the servers starting at i % servers.length, then the others in
 * turn (MQTT.js `servers`), so a cluster's nodes share the things and each has somewhere to go.
 *
 * Commands, one JSON object a line on stdin:
 *   {"cmd": "egress", "round": R, "perThing": K}  every connected-or-not thing publishes K messages
 *   {"cmd": "status"}                             answers connected and reconnect counts
 *   {"cmd": "count"}                              answers ingress arrivals, egress sent and acknowledged
 *   {"cmd": "report", "file": PATH}               writes what it saw (below) to PATH
 * Events, one JSON object a line on stdout: {"ev": "ready", connected, failed, ms, firstError},
 * {"ev": "egress-sent", round, count}, {"ev": "status", connected, reconnects}, {"ev": "count", ingress, sent,
 * acked}, {"ev": "report"}.
 *
 * The report: every ingress arrival `[id, epochMs]` (the id the bench put in the message; a
 * repeat is a second entry), every egress message `[id, thing, sentMs, ackedMs | null, round]`
 * (acknowledged: the broker's PUBACK came back), and the connection counts. Times are
 * performance.timeOrigin + performance.now(), comparable with the bench's clock.
 */
import { randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import mqtt, { type MqttClient } from "mqtt";
import { signThingToken } from "../../src/crypto/jwt.ts";
import { loadPrivateKey } from "../../src/crypto/keys.ts";
import { COLLECT_TOPIC } from "../../src/protocol/topics.ts";

interface Config {
  ca: string;
  key: string;
  things: { id: string; name: string; cert: string }[];
  servers: { host: string; port: number }[];
  /** index of this slice's first thing in the fleet */
  offset: number;
  /** TLS handshakes in flight while connecting */
  parallel: number;
  /** ms a first connection may take before it counts as failed */
  connectTimeoutMs: number;
}

const config = JSON.parse(await Bun.file(process.argv[2]!).text()) as Config;
const key = loadPrivateKey(config.key);
const now = () => performance.timeOrigin + performance.now();
const emit = (event: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(event)}\n`);

const clients: (MqttClient | undefined)[] = new Array(config.things.length);
const ingress: [string, number][] = [];
const egress: [string, number, number, number | null, number][] = [];
let reconnects = 0;
let acked = 0;

/** A token per thing, signed again when it is older than 4 of its 6 minutes. */
const tokens = new Map<string, { token: string; at: number }>();
async function tokenFor(thingId: string): Promise<string> {
  const cached = tokens.get(thingId);
  if (cached && Date.now() - cached.at < 240_000) return cached.token;
  const token = await signThingToken({ thingId, privateKey: key });
  tokens.set(thingId, { token, at: Date.now() });
  return token;
}

/** Connects thing `i` of the slice and subscribes; resolves with the first failure's text, or undefined. */
function connect(i: number): Promise<string | undefined> {
  const thing = config.things[i]!;
  const first = (config.offset + i) % config.servers.length;
  const servers = config.servers.map((_, k) => config.servers[(first + k) % config.servers.length]!);
  return new Promise((resolve) => {
    let settled = false;
    const settle = (error?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(error);
    };
    const timer = setTimeout(() => settle("no CONNACK and SUBACK in time"), config.connectTimeoutMs);
    const client = mqtt.connect({
      protocol: "mqtts",
      host: servers[0]!.host,
      port: servers[0]!.port,
      servers,
      ca: config.ca,
      cert: thing.cert,
      key: config.key,
      rejectUnauthorized: true,
      clientId: thing.name,
      clean: false,
      keepalive: 120,
      connectTimeout: config.connectTimeoutMs,
      reconnectPeriod: 1_000,
    });
    clients[i] = client;
    client.on("message", (_topic, payload) => {
      const at = now();
      try {
        const id = JSON.parse(payload.toString()).message?.fleet;
        if (typeof id === "string") ingress.push([id, at]);
      } catch {
        // not one of the bench's messages
      }
    });
    client.on("connect", () => {
      if (settled) {
        reconnects++;
        return;
      }
      client.subscribe(`ingress/${thing.name}`, { qos: 1 }, (err, granted) => {
        if (err || granted?.[0]?.qos !== 1) settle(`subscribe: ${err?.message ?? JSON.stringify(granted)}`);
        else settle();
      });
    });
    client.on("error", (err) => {
      if (!settled) settle(err.message);
    });
  });
}

async function connectAll(): Promise<void> {
  const t0 = performance.now();
  let connected = 0;
  let failed = 0;
  let firstError: string | undefined;
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(config.parallel, config.things.length) }, async () => {
      while (next < config.things.length) {
        const error = await connect(next++);
        if (error === undefined) connected++;
        else {
          failed++;
          firstError ??= error;
        }
      }
    }),
  );
  emit({ ev: "ready", connected, failed, ms: performance.now() - t0, firstError });
}

async function publishEgress(round: number, perThing: number): Promise<void> {
  let count = 0;
  for (let k = 0; k < perThing; k++)
    for (let i = 0; i < config.things.length; i++) {
      const client = clients[i];
      if (!client) continue;
      const thing = config.things[i]!;
      const messageId = randomUUID();
      const sent = now();
      const entry: [string, number, number, number | null, number] = [messageId, config.offset + i, sent, null, round];
      egress.push(entry);
      const body = JSON.stringify({ messageId, thingId: thing.id, token: await tokenFor(thing.id), payload: { fleet: messageId, round, sent } });
      client.publish(COLLECT_TOPIC, body, { qos: 1 }, (err) => {
        if (!err && entry[3] === null) {
          entry[3] = now();
          acked++;
        }
      });
      count++;
    }
  emit({ ev: "egress-sent", round, count });
}

const connectedNow = () => clients.filter((c) => c?.connected).length;

process.on("SIGTERM", () => {
  for (const client of clients) client?.end(true);
  process.exit(0);
});

await connectAll();
for await (const line of console) {
  if (!line.trim()) continue;
  const command = JSON.parse(line) as { cmd: string; round?: number; perThing?: number; file?: string };
  if (command.cmd === "egress") await publishEgress(command.round ?? 0, command.perThing ?? 1);
  else if (command.cmd === "status") emit({ ev: "status", connected: connectedNow(), reconnects });
  else if (command.cmd === "count") emit({ ev: "count", ingress: ingress.length, sent: egress.length, acked: acked });
  else if (command.cmd === "report") {
    writeFileSync(command.file!, JSON.stringify({ ingress, egress, connected: connectedNow(), reconnects }));
    emit({ ev: "report" });
  }
}
