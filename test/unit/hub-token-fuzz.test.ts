/**
 * Every thing token the hub cannot verify is a 401 in the API's envelope: never a 500, never an
 * ERROR line in the hub's log, whatever jose (or anything else) makes of it. fast-check
 * generates the tokens and the real `hubApiOver(...).fetch` handler answers them, for an RSA
 * thing (RS256) and an EC thing (ES256):
 *
 *   mutated    a valid token with one segment (header, payload or signature) changed: a
 *              character replaced, cut short, grown, emptied, made huge, swapped for random
 *              base64url, or the dots themselves disturbed
 *   random     random strings and three random base64url segments
 *   signed     tokens with a *valid signature* over odd headers and claims (wrong or mistyped
 *              alg, kid, typ, crit, b64, iss, aud, exp, nbf, iat, non-JSON and non-object
 *              payloads), so that every claim check behind the signature is reached
 *   sizes      empty and huge parts
 *
 * The same tokens go through the MQTT egress path (a collect envelope on flashlex/collect),
 * which must drop them without throwing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { sign as cryptoSign, type KeyObject } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { unzipSync } from "fflate";
import { signThingToken } from "../../src/crypto/jwt.ts";
import { loadPrivateKey } from "../../src/crypto/keys.ts";
import { createBrokerEvents } from "../../src/hub/broker/events.ts";
import type { HubHome } from "../../src/hub/home/home.ts";
import { initHub } from "../../src/hub/home/init.ts";
import { bearerToken } from "../../src/hub/home/tokens.ts";
import type { HubStore, ThingRecord } from "../../src/hub/store/hub-store.ts";
import { openHubStore } from "../../src/hub/store/open-store.ts";
import { createThing } from "../../src/hub/things/provision.ts";
import { createLogger } from "../../src/shared/log.ts";
import { hubApiOver } from "../support/hub-api.ts";
import { storedMessages } from "../support/hub-messages.ts";
import { tally } from "../support/tally.ts";

interface Subject {
  thing: ThingRecord;
  key: KeyObject;
  alg: "RS256" | "ES256";
}

let dir: string;
let home: HubHome;
let store: HubStore;
let api: ReturnType<typeof hubApiOver>;
let rsa: Subject;
let ec: Subject;
const logLines: string[] = [];
let tried = 0;

async function provision(name: string, keyType: "rsa" | "ec"): Promise<Subject> {
  const { thing, distribution } = await createThing(home, store, name, Date.now, { keyType });
  const files = unzipSync(await Bun.file(distribution).bytes());
  const key = loadPrivateKey(new TextDecoder().decode(files[`${thing.name}/keys/${thing.name}-keypair-private.pem`]!));
  return { thing, key, alg: keyType === "rsa" ? "RS256" : "ES256" };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "flashlex-token-fuzz-"));
  home = (await initHub({ dir: join(dir, "hub"), ownerId: "ecd13b11-6d91-4e8e-9156-60e451a3c975", apiUrl: "http://hub.example:8080" })).home;
  store = await openHubStore(home.paths.database);
  api = hubApiOver({ home, store, log: createLogger({ level: "debug", write: (line) => logLines.push(line) }) });
  [rsa, ec] = await Promise.all([provision("fuzz-rsa", "rsa"), provision("fuzz-ec", "ec")]);
});

afterAll(async () => {
  tally("attacks", tried);
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const b64 = (bytes: string | Uint8Array) => Buffer.from(bytes).toString("base64url");
const json64 = (value: unknown) => b64(JSON.stringify(value));
const nowS = () => Math.floor(Date.now() / 1000);

/** A JWS over whatever header and payload bytes, signed correctly with the thing's key. */
function signRaw(subject: Subject, header: string, payload: string): string {
  const input = `${header}.${payload}`;
  const signature =
    subject.alg === "RS256"
      ? cryptoSign("sha256", Buffer.from(input), subject.key)
      : cryptoSign("sha256", Buffer.from(input), { key: subject.key, dsaEncoding: "ieee-p1363" });
  return `${input}.${b64(signature)}`;
}

