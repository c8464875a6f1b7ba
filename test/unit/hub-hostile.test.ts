/**
 * The hub under hostile input, through its fetch handler and its MQTT event handler (no socket):
 * JSON depth and size limits on every body, the streamed archive's paging and odd rows, the
 * export file's atomic write, and the MQTT rule that only a failing database withholds a PUBACK.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type KeyObject, randomUUID, sign } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unzipSync } from "fflate";
import { signThingToken } from "../../src/crypto/jwt.ts";
import { loadPrivateKey } from "../../src/crypto/keys.ts";
import type { HubBroker } from "../../src/hub/broker/broker.ts";
import { createBrokerEvents } from "../../src/hub/broker/events.ts";
import type { HubHome } from "../../src/hub/home/home.ts";
import { initHub } from "../../src/hub/home/init.ts";
import { startHubServer } from "../../src/hub/http/bun-server.ts";
import { DISCARD_BODY_LIMIT_BYTES, discardUnreadBody, readBodyLimited } from "../../src/hub/http/envelope.ts";
import { ARCHIVE_PAGE_BYTES, archivePageRows, openArchive, writeArchiveFile } from "../../src/hub/messages/archive.ts";
import { Collector } from "../../src/hub/messages/collect.ts";
import { type HubStore, StoreFailure, type ThingRecord } from "../../src/hub/store/hub-store.ts";
import { openHubStore } from "../../src/hub/store/open-store.ts";
import { createThing } from "../../src/hub/things/provision.ts";
import { MAX_JSON_DEPTH } from "../../src/protocol/limits.ts";
import { createLogger, silentLogger } from "../../src/shared/log.ts";
import { hubApiOver } from "../support/hub-api.ts";
import { storedMessages } from "../support/hub-messages.ts";
import { tally } from "../support/tally.ts";

const OWNER = "ecd13b11-6d91-4e8e-9156-60e451a3c975";
const base = "http://hub.example:8080/dev/v1";
let dir: string;
let home: HubHome;
let store: HubStore;
let api: ReturnType<typeof hubApiOver>;
let operatorToken: string;
let thing: ThingRecord;
let thingKey: KeyObject;
const lines: string[] = [];
const log = createLogger({ write: (line) => lines.push(line), journald: true, level: "debug" });

const fakeBroker: HubBroker = {
  url: "mqtts://test:8883",
  tracksDelivery: true,
  async publish() {},
  async sendIngress() {},
  isConnected: () => false,
  async close() {},
};

const nested = (depth: number, leaf = "1") => "[".repeat(depth) + leaf + "]".repeat(depth);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "flashlex-hub-hostile-"));
  const init = await initHub({ dir: join(dir, "hub"), ownerId: OWNER, apiUrl: "http://hub.example:8080", names: ["hub.example"] });
  home = init.home;
  operatorToken = init.token;
  store = await openHubStore(home.paths.database);
  api = hubApiOver({ home, store, log, broker: fakeBroker });
  const created = await createThing(home, store, "hostile");
  thing = created.thing;
  const files = unzipSync(await Bun.file(created.distribution).bytes());
  thingKey = loadPrivateKey(new TextDecoder().decode(files[`${thing.name}/keys/${thing.name}-keypair-private.pem`]!));
});

afterAll(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

async function post(path: string, body: string, token: string) {
  const response = await api.fetch(
    new Request(`${base}${path}`, { method: "POST", headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` }, body }),
  );
  return { status: response.status, body: (await response.json()) as { status: string; code: number; messages: { value: string }[]; result: unknown } };
}

describe("JSON limits on HTTP bodies", () => {
  test("collect: 64 levels are stored; 65 and 100,000 are a 400 in the envelope, stored nothing", async () => {
    const token = () => signThingToken({ thingId: thing.id, privateKey: thingKey });
    const before = (await storedMessages(store, thing.id, {})).length;
    expect((await post(`/things/${thing.id}/collect`, nested(MAX_JSON_DEPTH), await token())).status).toBe(200);
    for (const depth of [MAX_JSON_DEPTH + 1, 100_000]) {
      const answer = await post(`/things/${thing.id}/collect`, nested(depth), await token());
      expect(answer.status).toBe(400);
      expect(answer.body).toMatchObject({ status: "ERROR", code: 400, result: null });
      expect(answer.body.messages[0]!.value).toContain("nested more than 64 levels");
    }
    expect((await storedMessages(store, thing.id, {})).length).toBe(before + 1);
    tally("badInputs", 2);
  });

  test("collect and publish: a body that is not JSON names the line and column; a number past the doubles' range is a 400, not a stored null", async () => {
    const token = () => signThingToken({ thingId: thing.id, privateKey: thingKey });
    const before = (await storedMessages(store, thing.id, {})).length;
    const missingComma = await post(`/things/${thing.id}/collect`, '{\n  "a": 1\n  "b": 2\n}', await token());
    expect(missingComma.status).toBe(400);
    expect(missingComma.body.messages[0]!.value).toStartWith("the body: not JSON at line 3, column 3 (");
    const huge = await post(`/things/${thing.id}/collect`, '{"a": 1e999}', await token());
    expect(huge.status).toBe(400);
    expect(huge.body.messages[0]!.value).toStartWith("the body: the number at line 1, column 7 is beyond what a JSON number here can hold");
    const hugeIngress = await post(`/things/${thing.id}/publish`, '{"message": {"a": -1e999}}', operatorToken);
    expect(hugeIngress.status).toBe(400);
    expect((await storedMessages(store, thing.id, {})).length).toBe(before);
    tally("badInputs", 3);
  });

  test("publish: a message of 64 levels is sent inside {message}; 65 is a 400; POST /things too", async () => {
    expect((await post(`/things/${thing.id}/publish`, JSON.stringify({ message: JSON.parse(nested(MAX_JSON_DEPTH)) }), operatorToken)).status).toBe(200);
    const deep = await post(`/things/${thing.id}/publish`, `{"message":${nested(MAX_JSON_DEPTH + 1)}}`, operatorToken);
    expect(deep.status).toBe(400);
    expect(deep.body.code).toBe(400);
    // the limit the sender chose is its message's, not the body's one level more
    expect(deep.body.messages[0]!.value).toBe("the body is nested more than 65 levels deep: its message may be nested at most 64");
    const things = await post("/things", `{"name":${nested(100_000, '"x"')}}`, operatorToken);
    expect(things.status).toBe(400);
    const large = await post(`/things/${thing.id}/publish`, JSON.stringify({ message: "x".repeat(300 * 1024) }), operatorToken);
    expect(large.status).toBe(413);
    expect(large.body).toMatchObject({ status: "ERROR", code: 413 });
    tally("badInputs", 3);
  });
});

describe("a request the server cannot build a URL for", () => {
  test("no Host, an empty one, or one with a space: 400 naming the Host header, never an unlogged 500", async () => {
    const server = startHubServer(api, { host: "127.0.0.1", port: 0, log: silentLogger });
    const port = Number(new URL(server.url).port);
    /** the status line and body of one raw request over TCP */
    const raw = (head: string) =>
      new Promise<string>((resolve, reject) => {
        let text = "";
        const socket = connect({ host: "127.0.0.1", port }, () => socket.write(`${head}\r\nConnection: close\r\n\r\n`));
        socket.setEncoding("utf8");
        socket.on("data", (chunk) => (text += chunk));
        socket.on("end", () => resolve(text));
        socket.on("error", reject);
      });
    try {
      const before = lines.length;
      for (const head of [
        "GET /dev/v1/enroll HTTP/1.0",
        "GET /dev/v1/things HTTP/1.1\r\nHost:",
        "GET / HTTP/1.1\r\nHost: a b",
        "GET /dev/v1/things HTTP/1.1\r\nHost: [::1",
      ]) {
        const answer = await raw(head);
        expect({ head, status: answer.split("\r\n")[0], says: answer.includes("the request has no valid Host header") }).toEqual({
          head,
          status: "HTTP/1.1 400 Bad Request",
          says: true,
        });
      }
      tally("badInputs", 4);
      expect(lines.slice(before).filter((l) => l.includes("api_failed"))).toEqual([]);
    } finally {
      await server.stop();
    }
  });
});

