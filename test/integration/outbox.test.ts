/**
 * The egress outbox under the faults a device meets, with the compiled binary:
 *
 *   wrong clock       the real hub; the agent under libfaketime (LD_PRELOAD): a one-shot
 *                     `collect` 30 min ahead and a day behind, and a `serve` whose clock jumps
 *                     while it runs. Every message ends `sent`, stored once by the hub under its
 *                     own id, and the log says WARN once per episode, with the fix.
 *   bad rows          rows planted in the SQLite file that make delivery throw or cannot be sent,
 *                     odd ingress rows for `--exec`: serve keeps running, delivers the good rows,
 *                     marks the bad ones; `outbox list|retry|drop` with serve and without.
 *   offline queueing  `offlinePublishQueueing` 0, -1 and 2 against a receiver that is down, then up.
 *
 * libfaketime fakes CLOCK_REALTIME for the compiled Bun binary (it calls glibc's clock_gettime).
 * FAKETIME_DONT_FAKE_MONOTONIC=1 keeps the monotonic clock real, as a real clock step does: with
 * a faked monotonic clock a jump back stalls every timer in the process, which no real device sees.
 */

import { Database } from "bun:sqlite";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Background, binaryPath, type RunResult, run, start } from "../support/binary.ts";
import { fakeClock } from "../support/fake-clock.ts";
import { type HubFixture, makeHubFixture } from "../support/hub-fixture.ts";
import { freePort, type MosquittoBroker } from "../support/mosquitto.ts";
import { type Receiver, startReceiver } from "../support/receiver.ts";
import { tally } from "../support/tally.ts";
import { makeMessageDatabase, makeThingFixture, startBrokerFor, type ThingFixture } from "../support/thing-fixture.ts";
import { occurrences, waitUntil } from "../support/wait.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-outbox-test-"));
const background: Background[] = [];
process.once("exit", () => {
  for (const b of background) if (b.proc.exitCode === null) b.proc.kill("SIGKILL");
});

afterAll(async () => {
  for (const child of background.reverse()) await child.stop(5_000);
  rmSync(work, { recursive: true, force: true });
}, 30_000);

// A test that fails before its own stop leaves its serve holding the thing's MQTT session and
// database: stop what the test launched (not the hub of its describe), so the next test fails
// (or passes) for its own reason.
let launchedBeforeTest = 0;
beforeEach(() => {
  launchedBeforeTest = background.length;
});
afterEach(async () => {
  for (const child of background.slice(launchedBeforeTest)) await child.stop(5_000);
}, 30_000);

function launch(args: string[], env?: Record<string, string>): Background {
  const child = start(args, { env });
  background.push(child);
  return child;
}

const explain = (r: RunResult) => `exit ${r.code}\n${r.stdout}\n${r.stderr}`;

interface OutboxRow {
  messageId: string | null;
  state: "pending" | "sent" | "rejected";
  via: string;
  attempts: number;
  lastError: string | null;
  thingId: string | null;
  body?: string;
}

async function outboxList(flags: string[], state?: string): Promise<OutboxRow[]> {
  const result = await run(["outbox", "list", "--json", ...(state ? ["--state", state] : []), ...flags]);
  if (result.code !== 0) throw new Error(`outbox list: ${explain(result)}`);
  return result.stdout.trim()
    ? result.stdout
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line))
    : [];
}

/** The thing's message database file (the config names it; one .db file in the data directory). */
function databaseFile(dataDir: string): string {
  const file = readdirSync(dataDir).find((f) => f.endsWith(".db"));
  if (!file) throw new Error(`no database in ${dataDir}`);
  return join(dataDir, file);
}

/** Writes rows straight into the SQLite file, as another program (or a bug) would. */
function plant(dataDir: string, statements: [string, (string | number | null | Uint8Array)[]][]): void {
  const db = new Database(databaseFile(dataDir));
  try {
    db.exec("PRAGMA busy_timeout = 5000");
    for (const [sql, params] of statements) db.prepare(sql).run(...params);
  } finally {
    db.close();
  }
}

const PLANT_OUTBOX = "INSERT INTO outbox (message_id, body, via, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?)";

// =============================================================================================

