/**
 * The hub store's contract, run against both drivers: SQLite (a file in a temp dir) and
 * PostgreSQL (Debian's PostgreSQL 15, started by this test on loopback with its own data
 * directory, socket directory and port, and stopped in afterAll whatever the tests did:
 * test/support/postgres.ts). Each test gets a fresh database: a new file, or a new PostgreSQL
 * database on the one server.
 *
 * Then what only the PostgreSQL driver has: its schema_version table and migration under a
 * lock, refusals of a foreign or already used database, and the errors for a server that
 * cannot be reached or refuses the login (exit 69's kind, HOST:PORT named, no password).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SQL } from "bun";
import { parseHubDatabase } from "../../src/hub/store/database-url.ts";
import type { HubStore, MessageRecord, ThingRecord } from "../../src/hub/store/hub-store.ts";
import { HUB_MIGRATIONS, HUB_READABLE_FROM } from "../../src/hub/store/migrations.ts";
import { openHubStore } from "../../src/hub/store/open-store.ts";
import { migratePostgres } from "../../src/hub/store/postgres-driver.ts";
import { FlashlexError } from "../../src/shared/errors.ts";
import { storedMessages } from "../support/hub-messages.ts";
import { hasPostgres, startPostgres, type TestPostgres } from "../support/postgres.ts";

let dir: string;
let pg: TestPostgres | undefined;
let databases = 0;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "flashlex-store-contract-"));
  if (!hasPostgres) throw new Error("PostgreSQL 15 is not installed: run scripts/install-system-packages.sh");
  pg = await startPostgres(dir);
}, 60_000);

afterAll(async () => {
  await pg?.stop();
  rmSync(dir, { recursive: true, force: true });
}, 60_000);

const DRIVERS: { name: string; open: () => Promise<HubStore> }[] = [
  { name: "sqlite", open: () => openHubStore(join(dir, `hub-${++databases}.db`), { create: true }) },
  {
    name: "postgres",
    open: () => openHubStore(parseHubDatabase(pg!.createDatabase(`hub_${++databases}`), "unused.db", "test"), { create: true }),
  },
];

// Unix ms beyond 2^32 and 2^31 seconds, and the last millisecond a Date can hold: exact or bust.
const CREATED_AT = 1_733_022_000_123;
const FAR_FUTURE = 8_640_000_000_000_000;

const thing = (n: number, extra: Partial<ThingRecord> = {}): ThingRecord => ({
  id: `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`,
  name: `ecd13b11-thing${n}`,
  shortName: `thing${n}`,
  publicKeyPem: `key-${n}`,
  certPem: `cert-${n}`,
  certSerial: `serial-${n}`,
  createdAt: CREATED_AT + n,
  verifiedAt: null,
  lastSeenAt: null,
  revokedAt: null,
  certNotAfter: FAR_FUTURE,
  enrolledWith: null,
  ...extra,
});

const message = (id: string, thingId: string, type: "egress" | "ingress", ts: number, extra: Partial<MessageRecord> = {}): MessageRecord => ({
  flmessagespk: id,
  thingId,
  messagetype: type,
  payload: JSON.stringify({ id, text: "grüße ✓" }),
  fltimestamp: ts,
  datecreated: "2024-01-01T00:00:00Z",
  ...extra,
});

for (const driver of DRIVERS) {
  describe(`hub store contract: ${driver.name}`, () => {
    const withStore = (fn: (store: HubStore) => Promise<void>) => async () => {
      const store = await driver.open();
      try {
        await fn(store);
      } finally {
        await store.close();
      }
    };

    test(
      "things: stored and read back exactly, integers as numbers; a taken name is refused as UNIQUE",
      withStore(async (store) => {
        expect(store.driver).toBe(driver.name as "sqlite" | "postgres");
        await store.insertThing(thing(1));
        await store.insertThing(thing(2, { revokedAt: FAR_FUTURE - 1 }));
        const got = await store.getThing(thing(1).id);
        expect(got).toEqual({ ...thing(1), previousPublicKeyPem: null, previousCertSerial: null, previousCertNotAfter: null, renewRequestedAt: null });
        expect(typeof got!.createdAt).toBe("number");
        expect((await store.getThingByName(thing(2).name))!.revokedAt).toBe(FAR_FUTURE - 1);
        expect(await store.getThing("nope")).toBeUndefined();
        expect((await store.listThings()).map((t) => t.shortName)).toStrictEqual(["thing1", "thing2"]);
        await expect(store.insertThing(thing(3, { name: thing(1).name }))).rejects.toThrow(/unique/i);
      }),
    );

    test(
      "fleetCounts: things by status, the earliest end of a certificate of a thing not revoked (null when none), the database's size in bytes",
      withStore(async (store) => {
        const none = await store.fleetCounts();
        expect([none.things, none.earliestCertificateEnd]).toEqual([0, null]);
        expect(none.databaseBytes).toBeGreaterThan(0);
        await store.insertThing(thing(1, { certNotAfter: CREATED_AT + 5_000 }));
        await store.insertThing(thing(2, { certNotAfter: CREATED_AT + 1_000, revokedAt: CREATED_AT }));
        await store.insertThing(thing(3, { certNotAfter: null }));
        const counts = await store.fleetCounts();
        expect(counts).toMatchObject({ things: 3, revoked: 1, earliestCertificateEnd: CREATED_AT + 5_000 });
        expect(typeof counts.databaseBytes).toBe("number");
      }),
    );

    test(
      "seen and verified only move forward; revoke once; revokedSince and revokedThings; delete takes the messages along",
      withStore(async (store) => {
        const t = thing(1);
        await store.insertThing(t);
        await store.markVerified(t.id, CREATED_AT + 100);
        await store.markVerified(t.id, CREATED_AT + 50);
        await store.markSeen([{ id: t.id, at: CREATED_AT + 10 }]);
        let got = (await store.getThing(t.id))!;
        expect([got.verifiedAt, got.lastSeenAt]).toEqual([CREATED_AT + 100, CREATED_AT + 100]);
        // a batch: each thing once, at its latest; an unknown id changes nothing
        const u = thing(2);
        await store.insertThing(u);
        await store.markSeen([
          { id: u.id, at: CREATED_AT + 300 },
          { id: t.id, at: CREATED_AT + 200 },
          { id: "nope", at: CREATED_AT + 999 },
          { id: t.id, at: CREATED_AT + 150 },
        ]);
        got = (await store.getThing(t.id))!;
        expect(got.lastSeenAt).toBe(CREATED_AT + 200);
        expect((await store.getThing(u.id))!.lastSeenAt).toBe(CREATED_AT + 300);
        // seen is heard from: verified the first time, not moved after (new-user pass 26, F1/F2)
        expect([got.verifiedAt, (await store.getThing(u.id))!.verifiedAt]).toEqual([CREATED_AT + 100, CREATED_AT + 300]);
        expect((await store.getThingTargets([u.id, "nope", t.id])).sort((a, b) => a.id.localeCompare(b.id))).toEqual(
          [t, u].map(({ id, name, revokedAt }) => ({ id, name, revokedAt })).sort((a, b) => a.id.localeCompare(b.id)),
        );
        expect(await store.getThingTargets([])).toEqual([]);
        // more ids than one statement takes
        const many = Array.from({ length: 1200 }, (_, i) => `ffffffff-0000-4000-8000-${String(i).padStart(12, "0")}`);
        expect((await store.getThingTargets([...many, t.id])).map((x) => x.id)).toStrictEqual([t.id]);

        expect(await store.revokeThing(t.id, CREATED_AT + 300)).toBe(true);
        expect(await store.revokeThing(t.id, CREATED_AT + 400)).toBe(false);
        expect(await store.revokedSince(CREATED_AT + 300)).toEqual([t.name]);
        expect(await store.revokedSince(CREATED_AT + 301)).toEqual([]);
        // only the revoked thing's row, whole (the CRL lists its serials)
        expect(await store.revokedThings()).toEqual([(await store.getThing(t.id))!]);
        expect((await store.revokedThings())[0]!.revokedAt).toBe(CREATED_AT + 300);
        // a fan-out is refused for a revoked thing by its target's revokedAt
        expect(await store.getThingTargets([t.id])).toEqual([{ id: t.id, name: t.name, revokedAt: CREATED_AT + 300 }]);

        await store.insertMessage(message("m1", t.id, "egress", 1000));
        const retired = { at: CREATED_AT + 500, certificates: [{ serial: "0DE1E7ED", notAfter: CREATED_AT + 10_000 }] };
        expect(await store.deleteThing(t.id, retired)).toBe(true);
        expect(await store.deleteThing(t.id, { ...retired, certificates: [{ serial: "0DE1E7E2", notAfter: 1 }] })).toBe(false);
        expect(await storedMessages(store, t.id, {})).toEqual([]);
        // The deleted thing's certificate stays refused (the CRL), and other processes see when.
        expect(await store.supersededCertificates(0)).toEqual([
          { serial: "0DE1E7ED", thingId: t.id, notAfter: CREATED_AT + 10_000, supersededAt: CREATED_AT + 500 },
        ]);
        expect(await store.lastSupersededAt()).toBe(CREATED_AT + 500);
      }),
    );

    test(
      "thing pages: the name matched in any case, % and _ as themselves, total and window",
      withStore(async (store) => {
        for (let n = 1; n <= 5; n++) await store.insertThing(thing(n));
        await store.insertThing(thing(6, { name: "ecd13b11-50%_off", shortName: "50%_off" }));
        expect(await store.thingPage({ nameContains: "THING", offset: 1, limit: 2 })).toMatchObject({ total: 5 });
        expect((await store.thingPage({ nameContains: "THING", offset: 1, limit: 2 })).things.map((t) => t.shortName)).toStrictEqual(["thing2", "thing3"]);
        expect((await store.thingPage({ nameContains: "%_", offset: 0, limit: 10 })).things.map((t) => t.shortName)).toStrictEqual(["50%_off"]);
        expect((await store.thingPage({ offset: 0, limit: 100 })).total).toBe(6);
      }),
    );

    test(
      "a message is stored once: a retried id gives the first row back; several in one transaction mark the sender seen",
      withStore(async (store) => {
        const [a, b] = [thing(1), thing(2)];
        await store.insertThing(a);
        await store.insertThing(b);
        const first = await store.insertMessage(message("m1", a.id, "egress", 1_700_000_000));
        expect(first).toEqual({ inserted: true, message: { ...message("m1", a.id, "egress", 1_700_000_000), delivery: null, deliveredAt: null } });
        const again = await store.insertMessage(message("m1", a.id, "egress", 1_700_000_001, { payload: '"other"' }));
        expect(again.inserted).toBe(false);
        expect(again.message!.fltimestamp).toBe(1_700_000_000);
        expect(again.message!.payload).toBe(first.message!.payload);

        const results = await store.insertMessages([
          { message: message("m2", a.id, "egress", 1_700_000_002), seenAt: CREATED_AT + 5 },
          { message: message("m1", b.id, "egress", 1_700_000_003), seenAt: CREATED_AT + 6 },
        ]);
        expect(results.map((r) => [r.inserted, r.message!.thingId])).toStrictEqual([
          [true, a.id],
          [false, a.id],
        ]);
        expect((await store.getThing(a.id))!.verifiedAt).toBe(CREATED_AT + 5);
        // the id was a's: b is not marked by a message it could not store
        expect((await store.getThing(b.id))!.verifiedAt).toBeNull();
      }),
    );

    test(
      "the update key: none before its first use; the first one adopted is kept, a later one gets the first back",
      withStore(async (store) => {
        expect(await store.updateKey()).toBeUndefined();
        expect(await store.adoptUpdateKey("ed25519:first", CREATED_AT)).toBe("ed25519:first");
        expect(await store.adoptUpdateKey("ed25519:second", CREATED_AT + 1)).toBe("ed25519:first");
        expect(await store.updateKey()).toBe("ed25519:first");
      }),
    );

    test(
      "expireMessages: one thing's messages stored before the cut, oldest first, at most `limit` looked at per call and on from a cursor; pending ingress and newer messages stay; thingIds in id order",
      withStore(async (store) => {
        const [a, b] = [thing(2), thing(1)];
        await store.insertThing(a);
        await store.insertThing(b);
        expect(await store.thingIds()).toEqual([b.id, a.id]);
        const CUT = 1_700_000_100;
        await store.insertMessages([
          { message: message("e-old", a.id, "egress", CUT - 50) },
          { message: message("i-delivered", a.id, "ingress", CUT - 40, { delivery: "delivered", deliveredAt: CREATED_AT }) },
          { message: message("i-unknown", a.id, "ingress", CUT - 30, { delivery: "unknown" }) },
          { message: message("i-pending", a.id, "ingress", CUT - 60, { delivery: "pending" }) },
          { message: message("e-at-cut", a.id, "egress", CUT) },
          { message: message("e-new", a.id, "egress", CUT + 10) },
          { message: message("b-old", b.id, "egress", CUT - 99) },
        ]);
        const ids = async (t: ThingRecord) => (await storedMessages(store, t.id)).map((m) => m.flmessagespk);
        // the two oldest looked at: the pending one stays, the egress goes
        const first = await store.expireMessages(a.id, CUT, 2);
        expect(first.deleted).toBe(1);
        expect(first.next?.fltimestamp).toBe(CUT - 50);
        expect(await ids(a)).toEqual(["i-pending", "i-delivered", "i-unknown", "e-at-cut", "e-new"]);
        // on from there: the next two, both deleted, and the window was full, so there may be more
        const second = await store.expireMessages(a.id, CUT, 2, first.next);
        expect(second.deleted).toBe(2);
        expect(second.next?.fltimestamp).toBe(CUT - 30);
        expect(await store.expireMessages(a.id, CUT, 2, second.next)).toEqual({ deleted: 0, next: undefined });
        expect(await store.expireMessages(a.id, CUT, 1000)).toEqual({ deleted: 0, next: undefined });
        expect(await ids(a)).toEqual(["i-pending", "e-at-cut", "e-new"]);
        expect(await ids(b)).toEqual(["b-old"]);
        // delivered now: the next sweep takes it
        expect(await store.markDelivered([{ flmessagespk: "i-pending", at: CREATED_AT }])).toEqual([true]);
        expect(await store.expireMessages(a.id, CUT, 1000)).toEqual({ deleted: 1, next: undefined });
        expect(await ids(a)).toEqual(["e-at-cut", "e-new"]);
      }),
    );

    test(
      "a thing deleted while messages are stored for it keeps none of them: one stored after the delete is not stored (message undefined), one before goes with it",
      withStore(async (store) => {
        for (let round = 0; round < 3; round++) {
          const t = thing(20 + round);
          const other = thing(30 + round);
          await store.insertThing(t);
          await store.insertThing(other);
          const send = (i: number) => store.insertMessage(message(`r${round}-${i}`, t.id, "ingress", 1_700_000_000 + i));
          const before = Array.from({ length: 30 }, (_, i) => send(i));
          const deletion = store.deleteThing(t.id);
          const after = Array.from({ length: 30 }, (_, i) => send(30 + i));
          const batch = store.insertMessages([
            { message: message(`b${round}-gone`, t.id, "ingress", 1_700_000_100) },
            { message: message(`b${round}-kept`, other.id, "ingress", 1_700_000_100) },
          ]);
          const results = await Promise.all([...before, ...after]);
          expect(await deletion).toBe(true);
          expect((await batch)[1]!.message?.flmessagespk).toBe(`b${round}-kept`);
          // each either stored before the delete (and deleted with the thing) or not stored at all:
          // SQLite runs them in the order given, PostgreSQL's pool side by side
          expect(results.length).toBe(60);
          expect(await send(99)).toEqual({ inserted: false, message: undefined });
          expect(await storedMessages(store, t.id)).toEqual([]);
          expect((await storedMessages(store, other.id)).map((m) => m.flmessagespk)).toStrictEqual([`b${round}-kept`]);
        }
      }),
    );

    test(
      "queries, pages after a cursor, ranges, counts, hourly counts, latest first, deletes",
      withStore(async (store) => {
        const t = thing(1);
        await store.insertThing(t);
        const base = 1_700_000_000 - (1_700_000_000 % 3600);
        // two at one second: the order of insertion breaks the tie
        const rows = [
          message("e1", t.id, "egress", base + 10),
          message("i1", t.id, "ingress", base + 10),
          message("e2", t.id, "egress", base + 3600),
          message("e3", t.id, "egress", base + 7300),
        ];
        for (const row of rows) await store.insertMessage(row);
        expect((await storedMessages(store, t.id, {})).map((m) => m.flmessagespk)).toStrictEqual(["e1", "i1", "e2", "e3"]);
        expect((await storedMessages(store, t.id, { startts: base + 11, messagetype: "egress" })).map((m) => m.flmessagespk)).toStrictEqual(["e2", "e3"]);
        expect((await storedMessages(store, t.id, { endts: base + 10 })).map((m) => m.delivery)).toStrictEqual([null, "unknown"]);

        const page1 = await store.messagePage(t.id, {}, { limit: 2 });
        expect(page1.map((p) => p.message.flmessagespk)).toStrictEqual(["e1", "i1"]);
        const page2 = await store.messagePage(t.id, {}, { limit: 2, after: page1[1]!.cursor });
        expect(page2.map((p) => p.message.flmessagespk)).toStrictEqual(["e2", "e3"]);
        const range = await store.messageRange(t.id, { messagetype: "egress" });
        expect(range.count).toBe(3);
        expect(range.last!.fltimestamp).toBe(base + 7300);
        expect((await store.messagePage(t.id, {}, { limit: 10, through: page1[1]!.cursor })).length).toBe(2);
        expect(await store.messageRange(t.id, { startts: base + 99_999 })).toEqual({ count: 0, last: undefined });

        expect(await store.messageCounts([t.id, "other"])).toEqual(new Map([[t.id, { egress: 3, ingress: 1 }]]));
        expect(await store.messageCounts([])).toEqual(new Map());
        expect(await store.hourlyMessageCounts(t.id, base)).toEqual([
          { hour: base, messagetype: "egress", count: 1 },
          { hour: base, messagetype: "ingress", count: 1 },
          { hour: base + 3600, messagetype: "egress", count: 1 },
          { hour: base + 7200, messagetype: "egress", count: 1 },
        ]);
        expect((await store.latestMessages({ limit: 3 })).map((m) => m.flmessagespk)).toStrictEqual(["e3", "e2", "i1"]);
        expect((await store.latestMessages({ thingId: t.id, messagetype: "ingress", limit: 3 })).map((m) => m.flmessagespk)).toStrictEqual(["i1"]);

        expect(await store.deleteMessages(t.id, { messagetype: "egress", endts: base + 3600 })).toBe(2);
        await store.deleteMessage("e3");
        expect((await storedMessages(store, t.id, {})).map((m) => m.flmessagespk)).toStrictEqual(["i1"]);
      }),
    );

    test(
      "pending ingress: oldest first, delivered once, with the time of the PUBACK",
      withStore(async (store) => {
        const t = thing(1);
        await store.insertThing(t);
        await store.insertMessage(message("p2", t.id, "ingress", 20, { delivery: "pending" }));
        await store.insertMessage(message("p1", t.id, "ingress", 10, { delivery: "pending" }));
        expect((await store.pendingIngress(t.id)).map((m) => m.flmessagespk)).toStrictEqual(["p1", "p2"]);
        expect(
          await store.markDelivered([
            { flmessagespk: "p1", at: CREATED_AT },
            { flmessagespk: "p1", at: CREATED_AT + 1 },
            { flmessagespk: "gone", at: CREATED_AT },
          ]),
        ).toEqual([true, false, false]);
        expect((await storedMessages(store, t.id, { endts: 10 }))[0]).toMatchObject({ delivery: "delivered", deliveredAt: CREATED_AT });
        expect((await store.pendingIngress(t.id)).map((m) => m.flmessagespk)).toStrictEqual(["p2"]);
      }),
    );

    test(
      "enrolment tokens: used while valid and only max times; a failed insert leaves the token unused (one transaction)",
      withStore(async (store) => {
        const token = { id: "tok1", hash: "h1", namePrefix: "lab-", maxUses: 2, uses: 0, createdAt: CREATED_AT, expiresAt: CREATED_AT + 1000, revokedAt: null };
        await store.addEnrolmentToken(token);
        expect(await store.enrolmentTokenByHash("h1")).toEqual(token);
        expect(await store.enrolThing(thing(1), "h1", CREATED_AT + 1)).toBe(true);
        await expect(store.enrolThing(thing(2, { name: thing(1).name }), "h1", CREATED_AT + 1)).rejects.toThrow(/unique/i);
        expect((await store.enrolmentTokenByHash("h1"))!.uses).toBe(1);
        expect(await store.enrolThing(thing(3), "h1", CREATED_AT + 1000)).toBe(false); // expired
        expect(await store.enrolThing(thing(3), "h1", CREATED_AT + 2)).toBe(true);
        expect(await store.enrolThing(thing(4), "h1", CREATED_AT + 3)).toBe(false); // used up
        expect(await store.revokeEnrolmentToken("tok1", CREATED_AT + 4)).toBe(true);
        expect(await store.revokeEnrolmentToken("tok1", CREATED_AT + 5)).toBe(false);
        expect((await store.listEnrolmentTokens()).map((t) => [t.id, t.uses, t.revokedAt])).toStrictEqual([["tok1", 2, CREATED_AT + 4]]);
        expect((await store.getThing(thing(1).id))!.enrolledWith).toBeNull();
      }),
    );

    test(
      "the things version changes with every change to a thing but when it was last seen",
      withStore(async (store) => {
        const changes: [string, () => Promise<unknown>][] = [
          ["revoke", () => store.revokeThing(thing(1).id, CREATED_AT + 1)],
          ["renewal request", () => store.requestRenewal(thing(2).id, CREATED_AT + 1)],
          [
            "new certificate",
            () =>
              store.replaceCertificate(thing(2).id, {
                publicKeyPem: "new",
                certPem: "c2",
                certSerial: "s2",
                certNotAfter: FAR_FUTURE,
                previousPublicKeyPem: "key-2",
                previousCertSerial: "serial-2",
                previousCertNotAfter: CREATED_AT + 1000,
                superseded: [],
                at: CREATED_AT + 2,
                expected: { publicKeyPem: "key-2", certSerial: "serial-2" },
                onConflict: "supersede",
              }),
          ],
          ["previous key forgotten", () => store.forgetPreviousKey(thing(2).id, CREATED_AT + 3)],
          ["delete", () => store.deleteThing(thing(3).id)],
        ];
        for (const n of [1, 2, 3]) await store.insertThing(thing(n));
        let version = await store.thingsVersion();
        // what every batch of messages writes, and a new thing (a lookup never keeps a miss)
        await store.markVerified(thing(1).id, CREATED_AT + 1);
        await store.markSeen([{ id: thing(2).id, at: CREATED_AT + 1 }]);
        await store.insertThing(thing(4));
        expect(await store.thingsVersion()).toBe(version);
        for (const [what, change] of changes) {
          await change();
          const next = await store.thingsVersion();
          expect({ what, changed: next !== version }).toEqual({ what, changed: true });
          version = next;
        }
      }),
    );

    test(
      "certificates: a new certificate is stored only while the thing is as the renewal read it and not revoked; else the issued one is listed superseded (or kept, for an adoption)",
      withStore(async (store) => {
        for (const n of [1, 2, 3]) await store.insertThing(thing(n));
        const update = (
          n: number,
          serial: string,
          expected: { publicKeyPem: string; certSerial: string | null },
          onConflict: "supersede" | "keep" = "supersede",
        ) =>
          store.replaceCertificate(thing(n).id, {
            publicKeyPem: `new-${serial}`,
            certPem: `c-${serial}`,
            certSerial: serial,
            certNotAfter: FAR_FUTURE,
            previousPublicKeyPem: `key-${n}`,
            previousCertSerial: `serial-${n}`,
            previousCertNotAfter: CREATED_AT + 1000,
            superseded: [],
            at: CREATED_AT + 5,
            expected,
            onConflict,
          });
        // two renewals that read the same thing: the first wins, the second's certificate is superseded
        const read = { publicKeyPem: "key-1", certSerial: "serial-1" };
        expect([await update(1, "A1", read), await update(1, "A2", read)]).toEqual([true, false]);
        expect((await store.getThing(thing(1).id))!.certSerial).toBe("A1");
        // revoked, or deleted, meanwhile: nothing written to it, the issued certificate superseded
        await store.revokeThing(thing(2).id, CREATED_AT + 3);
        expect(await update(2, "B1", { publicKeyPem: "key-2", certSerial: "serial-2" })).toBe(false);
        expect((await store.getThing(thing(2).id))!.certSerial).toBe("serial-2");
        await store.deleteThing(thing(3).id);
        expect(await update(3, "C1", { publicKeyPem: "key-3", certSerial: "serial-3" })).toBe(false);
        // an adoption that lost the race keeps the presented certificate out of the CRL
        expect(await update(1, "A3", read, "keep")).toBe(false);
        expect((await store.supersededCertificates(0)).map((c) => c.serial).sort()).toStrictEqual(["A2", "B1", "C1"]);
      }),
    );

    test(
      "certificates: a renewal keeps the previous key until forgotten; a renewal request only for a thing not revoked",
      withStore(async (store) => {
        await store.insertThing(thing(1));
        expect(await store.requestRenewal(thing(1).id, CREATED_AT + 1)).toBe(true);
        await store.replaceCertificate(thing(1).id, {
          publicKeyPem: "new",
          certPem: "c2",
          certSerial: "s2",
          certNotAfter: FAR_FUTURE,
          previousPublicKeyPem: "key-1",
          previousCertSerial: "s1",
          previousCertNotAfter: CREATED_AT + 1000,
          superseded: [{ serial: "s0", notAfter: CREATED_AT + 500 }],
          at: CREATED_AT + 1,
          expected: { publicKeyPem: "key-1", certSerial: "serial-1" },
          onConflict: "supersede",
        });
        let got = (await store.getThing(thing(1).id))!;
        expect([got.publicKeyPem, got.previousPublicKeyPem, got.renewRequestedAt, got.certNotAfter]).toEqual(["new", "key-1", null, FAR_FUTURE]);
        expect([got.previousCertSerial, got.previousCertNotAfter]).toEqual(["s1", CREATED_AT + 1000]);
        expect((await store.supersededCertificates(0)).map((c) => c.serial)).toStrictEqual(["s0"]);
        expect(await store.forgetPreviousKey(thing(1).id, CREATED_AT + 2)).toBe(true);
        expect(await store.forgetPreviousKey(thing(1).id, CREATED_AT + 3)).toBe(false);
        got = (await store.getThing(thing(1).id))!;
        expect([got.previousPublicKeyPem, got.previousCertSerial, got.previousCertNotAfter]).toEqual([null, null, null]);
        expect(await store.supersededCertificates(0)).toEqual([
          { serial: "s0", thingId: thing(1).id, notAfter: CREATED_AT + 500, supersededAt: CREATED_AT + 1 },
          { serial: "s1", thingId: thing(1).id, notAfter: CREATED_AT + 1000, supersededAt: CREATED_AT + 2 },
        ]);
        expect(await store.lastSupersededAt()).toBe(CREATED_AT + 2);
        // listed until expired; pruned after
        expect((await store.supersededCertificates(CREATED_AT + 500)).map((c) => c.serial)).toStrictEqual(["s1"]);
        expect(await store.pruneSupersededCertificates(CREATED_AT + 500)).toBe(1);
        expect((await store.supersededCertificates(0)).map((c) => c.serial)).toStrictEqual(["s1"]);
        await store.revokeThing(thing(1).id, CREATED_AT + 2);
        expect(await store.requestRenewal(thing(1).id, CREATED_AT + 3)).toBe(false);
      }),
    );

    test(
      "operator tokens: expired CLI tokens are purged on add; active at a time; a rotation replaces the operator's in one transaction",
      withStore(async (store) => {
        await store.addToken("op", "operator", CREATED_AT, null);
        await store.addToken("cli-old", "cli", CREATED_AT, CREATED_AT + 10);
        expect((await store.activeTokenHashes(CREATED_AT + 5)).sort()).toEqual(["cli-old", "op"]);
        expect(await store.activeTokenHashes(CREATED_AT + 10)).toEqual(["op"]);
        await store.addToken("cli-new", "cli", CREATED_AT + 20, CREATED_AT + 30);
        // a rotation: the operator's token replaced, a live CLI token kept
        await store.replaceOperatorToken("op2", CREATED_AT + 21);
        expect((await store.activeTokenHashes(CREATED_AT + 21)).sort()).toEqual(["cli-new", "op2"]);
        // one whose insert fails changes nothing: the old token still works (attack round 27, F1:
        // the delete stood, and the hub had no operator token)
        await expect(store.replaceOperatorToken("cli-new", CREATED_AT + 22)).rejects.toThrow(/unique|duplicate/i);
        expect((await store.activeTokenHashes(CREATED_AT + 22)).sort()).toEqual(["cli-new", "op2"]);
        await store.deleteToken("op2");
        await store.deleteToken("cli-new");
        expect(await store.activeTokenHashes(CREATED_AT)).toEqual([]);
      }),
    );

    test(
      "update tables: releases once, rollouts with growing ids, batches, counts, and a transaction that throws leaves nothing",
      withStore(async (store) => {
        const u = store.updates;
        await u.insertRelease({ version: "1.0.0", manifest: "{}", signature: "sig", added_at: CREATED_AT });
        await u.insertRelease({ version: "1.0.0", manifest: "{other}", signature: "x", added_at: CREATED_AT + 1 });
        expect(await u.listReleases()).toEqual([{ version: "1.0.0", manifest: "{}", signature: "sig", added_at: CREATED_AT }]);
        const id1 = await u.insertRollout({ version: "1.0.0", batchSize: 1, maxFailures: 0, at: CREATED_AT });
        expect((await u.runningRollout())!.id).toBe(id1);
        // at most one runs (rollouts_one_running): the first stops before the second starts
        await u.stopRollout(id1, "replaced", CREATED_AT);
        const id2 = await u.insertRollout({ version: "1.0.0", batchSize: 1, maxFailures: 0, at: CREATED_AT });
        expect(id2).toBeGreaterThan(id1);
        expect((await u.latestRollout())!.id).toBe(id2);
        expect((await u.runningRollout())!.id).toBe(id2);
        // thing 4 is revoked: it never polls again, so it counts toward no batch (updates.ts advance)
        for (const n of [1, 2, 3, 4]) await store.insertThing(thing(n, n === 4 ? { revokedAt: CREATED_AT } : {}));
        const t = (n: number) => thing(n).id;
        for (const [n, batch] of [
          [1, 0],
          [2, 1],
          [3, 1],
          [4, 1],
        ] as const) {
          await u.assign({
            thingId: t(n),
            rolloutId: id2,
            toVersion: "1.0.0",
            batch,
            state: batch === 0 ? "pending" : "queued",
            detail: null,
            at: CREATED_AT,
          });
        }
        await u.recordRunning(t(1), { version: "0.9.0", target: "linux-arm64" }, CREATED_AT + 1);
        await u.recordRunning(t(1), { version: "0.9.1" }, CREATED_AT + 2);
        expect(await u.thingRow(t(1))).toMatchObject({ version: "0.9.1", target: "linux-arm64", seen_at: CREATED_AT + 2, state: "pending", rollout_id: id2 });
        expect(await u.countStates(id2, ["queued"])).toBe(2);
        expect(await u.countStates(id2, ["queued"], true)).toBe(1);
        expect(await u.nextQueuedBatch(id2)).toBe(1);
        await u.releaseBatch(id2, 1, CREATED_AT + 3);
        expect(await u.nextQueuedBatch(id2)).toBeNull();
        await u.setState(t(2), "failed", "no", CREATED_AT + 4);
        await u.stopRollout(id2, "enough", CREATED_AT + 5);
        expect((await u.rollout(id2))!.state).toBe("stopped");
        expect((await u.thingRows()).map((r) => [r.thing_id, r.state]).sort()).toStrictEqual([
          [t(1), "cancelled"],
          [t(2), "failed"],
          [t(3), "cancelled"],
          [t(4), "cancelled"],
        ]);
        await expect(
          u.transaction(async (t) => {
            await t.finishRollout(id1, CREATED_AT + 6);
            throw new Error("changed my mind");
          }),
        ).rejects.toThrow("changed my mind");
        expect((await u.rollout(id1))!.state).toBe("stopped");
      }),
    );

    test(
      "several hubs: console sessions, once-only claims, messages after a position, one running rollout",
      withStore(async (store) => {
        const keep = { usedSince: 0, createdSince: 0, max: 2 };
        await store.addConsoleSession({ idHash: "h1", tokenBox: "b1", createdAt: 10, lastUsedAt: 10 }, keep);
        await store.addConsoleSession({ idHash: "h2", tokenBox: "b2", createdAt: 11, lastUsedAt: 11 }, keep);
        await store.touchConsoleSession("h1", 20);
        await store.touchConsoleSession("h1", 15); // only forward
        expect(await store.consoleSession("h1")).toEqual({ idHash: "h1", tokenBox: "b1", createdAt: 10, lastUsedAt: 20 });
        // the third of at most two: the least recently used (h2) goes
        await store.addConsoleSession({ idHash: "h3", tokenBox: "b3", createdAt: 30, lastUsedAt: 30 }, keep);
        expect(await store.consoleSession("h2")).toBeUndefined();
        // expired ones go first
        await store.addConsoleSession({ idHash: "h4", tokenBox: "b4", createdAt: 40, lastUsedAt: 40 }, { ...keep, usedSince: 25 });
        expect(await store.consoleSession("h1")).toBeUndefined();
        expect(await store.consoleSession("h3")).toBeDefined();
        await store.deleteConsoleSession("h3");
        expect(await store.consoleSession("h3")).toBeUndefined();
        // an operator token rotation ends every sign-in
        await store.replaceOperatorToken("op", 50);
        expect(await store.consoleSession("h4")).toBeUndefined();

        const claims = await Promise.all([1, 2, 3].map(() => store.claimOnce("echo:x", 100, 0)));
        expect(claims.filter(Boolean).length).toBe(1);
        expect(await store.claimOnce("echo:x", 200, 150)).toBe(true); // the old claim was forgotten

        // The first hub to open the database owns it; another's identity gets the first one back.
        const mine = { ownerId: "ecd13b11-6d91-4000-8000-000000000001", caFingerprint: "AA:BB" };
        expect(await store.adoptHubIdentity(mine, 1)).toEqual(mine);
        const other = { ownerId: "0badc0de-0000-4000-8000-000000000002", caFingerprint: "CC:DD" };
        expect(await store.adoptHubIdentity(other, 2)).toEqual(mine);
        // hub init's claim: the identity and its operator token together, or neither
        expect(await store.claimForNewHub(other, "token-of-other", 3)).toEqual(mine);
        expect(await store.activeTokenHashes(3)).not.toContain("token-of-other");
        // Only the owner's claim is given back (an init that failed after claiming); then another may take it.
        await store.releaseNewHubClaim(other, "token-of-other");
        expect(await store.adoptHubIdentity(other, 4)).toEqual(mine);
        await store.releaseNewHubClaim(mine, "no-such-token");
        expect(await store.claimForNewHub(other, "token-of-other", 5)).toEqual(other);
        expect(await store.activeTokenHashes(5)).toContain("token-of-other");
        await store.releaseNewHubClaim(other, "token-of-other");
        expect(await store.activeTokenHashes(5)).not.toContain("token-of-other");
        expect(await store.adoptHubIdentity(mine, 6)).toEqual(mine);

        const t = thing(1);
        await store.insertThing(t);
        expect(await store.lastMessageSeq()).toBe(0);
        await store.insertMessage(message("m1", t.id, "egress", 5));
        const first = await store.lastMessageSeq();
        await store.insertMessage(message("m1", t.id, "egress", 5)); // a repeat: no row
        await store.insertMessage(message("m2", t.id, "ingress", 4, { delivery: "pending" }));
        const after = await store.messagesAfter(first - 1, 10);
        expect(after.map((r) => [r.message.flmessagespk, r.thingName])).toStrictEqual([
          ["m1", t.name],
          ["m2", t.name],
        ]);
        expect(after[0]!.seq).toBe(first);
        expect((await store.messagesAfter(first, 10)).map((r) => r.message.flmessagespk)).toStrictEqual(["m2"]);

        const u = store.updates;
        await u.insertRelease({ version: "1.0.0", manifest: "{}", signature: "s", added_at: 1 });
        await u.insertRollout({ version: "1.0.0", batchSize: 1, maxFailures: 0, at: 1 });
        await expect(u.insertRollout({ version: "1.0.0", batchSize: 1, maxFailures: 0, at: 2 })).rejects.toThrow(/unique/i);
      }),
    );

    test(
      "download tokens: for one thing, once, before they expire; racing uses, one wins; expired rows forgotten; delete takes them along",
      withStore(async (store) => {
        const [t, u] = [thing(1), thing(2)];
        await store.insertThing(t);
        await store.insertThing(u);
        const token = { hash: "a".repeat(64), thingId: t.id, createdAt: CREATED_AT, expiresAt: CREATED_AT + 1000 };
        await store.addDownloadToken(token, CREATED_AT);
        expect(await store.downloadTokenUsable(token.hash, u.id, CREATED_AT)).toBe(false);
        expect(await store.downloadTokenUsable(token.hash, t.id, CREATED_AT + 1000)).toBe(false);
        expect(await store.downloadTokenUsable(token.hash, t.id, CREATED_AT + 999)).toBe(true);
        expect(await store.useDownloadToken(token.hash, u.id, CREATED_AT)).toBe(false);
        // which of the two wins is the database's to decide (PostgreSQL: whichever connection locks the row first)
        const racing = await Promise.all([store.useDownloadToken(token.hash, t.id, CREATED_AT + 1), store.useDownloadToken(token.hash, t.id, CREATED_AT + 2)]);
        expect(racing.toSorted()).toEqual([false, true]);
        expect(await store.downloadTokenUsable(token.hash, t.id, CREATED_AT + 3)).toBe(false);
        // unused but expired: past its expiry it cannot be used, and the next token forgets it
        const late = { ...token, hash: "b".repeat(64) };
        await store.addDownloadToken(late, CREATED_AT);
        expect(await store.useDownloadToken(late.hash, t.id, CREATED_AT + 1000)).toBe(false);
        await store.addDownloadToken({ ...token, hash: "c".repeat(64), thingId: u.id, expiresAt: FAR_FUTURE }, CREATED_AT + 1001);
        await store.addDownloadToken({ ...token, hash: "d".repeat(64), expiresAt: FAR_FUTURE }, CREATED_AT);
        await expect(store.addDownloadToken({ ...token, hash: "d".repeat(64) }, CREATED_AT)).rejects.toThrow(/unique|duplicate/i);
        await store.deleteThing(t.id);
        expect(await store.downloadTokenUsable("d".repeat(64), t.id, CREATED_AT)).toBe(false);
        expect(await store.downloadTokenUsable("c".repeat(64), u.id, CREATED_AT)).toBe(true);
        // a thing made again under the same id does not inherit a deleted thing's token
        await store.insertThing(t);
        expect(await store.useDownloadToken("d".repeat(64), t.id, CREATED_AT)).toBe(false);
        // an operator token rotation forgets them all
        await store.replaceOperatorToken("op", CREATED_AT);
        expect(await store.downloadTokenUsable("c".repeat(64), u.id, CREATED_AT)).toBe(false);
      }),
    );

    test(
      "concurrent callers: transactions and single statements interleave without joining each other",
      withStore(async (store) => {
        const t = thing(1);
        await store.insertThing(t);
        const failing = store.updates.transaction(async (u) => {
          await u.insertRelease({ version: "9.9.9", manifest: "{}", signature: "s", added_at: 1 });
          await new Promise((r) => setTimeout(r, 20));
          throw new Error("rolled back");
        });
        const writes = Array.from({ length: 20 }, (_, i) => store.insertMessage(message(`c${i}`, t.id, "egress", 100 + i)));
        await expect(failing).rejects.toThrow("rolled back");
        expect((await Promise.all(writes)).every((r) => r.inserted)).toBe(true);
        expect((await storedMessages(store, t.id, {})).length).toBe(20);
        expect(await store.updates.listReleases()).toEqual([]);
      }),
    );
  });
}

describe("the PostgreSQL driver", () => {
  const at = (url: string) => parseHubDatabase(url, "unused.db", "--db");

  test("migrates once, under a lock: two `create` opens at once on one new database make one schema, schema_version one row per step (which init's hub it is, the identity decides: hub-postgres.test.ts)", async () => {
    const url = pg!.createDatabase("twice");
    const made = await Promise.all([openHubStore(at(url), { create: true }), openHubStore(at(url), { create: true })]);
    const b = await openHubStore(at(url)); // a hub serve on it
    await made[0]!.insertThing(thing(1));
    expect((await b.getThing(thing(1).id))!.createdAt).toBe(thing(1).createdAt);
    await Promise.all([...made.map((store) => store.close()), b.close()]);
    const sql = new SQL(url);
    try {
      const rows = await sql`SELECT version FROM schema_version ORDER BY version`;
      expect(rows.map((r: { version: number }) => r.version)).toStrictEqual(HUB_MIGRATIONS.map((_, i) => i + 1));
    } finally {
      await sql.close();
    }
  });

  test("a hub as old as HUB_READABLE_FROM uses a database a newer hub migrated (a rollback, or a rolling upgrade of several hubs); an older one is refused (78) naming the version it needs (verify pass 26, F1)", async () => {
    const url = pg!.createDatabase("rolled_back");
    await (await openHubStore(at(url), { create: true })).close();
    const sql = new SQL(url);
    const said = async () => (await sql`SELECT version, readable_from FROM schema_compat`).map((r: { version: number; readable_from: number }) => ({ ...r }));
    /** What a hub binary whose newest step is `steps` makes of the database: undefined, or what it threw. */
    const openAs = (steps: number) =>
      migratePostgres(sql, HUB_MIGRATIONS.slice(0, steps), Math.min(steps, HUB_READABLE_FROM), at(url), false).catch((e: unknown) => e);
    try {
      expect(await said()).toStrictEqual([{ version: HUB_MIGRATIONS.length, readable_from: HUB_READABLE_FROM }]);
      expect(await openAs(HUB_READABLE_FROM)).toBeUndefined();
      const older = await openAs(HUB_READABLE_FROM - 1);
      expect((older as FlashlexError).kind).toBe("config");
      expect((older as Error).message).toContain(
        `schema version ${HUB_MIGRATIONS.length} is newer than this flashlex knows (${HUB_READABLE_FROM - 1}), and the flashlex that migrated it lets only those that know schema version ${HUB_READABLE_FROM} or later use it`,
      );
      // the older hub changed nothing; a database from before schema_compat gets its row at the next open
      expect(await said()).toStrictEqual([{ version: HUB_MIGRATIONS.length, readable_from: HUB_READABLE_FROM }]);
      await sql`DROP TABLE schema_compat`;
      expect(((await openAs(HUB_READABLE_FROM)) as Error).message).toContain(`schema version ${HUB_MIGRATIONS.length} is newer than this flashlex knows`);
      await (await openHubStore(at(url))).close();
      expect(await said()).toStrictEqual([{ version: HUB_MIGRATIONS.length, readable_from: HUB_READABLE_FROM }]);
      expect(await openAs(HUB_READABLE_FROM)).toBeUndefined();
      // changed by hand (other columns, several rows, NULL): says nothing, refused as newer (78), and made anew by the next open (attack round 26, F10)
      for (const tamper of [
        "DROP TABLE schema_compat; CREATE TABLE schema_compat (version INTEGER, x INTEGER)",
        `INSERT INTO schema_compat VALUES (${HUB_MIGRATIONS.length}, 1)`,
        "ALTER TABLE schema_compat ALTER COLUMN readable_from DROP NOT NULL; UPDATE schema_compat SET readable_from = NULL",
      ]) {
        await sql.unsafe(tamper).simple();
        const refused = await openAs(HUB_READABLE_FROM);
        expect([tamper, (refused as FlashlexError).kind, (refused as Error).message]).toEqual([
          tamper,
          "config",
          expect.stringContaining("is newer than this flashlex knows"),
        ]);
        await (await openHubStore(at(url))).close();
        expect(await said()).toStrictEqual([{ version: HUB_MIGRATIONS.length, readable_from: HUB_READABLE_FROM }]);
      }
    } finally {
      await sql.close();
    }
  });

  test("an empty database is no hub: every open but `hub init --db` is refused (78), nothing is created in it (a hub started there empty, refusing its things and its own token)", async () => {
    const url = pg!.createDatabase("empty");
    const err = await openHubStore(at(url)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FlashlexError);
    expect((err as FlashlexError).kind).toBe("config");
    expect((err as Error).message).toContain("holds no FlashLex hub (an empty database); restore the hub's database into it (pg_restore)");
    const sql = new SQL(url);
    try {
      expect(await sql`SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`).toEqual([]);
    } finally {
      await sql.close();
    }
  });

  test("refuses a database that holds other tables, and `create` on one that holds a hub (ConfigError, 78)", async () => {
    const url = pg!.createDatabase("someone_elses");
    const sql = new SQL(url);
    await sql`CREATE TABLE invoices (id int)`;
    await sql.close();
    const foreign = await openHubStore(at(url)).catch((e: unknown) => e);
    expect(foreign).toBeInstanceOf(FlashlexError);
    expect((foreign as FlashlexError).kind).toBe("config");
    expect((foreign as Error).message).toContain("not a FlashLex database (it holds other tables: invoices)");

    // A schema alone is what an init that did not finish left: the next `create` takes it over.
    // Once a hub claimed it (or it holds a token or a thing), `create` is refused.
    const used = pg!.createDatabase("used");
    await (await openHubStore(at(used), { create: true })).close();
    const takenOver = await openHubStore(at(used), { create: true });
    await takenOver.adoptHubIdentity({ ownerId: "ecd13b11-6d91-4000-8000-000000000001", caFingerprint: "AA:BB" }, 1);
    await takenOver.close();
    const again = await openHubStore(at(used), { create: true }).catch((e: unknown) => e);
    expect((again as FlashlexError).kind).toBe("config");
    expect((again as Error).message).toMatch(/already holds a FlashLex hub/);
  });

  test("a server that cannot be reached, or refuses the password: one line, kind unavailable (69), HOST:PORT named, no password", async () => {
    const closedPort = await new Promise<number>((resolve) => {
      const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
      const port = server.port;
      server.stop(true);
      resolve(port);
    });
    const refused = await openHubStore(at(`postgres://flashlex:sekrit-pw@127.0.0.1:${closedPort}/flashlex`)).catch((e: unknown) => e);
    expect((refused as FlashlexError).kind).toBe("unavailable");
    expect((refused as Error).message).toContain(`127.0.0.1:${closedPort}`);
    expect((refused as Error).message).not.toContain("sekrit-pw");
    expect((refused as Error).message).not.toContain("\n");

    const denied = await openHubStore(at(`postgres://flashlex:wrong-pw@127.0.0.1:${pg!.port}/flashlex`)).catch((e: unknown) => e);
    expect((denied as FlashlexError).kind).toBe("unavailable");
    expect((denied as Error).message).toContain(`127.0.0.1:${pg!.port}`);
    expect((denied as Error).message).toMatch(/password authentication failed/);
    expect((denied as Error).message).not.toContain("wrong-pw");
  });

  test("a malformed URL is a configuration error naming where it came from, its password hidden", () => {
    for (const bad of ["postgres://u:pw-hidden@/db", "mysql://u:pw-hidden@h/db", "postgres://u:pw-hidden@h:99999/db", "postgres://u:pw-hidden@h:5432/"]) {
      let thrown: unknown;
      try {
        at(bad);
      } catch (err) {
        thrown = err;
      }
      expect((thrown as FlashlexError).kind).toBe("config");
      expect((thrown as Error).message).toStartWith("--db: ");
      expect((thrown as Error).message).not.toContain("pw-hidden");
    }
    expect(at("sqlite")).toEqual({ kind: "sqlite", file: "unused.db", display: "unused.db" });
  });
});
