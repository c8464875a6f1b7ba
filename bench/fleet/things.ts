/**
 * The fleet's things, enrolled through the hub's enrolment API as devices would be
 * (docs/enrolment.md): one operator call makes a token good for N uses (`POST /enroll-tokens`),
 * then each thing sends `POST /enroll` with a CSR for its own name. Every CSR is made from ONE
 * EC P-256 key (the simulator's), so the hub issues N certificates for one public key: allowed
 * (the hub checks the CSR's CN, signature and key strength, not that keys differ) and it keeps
 * the simulator to one private key instead of N. No shortcut into the hub's database.
 *
 * Enrolled things are kept in bench/.cache/fleet-N (the hub home they belong to, the key and
 * each thing's id, name and certificate): every setup of a run serves a copy of that home, so
 * the things and their certificates are the same in every setup.
 */
import { generateKeyPairSync } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createCsr } from "../../src/crypto/csr.ts";
import { makeHubFixture } from "../../test/support/hub-fixture.ts";
import { serveHome } from "./hubs.ts";

/** One simulated thing: what it needs to connect (the key is the fleet's one key). */
export interface FleetThing {
  id: string;
  name: string;
  /** PEM, issued by the hub's CA for the fleet key */
  cert: string;
}

/** N things enrolled into one hub home, and what an operator needs to drive that hub. */
export interface FleetCache {
  /** the enrolled hub home (never served itself: each setup serves a copy) */
  home: string;
  /** operator token of that home */
  token: string;
  /** the one EC P-256 private key (PKCS#8 PEM) behind every certificate */
  key: string;
  ca: string;
  things: FleetThing[];
}

/** Runs `task` over 0..count-1, `parallel` at a time; the first failure rejects. */
export async function pool(count: number, parallel: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(parallel, count) }, async () => {
      while (next < count) await task(next++);
    }),
  );
}

/**
 * The cached fleet of `n` things, enrolling them first when the cache holds fewer (or none).
 * A larger cached fleet serves a smaller `n` (its first n things). `progress` hears how it goes.
 * Throws when the hub refuses an enrolment (with its answer).
 */
export async function fleetCache(cacheDir: string, n: number, progress: (m: string) => void): Promise<FleetCache> {
  const dir = join(cacheDir, "fleet");
  const manifest = join(dir, "cache.json");
  if (existsSync(manifest)) {
    const cache = { ...(JSON.parse(readFileSync(manifest, "utf8")) as FleetCache), home: join(dir, "hub") };
    if (cache.things.length >= n && existsSync(join(cache.home, "hub.db"))) return { ...cache, things: cache.things.slice(0, n) };
    if (existsSync(join(cache.home, "hub.db"))) return await enrolMore(dir, cache, n, progress);
  }
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const fixture = await makeHubFixture(dir); // dir/hub, made by the compiled binary
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const cache: FleetCache = {
    home: fixture.dir,
    token: fixture.token,
    key: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    ca: readFileSync(join(fixture.dir, "ca-cert.pem"), "utf8"),
    things: [],
  };
  return await enrolMore(dir, cache, n, progress);
}

async function enrolMore(dir: string, cache: FleetCache, n: number, progress: (m: string) => void): Promise<FleetCache> {
  const missing = n - cache.things.length;
  progress(`fleet: enrolling ${missing} things through the hub's enrolment API (kept in ${dir})`);
  const t0 = performance.now();
  const hub = await serveHome(cache.home, join(dir, "enrol.log"));
  try {
    cache.things.push(...(await enrolThings(hub.apis[0]!, cache.token, cache.key, cache.things.length, missing, progress)));
  } finally {
    await hub.stop();
  }
  writeFileSync(join(dir, "cache.json"), JSON.stringify({ ...cache, home: undefined }));
  progress(`fleet: ${missing} things enrolled in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  return { ...cache, things: cache.things.slice(0, n) };
}

/**
 * Enrols `count` things named fleetNNNNN from `start` on through the hub API `api` (a base,
 * `http://HOST:PORT/dev/v1`), every CSR made from the one private key `keyPem`: one enrolment
 * token from the operator token, then `POST /enroll` per thing, 8 at a time. Throws with the
 * hub's answer when it refuses one.
 */
export async function enrolThings(
  api: string,
  operatorToken: string,
  keyPem: string,
  start: number,
  count: number,
  progress: (m: string) => void,
): Promise<FleetThing[]> {
  const headers = { Authorization: `Bearer ${operatorToken}`, "Content-Type": "application/json" };
  const made = await fetch(`${api}/enroll-tokens`, { method: "POST", headers, body: JSON.stringify({ maxUses: count, expires: "1h" }) });
  if (made.status !== 201) throw new Error(`POST /enroll-tokens answered ${made.status}: ${await made.text()}`);
  const token = ((await made.json()) as { result: { token: string } }).result.token;
  const info = ((await (await fetch(`${api}/enroll`)).json()) as { result: { ownerPrefix: string } }).result;
  const added: FleetThing[] = new Array(count);
  await pool(count, 8, async (i) => {
    const name = `fleet${String(start + i).padStart(5, "0")}`;
    const csr = await createCsr({ privateKeyPem: keyPem, commonName: `${info.ownerPrefix}-${name}` });
    const answer = await fetch(`${api}/enroll`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token, name, csr }),
    });
    if (answer.status !== 201) throw new Error(`POST /enroll of ${name} answered ${answer.status}: ${await answer.text()}`);
    const thing = ((await answer.json()) as { result: { id: string; name: string; certificate: string } }).result;
    added[i] = { id: thing.id, name: thing.name, cert: thing.certificate };
    if ((i + 1) % 2000 === 0) progress(`fleet: ${i + 1}/${count} enrolled`);
  });
  return added;
}
