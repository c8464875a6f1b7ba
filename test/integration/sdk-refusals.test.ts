/**
 * Every rejection of the TypeScript SDK is a FlashlexError with a kind and the exit code the CLI
 * would give, and means the same whether `serve` runs (the SDK talks to the compiled binary's
 * control socket) or not (the SDK opens the database itself). And the control socket checks
 * what any other client (flashlex.py, curl) sends it the same way.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, rmSync } from "node:fs";
import { request } from "node:http";
import { FlashlexError, FlashlexSDK } from "../../src/sdk/index.ts";
import { socketPath } from "../../src/thing/local/wire.ts";
import { MessageStore } from "../../src/thing/store/message-store.ts";
import { binaryPath, start } from "../support/binary.ts";
import { tally } from "../support/tally.ts";
import { makeThingFixture, type ThingFixture } from "../support/thing-fixture.ts";

let thing: ThingFixture;

beforeAll(async () => {
  binaryPath();
  // No broker and no API: nothing here may get as far as sending.
  thing = await makeThingFixture({ brokerPort: 1, apiUrl: "http://127.0.0.1:1" });
});
afterAll(() => rmSync(thing.dir, { recursive: true, force: true }));

let deep: unknown = [];
for (let i = 0; i < 100_000; i++) deep = [deep];
const cyclic: Record<string, unknown> = { a: 1 };
cyclic.self = cyclic;

/** Each bad call, the kind it must be refused with, and what the message must name. */
const BAD_CALLS: { name: string; call: (sdk: FlashlexSDK) => Promise<unknown>; kind: string; names: string }[] = [
  {
    name: 'collectMessage({a:1}, {via: "bogus"})',
    call: (sdk) => sdk.collectMessage({ a: 1 }, { via: "bogus" as "http" }),
    kind: "usage",
    names: 'via must be http or mqtt, not "bogus"',
  },
  {
    name: 'getMessages({state: "bogus"})',
    call: (sdk) => sdk.getMessages({ state: "bogus" as "all" }),
    kind: "usage",
    names: 'state must be unacked, acked or all, not "bogus"',
  },
  {
    name: "getMessages({since: NaN})",
    call: (sdk) => sdk.getMessages({ since: Number.NaN }),
    kind: "usage",
    names: "since must be a time in Unix milliseconds, not NaN",
  },
  {
    name: "getMessages({limit: 0})",
    call: (sdk) => sdk.getMessages({ limit: 0 }),
    kind: "usage",
    names: "limit must be a whole number from 1 to 9007199254740991, not 0",
  },
  { name: 'getMessages({stat: "acked"})', call: (sdk) => sdk.getMessages({ stat: "acked" } as never), kind: "usage", names: 'no field "stat"' },
  {
    name: 'listOutbox("bogus")',
    call: (sdk) => sdk.listOutbox("bogus" as "sent"),
    kind: "usage",
    names: 'the outbox state must be pending, sent or rejected, not "bogus"',
  },
  {
    name: 'ackMessages(["1"])',
    call: (sdk) => sdk.ackMessages(["1"] as never),
    kind: "usage",
    names: 'a message id must be a whole number from 1 to 9007199254740991, not "1"',
  },
  { name: "deleteMessages(7)", call: (sdk) => sdk.deleteMessages(7 as never), kind: "usage", names: "the message ids must be an array of numbers, not 7" },
  { name: 'retryOutbox([""])', call: (sdk) => sdk.retryOutbox([""]), kind: "usage", names: 'not an outbox message id: ""' },
  {
    name: "collectMessage({big: 1n})",
    call: (sdk) => sdk.collectMessage({ big: 1n }),
    kind: "data",
    names: "$.big is a BigInt, which JSON cannot carry; nothing was queued",
  },
  { name: "collectMessage(cyclic)", call: (sdk) => sdk.collectMessage(cyclic), kind: "data", names: "it contains itself: a cyclic structure" },
  { name: "collectMessage(100,000-deep array)", call: (sdk) => sdk.collectMessage(deep), kind: "data", names: "nested more than 64 levels deep" },
  { name: "collectMessage({n: NaN})", call: (sdk) => sdk.collectMessage({ n: Number.NaN }), kind: "data", names: "$.n is NaN, which JSON cannot carry" },
];

const EXIT = { usage: 64, data: 65 } as Record<string, number>;

