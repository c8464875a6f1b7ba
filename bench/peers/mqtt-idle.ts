/**
 * A second floor for row 5 (bench/rows/rss.ts), compiled like flashlex: a Bun binary that holds
 * one MQTT.js connection over mutual TLS, subscribed at QoS 1, and does nothing else. What serve
 * costs on top of the MQTT client the project is built on. Arguments: host port ca cert key topic.
 */
import { readFileSync } from "node:fs";
import mqtt from "mqtt";

const [host, port, ca, cert, key, topic] = process.argv.slice(2);
const client = mqtt.connect({
  protocol: "mqtts",
  host,
  port: Number(port),
  ca: readFileSync(ca!),
  cert: readFileSync(cert!),
  key: readFileSync(key!),
  clientId: "bench-mqtt-idle",
  clean: false,
});
client.on("connect", () => client.subscribe(topic!, { qos: 1 }, () => console.log("subscribed")));
client.on("error", (err) => console.error(err.message));