describe("a refused body is read to its end before the answer (a client that writes it all first can then read the answer)", () => {
  /** A body of `chunks` chunks of `size` bytes, counting how many were read. */
  function countedBody(chunks: number, size: number) {
    const counted = { read: 0 };
    const stream = new ReadableStream<Uint8Array>(
      {
        pull(controller) {
          if (counted.read === chunks) return controller.close();
          counted.read++;
          controller.enqueue(new Uint8Array(size));
        },
      },
      { highWaterMark: 0 },
    ); // pulled only when read
    return { stream, counted };
  }

  test("chunked, over the limit: 413, and every chunk was read", async () => {
    const { stream, counted } = countedBody(40, 64 * 1024);
    const request = new Request(`${base}/x`, { method: "POST", body: stream, headers: { "Transfer-Encoding": "chunked" } });
    const refused = await readBodyLimited(request, 256 * 1024).catch((err) => err);
    expect(refused).toMatchObject({ status: 413 });
    expect(counted.read).toBe(40);
  });

  test("declared and never read by the route (a 413 or 401 before the body): discardUnreadBody reads it all", async () => {
    const { stream, counted } = countedBody(40, 64 * 1024);
    const request = new Request(`${base}/x`, { method: "POST", body: stream, headers: { "Content-Length": String(40 * 64 * 1024) } });
    await expect(readBodyLimited(request, 256 * 1024)).rejects.toMatchObject({ status: 413 });
    expect(counted.read).toBe(0);
    await discardUnreadBody(request);
    expect(counted.read).toBe(40);
  });

  test(`a body declared over ${DISCARD_BODY_LIMIT_BYTES} bytes is left alone`, async () => {
    const { stream, counted } = countedBody(4, 1024);
    await discardUnreadBody(new Request(`${base}/x`, { method: "POST", body: stream, headers: { "Content-Length": String(DISCARD_BODY_LIMIT_BYTES + 1) } }));
    expect(counted.read).toBe(0);
  });
});

