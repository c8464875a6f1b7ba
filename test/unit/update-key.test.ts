/**
 * The hub's update key files against the key its database recorded (src/hub/updates/update-key.ts),
 * on real files and a real SQLite hub store: what is refused (78, naming the file), what is
 * written, and two makers at once. The compiled binary's side is
 * test/integration/hub-update-key.test.ts.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExitCode, exitCodeOf } from "../../src/cli/exit-codes.ts";
import { hubPaths } from "../../src/hub/home/paths.ts";
import type { HubStore } from "../../src/hub/store/hub-store.ts";
import { openHubStore } from "../../src/hub/store/open-store.ts";
import { makeUpdateKey, updateKey } from "../../src/hub/updates/update-key.ts";

let dir: string;
let other: string;
let n = 0;
let home: { paths: ReturnType<typeof hubPaths>; database: { kind: "sqlite"; file: string; display: string } };
let store: HubStore;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "flashlex-update-key-"));
  other = join(dir, "other");
  mkdirSync(other);
  makeUpdateKey(other);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

beforeEach(async () => {
  await store?.close();
  const homeDir = join(dir, `home-${++n}`);
  mkdirSync(homeDir);
  const file = join(homeDir, "hub.db");
  home = { paths: hubPaths(homeDir), database: { kind: "sqlite", file, display: file } };
  store = await openHubStore(file, { create: true });
});

const pub = (d: string) => readFileSync(join(d, "update-key.pub"), "utf8").trim();
const refusal = async (promise: Promise<unknown>) => {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(Error);
  return { code: exitCodeOf(err), message: (err as Error).message };
};

describe("updateKey", () => {
  test("no files, but another process makes and records the pair while this one asks the database: its pair, not 'missing, restore from your backup'", async () => {
    const racing: Pick<HubStore, "updateKey" | "adoptUpdateKey"> = {
      updateKey: async () => {
        makeUpdateKey(home.paths.dir); // the other process, between this one's look at the files and its read of the record
        await store.adoptUpdateKey(pub(home.paths.dir), Date.now());
        return store.updateKey();
      },
      adoptUpdateKey: (key, at) => store.adoptUpdateKey(key, at),
    };
    expect(await updateKey(home, racing)).toBe(pub(home.paths.dir));
  });

  test("a home with no key and nothing recorded gets a pair, recorded; two makers at once leave one pair (the second hears EEXIST and reads the first's)", async () => {
    makeUpdateKey(home.paths.dir);
    const first = pub(home.paths.dir);
    makeUpdateKey(home.paths.dir);
    expect(pub(home.paths.dir)).toBe(first);
    expect(await updateKey(home, store)).toBe(first);
    expect(await store.updateKey()).toBe(first);
  });

  test("update-key.pem alone: its public half, written to update-key.pub only once it matches the record", async () => {
    makeUpdateKey(home.paths.dir);
    const recorded = await updateKey(home, store);
    rmSync(join(home.paths.dir, "update-key.pub"));
    expect(await updateKey(home, store)).toBe(recorded);
    expect(pub(home.paths.dir)).toBe(recorded);

    // another hub's private key alone: refused naming it, and no public half written for it
    rmSync(join(home.paths.dir, "update-key.pub"));
    copyFileSync(join(other, "update-key.pem"), join(home.paths.dir, "update-key.pem"));
    const swapped = await refusal(updateKey(home, store));
    expect(swapped.code).toBe(ExitCode.CONFIG);
    expect(swapped.message).toStartWith(
      `${join(home.paths.dir, "update-key.pem")}: ${pub(other)} is not the update key this hub's things pin (${recorded}, recorded in`,
    );
    expect(existsSync(join(home.paths.dir, "update-key.pub"))).toBe(false);
  });

  test("update-key.pem beside update-key.pub: one the hub cannot read or parse is the release step's business (the hub never signs); another key's is 78 naming both; a damaged one alone is 78 naming it", async () => {
    makeUpdateKey(home.paths.dir);
    const recorded = await updateKey(home, store);
    const pem = join(home.paths.dir, "update-key.pem");
    const kept = readFileSync(pem);
    writeFileSync(pem, "junk\n");
    expect(await updateKey(home, store)).toBe(recorded);
    rmSync(pem);
    mkdirSync(pem); // not a regular file: never read
    expect(await updateKey(home, store)).toBe(recorded);
    rmSync(pem, { recursive: true });

    writeFileSync(pem, "junk\n");
    rmSync(join(home.paths.dir, "update-key.pub"));
    const damaged = await refusal(updateKey(home, store));
    expect(damaged.code).toBe(ExitCode.CONFIG);
    expect(damaged.message).toStartWith(`${pem}: not an Ed25519 private key (`);
    expect(damaged.message).toEndWith("restore it from your backup of the hub home");
    writeFileSync(join(home.paths.dir, "update-key.pub"), `${recorded}\n`);

    copyFileSync(join(other, "update-key.pem"), pem);
    const mismatch = await refusal(updateKey(home, store));
    expect(mismatch).toEqual({
      code: ExitCode.CONFIG,
      message: `${pem}: not the private half of update-key.pub (${recorded}): releases signed with it would be refused; restore both from your backup of the hub home`,
    });
    writeFileSync(pem, kept);
    expect(await updateKey(home, store)).toBe(recorded);
  });
});
