/**
 * The SDK as apps get it: the release's `flashlex-sdk-<version>.tgz` (scripts/build-sdk.ts),
 * installed with `npm i ./flashlex-sdk-<v>.tgz --offline` into an empty app, imported as
 * `flashlex-sdk` by a plain ESM app that Node 20 and Bun each run against a real thing: the
 * compiled `serve` on Mosquitto with `require_certificate true`, a collect receiver that verifies
 * the JWT, the real database; once with serve running (the SDK goes through its socket) and
 * once with it stopped (the SDK opens the database: the WebAssembly SQLite under Node,
 * bun:sqlite under Bun). A TypeScript app typechecks against the shipped index.d.ts.
 */

import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { buildSdkPackage, type SdkPackage } from "../../scripts/build-sdk.ts";
import { type Background, binaryPath, run, start } from "../support/binary.ts";
import type { MosquittoBroker } from "../support/mosquitto.ts";
import { type Receiver, startReceiver } from "../support/receiver.ts";
import { tally } from "../support/tally.ts";
import { makeThingFixture, startBrokerFor, type ThingFixture } from "../support/thing-fixture.ts";

const ROOT = resolve(import.meta.dir, "../..");

/** The app: one line of JSON with what each SDK call gave. argv: config keys data label */
const APP = `
import { FlashlexSDK, FlashlexError } from "flashlex-sdk";

const [config, keys, data, label] = process.argv.slice(2);
const sdk = await FlashlexSDK.open({ config, keys, data });
const out = {
  runtime: typeof Bun === "undefined" ? "node " + process.version : "bun " + Bun.version,
  module: import.meta.resolve("flashlex-sdk"),
  thing: sdk.config.thing.name,
};
out.collect = await sdk.collectMessage({ from: label });
const messages = await sdk.getMessages();
out.messages = messages.map((m) => ({ id: m.id, topic: m.topic, payload: typeof m.payload === "string" ? m.payload : "bytes" }));
out.acked = await sdk.ackMessages(messages.slice(0, 1).map((m) => m.id));
out.sent = (await sdk.listOutbox("sent")).map((e) => e.message_id);
// calls at once share one open of the database (the WebAssembly driver holds a file once per process)
out.together = (await Promise.all([sdk.getMessages({ state: "all" }), sdk.listOutbox(), sdk.getMessages({ state: "acked" })])).map((r) => r.length);
try {
  await sdk.collectMessage(undefined);
} catch (err) {
  out.refused = { isFlashlexError: err instanceof FlashlexError, kind: err.kind, exitCode: err.exitCode, message: err.message };
}
try {
  await sdk.collectMessage({ readings: new Map([["t", 21]]) });
} catch (err) {
  out.refusedMap = { kind: err.kind, message: err.message };
}
sdk.close();
console.log(JSON.stringify(out));
`;

/** A TypeScript consumer: must typecheck against index.d.ts alone (no @types, node16 resolution). */
const TS_APP = `
import { FlashlexSDK, FlashlexError, type CollectResult, type IngressMessage, type OutboxEntry } from "flashlex-sdk";

const sdk: FlashlexSDK = await FlashlexSDK.open({ config: "config.yml", data: "data" });
const result: CollectResult = await sdk.collectMessage({ temperature: 21.5 }, { via: "mqtt" });
const outcome: "sent" | "rejected" | "queued" = result.outcome;
const messages: IngressMessage[] = await sdk.getMessages({ state: "all", limit: 10 });
const payload: string | Uint8Array | undefined = messages[0]?.payload;
const acked: number[] = await sdk.ackMessages(messages.map((m) => m.id));
const rejected: OutboxEntry[] = await sdk.listOutbox("rejected");
await sdk.retryOutbox(rejected.map((e) => e.message_id));
const name: string = sdk.config.thing.name;
try {
  await sdk.dropOutbox(["x"]);
} catch (err) {
  if (err instanceof FlashlexError) {
    const kind: "try-later" | "data" | string = err.kind;
    const code: number = err.exitCode;
    void [kind, code];
  }
}
// @ts-expect-error: no such method (the types are real, not any)
sdk.publish("x");
// @ts-expect-error: ids are numbers
await sdk.ackMessages(["1"]);
// @ts-expect-error: not a state
await sdk.listOutbox("lost");
sdk.close();
export const seen = [outcome, payload, acked, name];
`;

