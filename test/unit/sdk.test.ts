import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { join, resolve } from "node:path";
import { FlashlexError, FlashlexSDK } from "../../src/sdk/index.ts";
import { ConfigError, InputError } from "../../src/shared/errors.ts";
import { createLogger, silentLogger } from "../../src/shared/log.ts";
import { openWasmSqlite } from "../../src/shared/sqlite/wasm-sqlite.ts";
import { loadIdentity } from "../../src/thing/identity.ts";
import type { ThingAccess } from "../../src/thing/local/access.ts";
import { databaseAccess } from "../../src/thing/local/in-process.ts";
import { closeControlSocket, listenControlSocket } from "../../src/thing/local/server.ts";
import { socketPath } from "../../src/thing/local/wire.ts";
import { loadThingConfig } from "../../src/thing/settings.ts";
import { MessageStore } from "../../src/thing/store/message-store.ts";
import { databaseState } from "../../src/thing/store/open.ts";
import { type Receiver, startReceiver } from "../support/receiver.ts";
import { tally } from "../support/tally.ts";
import { makeThingFixture, type ThingFixture } from "../support/thing-fixture.ts";

let thing: ThingFixture;
let receiver: Receiver;

beforeAll(async () => {
  thing = await makeThingFixture({ brokerPort: 1, apiUrl: "http://127.0.0.1:1" });
  receiver = await startReceiver({ thingId: thing.thingId, publicKeyPem: thing.pki.thing.publicKeyPem });
  thing.editConfig((doc) => (doc.flashlex.app.api.endpoint = receiver.url));
});

afterAll(async () => {
  await receiver.stop();
  rmSync(thing.dir, { recursive: true, force: true });
});

test("collectMessage delivers to the collect API with a verified JWT", async () => {
  const sdk = await FlashlexSDK.open({ config: thing.configPath, keys: thing.keysDir, data: thing.dataDir });
  try {
    const result = await sdk.collectMessage({ foo: "bar" });
    expect(result.outcome).toBe("sent");
    expect(result.status).toBe(200);
    expect(receiver.received.at(-1)?.body).toEqual({ foo: "bar" });
    await expect(sdk.collectMessage(undefined)).rejects.toThrow(InputError);
  } finally {
    sdk.close();
  }
});

test("reads and acknowledges what serve stored", async () => {
  const store = MessageStore.open(`${thing.dataDir}/subscription.db`);
  store.insertIngress({ topic: `ingress/${thing.thingName}`, payload: Buffer.from('{"message":"hi"}'), qos: 1, retain: false, receivedAt: Date.now() });
  store.close();
  const sdk = await FlashlexSDK.open({ config: thing.configPath, keys: thing.keysDir, data: thing.dataDir });
  try {
    const [message] = await sdk.getMessages();
    expect(message?.payload).toBe('{"message":"hi"}');
    expect(await sdk.ackMessages([message!.id])).toEqual([message!.id]);
    expect(await sdk.getMessages()).toEqual([]);
    expect(await sdk.getMessages({ state: "acked" })).toHaveLength(1);
  } finally {
    sdk.close();
  }
});

test("the SDK uses the agent's identity loader: a key that is not the certificate's is a ConfigError before anything is queued, and reading messages still works", async () => {
  const other = await thing.pki.issueThing("someone-else");
  const keyPath = thing.pki.thing.privateKeyPath;
  const original = readFileSync(keyPath);
  writeFileSync(keyPath, readFileSync(other.privateKeyPath));
  const sdk = await FlashlexSDK.open({ config: thing.configPath, keys: thing.keysDir, data: thing.dataDir });
  try {
    const outbox = () => {
      const store = MessageStore.open(`${thing.dataDir}/subscription.db`);
      try {
        return store.countPending();
      } finally {
        store.close();
      }
    };
    const before = outbox();
    await expect(sdk.collectMessage({ never: "queued" })).rejects.toThrow(ConfigError);
    await expect(sdk.collectMessage({ never: "queued" })).rejects.toThrow(
      `${thing.pki.thing.certPath}: this certificate was not issued for the private key ${keyPath}`,
    );
    expect(outbox()).toBe(before);
    expect(Array.isArray(await sdk.getMessages())).toBe(true);
  } finally {
    sdk.close();
    writeFileSync(keyPath, original);
  }
});

