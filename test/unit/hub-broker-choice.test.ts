/**
 * Which broker `hub serve` uses (src/hub/service.ts brokerChoice): `--broker` first, then the one
 * hub.yml names (a RabbitMQ cluster, or the Mosquitto `hub mosquitto-config` wrote for), else the
 * embedded one; and setBrokerSettings keeps hub.yml naming one of them.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { setBrokerSettings } from "../../src/hub/home/settings.ts";
import { brokerChoice } from "../../src/hub/service.ts";

const rabbitmq = { urls: ["mqtts://h1:8883"], management: ["https://h1:15671"], authListen: { host: "127.0.0.1", port: 8091 } };
const external = "mqtts://localhost:18883";
const dir = mkdtempSync(join(tmpdir(), "flashlex-broker-choice-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("brokerChoice", () => {
  test("--broker wins; else hub.yml's cluster, else its external broker, else embedded", () => {
    const file = "/h/hub.yml";
    expect(brokerChoice(undefined, {}, file)).toEqual({ kind: "embedded" });
    expect(brokerChoice(undefined, { external }, file)).toEqual({ kind: "external", url: external });
    expect(brokerChoice(undefined, { rabbitmq }, file)).toEqual({ kind: "rabbitmq", rabbit: rabbitmq });
    expect(brokerChoice("embedded", { external, rabbitmq }, file)).toEqual({ kind: "embedded" });
    expect(brokerChoice("mqtts://other:8883", { external }, file)).toEqual({ kind: "external", url: "mqtts://other:8883" });
    expect(brokerChoice("rabbitmq", { rabbitmq }, file)).toEqual({ kind: "rabbitmq", rabbit: rabbitmq });
    expect(() => brokerChoice("rabbitmq", { external }, file)).toThrow("--broker rabbitmq: /h/hub.yml has no hub.broker.rabbitmq");
  });
});

describe("setBrokerSettings", () => {
  test("names one broker: the last `hub ...-config` run replaces the other's key, comments kept", () => {
    const file = join(dir, "hub.yml");
    writeFileSync(file, "# the operator's note\nhub:\n  broker:\n    host: localhost\n", { mode: 0o600 });
    setBrokerSettings(file, { rabbitmq });
    setBrokerSettings(file, { external });
    expect(parse(readFileSync(file, "utf8")).hub.broker).toEqual({ host: "localhost", external });
    setBrokerSettings(file, { rabbitmq });
    expect(parse(readFileSync(file, "utf8")).hub.broker).toEqual({ host: "localhost", rabbitmq });
    expect(readFileSync(file, "utf8")).toStartWith("# the operator's note\n");
  });
});
