/**
 * adoptLostRenewal (src/hub/things/certificates.ts): after the hub's database was put back from a
 * backup older than a thing's renewal, the certificate the hub issued since is taken at the
 * thing's connection; nothing else is.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describeCertificate } from "../../src/crypto/certificate-info.ts";
import { generateThingKeyPair } from "../../src/crypto/keys.ts";
import { createCertificateAuthority, issueThingCertificate } from "../../src/crypto/x509.ts";
import { type HubHome, readCa } from "../../src/hub/home/home.ts";
import { initHub } from "../../src/hub/home/init.ts";
import type { HubStore, ThingRecord } from "../../src/hub/store/hub-store.ts";
import { openHubStore } from "../../src/hub/store/open-store.ts";
import { adoptLostRenewal, issueWithLifetime } from "../../src/hub/things/certificates.ts";
import { createThing } from "../../src/hub/things/provision.ts";

const LIFETIME_MS = 90 * 86_400_000;
let root: string;
let home: HubHome;
let store: HubStore;
let thing: ThingRecord;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "flashlex-lost-renewal-"));
  home = (await initHub({ dir: join(root, "hub"), ownerId: "ecd13b11-6d91-4e8e-9156-60e451a3c975", names: ["hub.example"] })).home;
  store = await openHubStore(home.paths.database);
  await createThing(home, store, "pump", Date.now, { keyType: "ec" });
  await createThing(home, store, "valve", Date.now, { keyType: "ec" });
  thing = (await store.getThingByName(`${home.settings.ownerId.slice(0, 8)}-pump`))!;
});

afterAll(async () => {
  await store.close();
  rmSync(root, { recursive: true, force: true });
});

/** A certificate of this hub's CA for `name` (and the thing id `id`, the pump's unless given) and a new key, issued at `at` (Unix ms). */
async function issued(name: string, at: number, id = thing.id): Promise<{ certPem: string; publicKeyPem: string }> {
  const { publicKeyPem } = await generateThingKeyPair("ec");
  return { certPem: await issueWithLifetime(home, { id, name }, publicKeyPem, LIFETIME_MS, at), publicKeyPem };
}

const current = async () => (await store.getThingByName(thing.name))!;

test("refuses what the hub did not issue after the certificate it holds for the thing, and changes nothing", async () => {
  const now = Date.now();
  const stranger = await createCertificateAuthority({ commonName: "not the hub" });
  const { publicKeyPem } = await generateThingKeyPair("ec");
  const cases: [string, string][] = [
    [await issueThingCertificate(stranger, { thingName: thing.name, publicKeyPem }), "not issued by this hub's CA"],
    [(await issued(thing.name.replace("pump", "valve"), now + 60_000)).certPem, `issued for "${thing.name.replace("pump", "valve")}", not ${thing.name}`],
    [(await issued(thing.name, now - 60_000)).certPem, "issued before the certificate the hub holds for the thing"],
    [
      await issueThingCertificate(readCa(home.paths), { thingName: thing.name, publicKeyPem, days: 1, notBefore: new Date(now - 2 * 86_400_000) }),
      "not valid now",
    ],
    ["not a certificate", "not a certificate"],
    // its name, but another thing's id: the pump deleted and made again after the backup (new-user pass 28, F2)
    [
      (await issued(thing.name, now + 60_000, "0f0e0d0c-0b0a-4009-8807-060504030201")).certPem,
      `issued for the thing with id "0f0e0d0c-0b0a-4009-8807-060504030201", not ${thing.id}`,
    ],
  ];
  for (const [certPem, why] of cases) expect(await adoptLostRenewal(home, store, thing, certPem, now)).toBe(why);
  expect((await current()).certSerial).toBe(thing.certSerial);
});

test("takes a newer certificate of the hub's CA for the thing; the key the database knew becomes the previous one", async () => {
  const renewed = await issued(thing.name, Date.now() + 60_000);
  expect(await adoptLostRenewal(home, store, thing, renewed.certPem, Date.now())).toBeUndefined();
  const after = await current();
  expect(after.certSerial).toBe(describeCertificate(renewed.certPem).serialNumber);
  expect(after.publicKeyPem).toBe(renewed.publicKeyPem);
  expect(after.previousPublicKeyPem).toBe(thing.publicKeyPem);
  expect(after.previousCertSerial).toBe(thing.certSerial);
});

test("refuses a certificate the hub superseded, however new", async () => {
  const holder = await current();
  const newest = await issued(thing.name, Date.now() + 120_000);
  const serial = describeCertificate(newest.certPem).serialNumber;
  await store.replaceCertificate(holder.id, {
    publicKeyPem: holder.publicKeyPem,
    certPem: holder.certPem,
    certSerial: holder.certSerial ?? "",
    certNotAfter: holder.certNotAfter ?? 0,
    previousPublicKeyPem: holder.previousPublicKeyPem ?? holder.publicKeyPem,
    previousCertSerial: holder.previousCertSerial ?? null,
    previousCertNotAfter: holder.previousCertNotAfter ?? null,
    superseded: [{ serial, notAfter: Date.now() + LIFETIME_MS }],
    at: Date.now(),
    expected: { publicKeyPem: holder.publicKeyPem, certSerial: holder.certSerial },
    onConflict: "keep",
  });
  expect(await adoptLostRenewal(home, store, holder, newest.certPem, Date.now())).toBe("a certificate the hub superseded");
  expect((await current()).certSerial).toBe(holder.certSerial);
});

test("a thing certificate names the thing's id in its SAN, as the hub issues it now; one from an older hub, with no id, is judged by its name", async () => {
  expect(describeCertificate((await issued(thing.name, Date.now())).certPem).thingId).toBe(thing.id);
  const { publicKeyPem } = await generateThingKeyPair("ec");
  const older = await issueThingCertificate(readCa(home.paths), { thingName: thing.name, publicKeyPem, notBefore: new Date(Date.now() + 30_000) });
  expect(describeCertificate(older).thingId).toBeUndefined();
  expect(await adoptLostRenewal(home, store, await current(), older, Date.now() + 60_000)).toBeUndefined();
  expect((await current()).certSerial).toBe(describeCertificate(older).serialNumber);
});
