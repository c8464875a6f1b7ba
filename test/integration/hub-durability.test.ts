/**
 * Ingress survives the hub. The compiled binary, real mutual TLS on loopback, the embedded
 * broker: `hub send` to a thing that is offline, kill -9 the hub, start it again, start the
 * thing's serve: every message arrives, in order, and the hub's record says delivered. And what
 * a thing already acknowledged is not sent again after the next kill -9.
 *
 * The tests run in order and share one hub home, one thing, and the hub and serve the first leaves running.
 */

import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Background, binaryPath, start } from "../support/binary.ts";
import { type HubFixture, type HubThing, makeHubFixture } from "../support/hub-fixture.ts";
import { tally } from "../support/tally.ts";
import { occurrences, waitUntil } from "../support/wait.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-hub-durability-"));
const running: Background[] = [];
let fixture: HubFixture;
let thing: HubThing;
/** the hub and the thing's serve, carried from the first test into the second */
let hub: Background;
let serve: Background;

/** A child killed by a signal has exitCode null too. */
const alive = (child: Background) => child.proc.exitCode === null && child.proc.signalCode === null;

// A crashed run must not leave a hub or an agent behind.
process.once("exit", () => {
  for (const b of running) if (alive(b)) b.proc.kill("SIGKILL");
});

function launch(args: string[]): Background {
  const child = start(args);
  running.push(child);
  return child;
}

const flashlex = (args: string[], input?: string) => fixture.flashlex(args, input);

async function startHub(): Promise<Background> {
  const child = launch(["hub", "serve", "--dir", fixture.dir]);
  await child.waitFor(/hub\.started/);
  return child;
}

async function killHub(child: Background): Promise<void> {
  child.proc.kill("SIGKILL");
  await child.proc.exited;
}

/** What the thing's application sees: its ingress payloads, oldest first. */
async function thingInbox(): Promise<string[]> {
  const listed = (await flashlex(["messages", "list", "--json", "--all", ...thing.flags])).stdout.trim();
  // the guide's `message`, without the hub's id the wire payload carries
  return listed
    ? listed
        .split("\n")
        .map((line) => JSON.parse(line))
        .filter((r) => r.topic === `ingress/${thing.name}`)
        .map((r) => JSON.stringify(JSON.parse(r.payload).message))
    : [];
}

type IngressEntry = { payload: unknown; flmessagespk: string; delivery: string; deliveredAt: string | null };

/** The hub's ingress record for the thing, through the operator API. */
const hubIngress = () => fixture.ingress(thing.id) as Promise<IngressEntry[]>;

beforeAll(async () => {
  binaryPath();
  fixture = await makeHubFixture(work);
  thing = await fixture.createThing("steadfast");
}, 60_000);

afterAll(async () => {
  await Promise.all(running.filter(alive).map((child) => child.stop(3_000)));
  rmSync(work, { recursive: true, force: true });
});

