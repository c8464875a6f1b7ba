import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { FlashlexSDK } from "../../src/sdk/index.ts";
import { ConfigError, InputError } from "../../src/shared/errors.ts";
import { MessageStore } from "../../src/thing/store/message-store.ts";
import { type Receiver, startReceiver } from "../support/receiver.ts";
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
