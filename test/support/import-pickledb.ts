import { MessageStore } from "../../src/thing/store/message-store.ts";
import { importPickleDb } from "../../src/thing/store/pickledb-import.ts";

/** `bun import-pickledb.ts DB JSON`: opens the store and imports the old file, as each thing command's open does; prints the result. */
const store = MessageStore.open(process.argv[2]!);
try {
  process.stdout.write(`${JSON.stringify(importPickleDb(store, process.argv[3]!, "ingress/t") ?? null)}\n`);
} finally {
  store.close();
}
