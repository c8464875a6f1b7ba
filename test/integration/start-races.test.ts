/**
 * Start-up races, through the compiled binary against Debian's Mosquitto:
 *
 *   two serves at once   20 trials, each on a fresh data directory: two `serve` processes
 *                        spawned in the same tick; exactly one runs (connected, subscribed), the
 *                        other exits 75 with one line, never 70 and never after a migration
 *   fresh database       10 trials: serve, two collects and two `messages list` started at once
 *                        on a data directory with no database yet; every one succeeds, the
 *                        schema is migrated once, nothing is lost
 *   kill -9              a serve killed with SIGKILL leaves no lock behind: the next one starts
 */

import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { THING_MIGRATIONS } from "../../src/thing/store/message-store.ts";
import { type Background, binaryPath, type RunResult, run, start } from "../support/binary.ts";
import type { MosquittoBroker } from "../support/mosquitto.ts";
import { type Receiver, startReceiver } from "../support/receiver.ts";
import { tally } from "../support/tally.ts";
import { makeThingFixture, startBrokerFor, type ThingFixture } from "../support/thing-fixture.ts";
import { waitUntil } from "../support/wait.ts";

let thing: ThingFixture;
let broker: MosquittoBroker;
let receiver: Receiver;

const flagsFor = (dataDir: string) => ["-c", thing.configPath, "-k", thing.keysDir, "-d", dataDir];

/** serve with its output captured; several calls in one tick start together. */
const spawnServe = (dataDir: string): Background => start(["serve", ...flagsFor(dataDir)]);

beforeAll(async () => {
  binaryPath();
  thing = await makeThingFixture({ brokerPort: 1, apiUrl: "http://127.0.0.1:1" });
  receiver = await startReceiver({ thingId: thing.thingId, publicKeyPem: thing.pki.thing.publicKeyPem });
  thing.editConfig((doc) => (doc.flashlex.app.api.endpoint = receiver.url));
  broker = await startBrokerFor(thing);
}, 60_000);

afterAll(async () => {
  await broker?.stop();
  await receiver?.stop();
  if (thing) rmSync(thing.dir, { recursive: true, force: true });
});

describe("two serves started at the same instant on one data directory", () => {
  test("20 trials on fresh data directories: exactly one runs, the other exits 75 with one line, never 70", async () => {
    const outcomes: string[] = [];
    for (let trial = 0; trial < 20; trial++) {
      const dataDir = join(thing.dir, `race-${trial}`);
      const pair = [spawnServe(dataDir), spawnServe(dataDir)];
      try {
        await waitUntil(`trial ${trial}: one serve exits`, () => pair.some((c) => c.proc.exitCode !== null), 15_000);
        const loser = pair.find((c) => c.proc.exitCode !== null)!;
        const winner = pair.find((c) => c !== loser)!;
        const loserCode = await loser.proc.exited;
        if (loserCode === 70) tally("exit70");
        expect({ trial, code: loserCode, stderr: loser.output().trim() }).toEqual({
          trial,
          code: 75,
          stderr: `flashlex: ${dataDir}: another flashlex serve is running for this data directory (or a collect --via mqtt is publishing as the thing)`,
        });
        // the winner is the one serve: it connects and subscribes, and keeps running
        await waitUntil(`trial ${trial}: the other serve subscribes`, () => /mqtt\.subscribed/.test(winner.output()) || winner.proc.exitCode !== null, 15_000);
        expect(winner.proc.exitCode).toBeNull();
        expect(await winner.stop()).toBe(0);
        tally("faults");
        outcomes.push(`${pair.indexOf(winner)}`);
      } finally {
        for (const child of pair) await child.stop();
      }
    }
    expect(outcomes).toHaveLength(20);
  }, 120_000);

  test("a serve killed with SIGKILL leaves no lock: the next serve on that directory starts at once", async () => {
    const dataDir = join(thing.dir, "killed");
    const first = spawnServe(dataDir);
    await waitUntil("the first serve subscribes", () => /mqtt\.subscribed/.test(first.output()), 15_000);
    first.proc.kill("SIGKILL");
    await first.proc.exited;
    const second = spawnServe(dataDir);
    try {
      await waitUntil("the second serve subscribes", () => /mqtt\.subscribed/.test(second.output()) || second.proc.exitCode !== null, 15_000);
      expect(second.proc.exitCode).toBeNull();
    } finally {
      expect(await second.stop()).toBe(0);
    }
    tally("faults");
  }, 60_000);
});

describe("processes opening a fresh database at once", () => {
  test("10 trials of serve + 2 collect + 2 messages list started together: none fails, the schema is migrated once, nothing is lost", async () => {
    for (let trial = 0; trial < 10; trial++) {
      const dataDir = join(thing.dir, `fresh-${trial}`);
      // the directory without a database (messages only reads a data directory that exists);
      // all of them race to make the database and its schema
      mkdirSync(dataDir);
      const flags = flagsFor(dataDir);
      const serve = spawnServe(dataDir);
      let results: RunResult[];
      let running: number | null;
      try {
        results = await Promise.all([
          run(["collect", ...flags, "--json"], { input: JSON.stringify({ trial, n: 1 }) }),
          run(["messages", "list", ...flags]),
          run(["collect", ...flags, "--json"], { input: JSON.stringify({ trial, n: 2 }) }),
          run(["messages", "list", "--all", ...flags]),
        ]);
        await waitUntil(`trial ${trial}: serve subscribes`, () => /mqtt\.subscribed/.test(serve.output()) || serve.proc.exitCode !== null, 15_000);
        running = serve.proc.exitCode;
      } finally {
        const code = await serve.stop();
        expect({ trial, code, output: code ? serve.output() : "" }).toEqual({ trial, code: 0, output: "" });
      }
      expect({ trial, serve: running, errors: serve.output().match(/ERROR.*/g) ?? [] }).toEqual({ trial, serve: null, errors: [] });
      tally("faults", 5);
      for (const result of results) {
        expect({ trial, code: result.code, stderr: result.stderr }).toEqual({ trial, code: 0, stderr: "" });
      }
      const db = new Database(join(dataDir, "subscription.db"), { readonly: true });
      try {
        expect(db.query("PRAGMA user_version").get()).toEqual({ user_version: THING_MIGRATIONS.length });
        const sent = db.query("SELECT state FROM outbox").all() as { state: string }[];
        expect(sent).toEqual([{ state: "sent" }, { state: "sent" }]);
      } finally {
        db.close();
      }
      const got = receiver.received.filter((r) => (r.body as { trial?: number }).trial === trial).map((r) => (r.body as { n: number }).n);
      expect(got.sort()).toEqual([1, 2]);
      tally("lost", 2 - got.length);
    }
  }, 120_000);
});
