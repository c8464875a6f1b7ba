/**
 * The hub's half of signed self-update over its HTTP API, without a socket: a release is stored
 * only when signed with the hub's update key and matching its manifest; a rollout offers it to
 * things batch by batch and stops past its failure threshold; things poll and report with their JWT.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import type { KeyObject } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { unzipSync } from "fflate";
import { writeSignedManifest } from "../../scripts/sign-release.ts";
import { signThingToken } from "../../src/crypto/jwt.ts";
import { loadPrivateKey } from "../../src/crypto/keys.ts";
import { generateUpdateKeyPair, loadUpdatePrivateKey, signRelease } from "../../src/crypto/update-signing.ts";
import type { HubHome } from "../../src/hub/home/home.ts";
import { initHub } from "../../src/hub/home/init.ts";
import type { HubStore, ThingRecord } from "../../src/hub/store/hub-store.ts";
import { openHubStore } from "../../src/hub/store/open-store.ts";
import { createThing } from "../../src/hub/things/provision.ts";
import { updateKeyPaths } from "../../src/hub/updates/update-key.ts";
import { Updates } from "../../src/hub/updates/updates.ts";
import { MANIFEST_FILE, manifestBytes, SIGNATURE_FILE } from "../../src/protocol/release-manifest.ts";
import { createLogger, silentLogger } from "../../src/shared/log.ts";
import { hubApiOver } from "../support/hub-api.ts";

let dir: string;
let home: HubHome;
let store: HubStore;
let api: ReturnType<typeof hubApiOver>;
let token: string;
const things: { record: ThingRecord; key: KeyObject }[] = [];
const base = "http://127.0.0.1:8080/dev/v1";

/**
 * A fake binary: the ELF header of `machine` (e_machine 62 x86-64, 183 aarch64; 64-bit,
 * little-endian, what `hub release add` checks against the target name), then `text`.
 */
function fakeBinary(machine: 62 | 183, text: string): Buffer {
  const header = Buffer.alloc(20);
  header.writeUInt32BE(0x7f454c46, 0);
  header[4] = 2;
  header[5] = 1;
  header.writeUInt16LE(machine, 18);
  return Buffer.concat([header, Buffer.from(text)]);
}

/** A release directory with two fake binaries, signed with `keyPem`. */
async function releaseDir(version: string, keyPem: string): Promise<string> {
  const out = join(dir, `release-${version}-${Math.random().toString(16).slice(2)}`);
  mkdirSync(out);
  writeFileSync(join(out, "flashlex-linux-x64"), fakeBinary(62, `x64 ${version}`));
  writeFileSync(join(out, "flashlex-linux-arm64"), fakeBinary(183, `arm64 ${version}`));
  await writeSignedManifest({ dir: out, version, commit: "abc1234", signingKeyPem: keyPem });
  return out;
}

const hubKey = () => readFileSync(updateKeyPaths(home.paths.dir).privateKey, "utf8");

function operator(path: string, init: RequestInit = {}) {
  return api.fetch(new Request(`${base}${path}`, { ...init, headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" } }));
}

async function asThing(i: number, path: string, init: RequestInit = {}) {
  const { record, key } = things[i]!;
  const jwt = await signThingToken({ thingId: record.id, privateKey: key });
  return api.fetch(
    new Request(`${base}/things/${record.id}${path}`, { ...init, headers: { Authorization: `Bearer ${jwt}`, "Content-Type": "application/json" } }),
  );
}

const poll = async (i: number, version = "1.0.0") =>
  ((await (await asThing(i, `/update?version=${version}&target=linux-x64`)).json()) as any).result.update as { version: string; manifest: string } | null;
const report = (i: number, state: string, version = "2.0.0", running = "1.0.0") =>
  asThing(i, "/update", { method: "POST", body: JSON.stringify({ state, version, running, detail: `said ${state}` }) });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "flashlex-hub-updates-"));
  const init = await initHub({ dir: join(dir, "hub"), apiUrl: "http://127.0.0.1:8080" });
  home = init.home;
  token = init.token;
  store = await openHubStore(home.paths.database);
  api = hubApiOver({ home, store, log: silentLogger });
  for (const name of ["a", "b", "c", "d"]) {
    const created = await createThing(home, store, name);
    const files = unzipSync(await Bun.file(created.distribution).bytes());
    const pem = new TextDecoder().decode(files[`${created.thing.name}/keys/${created.thing.name}-keypair-private.pem`]!);
    things.push({ record: created.thing, key: loadPrivateKey(pem) });
  }
});