test("config says what open read; rejections are the exported FlashlexError with a kind; after close() calls reject", async () => {
  const sdk = await FlashlexSDK.open({ config: thing.configPath, keys: thing.keysDir, data: thing.dataDir });
  expect(sdk.config).toEqual({ file: thing.configPath, dataDir: thing.dataDir, keysDir: thing.keysDir, thing: { id: thing.thingId, name: thing.thingName } });
  const refused = await sdk.collectMessage(Symbol("not JSON")).catch((err) => err);
  expect(refused).toBeInstanceOf(FlashlexError);
  expect({ kind: refused.kind, exitCode: refused.exitCode }).toEqual({ kind: "data", exitCode: 65 });
  const misspelt = await sdk.collectMessage({ a: 1 }, { vai: "mqtt" } as never).catch((err) => err);
  expect({ kind: misspelt.kind, message: misspelt.message }).toEqual({ kind: "usage", message: 'collectMessage: options has no field "vai" (it takes via)' });
  for (const [options, said] of [
    [null, "null"],
    [["mqtt"], "an array"],
  ] as const) {
    const wrong = await sdk.collectMessage({ a: 1 }, options as never).catch((err) => err);
    expect(wrong.message).toBe(`collectMessage: options must be an object such as {via: "mqtt"}, not ${said}`);
  }
  sdk.close();
  const late = await sdk.getMessages().catch((err) => err);
  expect(late).toBeInstanceOf(FlashlexError);
  expect({ kind: late.kind, message: late.message }).toEqual({ kind: "usage", message: "FlashlexSDK: used after close()" });
});

