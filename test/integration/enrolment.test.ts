/**
 * Enrolment against the compiled binary (docs/enrolment.md): `hub enroll-token create`, then
 * `flashlex enroll` on the "device" (a folder here), then `bootstrap` passes against `hub serve`.
 * Refusals: an unknown token, a used single-use token, an expired token, a CSR with a foreign
 * name, a CSR with an RSA-1024 key, a CA that is not the pinned one, an unreachable hub, a folder
 * that already holds a thing: each with its exit code (or HTTP status), and nothing created (no
 * thing on the hub, no use of the token, no file in the folder). Loopback only.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { type AddressInfo, connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { createCsr } from "../../src/crypto/csr.ts";
import { generateThingKeyPair } from "../../src/crypto/keys.ts";
import { ordinaryAccount } from "../support/accounts.ts";
import { type Background, binaryPath, run, start } from "../support/binary.ts";
import { type EnrolToken, type HubFixture, listenOnLoopback, loopbackHubInit, makeHubFixture } from "../support/hub-fixture.ts";
import { freePort } from "../support/mosquitto.ts";
import { tally } from "../support/tally.ts";
import { waitUntil } from "../support/wait.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-enrol-"));
let hub: HubFixture;
let serving: Background;
let ownerPrefix: string;

type Token = EnrolToken;
const newToken = (args: string[] = []) => hub.enrollToken(args);
const things = () => hub.things();

async function tokens(): Promise<any[]> {
  return JSON.parse((await hub.flashlex(["hub", "enroll-token", "list", "--dir", hub.dir, "--json"])).stdout);
}

function enroll(t: Token, name: string, dir: string, extra: string[] = [], env?: Record<string, string>) {
  return run(["enroll", "--hub", t.hub, "--token", t.token, "--ca-fingerprint", t.caFingerprint, "--name", name, "--dir", dir, ...extra], {
    timeoutMs: 30_000,
    env,
  });
}

async function postEnroll(body: unknown): Promise<{ status: number; body: any }> {
  const response = await fetch(`http://127.0.0.1:${hub.apiPort}/dev/v1/enroll`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(15_000),
  });
  return { status: response.status, body: await response.json() };
}

beforeAll(async () => {
  binaryPath();
  hub = await makeHubFixture(work);
  serving = await hub.serve();
  ownerPrefix = parse(readFileSync(join(hub.dir, "hub.yml"), "utf8")).hub.ownerId.slice(0, 8);
}, 120_000);

afterAll(async () => {
  if (serving) expect(await serving.stop(5_000)).toBe(0);
  rmSync(work, { recursive: true, force: true });
}, 30_000);

describe("enrolment", () => {
  test("create prints the token once, the CA fingerprint and the exact enroll line; list never shows the token", async () => {
    const created = await hub.flashlex(["hub", "enroll-token", "create", "--dir", hub.dir, "--max-uses", "3", "--expires", "2h"]);
    const token = created.stdout.match(/flxe_[A-Za-z0-9_-]{43}/)![0];
    expect(created.stdout).toMatch(/hub CA fingerprint \(SHA-256.*\): ([0-9A-F]{2}:){31}[0-9A-F]{2}/);
    expect(created.stdout).toContain(`FLASHLEX_ENROLL_TOKEN=${token} ./flashlex enroll --hub http://127.0.0.1:${hub.apiPort}/dev/v1 --ca-fingerprint `);
    const listed = await hub.flashlex(["hub", "enroll-token", "list", "--dir", hub.dir]);
    expect(listed.stdout).not.toContain(token);
    expect(listed.stdout).toMatch(/active\s+0\/3/);
    // the database keeps the hash only
    expect(readFileSync(join(hub.dir, "hub.db")).includes(Buffer.from(token))).toBe(false);
  });

  test("enroll makes the key on the device, writes config.yml and keys/, and bootstrap passes", async () => {
    const t = await newToken();
    const dir = join(work, "device-a");
    const result = await enroll(t, "alpha", dir);
    expect(result.code, result.stderr).toBe(0);
    // the token given with --token: said to have been in sight (a token may enrol a fleet); the printed line uses the variable
    expect(result.stdout).toContain(
      "\ntoken:       given with --token, which every user of this device could read with ps while enroll ran; $FLASHLEX_ENROLL_TOKEN is not\n",
    );
    const name = `${ownerPrefix}-alpha`;
    expect(result.stdout).toContain(`enrolled ${name}`);
    // the next step names a binary that is there: the folder has none, so the one that ran. Made
    // as root in root's folder, it first gives the folder to the service's user: install-service
    // refuses a root-owned config (64), which the line after enroll led to (new-user pass 18, F2)
    const bin = realpathSync(binaryPath());
    expect(result.stdout).toContain(
      "note:        made as root, and the service never runs as root: give the folder to the user it runs as (USER: an ordinary user, such as pi)",
    );
    expect(result.stdout).toContain(`next: sudo chown -R USER: ${dir} && cd ${dir} && ${bin} bootstrap && sudo ${bin} install-service`);
    const underSudo = await enroll(await newToken(), "alpha-sudo", join(work, "device-a-sudo"), [], { SUDO_USER: "pi" });
    expect(underSudo.stdout).toContain(`next: sudo chown -R pi: ${join(work, "device-a-sudo")} && cd`);
    // flashlex.py too, as a distribution zip has it: the README's Python path works here as well
    expect(readdirSync(dir).sort()).toEqual(["config.yml", "flashlex.py", "keys"]);
    expect(readFileSync(join(dir, "flashlex.py"), "utf8")).toBe(readFileSync(join(import.meta.dir, "../../dist-template/flashlex.py"), "utf8"));
    const keys = readdirSync(join(dir, "keys")).sort();
    expect(keys).toEqual([`${name}-certificate.pem`, `${name}-keypair-private.pem`, `${name}-keypair-public.pem`, "root-ca-cert.pem"].sort());
    expect(statSync(join(dir, "keys", `${name}-keypair-private.pem`)).mode & 0o777).toBe(0o600);
    const listed = (await things()).find((x) => x.name === name);
    expect(listed).toMatchObject({ status: "created", enrolled: true, distribution: null });
    // the hub's log names the token by its id (public), never the token
    await serving.waitFor(new RegExp(`hub\\.thing_enrolled [^\\n]*thing=${name} [^\\n]*enrolled_with=${t.id}`), 5_000);
    expect(serving.output()).not.toContain(t.token);
    // 90 days by default
    const days = (Date.parse(listed.certificateNotAfter) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(89.9);
    expect(days).toBeLessThan(90.1);
    // the hub's update key is pinned at enrolment as in every distribution (docs/updates.md)
    const pinned = parse(readFileSync(join(dir, "config.yml"), "utf8")).flashlex.update.publicKey;
    expect(pinned).toBe(readFileSync(join(hub.dir, "update-key.pub"), "utf8").trim());
    // the private key never reached the hub: no distribution zip was made
    expect(existsSync(join(hub.dir, "dists", `${listed.id}.zip`))).toBe(false);
    const boot = await run(["bootstrap", "-c", join(dir, "config.yml")], { timeoutMs: 40_000 });
    expect(boot.code, `${boot.stdout}\n${boot.stderr}`).toBe(0);
    expect(boot.stdout.match(/^\[PASS\]/gm)).toHaveLength(12);
    const text = await hub.flashlex(["hub", "thing", "list", "--dir", hub.dir]);
    expect(text.stdout).toMatch(/CERTIFICATE EXPIRES/);
  }, 60_000);

  test.skipIf(process.getuid?.() !== 0 || !Bun.which("setpriv"))(
    "enroll as a user, with a flashlex.py and a ./flashlex there it may not look at: enrolled (0), the flashlex.py left as it is and the binary that ran in the next line (it was 77 after the thing was enrolled)",
    async () => {
      const t = await newToken();
      const root = mkdtempSync(join(tmpdir(), "flashlex-enrol-user-"));
      chmodSync(root, 0o755);
      try {
        const closed = join(root, "closed");
        mkdirSync(closed, { mode: 0o700 });
        const dir = join(root, "device");
        mkdirSync(dir);
        symlinkSync(join(closed, "flashlex.py"), join(dir, "flashlex.py"));
        symlinkSync(join(closed, "flashlex"), join(dir, "flashlex"));
        execFileSync("chown", ["-h", "-R", "65534:65534", dir]);
        const asNobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
        const argv = ["enroll", "--hub", t.hub, "--token", t.token, "--ca-fingerprint", t.caFingerprint, "--name", "unseen", "--dir", dir];
        const result = Bun.spawnSync([...asNobody, binaryPath(), ...argv], { stdout: "pipe", stderr: "pipe", timeout: 30_000 });
        const out = result.stdout.toString();
        expect({ code: result.exitCode, stderr: result.stderr.toString() }).toEqual({ code: 0, stderr: "" });
        expect(out).toContain(`enrolled ${ownerPrefix}-unseen`);
        expect(out).toContain(`next: cd ${dir} && ${realpathSync(binaryPath())} bootstrap`);
        expect(existsSync(join(dir, "config.yml"))).toBe(true);
        expect(lstatSync(join(dir, "flashlex.py")).isSymbolicLink()).toBe(true); // the owner's, left as it was
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    },
  );

  test.skipIf(process.getuid?.() !== 0)(
    "sudo enroll into a new folder under a user's directory makes the user's thing: every file and folder it writes is the user's (they were root's: the private key 0600 unreadable by the user's serve)",
    async () => {
      const user = ordinaryAccount();
      const t = await newToken();
      const root = mkdtempSync(join(tmpdir(), "flashlex-enrol-sudo-"));
      chmodSync(root, 0o755);
      try {
        execFileSync("chown", [`${user.uid}:${user.gid}`, root]);
        const dir = join(root, "thing");
        const result = await enroll(t, "by-sudo", dir);
        expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: "" });
        expect(result.stdout).toContain(`(private key 0600, made as ${user.name} (uid ${user.uid}), the folder's owner)`);
        const made = [dir, ...readdirSync(dir, { recursive: true }).map((name) => join(dir, String(name)))];
        expect(made.length).toBeGreaterThan(4);
        for (const path of made) expect({ path, uid: lstatSync(path).uid }).toEqual({ path, uid: user.uid });
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    },
  );

  test("a used single-use token is refused (65) and creates nothing", async () => {
    const t = await newToken();
    expect((await enroll(t, "once-1", join(work, "once-1"))).code).toBe(0);
    const before = (await things()).length;
    const again = await enroll(t, "once-2", join(work, "once-2"));
    expect(again.code).toBe(65);
    expect(again.stderr).toContain("already used");
    expect((await things()).length).toBe(before);
    expect(existsSync(join(work, "once-2", "config.yml"))).toBe(false);
    expect(existsSync(join(work, "once-2", "keys"))).toBe(false);
  }, 60_000);

  test("an unknown token, an expired token and a revoked token are refused (65), nothing created", async () => {
    const before = (await things()).length;
    const real = await newToken();
    const bad = await enroll({ ...real, token: `flxe_${"A".repeat(43)}` }, "bad", join(work, "bad"));
    expect(bad.code).toBe(65);
    expect(bad.stderr).toContain("not known");
    const short = await newToken(["--expires", "1s"]);
    await Bun.sleep(1_200);
    const expired = await enroll(short, "late", join(work, "late"));
    expect(expired.code).toBe(65);
    expect(expired.stderr).toContain("expired");
    // where a new one comes from (new-user pass 25, F15)
    expect(expired.stderr).toContain("the enrolment token has expired; ask the hub's operator for a new one (flashlex hub enroll-token create)");
    await hub.flashlex(["hub", "enroll-token", "revoke", real.id, "--dir", hub.dir]);
    const revoked = await enroll(real, "revoked", join(work, "revoked"));
    expect(revoked.code).toBe(65);
    expect(revoked.stderr).toContain("revoked");
    expect((await things()).length).toBe(before);
    // refusals are logged without the token
    expect(serving.output()).toContain("hub.enrol_refused");
    expect(serving.output()).not.toContain(real.token);
    expect(serving.output()).not.toContain(short.token);
  }, 60_000);

  test("two enrolls in one folder at once: one enrols, the other refuses before it sends anything (both made things on the hub, and could leave one's key staged under the other's name)", async () => {
    const folder = join(work, "raced");
    for (let round = 0; round < 3; round++) {
      rmSync(folder, { recursive: true, force: true });
      const [a, b] = [await newToken(), await newToken()];
      const names = [`race-${round}-a`, `race-${round}-b`];
      const results = await Promise.all([enroll(a, names[0]!, folder), enroll(b, names[1]!, folder)]);
      const codes = results.map((r) => r.code).sort();
      // the loser found the folder taken (75) or already holding the winner's thing (65)
      expect({ round, codes: codes[0] === 0 && (codes[1] === 75 || codes[1] === 65) }).toEqual({ round, codes: true });
      const loser = results.find((r) => r.code !== 0)!;
      expect(loser.stderr).toMatch(/another flashlex enroll is running in this folder|holds a thing|config\.yml/);
      const onHub = (await hub.things()).map((t: { name: string }) => t.name).filter((n: string) => names.some((name) => n === `${ownerPrefix}-${name}`));
      expect({ round, onHub: onHub.length }).toEqual({ round, onHub: 1 });
    }
  }, 90_000);

  test("a name outside the token's prefix is refused; one inside enrols", async () => {
    const t = await newToken(["--name-prefix", "sensor-", "--max-uses", "2"]);
    expect((await enroll(t, "pump-1", join(work, "pump-1"))).code).toBe(65);
    expect((await tokens()).find((x) => x.id === t.id).uses).toBe(0);
    expect((await enroll(t, "sensor-1", join(work, "sensor-1"))).code).toBe(0);
    // revoked, an enrolled thing is not said to have lost a distribution it never had
    const revoked = await hub.flashlex(["hub", "thing", "revoke", `${ownerPrefix}-sensor-1`, "--dir", hub.dir]);
    expect(revoked.stdout).toContain("it enrolled itself, so the hub never held its key");
    const dist = await run(["hub", "thing", "dist", `${ownerPrefix}-sensor-1`, "--dir", hub.dir]);
    expect({ code: dist.code, says: dist.stderr.includes("it enrolled itself: its key never left the device") }).toEqual({ code: 65, says: true });
  }, 60_000);

  test("a name `hub thing create` refuses is refused here too: the owner's prefix (found as another thing), a UUID (found as an id), a leading '-' (read as a flag)", async () => {
    const t = await newToken();
    const keys = await generateThingKeyPair("ec");
    for (const name of [`${ownerPrefix}-x`, crypto.randomUUID(), "-sh"]) {
      const answer = await postEnroll({
        token: t.token,
        name,
        csr: await createCsr({ privateKeyPem: keys.privateKeyPem, commonName: `${ownerPrefix}-${name}` }),
      });
      expect({ name, status: answer.status }).toEqual({ name, status: 400 });
    }
    expect((await tokens()).find((x) => x.id === t.id).uses).toBe(0);
    // a request without a token is refused for that first, whatever else it lacks
    const empty = await postEnroll({});
    expect({ status: empty.status, said: empty.body.messages[0].value }).toEqual({ status: 400, said: "no enrolment token in the request (token)" });
    // the device's own check names the rule before anything is sent
    const dashed = await run(["enroll", "--hub", t.hub, "--token", t.token, "--ca-fingerprint", t.caFingerprint, "--name=-sh", "--dir", join(work, "dashed")], {
      timeoutMs: 30_000,
    });
    expect(dashed.code).toBe(64);
    expect(dashed.stderr).toContain("not starting with '-'");
  }, 60_000);

  test("a CSR with a foreign name or a weak key (RSA 1024) is refused, nothing created, the token unused", async () => {
    const t = await newToken();
    const before = (await things()).length;
    const keys = await generateThingKeyPair("ec");
    for (const cn of ["flashlex-hub", `${ownerPrefix}-someone-else`, "00000000-mine"]) {
      const answer = await postEnroll({ token: t.token, name: "mine", csr: await createCsr({ privateKeyPem: keys.privateKeyPem, commonName: cn }) });
      expect(answer.status).toBe(400);
      expect(answer.body.messages[0].value).toContain(`its CN must be ${ownerPrefix}-mine`);
    }
    const weakKey = join(work, "weak.key");
    const weakCsr = execFileSync("openssl", ["req", "-new", "-newkey", "rsa:1024", "-nodes", "-keyout", weakKey, "-subj", `/CN=${ownerPrefix}-weak`], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
    const weak = await postEnroll({ token: t.token, name: "weak", csr: weakCsr });
    expect(weak.status).toBe(400);
    expect(weak.body.messages[0].value).toContain("RSA key of 1024 bits is too weak");
    // a CSR whose signature does not match its key (another key's request, subject swapped in is not needed: flip a byte)
    const good = await createCsr({ privateKeyPem: keys.privateKeyPem, commonName: `${ownerPrefix}-mine` });
    const body = good.split("\n").slice(1, -2).join("");
    const der = Buffer.from(body, "base64");
    der[der.length - 10]! ^= 0x01;
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`;
    const altered = await postEnroll({ token: t.token, name: "mine", csr: tampered });
    expect(altered.status).toBe(400);
    expect((await things()).length).toBe(before);
    expect((await tokens()).find((x) => x.id === t.id).uses).toBe(0);
    // and the token still works for a proper request
    expect((await postEnroll({ token: t.token, name: "mine", csr: good })).status).toBe(201);
  }, 60_000);

  test("a CA that is not the pinned one: 78, nothing sent, nothing written; the token stays usable", async () => {
    const t = await newToken();
    const dir = join(work, "pinned");
    const wrong = `${"AB:".repeat(31)}AB`;
    const result = await enroll({ ...t, caFingerprint: wrong }, "pinned", dir);
    expect(result.code).toBe(78);
    // one format on both ends: colons, as `hub enroll-token create` prints it; the hub's actual
    // fingerprint is not printed (it invited a copy into --ca-fingerprint)
    expect(result.stderr).toContain(`the hub's CA is not the pinned one (${wrong})`);
    expect(result.stderr).toContain("Compare --ca-fingerprint with what `flashlex hub enroll-token create` printed on the hub");
    expect(result.stderr).not.toContain(t.caFingerprint);
    expect(existsSync(join(dir, "config.yml"))).toBe(false);
    expect((await tokens()).find((x) => x.id === t.id).uses).toBe(0);
  }, 30_000);

  test("usage (64), an unreachable hub (69), a folder that holds a thing (65)", async () => {
    const t = await newToken();
    expect((await run(["enroll", "--hub", t.hub, "--token", t.token])).code).toBe(64);
    // no token under sudo, whose env_reset dropped $FLASHLEX_ENROLL_TOKEN: says how to keep it
    const hub = ["enroll", "--hub", t.hub, "--ca-fingerprint", t.caFingerprint, "--dir", join(work, "no-token")];
    const noToken = await run(hub, { env: { FLASHLEX_ENROLL_TOKEN: "" } });
    expect({ code: noToken.code, sudo: noToken.stderr.includes("--preserve-env") }).toEqual({ code: 64, sudo: false });
    const underSudo = await run(hub, { env: { FLASHLEX_ENROLL_TOKEN: "", SUDO_USER: "pi" } });
    expect(underSudo.code).toBe(64);
    expect(underSudo.stderr).toContain(
      `sudo drops $FLASHLEX_ENROLL_TOKEN unless told to keep it: export FLASHLEX_ENROLL_TOKEN=flxe_... first, then sudo --preserve-env=FLASHLEX_ENROLL_TOKEN ${realpathSync(binaryPath())} enroll ...`,
    );
    expect((await run(["enroll", "--hub", "http://127.0.0.1:8080", "--token", t.token, "--ca-fingerprint", t.caFingerprint])).code).toBe(64);
    const port = await freePort();
    const down = await enroll({ ...t, hub: `http://127.0.0.1:${port}/dev/v1` }, "down", join(work, "down", "thing"));
    expect(down.code).toBe(69);
    expect(down.stderr).toBe(
      `flashlex: the hub at 127.0.0.1:${port} cannot be reached: connection refused: nothing accepts connections at that address and port (ECONNREFUSED)\n`,
    );
    // nothing was made with the hub: no empty folder is left, nor the parent made for it
    expect(existsSync(join(work, "down"))).toBe(false);
    const taken = join(work, "taken");
    mkdirSync(taken);
    writeFileSync(join(taken, "config.yml"), "# another thing\n");
    const result = await enroll(t, "taken", taken);
    expect(result.code).toBe(65);
    expect(readFileSync(join(taken, "config.yml"), "utf8")).toBe("# another thing\n");
    expect((await tokens()).find((x) => x.id === t.id).uses).toBe(0);
    // --dir naming a file: usage, said as such (not "already exists (EEXIST)", 74)
    const file = join(work, "a-file");
    writeFileSync(file, "x");
    const onFile = await enroll(t, "onfile", file);
    expect(onFile.code).toBe(64);
    expect(onFile.stderr).toContain(`--dir ${file}: not a directory`);
    // Ctrl-C while the hub is silent: 130 and one line saying how to finish, not a silent exit
    const silent = createServer(() => {}).listen(0, "127.0.0.1");
    await new Promise((resolve) => silent.once("listening", resolve));
    try {
      const hub = `http://127.0.0.1:${(silent.address() as AddressInfo).port}/dev/v1`;
      const waiting = start([
        "enroll",
        "--hub",
        hub,
        "--token",
        t.token,
        "--ca-fingerprint",
        t.caFingerprint,
        "--name",
        "stopped",
        "--dir",
        join(work, "stopped"),
      ]);
      await Bun.sleep(1000);
      waiting.proc.kill("SIGINT");
      expect(await waiting.proc.exited).toBe(130);
      expect(waiting.output().trim()).toBe(
        `flashlex: enroll stopped by SIGINT; run the same flashlex enroll again: it finishes what the hub may have done (with the key kept in ${join(work, "stopped")}/.enrol, if one was made)`,
      );
    } finally {
      silent.close();
    }
  }, 30_000);

  test("Ctrl-C while the hub has the request: 130, one line, nothing written, and the run it asks for enrols (it said 'stopped, run it again', finished anyway, and the run again failed with 65)", async () => {
    const t = await newToken(["--max-uses", "2"]);
    // The hub's answer to the POST is held back until the signal is sent, then let through at
    // once: the old build, having said "stopped", still took it and wrote the folder.
    let posted = false;
    const held: { client: Socket; chunks: Buffer[]; ended: boolean }[] = [];
    const proxy = createServer((client) => {
      const upstream = connect(hub.apiPort, "127.0.0.1");
      const hold = { client, chunks: [] as Buffer[], ended: false };
      client.on("data", (chunk) => {
        if (chunk.toString("latin1").startsWith("POST ")) (posted = true), held.push(hold);
        upstream.write(chunk);
      });
      upstream.on("data", (chunk: Buffer) => (held.includes(hold) ? hold.chunks.push(chunk) : client.write(chunk)));
      upstream.on("end", () => {
        if (held.includes(hold)) hold.ended = true;
        else client.end();
      });
      client.on("error", () => upstream.destroy());
      client.on("close", () => upstream.destroy());
      upstream.on("error", () => client.destroy());
    }).listen(0, "127.0.0.1");
    await new Promise((resolve) => proxy.once("listening", resolve));
    const release = () => {
      for (const { client, chunks, ended } of held.splice(0)) {
        if (!client.writable) continue;
        for (const chunk of chunks) client.write(chunk);
        if (ended) client.end();
      }
    };
    const dir = join(work, "stopped-late");
    try {
      const slowHub = t.hub.replace(`:${hub.apiPort}/`, `:${(proxy.address() as AddressInfo).port}/`);
      const waiting = start(["enroll", "--hub", slowHub, "--token", t.token, "--ca-fingerprint", t.caFingerprint, "--name", "late", "--dir", dir]);
      await waitUntil("the enrolment request at the hub", () => posted, 15_000);
      await Bun.sleep(300); // the hub answers (held here)
      waiting.proc.kill("SIGINT");
      await Bun.sleep(20);
      release();
      expect(await waiting.proc.exited).toBe(130);
      expect(waiting.output().trim()).toBe(
        `flashlex: enroll stopped by SIGINT; run the same flashlex enroll again: it finishes what the hub may have done (with the key kept in ${dir}/.enrol, if one was made)`,
      );
      expect(existsSync(join(dir, "config.yml"))).toBe(false);
      tally("faults");
    } finally {
      proxy.close();
    }
    const again = await enroll(t, "late", dir);
    expect({ code: again.code, stderr: again.stderr }).toEqual({ code: 0, stderr: "" });
    expect(existsSync(join(dir, "config.yml"))).toBe(true);
  }, 60_000);

  test("a refused first attempt leaves the folder free: a name already taken (65), then another name, in the same folder, enrols", async () => {
    const t = await newToken(["--max-uses", "2"]);
    const dir = join(work, "taken-then-free");
    expect((await enroll(t, "taken", join(work, "taken-first"))).code).toBe(0);
    const taken = await enroll(t, "taken", dir);
    expect(taken.code).toBe(65);
    expect(taken.stderr).toContain("already exists");
    expect(existsSync(join(dir, ".enrol"))).toBe(false);
    // and a token pasted with its line end is the same token
    const other = await enroll({ ...t, token: `${t.token}\n` }, "free", dir);
    expect({ code: other.code, stderr: other.stderr }).toEqual({ code: 0, stderr: "" });
    expect(existsSync(join(dir, "config.yml"))).toBe(true);
  }, 60_000);

  test("a token that is not an enrolment token (the operator's access token, pasted by mistake) is refused (64) before anything is sent or made", async () => {
    const t = await newToken();
    const dir = join(work, "operator-token");
    const operatorLike = "VdB8BbqB49z5BRrijHzOXQckYI-VlSnGtgiSL8RT7kg";
    const refused = await enroll({ ...t, token: operatorLike }, "optoken", dir);
    expect(refused.code).toBe(64);
    expect(refused.stderr.trim()).toBe(
      "flashlex: --token is not an enrolment token (those start with flxe_; the operator's access token is not one, and was not sent): make one on the hub with `flashlex hub enroll-token create`",
    );
    expect(existsSync(dir)).toBe(false);
    expect((await tokens()).find((x) => x.id === t.id).uses).toBe(0);
  }, 60_000);

  test("keys/ made by someone after a refused attempt is never taken for enrolment's own leftover: refused (65), left as it was", async () => {
    const t = await newToken();
    const dir = join(work, "refused-then-keys");
    const refused = await enroll({ ...t, token: "flxe_not-a-token" }, "precious", dir);
    expect(refused.code).toBe(65);
    // the hub refused the first attempt and made nothing: no key kept, nor the folder enroll made
    expect(existsSync(dir)).toBe(false);
    mkdirSync(join(dir, "keys"), { recursive: true });
    writeFileSync(join(dir, "keys", "precious.pem"), "IMPORTANT\n");
    const again = await enroll(t, "precious", dir);
    expect(again.code).toBe(65);
    expect(again.stderr).toContain("keys is not empty");
    expect(readFileSync(join(dir, "keys", "precious.pem"), "utf8")).toBe("IMPORTANT\n");
    expect((await tokens()).find((x) => x.id === t.id).uses).toBe(0);
  }, 60_000);

  test("the hub killed after it enrolled, before it answered: the retry (same token, used up) gets the same thing, no use spent", async () => {
    const t = await newToken();
    const dir = join(work, "hub-killed");
    const name = `${ownerPrefix}-hkilled`;
    expect(await serving.stop(5_000)).toBe(0);
    const doomed = await hub.serve([], { FLASHLEX_FAULT_KILL_AT_ENROL: "enrolled" });
    const first = await enroll(t, "hkilled", dir);
    await doomed.proc.exited;
    expect(doomed.proc.signalCode).toBe("SIGKILL");
    serving = await hub.serve();
    expect(first.code, first.stderr).toBe(69);
    expect(first.stderr).toContain("run the same `flashlex enroll` again");
    // the hub made the thing and spent the use; the device kept its key, and only its key
    const made = (await things()).find((x) => x.name === name);
    expect(made).toBeDefined();
    expect((await tokens()).find((x) => x.id === t.id).uses).toBe(1);
    expect(existsSync(join(dir, "config.yml"))).toBe(false);
    expect(readdirSync(join(dir, ".enrol")).sort()).toEqual(["pending-key.pem", "pending-name"]);
    expect(statSync(join(dir, ".enrol", "pending-key.pem")).mode & 0o777).toBe(0o600);
    const pending = readFileSync(join(dir, ".enrol", "pending-key.pem"), "utf8");

    const again = await enroll(t, "hkilled", dir);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain(`enrolled ${name} (id ${made.id})`);
    expect(readdirSync(dir).sort()).toEqual(["config.yml", "flashlex.py", "keys"]);
    expect(readFileSync(join(dir, "keys", `${name}-keypair-private.pem`), "utf8")).toBe(pending);
    expect((await tokens()).find((x) => x.id === t.id).uses).toBe(1);
    expect((await things()).filter((x) => x.name === name)).toHaveLength(1);
    const boot = await run(["bootstrap", "-c", join(dir, "config.yml")], { timeoutMs: 40_000 });
    expect(boot.code, `${boot.stdout}\n${boot.stderr}`).toBe(0);
  }, 120_000);

  test("the device killed after the hub answered: a retry with a fresh token gets the same thing and spends no use; another key is refused", async () => {
    const t = await newToken();
    const dir = join(work, "device-killed");
    const name = `${ownerPrefix}-dkilled`;
    const first = await run(["enroll", "--hub", t.hub, "--token", t.token, "--ca-fingerprint", t.caFingerprint, "--name", "dkilled", "--dir", dir], {
      timeoutMs: 30_000,
      env: { FLASHLEX_FAULT_KILL_AT_ENROL: "answered" },
    });
    expect(first.code).not.toBe(0);
    expect(existsSync(join(dir, "config.yml"))).toBe(false);
    expect(existsSync(join(dir, ".enrol", "pending-key.pem"))).toBe(true);

    // another key for the same name (the pending key lost) is refused as before, nothing spent
    const stranger = await newToken();
    const elsewhere = await enroll(stranger, "dkilled", join(work, "device-killed-other"));
    expect(elsewhere.code).toBe(65);
    expect(elsewhere.stderr).toContain("already exists");
    expect((await tokens()).find((x) => x.id === stranger.id).uses).toBe(0);

    // with the kept key, another name (a second thing with the same key) or another key type is
    // 64 saying how to finish that attempt or start over: nothing sent, nothing spent
    const fresh = await newToken();
    const renamed = await enroll(fresh, "dkilled2", dir);
    expect({ code: renamed.code, says: renamed.stderr.includes("an earlier enrolment here asked for the name dkilled and did not complete") }).toEqual({
      code: 64,
      says: true,
    });
    const otherType = await run(
      ["enroll", "--hub", fresh.hub, "--token", fresh.token, "--ca-fingerprint", fresh.caFingerprint, "--name", "dkilled", "--key-type", "ec", "--dir", dir],
      {
        timeoutMs: 30_000,
      },
    );
    expect({ code: otherType.code, says: otherType.stderr.includes("the key kept from an earlier enrolment here is rsa, not ec") }).toEqual({
      code: 64,
      says: true,
    });
    tally("badInputs", 2);
    expect((await things()).find((x) => x.name === `${ownerPrefix}-dkilled2`)).toBeUndefined();
    const again = await enroll(fresh, "dkilled", dir);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain(`enrolled ${name}`);
    expect(existsSync(join(dir, ".enrol"))).toBe(false);
    expect((await tokens()).find((x) => x.id === fresh.id).uses).toBe(0);
    expect((await tokens()).find((x) => x.id === t.id).uses).toBe(1);

    // once it has connected, the same key and name are a conflict again (a retry is only for a thing nobody runs)
    const boot = await run(["bootstrap", "-c", join(dir, "config.yml")], { timeoutMs: 40_000 });
    expect(boot.code, `${boot.stdout}\n${boot.stderr}`).toBe(0);
    await waitUntil("the thing verified", async () => (await things()).find((x) => x.name === name)?.status === "verified");
    const keyPem = readFileSync(join(dir, "keys", `${name}-keypair-private.pem`), "utf8");
    const csr = await createCsr({ privateKeyPem: keyPem, commonName: name });
    const late = await postEnroll({ token: (await newToken()).token, name: "dkilled", csr });
    expect(late.status).toBe(409);
  }, 120_000);

  test("an https hub: its TLS is trusted through the pinned CA only, and the enrolled thing bootstraps", async () => {
    const [apiPort, brokerPort] = [await freePort(), await freePort()];
    const dir = join(work, "tls-hub");
    const init = await run(
      loopbackHubInit(dir, apiPort, brokerPort, "127.0.0.1").map((a) => (a === `http://127.0.0.1:${apiPort}` ? `https://127.0.0.1:${apiPort}` : a)),
    );
    expect(init.code, init.stderr).toBe(0);
    listenOnLoopback(dir);
    const tlsHub = start(["hub", "serve", "--dir", dir]);
    try {
      await tlsHub.waitFor(/hub\.started/, 30_000);
      const t: Token = JSON.parse((await hub.flashlex(["hub", "enroll-token", "create", "--dir", dir, "--json"])).stdout);
      expect(t.hub).toBe(`https://127.0.0.1:${apiPort}/dev/v1`);
      // another hub's fingerprint: refused before the token is sent
      expect((await enroll({ ...t, caFingerprint: (await newToken()).caFingerprint }, "secure", join(work, "secure-0"))).code).toBe(78);
      // a host the hub's certificate does not name, and https to a hub that speaks plain http:
      // 78 saying what to check, never 69's "run it again" (a retry fails the same way)
      const misnamed = await enroll({ ...t, hub: t.hub.replace("127.0.0.1", "localhost") }, "secure", join(work, "secure-1"));
      expect({ code: misnamed.code, says: misnamed.stderr.includes("its certificate does not name the host in --hub") }).toEqual({ code: 78, says: true });
      const plain = await newToken();
      const noTls = await enroll({ ...plain, hub: plain.hub.replace("http://", "https://") }, "secure", join(work, "secure-2"));
      expect({ code: noTls.code, says: noTls.stderr.includes("it does not speak TLS at that address") }).toEqual({ code: 78, says: true });
      // and http to a hub that speaks https: the hang-up says which scheme to try
      const unsecured = await enroll({ ...t, hub: t.hub.replace("https://", "http://") }, "secure", join(work, "secure-3"));
      expect(unsecured.stderr).toContain("if the hub serves HTTPS at that address (api.tls), give --hub with https://");
      tally("badInputs", 3);
      const device = join(work, "secure");
      const result = await enroll(t, "secure", device);
      expect(result.code, result.stderr).toBe(0);
      const boot = await run(["bootstrap", "-c", join(device, "config.yml")], { timeoutMs: 40_000 });
      expect(boot.code, `${boot.stdout}\n${boot.stderr}`).toBe(0);
    } finally {
      expect(await tlsHub.stop(5_000)).toBe(0);
    }
  }, 90_000);
});
