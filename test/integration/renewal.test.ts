/**
 * Certificates that renew themselves, against the compiled binary and `hub serve` on loopback
 * (docs/enrolment.md). The hub gives certificates a 30-second lifetime and asks things to check
 * every second, so the agent renews by itself within the test:
 *
 *   lifetime     `serve` renews at two thirds of the lifetime, commits after its first
 *                connection, and the hub lists the new expiry and serial; the superseded
 *                key and certificate no longer connect to the hub's broker
 *   rotate       `hub thing rotate` has it renew at its next check
 *   kill -9      at every step of the file swap (FLASHLEX_FAULT_KILL_AT_RENEWAL): the next
 *                `serve` connects, and key and certificate on disk end up the hub's
 *   fallback     a renewed pair the broker refuses (another CA's certificate) is given up for
 *                the previous pair, which connects
 *   no lockout   a renewed pair the hub has already seen used (it forgot the previous key)
 *                is kept even when the broker closes its connections: the agent asks the hub
 *                with the previous key first, hears 401, commits the new pair, and connects
 *                with it once the broker takes connections again
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createPublicKey } from "node:crypto";
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseDocument } from "yaml";
import { describeCertificate } from "../../src/crypto/certificate-info.ts";
import { readCsr } from "../../src/crypto/csr.ts";
import { generateThingKeyPair } from "../../src/crypto/keys.ts";
import { createCertificateAuthority, issueThingCertificate } from "../../src/crypto/x509.ts";
import { type Background, binaryPath, run, start } from "../support/binary.ts";
import { fakeClock } from "../support/fake-clock.ts";
import { type HubFixture, makeHubFixture } from "../support/hub-fixture.ts";
import { attemptConnect } from "../support/mqtt-client.ts";
import { renewOverHttp, useKey } from "../support/renewal-http.ts";
import { occurrences, waitUntil } from "../support/wait.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-renewal-"));
let hub: HubFixture;
let serving: Background;
let dir: string;
let name: string;
let keyFile: string;
let certFile: string;

async function listed(): Promise<any> {
  return (await hub.things()).find((t: any) => t.name === name);
}

const diskSerial = () => describeCertificate(readFileSync(certFile, "utf8")).serialNumber;

/** `serve` for the enrolled thing; waits until it is subscribed. */
async function serve(env: Record<string, string> = {}): Promise<Background> {
  const agent = start(["serve", "-c", join(dir, "config.yml")], { env: { FLASHLEX_LOG_LEVEL: "debug", ...env } });
  if (!env.FLASHLEX_FAULT_KILL_AT_RENEWAL) await agent.waitFor(/mqtt\.subscribed/, 30_000);
  return agent;
}

/** No staged files, the pair on disk matches and is the one the hub registered. */
async function settled(): Promise<boolean> {
  const leftovers = readdirSync(join(dir, "keys")).filter((f) => f.endsWith(".next") || f.endsWith(".previous"));
  if (leftovers.length) return false;
  return (await listed()).certificateSerial === diskSerial();
}

beforeAll(async () => {
  binaryPath();
  hub = await makeHubFixture(work);
  hub.configure([
    [["certificates", "thingLifetime"], "30s"],
    [["certificates", "renewalCheck"], "1s"],
  ]);
  serving = await hub.serve();
  ({ dir, name, keyFile, certFile } = await hub.enrol("renewing", join(work, "device")));
}, 120_000);

afterAll(async () => {
  if (serving) await serving.stop(5_000);
  rmSync(work, { recursive: true, force: true });
}, 30_000);