/** POSTs to collect with `token`; undefined when HTTP itself cannot carry it (a header with a newline). */
async function post(subject: Subject, token: string): Promise<Response | undefined> {
  let request: Request;
  try {
    request = new Request(`http://hub.example:8080/dev/v1/things/${subject.thing.id}/collect`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: '{"fuzz":true}',
    });
  } catch {
    return undefined;
  }
  return api.fetch(request);
}

/** The property every refused token must have: 401, the envelope, a Bearer challenge, no ERROR logged. */
async function expectRefused(subject: Subject, token: string): Promise<void> {
  const errorsBefore = logLines.filter((l) => / ERROR /.test(l)).length;
  const response = await post(subject, token);
  if (!response) return;
  tried++;
  const body = await response.text();
  if (response.status !== 401) throw new Error(`status ${response.status} for token ${JSON.stringify(token.slice(0, 300))}: ${body}`);
  expect(JSON.parse(body)).toEqual({ status: "ERROR", code: 401, messages: [{ key: "error", value: "the thing token was refused" }], result: null });
  expect(response.headers.get("www-authenticate")).toStartWith("Bearer");
  expect(logLines.filter((l) => / ERROR /.test(l)).length).toBe(errorsBefore);
}

const subjects = fc.constantFrom("rsa", "ec").map((k) => (k === "rsa" ? rsa : ec));
const BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const base64urlText = (maxLength: number) => fc.string({ unit: fc.constantFrom(...BASE64URL), maxLength });
const anyJson = fc.jsonValue({ maxDepth: 3 });

/** Ways to change one segment; each returns the new segment text. */
const segmentMutation = fc.oneof(
  fc.record({ kind: fc.constant("replace char" as const), at: fc.nat(), ch: fc.constantFrom(...BASE64URL, "=", "+", "/", " ", "%", "\u00e9", "\u0000") }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("append" as const), text: fc.string({ maxLength: 12 }) }),
  fc.record({ kind: fc.constant("empty" as const) }),
  fc.record({ kind: fc.constant("huge" as const), size: fc.integer({ min: 1000, max: 20_000 }) }),
  fc.record({ kind: fc.constant("random base64url" as const), text: base64urlText(400) }),
  fc.record({ kind: fc.constant("random JSON" as const), value: anyJson }),
);

type SegmentMutation = typeof segmentMutation extends fc.Arbitrary<infer T> ? T : never;

function mutate(segment: string, m: SegmentMutation): string {
  switch (m.kind) {
    case "replace char": {
      if (segment.length === 0) return m.ch;
      const i = m.at % segment.length;
      return segment.slice(0, i) + m.ch + segment.slice(i + 1);
    }
    case "truncate":
      return segment.slice(0, segment.length ? m.at % segment.length : 0);
    case "append":
      return segment + m.text;
    case "empty":
      return "";
    case "huge":
      return "A".repeat(m.size);
    case "random base64url":
      return m.text;
    case "random JSON":
      return json64(m.value);
  }
}

/** Claims and header values, each either right or wrong; `odd` is true when at least one is wrong. */
function oddOrRight<T>(right: T, odd: fc.Arbitrary<unknown>) {
  return fc.oneof(
    fc.constant({ value: right as unknown, odd: false }),
    odd.map((value) => ({ value, odd: true })),
  );
}

const MISSING = Symbol("missing");
const wrongScalar = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.integer(),
  fc.double(),
  fc.constant(null),
  fc.boolean(),
  fc.array(fc.string(), { maxLength: 3 }),
  fc.constant(MISSING),
);

