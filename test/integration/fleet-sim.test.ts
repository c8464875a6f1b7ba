/**
 * The fleet simulator of `bun run bench:fleet` (bench/fleet/), small: 20 things enrolled through
 * the hub's enrolment API with CSRs from one key, held by one simulator process against the
 * compiled `hub serve` and its embedded broker, one ingress round and one egress round, every
 * message counted by id. Checks the counts, never a timing: the bench's figures are its own.
 * Everything runs in a temporary directory (not bench/.cache); the hub and the simulator stop
 * whatever happens.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { drive } from "../../bench/fleet/drive.ts";
import { type RunningSetup, SETUPS, startSetup } from "../../bench/fleet/setups.ts";
import { fleetCache } from "../../bench/fleet/things.ts";
import { binaryPath } from "../support/binary.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-fleet-sim-"));
let setup: RunningSetup | undefined;

afterAll(async () => {
  await setup?.stop();
  rmSync(work, { recursive: true, force: true });
}, 30_000);

test("20 simulated things: all held, every ingress and egress message arrives once, counted by id", async () => {
  binaryPath(); // builds the binary when the test runs alone
  const fleet = await fleetCache(join(work, "cache"), 20, () => {});
  expect(fleet.things).toHaveLength(20);
  expect(new Set(fleet.things.map((t) => t.cert)).size).toBe(20); // one certificate each, one key
  setup = await startSetup(SETUPS.find((s) => s.id === "embedded")!, fleet, join(work, "embedded"));
  const figures = await drive(setup, fleet, join(work, "embedded"), { rounds: 1, perThing: 2, procs: 2, resilience: false, progress: () => {} });
  expect(figures.held).toBe(20);
  expect(figures.connectFailed).toBe(0);
  expect(figures.steady.ingress).toEqual({ accepted: 20, arrived: 20, lost: 0, duplicates: 0 });
  expect(figures.steady.egress).toMatchObject({ accepted: 40, arrived: 40, lost: 0, unacknowledged: 0, storedTwice: 0 });
  expect(figures.ingressRates).toHaveLength(1);
  expect(figures.resilience).toBeUndefined();
}, 120_000);