test("a data directory that is a typo is refused (64) as -d is: a file or a missing parent at open, a directory serve never made at any call but a collect", async () => {
  const at = (data: string) => FlashlexSDK.open({ config: thing.configPath, keys: thing.keysDir, data });
  const refusal = async (p: Promise<unknown>) => {
    const err = await p.then(
      () => undefined,
      (e) => e,
    );
    return err && { kind: err.kind, exitCode: err.exitCode, message: err.message };
  };
  const dir = mkdtempSync("/tmp/flashlex-sdk-data-");
  try {
    writeFileSync(join(dir, "a-file"), "");
    expect(await refusal(at(join(dir, "a-file")))).toEqual({
      kind: "usage",
      exitCode: 64,
      message: `FlashlexSDK.open: data ${join(dir, "a-file")}: not a directory; pass the data directory serve uses (by default data/ beside the config)`,
    });
    expect((await refusal(at(join(dir, "no/such"))))?.message).toStartWith(
      `FlashlexSDK.open: data ${join(dir, "no/such")}: no such directory, nor ${join(dir, "no")}`,
    );
    const typo = await at(join(dir, "typo-data"));
    for (const call of [typo.getMessages(), typo.ackMessages([1]), typo.listOutbox(), typo.dropOutbox(["x"])]) {
      expect(await refusal(call)).toMatchObject({
        kind: "usage",
        exitCode: 64,
        message: expect.stringContaining("no such directory (serve makes its data directory when it first runs)"),
      });
    }
    expect(existsSync(join(dir, "typo-data"))).toBe(false); // nothing made there
    // a directory that is there but holds no database (a wrong one: /tmp): refused, none made
    // there; a collect still makes it, and then the reading calls find it
    const other = await at(dir);
    for (const call of [other.getMessages(), other.ackMessages([1]), other.deleteMessages([1]), other.listOutbox(), other.retryOutbox(["x"])]) {
      expect(await refusal(call)).toMatchObject({
        kind: "usage",
        exitCode: 64,
        message: `${join(dir, "subscription.db")}: no message database here, and ${dir} holds other files: not a thing's data directory; serve makes it when it first runs; pass the data directory serve uses (data)`,
      });
    }
    expect(existsSync(join(dir, "subscription.db"))).toBe(false);
    other.close();
    // a thing's data directory whose database is not made yet (serve starting): as an empty one, none made
    const fresh = join(dir, "fresh");
    mkdirSync(fresh);
    const early = await at(fresh);
    expect(await early.getMessages()).toEqual([]);
    expect(await early.listOutbox()).toEqual([]);
    expect(readdirSync(fresh)).toEqual([]);
    early.close();
    // the default data/ of a folder serve never ran in: not there at all, answered as empty, not made
    const neverRan = join(dir, "never-ran", "data");
    expect(databaseState(join(neverRan, "subscription.db"))).toBe("not yet");
    expect(existsSync(join(dir, "never-ran"))).toBe(false);
    tally("badInputs", 11);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the database is open only while calls are in flight: between calls another driver may open it", async () => {
  const sdk = await FlashlexSDK.open({ config: thing.configPath, keys: thing.keysDir, data: thing.dataDir });
  try {
    const [all, outbox, unacked] = await Promise.all([sdk.getMessages({ state: "all" }), sdk.listOutbox(), sdk.getMessages()]);
    expect(all.length).toBeGreaterThanOrEqual(unacked.length);
    expect(outbox.length).toBeGreaterThan(0);
    // the WebAssembly driver refuses a file this process still has open with bun:sqlite
    openWasmSqlite(`${thing.dataDir}/subscription.db`).close();
  } finally {
    sdk.close();
  }
});

test("one SDK follows serve: through its socket while it runs, the database once it has stopped", async () => {
  const sdk = await FlashlexSDK.open({ config: thing.configPath, keys: thing.keysDir, data: thing.dataDir });
  // serve's side of the socket, as serve sets it up, with the calls it answers counted
  const config = loadThingConfig({ config: thing.configPath, keys: thing.keysDir, data: thing.dataDir });
  const store = MessageStore.open(`${thing.dataDir}/subscription.db`);
  const access = databaseAccess(config, loadIdentity(config), store, silentLogger);
  let answered = 0;
  const counted: ThingAccess = { ...access, listMessages: (query) => (answered++, access.listMessages(query)) };
  const socket = await listenControlSocket(thing.dataDir, counted, () => ({}), silentLogger);
  let listening = true;
  try {
    const throughServe = await sdk.getMessages({ state: "all" });
    expect(answered).toBe(1);
    await closeControlSocket(socket, thing.dataDir);
    listening = false;
    expect(await sdk.getMessages({ state: "all" })).toEqual(throughServe);
    expect(answered).toBe(1);
  } finally {
    if (listening) await closeControlSocket(socket, thing.dataDir);
    store.close();
    sdk.close();
  }
});

test("serve answers a list a page of 16 rows at a time, whatever the client asks for; a list it cannot finish is an error, never a shorter list", async () => {
  const data = mkdtempSync(join(thing.dir, "paged-"));
  const config = loadThingConfig({ config: thing.configPath, keys: thing.keysDir, data });
  const store = MessageStore.open(join(data, "subscription.db"));
  const ids = Array.from({ length: 50 }, (_, i) =>
    store.insertIngress({ topic: `ingress/${i}`, payload: new TextEncoder().encode(`{"n":${i}}`), qos: 1, retain: false, receivedAt: 1_000 + i }),
  );
  const access = databaseAccess(config, loadIdentity(config), store, silentLogger);
  const asked: (number | undefined)[] = [];
  let failAfter = Number.POSITIVE_INFINITY;
  const counted: ThingAccess = {
    ...access,
    listMessages: async (query) => {
      asked.push(query.limit);
      if (asked.length > failAfter) throw new Error("the disk went away");
      return access.listMessages(query);
    },
  };
  const logged: string[] = [];
  const socket = await listenControlSocket(data, counted, () => ({}), createLogger({ level: "info", write: (line) => logged.push(line) }));
  const sdk = await FlashlexSDK.open({ config: thing.configPath, keys: thing.keysDir, data });
  try {
    // the SDK asks for every one: serve reads them 16 at a time (it read all 50 at once)
    expect((await sdk.getMessages({ state: "all" })).map((m) => m.id)).toStrictEqual(ids);
    expect(asked).toEqual([16, 16, 16, 16]);
    asked.length = 0;
    expect((await sdk.getMessages({ state: "all", limit: 20, afterId: ids[2] })).map((m) => m.id)).toStrictEqual(ids.slice(3, 23));
    expect(asked).toEqual([16, 4]);
    asked.length = 0;
    failAfter = 2;
    const err = await sdk.getMessages({ state: "all" }).catch((e) => e);
    expect(err).toBeInstanceOf(FlashlexError);
    // the cut-off list is asked again, as after a serve restart (resuming.ts); serve refuses it
    // at its first page this time, and that refusal is the error
    expect(asked).toEqual([16, 16, 16, 16]);
    // serve's log says why the list was cut off, not that it could not write headers again (attack round 13, F5)
    const failed = logged.filter((line) => line.includes("control.request_failed"));
    expect(failed.length).toBeGreaterThan(0);
    for (const line of failed) {
      expect(line).toContain("the disk went away");
      expect(line).not.toContain("writeHead");
    }
  } finally {
    sdk.close();
    await closeControlSocket(socket, data);
    store.close();
  }
});

test("serve answers the outbox list 16 entries at a time in its order (created, then id), whatever the client asks for", async () => {
  const data = mkdtempSync(join(thing.dir, "paged-outbox-"));
  const config = loadThingConfig({ config: thing.configPath, keys: thing.keysDir, data });
  const store = MessageStore.open(join(data, "subscription.db"));
  // 40 entries, some created in the same millisecond: the id orders those
  const ids = Array.from({ length: 40 }, (_, i) => {
    const messageId = `a0000000-0000-4000-8000-${String(39 - i).padStart(12, "0")}`;
    store.enqueue({ messageId, body: `{"n":${i}}`, via: "http", thingId: "thing-1", now: 1_000 + Math.floor(i / 4) });
    return { messageId, createdAt: 1_000 + Math.floor(i / 4) };
  });
  const ordered = [...ids].sort((a, b) => a.createdAt - b.createdAt || (a.messageId < b.messageId ? -1 : 1)).map((e) => e.messageId);
  const access = databaseAccess(config, loadIdentity(config), store, silentLogger);
  const asked: (number | undefined)[] = [];
  const counted: ThingAccess = { ...access, listOutbox: (state, page) => (asked.push(page?.limit), access.listOutbox(state, page)) };
  const socket = await listenControlSocket(data, counted, () => ({}), silentLogger);
  const sdk = await FlashlexSDK.open({ config: thing.configPath, keys: thing.keysDir, data });
  try {
    expect((await sdk.listOutbox()).map((e) => e.message_id)).toStrictEqual(ordered);
    expect(asked).toEqual([16, 16, 16]);
    asked.length = 0;
    expect((await sdk.listOutbox("sent")).length).toBe(0);
    expect(asked).toEqual([16]);
  } finally {
    sdk.close();
    await closeControlSocket(socket, data);
    store.close();
  }
});

test("a serve that hangs up mid-call is a FlashlexError of kind unavailable naming its socket, like every other rejection", async () => {
  // answers the liveness check as serve does, then drops every request: a serve stopping mid-call
  const server = createServer((req, res) => (req.url === "/v1/status" ? res.end(JSON.stringify({ ok: true, result: {} })) : req.socket.destroy()));
  // a data directory of its own: an earlier test's serve, closed in this process, may still hold a
  // kept-alive connection to the same socket path (a serve that exits takes its connections along)
  const data = mkdtempSync(join(thing.dir, "data-"));
  await new Promise<void>((ok) => server.listen(socketPath(data), ok));
  const sdk = await FlashlexSDK.open({ config: thing.configPath, keys: thing.keysDir, data });
  try {
    const err = await sdk.getMessages().catch((e) => e);
    expect(err).toBeInstanceOf(FlashlexError);
    expect({ kind: err.kind, message: err.message }).toEqual({
      kind: "unavailable",
      message: `the running serve (${socketPath(data)}): connection reset (ECONNRESET)`,
    });
  } finally {
    sdk.close();
    await new Promise((ok) => server.close(ok));
  }
});

test("a serve that goes away under a call (a restart) is not the call's failure: a read goes on from the file, a change serve may have made is 75 saying so (it was 74 'no such file' or 69 'connection reset')", async () => {
  const data = mkdtempSync(join(thing.dir, "restart-"));
  const store = MessageStore.open(join(data, "subscription.db"));
  const id = store.insertIngress({ topic: "ingress/r", payload: new TextEncoder().encode('{"r":1}'), qos: 1, retain: false, receivedAt: 1_000 });
  store.close();
  // answers the liveness check, then, at the first other request, hangs up and stops listening:
  // a serve stopping in the middle of a call
  const goingAway = () => {
    const server = createServer((req, res) => {
      if (req.url === "/v1/status") return res.end(JSON.stringify({ ok: true, result: {} }));
      req.socket.destroy();
      server.close();
    });
    return new Promise<void>((ok) => server.listen(socketPath(data), ok));
  };
  await goingAway();
  const sdk = await FlashlexSDK.open({ config: thing.configPath, keys: thing.keysDir, data });
  try {
    expect((await sdk.getMessages()).map((m) => m.id)).toStrictEqual([id]);
    await goingAway();
    const err = await sdk.ackMessages([id]).catch((e) => e);
    expect({ kind: err.kind, message: err.message }).toEqual({
      kind: "try-later",
      message: `the running serve (${socketPath(data)}): connection reset (ECONNRESET): it went away with the request, which may have been done; list to see`,
    });
  } finally {
    sdk.close();
  }
});

describe("armv7: a collect with serve stopped lets go of the database during its HTTP attempt", () => {
  // The WebAssembly driver keeps the file to itself while it is open: a serve started during a
  // slow attempt (up to 40 s) was refused with 75 until collect ended.
  const config = () => loadThingConfig({ config: thing.configPath, keys: thing.keysDir, data: thing.dataDir });
  const openHere = (file: string) => MessageStore.open(file, { open: openWasmSqlite, holderWaitMs: 200 });

  test("another process may open the file while the request is out; the outcome is recorded after", async () => {
    const file = join(thing.dir, "lend.db");
    const access = databaseAccess(config(), loadIdentity(config()), openHere(file), silentLogger);
    let seenMeanwhile: unknown;
    receiver.beforeAnswer = async () => {
      await Bun.sleep(1_300); // collect lets go after 1 s out
      const other = openHere(file);
      seenMeanwhile = other.listOutbox().map((row) => row.state);
      other.close();
    };
    try {
      const result = await access.collect('{"lend":1}', "http");
      expect(result).toMatchObject({ outcome: "sent", status: 200 });
      expect(result.recordError).toBeUndefined();
      expect(seenMeanwhile).toEqual(["pending"]); // committed before the request left
      expect((await access.listOutbox()).map((row) => row.state)).toStrictEqual(["sent"]);
    } finally {
      receiver.beforeAnswer = undefined;
      access.close();
    }
  });

  test("an answer within a second: the file is never let go (a second open costs armv7 five fsyncs)", async () => {
    const file = join(thing.dir, "lend-fast.db");
    const access = databaseAccess(config(), loadIdentity(config()), openHere(file), silentLogger);
    let refused: unknown;
    receiver.beforeAnswer = () => {
      refused = (() => {
        try {
          openHere(file).close();
        } catch (err) {
          return err;
        }
      })();
    };
    try {
      expect(await access.collect('{"lend":0}', "http")).toMatchObject({ outcome: "sent" });
      expect(String(refused)).toContain("in use by");
    } finally {
      receiver.beforeAnswer = undefined;
      access.close();
    }
  });

  /**
   * collect through a store of its own while the receiver, once collect has let go of the file,
   * has another connection take it and keep it until the answer is back; the outbox as seen after.
   */
  async function collectWhileTaken(file: string, thingConfig: ReturnType<typeof config>, body: string) {
    const access = databaseAccess(thingConfig, loadIdentity(thingConfig), openHere(file), silentLogger);
    let holder: MessageStore | undefined;
    receiver.beforeAnswer = async () => {
      await Bun.sleep(1_300);
      holder = openHere(file);
    };
    try {
      const result = await access.collect(body, "http");
      holder?.close();
      holder = undefined;
      return { result, outbox: await access.listOutbox() };
    } finally {
      receiver.beforeAnswer = undefined;
      holder?.close();
      access.close();
    }
  }

  test("a process that keeps it past the attempt: delivered, the outcome not recorded, the row left for serve (same id, stored once)", async () => {
    const { result, outbox } = await collectWhileTaken(join(thing.dir, "lend-kept.db"), config(), '{"lend":2}');
    expect(result).toMatchObject({ outcome: "sent", status: 200 });
    expect(result.recordError).toContain("in use by");
    expect(outbox).toEqual([expect.objectContaining({ message_id: result.messageId, state: "pending", attempts: 0 })]);
  });

  test("offlinePublishQueueing 0 and the file still held after a failed attempt: the row cannot be taken out, so it is reported queued, not refused", async () => {
    const limited = config();
    limited.yaml.thing.mqtt.offlinePublishQueueing = 0;
    receiver.answerStatus = 503;
    try {
      const { result, outbox } = await collectWhileTaken(join(thing.dir, "lend-limit.db"), limited, '{"lend":3}');
      expect(result).toMatchObject({ outcome: "queued", status: 503 });
      expect(result.recordError).toContain("in use by");
      expect(outbox.map((row) => row.message_id)).toStrictEqual([result.messageId]);
    } finally {
      receiver.answerStatus = undefined;
    }
  });
});

test("armv7 (Node, WebAssembly SQLite): a serve started while the SDK had the database open answers the SDK's next call (it failed with 75 after 5 s)", async () => {
  const { bundleForNode } = await import("../../scripts/bundle-node.ts");
  const bundle = await bundleForNode(join(thing.dir, "sdk-serve.cjs"), { entry: resolve(import.meta.dir, "../support/node-sdk-serve-entry.ts") });
  const data = mkdtempSync(join(thing.dir, "data-node-"));
  // the answer well after the serve-to-be could open the store (1 s out, then tries every 100 ms)
  receiver.beforeAnswer = () => Bun.sleep(5_000);
  try {
    const node = Bun.spawn(["node", bundle.outFile, thing.configPath, thing.keysDir, data], { stdout: "pipe", stderr: "pipe" });
    const [out, err] = await Promise.all([new Response(node.stdout).text(), new Response(node.stderr).text(), node.exited]);
    expect(err).toBe("");
    const seen = JSON.parse(out);
    expect(seen.messages).toEqual({ count: 0 });
    // the answer came while the serve held the file: delivered, left pending for serve to record
    expect(seen.collect).toEqual({ outcome: "sent", recorded: false });
  } finally {
    receiver.beforeAnswer = undefined;
  }
}, 60_000);

describe("flashlex.py (dist-template) waits as the agent does", () => {
  test("its probe window is the client's SERVE_PROBE_MS and its sqlite3 timeout the drivers' LOCK_WAIT_MS", async () => {
    const { SERVE_PROBE_MS } = await import("../../src/thing/local/client.ts");
    const { LOCK_WAIT_MS } = await import("../../src/shared/sqlite/driver.ts");
    const source = await Bun.file(new URL("../../dist-template/flashlex.py", import.meta.url)).text();
    expect(Number(/^_PROBE_SECONDS = (\d+)$/m.exec(source)?.[1])).toBe(SERVE_PROBE_MS / 1000);
    expect(Number(/sqlite3\.connect\(.*timeout=(\d+)/.exec(source)?.[1])).toBe(LOCK_WAIT_MS / 1000);
  });
});
