/**
 * A thing's distribution on disk, as a user unpacks it: config.yml made from the guide's
 * fixture with this test's broker port and API URL, and a keys directory from a fresh PKI.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { MessageStore } from "../../src/thing/store/message-store.ts";
import { type MosquittoBroker, startMosquitto } from "./mosquitto.ts";
import { makeTestPki, type TestPki } from "./pki.ts";
import { scratchDir } from "./scratch.ts";

export interface ThingFixture {
  dir: string;
  configPath: string;
  keysDir: string;
  dataDir: string;
  pki: TestPki;
  thingId: string;
  thingName: string;
  /** -c, -k and -d for the binary */
  flags: string[];
  /** rewrites config.yml with `edit` applied to the parsed document */
  editConfig(edit: (doc: any) => void): void;
}

const GUIDE = join(import.meta.dir, "../fixtures/guide-config.yml");

export async function makeThingFixture(opts: { brokerPort: number; apiUrl: string; thingName?: string; pki?: TestPki }): Promise<ThingFixture> {
  const dir = scratchDir("flashlex-thing-");
  const keysDir = join(dir, "keys");
  mkdirSync(keysDir);
  const thingName = opts.thingName ?? "ecd13b11-mything";
  const thingId = crypto.randomUUID();
  const pki = opts.pki ?? (await makeTestPki(keysDir, { thingName, thingId }));
  const configPath = join(dir, "config.yml");
  const doc = parse(readFileSync(GUIDE, "utf8"));
  const thing = doc.flashlex.thing;
  doc.flashlex.app.api.endpoint = opts.apiUrl;
  doc.flashlex.app.db.expireSeconds = 3600;
  thing.id = pki.thing.thingId;
  thing.name = pki.thing.name;
  thing.endpoint = "127.0.0.1";
  thing.mqtt.port = opts.brokerPort;
  thing.mqtt.ingress.topic = `ingress/${pki.thing.name}`;
  thing.mqtt.pubsub.topic = `pubsub/${pki.thing.name}`;
  thing.keys = {
    rootCA: "root-ca-cert.pem",
    cert: `${pki.thing.name}-certificate.pem`,
    privateKey: `${pki.thing.name}-keypair-private.pem`,
    publicKey: `${pki.thing.name}-keypair-public.pem`,
  };
  // Tests should not wait the guide's minutes for a timeout.
  thing.mqtt.connectDisconnectTimeout = 5;
  thing.mqtt.mqttOperationTimeout = 5;
  thing.mqtt.autoReconnectBackoffTime = { baseReconnectQuietTimeSecond: 0.2, maxReconnectQuietTimeSecond: 1, stableConnectionTimeSecond: 2 };
  thing.mqtt.drainingFrequency = 50;
  writeFileSync(configPath, stringify(doc));
  const dataDir = join(dir, "data");
  return {
    dir,
    configPath,
    keysDir,
    dataDir,
    pki,
    thingId: pki.thing.thingId,
    thingName: pki.thing.name,
    flags: ["-c", configPath, "-k", keysDir, "-d", dataDir],
    editConfig(edit) {
      const current = parse(readFileSync(configPath, "utf8"));
      edit(current);
      writeFileSync(configPath, stringify(current));
    },
  };
}

/**
 * Debian's Mosquitto with `require_certificate true` and the fixture's PKI, and the thing's
 * config pointed at its port. `extraConfig` adds listener lines (e.g. a larger queue).
 */
export async function startBrokerFor(thing: ThingFixture, extraConfig?: string): Promise<MosquittoBroker> {
  const broker = await startMosquitto({
    dir: thing.dir,
    caFile: thing.pki.caCertPath,
    certFile: thing.pki.brokerCertPath,
    keyFile: thing.pki.brokerKeyPath,
    requireCertificate: true,
    extraConfig,
  });
  thing.editConfig((doc) => (doc.flashlex.thing.mqtt.port = broker.port));
  return broker;
}

/** Makes `dataDir` (if need be) and an empty message database in it, as serve's first start does; `messages` and `outbox` only read one that is there. Returns the file. */
export function makeMessageDatabase(dataDir: string): string {
  const file = join(dataDir, "subscription.db");
  MessageStore.open(file).close();
  return file;
}
