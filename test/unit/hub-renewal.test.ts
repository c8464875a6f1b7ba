/**
 * The hub's side of renewal through its HTTP API, without a socket (test/support/hub-api.ts):
 * a thing renews over its JWT, its old key stays accepted until the new key is first used and is
 * forgotten then; a CSR for another name is refused and changes nothing; rotate sets the flag
 * the thing's check reads and the renewal clears it; the operator's token routes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describeCertificate } from "../../src/crypto/certificate-info.ts";
import { createCsr } from "../../src/crypto/csr.ts";
import { signThingToken } from "../../src/crypto/jwt.ts";
import { generateThingKeyPair, loadPrivateKey } from "../../src/crypto/keys.ts";
import type { HubHome } from "../../src/hub/home/home.ts";
import { initHub } from "../../src/hub/home/init.ts";
import { distributionPath } from "../../src/hub/home/paths.ts";
import type { HubStore, ThingRecord } from "../../src/hub/store/hub-store.ts";
import { openHubStore } from "../../src/hub/store/open-store.ts";
import { renewalAdvice } from "../../src/hub/things/certificates.ts";
import { createThing } from "../../src/hub/things/provision.ts";
import { createLogger, silentLogger } from "../../src/shared/log.ts";
import { hubApiOver } from "../support/hub-api.ts";

let dir: string;
let home: HubHome;
let store: HubStore;
let api: ReturnType<typeof hubApiOver>;
let operatorToken: string;
let thing: ThingRecord;
let oldKeyPem: string;
const base = "http://hub.example:8080/dev/v1";

/** The certificate route as `who` (default: the test's thing), its token signed with `keyPem`. */
async function asThing(keyPem: string, method: "GET" | "POST", body?: unknown, who: ThingRecord = thing): Promise<{ status: number; body: any }> {
  const token = await signThingToken({ thingId: who.id, privateKey: loadPrivateKey(keyPem) });
  const response = await api.fetch(
    new Request(`${base}/things/${who.id}/certificate`, {
      method,
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    }),
  );
  return { status: response.status, body: await response.json() };
}