interface AppOutput {
  runtime: string;
  module: string;
  thing: string;
  collect: { messageId: string; outcome: string; status?: number };
  messages: { id: number; topic: string; payload: string }[];
  acked: number[];
  sent: string[];
  together: number[];
  refused: { isFlashlexError: boolean; kind: string; exitCode: number; message: string };
  /** a Map, which JSON.stringify would write as {} */
  refusedMap: { kind: string; message: string };
}

let pkg: SdkPackage;
let appDir: string;
let thing: ThingFixture;
let broker: MosquittoBroker;
let receiver: Receiver;
let hub: MqttClient;
let serve: Background | undefined;
const published: string[] = [];

async function runApp(runtime: "node" | "bun", label: string): Promise<AppOutput> {
  const command = runtime === "node" ? "node" : process.execPath;
  const proc = Bun.spawn([command, "app.mjs", thing.configPath, thing.keysDir, thing.dataDir, label], { cwd: appDir, stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), 20_000);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  if (code !== 0) throw new Error(`${runtime} app.mjs exited ${code}:\n${stderr}${stdout}`);
  expect(stderr).toBe(""); // no warning reaches the app's output (a deprecation, an experimental feature)
  return JSON.parse(stdout.trim().split("\n").at(-1)!);
}

function database(): Database {
  return new Database(join(thing.dataDir, "subscription.db"), { readonly: true });
}

beforeAll(async () => {
  binaryPath();
  // the package, built once for this file, as the release builds it
  pkg = await buildSdkPackage(mkdtempSync(join(tmpdir(), "flashlex-sdk-dist-")));
  appDir = mkdtempSync(join(tmpdir(), "flashlex-sdk-app-"));
  writeFileSync(join(appDir, "package.json"), JSON.stringify({ name: "sdk-test-app", private: true, type: "module" }));
  const install = Bun.spawnSync(["npm", "i", pkg.tarball, "--offline", "--no-audit", "--no-fund"], { cwd: appDir, stdout: "pipe", stderr: "pipe" });
  if (!install.success) throw new Error(`npm i --offline ${pkg.tarball} failed: ${install.stderr.toString()}`);
  writeFileSync(join(appDir, "app.mjs"), APP);

  thing = await makeThingFixture({ brokerPort: 1, apiUrl: "http://127.0.0.1:1" });
  receiver = await startReceiver({ thingId: thing.thingId, publicKeyPem: thing.pki.thing.publicKeyPem });
  broker = await startBrokerFor(thing);
  thing.editConfig((doc) => (doc.flashlex.app.api.endpoint = receiver.url));
  const hubFiles = await thing.pki.issueThing("test-hub");
  hub = mqtt.connect({
    protocol: "mqtts",
    host: "127.0.0.1",
    port: broker.port,
    ca: readFileSync(thing.pki.caCertPath),
    cert: hubFiles.certPem,
    key: hubFiles.privateKeyPem,
    rejectUnauthorized: true,
    clientId: "test-hub",
    reconnectPeriod: 0,
  });
  await new Promise<void>((ok, fail) => hub.once("connect", () => ok()).once("error", fail));
});