describe("every token the hub cannot verify is a 401, never a 500", () => {
  test("valid tokens with one segment mutated", async () => {
    await fc.assert(
      fc.asyncProperty(subjects, fc.constantFrom(0, 1, 2), segmentMutation, async (subject, which, mutation) => {
        const token = await signThingToken({ thingId: subject.thing.id, privateKey: subject.key });
        const parts = token.split(".");
        parts[which] = mutate(parts[which]!, mutation);
        const changed = parts.join(".");
        // A mutation that changed nothing, or only appended blanks that HTTP and the Bearer
        // syntax drop (RFC 9110 §5.5, RFC 6750 §2.1): the hub reads the very token it signed.
        if (bearerToken(`Bearer ${changed}`) === token) return;
        await expectRefused(subject, changed);
      }),
      { numRuns: 400 },
    );
  });

  test("the dots disturbed: too few, too many, doubled, at the ends", async () => {
    const shapes = [
      (t: string) => t.replaceAll(".", ""),
      (t: string) => t.replace(".", ".."),
      (t: string) => `.${t}`,
      (t: string) => `${t}.`,
      (t: string) => `${t}.${t}`,
      (t: string) => t.split(".").slice(0, 2).join("."),
    ];
    for (const subject of [rsa, ec]) {
      const token = await signThingToken({ thingId: subject.thing.id, privateKey: subject.key });
      for (const shape of shapes) await expectRefused(subject, shape(token));
    }
  });

  test("random strings and random three-segment base64url", async () => {
    await fc.assert(
      fc.asyncProperty(
        subjects,
        fc.oneof(
          fc.string({ maxLength: 300 }),
          fc.string({ unit: "binary", maxLength: 100 }),
          fc.tuple(base64urlText(200), base64urlText(400), base64urlText(400)).map((p) => p.join(".")),
        ),
        async (subject, token) => {
          if (token.trim() === "") return; // no token at all is a different answer (a bare Bearer challenge), tested in hub-api
          await expectRefused(subject, token);
        },
      ),
      { numRuns: 300 },
    );
  });

  test("correctly signed tokens with odd headers and claims", async () => {
    const header = (subject: Subject) =>
      fc.record({
        alg: oddOrRight(
          subject.alg,
          fc.oneof(fc.constantFrom("none", "HS256", "RS384", "PS256", "ES384", "EdDSA", "", subject.alg === "RS256" ? "ES256" : "RS256"), wrongScalar),
        ),
        kid: oddOrRight(subject.thing.id, fc.oneof(fc.uuid(), wrongScalar)),
        typ: oddOrRight(
          "JWT",
          fc.oneof(
            fc.constantFrom("at+jwt", "JWS", "jwt+x"),
            wrongScalar.filter((v) => v !== MISSING),
          ),
        ),
        // never MISSING: `crit` absent is the `undefined` of fc.option (a MISSING symbol would be
        // dropped by JSON.stringify and leave a right token counted as odd)
        crit: fc.option(
          fc.oneof(
            fc.constant([]),
            fc.array(fc.string({ maxLength: 8 }), { minLength: 1, maxLength: 3 }),
            fc.constant(["b64"]),
            wrongScalar.filter((v) => v !== MISSING),
          ),
          { nil: undefined },
        ),
        b64: fc.option(fc.boolean(), { nil: undefined }),
      });
    const claims = (subject: Subject) =>
      fc.record({
        iss: oddOrRight(`urn:thing:${subject.thing.id}`, fc.oneof(fc.constant(`urn:thing:${subject.thing.id.toUpperCase()}`), wrongScalar)),
        aud: oddOrRight(
          `urn:flashlex:${subject.thing.id}`,
          fc.oneof(fc.constant([`urn:flashlex:${subject.thing.id}`, "urn:other"]), fc.constant([]), wrongScalar),
        ),
        nbf: oddOrRight(
          nowS() - 360,
          fc.oneof(fc.constant(nowS() + 3600), fc.string(), fc.constant(null), fc.constant([1]), fc.constant(1e308), fc.constant(-1e308)),
        ),
        exp: oddOrRight(
          nowS() + 360,
          fc.oneof(
            fc.constant(nowS() - 3600),
            fc.constant(nowS() + 100_000),
            fc.constant(1e308),
            fc.constant(-1),
            fc.string(),
            fc.constant(null),
            fc.constant(MISSING),
          ),
        ),
        iat: oddOrRight(nowS(), fc.oneof(fc.string(), fc.constant(null), fc.constant({}), fc.constant(true))),
        extra: fc.dictionary(
          fc.string({ maxLength: 8 }).map((k) => `x_${k}`),
          anyJson,
          { maxKeys: 3 },
        ),
      });
    const build = (fields: Record<string, { value: unknown; odd: boolean } | unknown>) => {
      const out: Record<string, unknown> = {};
      let odd = false;
      for (const [k, v] of Object.entries(fields)) {
        if (v === undefined) continue;
        if (v && typeof v === "object" && "odd" in (v as object)) {
          const { value, odd: isOdd } = v as { value: unknown; odd: boolean };
          odd ||= isOdd;
          if (value !== MISSING) out[k] = value;
        } else out[k] = v;
      }
      return { value: out, odd };
    };
    const payloadBytes = fc.oneof(
      { weight: 8, arbitrary: fc.constant(undefined) },
      { weight: 1, arbitrary: fc.string({ maxLength: 40 }).map((s) => Buffer.from(s)) }, // not JSON (or JSON that is not an object)
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)) }, // not even UTF-8
      { weight: 1, arbitrary: anyJson.map((v) => Buffer.from(JSON.stringify(v))) },
    );

    for (const subject of [rsa, ec]) {
      await fc.assert(
        fc.asyncProperty(header(subject), claims(subject), payloadBytes, async (h, c, rawPayload) => {
          const builtHeader = build(h);
          const { extra, ...claimFields } = c;
          const builtClaims = build({ ...claimFields, ...extra });
          // A critical extension or b64 at all makes the token one the hub does not accept, whatever its value.
          const headerOdd = builtHeader.odd || "crit" in builtHeader.value || "b64" in builtHeader.value;
          const payload = rawPayload ? b64(rawPayload) : json64(builtClaims.value);
          const token = signRaw(subject, json64(builtHeader.value), payload);
          if (!headerOdd && !builtClaims.odd && !rawPayload) {
            // Everything right: the control that the generator also reaches acceptance.
            const response = (await post(subject, token))!;
            expect(response.status).toBe(200);
            return;
          }
          await expectRefused(subject, token);
        }),
        { numRuns: 300 },
      );
    }
  });

  test("empty and huge parts", async () => {
    for (const subject of [rsa, ec]) {
      const [h, p, s] = (await signThingToken({ thingId: subject.thing.id, privateKey: subject.key })).split(".");
      const huge = "A".repeat(100_000);
      for (const token of [
        "..",
        `${h}..`,
        `.${p}.`,
        `..${s}`,
        `${h}.${p}.`,
        `${huge}.${p}.${s}`,
        `${h}.${huge}.${s}`,
        `${h}.${p}.${huge}`,
        `${huge}.${huge}.${huge}`,
        "a".repeat(8193),
      ]) {
        await expectRefused(subject, token);
      }
    }
  });

  test("the same tokens over MQTT: a collect envelope with any of them is dropped without throwing", async () => {
    const events = createBrokerEvents({
      store,
      collector: api.collector,
      log: createLogger({ write: (line) => logLines.push(line) }),
      payloadLimitBytes: 256 * 1024,
    });
    const before = (await storedMessages(store, rsa.thing.id, {})).length;
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(0, 1, 2), segmentMutation, async (which, mutation) => {
        const token = await signThingToken({ thingId: rsa.thing.id, privateKey: rsa.key });
        const parts = token.split(".");
        parts[which] = mutate(parts[which]!, mutation);
        if (parts.join(".") === token) return;
        tried++;
        const envelope = JSON.stringify({ messageId: crypto.randomUUID(), thingId: rsa.thing.id, token: parts.join("."), payload: { fuzz: true } });
        await events.handleThingPublish(undefined, "flashlex/collect", Buffer.from(envelope));
      }),
      { numRuns: 150 },
    );
    expect((await storedMessages(store, rsa.thing.id, {})).length).toBe(before);
    expect(logLines.filter((l) => / ERROR /.test(l))).toEqual([]);
  });
});