async function refusalsOf(sdk: FlashlexSDK): Promise<Record<string, { kind: string; exitCode: number; message: string }>> {
  const seen: Record<string, { kind: string; exitCode: number; message: string }> = {};
  for (const bad of BAD_CALLS) {
    const err = await bad.call(sdk).then(
      (value) => ({ resolved: value }),
      (e) => e,
    );
    tally("badInputs");
    expect(err, bad.name).toBeInstanceOf(FlashlexError);
    seen[bad.name] = { kind: err.kind, exitCode: err.exitCode, message: err.message };
    expect({ call: bad.name, kind: err.kind, exitCode: err.exitCode }).toEqual({ call: bad.name, kind: bad.kind, exitCode: EXIT[bad.kind]! });
    expect(err.message).toContain(bad.names);
    expect(err.message.split("\n")).toHaveLength(1);
  }
  return seen;
}

function outboxCount(): number {
  const store = MessageStore.open(`${thing.dataDir}/subscription.db`);
  try {
    return store.listOutbox().length;
  } finally {
    store.close();
  }
}

describe("the SDK refuses a wrong argument the same way with serve stopped and running", () => {
  test("usage (64) for a wrong argument, data (65) for a document JSON cannot carry: the same error both ways, nothing queued", async () => {
    const sdk = await FlashlexSDK.open({ config: thing.configPath, keys: thing.keysDir, data: thing.dataDir });
    const stopped = await refusalsOf(sdk);
    const serve = start(["serve", ...thing.flags]);
    try {
      await serve.waitFor(/serve\.started/);
      const running = await refusalsOf(sdk);
      expect(running).toEqual(stopped);
      expect(await sdk.listOutbox()).toEqual([]);
    } finally {
      sdk.close();
      expect(await serve.stop()).toBe(0);
    }
    expect(outboxCount()).toBe(0);
  }, 60_000);

  test("a list of ids longer than one request to serve means the same as with serve stopped (an app acking its whole backlog)", async () => {
    const store = MessageStore.open(`${thing.dataDir}/subscription.db`);
    const stored = store.insertIngressBatch(
      Array.from({ length: 3 }, (_, n) => ({ topic: "ingress/t", payload: Buffer.from(`{"n":${n}}`), qos: 1, retain: false, receivedAt: Date.now() })),
    ) as number[];
    store.close();
    const many = Array.from({ length: 200_000 }, (_, i) => i + 1); // ~1.4 MB of JSON, over serve's 1 MiB request limit
    const outboxIds = Array.from({ length: 30_000 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`);
    const sdk = await FlashlexSDK.open({ config: thing.configPath, keys: thing.keysDir, data: thing.dataDir });
    const serve = start(["serve", ...thing.flags]);
    try {
      await serve.waitFor(/serve\.started/);
      expect(await sdk.ackMessages(many)).toEqual(stored);
      const dropped = await sdk.dropOutbox(outboxIds);
      expect({ changed: dropped.changed.length, missing: dropped.missing.length }).toEqual({ changed: 0, missing: outboxIds.length });
      expect(await sdk.deleteMessages(many)).toEqual(stored);
    } finally {
      sdk.close();
      expect(await serve.stop()).toBe(0);
    }
  }, 60_000);

  test("FlashlexSDK.open with no argument, a bare path or a config that is not a string: usage (64), one line saying what to give", async () => {
    for (const args of [
      [],
      [thing.configPath],
      [{ config: 5 }],
      [null],
      [{ config: thing.configPath, data: 3 }],
      [{ config: thing.configPath }, { log: "loud" }],
      // a name it does not know: dataDir (as sdk.config names it) left it on the default data/
      [{ config: thing.configPath, dataDir: thing.dataDir }],
      [{ config: thing.configPath, keysDir: thing.keysDir }],
      [{ config: thing.configPath, dta: "x" }],
      [{ config: thing.configPath }, { logger: console }],
    ] as unknown[][]) {
      const err = await (FlashlexSDK.open as (...a: unknown[]) => Promise<FlashlexSDK>)(...args).catch((e) => e);
      tally("badInputs");
      expect(err).toBeInstanceOf(FlashlexError);
      expect({ kind: err.kind, exitCode: err.exitCode }).toEqual({ kind: "usage", exitCode: 64 });
      expect(err.message).toStartWith("FlashlexSDK.open: ");
    }
    const misnamed = await FlashlexSDK.open({ config: thing.configPath, dataDir: thing.dataDir } as never).catch((e) => e);
    expect(misnamed.message).toBe('FlashlexSDK.open: no option "dataDir" (the data directory is `data`); it takes config, data and keys');
    const missing = await FlashlexSDK.open({ config: `${thing.dir}/nope.yml` }).catch((e) => e);
    expect(missing).toBeInstanceOf(FlashlexError);
    expect(missing.kind).toBe("config");
  });
});

/** One request to serve's control socket, as any client may send it; resolves to the parsed answer. */
function callSocket(path: string, body: string | Buffer): Promise<{ ok: boolean; kind?: string; error?: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socketPath(thing.dataDir), method: "POST", path, headers: { "Content-Type": "application/json" } }, (res) => {
      let text = "";
      res.on("data", (chunk) => (text += chunk));
      res.on("end", () => resolve(JSON.parse(text)));
    });
    req.on("error", reject);
    req.end(body);
  });
}

test("serve's control socket answers a wrong body from any client with kind usage naming the field, and queues nothing", async () => {
  const serve = start(["serve", ...thing.flags]);
  try {
    await serve.waitFor(/serve\.started/);
    const cases: [string, string, string][] = [
      ["/v1/messages/list", '{"state":"bogus"}', "state must be"],
      ["/v1/messages/list", '{"since":"yesterday"}', "since must be"],
      ["/v1/messages/list", "[1]", "the message query must be an object"],
      ["/v1/messages/ack", '{"ids":["x"]}', "a message id must be"],
      ["/v1/messages/delete", "null", "the message ids must be an array"],
      ["/v1/collect", '{"body":"{\\"a\\":1}","via":"bogus"}', "via must be"],
      ["/v1/outbox/list", '{"state":"bogus"}', "the outbox state must be"],
      ["/v1/outbox/drop", '{"ids":[1]}', "not an outbox message id: 1"],
      // a field serve does not take is refused, never read as absent (the outbox list answered every state)
      ["/v1/outbox/list", '{"state":"sent","bogus":1}', 'the outbox list request has no field "bogus"'],
      ["/v1/outbox/list", '{"after":{"createdAt":0,"messageId":"","x":1}}', 'after has no field "x"'],
      ["/v1/outbox/list", "5", "the outbox list request must be an object"],
      ["/v1/messages/ack", '{"ids":[1],"acked":true}', 'the ack request has no field "acked"'],
      ["/v1/messages/delete", "[1]", "the delete request must be an object"],
      ["/v1/collect", '{"body":"{}","vai":"mqtt"}', 'the collect request has no field "vai"'],
      ["/v1/outbox/retry", '{"ids":[],"all":true}', 'the retry request has no field "all"'],
      // the document is JSON text: an object, a number or an array there was "empty"
      ["/v1/collect", '{"body":{"a":1},"via":"http"}', "the collect request's body must be the document as JSON text (a string), not object"],
      ["/v1/collect", '{"body":42}', "must be the document as JSON text (a string), not number"],
      ["/v1/collect", '{"body":["x"]}', "must be the document as JSON text (a string), not an array"],
    ];
    for (const [path, body, names] of cases) {
      const answer = await callSocket(path, body);
      tally("badInputs");
      expect({ path, body, ok: answer.ok, kind: answer.kind }).toEqual({ path, body, ok: false, kind: "usage" });
      expect(answer.error).toContain(names);
    }
    // bytes that are not UTF-8: refused as collect refuses them on stdin, never sent on as U+FFFD (attack round 27, F7)
    const notUtf8 = await callSocket(
      "/v1/collect",
      Buffer.concat([Buffer.from('{"body":"{\\"a\\":\\"'), Buffer.from([0xff, 0xfe]), Buffer.from('\\"}","via":"http"}')]),
    );
    tally("badInputs");
    expect(notUtf8).toEqual({ ok: false, kind: "data", error: "the request: not valid UTF-8 (first bad byte at offset 18); nothing was done" });
    expect(serve.output()).not.toMatch(/ERROR|internal error/);
  } finally {
    expect(await serve.stop()).toBe(0);
  }
  expect(outboxCount()).toBe(0);
  expect(readdirSync(thing.dataDir)).not.toContain("flashlex.sock");
}, 60_000);

test("serve's control socket drops a leading byte order mark from a collect body, as collect does from stdin (it was 'not JSON at line 1, column 1')", async () => {
  const serve = start(["serve", ...thing.flags]);
  try {
    await serve.waitFor(/serve\.started/);
    const before = outboxCount();
    const answer = await callSocket("/v1/collect", JSON.stringify({ body: '\uFEFF{"bom":1}' }));
    expect({ ok: answer.ok, error: answer.error }).toEqual({ ok: true, error: undefined });
    expect(outboxCount()).toBe(before + 1);
  } finally {
    expect(await serve.stop()).toBe(0);
  }
}, 60_000);