afterAll(async () => {
  hub?.end(true);
  await serve?.stop();
  await broker?.stop();
  await receiver?.stop();
  for (const dir of [appDir, thing?.dir, pkg && resolve(pkg.tarball, "..")]) if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("the flashlex-sdk package", () => {
  test("installs offline as one package with nothing to fetch, an ESM file each for Node and Bun, and self-contained types", () => {
    expect(pkg.tarball).toEndWith(`/flashlex-sdk-${JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version}.tgz`);
    expect(readdirSync(join(appDir, "node_modules")).filter((f) => !f.startsWith("."))).toEqual(["flashlex-sdk"]);
    const installed = join(appDir, "node_modules/flashlex-sdk");
    expect(readdirSync(installed).sort()).toEqual(["README.md", "index.bun.mjs", "index.d.ts", "index.mjs", "package.json"]);
    const manifest = JSON.parse(readFileSync(join(installed, "package.json"), "utf8"));
    expect(manifest).toMatchObject({ name: "flashlex-sdk", type: "module", types: "./index.d.ts", engines: { node: ">=20" } });
    expect(manifest.dependencies).toBeUndefined();
    const dts = readFileSync(join(installed, "index.d.ts"), "utf8");
    // matched to a short string: a failing toMatch would print the whole file
    expect(dts.match(/.{0,40}(\bimport\b|\bfrom ["']|\.\.\/|src\/).{0,40}/)?.[0]).toBeUndefined();
    expect(dts).toContain("export declare class FlashlexSDK");
    // the whole package is about 1.1 MB: a jump means something unexpected got bundled
    expect(pkg.bytes).toBeLessThan(2_000_000);
  });

  test("a TypeScript app typechecks against the shipped index.d.ts (node16 resolution, no @types)", () => {
    const dir = join(appDir, "ts");
    mkdirSync(dir);
    writeFileSync(join(dir, "package.json"), JSON.stringify({ type: "module" }));
    writeFileSync(join(dir, "app.ts"), TS_APP);
    writeFileSync(
      join(dir, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          lib: ["ES2022"],
          module: "node16",
          moduleResolution: "node16",
          strict: true,
          noEmit: true,
          types: [],
          skipLibCheck: false,
        },
        files: ["app.ts"],
      }),
    );
    // node_modules/flashlex-sdk is found from the app directory's parent, as for any nested project
    const tsc = Bun.spawnSync([join(ROOT, "node_modules/.bin/tsc"), "-p", dir], { cwd: dir, stdout: "pipe", stderr: "pipe" });
    expect(`${tsc.stdout}${tsc.stderr}`).toBe("");
    expect(tsc.exitCode).toBe(0);
  });

  test("with serve running, Node 20 and Bun apps go through serve: collect reaches the receiver, ingress is read and acknowledged", async () => {
    serve = start(["serve", ...thing.flags]);
    await serve.waitFor(/serve\.started/);
    await serve.waitFor(/mqtt\.subscribed/);
    for (let i = 1; i <= 4; i++) {
      const payload = JSON.stringify({ message: `m${i}` });
      published.push(payload);
      await hub.publishAsync(`ingress/${thing.thingName}`, payload, { qos: 1 });
    }
    await serve.waitFor(/ingress\.stored [^\n]*last=4\b/);

    const node = await runApp("node", "node-through-serve");
    expect(Number(node.runtime.match(/^node v(\d+)\./)?.[1])).toBeGreaterThanOrEqual(20);
    expect(node.module).toEndWith("/node_modules/flashlex-sdk/index.mjs");
    expect(node.thing).toBe(thing.thingName);
    expect(node.collect).toMatchObject({ outcome: "sent", status: 200 });
    expect(node.messages.map((m) => m.payload)).toStrictEqual(published);
    expect(node.acked).toEqual([node.messages[0]!.id]);
    expect(node.sent).toContain(node.collect.messageId);
    expect(node.refused).toMatchObject({ isFlashlexError: true, kind: "data", exitCode: 65 });
    expect(node.refusedMap).toMatchObject({ kind: "data", message: expect.stringContaining("$.readings is of type Map") });
    tally("badInputs", 2);

    const bun = await runApp("bun", "bun-through-serve");
    expect(bun.runtime).toStartWith("bun ");
    expect(bun.module).toEndWith("/node_modules/flashlex-sdk/index.bun.mjs");
    expect(bun.collect).toMatchObject({ outcome: "sent", status: 200 });
    expect(bun.messages.map((m) => m.payload)).toStrictEqual(published.slice(1));
    expect(bun.acked).toEqual([bun.messages[0]!.id]);
    expect(bun.refused).toMatchObject({ isFlashlexError: true, kind: "data", exitCode: 65 });
    expect(bun.refusedMap).toMatchObject({ kind: "data", message: expect.stringContaining("$.readings is of type Map") });
    tally("badInputs", 2);

    // serve did both collects (its log names each message id): the apps did not open the database
    for (const id of [node.collect.messageId, bun.collect.messageId]) expect(serve.output()).toContain(id);
    expect(receiver.received.map((r) => r.body)).toStrictEqual([{ from: "node-through-serve" }, { from: "bun-through-serve" }]);
  });

  test("with serve stopped, Node 20 (WebAssembly SQLite) and Bun (bun:sqlite) open the database themselves and leave it whole and unlocked", async () => {
    expect(await serve!.stop()).toBe(0);
    serve = undefined;

    const node = await runApp("node", "node-direct");
    expect(node.module).toEndWith("/index.mjs");
    expect(node.collect).toMatchObject({ outcome: "sent", status: 200 });
    expect(node.messages.map((m) => m.payload)).toStrictEqual(published.slice(2));
    expect(node.acked).toEqual([node.messages[0]!.id]);
    expect(node.sent).toContain(node.collect.messageId);
    expect(node.together).toEqual([4, 3, 3]);
    // the wasm driver's lock directory and owner record are gone: the app closed the file
    expect(readdirSync(thing.dataDir).filter((f) => f.startsWith("subscription.db."))).toEqual([]);

    const bun = await runApp("bun", "bun-direct");
    expect(bun.module).toEndWith("/index.bun.mjs");
    expect(bun.collect).toMatchObject({ outcome: "sent", status: 200 });
    expect(bun.messages.map((m) => m.payload)).toStrictEqual(published.slice(3));
    expect(bun.acked).toEqual([bun.messages[0]!.id]);
    expect(bun.sent).toHaveLength(4);
    expect(bun.together).toEqual([4, 4, 4]);

    expect(receiver.received.map((r) => r.body)).toStrictEqual(
      ["node-through-serve", "bun-through-serve", "node-direct", "bun-direct"].map((from) => ({ from })),
    );
    const db = database();
    try {
      expect(db.query("PRAGMA integrity_check").get()).toEqual({ integrity_check: "ok" });
      const ingress = db.query("SELECT payload, acked_at FROM ingress_messages ORDER BY id").all() as { payload: string; acked_at: number | null }[];
      expect(ingress.map((m) => m.payload)).toStrictEqual(published);
      expect(ingress.every((m) => m.acked_at !== null)).toBe(true);
      const sent = (db.query("SELECT count(*) AS n FROM outbox WHERE sent_at IS NOT NULL").get() as { n: number }).n;
      expect(sent).toBe(4);
      tally("lost", published.length - ingress.length + (4 - receiver.received.length));
    } finally {
      db.close();
    }
    expect(existsSync(join(thing.dataDir, "flashlex.sock"))).toBe(false);
  });

  test("while a WebAssembly SQLite holds the database (a Node app's call in flight), the native serve and messages refuse it (75) rather than write blind, and lose nothing", async () => {
    const file = join(thing.dataDir, "subscription.db");
    // the wasm driver under Bun: the same lock protocol as under Node, without a bundle to make
    const holder = Bun.spawn([process.execPath, join(ROOT, "test/support/hold-wasm-db.ts"), file], { stdout: "pipe", stderr: "inherit" });
    try {
      const { value } = await holder.stdout.getReader().read();
      expect(new TextDecoder().decode(value)).toBe("ready\n");
      const expected = `${file} is in use by process ${holder.pid} through the WebAssembly SQLite`;
      const list = await run(["messages", "list", ...thing.flags, "--all"]);
      expect({ code: list.code, said: list.stderr.includes(expected) }).toEqual({ code: 75, said: true });
      const refused = await run(["serve", ...thing.flags]);
      expect({ code: refused.code, said: refused.stderr.includes(expected) }).toEqual({ code: 75, said: true });
      tally("faults", 2);
    } finally {
      holder.kill("SIGKILL");
      await holder.exited;
    }
    // a killed holder leaves its lock behind: a native open sees it is dead and goes ahead
    const list = await run(["messages", "list", ...thing.flags, "--all", "--json"]);
    expect(list.code).toBe(0);
    expect(
      list.stdout
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line).payload),
    ).toEqual(published);
  });
});