async function asOperator(path: string, method: string, body?: unknown): Promise<{ status: number; body: any }> {
  const response = await api.fetch(
    new Request(`${base}${path}`, {
      method,
      headers: { Authorization: `Bearer ${operatorToken}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    }),
  );
  return { status: response.status, body: await response.json() };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "flashlex-hub-renewal-"));
  const init = await initHub({
    dir: join(dir, "hub"),
    ownerId: "ecd13b11-6d91-4e8e-9156-60e451a3c975",
    apiUrl: "http://hub.example:8080",
    names: ["hub.example"],
  });
  home = init.home;
  operatorToken = init.token;
  store = await openHubStore(home.paths.database);
  api = hubApiOver({ home, store, log: silentLogger });
  // a thing whose key the test holds: its private key comes out of its distribution
  const created = await createThing(home, store, "renewer");
  thing = created.thing;
  const { unzipSync } = await import("fflate");
  const files = unzipSync(await Bun.file(created.distribution).bytes());
  oldKeyPem = new TextDecoder().decode(files[`${thing.name}/keys/${thing.name}-keypair-private.pem`]!);
});

afterAll(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("renewal over the thing's JWT", () => {
  test("the check says when the certificate ends and whether to renew; rotate sets it", async () => {
    const first = await asThing(oldKeyPem, "GET");
    expect(first.status).toBe(200);
    expect(first.body.result).toMatchObject({ renewNow: false, checkAfterSeconds: 900, lifetimeSeconds: 90 * 86_400 });
    // a zip-made thing: ten years
    expect(Date.parse(first.body.result.notAfter) - Date.now()).toBeGreaterThan(9 * 365 * 86_400_000);
    expect((await asOperator(`/things/${thing.id}/rotate`, "POST")).status).toBe(200);
    expect((await asThing(oldKeyPem, "GET")).body.result.renewNow).toBe(true);
    expect((await asOperator(`/things/${thing.id}`, "GET")).body.result.renewalRequested).toBe(true);
  });

  test("a certificate not valid yet (issued while the hub's clock was ahead: the broker refuses it) is renewed at the thing's next check (new-user pass 25, F2)", async () => {
    const { thing: ahead } = await createThing(home, store, "clock-ahead");
    const notBefore = describeCertificate(ahead.certPem).notBefore.getTime();
    // the hub issued it at `notBefore` + its backdate; its clock is right again at notBefore - 1 day
    expect(renewalAdvice(home, ahead, notBefore - 86_400_000).renewNow).toBe(true);
    expect(renewalAdvice(home, ahead, Date.now()).renewNow).toBe(false);
  });

  test("a CSR for another name is refused and changes nothing", async () => {
    const keys = await generateThingKeyPair("ec");
    const refused = await asThing(oldKeyPem, "POST", { csr: await createCsr({ privateKeyPem: keys.privateKeyPem, commonName: "ecd13b11-other" }) });
    expect(refused.status).toBe(400);
    expect((await store.getThing(thing.id))!.certSerial).toBe(thing.certSerial);
  });

  test("a renewal: new key and 90-day certificate; the old key still works until the new one is used, then not", async () => {
    const keys = await generateThingKeyPair("rsa");
    expect(existsSync(distributionPath(home.paths, thing.id))).toBe(true);
    const renewed = await asThing(oldKeyPem, "POST", { csr: await createCsr({ privateKeyPem: keys.privateKeyPem, commonName: thing.name }) });
    expect(renewed.status).toBe(200);
    // the zip held the key just replaced: deleted, not left in dists/
    expect(existsSync(distributionPath(home.paths, thing.id))).toBe(false);
    expect(renewed.body.result.certificate).toContain("BEGIN CERTIFICATE");
    const days = (Date.parse(renewed.body.result.notAfter) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(89.9);
    expect(days).toBeLessThan(90.1);
    const stored = (await store.getThing(thing.id))!;
    expect(stored.publicKeyPem).toBe(keys.publicKeyPem);
    expect(stored.renewRequestedAt).toBeNull();
    // a thing that lost the new certificate on the way still gets in with its old key...
    expect((await asThing(oldKeyPem, "GET")).status).toBe(200);
    // ...until its first token signed with the new key
    expect((await asThing(keys.privateKeyPem, "GET")).status).toBe(200);
    expect((await asThing(oldKeyPem, "GET")).status).toBe(401);
    expect((await asOperator(`/things/${thing.id}`, "GET")).body.result).toMatchObject({
      renewalRequested: false,
      certificateNotAfter: renewed.body.result.notAfter,
    });
  });

  test("a zip that cannot be removed does not fail the committed renewal: the thing gets its certificate, the hub logs an ERROR naming the zip (it answered 5xx, so the thing renewed again and again and never got one)", async () => {
    const lines: string[] = [];
    const logged = hubApiOver({ home, store, log: createLogger({ level: "info", write: (line) => lines.push(line) }) });
    const stuck = await createThing(home, store, "zip-stuck");
    const { unzipSync } = await import("fflate");
    const files = unzipSync(await Bun.file(stuck.distribution).bytes());
    const keyPem = new TextDecoder().decode(files[`${stuck.thing.name}/keys/${stuck.thing.name}-keypair-private.pem`]!);
    // something rmSync cannot take away: a directory in the zip's place
    rmSync(stuck.distribution);
    mkdirSync(join(stuck.distribution, "inside"), { recursive: true });
    const keys = await generateThingKeyPair("ec");
    const token = await signThingToken({ thingId: stuck.thing.id, privateKey: loadPrivateKey(keyPem) });
    const response = await logged.fetch(
      new Request(`${base}/things/${stuck.thing.id}/certificate`, {
        method: "POST",
        headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
        body: JSON.stringify({ csr: await createCsr({ privateKeyPem: keys.privateKeyPem, commonName: stuck.thing.name }) }),
      }),
    );
    expect(response.status).toBe(200);
    expect(((await response.json()) as any).result.certificate).toContain("BEGIN CERTIFICATE");
    expect((await store.getThing(stuck.thing.id))!.publicKeyPem).toBe(keys.publicKeyPem);
    const error = lines.find((line) => line.includes("hub.distribution_not_removed"));
    expect(error).toContain(stuck.distribution);
    expect(error).toContain("ERROR");
  });

  test("renewals at once, with one key: every certificate answered is the thing's or listed superseded; a renewal that lost the race is a 409 and its certificate listed too (4 of 6 answered were on no CRL)", async () => {
    const racer = await createThing(home, store, "racer");
    const { unzipSync } = await import("fflate");
    const files = unzipSync(await Bun.file(racer.distribution).bytes());
    const keyPem = new TextDecoder().decode(files[`${racer.thing.name}/keys/${racer.thing.name}-keypair-private.pem`]!);
    const renew = async () => {
      const keys = await generateThingKeyPair("ec");
      return asThing(keyPem, "POST", { csr: await createCsr({ privateKeyPem: keys.privateKeyPem, commonName: racer.thing.name }) }, racer.thing);
    };
    const answers = await Promise.all(Array.from({ length: 6 }, renew));
    expect(answers.every((a) => a.status === 200 || a.status === 409)).toBe(true);
    const current = (await store.getThing(racer.thing.id))!.certSerial;
    const superseded = new Set((await store.supersededCertificates(0)).filter((c) => c.thingId === racer.thing.id).map((c) => c.serial));
    for (const answer of answers.filter((a) => a.status === 200)) {
      const serial = describeCertificate(answer.body.result.certificate).serialNumber;
      expect({ serial, listed: serial === current || superseded.has(serial) }).toEqual({ serial, listed: true });
    }
    expect(superseded.size).toBeGreaterThanOrEqual(answers.filter((a) => a.status === 409).length);
  });

  test("no token, or another thing's key: 401", async () => {
    const response = await api.fetch(new Request(`${base}/things/${thing.id}/certificate`));
    expect(response.status).toBe(401);
    const stranger = await generateThingKeyPair("rsa");
    expect((await asThing(stranger.privateKeyPem, "GET")).status).toBe(401);
  });
});

describe("enrolment tokens over the API", () => {
  test("create (shown once), list (never the token), revoke; the enrol route needs no operator token", async () => {
    const created = await asOperator("/enroll-tokens", "POST", { maxUses: 2, expires: "1h", namePrefix: "s-" });
    expect(created.status).toBe(201);
    const token = created.body.result.token as string;
    expect(token).toMatch(/^flxe_/);
    const listed = await asOperator("/enroll-tokens", "GET");
    expect(JSON.stringify(listed.body)).not.toContain(token);
    expect(listed.body.result[0]).toMatchObject({ id: created.body.result.id, state: "active", maxUses: 2, namePrefix: "s-" });
    expect((await asOperator("/enroll-tokens", "POST", { expires: "forever" })).status).toBe(400);
    // a field of the wrong type is named: null made a token for names starting with "null", and null uses one use
    for (const [body, said] of [
      [{ namePrefix: null }, 'namePrefix must be a text such as "kitchen-"'],
      [{ namePrefix: 123 }, 'namePrefix must be a text such as "kitchen-"'],
      [{ namePrefix: ["ab"] }, 'namePrefix must be a text such as "kitchen-"'],
      [{ maxUses: null }, "maxUses must be a number of uses such as 10"],
      [{ maxUses: "2" }, "maxUses must be a number of uses such as 10"],
    ] as const) {
      const refused = await asOperator("/enroll-tokens", "POST", body);
      expect({ body, status: refused.status, said: refused.body.messages[0].value }).toEqual({ body, status: 400, said });
    }
    // a field the body does not take is named, not ignored ({"maxuses": 5} made a one-use token)
    const misspelt = await asOperator("/enroll-tokens", "POST", { maxuses: 5 });
    expect({ status: misspelt.status, said: misspelt.body.messages[0].value }).toEqual({
      status: 400,
      said: 'unknown field "maxuses"; the body takes maxUses, expires, namePrefix',
    });
    // every field is optional: no body at all is a token with the defaults
    const bare = await api.fetch(
      new Request(`${base}/enroll-tokens`, { method: "POST", headers: { Authorization: `Bearer ${operatorToken}`, "Content-Type": "application/json" } }),
    );
    expect(bare.status).toBe(201);
    expect((await asOperator("/things", "POST", { nmae: "typo" })).status).toBe(400);
    const info = await api.fetch(new Request(`${base}/enroll`));
    expect(info.status).toBe(200);
    expect(((await info.json()) as any).result.ownerPrefix).toBe("ecd13b11");
    // the id in either case
    expect((await asOperator(`/enroll-tokens/${created.body.result.id.toUpperCase()}`, "DELETE")).body.result.changed).toBe(true);
    expect((await asOperator("/enroll-tokens/zzz", "DELETE")).status).toBe(404);
    // an id no token has: 404 with what is missing, not 400
    const unknown = await asOperator("/enroll-tokens/abcdef012345", "DELETE");
    expect({ status: unknown.status, said: unknown.body.messages[0].value }).toEqual({
      status: 404,
      said: 'no enrolment token "abcdef012345" (see `flashlex hub enroll-token list`)',
    });
  });
});