describe("a wrong device clock: the real hub, the agent under libfaketime", () => {
  let hub: HubFixture;
  let thing: { id: string; name: string; flags: string[]; dataDir: string };

  beforeAll(async () => {
    binaryPath();
    hub = await makeHubFixture(work);
    const created = await hub.createThing("clock");
    thing = { ...created, dataDir: join(created.root, "data") };
    background.push(await hub.serve());
  }, 60_000);

  /** How often the hub stored each message id (operator API). */
  async function storedCounts(): Promise<Map<string, number>> {
    const response = await fetch(`http://127.0.0.1:${hub.apiPort}/dev/v1/things/${thing.id}/messages?messagetype=egress`, {
      headers: { Authorization: `Bearer ${hub.token}` },
      signal: AbortSignal.timeout(10_000),
    });
    expect(response.status).toBe(200);
    const counts = new Map<string, number>();
    for (const m of ((await response.json()) as { result: { flmessagespk: string }[] }).result)
      counts.set(m.flmessagespk, (counts.get(m.flmessagespk) ?? 0) + 1);
    return counts;
  }

  function expectStoredOnce(counts: Map<string, number>, ids: string[]): void {
    const missing = ids.filter((id) => !counts.has(id));
    const twice = ids.filter((id) => (counts.get(id) ?? 0) > 1);
    tally("lost", missing.length);
    tally("duplicates", twice.length);
    expect({ missing, twice }).toEqual({ missing: [], twice: [] });
  }

  test("collect (one shot) 30 min ahead and a day behind: delivered on its one attempt, one WARN with the fix", async () => {
    const ids: string[] = [];
    for (const offset of ["+30m", "-1d"]) {
      tally("faults");
      const result = await run(["collect", "--json", ...thing.flags], { input: JSON.stringify({ offset }), env: fakeClock({ offset }) });
      expect(result.code, explain(result)).toBe(0);
      const answer = JSON.parse(result.stdout);
      expect(answer).toMatchObject({ outcome: "sent", status: 200 });
      ids.push(answer.messageId);
      // one line says the clock is wrong, by how much, and how to fix it; nothing else warns
      expect(occurrences(result.stderr, /WARN +clock\.skewed/), result.stderr).toBe(1);
      expect(result.stderr).toContain("timedatectl set-ntp true");
      expect(result.stderr).toContain(offset === "+30m" ? "30 min ahead of the hub's" : "1 d behind the hub's");
      // the hub's RFC 6750 challenge says which time claim failed; the Date said by how much
      expect(result.stderr).toContain(offset === "+30m" ? 'refusal="token not yet valid"' : 'refusal="token expired"');
      expect(result.stderr).not.toMatch(/eyJ[\w-]+\.[\w-]+\./); // no token in the log
    }
    expect((await outboxList(thing.flags)).filter((r) => ids.includes(r.messageId!)).map((r) => r.state)).toStrictEqual(["sent", "sent"]);
    expectStoredOnce(await storedCounts(), ids);
  }, 30_000);

  test("collect --via mqtt (no Date of its own): the hub's time is read over HTTP first, so the message is stored, not dropped", async () => {
    const ids: string[] = [];
    // A day behind, though the hub's CA and broker certificate were issued minutes ago: they start
    // a week back, so TLS takes them (new-user pass 25, F13: "certificate is not yet valid").
    for (const offset of ["+30m", "-1d"]) {
      tally("faults");
      const result = await run(["collect", "--via", "mqtt", "--json", ...thing.flags], {
        input: JSON.stringify({ offset, via: "mqtt" }),
        env: fakeClock({ offset }),
      });
      expect(result.code, explain(result)).toBe(0);
      ids.push(JSON.parse(result.stdout).messageId);
      expect(occurrences(result.stderr, /WARN +clock\.skewed/), result.stderr).toBe(1);
    }
    // the hub acknowledges an MQTT envelope it refuses: only its record proves the delivery
    await waitUntil("both stored by the hub", async () => (await storedCounts()).has(ids[1]!) && (await storedCounts()).has(ids[0]!));
    expectStoredOnce(await storedCounts(), ids);
  }, 30_000);

  test("serve: queued messages go out a day behind, and through live jumps (+0, +30 min); one WARN per episode", async () => {
    // Messages queued before serve starts (what a thing offline with a wrong clock collects).
    const now = Date.now();
    const queued = Array.from({ length: 4 }, () => crypto.randomUUID());
    plant(
      thing.dataDir,
      queued.map((id, i) => [PLANT_OUTBOX, [id, JSON.stringify({ queued: i }), "http", now - 1000 + i, now - 1000]]),
    );
    const clockFile = join(work, "faketime");
    // libfaketime reads the file at every clock read: replace it whole, never let it see it empty
    const setClock = (offset: string) => (writeFileSync(`${clockFile}.new`, offset), renameSync(`${clockFile}.new`, clockFile));
    setClock("-1d");
    tally("faults");
    const serve = launch(["serve", ...thing.flags], fakeClock({ file: clockFile }));
    await serve.waitFor(/serve\.started/);
    // ingress too: the broker's certificate, issued minutes ago, is taken a day behind (F13)
    await serve.waitFor(/mqtt\.subscribed/);
    await waitUntil("the queued messages sent", async () => (await outboxList(thing.flags, "pending")).length === 0, 20_000, serve.output);

    const collected: string[] = [];
    const collect = async (label: string) => {
      const result = await run(["collect", "--json", ...thing.flags], { input: JSON.stringify({ label }) });
      expect(result.code, `${explain(result)}\n--- serve ---\n${serve.output()}`).toBe(0);
      collected.push(JSON.parse(result.stdout).messageId);
    };
    await collect("a day behind, 1");
    await collect("a day behind, 2");
    setClock("+0"); // NTP fixed it
    await collect("in step, 1");
    await serve.waitFor(/clock\.in_step/);
    await collect("in step, 2");
    setClock("+30m"); // and it jumps again
    tally("faults");
    await collect("30 min ahead, 1");
    await collect("30 min ahead, 2");
    expect(await serve.stop()).toBe(0);

    const log = serve.output();
    expect(occurrences(log, /WARN +clock\.skewed/), log).toBe(2);
    expect(occurrences(log, /INFO +clock\.in_step/), log).toBe(1);
    expect(occurrences(log, /egress\.rejected/), log).toBe(0);
    const states = await outboxList(thing.flags);
    const all = [...queued, ...collected];
    expect(states.filter((r) => all.includes(r.messageId!)).map((r) => r.state)).toStrictEqual(all.map(() => "sent"));
    expectStoredOnce(await storedCounts(), all);
  }, 60_000);

  test("bootstrap 2 h ahead corrects its tokens as collect and serve do: every check passes, the egress line says the clock is off, with the fix", async () => {
    tally("faults");
    const result = await run(["bootstrap", ...thing.flags], { env: fakeClock({ offset: "+2h" }), timeoutMs: 60_000 });
    expect(result.code, explain(result)).toBe(0);
    const egressLine = result.stdout.split("\n").find((line) => line.includes("egress through the collect API"));
    expect(egressLine).toMatch(
      /^\[PASS\] egress through the collect API: HTTP 200; WARN: the device clock is 2 h ahead of the hub's, so tokens were signed with the hub's time/,
    );
    expect(egressLine).toContain("timedatectl set-ntp true");
    expect(result.stdout).toContain("12 of 12 checks passed");
  }, 60_000);

  test("a revoked thing: collect 2 h ahead says what the 401 means without blaming the clock its token had corrected; bootstrap's fix says what a 401 means", async () => {
    const revoked = await hub.createThing("revoked-clock");
    await hub.flashlex(["hub", "thing", "revoke", revoked.name, "--dir", hub.dir]);
    tally("attacks");
    const collect = await run(["collect", "--json", ...revoked.flags], { input: '{"after":"revocation"}', env: fakeClock({ offset: "+2h" }) });
    expect(collect.code, explain(collect)).toBe(69);
    const error = JSON.parse(collect.stdout).error as string;
    expect(error).toStartWith(
      "the API answered 401 Unauthorized (the hub refused the thing's token, not for its time: the thing may be revoked, or unknown to the hub",
    );
    expect(error).not.toContain("clock is");
    // in step: nothing to rule the clock out with but the answer's Date, which does
    const inStep = await run(["collect", "--json", ...revoked.flags], { input: '{"after":"revocation"}' });
    expect(JSON.parse(inStep.stdout).error).toContain("not for its time: the thing may be revoked");
    const bootstrap = await run(["bootstrap", ...revoked.flags], { timeoutMs: 60_000 });
    expect(bootstrap.code).toBe(1);
    expect(bootstrap.stdout).toMatch(
      /\[FAIL\] egress through the collect API: \S+: the API answered 401 Unauthorized [^\n]*\n +fix: A 401 means the hub refused the thing's token: set the clock if it is off/,
    );
    expect(bootstrap.stdout).not.toMatch(/fix: Check flashlex\.app\.api\.endpoint and env in the config, that the hub's API is reachable/);
  }, 60_000);
});

// =============================================================================================

describe("bad rows and offline queueing: Mosquitto and a real receiver", () => {
  let fixture: ThingFixture;
  let broker: MosquittoBroker;
  let receiver: Receiver;

  beforeAll(async () => {
    binaryPath();
    const apiPort = await freePort();
    fixture = await makeThingFixture({ brokerPort: 0, apiUrl: `http://127.0.0.1:${apiPort}` });
    broker = await startBrokerFor(fixture);
    receiver = await startReceiver({ thingId: fixture.thingId, publicKeyPem: fixture.pki.thing.publicKeyPem, port: apiPort });
  }, 30_000);

  afterAll(async () => {
    await receiver?.stop();
    await broker?.stop();
  });

  const receivedIds = () => receiver.received.map((r) => r.messageId);

  test("outbox list reads and prints a page at a time, in the outbox's order (created, then id), every entry once", async () => {
    const dataDir = join(fixture.dir, "paged-outbox");
    makeMessageDatabase(dataDir);
    // 70 rejected entries, created ten to a millisecond: across pages of 32, the id orders those
    const planted = Array.from({ length: 70 }, (_, i) => [`b0000000-0000-4000-8000-${String(69 - i).padStart(12, "0")}`, 5_000 + Math.floor(i / 10)] as const);
    plant(
      dataDir,
      planted.map(([id, at]) => [
        "INSERT INTO outbox (message_id, body, via, state, created_at, next_attempt_at) VALUES (?, '{}', 'http', 'rejected', ?, ?)",
        [id, at, at],
      ]),
    );
    const expected = [...planted].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1)).map(([id]) => id);
    const flags = ["-c", fixture.configPath, "-k", fixture.keysDir, "-d", dataDir];
    expect((await outboxList(flags)).map((e) => e.messageId)).toStrictEqual(expected);
    expect((await outboxList(flags, "rejected")).length).toBe(70);
  });

  test("rows that cannot be delivered never stop serve: the good ones go, the bad ones are marked, the agent keeps running", async () => {
    const flags = fixture.flags;
    makeMessageDatabase(fixture.dataDir); // as serve makes it; outbox only reads one that is there
    expect((await outboxList(flags)).length).toBe(0);
    const now = Date.now();
    const good = { http1: crypto.randomUUID(), mqtt: crypto.randomUUID(), http2: crypto.randomUUID() };
    const bad = { mqttNotJson: crypto.randomUUID(), notUtf8: crypto.randomUUID(), badId: "bad\r\nid" };
    plant(fixture.dataDir, [
      [PLANT_OUTBOX, [good.http1, '{"good":1}', "http", now - 10, now - 10]],
      // delivering this one used to throw (JSON.parse of the body) and take serve down
      [PLANT_OUTBOX, [bad.mqttNotJson, "{this is not json", "mqtt", now - 9, now - 9]],
      [PLANT_OUTBOX, [bad.notUtf8, new Uint8Array([0xff, 0xfe, 0x7b]), "http", now - 8, now - 8]],
      [PLANT_OUTBOX, [null, '{"id":"null"}', "http", now - 7, now - 7]],
      [PLANT_OUTBOX, [bad.badId, '{"id":"not a header value"}', "http", now - 6, now - 6]],
      [PLANT_OUTBOX, [good.mqtt, '{"good":2}', "mqtt", now - 5, now - 5]],
      [PLANT_OUTBOX, [good.http2, '{"good":3}', "http", now - 4, now - 4]],
      // ingress rows with types no agent writes: a number payload, a blob topic
      ["INSERT INTO ingress_messages (topic, payload, qos, received_at) VALUES (?, ?, 1, ?)", [`ingress/${fixture.thingName}`, 42, now - 3]],
      ["INSERT INTO ingress_messages (topic, payload, qos, received_at) VALUES (?, ?, 1, ?)", [new TextEncoder().encode("t/blob"), '{"odd":"topic"}', now - 2]],
      // a NUL cannot travel in FLASHLEX_TOPIC: spawn throws, which used to take serve down
      ["INSERT INTO ingress_messages (topic, payload, qos, received_at) VALUES (?, ?, 1, ?)", ["t/nul\u0000byte", '{"nul":"topic"}', now - 2]],
      ["INSERT INTO ingress_messages (topic, payload, qos, received_at) VALUES (?, ?, 1, ?)", [`ingress/${fixture.thingName}`, '{"good":"ingress"}', now - 1]],
    ]);
    tally("faults", 7);
    const execOut = join(fixture.dir, "exec.out");
    const serve = launch(["serve", "--exec", `cat >> ${execOut}; echo >> ${execOut}`, ...flags]);
    await serve.waitFor(/mqtt\.subscribed/);
    const sent = await waitUntil(
      "the good rows sent",
      async () => {
        const rows = await outboxList(flags);
        return rows.filter((r) => r.state === "sent").length === 3 && rows.filter((r) => r.state === "rejected").length === 4 && rows;
      },
      20_000,
      serve.output,
    );
    const byId = new Map(sent.map((r) => [r.messageId, r]));
    for (const id of Object.values(good)) expect(byId.get(id)?.state).toBe("sent");
    expect(byId.get(bad.mqttNotJson)).toMatchObject({ state: "rejected", lastError: expect.stringContaining("not JSON") });
    expect(byId.get(bad.notUtf8)).toMatchObject({ state: "rejected", lastError: "the stored body is not UTF-8 text" });
    expect(byId.get(bad.badId)).toMatchObject({ state: "rejected", lastError: expect.stringContaining("message id") });
    expect(byId.get(null)).toMatchObject({ state: "rejected" });
    expect(
      receivedIds()
        .filter((id) => id === good.http1 || id === good.http2)
        .sort(),
    ).toEqual([good.http1, good.http2].sort());

    // --exec handed every ingress row to the command, the odd ones too, and acknowledged them
    await waitUntil(
      "--exec ran for the three ingress rows",
      () => existsSync(execOut) && readFileSync(execOut, "utf8").trim().split("\n").length === 3,
      10_000,
      serve.output,
    );
    expect(readFileSync(execOut, "utf8").trim().split("\n")).toEqual(["42", '{"odd":"topic"}', '{"good":"ingress"}']);
    const listed = await run(["messages", "list", "--all", "--json", ...flags]);
    expect(listed.code, explain(listed)).toBe(0);
    const rows = listed.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(rows.map((r) => [r.topic, r.ackedAt !== null])).toStrictEqual([
      [`ingress/${fixture.thingName}`, true],
      ["t/blob", true],
      ["t/nul\u0000byte", false], // held back, tried again later, visible to the owner
      [`ingress/${fixture.thingName}`, true],
    ]);

    // a refusal of the content is rejected (65) and kept; a 404 is not: it stays queued (69)
    receiver.answerStatus = 413;
    tally("faults");
    const tooLarge = await run(["collect", "--json", ...flags], { input: '{"big":true}' });
    expect(tooLarge.code, explain(tooLarge)).toBe(65);
    expect(tooLarge.stderr).toContain("outbox list --state rejected");
    const tooLargeId = JSON.parse(tooLarge.stdout).messageId;
    receiver.answerStatus = 404;
    tally("faults");
    const notFound = await run(["collect", "--json", ...flags], { input: '{"route":"missing"}' });
    expect(notFound.code, explain(notFound)).toBe(69);
    const notFoundId = JSON.parse(notFound.stdout).messageId;
    receiver.answerStatus = undefined;
    // the owner raised the limit: retry the rejected one through the running serve
    const retried = await run(["outbox", "retry", tooLargeId, ...flags]);
    expect(retried.code, explain(retried)).toBe(0);
    expect(retried.stdout).toContain(`retried: ${tooLargeId}`);
    await waitUntil("the retried and the 404 messages sent", () => [tooLargeId, notFoundId].every((id) => receivedIds().includes(id)), 15_000, serve.output);
    // unknown ids and sent ones: exit 65, the others still done
    const mixed = await run(["outbox", "retry", good.http1, "no-such-id", ...flags]);
    expect(mixed.code).toBe(65);
    expect(mixed.stderr).toContain("already sent");
    expect(mixed.stderr).toContain("no message with id no-such-id");
    const dropped = await run(["outbox", "drop", bad.mqttNotJson, "no-such-id", ...flags]);
    expect(dropped.code, explain(dropped)).toBe(65);
    expect(dropped.stdout).toContain(`dropped: ${bad.mqttNotJson}`);
    expect((await run(["outbox", "list", "--state", "stale", ...flags])).code).toBe(64);

    expect(serve.proc.exitCode).toBeNull();
    const log = serve.output();
    expect(occurrences(log, /ERROR egress\.unsendable/), log).toBe(4);
    expect(occurrences(log, /ERROR exec\.message_failed/), log).toBeGreaterThanOrEqual(1);
    expect(log).not.toMatch(/\n\s+at |exit_code|uncaught|unhandled/i);
    expect(await serve.stop()).toBe(0);

    // without serve: the same commands on the file
    const rejected = await outboxList(flags, "rejected");
    expect(rejected.map((r) => r.messageId).sort()).toStrictEqual([null, bad.badId, bad.notUtf8].sort());
    const again = await run(["outbox", "retry", bad.notUtf8, ...flags]);
    expect(again.code, explain(again)).toBe(0);
    expect((await outboxList(flags, "pending")).map((r) => r.messageId)).toStrictEqual([bad.notUtf8]);
    // an id given twice is dropped once, not "no message" the second time
    expect((await run(["outbox", "drop", bad.notUtf8, bad.badId, bad.badId, ...flags])).code).toBe(0);
    expect((await outboxList(flags)).filter((r) => r.state !== "sent").map((r) => r.messageId)).toStrictEqual([null]);

    const expected = [good.http1, good.http2, tooLargeId, notFoundId];
    const got = receivedIds();
    tally("lost", expected.filter((id) => !got.includes(id)).length);
    tally("duplicates", got.length - new Set(got).size);
    expect(got.length).toBe(new Set(got).size);
  }, 60_000);

  test("what an earlier identity of the data directory queued (a revoked thing re-created and unzipped over it) is set aside at serve's start, not sent as the new thing (new-user pass 24, F4)", async () => {
    const dataDir = join(fixture.dir, "re-created");
    makeMessageDatabase(dataDir);
    const now = Date.now();
    const ids = { old: crypto.randomUUID(), mine: crypto.randomUUID() };
    const revokedThingId = "0b1d0000-0000-4000-8000-00000000dead";
    const plantAs = "INSERT INTO outbox (message_id, body, via, thing_id, created_at, next_attempt_at) VALUES (?, ?, 'http', ?, ?, ?)";
    plant(dataDir, [
      [plantAs, [ids.old, '{"queued":"by the revoked thing"}', revokedThingId, now - 2, now - 2]],
      [plantAs, [ids.mine, '{"queued":"by this thing"}', fixture.thingId, now - 1, now - 1]],
    ]);
    const flags = ["-c", fixture.configPath, "-k", fixture.keysDir, "-d", dataDir];
    const serve = launch(["serve", ...flags]);
    try {
      // its answer recorded, not only received: a stop between the two leaves the row pending
      await serve.waitFor(new RegExp(`egress\\.sent messageId=${ids.mine}`), 15_000);
      await serve.waitFor(/egress\.other_thing_set_aside/);
    } finally {
      expect(await serve.stop()).toBe(0);
    }
    expect(receivedIds()).not.toContain(ids.old);
    const log = serve.output();
    expect(log).toMatch(new RegExp(`WARN +egress\\.other_thing_set_aside .*count=1 .*queuedBy=${revokedThingId}`));
    // the version is the first thing looked at after an update or a rollback (new-user pass 25, F9)
    expect(log).toMatch(/INFO +serve\.started version="\d+\.\d+\.\d+\S* \(\w+\)" thing=/);
    const rows = new Map((await outboxList(flags)).map((r) => [r.messageId, r]));
    expect(rows.get(ids.mine)).toMatchObject({ state: "sent", thingId: fixture.thingId });
    expect(rows.get(ids.old)).toMatchObject({ state: "rejected", thingId: revokedThingId });
    expect(rows.get(ids.old)!.lastError).toBe(
      `queued by thing ${revokedThingId}, an identity this data directory had before; it is not sent as thing ${fixture.thingId} unless you ask (flashlex outbox retry ${ids.old} sends it as this thing, flashlex outbox drop ${ids.old} removes it)`,
    );
    // the owner asks for it: it goes as this thing (verify pass 30, F2: a retry said "retried" and serve set it aside again)
    const retried = await run(["outbox", "retry", ids.old, ...flags]);
    expect(retried.code, explain(retried)).toBe(0);
    expect((await outboxList(flags)).find((r) => r.messageId === ids.old)).toMatchObject({ state: "pending", thingId: fixture.thingId });
    // collect queues under the config's thing id
    const collected = await run(["collect", "--json", ...flags], { input: '{"after":"re-creation"}' });
    expect(collected.code, explain(collected)).toBe(0);
    expect(rows.size).toBe(2);
    expect((await outboxList(flags)).find((r) => r.messageId === JSON.parse(collected.stdout).messageId)).toMatchObject({
      state: "sent",
      thingId: fixture.thingId,
    });
  }, 40_000);

  test("config.yml edited under a running serve: serve says so at once, and a collect through it that fails says the edit counts after a restart; undone, it says so (new-user pass 24, F3)", async () => {
    const home = join(fixture.dir, "edited");
    mkdirSync(home);
    const configPath = join(home, "config.yml");
    const asRead = readFileSync(fixture.configPath, "utf8");
    writeFileSync(configPath, asRead);
    const flags = ["-c", configPath, "-k", fixture.keysDir, "-d", join(home, "data")];
    const serve = launch(["serve", ...flags]);
    try {
      await serve.waitFor(/mqtt\.subscribed/);
      writeFileSync(configPath, `${asRead}# the operator's edit\n`);
      await serve.waitFor(/serve\.config_changed/);
      receiver.answerStatus = 404;
      const failed = await run(["collect", ...flags], { input: '{"while":"edited"}' });
      expect(failed.code, explain(failed)).toBe(69);
      expect(failed.stderr).toContain(
        `; ${configPath} was changed after serve read it: restart serve for the change to count (sudo systemctl restart flashlex`,
      );
      // said on the line, not kept in the row's error (verify pass 30, F5)
      const failedId = failed.stderr.match(/message (\S+) is queued/)![1];
      expect((await outboxList(flags)).find((r) => r.messageId === failedId)!.lastError).not.toContain("was changed");
      writeFileSync(configPath, asRead);
      await serve.waitFor(/serve\.config_as_read/);
      const again = await run(["collect", ...flags], { input: '{"while":"as read"}' });
      expect(again.code, explain(again)).toBe(69);
      expect(again.stderr).not.toContain("was changed after serve read it");
    } finally {
      receiver.answerStatus = undefined;
      expect(await serve.stop()).toBe(0);
    }
    expect(serve.output()).toMatch(new RegExp(`WARN +serve\\.config_changed config=${configPath} fix="restart serve for the change to count`));
  }, 40_000);

  test("offlinePublishQueueing 0, -1 and 2 with the receiver down, then up", async () => {
    await receiver.stop();
    const received = new Set(receivedIds());
    // one data directory per value, the same thing identity
    const variants = await Promise.all(
      [0, -1, 2].map(async (limit) => {
        const made = await makeThingFixture({ brokerPort: broker.port, apiUrl: `http://127.0.0.1:${receiver.port}`, pki: fixture.pki });
        made.editConfig((doc) => (doc.flashlex.thing.mqtt.offlinePublishQueueing = limit));
        // the identity's files are in the first fixture's keys directory
        return { limit, f: { flags: ["-c", made.configPath, "-k", fixture.keysDir, "-d", made.dataDir] } };
      }),
    );
    const codes: Record<number, number[]> = {};
    for (const { limit, f } of variants) {
      codes[limit] = [];
      for (let i = 0; i < (limit === 0 ? 1 : 3); i++) {
        tally("faults");
        const result = await run(["collect", ...f.flags], { input: JSON.stringify({ limit, i }) });
        codes[limit]!.push(result.code);
        if (result.code === 75) expect(result.stderr).toContain("nothing was queued");
      }
    }
    expect(codes).toEqual({ 0: [75], [-1]: [69, 69, 69], 2: [69, 69, 75] });
    const pending = Object.fromEntries(
      await Promise.all(variants.map(async ({ limit, f }) => [limit, (await outboxList(f.flags, "pending")).map((r) => r.messageId!)] as const)),
    );
    expect(Object.fromEntries(Object.entries(pending).map(([k, v]) => [k, v.length]))).toStrictEqual({ 0: 0, [-1]: 3, 2: 2 });
    expect(await outboxList(variants[0]!.f.flags)).toEqual([]); // 0 keeps nothing at all

    // the receiver is back: serve delivers what waited, and 0 delivers at once
    receiver = await startReceiver({ thingId: fixture.thingId, publicKeyPem: fixture.pki.thing.publicKeyPem, port: receiver.port });
    const direct = await run(["collect", "--json", ...variants[0]!.f.flags], { input: '{"limit":0,"up":true}' });
    expect(direct.code, explain(direct)).toBe(0);
    const waited = [...pending[-1]!, ...pending[2]!];
    for (const { f } of variants.slice(1)) {
      const serve = launch(["serve", ...f.flags]);
      await serve.waitFor(/serve\.started/);
      await waitUntil("the queued messages delivered", async () => (await outboxList(f.flags, "pending")).length === 0, 20_000, serve.output);
      expect(await serve.stop()).toBe(0);
    }
    const got = receiver.received.map((r) => r.messageId!).filter((id) => !received.has(id));
    tally("lost", waited.filter((id) => !got.includes(id)).length);
    tally("duplicates", got.length - new Set(got).size);
    expect(got.sort()).toEqual([...waited, JSON.parse(direct.stdout).messageId].sort());
    // nothing that was refused with 75 ever arrived
    expect(receiver.received.filter((r) => (r.body as { i?: number }).i === 2 && (r.body as { limit?: number }).limit === 2)).toEqual([]);
  }, 60_000);

  test("offlinePublishQueueing 0 and a receiver that reads the request and hangs up: 75 says the message may or may not have arrived, not that nothing was sent", async () => {
    // a receiver that takes the whole request, then closes without an answer (it may have stored it)
    const heard: string[] = [];
    const cutOff = createServer((socket) => socket.on("data", (chunk) => (heard.push(chunk.toString()), socket.destroy())));
    await new Promise<void>((resolve) => cutOff.listen(0, "127.0.0.1", resolve));
    let plainHeard = 0;
    const plain = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => (plainHeard++, new Response("plain")) });
    try {
      const made = await makeThingFixture({ brokerPort: broker.port, apiUrl: `http://127.0.0.1:${(cutOff.address() as AddressInfo).port}`, pki: fixture.pki });
      made.editConfig((doc) => (doc.flashlex.thing.mqtt.offlinePublishQueueing = 0));
      const flags = ["-c", made.configPath, "-k", fixture.keysDir, "-d", made.dataDir];
      tally("faults");
      const result = await run(["collect", ...flags], { input: '{"cut":true}' });
      expect(result.code, explain(result)).toBe(75);
      expect(heard.join("")).toContain('{"cut":true}');
      const line = result.stderr.trim().split("\n").at(-1)!;
      expect(line).toMatch(
        /no answer \(127\.0\.0\.1:\d+: The socket connection was closed unexpectedly \(ECONNRESET\)\): message [0-9a-f-]{36} may or may not have arrived/,
      );
      expect(line).toContain("offlinePublishQueueing is 0 (no offline queueing), so it was not queued; sending it again may store it twice");
      expect(line).not.toContain("verbose: true");
      expect(await outboxList(flags)).toEqual([]);
      // an https endpoint on a plain HTTP server: the TLS handshake fails (EPROTO) before a byte
      // of the request leaves, so nothing can have arrived
      made.editConfig((doc) => (doc.flashlex.app.api.endpoint = `https://127.0.0.1:${plain.port}`));
      const handshake = await run(["collect", ...flags], { input: '{"tls":true}' });
      expect(handshake.code, explain(handshake)).toBe(75);
      expect(handshake.stderr).toMatch(
        /not delivered \(.*EPROTO.*\) and offlinePublishQueueing is 0 \(no offline queueing\): nothing was queued, try again later/,
      );
      expect(plainHeard).toBe(0);
    } finally {
      cutOff.close();
      plain.stop(true);
    }
  }, 30_000);

  test("an answer holding terminal escapes is printed with them escaped, JSON or not, kept or refused (attack round 24, F2: ESC[2J cleared the user's terminal)", async () => {
    const ESCAPES = "\u001b[2J\u001b[31mred\u009b1m\u202eevil";
    const answers = [new Response(ESCAPES, { headers: { "Content-Type": "text/plain" } }), Response.json({ note: ESCAPES }, { status: 400 })];
    const hostile = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => answers.shift() ?? new Response("no more", { status: 500 }) });
    try {
      const made = await makeThingFixture({ brokerPort: broker.port, apiUrl: `http://127.0.0.1:${hostile.port}`, pki: fixture.pki });
      const flags = ["-c", made.configPath, "-k", fixture.keysDir, "-d", made.dataDir];
      const kept = await run(["collect", ...flags], { input: '{"shown":1}' });
      const refused = await run(["collect", ...flags], { input: '{"shown":2}' });
      tally("badInputs", 2);
      expect([kept.code, refused.code], explain(refused)).toEqual([0, 65]);
      for (const result of [kept, refused]) {
        for (const raw of ["\u001b", "\u009b", "\u202e"]) expect(result.stdout).not.toContain(raw);
        expect(result.stdout).toContain("\\u001b[2J\\u001b[31mred\\u009b1m\\u202eevil");
      }
    } finally {
      hostile.stop(true);
    }
  }, 30_000);
});