describe("renewal", () => {
  test("serve renews at two thirds of the lifetime, commits after connecting, and the hub lists the new expiry; the superseded pair no longer connects", async () => {
    const before = await listed();
    const old = { certPem: readFileSync(certFile, "utf8"), privateKeyPem: readFileSync(keyFile, "utf8") };
    const agent = await serve();
    try {
      await agent.waitFor(/renewal\.started .*two thirds/, 40_000);
      await agent.waitFor(/renewal\.committed/, 20_000);
      const after = await listed();
      expect(after.certificateSerial).not.toBe(before.certificateSerial);
      expect(Date.parse(after.certificateNotAfter)).toBeGreaterThan(Date.parse(before.certificateNotAfter));
      expect(diskSerial()).toBe(after.certificateSerial);
      // the agent's egress still authenticates: its tokens are signed with the new key
      const collected = await run(["collect", "-c", join(dir, "config.yml")], { input: '{"after":"renewal"}' });
      expect(collected.code, collected.stderr).toBe(0);
      // a copy of the old key and certificate (valid, the hub's CA, the thing's name) is refused: CONNACK 5
      const stale = await attemptConnect({
        port: hub.brokerPort,
        caPem: readFileSync(join(dir, "keys", "root-ca-cert.pem"), "utf8"),
        cert: old,
        clientId: name,
      });
      expect(stale.client).toBeUndefined();
      expect(String(stale.error?.message)).toMatch(/Not authorized|not authorized/);
      await serving.waitFor(/mqtt\.connect\.refused[^\n]*a certificate its renewal superseded/, 5_000); // the hub's log is read as it comes
    } finally {
      expect(await agent.stop()).toBe(0);
    }
  }, 90_000);

  test("`hub thing rotate` has a running agent renew at its next check", async () => {
    const agent = await serve();
    try {
      const from = agent.output().length;
      const rotated = await hub.flashlex(["hub", "thing", "rotate", name, "--dir", hub.dir]);
      expect(rotated.stdout).toContain(`asked ${name} to renew`);
      // the agent's checks are jittered by up to 20%: the promise says so
      // ... and that an agent told a longer interval before the setting changed waits that out (new-user pass 25, F5)
      expect(rotated.stdout).toContain(
        "(hub.yml certificates.renewalCheck, +20% jitter; one told a longer renewalCheck at its last check waits that out first)",
      );
      // and the quick way, after a suspected key leak (new-user pass 23, F12)
      expect(rotated.stdout).toContain("or within seconds of its serve restarting (systemctl restart flashlex on the thing)");
      expect((await listed()).renewalRequested).toBe(true);
      await waitUntil(
        "a renewal asked by the hub",
        () => /renewal\.started .*asked by the hub/.test(agent.output().slice(from)),
        20_000,
        () => agent.output(),
      );
      await agent.waitFor(/renewal\.committed/, 20_000);
      expect((await listed()).renewalRequested).toBe(false);
      // the thing's session lock moved to the new key: a second serve with another -d, started
      // now, is refused (it connected, and took messages on their way to this one)
      await Bun.sleep(500);
      const second = await run(["serve", "-c", join(dir, "config.yml"), "-d", join(work, "second-data")], { timeoutMs: 20_000 });
      expect(second.code).toBe(75);
      expect(second.stderr).toContain("another flashlex process on this machine is connected as this thing");
    } finally {
      expect(await agent.stop()).toBe(0);
    }
  }, 60_000);

  test("a device clock 3 h ahead: serve judges the certificate on the hub's time once it has measured it, so it renews when due, not at every check (it renewed every second)", async () => {
    const agent = await serve(fakeClock({ offset: "+3h" }));
    try {
      await agent.waitFor(/clock\.skewed/, 30_000);
      const from = agent.output().length;
      await Bun.sleep(8_000); // 8 checks at renewalCheck 1s; the 30 s certificate is due at most once in that time
      expect(occurrences(agent.output().slice(from), /renewal\.started/g)).toBeLessThanOrEqual(1);
    } finally {
      expect(await agent.stop()).toBe(0);
    }
  }, 60_000);

  test("a renewal whose answer never comes does not hold serve's stop (it waited out the request's 6 minutes): SIGTERM stops it at once, and the next serve connects", async () => {
    // the hub behind a proxy that passes everything but never answers the renewal's POST
    const hubApi = `http://127.0.0.1:${hub.apiPort}`;
    const proxy = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(request) {
        const url = new URL(request.url);
        if (request.method === "POST" && url.pathname.endsWith("/certificate")) return new Promise<Response>(() => {});
        return fetch(`${hubApi}${url.pathname}${url.search}`, { method: request.method, headers: request.headers, body: request.body });
      },
    });
    const configFile = join(dir, "config.yml");
    const original = readFileSync(configFile, "utf8");
    const config = parseDocument(original);
    config.setIn(["flashlex", "app", "api", "endpoint"], `http://127.0.0.1:${proxy.port}`);
    writeFileSync(configFile, config.toString());
    try {
      const agent = await serve();
      await hub.flashlex(["hub", "thing", "rotate", name, "--dir", hub.dir]);
      await agent.waitFor(/renewal\.started/, 30_000);
      await Bun.sleep(500); // the POST is on its way, and will get no answer
      const stopping = performance.now();
      expect(await agent.stop(30_000)).toBe(0);
      expect(performance.now() - stopping).toBeLessThan(10_000);
    } finally {
      writeFileSync(configFile, original);
      proxy.stop(true);
    }
    const again = await serve();
    expect(await again.stop()).toBe(0);
  }, 90_000);

  test("a hub that refuses the renewal for a while: each retry of a renewal due by time sends the key the first attempt staged (it made and wrote a new key every time); one the hub asked for makes a new key every time", async () => {
    const hubApi = `http://127.0.0.1:${hub.apiPort}`;
    const asked: string[] = [];
    let refuse = 0;
    const proxy = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(request) {
        const url = new URL(request.url);
        const body = request.method === "POST" ? await request.text() : undefined;
        if (body !== undefined && url.pathname.endsWith("/certificate")) {
          asked.push((await readCsr(JSON.parse(body).csr)).publicKeyPem);
          if (refuse-- > 0) return Response.json({ message: "the hub is busy" }, { status: 503 });
        }
        return fetch(`${hubApi}${url.pathname}${url.search}`, { method: request.method, headers: request.headers, body: body ?? request.body });
      },
    });
    const configFile = join(dir, "config.yml");
    const original = readFileSync(configFile, "utf8");
    const config = parseDocument(original);
    config.setIn(["flashlex", "app", "api", "endpoint"], `http://127.0.0.1:${proxy.port}`);
    writeFileSync(configFile, config.toString());
    const installed = () => createPublicKey(readFileSync(keyFile)).export({ type: "spki", format: "pem" });
    try {
      const agent = await serve();
      try {
        // first whatever renewal is pending (a rotation an earlier test left unfinished), then the
        // next, due by time (two thirds of the 30 s lifetime): two refusals, then the hub answers
        await agent.waitFor(/renewal\.committed/, 45_000);
        let from = agent.output().length;
        asked.length = 0;
        refuse = 2;
        await waitUntil(
          "a renewal due by time committed",
          () => /renewal\.committed/.test(agent.output().slice(from)),
          45_000,
          () => agent.output(),
        );
        expect(asked.length).toBeGreaterThanOrEqual(3);
        expect(new Set(asked).size).toBe(1);
        expect(installed()).toBe(asked[0]!);
        expect(agent.output().slice(from)).toMatch(/renewal\.started .*why="two thirds of its lifetime passed" key="the one staged by the last attempt"/);
        // asked by the hub, refused once: each attempt has a key of its own, none seen before
        from = agent.output().length;
        const before = asked[0]!;
        asked.length = 0;
        refuse = 1;
        await hub.flashlex(["hub", "thing", "rotate", name, "--dir", hub.dir]);
        await waitUntil(
          "the rotation committed",
          () => /renewal\.committed/.test(agent.output().slice(from)),
          45_000,
          () => agent.output(),
        );
        expect(asked.length).toBeGreaterThanOrEqual(2);
        expect(new Set([before, ...asked]).size).toBe(asked.length + 1);
        expect(installed()).toBe(asked.at(-1)!);
        expect(agent.output().slice(from)).not.toContain("the one staged by the last attempt");
      } finally {
        expect(await agent.stop()).toBe(0);
      }
    } finally {
      writeFileSync(configFile, original);
      proxy.stop(true);
    }
  }, 120_000);

  for (const step of ["key-staged", "cert-staged", "previous-saved", "cert-swapped", "key-swapped", "committed"]) {
    test(`kill -9 after ${step}: the next serve connects, and disk and hub agree`, async () => {
      await hub.flashlex(["hub", "thing", "rotate", name, "--dir", hub.dir]);
      const killed = await serve({ FLASHLEX_FAULT_KILL_AT_RENEWAL: step });
      await killed.proc.exited;
      expect(killed.proc.signalCode, killed.output()).toBe("SIGKILL");
      const agent = await serve();
      try {
        await waitUntil(`disk and hub agree after a kill at ${step}`, settled, 40_000, () => agent.output());
        expect(agent.output()).toContain("mqtt.subscribed");
      } finally {
        expect(await agent.stop()).toBe(0);
      }
    }, 90_000);
  }

  test("a renewed pair the broker refuses is given up for the previous pair, which connects", async () => {
    // a renewal installed but not committed, whose certificate is another CA's
    copyFileSync(keyFile, `${keyFile}.previous`);
    copyFileSync(certFile, `${certFile}.previous`);
    const stranger = await createCertificateAuthority({ commonName: "not the hub" });
    const keys = await generateThingKeyPair("rsa");
    writeFileSync(keyFile, keys.privateKeyPem, { mode: 0o600 });
    writeFileSync(certFile, await issueThingCertificate(stranger, { thingName: name, publicKeyPem: keys.publicKeyPem }));
    const agent = start(["serve", "-c", join(dir, "config.yml")]);
    try {
      await agent.waitFor(/renewal\.fell_back/, 60_000);
      await agent.waitFor(/mqtt\.subscribed/, 30_000);
      expect(existsSync(`${keyFile}.previous`)).toBe(false);
      await waitUntil("disk and hub agree after the fallback", settled, 40_000, () => agent.output());
    } finally {
      expect(await agent.stop()).toBe(0);
    }
  }, 120_000);

  test("a renewal the hub has already seen used is never given up, whatever the broker does", async () => {
    // a renewal installed but not committed, with the hub's real new certificate...
    const previous = { certPem: readFileSync(certFile, "utf8"), privateKeyPem: readFileSync(keyFile, "utf8") };
    const thing = await listed();
    const renewed = await renewOverHttp(hub.apiPort, thing.id, name, previous);
    copyFileSync(keyFile, `${keyFile}.previous`);
    copyFileSync(certFile, `${certFile}.previous`);
    writeFileSync(keyFile, renewed.privateKeyPem, { mode: 0o600 });
    writeFileSync(certFile, renewed.certPem);
    // ...which something on the thing already used (a collect, an update poll): the hub forgot the previous key
    expect(await useKey(hub.apiPort, thing.id, renewed)).toBe(200);
    expect(await useKey(hub.apiPort, thing.id, previous)).toBe(401);
    // the broker the thing reaches closes every connection (a proxy, a broker in trouble)
    const closer = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => closer.listen(0, "127.0.0.1", resolve));
    const config = join(dir, "config.yml");
    const original = readFileSync(config, "utf8");
    const doc = parseDocument(original);
    doc.setIn(["flashlex", "thing", "mqtt", "port"], (closer.address() as AddressInfo).port);
    writeFileSync(config, doc.toString());
    const agent = start(["serve", "-c", config]);
    try {
      await agent.waitFor(/renewal\.fallback_refused/, 60_000);
      expect(agent.output()).not.toContain("renewal.fell_back");
      expect(existsSync(`${keyFile}.previous`)).toBe(false);
      expect(readFileSync(certFile, "utf8")).toBe(renewed.certPem);
    } finally {
      expect(await agent.stop()).toBe(0);
      closer.close();
      writeFileSync(config, original);
    }
    // the real broker again: the kept pair connects, and disk and hub agree
    const again = await serve();
    try {
      await waitUntil("disk and hub agree", settled, 40_000, () => again.output());
    } finally {
      expect(await again.stop()).toBe(0);
    }
  }, 150_000);

  test("a hub database put back from a backup older than the thing's renewal: the hub takes the newer certificate its CA issued at the thing's next connection (the thing was refused for good and had to enrol again), and the pair the backup knew no longer connects", async () => {
    await waitUntil("disk and hub agree", settled, 40_000);
    const before = await listed();
    const old = { certPem: readFileSync(certFile, "utf8"), privateKeyPem: readFileSync(keyFile, "utf8") };
    // the backup: the hub stopped, its database copied
    const database = join(hub.dir, "hub.db");
    const sides = ["", "-wal", "-shm"];
    await serving.stop();
    for (const side of sides) if (existsSync(database + side)) copyFileSync(database + side, join(work, `backup${side}`));
    serving = await hub.serve();
    // the thing renews after it
    await hub.flashlex(["hub", "thing", "rotate", name, "--dir", hub.dir]);
    const renewing = await serve();
    try {
      await renewing.waitFor(/renewal\.committed/, 30_000);
      await waitUntil("disk and hub agree after the renewal", settled, 40_000, () => renewing.output());
    } finally {
      expect(await renewing.stop()).toBe(0);
    }
    const renewedSerial = diskSerial();
    expect(renewedSerial).not.toBe(before.certificateSerial);
    // the restore, as docs/hub.md has it: the hub stopped, the database and its side files aside, the backup in place
    await serving.stop();
    for (const side of sides) {
      rmSync(database + side, { force: true });
      if (existsSync(join(work, `backup${side}`))) copyFileSync(join(work, `backup${side}`), database + side);
    }
    // the whole home put back: the thing's zip too, with the key its renewal replaced
    const zip = join(hub.dir, "dists", `${before.id}.zip`);
    writeFileSync(zip, "the zip of the backup", { mode: 0o600 });
    serving = await hub.serve();
    expect((await listed()).certificateSerial).toBe(before.certificateSerial);
    const agent = await serve(); // waits for mqtt.subscribed, which never came
    try {
      await serving.waitFor(new RegExp(`WARN +thing\\.lost_renewal_adopted thing=${name} serial=${renewedSerial}`), 5_000);
      expect((await listed()).certificateSerial).toBe(renewedSerial);
      // gone with the key it holds, as after a renewal (new-user pass 27, F5: it stayed for good)
      expect(existsSync(zip)).toBe(false);
      const collected = await run(["collect", "-c", join(dir, "config.yml")], { input: '{"after":"restore"}' });
      expect(collected.code, collected.stderr).toBe(0);
      const caPem = readFileSync(join(dir, "keys", "root-ca-cert.pem"), "utf8");
      await waitUntil(
        "the pair the backup knew is refused",
        async () => {
          const stale = await attemptConnect({ port: hub.brokerPort, caPem, cert: old, clientId: `${name}` });
          stale.client?.end(true);
          return stale.client === undefined;
        },
        20_000,
      );
    } finally {
      expect(await agent.stop()).toBe(0);
    }
  }, 150_000);

  test("a certificate that expired while serve was not running: the broker's silent refusal is put down to the expiry, with its date", async () => {
    // the thing's own key, certified by the hub's CA for a day that ended yesterday (no waiting)
    const ca = { certPem: readFileSync(join(hub.dir, "ca-cert.pem"), "utf8"), keyPem: readFileSync(join(hub.dir, "ca-key.pem"), "utf8") };
    const publicKeyPem = createPublicKey(readFileSync(keyFile, "utf8")).export({ type: "spki", format: "pem" }).toString();
    writeFileSync(certFile, await issueThingCertificate(ca, { thingName: name, publicKeyPem, days: 1, notBefore: new Date(Date.now() - 2 * 86_400_000) }));
    const notAfter = describeCertificate(readFileSync(certFile, "utf8")).notAfter;
    expect(notAfter.getTime()).toBeLessThan(Date.now());
    const collected = await run(["collect", "-c", join(dir, "config.yml"), "--via", "mqtt"], { input: '{"expired":true}', timeoutMs: 30_000 });
    expect(collected.code).not.toBe(0);
    expect(collected.stderr).toContain(`this thing's certificate expired at ${notAfter.toISOString()}, which brokers refuse`);
  }, 30_000);

  test("a thing revoked while serve runs: its renewal check's 401 carries the fix that says revoked (it said only 'asked again later')", async () => {
    const revoked = await hub.enrol("revoked", join(work, "revoked-device"));
    const agent = start(["serve", "-c", join(revoked.dir, "config.yml")]);
    try {
      await agent.waitFor(/mqtt\.subscribed/, 30_000);
      const from = agent.output().length;
      expect((await hub.flashlex(["hub", "thing", "revoke", revoked.name, "--dir", hub.dir])).code).toBe(0);
      await waitUntil(
        "a refused renewal check",
        () => /renewal\.check_failed /.test(agent.output().slice(from)),
        20_000,
        () => agent.output(),
      );
      const line = /WARN +renewal\.check_failed [^\n]*/.exec(agent.output().slice(from))![0];
      expect(line).toContain("the hub answered 401");
      expect(line).toContain("fix=\"A 401 means the hub refused the thing's token");
      expect(line).toContain("check the thing is not revoked");
    } finally {
      expect(await agent.stop()).toBe(0);
    }
  }, 60_000);

  test("`hub thing rotate` of several things, or --all: a revoked one named refuses them all (65, nothing asked); --all asks every thing not revoked; both or neither is 64", async () => {
    for (const spare of ["spare-1", "spare-2", "spare-3"]) await hub.createThing(spare);
    await hub.flashlex(["hub", "thing", "revoke", "spare-3", "--dir", hub.dir]);
    const requested = async () =>
      (await hub.things())
        .filter((t: any) => t.renewalRequested)
        .map((t: any) => t.name)
        .sort();
    const before = await requested();
    const full = async (short: string) => (await hub.things()).find((t: any) => t.shortName === short).name as string;
    const [spare1, spare2, spare3] = [await full("spare-1"), await full("spare-2"), await full("spare-3")];

    const refused = await run(["hub", "thing", "rotate", "spare-1", "spare-3", "--dir", hub.dir]);
    expect(refused.code, refused.stderr).toBe(65);
    expect(refused.stderr.trim()).toBe(`flashlex: ${spare3} is revoked and cannot renew; nothing was asked`);
    expect(await requested()).toEqual(before);
    for (const [args, said] of [
      [["spare-1", "--all"], "give the things to rotate or --all, not both"],
      [[], "missing the thing (name one or more, or --all for every thing not revoked)"],
    ] as const) {
      const wrong = await run(["hub", "thing", "rotate", ...args, "--dir", hub.dir]);
      expect(wrong.code, wrong.stderr).toBe(64);
      expect(wrong.stderr).toContain(said);
    }

    const named = await hub.flashlex(["hub", "thing", "rotate", "spare-1", "spare-2", "--dir", hub.dir]);
    expect(named.stdout).toContain(`asked 2 things to renew their certificates (${spare1}, ${spare2}): a running agent does so at its next check`);
    expect(await requested()).toEqual([...new Set([...before, spare1, spare2])].sort());

    const notRevoked = (await hub.things()).filter((t: any) => t.revokedAt === null).map((t: any) => t.name);
    const all = await hub.flashlex(["hub", "thing", "rotate", "--all", "--dir", hub.dir]);
    expect(all.stdout).toContain(`asked ${notRevoked.length} things to renew their certificates (${notRevoked.join(", ")})`);
    expect(await requested()).toEqual([...notRevoked].sort());
    expect(await requested()).not.toContain(spare3);
  }, 60_000);
});
