import { MessageStore } from "../../src/thing/store/message-store.ts";

/**
 * Stand-in for src/main.ts in the Node bundle proof: opens the message database at argv[2]
 * with this build's driver, writes a message, reads it back, prints one JSON line.
 */
const file = process.argv[2];
if (!file) throw new Error("usage: node bundle.cjs FILE");
const store = MessageStore.open(file);
const id = store.insertIngress({
  topic: "ingress/smoke",
  payload: new TextEncoder().encode('{"hello":"w\u00f6rld"}'),
  qos: 1,
  retain: false,
  receivedAt: Date.now(),
});
const row = store.getIngress(id);
const journal = store.db.get<{ journal_mode: string }>("PRAGMA journal_mode")?.journal_mode;
console.log(JSON.stringify({ driver: store.db.driver, runtime: process.version, id, payload: row?.payload, journal, count: store.countIngress() }));
store.close();