// =============================================================================================

describe("a hub restored from an older backup: outbox resend (new-user pass 27, F3)", () => {
  test("the messages sent since the backup go again, through the database and through serve, and the hub stores each once; bad uses are 64", async () => {
    const dir = join(work, "restore");
    mkdirSync(dir);
    const hub = await makeHubFixture(dir);
    const thing = await hub.createThing("restored");
    let hubServe = await hub.serve();
    background.push(hubServe);
    const collectOne = async (label: string) => {
      const result = await run(["collect", "--json", ...thing.flags], { input: JSON.stringify({ label }) });
      expect(result.code, explain(result)).toBe(0);
      return JSON.parse(result.stdout).messageId as string;
    };
    const before = await collectOne("before the backup");
    const backedUp = JSON.parse((await hub.flashlex(["hub", "backup", "--json", "--dir", hub.dir, join(dir, "backup")])).stdout);
    // the time to resend from, which the backup says (new-user pass 29, F1)
    expect(Date.parse(backedUp.takenAt)).toBeLessThanOrEqual(Date.now());
    expect(Date.parse(backedUp.takenAt)).toBeGreaterThan(Date.now() - 60_000);
    const after = [await collectOne("after the backup 1"), await collectOne("after the backup 2")];
    const backupTime = Math.floor(Date.now() / 1000) - 60; // a minute earlier: `before` goes again too, and is stored once

    // the restore docs/hub.md gives: the hub stopped, the backup put in place of the home
    expect(await hubServe.stop()).toBe(0);
    renameSync(hub.dir, `${hub.dir}.lost`);
    renameSync(join(dir, "backup"), hub.dir);
    hubServe = await hub.serve();
    background.push(hubServe);
    expect((await hub.egress(thing.id)).map((m) => m.flmessagespk)).toEqual([before]);

    // serve stopped: on the database, delivered by the next serve
    const resent = await run(["outbox", "resend", "--since", String(backupTime), ...thing.flags]);
    expect(resent.code, explain(resent)).toBe(0);
    expect(resent.stderr).toContain("serve is not running here: they go once `flashlex serve` runs on this data directory");
    expect(resent.stdout).toContain(`resending 3 messages sent since ${new Date(backupTime * 1000).toISOString().replace(".000Z", "Z")}: `);
    expect((await outboxList(thing.flags, "pending")).map((r) => r.messageId).sort()).toEqual([before, ...after].sort());
    const serve = launch(["serve", ...thing.flags]);
    const storedOnce = async () => {
      const sent = async () => (await outboxList(thing.flags, "pending")).length === 0;
      await waitUntil("serve sends the resent messages", sent, 20_000, () => serve.output());
      const stored = (await hub.egress(thing.id)).map((m) => m.flmessagespk);
      expect(stored.sort()).toEqual([before, ...after].sort());
    };
    await storedOnce();

    // through the running serve, which delivers at once; again stored once
    const throughServe = await run(["outbox", "resend", "--since", new Date(backupTime * 1000).toISOString(), ...thing.flags]);
    expect(throughServe.code, explain(throughServe)).toBe(0);
    expect(throughServe.stdout).toContain("resending 3 messages");
    await serve.waitFor(/outbox\.resent .*count=3/, 10_000);
    await storedOnce();

    // nothing sent since then: 0, and why on stderr
    expect(await serve.stop()).toBe(0);
    await Bun.sleep(1_100); // the last send is in an earlier second than the one asked about
    const none = await run(["outbox", "resend", "--since", String(Math.floor(Date.now() / 1000)), ...thing.flags]);
    expect(none.code, explain(none)).toBe(0);
    expect(none.stderr).toContain("outbox resend: no message sent since");
    const ahead = await run(["outbox", "resend", "--since", String(Math.floor(Date.now() / 1000) + 3600), ...thing.flags]);
    expect(ahead.code, explain(ahead)).toBe(0);
    expect(ahead.stderr).toContain("is in the future (times without a zone are UTC)");

    for (const [args, said] of [
      [["outbox", "resend"], "outbox resend needs --since TIME"],
      [["outbox", "resend", before, "--since", "0"], "outbox resend takes --since TIME only, not message ids"],
      [["outbox", "resend", "--since", "1969-12-31"], "is before 1970"],
      [["outbox", "resnd", "--since", "0"], "did you mean flashlex outbox resend?"],
      [["outbox", "resend", "--since", "yesterday"], "--since must be Unix seconds or an ISO date"],
      [["outbox", "list", "--since", "0"], "--since is an option of `outbox resend`, not of `outbox list`"],
      [["outbox", "resend", "--since", "0", "--state", "sent"], "--state is an option of `outbox list`; `outbox resend` takes --since TIME only"],
    ] as const) {
      const refused = await run([...args, ...thing.flags]);
      expect(refused.code, explain(refused)).toBe(64);
      expect(refused.stderr).toContain(said);
    }
  }, 90_000);
});