describe("the streamed archive", () => {
  test("pages in (fltimestamp, seq) order: 40 messages of one second, 3 per page, each once, in insertion order", async () => {
    const target = (await createThing(home, store, "paged")).thing;
    const ids = Array.from({ length: 40 }, () => randomUUID());
    for (const [i, id] of ids.entries()) {
      await store.insertMessage({
        flmessagespk: id,
        thingId: target.id,
        messagetype: "egress",
        payload: JSON.stringify({ i }),
        fltimestamp: i < 20 ? 1000 : 999,
        datecreated: "2019-07-20T01:45:44Z",
      });
    }
    const limit = Math.floor(ARCHIVE_PAGE_BYTES / 3);
    expect(archivePageRows(limit)).toBe(3);
    const archive = await openArchive(store, { thingId: target.id, ownerId: OWNER, query: {}, at: new Date(), payloadLimitBytes: limit });
    const bytes = await collectBytes(archive.chunks);
    const files = unzipSync(bytes);
    const order = Object.keys(files).map((name) => name.split("/")[1]!.replace(".json", ""));
    expect(order).toEqual([...ids.slice(20), ...ids.slice(0, 20)]);
    expect(archive.written()).toBe(40);
  });

  test("the archive is the range as it was when opened: messages stored meanwhile wait, deleted ones are left out", async () => {
    const target = (await createThing(home, store, "snapshot")).thing;
    const insert = (i: number) =>
      store.insertMessage({
        flmessagespk: randomUUID(),
        thingId: target.id,
        messagetype: "egress",
        payload: `{"i":${i}}`,
        fltimestamp: 2000 + i,
        datecreated: "2019-07-20T01:45:44Z",
      });
    for (let i = 0; i < 10; i++) await insert(i);
    const archive = await openArchive(store, { thingId: target.id, ownerId: OWNER, query: {}, at: new Date(), payloadLimitBytes: ARCHIVE_PAGE_BYTES / 2 });
    expect(archive.count).toBe(10);
    const first = await archive.chunks.next(); // 2 rows per page
    await insert(10);
    await store.deleteMessages(target.id, { startts: 2009 });
    const rest = await collectBytes(archive.chunks);
    const payloads = Object.values(unzipSync(concat([first.value as Uint8Array, rest]))).map((b) => JSON.parse(new TextDecoder().decode(b)).payload.i);
    expect(payloads).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
  });

  test("a 30,000-deep payload stored before the limit is copied compact, and a damaged row becomes a string", async () => {
    const target = (await createThing(home, store, "legacy")).thing;
    const deep = nested(30_000);
    await store.insertMessage({
      flmessagespk: "d0000000-0000-4000-8000-000000000001",
      thingId: target.id,
      messagetype: "egress",
      payload: deep,
      fltimestamp: 1,
      datecreated: "1970-01-01T00:00:01Z",
    });
    await store.insertMessage({
      flmessagespk: "d0000000-0000-4000-8000-000000000002",
      thingId: target.id,
      messagetype: "egress",
      payload: "{not json",
      fltimestamp: 2,
      datecreated: "1970-01-01T00:00:02Z",
    });
    const response = await api.fetch(new Request(`${base}/things/${target.id}/archive`, { headers: { Authorization: `Bearer ${operatorToken}` } }));
    expect(response.status).toBe(200);
    const files = Object.values(unzipSync(new Uint8Array(await response.arrayBuffer()))).map((b) => new TextDecoder().decode(b));
    expect(files[0]!.length).toBeLessThan(deep.length + 1000);
    expect(files[0]).toContain(`"payload": ${deep},\n  "flthingspk"`);
    expect(JSON.parse(files[1]!).payload).toBe("{not json");
    // the messages route too: the damaged row is its text, and the page around it is served (it was a 500)
    const page = await api.fetch(new Request(`${base}/things/${target.id}/messages`, { headers: { Authorization: `Bearer ${operatorToken}` } }));
    expect(page.status).toBe(200);
    const listed = ((await page.json()) as { result: { flmessagespk: string; payload: unknown }[] }).result;
    expect(listed.find((m) => m.flmessagespk.endsWith("0002"))?.payload).toBe("{not json");
    tally("badInputs", 2);
  });

  test("export writes the zip 0600 through a temporary file; a failure half way leaves nothing", async () => {
    const target = (await createThing(home, store, "exported")).thing;
    for (let i = 0; i < 5; i++)
      await store.insertMessage({
        flmessagespk: randomUUID(),
        thingId: target.id,
        messagetype: "egress",
        payload: `{"i":${i}}`,
        fltimestamp: 3000 + i,
        datecreated: "2019-07-20T01:45:44Z",
      });
    const out = join(dir, "exports");
    mkdirSync(out);
    const previous = process.umask(0);
    try {
      const ok = join(out, "ok.zip");
      const archive = await openArchive(store, { thingId: target.id, ownerId: OWNER, query: {}, at: new Date(), payloadLimitBytes: 2 * 1024 * 1024 });
      expect((await writeArchiveFile(archive, ok)).count).toBe(5);
      expect(statSync(ok).mode & 0o777).toBe(0o600);
      expect(Object.keys(unzipSync(readFileSync(ok)))).toHaveLength(5);

      // The database fails after the first page: the export fails and leaves no file behind.
      let pages = 0;
      const failing: HubStore = Object.create(store, {
        messagePage: {
          value: async (...args: Parameters<HubStore["messagePage"]>) =>
            ++pages > 1 ? Promise.reject(new Error("disk I/O error")) : store.messagePage(...args),
        },
      });
      const broken = await openArchive(failing, { thingId: target.id, ownerId: OWNER, query: {}, at: new Date(), payloadLimitBytes: 2 * 1024 * 1024 });
      await expect(writeArchiveFile(broken, join(out, "broken.zip"))).rejects.toThrow("disk I/O error");
      expect(readdirSync(out)).toEqual(["ok.zip"]);
      tally("faults");
    } finally {
      process.umask(previous);
    }
  });
});

