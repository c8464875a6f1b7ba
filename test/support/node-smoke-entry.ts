import { FlashlexError } from "../../src/shared/errors.ts";
import { holdFileLock } from "../../src/shared/file-lock.ts";
import { MessageStore } from "../../src/thing/store/message-store.ts";

/**
 * Stand-in for src/main.ts in the Node bundle proof: opens the message database at argv[2]
 * with this build's driver, writes a message, reads it back, and takes and releases a file
 * lock beside it (flock(1) in this build: no bun:ffi); prints one JSON line.
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
const result = { driver: store.db.driver, runtime: process.version, id, payload: row?.payload, journal, count: store.countIngress() };
store.close();

// the lock is taken in a function: the bundle is CommonJS, which has no top-level await
async function lockTwice(): Promise<boolean | string> {
  const busy = () => new FlashlexError("held", "try-later");
  const lock = await holdFileLock(`${file}.lock`, { busy, what: "the smoke lock", removeOnRelease: true });
  try {
    return await holdFileLock(`${file}.lock`, { busy, what: "the smoke lock" }).then(
      () => true,
      (err: Error) => (err.message === "held" ? false : String(err)),
    );
  } finally {
    await lock.release();
  }
}
void lockTwice().then((heldTwice) => console.log(JSON.stringify({ ...result, heldTwice })));