afterAll(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("releases", () => {
  test("hub init made the update key; its public half is served to anyone", async () => {
    const answer = await api.fetch(new Request(`${base}/update-key`));
    expect(answer.status).toBe(200);
    const { publicKey } = ((await answer.json()) as any).result;
    expect(publicKey).toBe(readFileSync(updateKeyPaths(home.paths.dir).publicKey, "utf8").trim());
  });

  test("the outbox a thing reports is two bounded whole numbers; anything else is a 400 naming it", async () => {
    expect((await asThing(0, "/update?version=1.0.0&target=linux-x64&outbox=3&outboxAge=60")).status).toBe(200);
    for (const [q, name] of [
      ["outbox=1e20&outboxAge=1", "outbox"],
      ["outbox=1&outboxAge=1e300", "outboxAge"],
      ["outbox=-1&outboxAge=1", "outbox"],
      ["outbox=1&outboxAge=9999999999999", "outboxAge"],
    ] as const) {
      const answer = await asThing(0, `/update?version=1.0.0&target=linux-x64&${q}`);
      expect(answer.status, q).toBe(400);
      expect(JSON.stringify(await answer.json())).toContain(`${name} must be a whole number from 0 to 999999999999`);
    }
  });

  test("a release signed with another key is refused, nothing stored", async () => {
    const updates = new Updates({ home, store });
    await expect(updates.addRelease(await releaseDir("9.9.9", generateUpdateKeyPair().privateKeyPem))).rejects.toThrow(/does not verify/);
    expect(await updates.listReleases()).toEqual([]);
  });

  test("a release signed more than a day ahead of the hub's clock (the signing machine's was wrong) is refused: things would refuse every release after it", async () => {
    const updates = new Updates({ home, store });
    const out = await releaseDir("8.8.8", hubKey());
    const bytes = manifestBytes({ ...JSON.parse(readFileSync(join(out, MANIFEST_FILE), "utf8")), created: "9999-12-31T23:59:59Z" });
    writeFileSync(join(out, MANIFEST_FILE), bytes);
    writeFileSync(join(out, SIGNATURE_FILE), signRelease(bytes, loadUpdatePrivateKey(hubKey())));
    await expect(updates.addRelease(out)).rejects.toThrow(
      /signed at 9999-12-31T23:59:59Z, more than a day after now .*: the signing machine's clock was wrong/,
    );
    expect(await updates.listReleases()).toEqual([]);
  });

  test("a binary that does not match the signed manifest is refused", async () => {
    const out = await releaseDir("9.9.8", hubKey());
    writeFileSync(join(out, "flashlex-linux-arm64"), fakeBinary(183, "arm64 9.9.9")); // same size, other bytes
    const updates = new Updates({ home, store });
    await expect(updates.addRelease(out)).rejects.toThrow(/does not match the signed manifest/);
    expect(await updates.listReleases()).toEqual([]);
  });

  test("a binary that is a FIFO, a device or larger than signed is refused before anything is copied (a FIFO hung the add; /dev/zero filled the disk)", async () => {
    const updates = new Updates({ home, store });
    for (const [version, place, said] of [
      ["9.9.7", (file: string) => execFileSync("mkfifo", [file]), /flashlex-linux-arm64: not a regular file; a release is the files its manifest signs/],
      ["9.9.6", (file: string) => symlinkSync("/dev/zero", file), /flashlex-linux-arm64: not a regular file/],
      [
        "9.9.5",
        (file: string) => writeFileSync(file, Buffer.alloc(5 * 1024 * 1024)),
        /flashlex-linux-arm64: does not match the signed manifest \(5242880 bytes; signed: \d+ bytes\)/,
      ],
    ] as const) {
      const out = await releaseDir(version, hubKey());
      const file = join(out, "flashlex-linux-arm64");
      rmSync(file);
      place(file);
      await expect(updates.addRelease(out)).rejects.toThrow(said);
    }
    // manifest.json and manifest.sig are read only as regular files too (a FIFO hung the add past SIGTERM)
    for (const [version, name] of [
      ["9.9.4", "manifest.json"],
      ["9.9.3", "manifest.sig"],
    ] as const) {
      const out = await releaseDir(version, hubKey());
      rmSync(join(out, name));
      execFileSync("mkfifo", [join(out, name)]);
      await expect(updates.addRelease(out)).rejects.toThrow(`${join(out, name)}: not a regular file`);
    }
    expect(await updates.listReleases()).toEqual([]);
    expect(readdirSync(join(home.paths.dir, "releases")).filter((n) => n.includes("staging"))).toEqual([]);
  });

  test("a signed release is stored once; the same version with other bytes is a conflict", async () => {
    const updates = new Updates({ home, store });
    expect((await updates.addRelease(await releaseDir("2.0.0", hubKey()))).outcome).toBe("stored");
    expect((await updates.addRelease(join(home.paths.dir, "releases", "2.0.0"))).outcome).toBe("already stored");
    const other = await releaseDir("2.0.0", hubKey());
    writeFileSync(join(other, "flashlex-linux-x64"), fakeBinary(62, "x64 changed"));
    await writeSignedManifest({ dir: other, version: "2.0.0", commit: "def5678", signingKeyPem: hubKey() });
    await expect(updates.addRelease(other)).rejects.toThrow(/already stored with another manifest/);
    expect((await updates.listReleases()).map((r) => r.version)).toStrictEqual(["2.0.0"]);
  });

  test("files removed to free space: another manifest under the version is still a conflict (the database keeps it); the same release is stored again", async () => {
    const updates = new Updates({ home, store });
    const first = await releaseDir("2.2.0", hubKey());
    expect((await updates.addRelease(first)).outcome).toBe("stored");
    rmSync(join(home.paths.dir, "releases", "2.2.0"), { recursive: true });
    const other = await releaseDir("2.2.0", hubKey());
    writeFileSync(join(other, "flashlex-linux-x64"), fakeBinary(62, "x64 other bytes"));
    await writeSignedManifest({ dir: other, version: "2.2.0", commit: "def5678", signingKeyPem: hubKey() });
    // it was "stored", exit 0: the row kept the first manifest, the files the second, and every thing failed the update
    await expect(updates.addRelease(other)).rejects.toThrow("release 2.2.0 is already stored with another manifest");
    expect((await updates.addRelease(first)).outcome).toBe("stored");
    expect(readFileSync(join(home.paths.dir, "releases", "2.2.0", "manifest.json"), "utf8")).toBe(readFileSync(join(first, "manifest.json"), "utf8"));
  });

  test("a release binary that is not the file its manifest signs (a directory, a FIFO, another size) is a 410 saying it is damaged, and an ERROR naming what was found (attack round 28, F5: an unlogged 500, an empty 200)", async () => {
    const lines: string[] = [];
    const logged = hubApiOver({ home, store, log: createLogger({ write: (line) => lines.push(line) }) });
    const updates = new Updates({ home, store });
    await updates.addRelease(await releaseDir("2.3.5", hubKey()));
    const file = join(home.paths.dir, "releases", "2.3.5", "flashlex-linux-x64");
    const { record, key } = things[0]!;
    const ask = async () => {
      const jwt = await signThingToken({ thingId: record.id, privateKey: key });
      const answer = await logged.fetch(
        new Request(`${base}/things/${record.id}/update/binary?version=2.3.5&target=linux-x64`, { headers: { Authorization: `Bearer ${jwt}` } }),
      );
      return { status: answer.status, said: ((await answer.json()) as any).messages[0].value };
    };
    const damaged = { status: 410, said: "release 2.3.5's binary for linux-x64 on the hub is damaged; add the release again" };
    rmSync(file);
    mkdirSync(file);
    expect(await ask()).toEqual(damaged);
    rmSync(file, { recursive: true });
    execFileSync("mkfifo", [file]);
    expect(await ask()).toEqual(damaged);
    rmSync(file);
    writeFileSync(file, "short");
    expect(await ask()).toEqual(damaged);
    rmSync(file);
    symlinkSync(file, file); // a link to itself (verify pass 32, F9: a 500 logged as WARN)
    expect(await ask()).toEqual(damaged);
    expect(lines.filter((l) => l.includes("ERROR hub.release_file_missing")).map((l) => /found="([^"]*)"/.exec(l)?.[1])).toEqual([
      "not a regular file",
      "not a regular file",
      expect.stringMatching(/^5 bytes, not the \d+ its manifest signs$/),
      "not readable (ELOOP)",
    ]);
  });

  test("a report's detail is logged as far as it is stored (500 characters), not its whole body (attack round 28, I4)", async () => {
    const lines: string[] = [];
    const logged = hubApiOver({ home, store, log: createLogger({ write: (line) => lines.push(line) }) });
    const { record, key } = things[2]!;
    const jwt = await signThingToken({ thingId: record.id, privateKey: key });
    const body = JSON.stringify({ state: "failed", version: "2.0.0", running: "1.0.0", detail: "x".repeat(12_000) });
    const answer = await logged.fetch(
      new Request(`${base}/things/${record.id}/update`, {
        method: "POST",
        body,
        headers: { Authorization: `Bearer ${jwt}`, "Content-Type": "application/json" },
      }),
    );
    expect(answer.status).toBe(200);
    const line = lines.find((l) => l.includes("hub.update_report"))!;
    expect(line).toContain(`detail=${"x".repeat(500)} `);
    expect(line).not.toContain("x".repeat(501));
  });

  test("a field that must be a string and is not (an array, an object with a toString key) is a 400 naming it, from a thing or an operator (attack round 28, F4: a 500 logged as a bug)", async () => {
    for (const body of [
      { state: { toString: 1 }, version: "2.0.0", running: "1.0.0" },
      { state: ["healthy"], version: "2.0.0", running: "1.0.0" },
      { state: "healthy", version: ["2.0.0"], running: "1.0.0" },
      { state: "healthy", version: "2.0.0", running: { toString: 1 } },
      { state: "failed", version: "2.0.0", running: "1.0.0", detail: 123 }, // verify pass 32, F10: dropped without a word
    ]) {
      const answer = await asThing(1, "/update", { method: "POST", body: JSON.stringify(body) });
      expect({ body, status: answer.status }).toEqual({ body, status: 400 });
    }
    for (const [body, said] of [
      [{ version: { toString: 1 }, all: true }, "version must be a string"],
      [{ version: "2.0.0", all: true, batch: { toString: "x" } }, "batch must be a string or a number"],
    ] as const) {
      const answer = await operator("/updates", { method: "POST", body: JSON.stringify(body) });
      expect({ status: answer.status, said: ((await answer.json()) as any).messages[0].value }).toEqual({ status: 400, said });
    }
  });

  test("a release whose files were removed: a thing asking for its binary hears 410 saying so (was a 500, the thing stuck at 'downloading'), and a rollout of it is refused", async () => {
    const updates = new Updates({ home, store });
    await updates.addRelease(await releaseDir("2.3.0", hubKey()));
    rmSync(join(home.paths.dir, "releases", "2.3.0"), { recursive: true });
    const gone = await asThing(0, "/update/binary?version=2.3.0&target=linux-x64");
    expect(gone.status).toBe(410);
    expect(((await gone.json()) as any).messages[0].value).toBe("release 2.3.0's binary for linux-x64 is no longer on the hub; add the release again");
    const refused = await operator("/updates", { method: "POST", body: JSON.stringify({ version: "2.3.0", all: true }) });
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as any).messages[0].value).toMatch(
      /^release 2\.3\.0's files are gone from \S+releases \(removed, or by hand\); add it again/,
    );
  });

  test("hub release remove frees a release's binaries, keeps its manifest (list says removed, a rollout is refused, the same release is stored again), and is refused while a rollout or a thing needs it (new-user pass 25, F7)", async () => {
    const updates = new Updates({ home, store });
    const dir = await releaseDir("2.4.0", hubKey());
    await updates.addRelease(dir);
    const files = join(home.paths.dir, "releases", "2.4.0");
    const size = readdirSync(files).reduce((sum, name) => sum + statSync(join(files, name)).size, 0);
    await expect(updates.removeRelease("9.9.9-none")).rejects.toThrow('no release "9.9.9-none"');
    // a rollout to it running: refused, nothing removed
    const [first] = await store.listThings();
    await updates.startRollout({ version: "2.4.0", things: [first!], batch: "1" });
    await expect(updates.removeRelease("2.4.0")).rejects.toThrow(/^release 2\.4\.0 is being rolled out \(rollout \d+\)/);
    expect(existsSync(files)).toBe(true);
    // the rollout stopped (too many failures elsewhere) while the thing downloads 2.4.0: still on its way to it
    expect(await updates.report(first!, { state: "downloading", version: "2.4.0", running: "1.0.0" })).toBe(true);
    const rollout = (await store.updates.runningRollout())!;
    await store.updates.stopRollout(rollout.id, "stopped by the test", Date.now());
    await expect(updates.removeRelease("2.4.0")).rejects.toThrow(
      `release 2.4.0 is still on its way to 1 thing: ${first!.name} (downloading); remove it once they are done (flashlex hub update status), or once a rollout to another release takes them`,
    );
    // replaced by a rollout to another release: the thing is no longer offered 2.4.0
    await updates.addRelease(await releaseDir("2.4.1", hubKey()));
    const byOther = await updates.startRollout({ version: "2.4.1", things: [first!], batch: "1" });
    expect(byOther.version).toBe("2.4.1");
    expect(await updates.removeRelease("2.4.0")).toEqual({ bytes: size });
    expect(existsSync(files)).toBe(false);
    expect(readdirSync(join(home.paths.dir, "releases")).filter((n) => n.includes("2.4.0"))).toEqual([]);
    expect((await updates.listReleases()).find((r) => r.version === "2.4.0")?.stored).toBe(false);
    const listed = ((await (await operator("/releases")).json()) as any).result.find((r: any) => r.version === "2.4.0");
    expect(listed.binaries).toBe("removed");
    await expect(updates.startRollout({ version: "2.4.0", things: [first!] })).rejects.toThrow(/files are gone/);
    expect(await updates.removeRelease("2.4.0")).toEqual({ bytes: 0 });
    expect((await updates.addRelease(dir)).outcome).toBe("stored");
    expect((await updates.listReleases()).find((r) => r.version === "2.4.0")?.stored).toBe(true);
    await store.updates.stopRollout(byOther.id, "the test is done", Date.now()); // the tests below start from no rollout
  });

  test("POST /updates/stop stops the running rollout by hand: the things not yet downloading are cancelled, one downloading still reports; none running is a 409; a release whose only thing on its way was revoked is removed (verify pass 31, F5)", async () => {
    const updates = new Updates({ home, store });
    await updates.addRelease(await releaseDir("2.5.0", hubKey()));
    const [a, b, c] = (await store.listThings()).filter((t) => t.revokedAt === null);
    await updates.startRollout({ version: "2.5.0", things: [a!, b!, c!], batch: "2" });
    expect(await updates.report(a!, { state: "downloading", version: "2.5.0", running: "1.0.0" })).toBe(true);
    const stopped = await operator("/updates/stop", { method: "POST" });
    expect(stopped.status).toBe(200);
    expect(((await stopped.json()) as any).result).toMatchObject({ version: "2.5.0", state: "stopped", stopReason: "stopped by the operator" });
    const states = new Map((await updates.status()).things.map((t) => [t.thing_id, t.state]));
    expect([states.get(a!.id), states.get(b!.id), states.get(c!.id)]).toEqual(["downloading", "cancelled", "cancelled"]);
    expect(await updates.report(a!, { state: "healthy", version: "2.5.0", running: "2.5.0" })).toBe(true);
    // b had been offered it before the stop: it downloads all the same, and what it says is kept (verify pass 32, F4)
    expect(await updates.report(b!, { state: "downloading", version: "2.5.0", running: "1.0.0" })).toBe(true);
    expect(await updates.report(b!, { state: "rolled-back", version: "2.5.0", running: "1.0.0" })).toBe(true);
    expect((await updates.status()).things.find((t) => t.thing_id === b!.id)?.state).toBe("rolled-back");
    const again = await operator("/updates/stop", { method: "POST" });
    expect(again.status).toBe(409);
    expect(((await again.json()) as any).messages[0].value).toBe("no rollout is running (flashlex hub update status)");
    expect((await operator("/updates/stop")).status).toBe(405);
    // a body would read as a condition it is not ("only this version"): refused (verify pass 32, F10)
    expect((await operator("/updates/stop", { method: "POST", body: '{"version":"9.9.9"}' })).status).toBe(400);

    // a rollout whose one thing is revoked while offered: neither it nor its row holds the release
    const lone = (await createThing(home, store, "lone")).thing;
    await updates.startRollout({ version: "2.5.0", things: [lone], batch: "1" });
    await store.revokeThing(lone.id, Date.now());
    expect(await updates.removeRelease("2.5.0")).toMatchObject({ bytes: expect.any(Number) });
    expect((await store.updates.latestRollout())?.state).toBe("done");
  });

  test("a thing left downloading by a stop that polls again is settled: cancelled when it runs the old version (the release can then be removed), healthy when it runs the new one (verify pass 32)", async () => {
    const updates = new Updates({ home, store });
    await updates.addRelease(await releaseDir("2.6.0", hubKey()));
    const [a, b] = (await store.listThings()).filter((t) => t.revokedAt === null);
    await updates.startRollout({ version: "2.6.0", things: [a!, b!], batch: "2" });
    for (const thing of [a!, b!]) expect(await updates.report(thing, { state: "downloading", version: "2.6.0", running: "1.0.0" })).toBe(true);
    // the gauges' summary (docs/metrics.md), counted in the database
    const during = await updates.rolloutSummary();
    expect(during).toMatchObject({ running: true, states: { downloading: 2, healthy: 0, cancelled: 0, queued: 0 } });
    await updates.stopRunningRollout("stopped by the operator");
    // a's download was cut off (serve restarted): it polls on the old version; b installed, its report lost
    expect(await updates.poll(a!, { version: "1.0.0", target: "linux-x64" })).toBeUndefined();
    expect(await updates.poll(b!, { version: "2.6.0", target: "linux-x64" })).toBeUndefined();
    const rows = new Map((await updates.status()).things.map((t) => [t.thing_id, t]));
    expect(rows.get(a!.id)).toMatchObject({ state: "cancelled", detail: "the rollout stopped before it installed 2.6.0" });
    expect(rows.get(b!.id)).toMatchObject({ state: "healthy", detail: "runs 2.6.0" });
    const after = await updates.rolloutSummary();
    expect(after).toMatchObject({ running: false, states: { downloading: 0, healthy: 1, cancelled: 1 } });
    expect(after.versions["2.6.0"]).toBe(1);
    const notRevoked = (await store.listThings()).filter((t) => t.revokedAt === null).length;
    expect(Object.values(after.versions).reduce((sum, n) => sum + n, 0)).toBe(notRevoked);
    // nothing is on its way to 2.6.0 now: before, a stayed `downloading` and held the release for ever
    expect(await updates.removeRelease("2.6.0")).toMatchObject({ bytes: expect.any(Number) });
  });

  test("two adds of one release at once: both succeed, one stores it and the other finds it stored; a killed add's copy is removed", async () => {
    const releases = join(home.paths.dir, "releases");
    const killed = join(releases, ".2.0.9.staging-4194399-Ab12Cd"); // above Linux's largest pid: no such process
    mkdirSync(join(killed), { recursive: true });
    writeFileSync(join(killed, "flashlex-linux-x64"), "half a binary");
    const out = await releaseDir("2.1.0", hubKey());
    const outcomes = await Promise.all([new Updates({ home, store }).addRelease(out), new Updates({ home, store }).addRelease(out)]);
    expect(outcomes.map((o) => o.outcome).sort()).toStrictEqual(["already stored", "stored"]);
    expect(readdirSync(releases).filter((name) => name.startsWith("."))).toEqual([]);
  });

  test("a folder without its manifest or signature is named with the file that is missing; a file is not a folder", async () => {
    const updates = new Updates({ home, store });
    const out = await releaseDir("9.9.7", hubKey());
    rmSync(join(out, "manifest.sig"));
    await expect(updates.addRelease(out)).rejects.toThrow(`${out}: no manifest.sig; make the release`);
    rmSync(join(out, "manifest.json"));
    await expect(updates.addRelease(out)).rejects.toThrow(`${out}: no manifest.json and no manifest.sig;`);
    await expect(updates.addRelease(join(out, "flashlex-linux-x64"))).rejects.toThrow("flashlex-linux-x64: not a directory; give the release's folder");
    // a path through that file names it; a path to nothing says so
    const through = join(out, "flashlex-linux-x64", "sub");
    await expect(updates.addRelease(through)).rejects.toThrow(
      `${through}: ${join(out, "flashlex-linux-x64")} is a file, not a directory; give the release's folder`,
    );
    await expect(updates.addRelease(join(out, "none"))).rejects.toThrow(`${join(out, "none")}: does not exist; give the release's folder`);
  });
});

