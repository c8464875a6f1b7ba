import { afterAll, describe, expect, test } from "bun:test";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "../../src/shared/log.ts";
import { type DeliveryOutcome, MAX_RETRY_AFTER_MS, outcomeOf, PERMANENT_REFUSALS, retryAfterOf, retryDelayMs } from "../../src/thing/egress/delivery.ts";
import { bearerErrorDescription, describeOffset, HubClock, SKEW_THRESHOLD_MS, sendWithHubTime } from "../../src/thing/egress/hub-clock.ts";
import { OutboxDrainer, sendableEntry } from "../../src/thing/egress/outbox.ts";
import { ThingTokens, TOKEN_REUSE_SECONDS } from "../../src/thing/egress/tokens.ts";
import type { ThingIdentity } from "../../src/thing/identity.ts";
import { checkOutboxIds } from "../../src/thing/local/arguments.ts";
import { MessageStore, type OutboxEntry } from "../../src/thing/store/message-store.ts";

const dir = mkdtempSync(join(tmpdir(), "flashlex-egress-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function captureLog() {
  const lines: string[] = [];
  return { lines, log: createLogger({ level: "debug", write: (line) => lines.push(line), journald: false }) };
}

const httpDate = (ms: number) => new Date(ms).toUTCString();

describe("clock-skew correction", () => {
  test("a Date far from the local clock corrects the signing time; one WARN per episode, INFO when it ends", () => {
    let local = Date.parse("2026-01-10T12:00:00Z");
    const { lines, log } = captureLog();
    const clock = new HubClock(log, () => local);
    expect(clock.nowSeconds()).toBe(local / 1000);

    // in step: nothing changes, nothing logged
    expect(clock.observe(httpDate(local), local)).toBe(false);
    expect(clock.offsetMs).toBe(0);

    // the device runs 30 min ahead: the hub is 30 min behind it
    local += 30 * 60_000;
    const hub = local - 30 * 60_000;
    expect(clock.observe(httpDate(hub), local, "token not yet valid")).toBe(true);
    expect(Math.abs(clock.nowSeconds() - Math.floor(hub / 1000))).toBeLessThanOrEqual(1);
    // further answers of the same episode: no new WARN, no "changed"
    for (let i = 0; i < 5; i++) expect(clock.observe(httpDate(hub + i * 1000), local + i * 1000)).toBe(false);
    const warns = lines.filter((l) => l.includes("WARN  clock.skewed"));
    expect(warns).toHaveLength(1);
    expect(warns[0]).toMatch(/offsetSeconds=-(1799|1800) /);
    expect(warns[0]).toContain("30 min ahead of the hub's");
    expect(warns[0]).toContain("timedatectl set-ntp true");
    expect(warns[0]).toContain('refusal="token not yet valid"');

    // fixed (NTP stepped it back): in step again, once
    local = hub + 10_000;
    expect(clock.observe(httpDate(local), local)).toBe(true);
    expect(clock.offsetMs).toBe(0);
    expect(lines.filter((l) => l.includes("INFO  clock.in_step"))).toHaveLength(1);

    // a second episode, a day behind: a second WARN
    local -= 86_400_000;
    expect(clock.observe(httpDate(local + 86_400_000), local)).toBe(true);
    expect(lines.filter((l) => l.includes("WARN  clock.skewed"))).toHaveLength(2);
    expect(lines.at(-1)).toContain("1 d behind the hub's");
  });

  test("between half the threshold and the threshold nothing flaps", () => {
    const local = 1_800_000_000_000;
    const { lines, log } = captureLog();
    const clock = new HubClock(log, () => local);
    clock.observe(httpDate(local + SKEW_THRESHOLD_MS * 0.8), local);
    expect(clock.offsetMs).toBe(0);
    clock.observe(httpDate(local + SKEW_THRESHOLD_MS * 3), local);
    expect(clock.offsetMs).toBeGreaterThan(SKEW_THRESHOLD_MS);
    clock.observe(httpDate(local + SKEW_THRESHOLD_MS * 0.8), local); // still off by more than half: stays corrected
    expect(clock.offsetMs).toBeGreaterThan(SKEW_THRESHOLD_MS / 2);
    expect(lines.filter((l) => l.includes("clock."))).toHaveLength(1);
  });

  test("a 401 to a token signed with a correction the clock no longer makes is sent again, also when another request moved the clock meanwhile", async () => {
    // serve on a clock a day behind, fixed by NTP: its update check (or any concurrent request)
    // sees the hub's Date first and ends the episode while a collect's token, signed a day
    // ahead of the now right clock, is on its way. Its 401 changes the clock no further, yet its
    // token was signed with the old correction: it is sent again, not queued (a CI run queued it).
    let local = Date.parse("2026-12-02T17:53:53Z");
    const clock = new HubClock(createLogger({ write: () => {} }), () => local);
    clock.observe(httpDate(local + 86_400_000), local);
    expect(clock.offsetMs).toBeGreaterThan(86_000_000);
    local += 86_400_000; // NTP steps the clock to the hub's
    const answer = (status: number) => ({ status, headers: { date: httpDate(local) } });
    const signedWith: number[] = [];
    const answered = await sendWithHubTime(clock, async () => {
      signedWith.push(clock.offsetMs);
      if (signedWith.length > 1) return answer(200);
      clock.observeAnswer(answer(200)); // the concurrent request's answer arrives first
      return answer(401);
    });
    expect(signedWith).toEqual([signedWith[0]!, 0]);
    expect(answered.status).toBe(200);

    // a 401 for a token signed with the correction the clock still makes is not sent again
    let sends = 0;
    expect((await sendWithHubTime(clock, async () => (sends++, answer(401)))).status).toBe(401);
    expect(sends).toBe(1);
  });

  test("a missing or unparsable Date changes nothing", () => {
    const clock = new HubClock(createLogger({ write: () => {} }), () => 1_800_000_000_000);
    for (const date of [undefined, "", "yesterday", "Mon, 99 Foo 2026 99:99:99 GMT"]) expect(clock.observe(date, 1_800_000_000_000)).toBe(false);
    expect(clock.offsetMs).toBe(0);
  });

  test("offsets read as people say them; the RFC 6750 error description is taken from WWW-Authenticate", () => {
    expect(describeOffset(30 * 60_000)).toBe("30 min ahead of");
    expect(describeOffset(-86_400_000)).toBe("1 d behind");
    expect(describeOffset(-(2 * 3600 + 5 * 60 + 7) * 1000)).toBe("2 h 5 min behind");
    expect(describeOffset(400)).toBe("0 s ahead of");
    expect(describeOffset(-(86_400 - 0.5) * 1000)).toBe("1 d behind");
    expect(describeOffset((3600 - 20) * 1000)).toBe("1 h ahead of");
    expect(describeOffset((1800 - 1.5) * 1000)).toBe("30 min ahead of");
    expect(describeOffset((1800 + 1.5) * 1000)).toBe("30 min ahead of");
    expect(describeOffset((300 - 2) * 1000)).toBe("4 min 58 s ahead of");
    expect(describeOffset((7200 - 20) * 1000)).toBe("2 h ahead of");
    expect(bearerErrorDescription('Bearer error="invalid_token", error_description="token expired"')).toBe("token expired");
    expect(bearerErrorDescription('Bearer realm="x", error_description="say \\"hi\\""')).toBe('say "hi"');
    expect(bearerErrorDescription("Bearer")).toBeUndefined();
    expect(bearerErrorDescription(undefined)).toBeUndefined();
  });
});

describe("what an answer means for the message", () => {
  test("only a permanent refusal of the content rejects; every other answer keeps it pending", () => {
    const kinds: Record<number, DeliveryOutcome["kind"]> = {};
    for (const status of [200, 201, 204, 301, 400, 401, 403, 404, 405, 408, 409, 410, 413, 415, 422, 429, 500, 502, 503, 504]) {
      kinds[status] = outcomeOf({ status, statusText: "", body: "" }).kind;
    }
    expect(kinds).toEqual({
      200: "sent",
      201: "sent",
      204: "sent",
      301: "retry",
      400: "rejected",
      401: "retry",
      403: "retry",
      404: "retry",
      405: "retry",
      408: "retry",
      409: "rejected",
      410: "retry",
      413: "rejected",
      415: "rejected",
      422: "rejected",
      429: "retry",
      500: "retry",
      502: "retry",
      503: "retry",
      504: "retry",
    });
    expect([...PERMANENT_REFUSALS].sort()).toEqual([400, 409, 413, 415, 422]);
    // the hub's reason from its envelope, for outbox list (new-user pass 23, F11)
    const envelope = JSON.stringify({ status: "ERROR", code: 413, messages: [{ key: "error", value: "the body is larger than 1000 bytes" }], result: null });
    expect(outcomeOf({ status: 413, statusText: "Payload Too Large", body: envelope })).toMatchObject({
      kind: "rejected",
      error: "the API answered 413 Payload Too Large (the body is larger than 1000 bytes)",
    });
    expect(outcomeOf({ status: 413, statusText: "Payload Too Large", body: "<html>" })).toMatchObject({ error: "the API answered 413 Payload Too Large" });
    expect(outcomeOf({ status: 401, statusText: "Unauthorized", body: "" }, "token expired")).toMatchObject({
      kind: "retry",
      error: "the API answered 401 Unauthorized (token expired)",
    });
  });

  test("backoff doubles from 2 s to a 5 min cap; a count another program wrote as junk counts as 0", () => {
    expect([0, 1, 2, 7, 8, 50].map(retryDelayMs)).toStrictEqual([2000, 4000, 8000, 256_000, 300_000, 300_000]);
    for (const junk of ["x", null, undefined, NaN, -3, Infinity]) expect(retryDelayMs(junk)).toBe(2000);
  });

  test("a row that cannot be sent at all is named, with why", () => {
    const row = (over: Partial<Record<keyof OutboxEntry, unknown>>) =>
      ({ message_id: "m-1", body: "{}", via: "http", state: "pending", attempts: 0, ...over }) as OutboxEntry;
    expect(sendableEntry(row({}), "thing-1")).toEqual({ entry: row({}) });
    expect(sendableEntry(row({ body: new TextEncoder().encode('{"a":1}') }), "thing-1")).toEqual({ entry: row({ body: '{"a":1}' }) });
    // queued before schema 5 (no thing id), or by this thing
    expect(sendableEntry(row({ thing_id: null }), "thing-1")).toEqual({ entry: row({ thing_id: null }) });
    expect(sendableEntry(row({ thing_id: "thing-1" }), "thing-1")).toEqual({ entry: row({ thing_id: "thing-1" }) });
    const problems = [
      row({ body: "{not json" }),
      row({ body: new Uint8Array([0xff, 0xfe]) }),
      row({ body: null }),
      row({ body: 42 }),
      row({ message_id: null }),
      row({ message_id: "bad\nid" }),
      row({ message_id: "" }),
      row({ thing_id: "thing-0" }),
      row({ thing_id: "x\u001b[2J" }),
      row({ thing_id: "a\u007fb\u0085c\u202ed" }),
    ].map((r) => ("problem" in sendableEntry(r, "thing-1") ? (sendableEntry(r, "thing-1") as { problem: string }).problem : "sendable"));
    expect(
      problems.every((p) => p !== "sendable"),
      problems.join("\n"),
    ).toBe(true);
    expect(problems[0]).toContain("not JSON");
    expect(problems[5]).toContain("message id");
    expect(problems[7]).toBe(
      "queued by thing thing-0, an identity this data directory had before; it is not sent as thing thing-1 unless you ask (flashlex outbox retry m-1 sends it as this thing, flashlex outbox drop m-1 removes it)",
    );
    expect(problems[8]).toContain('queued by thing "x\\u001b[2J"');
    // DEL, C1 and bidi controls escaped too (verify pass 30, F10)
    expect(problems[9]).toContain('queued by thing "a\\u007fb\\u0085c\\u202ed"');
  });
});

describe("the drainer isolates each row", () => {
  test("a row whose delivery throws, a row that is not JSON and a row whose outcome cannot be written (tried once a pass) do not stop the good rows", async () => {
    const store = MessageStore.open(join(dir, "drain.db"));
    const { lines, log } = captureLog();
    try {
      const now = Date.now();
      store.enqueue({ messageId: "good-1", body: '{"n":1}', via: "http", thingId: "thing-1", now: now - 5 });
      store.enqueue({ messageId: "throws", body: '{"n":2}', via: "http", thingId: "thing-1", now: now - 4 });
      store.enqueue({ messageId: "not-json", body: "{oops", via: "mqtt", thingId: "thing-1", now: now - 3 });
      store.enqueue({ messageId: "good-2", body: '{"n":4}', via: "mqtt", thingId: "thing-1", now: now - 2 });
      store.enqueue({ messageId: "unwritable", body: '{"n":5}', via: "http", thingId: "thing-1", now: now - 1 });
      // a real SQLite refusal to record that one row's outcome
      store.db.exec("CREATE TRIGGER refuse BEFORE UPDATE ON outbox WHEN old.message_id = 'unwritable' BEGIN SELECT RAISE(ABORT, 'disk says no'); END");
      const delivered: string[] = [];
      const deliver = async (entry: OutboxEntry): Promise<DeliveryOutcome> => {
        if (entry.message_id === "throws") throw new Error("error:1E08010C:DECODER routines::unsupported");
        delivered.push(entry.message_id);
        return { kind: "sent", status: 200, body: "{}" };
      };
      const drainer = new OutboxDrainer({ store, thingId: "thing-1", log, ratePerSecond: 1000, pollMs: 20, deliverers: { http: deliver, mqtt: deliver } });
      drainer.start();
      for (let i = 0; i < 200 && (store.countPending() > 2 || !lines.some((l) => l.includes("outbox.record_failed"))); i++) await Bun.sleep(10);
      await drainer.stop();
      store.db.exec("DROP TRIGGER refuse");
      const states = Object.fromEntries(store.listOutbox().map((e) => [e.message_id, [e.state, e.attempts, e.last_error?.slice(0, 40) ?? null]]));
      // the unwritable row stays due, so each pass delivers it again (the receiver stores it once by id)
      expect(delivered.filter((id) => id !== "unwritable")).toEqual(["good-1", "good-2"]);
      const unwritableTries = delivered.filter((id) => id === "unwritable").length;
      expect(unwritableTries).toBeGreaterThanOrEqual(1);
      expect(lines.filter((l) => l.includes("ERROR outbox.record_failed") && l.includes("disk says no"))).toHaveLength(unwritableTries);
      expect(states).toEqual({
        "good-1": ["sent", 1, null],
        throws: ["pending", 1, "delivery failed: error:1E08010C:DECODER "],
        "not-json": ["rejected", 1, "the stored body is not JSON (JSON Parse "],
        "good-2": ["sent", 1, null],
        unwritable: ["pending", 0, null],
      });
      expect(store.getOutbox("throws")!.next_attempt_at).toBeGreaterThan(Date.now());
      expect(lines.filter((l) => l.includes("ERROR egress.delivery_failed"))).toHaveLength(1);
      expect(lines.filter((l) => l.includes("ERROR egress.unsendable"))).toHaveLength(1);
    } finally {
      store.close();
    }
  });

  test("rows another thing id queued (the identity the data directory had before a revoked thing was re-created) are set aside at the start in one WARN, and one queued later row by row; rows of no thing id (before schema 5) go (new-user pass 24, F4)", async () => {
    const store = MessageStore.open(join(dir, "identities.db"));
    const { lines, log } = captureLog();
    try {
      const now = Date.now();
      const rows = [
        ["old-1", "http", "revoked-thing"],
        ["old-2", "mqtt", "revoked-thing"],
        ["legacy", "http", null], // as a binary before schema 5 queued it
        ["mine", "http", "thing-1"],
      ] as const;
      for (const [i, [id, via, thingId]] of rows.entries()) {
        store.db.run("INSERT INTO outbox (message_id, body, via, thing_id, created_at, next_attempt_at) VALUES (?, '{}', ?, ?, ?, ?)", [
          id,
          via,
          thingId,
          now - 9 + i,
          now - 9 + i,
        ]);
      }
      const delivered: string[] = [];
      const deliver = async (entry: OutboxEntry): Promise<DeliveryOutcome> => (delivered.push(entry.message_id), { kind: "sent", status: 200, body: "{}" });
      const drainer = new OutboxDrainer({ store, thingId: "thing-1", log, ratePerSecond: 1000, pollMs: 20, deliverers: { http: deliver, mqtt: deliver } });
      drainer.start();
      for (let i = 0; i < 200 && store.countPending() > 0; i++) await Bun.sleep(10);
      store.enqueue({ messageId: "old-3", body: '{"n":5}', via: "http", thingId: "revoked-thing", now: Date.now() });
      drainer.wake();
      for (let i = 0; i < 200 && store.countPending() > 0; i++) await Bun.sleep(10);
      await drainer.stop();
      expect(delivered).toEqual(["legacy", "mine"]);
      const states = Object.fromEntries(store.listOutbox().map((e) => [e.message_id, e.state]));
      expect(states).toEqual({ "old-1": "rejected", "old-2": "rejected", legacy: "sent", mine: "sent", "old-3": "rejected" });
      expect(store.getOutbox("old-1")!.last_error).toBe(
        "queued by thing revoked-thing, an identity this data directory had before; it is not sent as thing thing-1 unless you ask (flashlex outbox retry old-1 sends it as this thing, flashlex outbox drop old-1 removes it)",
      );
      const setAside = lines.filter((l) => l.includes("egress.other_thing_set_aside"));
      expect(setAside).toHaveLength(1);
      expect(setAside[0]).toContain("WARN");
      expect(setAside[0]).toContain("count=2");
      expect(setAside[0]).toContain("queuedBy=revoked-thing");
      expect(lines.filter((l) => l.includes("ERROR egress.unsendable") && l.includes("old-3"))).toHaveLength(1);
    } finally {
      store.close();
    }
  });

  test("a large backlog of an earlier identity is set aside a page of ids at a time, all of it, in one WARN naming at most 5 ids (verify pass 30, F1: loaded whole, 200,000 rows took 735 MB)", async () => {
    const store = MessageStore.open(join(dir, "backlog.db"));
    const { lines, log } = captureLog();
    try {
      store.db.transaction(() => {
        for (let i = 0; i < 1201; i++) store.enqueue({ messageId: `old-${i}`, body: "{}", via: "http", thingId: `revoked-${i % 7}`, now: 1000 + i });
      });
      const drainer = new OutboxDrainer({ store, thingId: "thing-1", log, ratePerSecond: 1000, pollMs: 20, deliverers: {} });
      drainer.start();
      await drainer.stop();
      expect(store.countPending()).toBe(0);
      expect(store.countRejected()).toBe(1201);
      const warned = lines.filter((l) => l.includes("egress.other_thing_set_aside"));
      expect(warned).toHaveLength(1);
      expect(warned[0]).toContain('count=1201 queuedBy="revoked-0,revoked-1,revoked-2,revoked-3,revoked-4 and 2 more"');
    } finally {
      store.close();
    }
  });
});

describe("a receiver back", () => {
  test("a reconnected session makes MQTT egress waiting for its retry time due at once; HTTP rows keep theirs", async () => {
    const store = MessageStore.open(join(dir, "back.db"));
    const { lines, log } = captureLog();
    try {
      const now = Date.now();
      store.enqueue({ messageId: "m-1", body: '{"n":1}', via: "mqtt", thingId: "thing-1", now: now - 2 });
      store.enqueue({ messageId: "m-2", body: '{"n":2}', via: "mqtt", thingId: "thing-1", now: now - 1 });
      store.enqueue({ messageId: "h-1", body: '{"n":3}', via: "http", thingId: "thing-1", now: now - 1 });
      // all three failed once while the broker was away: their retry is 30 s ahead
      for (const id of ["m-1", "m-2", "h-1"]) store.markRetry(id, "not connected", now + 30_000);
      const delivered: string[] = [];
      const deliver = async (entry: OutboxEntry): Promise<DeliveryOutcome> => {
        delivered.push(entry.message_id);
        return { kind: "sent", status: 200, body: "{}" };
      };
      const drainer = new OutboxDrainer({ store, thingId: "thing-1", log, ratePerSecond: 1000, pollMs: 20, deliverers: { http: deliver, mqtt: deliver } });
      drainer.start();
      await Bun.sleep(100);
      expect(delivered).toEqual([]); // nothing is due yet
      drainer.receiverBack("mqtt");
      for (let i = 0; i < 200 && delivered.length < 2; i++) await Bun.sleep(10);
      await Bun.sleep(50);
      await drainer.stop();
      expect(delivered).toEqual(["m-1", "m-2"]);
      expect(store.getOutbox("h-1")!.state).toBe("pending");
      expect(store.getOutbox("m-2")!.attempts).toBe(2); // the failed attempt is kept
      expect(lines.some((l) => l.includes("outbox.receiver_back") && l.includes("due=2"))).toBe(true);
    } finally {
      store.close();
    }
  });

  test("the MQTT session back probes the resting HTTP backlog with its oldest row: gone, the rest follows; refused, one row tried and the backlog rests on (it waited out up to 5 min of backoff though the hub was back: new-user pass 23, F9)", async () => {
    for (const hubUp of [true, false]) {
      const store = MessageStore.open(join(dir, `probe-${hubUp}.db`));
      const { log } = captureLog();
      try {
        const now = Date.now();
        for (const [i, id] of ["h-1", "h-2", "h-3"].entries())
          store.enqueue({ messageId: id, body: `{"n":${i}}`, via: "http", thingId: "thing-1", now: now - 3 + i });
        // each failed while the hub was away: their own retries minutes ahead
        for (const id of ["h-1", "h-2", "h-3"]) store.markRetry(id, "the API answered 503", now + 300_000);
        const tried: string[] = [];
        const deliver = async (entry: OutboxEntry): Promise<DeliveryOutcome> => {
          tried.push(entry.message_id);
          return hubUp ? { kind: "sent", status: 200, body: "{}" } : { kind: "retry", status: 503, error: "the API answered 503" };
        };
        const drainer = new OutboxDrainer({ store, thingId: "thing-1", log, ratePerSecond: 1000, pollMs: 20, deliverers: { http: deliver } });
        drainer.start();
        await Bun.sleep(100);
        expect(tried).toEqual([]); // resting: nothing due
        drainer.probe("http");
        for (let i = 0; i < 200 && tried.length < (hubUp ? 3 : 1); i++) await Bun.sleep(10);
        await Bun.sleep(150);
        await drainer.stop();
        expect({ hubUp, tried }).toEqual({ hubUp, tried: hubUp ? ["h-1", "h-2", "h-3"] : ["h-1"] });
        expect(store.getOutbox("h-3")!.state).toBe(hubUp ? "sent" : "pending");
      } finally {
        store.close();
      }
    }
  });

  test("a receiver back after its rest is tried with its oldest row, and the backlog goes oldest first (the oldest, its own retry further off, reached the hub last: new-user pass 24, F2)", async () => {
    const store = MessageStore.open(join(dir, "oldest-first.db"));
    const { log } = captureLog();
    try {
      const now = Date.now();
      for (const [i, id] of ["seq-1", "seq-2", "seq-3"].entries())
        store.enqueue({ messageId: id, body: `{"seq":${i + 1}}`, via: "http", thingId: "thing-1", now: now - 3 + i });
      let hubUp = false;
      const sent: string[] = [];
      const deliver = async (entry: OutboxEntry): Promise<DeliveryOutcome> => {
        if (!hubUp) return { kind: "retry", status: 503, error: "the API answered 503" };
        sent.push(entry.message_id);
        return { kind: "sent", status: 200, body: "{}" };
      };
      const drainer = new OutboxDrainer({ store, thingId: "thing-1", log, ratePerSecond: 1000, pollMs: 20, deliverers: { http: deliver } });
      drainer.start();
      for (let i = 0; i < 200 && store.getOutbox("seq-1")!.attempts === 0; i++) await Bun.sleep(10);
      // seq-1 took the failure: its own retry is minutes away (it had failed more often), the others' due
      store.markRetry("seq-1", "the API answered 503", Date.now() + 300_000);
      hubUp = true;
      for (let i = 0; i < 400 && sent.length < 3; i++) await Bun.sleep(10); // the receiver rests 2 s
      await drainer.stop();
      expect(sent).toEqual(["seq-1", "seq-2", "seq-3"]);
    } finally {
      store.close();
    }
  });

  test("a receiver that fails rests as a whole (2 s, 4 s ... or its Retry-After): the backlog's other rows are not tried meanwhile; its next success makes the rest due", async () => {
    const store = MessageStore.open(join(dir, "back-http.db"));
    const { lines, log } = captureLog();
    try {
      const now = Date.now();
      for (const [i, id] of ["first", "later-1", "later-2"].entries())
        store.enqueue({ messageId: id, body: `{"n":${i}}`, via: "http", thingId: "thing-1", now: now - 3 + i });
      let hubUp = false;
      const tried: string[] = [];
      const delivered: string[] = [];
      const deliver = async (entry: OutboxEntry): Promise<DeliveryOutcome> => {
        tried.push(entry.message_id);
        if (!hubUp) return { kind: "retry", status: 503, error: "the API answered 503", retryAfterMs: 60_000 };
        delivered.push(entry.message_id);
        return { kind: "sent", status: 200, body: "{}" };
      };
      const drainer = new OutboxDrainer({ store, thingId: "thing-1", log, ratePerSecond: 1000, pollMs: 20, deliverers: { http: deliver } });
      drainer.start();
      for (let i = 0; i < 200 && !tried.length; i++) await Bun.sleep(10);
      await Bun.sleep(300); // 15 polls: a hub away got a request (and a WARN) every 1.5 s per thing
      expect(tried).toEqual(["first"]);
      expect(store.getOutbox("first")!.next_attempt_at).toBeGreaterThanOrEqual(now + 59_000); // the row honours Retry-After too
      expect(lines.filter((l) => l.includes("egress.retry_later")).join("\n")).toContain("retryAfterSeconds=60");
      // the hub answers again, to a collect through serve: the receiver is back, its backlog due at once
      hubUp = true;
      drainer.delivered("http");
      for (let i = 0; i < 200 && delivered.length < 3; i++) await Bun.sleep(10);
      await drainer.stop();
      expect(delivered).toEqual(["first", "later-1", "later-2"]);
    } finally {
      store.close();
    }
  });

  test("a backlog that failed before serve started: the first success makes the rest due (they waited up to 5 min, newer messages first)", async () => {
    const store = MessageStore.open(join(dir, "back-restart.db"));
    const { log } = captureLog();
    try {
      const now = Date.now();
      for (const [i, id] of ["old-1", "old-2"].entries()) {
        store.enqueue({ messageId: id, body: `{"n":${i}}`, via: "http", thingId: "thing-1", now: now - 10 + i });
        store.markRetry(id, "the API answered 503", now + 240_000);
      }
      store.enqueue({ messageId: "new", body: '{"n":9}', via: "http", thingId: "thing-1", now: now - 1 });
      const delivered: string[] = [];
      const deliver = async (entry: OutboxEntry): Promise<DeliveryOutcome> => {
        delivered.push(entry.message_id);
        return { kind: "sent", status: 200, body: "{}" };
      };
      const drainer = new OutboxDrainer({ store, thingId: "thing-1", log, ratePerSecond: 1000, pollMs: 20, deliverers: { http: deliver } });
      drainer.start();
      for (let i = 0; i < 200 && delivered.length < 3; i++) await Bun.sleep(10);
      await drainer.stop();
      expect(delivered).toEqual(["new", "old-1", "old-2"]);
    } finally {
      store.close();
    }
  });

  test("Retry-After is read as seconds or an HTTP date, capped at an hour; junk is no Retry-After", () => {
    const now = Date.parse("2026-12-02T12:00:00Z");
    expect(retryAfterOf("30", now)).toBe(30_000);
    expect(retryAfterOf(new Date(now + 90_000).toUTCString(), now)).toBe(90_000);
    expect(retryAfterOf(new Date(now - 90_000).toUTCString(), now)).toBe(0);
    expect(retryAfterOf("999999", now)).toBe(MAX_RETRY_AFTER_MS);
    for (const junk of [undefined, "", "soon", "-5", "1.5"]) expect(retryAfterOf(junk, now)).toBeUndefined();
    expect(outcomeOf({ status: 503, statusText: "Service Unavailable", body: "", headers: { "retry-after": "30" } })).toMatchObject({
      kind: "retry",
      retryAfterMs: 30_000,
    });
  });
});

describe("a delivery that does not end does not hold anything up", () => {
  /** A receiver that never answers: the delivery ends only when its signal aborts. */
  const silent =
    (started: string[]) =>
    async (entry: OutboxEntry, signal?: AbortSignal): Promise<DeliveryOutcome> => {
      started.push(entry.message_id);
      return await new Promise<DeliveryOutcome>((resolve) => {
        signal?.addEventListener("abort", () => resolve({ kind: "retry", error: `cut off: ${(signal.reason as Error).message}` }), { once: true });
      });
    };

  test("stopping the drainer cuts off the delivery in flight (a hub that never answers held serve's stop for 30 s, an MQTT publish 120 s); the row stays pending", async () => {
    const store = MessageStore.open(join(dir, "stop-cut.db"));
    const { log } = captureLog();
    try {
      store.enqueue({ messageId: "stuck", body: '{"n":1}', via: "http", thingId: "thing-1", now: Date.now() - 1 });
      const started: string[] = [];
      const drainer = new OutboxDrainer({ store, thingId: "thing-1", log, ratePerSecond: 1000, pollMs: 20, deliverers: { http: silent(started) } });
      drainer.start();
      for (let i = 0; i < 200 && !started.length; i++) await Bun.sleep(10);
      expect(started).toEqual(["stuck"]);
      const stopped = await Promise.race([drainer.stop().then(() => "stopped"), Bun.sleep(2_000).then(() => "still waiting")]);
      expect(stopped).toBe("stopped");
      expect(store.getOutbox("stuck")).toMatchObject({ state: "pending", attempts: 1, last_error: "cut off: serve is stopping" });
    } finally {
      store.close();
    }
  });

  test("collect's attempt at once ends within its time and leaves the message queued (a publish on a half-open link outlasted the 120 s a command waits for serve)", async () => {
    const { collect } = await import("../../src/thing/egress/collect.ts");
    const store = MessageStore.open(join(dir, "collect-cut.db"));
    try {
      const started: string[] = [];
      const result = await collect({ store, body: '{"n":1}', via: "mqtt", thingId: "thing-1", queueLimit: -1, deliver: silent(started), attemptMs: 100 });
      expect(result).toMatchObject({ outcome: "queued", error: "cut off: no answer within 0.1 s" });
      expect(store.getOutbox(result.messageId)).toMatchObject({ state: "pending", attempts: 1 });
      expect(result.messageId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/); // UUIDv7 (message-ids.test.ts)
    } finally {
      store.close();
    }
  });
});

describe("offlinePublishQueueing: N", () => {
  test("collects failing at once keep exactly N waiting, and each refusal counts only those (attack round 12, F6: 12 at once kept 1 and said '4 messages already wait')", async () => {
    const { collect } = await import("../../src/thing/egress/collect.ts");
    const store = MessageStore.open(join(dir, "queue-limit.db"));
    try {
      // every attempt fails only once all twelve are queued and trying, as collects run at once do
      let started = 0;
      let allStarted!: () => void;
      const all = new Promise<void>((resolve) => (allStarted = resolve));
      const deliver = async (): Promise<DeliveryOutcome> => {
        if (++started === 12) allStarted();
        await all;
        return { kind: "retry", error: "connect ECONNREFUSED" };
      };
      const results = await Promise.allSettled(
        Array.from({ length: 12 }, (_, i) => collect({ store, body: `{"q":${i}}`, via: "http", thingId: "thing-1", queueLimit: 2, deliver })),
      );
      const queued = results.filter((r) => r.status === "fulfilled");
      const refused = results.flatMap((r) => (r.status === "rejected" ? [(r.reason as Error).message] : []));
      expect(queued).toHaveLength(2);
      expect(refused).toHaveLength(10);
      for (const message of refused) expect(message).toContain("2 messages already wait (offlinePublishQueueing: 2): nothing was queued");
      expect(store.countPending()).toBe(2);
    } finally {
      store.close();
    }
  });
});

describe("outcomes are committed without an fsync, the message with one", () => {
  test("each mark runs at synchronous=NORMAL and leaves the connection at FULL, also when SQLite refuses it", () => {
    const store = MessageStore.open(join(dir, "sync-levels.db"));
    try {
      const level = () => store.db.get<{ synchronous: number }>("PRAGMA synchronous")!.synchronous;
      const seen: number[] = [];
      store.db.exec("CREATE TEMP TABLE levels (level INTEGER)");
      const now = Date.now();
      for (const id of ["a", "b", "c", "refused"]) store.enqueue({ messageId: id, body: "{}", via: "http", thingId: "thing-1", now });
      expect(level()).toBe(2); // FULL: the enqueue
      // the level during each UPDATE, seen from a trigger on it
      store.db.exec("CREATE TEMP TRIGGER watch AFTER UPDATE ON outbox BEGIN INSERT INTO levels SELECT synchronous FROM pragma_synchronous; END");
      store.markSent("a", now, { status: 200, body: "" });
      store.markRejected("b", "no", { status: 400, body: "" });
      store.markRetry("c", "later", now + 1000);
      seen.push(...store.db.all<{ level: number }>("SELECT level FROM levels").map((r) => r.level));
      expect(seen).toEqual([1, 1, 1]);
      expect(level()).toBe(2);
      store.db.exec("CREATE TEMP TRIGGER refuse BEFORE UPDATE ON outbox WHEN old.message_id = 'refused' BEGIN SELECT RAISE(ABORT, 'disk says no'); END");
      expect(() => store.markSent("refused", now)).toThrow("disk says no");
      expect(level()).toBe(2);
    } finally {
      store.close();
    }
  });
});

describe("the thing's token is reused while young", () => {
  const identityWith = (privateKey: KeyObject): ThingIdentity =>
    ({ thingId: "6c0f5b5e-3c0e-4a8e-9a55-1c2d3e4f5a6b", privateKey, tokenAlgorithm: "ES256" }) as ThingIdentity;
  const ecKey = () => generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;

  test("the same token for TOKEN_REUSE_SECONDS, then a new one; a new key, a new clock offset or forget sign anew", async () => {
    let local = Date.parse("2026-01-10T12:00:00Z");
    const clock = new HubClock(captureLog().log, () => local);
    const tokens = new ThingTokens(clock);
    const identity = identityWith(ecKey());
    const first = await tokens.current(identity);
    local += (TOKEN_REUSE_SECONDS - 1) * 1000;
    expect((await tokens.current(identity)).token).toBe(first.token);
    local += 1000;
    const second = await tokens.current(identity);
    expect(second.token).not.toBe(first.token);
    // a renewal: the identity's key is another
    const renewed = identityWith(ecKey());
    const third = await tokens.current(renewed);
    expect(third.token).not.toBe(second.token);
    // the clock was found an hour behind: the token carries the hub's time from now on
    clock.observe(httpDate(local + 3_600_000), local);
    const corrected = await tokens.current(renewed);
    expect(corrected.token).not.toBe(third.token);
    expect(corrected.offsetMs).toBe(clock.offsetMs);
    const claims = JSON.parse(Buffer.from(corrected.token.split(".")[1]!, "base64url").toString());
    expect(Math.abs(claims.iat - Math.floor((local + 3_600_000) / 1000))).toBeLessThanOrEqual(1);
    // a local clock stepped back: not reused from "the future"
    expect((await tokens.current(renewed)).token).toBe(corrected.token);
    local -= 5000;
    expect((await tokens.current(renewed)).token).not.toBe(corrected.token);
    const kept = await tokens.current(renewed);
    tokens.forget();
    expect((await tokens.current(renewed)).token).not.toBe(kept.token);
  });
});

test("an outbox id given in upper case is the same id (the outbox keeps UUIDs in lower case); other ids are taken as given", () => {
  const id = crypto.randomUUID();
  expect(checkOutboxIds([id.toUpperCase(), id, "not-a-uuid"])).toEqual([id, "not-a-uuid"]);
});