describe("MQTT egress: acknowledge and drop, unless the database fails", () => {
  const envelope = async (fields: Record<string, unknown> = {}) =>
    Buffer.from(
      JSON.stringify({
        messageId: randomUUID(),
        thingId: thing.id,
        token: await signThingToken({ thingId: thing.id, privateKey: thingKey }),
        payload: { t: 1 },
        ...fields,
      }),
    );
  const publisher = () => ({ id: thing.id, name: thing.name });

  test("too deep, too large, not UTF-8, not JSON, unverifiable tokens: each resolves (PUBACK), one WARN each, nothing stored", async () => {
    const events = createBrokerEvents({ store, collector: api.collector, log, payloadLimitBytes: 1024 });
    const before = (await storedMessages(store, thing.id, {})).length;
    // Signed by the thing, but with a `crit` header jose does not know: jose throws
    // JOSENotSupported, which is not one of the refusals the verifier maps.
    const critToken = signedToken(
      { alg: "RS256", kid: thing.id, typ: "JWT", crit: ["zzz"], zzz: 1 },
      { iss: `urn:thing:${thing.id}`, aud: `urn:flashlex:${thing.id}`, exp: Math.floor(Date.now() / 1000) + 300 },
    );
    const bad: [string, Buffer][] = [
      ["too deep", Buffer.from(`{"messageId":"${randomUUID()}","thingId":"${thing.id}","token":"x","payload":${nested(MAX_JSON_DEPTH + 1)}}`)],
      ["100,000 deep", Buffer.from(nested(100_000))],
      ["too large", await envelope({ payload: "x".repeat(10 * 1024) })],
      ["not UTF-8", Buffer.from([0x7b, 0xff, 0xfe, 0x7d])],
      ["not JSON", Buffer.from("not json")],
      ["an array", Buffer.from("[1,2]")],
      ["forged token", await envelope({ token: "abc.def.ghi" })],
      ["another thing's id", await envelope({ thingId: randomUUID() })],
      ["crit header", await envelope({ token: critToken })],
    ];
    for (const [what, payload] of bad) {
      const from = lines.length;
      await expect(events.handleThingPublish(publisher(), "flashlex/collect", payload), what).resolves.toBeUndefined();
      const said = lines.slice(from);
      expect(said, what).toHaveLength(1);
      expect(said[0], what).toMatch(/^<4>hub\.(collect|publish)_(dropped|refused) /);
    }
    expect((await storedMessages(store, thing.id, {})).length).toBe(before);
    // the test topic follows the same rule
    await expect(events.handleThingPublish(publisher(), "flashlex/test", Buffer.from(nested(100_000)))).resolves.toBeUndefined();
    tally("badInputs", bad.length + 1);
  });

  test("whatever the verifier throws (here a TypeError) is a refused token: acknowledged, WARN, not stored", async () => {
    class BrokenVerifier extends Collector {
      override async authenticate(): Promise<ThingRecord> {
        throw new TypeError("Cannot read properties of undefined (reading 'alg')");
      }
    }
    const events = createBrokerEvents({ store, collector: new BrokenVerifier({ store, log }), log, payloadLimitBytes: 1024 });
    const from = lines.length;
    await expect(events.handleThingPublish(publisher(), "flashlex/collect", await envelope())).resolves.toBeUndefined();
    expect(lines.slice(from)).toHaveLength(1);
    expect(lines[from]).toContain("hub.collect_refused");
    expect(lines[from]).toContain("reading 'alg'");
    tally("attacks");
  });

  test("a thing deleted between its lookup and the commit: refused as an unknown thing (acknowledged, WARN), not a failure", async () => {
    // what the store answers when the thing's row went before the batch committed
    const deleted: HubStore = Object.create(store, {
      insertMessages: { value: async (items: readonly unknown[]) => items.map(() => ({ inserted: false, message: undefined })) },
    });
    const events = createBrokerEvents({ store: deleted, collector: new Collector({ store: deleted, log }), log, payloadLimitBytes: 1024 });
    const from = lines.length;
    await expect(events.handleThingPublish(publisher(), "flashlex/collect", await envelope())).resolves.toBeUndefined();
    expect(lines.slice(from)).toHaveLength(1);
    expect(lines[from]).toContain("hub.collect_refused");
    expect(lines[from]).toContain("unknown thing");
    tally("faults");
  });

  test("a failing database rejects with StoreFailure, so the broker withholds the PUBACK and the thing resends", async () => {
    const failingInsert: HubStore = Object.create(store, {
      insertMessages: {
        value: async () => {
          throw new Error("database or disk is full");
        },
      },
    });
    const failingLookup: HubStore = Object.create(store, { getThing: { value: async () => Promise.reject(new Error("database is locked")) } });
    for (const broken of [failingInsert, failingLookup]) {
      const events = createBrokerEvents({ store: broken, collector: new Collector({ store: broken, log }), log, payloadLimitBytes: 1024 });
      await expect(events.handleThingPublish(publisher(), "flashlex/collect", await envelope())).rejects.toBeInstanceOf(StoreFailure);
      tally("faults");
    }
  });
});

/** A token signed with the thing's key over any header and claims (jose would refuse to sign some). */
function signedToken(header: Record<string, unknown>, claims: Record<string, unknown>): string {
  const input = `${Buffer.from(JSON.stringify(header)).toString("base64url")}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}`;
  return `${input}.${sign("sha256", Buffer.from(input), thingKey).toString("base64url")}`;
}

async function collectBytes(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const chunk of chunks) parts.push(chunk);
  return concat(parts);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) out.set(part, offset), (offset += part.length);
  return out;
}