describe("ingress and the hub's kill -9 (embedded broker)", () => {
  test("messages sent while the thing is offline arrive, in order, after the hub is killed and restarted", async () => {
    hub = await startHub();
    // The thing's persistent session exists in the broker, as it would for any installed thing.
    serve = launch(["serve", ...thing.flags]);
    await serve.waitFor(/mqtt\.subscribed/);
    expect(await serve.stop()).toBe(0);

    const sent = [];
    for (const text of ["first while offline", "second while offline"]) {
      const answer = await flashlex(["hub", "send", thing.name, "--dir", fixture.dir], JSON.stringify({ text }));
      expect(answer.stdout).toContain("the thing is not connected now");
      sent.push(JSON.stringify({ text }));
    }
    expect((await hubIngress()).map((m) => m.delivery)).toStrictEqual(["pending", "pending"]);
    await killHub(hub);

    hub = await startHub(); // aedes' memory, and the queue it held for the thing, are gone
    serve = launch(["serve", ...thing.flags]);
    await waitUntil(
      "both messages in the thing's database",
      async () => (await thingInbox()).length >= 2,
      20_000,
      () => serve.output() + hub.output(),
    );
    expect(await thingInbox()).toEqual(sent);
    await waitUntil(
      "the hub's record says delivered",
      async () => (await hubIngress()).every((m) => m.delivery === "delivered"),
      10_000,
      () => hub.output(),
    );
    const record = await hubIngress();
    expect(record.map((m) => m.payload)).toStrictEqual(sent.map((s) => ({ message: JSON.parse(s) })));
    for (const m of record) expect(m.deliveredAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(hub.output()).toMatch(/hub\.ingress_replayed [^\n]*count=2/);
    // leave both running for the next test
  }, 90_000);

  test("a message the thing acknowledged is not sent again after the next kill -9", async () => {
    const before = (await thingInbox()).length;

    const answer = await flashlex(["hub", "send", thing.name, "--dir", fixture.dir, "--json"], '{"text":"while online"}');
    expect(JSON.parse(answer.stdout).result.online).toBe(true);
    await waitUntil(
      "the hub's record says delivered",
      async () => (await hubIngress()).every((m) => m.delivery === "delivered"),
      10_000,
      () => hub.output(),
    );
    expect(await thingInbox()).toHaveLength(before + 1);
    await killHub(hub);

    const subscriptions = occurrences(serve.output(), /mqtt\.subscribed/);
    hub = await startHub();
    // serve reconnects on its own (backoff from 1 s) and subscribes again to the fresh broker
    await waitUntil(
      "serve subscribed again",
      async () => occurrences(serve.output(), /mqtt\.subscribed/) > subscriptions,
      20_000,
      () => serve.output(),
    );
    await Bun.sleep(1_000);
    expect(await thingInbox()).toHaveLength(before + 1);
    expect(hub.output()).not.toContain("hub.ingress_replayed");
    expect((await hubIngress()).map((m) => m.delivery)).toStrictEqual(["delivered", "delivered", "delivered"]);
    expect(await serve.stop()).toBe(0);
    expect(await hub.stop()).toBe(0);
  }, 90_000);

  test("a hub killed between the thing's PUBACK and its own record sends the message again: the thing stores it once", async () => {
    const before = await thingInbox();
    // The state that kill leaves: the thing has the message, the hub's record still says pending.
    const db = new Database(join(fixture.dir, "hub.db"));
    db.run("UPDATE messages SET delivery = 'pending', delivered_at = NULL WHERE messagetype = 'ingress'");
    db.close();
    hub = await startHub();
    serve = launch(["serve", ...thing.flags]);
    await waitUntil(
      "the hub's record says delivered",
      async () => (await hubIngress()).every((m) => m.delivery === "delivered"),
      20_000,
      () => hub.output(),
    );
    expect(hub.output()).toMatch(/hub\.ingress_replayed [^\n]*count=3/);
    await waitUntil(
      "serve recognised the three",
      async () => occurrences(serve.output(), /ingress\.redelivery_skipped/) >= 3,
      10_000,
      () => serve.output(),
    );
    const after = await thingInbox();
    tally("duplicates", after.length - before.length);
    expect(after).toEqual(before);
    expect(await serve.stop()).toBe(0);
    expect(await hub.stop()).toBe(0);
  }, 90_000);

  test("a fan-out (`hub send A B`, one POST /publish) reaches a connected thing at once and an offline one after a kill -9", async () => {
    const other = await fixture.createThing("faraway");
    hub = await startHub();
    const otherServe = launch(["serve", ...other.flags]);
    await otherServe.waitFor(/mqtt\.subscribed/); // its persistent session, then offline
    expect(await otherServe.stop()).toBe(0);
    serve = launch(["serve", ...thing.flags]);
    await serve.waitFor(/mqtt\.subscribed/);
    const before = (await thingInbox()).length;

    const answer = await flashlex(["hub", "send", thing.name, "faraway", "--dir", fixture.dir], '{"text":"to both"}');
    expect(answer.code, answer.stderr).toBe(0);
    const lines = answer.stdout.trim().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(new RegExp(`^sent to ingress/${thing.name} as [0-9a-f-]{36}$`));
    expect(lines[1]).toContain(`sent to ingress/${other.name} as `);
    expect(lines[1]).toContain("the thing is not connected now");
    await waitUntil(
      "the connected thing has it",
      async () => (await thingInbox()).length === before + 1,
      10_000,
      () => serve.output(),
    );
    expect((await fixture.ingress(other.id)).map((m) => (m as IngressEntry).delivery)).toStrictEqual(["pending"]);
    await killHub(hub);

    hub = await startHub();
    const later = launch(["serve", ...other.flags]);
    await waitUntil(
      "the offline thing's copy delivered after the restart",
      async () => (await fixture.ingress(other.id)).every((m) => (m as IngressEntry).delivery === "delivered"),
      20_000,
      () => later.output() + hub.output(),
    );
    const theirs = (await flashlex(["messages", "list", "--json", "--all", ...other.flags])).stdout;
    expect(theirs).toContain('\\"to both\\"');
    expect(await later.stop()).toBe(0);
    expect(await serve.stop()).toBe(0);
    expect(await hub.stop()).toBe(0);
  }, 90_000);
});