describe("a rollout in batches", () => {
  test("batches of 50%: the second batch waits for the first; a failure past the threshold stops it", async () => {
    // nothing is offered before a rollout
    expect(await poll(0)).toBeNull();
    const started = await operator("/updates", {
      method: "POST",
      body: JSON.stringify({ version: "2.0.0", things: things.map((t) => t.record.name), batch: "50%", maxFailures: 0 }),
    });
    expect(started.status).toBe(201);
    // the API's JSON: camelCase, times as ISO 8601, as every other answer
    const rollout = ((await started.json()) as any).result;
    expect(rollout).toMatchObject({ batchSize: 2, maxFailures: 0, state: "running", stopReason: null, finishedAt: null });
    expect(rollout.createdAt).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);

    const offered = await Promise.all([0, 1, 2, 3].map((i) => poll(i)));
    expect(offered.map((o) => o?.version ?? null)).toStrictEqual(["2.0.0", "2.0.0", null, null]);
    expect(JSON.parse(offered[0]!.manifest).version).toBe("2.0.0");

    // the binary of the offered release, for the thing's target
    const binary = await asThing(0, "/update/binary?version=2.0.0&target=linux-x64");
    expect(Buffer.from(await binary.arrayBuffer()).equals(fakeBinary(62, "x64 2.0.0"))).toBe(true);
    expect((await asThing(0, "/update/binary?version=2.0.0&target=linux-armv7")).status).toBe(404);

    await report(0, "downloading");
    await report(0, "installed");
    await report(0, "healthy", "2.0.0", "2.0.0");
    expect(await poll(2)).toBeNull(); // thing 1 is still on its way
    await report(1, "rolled-back", "2.0.0", "1.0.0");

    const status = ((await (await operator("/updates")).json()) as any).result;
    expect(status.rollout.state).toBe("stopped");
    expect(status.rollout.stopReason).toMatch(/^1 thing failed or rolled back, more than --max-failures 0$/);
    expect(status.things[0]).toMatchObject({ toVersion: "2.0.0", target: "linux-x64", outbox: { depth: 3 } });
    expect([status.things[0].seenAt, status.things[0].outbox.oldestAt]).toEqual([expect.stringMatching(/Z$/), expect.stringMatching(/Z$/)]);
    const byName = Object.fromEntries(status.things.map((t: { name: string; state: string; version: string }) => [t.name, [t.state, t.version]]));
    expect(byName[things[0]!.record.name]).toEqual(["healthy", "2.0.0"]);
    expect(byName[things[1]!.record.name]).toEqual(["rolled-back", "1.0.0"]);
    expect(byName[things[2]!.record.name]).toEqual(["cancelled", "1.0.0"]);
    expect(await poll(2)).toBeNull();
  });

  test('POST /updates refuses a maxFailures that is not a whole number in range, and a bad batch, without naming CLI flags (-5 stopped the rollout at once, 1.5 was stored, "2" read as 0)', async () => {
    for (const [field, value, said] of [
      ["maxFailures", -5, "maxFailures must be a whole number from 0 to 1000000, not -5"],
      ["maxFailures", 1.5, "maxFailures must be a whole number from 0 to 1000000, not 1.5"],
      ["maxFailures", "2", 'maxFailures must be a whole number from 0 to 1000000, not "2"'],
      ["batch", "0", "batch 0: give a percentage of the things (10%) or a number of things (5)"],
    ] as const) {
      const refused = await operator("/updates", { method: "POST", body: JSON.stringify({ version: "2.0.0", all: true, [field]: value }) });
      expect({ field, value, status: refused.status, error: ((await refused.json()) as any).messages[0].value }).toEqual({
        field,
        value,
        status: 400,
        error: said,
      });
    }
  });

  test("POST /updates refuses things with all, things that is not a list, and any other field: a canary of one thing took the whole fleet, a misspelt max_failures the default", async () => {
    const rolloutNow = async () => ((await (await operator("/updates")).json()) as any).result.rollout?.id;
    const before = await rolloutNow();
    for (const [body, said] of [
      [{ version: "2.0.0", things: ["nosuch"], all: true }, "give things or all, not both"],
      [{ version: "2.0.0", all: "yes" }, "all must be true (or left out, with things)"],
      [{ version: "2.0.0", things: "t1" }, 'things must be an array of thing names or ids (or give "all": true)'],
      [{ version: "2.0.0" }, 'things must be an array of thing names or ids (or give "all": true)'],
      [{ version: "2.0.0", all: true, max_failures: 5 }, 'unknown field "max_failures"; the body takes version, things, all, batch, maxFailures'],
    ] as const) {
      const refused = await operator("/updates", { method: "POST", body: JSON.stringify(body) });
      expect({ body, status: refused.status, error: ((await refused.json()) as any).messages[0].value }).toEqual({ body, status: 400, error: said });
    }
    expect(await rolloutNow()).toBe(before);
  });

  test("with room for failures the next batch follows, and a thing already on the version is healthy at once", async () => {
    const started = await operator("/updates", {
      method: "POST",
      body: JSON.stringify({ version: "2.0.0", all: true, batch: "1", maxFailures: 1 }),
    });
    expect(started.status).toBe(201);
    // thing 0 runs 2.0.0 already: not in a batch; thing 1 is the first batch
    expect(await poll(0, "2.0.0")).toBeNull();
    expect((await poll(1))?.version).toBe("2.0.0");
    expect(await poll(2)).toBeNull();
    await report(1, "failed");
    expect((await poll(2))?.version).toBe("2.0.0");
    await report(2, "healthy", "2.0.0", "2.0.0");
    expect((await poll(3))?.version).toBe("2.0.0");
    await report(3, "healthy", "2.0.0", "2.0.0");
    const status = ((await (await operator("/updates")).json()) as any).result;
    expect(status.rollout.state).toBe("done");
  });

  test("a thing of the current batch revoked or deleted mid-rollout does not hold it: the next batch goes, at once or at the hub's next poll", async () => {
    const extra = await Promise.all(["e", "f", "g"].map((name) => createThing(home, store, name)));
    const [e, f, g] = extra.map((x) => x.thing);
    const updates = new Updates({ home, store });
    const request = { version: "2.0.0", batch: "1", maxFailures: 0 };
    // e named twice is one thing (one batch of 1 for it, not two)
    await updates.startRollout({ ...request, things: [e!, e!, f!, g!] });
    const state = async (id: string) => (await updates.forThing(id))?.state;
    expect([await state(e!.id), await state(f!.id), await state(g!.id)]).toEqual(["pending", "queued", "queued"]);
    expect(await Promise.all([e!, f!, g!].map(async (t) => (await updates.forThing(t.id))?.batch))).toStrictEqual([0, 1, 2]);
    // e is revoked (by any process): it will never poll; the hub's poll advances the rollout
    await store.revokeThing(e!.id, Date.now());
    await updates.advanceRunning();
    expect([await state(f!.id), await state(g!.id)]).toEqual(["pending", "queued"]);
    // f is deleted: the same, and the rollout ends when g is done
    await store.deleteThing(f!.id);
    await updates.advanceRunning();
    expect(await state(g!.id)).toBe("pending");
    await updates.advanceRunning(); // nothing to do while g works
    expect((await updates.status()).rollout?.state).toBe("running");
  });

  test("things authenticate with their own JWT; the operator routes need the operator token", async () => {
    const other = things[1]!;
    const jwt = await signThingToken({ thingId: other.record.id, privateKey: other.key });
    const answer = await api.fetch(
      new Request(`${base}/things/${things[0]!.record.id}/update?version=1.0.0&target=linux-x64`, { headers: { Authorization: `Bearer ${jwt}` } }),
    );
    expect(answer.status).toBe(401);
    expect((await api.fetch(new Request(`${base}/updates`))).status).toBe(401);
    expect((await api.fetch(new Request(`${base}/releases`))).status).toBe(401);
  });
});
