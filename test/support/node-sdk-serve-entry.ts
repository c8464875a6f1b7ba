/**
 * Under Node (the armv7 bundle, WebAssembly SQLite): an SDK collect whose answer is slow lets go
 * of the database; a serve starts meanwhile (here: its store and control socket, in this
 * process) and holds the file; the SDK's next call must reach the data through that serve.
 *
 *   node bundle.cjs CONFIG KEYS DATA   -> one JSON line: what getMessages and the collect gave
 */
import { join } from "node:path";
import { FlashlexSDK } from "../../src/sdk/index.ts";
import { silentLogger } from "../../src/shared/log.ts";
import { loadIdentity } from "../../src/thing/identity.ts";
import { databaseAccess } from "../../src/thing/local/in-process.ts";
import { closeControlSocket, listenControlSocket } from "../../src/thing/local/server.ts";
import { loadThingConfig } from "../../src/thing/settings.ts";
import { MessageStore } from "../../src/thing/store/message-store.ts";

// a CommonJS bundle: no top-level await
async function main(): Promise<void> {
  const [configPath, keys, data] = process.argv.slice(2) as [string, string, string];
  const sdk = await FlashlexSDK.open({ config: configPath, keys, data });
  const collecting = sdk.collectMessage({ slow: true });
  const config = loadThingConfig({ config: configPath, keys, data });
  const store = await openOnceLetGo(join(data, "subscription.db"));
  const socket = await listenControlSocket(data, databaseAccess(config, loadIdentity(config), store, silentLogger), () => ({}), silentLogger);
  const seen: Record<string, unknown> = {};
  try {
    seen.messages = await sdk.getMessages({ state: "all" }).then(
      (messages) => ({ count: messages.length }),
      (err) => ({ error: (err as Error).message, kind: (err as { kind?: string }).kind }),
    );
    seen.collect = await collecting.then(
      (result) => ({ outcome: result.outcome, recorded: result.recordError === undefined }),
      (err) => ({ error: (err as Error).message }),
    );
  } finally {
    await closeControlSocket(socket, data);
    store.close();
    sdk.close();
  }
  console.log(JSON.stringify(seen));
}

/**
 * The store, opened as soon as the collect let go of it (after 1 s out): tried every 100 ms for
 * up to 4 s, not at a fixed moment, which a busy machine can reach before the collect let go.
 */
async function openOnceLetGo(file: string): Promise<MessageStore> {
  const deadline = Date.now() + 4_000;
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  for (;;) {
    try {
      return MessageStore.open(file);
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

void main();
