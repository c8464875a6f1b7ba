import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { IPublishPacket } from "mqtt";
import { loadThingConfig } from "../../src/config/load.ts";
import { silentLogger } from "../../src/log.ts";
import { MessageStore } from "../../src/store/message-store.ts";
import { createIngressHandler } from "../../src/thing/ingress.ts";

const dir = mkdtempSync(join(tmpdir(), "flashlex-ingress-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const packet = (messageId: number, payload: string, dup = false): IPublishPacket => ({
  cmd: "publish",
  topic: "ingress/ecd13b11-mything",
  payload: Buffer.from(payload),
  qos: 1,
  dup,
  retain: false,
  messageId,
});

test("a redelivery (DUP) of a stored message is acknowledged again but stored once; anything else is stored", async () => {
  const config = loadThingConfig({ config: join(import.meta.dir, "../fixtures/guide-config.yml"), data: dir });
  const store = MessageStore.open(join(dir, "ingress.db"));
  try {
    const handle = createIngressHandler({ config, store, log: silentLogger });
    await handle(packet(7, '{"on":true}'));
    await handle(packet(8, '{"on":false}'));
    await handle(packet(7, '{"on":true}', true)); // the broker never saw the PUBACK of 7
    await handle(packet(8, '{"on":"other"}', true)); // same id, other payload: a different message
    await handle(packet(9, '{"on":true}')); // same payload, new id: a new message
    await handle(packet(7, '{"on":true}')); // not a redelivery (no DUP): stored
    expect(store.listIngress().map((m) => [m.packet_id, m.payload])).toEqual([
      [7, '{"on":true}'],
      [8, '{"on":false}'],
      [8, '{"on":"other"}'],
      [9, '{"on":true}'],
      [7, '{"on":true}'],
    ]);
  } finally {
    store.close();
  }
});
