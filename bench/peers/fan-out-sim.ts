/**
 * The things of row 4 (bench/rows/fan-out.ts): one process holding every thing's MQTT.js
 * connection to each broker of the run (the hub's embedded broker and Mosquitto), each over
 * mutual TLS with that thing's own certificate and client id = its CN, persistent session,
 * subscribed at QoS 1 to its `ingress/<name>` topic; MQTT.js acknowledges each message.
 *
 *   bun bench/peers/fan-out-sim.ts CONFIG.json
 *
 * CONFIG: {ca, things: [{name, cert, key}], brokers: [{label, port}]}. Prints on stdout
 * `ready` once every connection is subscribed, then `done LABEL ROUND EPOCH_MS` when every thing
 * got its message of ROUND (a payload `{"message": {"round": ROUND}, ...}`) from LABEL. EPOCH_MS
 * is performance.timeOrigin + performance.now(), comparable with the bench's own clock.
 */
import { readFileSync } from "node:fs";
import mqtt, { type MqttClient } from "mqtt";

interface Config {
  ca: string;
  things: { name: string; cert: string; key: string }[];
  brokers: { label: string; port: number }[];
}

const config = JSON.parse(readFileSync(process.argv[2]!, "utf8")) as Config;
const n = config.things.length;
const counts = new Map<string, number>();
const clients: MqttClient[] = [];
const now = () => performance.timeOrigin + performance.now();

function connect(label: string, port: number, thing: Config["things"][number]): Promise<void> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect({
      protocol: "mqtts",
      host: "127.0.0.1",
      port,
      ca: config.ca,
      cert: thing.cert,
      key: thing.key,
      rejectUnauthorized: true,
      clientId: thing.name,
      clean: false,
      keepalive: 300,
      connectTimeout: 60_000,
      reconnectPeriod: 2_000,
    });
    clients.push(client);
    const topic = `ingress/${thing.name}`;
    client.on("message", (_topic, payload) => {
      let round: unknown;
      try {
        round = JSON.parse(payload.toString()).message?.round;
      } catch {
        return;
      }
      const key = `${label} ${round}`;
      const count = (counts.get(key) ?? 0) + 1;
      counts.set(key, count);
      if (count === n) console.log(`done ${key} ${now()}`);
    });
    client.once("connect", () => {
      client.subscribe(topic, { qos: 1 }, (err, granted) => {
        if (err || granted?.[0]?.qos !== 1)
          reject(new Error(`${label}: ${thing.name} could not subscribe to ${topic}: ${err?.message ?? JSON.stringify(granted)}`));
        else resolve();
      });
    });
    client.once("error", (err) => reject(new Error(`${label}: ${thing.name}: ${err.message}`)));
  });
}

/** Connects every thing to one broker, `parallel` handshakes at a time. */
async function connectAll(label: string, port: number, parallel = 64): Promise<void> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < n) {
        const i = next++;
        await connect(label, port, config.things[i]!);
        if ((i + 1) % 1000 === 0) console.error(`fan-out-sim: ${label} ${i + 1}/${n} connected`);
      }
    }),
  );
  console.error(`fan-out-sim: ${label}: ${n} things connected and subscribed in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

for (const broker of config.brokers) await connectAll(broker.label, broker.port);
console.log("ready");
process.on("SIGTERM", () => {
  for (const client of clients) client.end(true);
  process.exit(0);
});
