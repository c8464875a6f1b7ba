/**
 * The hub's thing commands against the compiled binary, where the trial found faults:
 * - `hub thing delete`: the same use case as `DELETE /things/{id}` (the thing, its messages, its
 *   distribution go; the name can be used again), 65 for a thing that does not exist, 64 without;
 * - `-o` naming a directory or a file in a missing directory: 64 before anything is made;
 * - a full disk (a real tmpfs) under a running hub: `POST /things` answers 503 and leaves no
 *   thing and no distribution zip, not even an empty one, and no temporary file.
 * Loopback only.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { describeCertificate } from "../../src/crypto/certificate-info.ts";
import { type Background, binaryPath, run, start } from "../support/binary.ts";
import { type HubFixture, type HubThing, listenOnLoopback, loopbackHubInit, makeHubFixture } from "../support/hub-fixture.ts";
import { freePort } from "../support/mosquitto.ts";
import { mountTmpfs, type Tmpfs, tmpfsUnavailable } from "../support/tmpfs.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-thing-delete-"));
let hub: HubFixture;
const mounts: Tmpfs[] = [];
const noTmpfs = tmpfsUnavailable();
if (noTmpfs) console.warn(`SKIPPING the disk-full test: ${noTmpfs}`);

beforeAll(async () => {
  binaryPath();
  hub = await makeHubFixture(work);
}, 120_000);

afterAll(() => {
  for (const fs of mounts) fs.unmount();
  rmSync(work, { recursive: true, force: true });
});

/** A thing made as `name` with the hub serving and the thing's serve subscribed; both stopped after `fn`. */
async function withConnectedThing(name: string, fn: (ctx: { old: HubThing; serving: Background; device: Background }) => Promise<void>): Promise<void> {
  const old = await hub.createThing(name);
  const serving = await hub.serve();
  const device = start(["serve", ...old.flags]);
  try {
    await device.waitFor(/mqtt\.subscribed/, 30_000);
    await fn({ old, serving, device });
  } finally {
    await device.stop();
    await serving.stop();
  }
}

describe("hub thing delete", () => {
  test("deletes the thing and its distribution; the name can be used again", async () => {
    const made = await hub.createThing("doomed");
    const zip = join(hub.dir, "dists", `${made.id}.zip`);
    expect(existsSync(zip)).toBe(true);
    const deleted = await run(["hub", "thing", "delete", "doomed", "--dir", hub.dir], { timeoutMs: 30_000 });
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(deleted.stdout).toContain(`deleted ${made.name} (id ${made.id})`);
    expect((await hub.things()).some((t) => t.id === made.id)).toBe(false);
    expect(existsSync(zip)).toBe(false);
    const again = await hub.createThing("doomed");
    expect(again.id).not.toBe(made.id);
  }, 60_000);

  test("deleted by the command while the hub serves: its device is disconnected, its certificate is on the CRL, and a new thing of its name gets its messages alone", async () => {
    await withConnectedThing("reused", async ({ old, serving, device }) => {
      const deleted = await run(["hub", "thing", "delete", "reused", "--dir", hub.dir], { timeoutMs: 30_000 });
      expect(deleted.code, deleted.stderr).toBe(0);
      // Another process deleted it: the serving hub notices at its next revocation poll (3 s).
      await serving.waitFor(new RegExp(`hub\\.thing_disconnected thing=${old.name} reason="revoked or deleted"`), 15_000);
      const crl = execFileSync("openssl", ["crl", "-in", join(hub.dir, "crl.pem"), "-noout", "-text"], { encoding: "utf8" });
      expect(crl.replace(/[\s:]/g, "")).toContain(`SerialNumber${describeCertificate(old.certPem).serialNumber}`);
      const fresh = await hub.createThing("reused");
      expect(fresh.name).toBe(old.name);
      const id = await hub.publish(fresh.id, { secret: "for the new thing" });
      // The old device keeps trying to come back (refused: its key is not the new thing's).
      await device.waitFor(/mqtt\.(error|offline|reconnect_scheduled)/, 15_000);
      await Bun.sleep(2_000);
      const stored = await run(["messages", "list", "--all", "--json", ...old.flags], { timeoutMs: 30_000 });
      expect(stored.code, stored.stderr).toBe(0);
      expect(stored.stdout).not.toContain(id);
      expect((await hub.ingress(fresh.id)).map((m) => [m.flmessagespk, m.delivery])).toStrictEqual([[id, "pending"]]);
    });
  }, 90_000);

  test("deleted, made again and sent a message at once (before or after the serving hub's poll saw the delete): the old device gets nothing, the new one gets it", async () => {
    await withConnectedThing("quick", async ({ old, serving, device }) => {
      // As fast as the commands go: the message may come before the hub's 3 s poll saw the
      // delete (then sending it drops the old connection), or after (then the poll did).
      expect((await run(["hub", "thing", "delete", "quick", "--dir", hub.dir], { timeoutMs: 30_000 })).code).toBe(0);
      const fresh = await hub.createThing("quick", ["--key-type", "ec"]);
      const id = await hub.publish(fresh.id, { secret: "for the new quick" });
      await serving.waitFor(new RegExp(`mqtt\\.kicked [^\\n]*thing=${old.name} `), 10_000);
      await Bun.sleep(2_000);
      const stored = await run(["messages", "list", "--all", "--json", ...old.flags], { timeoutMs: 30_000 });
      expect(stored.stdout).not.toContain(id);
      expect((await hub.ingress(fresh.id)).map((m) => m.delivery)).toStrictEqual(["pending"]);
      await device.stop();
      // the new device, started now, gets it (the old session's queue is not handed to it)
      const newDevice = start(["serve", ...fresh.flags]);
      try {
        await newDevice.waitFor(/ingress\.stored/, 30_000);
        const mine = await run(["messages", "list", "--all", "--json", ...fresh.flags], { timeoutMs: 30_000 });
        expect(mine.stdout).toContain(id);
        expect(mine.stdout.trim().split("\n")).toHaveLength(1);
      } finally {
        await newDevice.stop();
      }
    });
  }, 90_000);

  test("hub thing list --name TEXT --status S lists the things that match; a status it does not know is 64 (new-user pass 26, F8)", async () => {
    await hub.createThing("listed-pump");
    const revoked = await hub.createThing("listed-gone");
    expect((await run(["hub", "thing", "revoke", revoked.name, "--dir", hub.dir], { timeoutMs: 30_000 })).code).toBe(0);
    const names = async (...flags: string[]) => {
      const listed = await run(["hub", "thing", "list", "--json", ...flags, "--dir", hub.dir], { timeoutMs: 30_000 });
      expect(listed.code).toBe(0);
      return (JSON.parse(listed.stdout) as { shortName: string }[]).map((t) => t.shortName).sort();
    };
    expect(await names("--name", "LISTED-")).toEqual(["listed-gone", "listed-pump"]);
    expect(await names("--name", "listed-", "--status", "active")).toEqual(["listed-pump"]);
    expect(await names("--name", "listed-", "--status", "revoked")).toEqual(["listed-gone"]);
    const none = await run(["hub", "thing", "list", "--name", "nothing-like-it", "--dir", hub.dir], { timeoutMs: 30_000 });
    expect(none.stdout).toContain("(no thing matches)");
    const bad = await run(["hub", "thing", "list", "--status", "gone", "--dir", hub.dir], { timeoutMs: 30_000 });
    expect(bad.code).toBe(64);
    expect(bad.stderr).toContain('status must be one of created, verified, revoked, active, not "gone"');
  }, 60_000);

  test("hub thing list says which things are connected now, asking the running hub; with none running, unknown and why (new-user pass 27)", async () => {
    const idle = await hub.createThing("list-idle");
    const listed = async () => {
      const json = await run(["hub", "thing", "list", "--json", "--name", "list-", "--dir", hub.dir], { timeoutMs: 30_000 });
      const text = await run(["hub", "thing", "list", "--name", "list-", "--dir", hub.dir], { timeoutMs: 30_000 });
      expect([json.code, text.code]).toEqual([0, 0]);
      const connected = new Map((JSON.parse(json.stdout) as { shortName: string; connected: boolean | null }[]).map((t) => [t.shortName, t.connected]));
      return { connected, text: text.stdout };
    };
    await withConnectedThing("list-online", async ({ old }) => {
      const { connected, text } = await listed();
      expect(connected).toEqual(
        new Map([
          ["list-idle", false],
          ["list-online", true],
        ]),
      );
      expect(text).toMatch(new RegExp(`${old.name} +${old.id} +\\w+ +yes `));
      expect(text).toMatch(new RegExp(`${idle.name} +${idle.id} +\\w+ +no `));
      expect(text).not.toContain("(CONNECTED: unknown");
    });
    const { connected, text } = await listed();
    expect([...connected.values()]).toEqual([null, null]);
    expect(text).toContain(
      "(CONNECTED: unknown: no hub serve answered on this home's socket within 5 s; start it, or wait for it, to see which things are connected)",
    );
  }, 90_000);

  test("hub thing dist of a zip made before the hub moved says which addresses its config.yml gives that hub.yml no longer does (new-user pass 27, F4: handed out without a word)", async () => {
    const moved = await makeHubFixture(mkdtempSync(join(work, "moved-")));
    await moved.createThing("mover");
    const hubYml = join(moved.dir, "hub.yml");
    const settings = parse(readFileSync(hubYml, "utf8"));
    const before = { api: settings.hub.api.publicUrl, port: settings.hub.broker.port };
    settings.hub.api.publicUrl = "http://127.0.0.1:1";
    settings.hub.broker.port = 2;
    writeFileSync(hubYml, stringify(settings));
    const out = join(work, "again.zip");
    const again = await run(["hub", "thing", "dist", "mover", "--dir", moved.dir, "-o", out], { timeoutMs: 30_000 });
    expect(again.code, again.stderr).toBe(0);
    expect(existsSync(out)).toBe(true);
    expect(again.stderr).toContain(
      `warning: the zip was made before the hub moved: its config.yml flashlex.app.api.endpoint is ${before.api}; hub.yml now says http://127.0.0.1:1`,
    );
    expect(again.stderr).toContain(`its config.yml flashlex.thing.mqtt.port is ${before.port}; hub.yml now says 2`);
    expect(again.stderr).not.toContain("flashlex.thing.endpoint");
  }, 60_000);

  test("a thing that does not exist is 65; no thing named is 64", async () => {
    const missing = await run(["hub", "thing", "delete", "nosuch", "--dir", hub.dir], { timeoutMs: 30_000 });
    expect(missing.code).toBe(65);
    expect(missing.stderr).toContain('no thing "nosuch"');
    expect((await run(["hub", "thing", "delete", "--dir", hub.dir], { timeoutMs: 30_000 })).code).toBe(64);
    // several things named: every unknown one is named at once, before anything is sent
    const several = await run(["hub", "send", "nosuch1", "nosuch2", "--dir", hub.dir], { timeoutMs: 30_000, input: "{}" });
    expect(several.code).toBe(65);
    expect(several.stderr).toContain('no things "nosuch1", "nosuch2"');
  }, 30_000);
});

describe("-o of hub thing create, hub thing dist and hub export", () => {
  test("-o naming a directory, or a file in a directory that is not there, is 64 before anything is made; the zip goes where -o says, and the hint names it", async () => {
    const before = (await hub.things()).length;
    const inTheWay = join(work, "in-the-way");
    writeFileSync(inTheWay, "x");
    // a trailing slash names a directory: it wrote a file named new-dir, or replaced in-the-way
    for (const output of [
      join(work, "no-such-dir", "x.zip"),
      work,
      join(inTheWay, "sub", "x.zip"),
      `${join(work, "new-dir")}/`,
      `${inTheWay}/`,
      `${inTheWay}/.`,
      `${join(work, "new-dir", "x")}/..`,
    ]) {
      const made = await run(["hub", "thing", "create", "outlier", "--dir", hub.dir, "-o", output], { timeoutMs: 30_000 });
      expect({ output, code: made.code }).toEqual({ output, code: 64 });
      expect(made.stderr).toContain(`-o ${JSON.stringify(output)}`);
      // the part at fault, not "the directory .../sub does not exist"
      if (output.startsWith(`${inTheWay}/sub`)) expect(made.stderr).toContain(`${inTheWay} is a file, not a directory`);
    }
    expect((await hub.things()).length).toBe(before);
    expect([existsSync(join(work, "new-dir")), readFileSync(inTheWay, "utf8")]).toEqual([false, "x"]);
    // -o that passes the checks but cannot take the zip (a full device): the thing is taken back,
    // so the same command, once the cause is fixed, makes it (a retry was 65 "already exists")
    const full = await run(["hub", "thing", "create", "outlier", "--dir", hub.dir, "-o", "/dev/full"], { timeoutMs: 30_000 });
    expect(full.code).not.toBe(0);
    expect(full.stderr).toContain("thing");
    expect(full.stderr).toContain("was not kept (run the command again once that is fixed)");
    expect((await hub.things()).length).toBe(before);
    const zip = join(work, "elsewhere.zip");
    const made = await run(["hub", "thing", "create", "outlier", "--dir", hub.dir, "-o", zip], { timeoutMs: 30_000 });
    expect(made.code, made.stderr).toBe(0);
    expect(existsSync(zip)).toBe(true);
    expect(made.stdout).toContain("unzip elsewhere.zip");
    for (const args of [
      ["thing", "dist", "outlier"],
      ["export", "outlier"],
    ]) {
      const refused = await run(["hub", ...args, "--dir", hub.dir, "-o", join(work, "no-such-dir", "y.zip")], { timeoutMs: 30_000 });
      expect({ args, code: refused.code }).toEqual({ args, code: 64 });
    }
  }, 60_000);
});

describe.skipIf(Boolean(noTmpfs))("a full disk under the hub home", () => {
  test("POST /things answers 503 and leaves no thing, no zip (not an empty one) and no temporary file", async () => {
    const fs = mountTmpfs(4096);
    mounts.push(fs);
    const home = `${fs.dir}/hub`;
    const [apiPort, brokerPort] = [await freePort(), await freePort()];
    const init = await run([...loopbackHubInit(home, apiPort, brokerPort, "127.0.0.1"), "--json"], { timeoutMs: 60_000 });
    expect(init.code, init.stderr).toBe(0);
    const token = JSON.parse(init.stdout).token as string;
    listenOnLoopback(home);
    const serving = start(["hub", "serve", "--dir", home], {});
    try {
      await serving.waitFor(/hub\.started/, 30_000);
      const create = (name: string) =>
        fetch(`http://127.0.0.1:${apiPort}/dev/v1/things`, {
          method: "POST",
          headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
          body: JSON.stringify({ name }),
          signal: AbortSignal.timeout(15_000),
        });
      // one thing first, so dists/ exists and the full disk is the only fault
      expect((await create("first")).status).toBe(201);
      const before = readdirSync(`${home}/dists`);
      fs.fill();
      let status: number;
      try {
        status = (await create("second")).status;
      } finally {
        fs.free();
      }
      expect(status).toBe(503);
      expect(readdirSync(`${home}/dists`)).toEqual(before);
      expect((await create("third")).status).toBe(201);
      expect(readdirSync(`${home}/dists`)).toHaveLength(before.length + 1);
      // space again: the name refused on the full disk is free
      expect((await create("second")).status).toBe(201);
    } finally {
      expect(await serving.stop(10_000)).toBe(0);
    }
  }, 120_000);

  test("hub token rotate, enroll-token create and thing dist --curl with a few KiB left: stored, or refused saying the token shown is void, never half done (attack round 27, F1/F2: the hub was left with no operator token)", async () => {
    const fs = mountTmpfs(4096);
    mounts.push(fs);
    const home = `${fs.dir}/hub`;
    const init = await run([...loopbackHubInit(home, await freePort(), await freePort(), "127.0.0.1"), "--json"], { timeoutMs: 60_000 });
    expect(init.code, init.stderr).toBe(0);
    let current = JSON.parse(init.stdout).token as string;
    expect((await run(["hub", "thing", "create", "pump", "--dir", home], { timeoutMs: 60_000 })).code).toBe(0);
    const { openHubStore } = await import("../../src/hub/store/open-store.ts");
    const { OperatorTokens } = await import("../../src/hub/home/tokens.ts");
    const works = async (token: string) => {
      const store = await openHubStore(join(home, "hub.db"));
      try {
        return await new OperatorTokens(store).verify(token);
      } finally {
        await store.close();
      }
    };
    const outcomes = new Set<string>();
    for (const leftKiB of [0, 4, 8, 16, 32, 64, 128, 256, 512]) {
      const filler = fs.fill();
      const { truncateSync, statSync } = await import("node:fs");
      truncateSync(filler, Math.max(0, statSync(filler).size - leftKiB * 1024));
      let rotated: Awaited<ReturnType<typeof run>>;
      let enrolment: Awaited<ReturnType<typeof run>>;
      let line: Awaited<ReturnType<typeof run>>;
      try {
        rotated = await run(["hub", "token", "rotate", "--dir", home], { timeoutMs: 60_000 });
        enrolment = await run(["hub", "enroll-token", "create", "--json", "--dir", home], { timeoutMs: 60_000 });
        line = await run(["hub", "thing", "dist", "pump", "--curl", "--dir", home], { timeoutMs: 60_000 });
      } finally {
        fs.free();
      }
      // the token, when it was shown (with no room at all the hub may not even open: nothing shown)
      const shown = /\n([A-Za-z0-9_-]{43})\n/.exec(rotated.stdout)?.[1];
      if (rotated.code === 0) {
        expect({ leftKiB, old: await works(current), shown: shown !== undefined && (await works(shown)) }).toEqual({ leftKiB, old: false, shown: true });
        current = shown!;
        outcomes.add("rotated");
      } else {
        expect({ leftKiB, code: rotated.code, old: await works(current), shown: shown !== undefined && (await works(shown)) }).toEqual({
          leftKiB,
          code: 74,
          old: true,
          shown: false,
        });
        if (shown) {
          expect(rotated.stderr.trim()).toEndWith(
            "; the token shown above was not stored and does not work: nothing changed, the old operator token still works",
          );
          outcomes.add("rotate refused after it was shown");
        }
      }
      const listed = JSON.parse((await run(["hub", "enroll-token", "list", "--json", "--dir", home])).stdout) as { id: string }[];
      const made = enrolment.stdout.trim() ? (JSON.parse(enrolment.stdout) as { id: string }) : undefined;
      if (enrolment.code === 0) {
        expect(listed.map((t) => t.id)).toContain(made!.id);
        outcomes.add("enrolment token made");
      } else {
        expect(enrolment.code).toBe(74);
        if (made) {
          expect(enrolment.stderr.trim()).toEndWith("; the token shown above was not stored and does not work: no enrolment token was made");
          expect(listed.map((t) => t.id)).not.toContain(made.id);
          outcomes.add("enrolment refused after it was shown");
        }
      }
      // the one-time download line likewise (verify pass 28, F3)
      if (line.code === 0) outcomes.add("line made");
      else if (line.stdout.includes("curl")) {
        expect({ leftKiB, code: line.code, said: line.stderr.trim() }).toEqual({
          leftKiB,
          code: 74,
          said: expect.stringMatching(/; the line shown above was not stored and does not work: make another when there is room$/),
        });
        outcomes.add("line refused after it was shown");
      }
    }
    // each way was met: a test that never met the full disk after the token was shown would prove nothing
    expect([...outcomes].sort()).toEqual([
      "enrolment refused after it was shown",
      "enrolment token made",
      "line made",
      "line refused after it was shown",
      "rotate refused after it was shown",
      "rotated",
    ]);
  }, 180_000);
});

test("hub token rotate whose output cannot be written (/dev/full) exits 74 and changes nothing: the old token still works (it exited 0, the old token dead, the new one lost)", async () => {
  const rotate = Bun.spawn([binaryPath(), "hub", "token", "rotate", "--dir", hub.dir], { stdout: Bun.file("/dev/full"), stderr: "pipe" });
  const [code, stderr] = await Promise.all([rotate.exited, new Response(rotate.stderr).text()]);
  expect(code).toBe(74);
  expect(stderr.trim()).toBe("flashlex: could not write the new token to stdout (ENOSPC): nothing changed, the old operator token still works");
  const { openHubStore } = await import("../../src/hub/store/open-store.ts");
  const { OperatorTokens } = await import("../../src/hub/home/tokens.ts");
  const store = await openHubStore(join(hub.dir, "hub.db"));
  try {
    expect(await new OperatorTokens(store).verify(hub.token)).toBe(true);
  } finally {
    await store.close();
  }
});

/** Runs the binary with stdout on /dev/full (every write fails with ENOSPC); its exit code and stderr. */
async function withStdoutFull(args: string[]): Promise<{ code: number; stderr: string }> {
  const proc = Bun.spawn([binaryPath(), ...args], { stdout: Bun.file("/dev/full"), stderr: "pipe" });
  const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
  return { code, stderr: stderr.trim() };
}

test("hub enroll-token create whose output cannot be written (/dev/full) exits 74 and makes no token, plain or --json (it exited 0 with a token nobody saw)", async () => {
  const before = await run(["hub", "enroll-token", "list", "--json", "--dir", hub.dir]);
  for (const flags of [[], ["--json"]]) {
    expect(await withStdoutFull(["hub", "enroll-token", "create", ...flags, "--dir", hub.dir])).toEqual({
      code: 74,
      stderr: "flashlex: could not write the enrolment token to stdout (ENOSPC): none was made",
    });
  }
  const after = await run(["hub", "enroll-token", "list", "--json", "--dir", hub.dir]);
  expect(JSON.parse(after.stdout)).toEqual(JSON.parse(before.stdout));
  // written out, the same command makes one
  const made = await run(["hub", "enroll-token", "create", "--json", "--dir", hub.dir]);
  expect(made.code, made.stderr).toBe(0);
  expect(JSON.parse(made.stdout).token).toStartWith("flxe_");
});

test("hub enroll-token create with stdout closed (>&-, which the runtime reopens on /dev/null) exits 74 and makes no token (it exited 0, the token lost)", async () => {
  const before = await run(["hub", "enroll-token", "list", "--json", "--dir", hub.dir]);
  const closed = Bun.spawnSync(["sh", "-c", 'exec "$0" "$@" >&-', binaryPath(), "hub", "enroll-token", "create", "--dir", hub.dir], { stderr: "pipe" });
  expect({ code: closed.exitCode, stderr: closed.stderr.toString().trim() }).toEqual({
    code: 74,
    stderr: "flashlex: could not write the enrolment token to stdout (it is /dev/null, or was closed): none was made",
  });
  const after = await run(["hub", "enroll-token", "list", "--json", "--dir", hub.dir]);
  expect(JSON.parse(after.stdout)).toEqual(JSON.parse(before.stdout));
});

test("hub init whose output cannot be written (/dev/full) exits 74 saying the hub exists and how to get a token (it exited 0, the only token lost); the rotate it names works", async () => {
  for (const [n, flags] of [[], ["--json"]].entries()) {
    const dir = join(work, `init-full-${n}`);
    expect(await withStdoutFull([...loopbackHubInit(dir, await freePort(), await freePort()), ...flags])).toEqual({
      code: 74,
      stderr: `flashlex: could not write the operator access token to stdout (ENOSPC): the hub was created in ${dir}, but nobody has its token: make one with \`flashlex hub token rotate --dir ${dir}\``,
    });
    const rotated = await run(["hub", "token", "rotate", "--dir", dir]);
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(rotated.stdout).toMatch(/^new operator access token .*\n\S{20,}\n$/);
  }
});

describe("a zip sent to stdout (-o -, -o /dev/stdout): the zip alone goes there, whole", () => {
  /** Runs `args` through sh with stdout redirected as `redirect` (e.g. `> out.zip`); its code and stderr. */
  function shell(args: string[], redirect: string): { code: number; stderr: string } {
    const result = Bun.spawnSync(["sh", "-c", `exec "$0" "$@" ${redirect}`, binaryPath(), ...args], { stderr: "pipe" });
    return { code: result.exitCode, stderr: result.stderr.toString() };
  }
  const unzipTest = (file: string) => Bun.spawnSync(["unzip", "-tq", file]).exitCode;

  test("hub thing create -o - and hub thing dist -o -: a zip unzip accepts, the report on stderr (-o - was 64 'value is missing'; /dev/stdout had the report written over the zip's first bytes)", () => {
    const created = join(work, "stdout-create.zip");
    const made = shell(["hub", "thing", "create", "piped", "--dir", hub.dir, "-o", "-"], `> ${created}`);
    expect(made.code, made.stderr).toBe(0);
    expect(made.stderr).toStartWith("created thing ");
    expect(made.stderr).toContain("unzip FILE.zip && ");
    expect(readFileSync(created).subarray(0, 2).toString()).toBe("PK");
    expect(unzipTest(created)).toBe(0);
    for (const output of ["-", "/dev/stdout"]) {
      const again = join(work, "stdout-dist.zip");
      const dist = shell(["hub", "thing", "dist", "piped", "--dir", hub.dir, "-o", output], `> ${again}`);
      expect({ output, ...dist }).toEqual({ output, code: 0, stderr: `${output === "-" ? "/dev/stdout" : output}\n` });
      expect(unzipTest(again)).toBe(0);
    }
  });

  test.skipIf(!Bun.which("script"))(
    "-o - on a terminal is refused (64) before anything is made: the zip is binary and holds a private key (it was dumped on the screen)",
    () => {
      const tty = Bun.spawnSync(["script", "-qec", `"${binaryPath()}" hub thing create on-screen --dir "${hub.dir}" -o -`, "/dev/null"], {
        stdout: "pipe",
        stderr: "pipe",
      });
      const shown = tty.stdout.toString();
      expect(tty.exitCode).toBe(64);
      expect(shown).toContain('-o "-": stdout is a terminal; send the zip to a file (> FILE.zip) or a pipe');
      expect(shown).not.toContain("PK");
      expect(Bun.spawnSync([binaryPath(), "hub", "thing", "list", "--dir", hub.dir]).stdout.toString()).not.toContain("-on-screen ");
    },
  );

  test("a lone dash is stdout only for -o: hub init --dir - is still refused (64), not a hub home made in ./-", () => {
    const dashed = Bun.spawnSync([binaryPath(), "hub", "init", "--dir", "-"], { cwd: work, stdout: "pipe", stderr: "pipe" });
    expect(dashed.exitCode).toBe(64);
    expect(existsSync(join(work, "-"))).toBe(false);
  });

  test("-o /dev/null (a device): the next steps name the zip FILE.zip, as for a pipe (they said `unzip null`)", async () => {
    const made = await run(["hub", "thing", "create", "nowhere", "--dir", hub.dir, "-o", "/dev/null"]);
    expect(made.code, made.stderr).toBe(0);
    expect(made.stdout).toContain("  unzip FILE.zip && ");
  });

  test("-o /dev/stdout appended to a file (>>): what the file held stays, the zip follows it (a new open of /dev/stdout truncated the file)", () => {
    const file = join(work, "appended.bin");
    writeFileSync(file, "before\n");
    const dist = shell(["hub", "thing", "dist", "piped", "--dir", hub.dir, "-o", "/dev/stdout"], `>> ${file}`);
    expect(dist.code, dist.stderr).toBe(0);
    const bytes = readFileSync(file);
    expect(bytes.subarray(0, 9).toString()).toBe("before\nPK");
  });

  test("a reader that went away (| true): 74, 'the reader closed the pipe', not 69 'unavailable'; the thing made with -o - is taken back", () => {
    const rc = join(work, "epipe.rc");
    const closedReader = (args: string[]) => {
      const result = Bun.spawnSync(["sh", "-c", `{ sleep 0.3; "$0" "$@"; echo $? > ${rc}; } | true`, binaryPath(), ...args], { stderr: "pipe" });
      return { code: Number(readFileSync(rc, "utf8")), stderr: result.stderr.toString().trim() };
    };
    expect(closedReader(["hub", "thing", "dist", "piped", "--dir", hub.dir, "-o", "-"])).toEqual({
      code: 74,
      stderr: "flashlex: /dev/stdout: the reader closed the pipe before the end (EPIPE)",
    });
    const lost = closedReader(["hub", "thing", "create", "unread", "--dir", hub.dir, "-o", "-"]);
    expect(lost.code).toBe(74);
    expect(lost.stderr).toContain("the reader closed the pipe before the end (EPIPE); thing ");
    expect(lost.stderr).toContain("was not kept");
    expect(Bun.spawnSync([binaryPath(), "hub", "thing", "list", "--dir", hub.dir]).stdout.toString()).not.toContain("-unread ");
  });

  test("a reader slower than the writer (| (sleep; cat)): the whole export arrives, exit 0 (a full non-blocking pipe made it 75 'EAGAIN' after one pipe buffer, the zip cut short)", async () => {
    const thing = await hub.createThing("slowly-read");
    const serving = await hub.serve();
    try {
      // ~800 KB of messages that do not compress: a dozen pipe buffers
      for (let n = 0; n < 40; n++) await hub.publish(thing.id, { n, noise: randomBytes(15_000).toString("base64") });
    } finally {
      await serving.stop();
    }
    const zip = join(work, "slowly-read.zip");
    const rc = join(work, "slowly-read.rc");
    const slow = Bun.spawnSync(
      ["sh", "-c", `{ "$0" "$@"; echo $? > ${rc}; } | { sleep 0.5; cat > ${zip}; }`, binaryPath(), "hub", "export", thing.id, "--dir", hub.dir, "-o", "-"],
      {
        stderr: "pipe",
      },
    );
    expect({ code: Number(readFileSync(rc, "utf8")), stderr: slow.stderr.toString().trim() }).toEqual({ code: 0, stderr: "/dev/stdout: 40 messages" });
    expect(Bun.spawnSync(["unzip", "-tq", zip]).exitCode).toBe(0);
  }, 60_000);
});

describe("hub thing dist --curl: a one-time line, never the operator's token", () => {
  const downloadTokens = () => Number(execFileSync("sqlite3", [join(hub.dir, "hub.db"), "SELECT count(*) FROM download_tokens"], { encoding: "utf8" }).trim());

  test("prints the line and when it expires; with -o, for a revoked thing, or on a full stdout it is refused and no token is kept", async () => {
    const made = await hub.createThing("curl-line");
    const before = downloadTokens();
    const cwd = mkdtempSync(join(work, "curl-"));
    const printed = await run(["hub", "thing", "dist", "curl-line", "--curl", "--dir", hub.dir], { cwd, timeoutMs: 30_000 });
    expect(printed.code, printed.stderr).toBe(0);
    const lines = printed.stdout.split("\n");
    expect(lines[0]).toMatch(new RegExp(`^one download of ${made.name}\\.zip, until \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ; this line is shown once`));
    expect(lines[2]).toMatch(
      new RegExp(
        `^  \\(umask 077; echo 'Authorization: Bearer flxd_[\\w-]{43}' \\| curl -fo ${made.name}\\.zip\\.part -H @- http://127\\.0\\.0\\.1:\\d+/dev/v1/things/${made.id}/dist && mv -f ${made.name}\\.zip\\.part ${made.name}\\.zip \\|\\| \\(echo '[^']+'; exit 1\\)\\)$`,
      ),
    );
    expect(printed.stdout).not.toContain(hub.token);
    expect(readdirSync(cwd)).toEqual([]); // no zip written
    expect(downloadTokens()).toBe(before + 1);

    const withOutput = await run(["hub", "thing", "dist", "curl-line", "--curl", "-o", join(work, "x.zip"), "--dir", hub.dir], { timeoutMs: 30_000 });
    expect([withOutput.code, withOutput.stderr.trim()]).toEqual([64, "flashlex: --curl prints a line instead of writing the zip: give it without -o"]);
    const full = Bun.spawnSync(["sh", "-c", 'exec "$0" "$@" > /dev/full', binaryPath(), "hub", "thing", "dist", "curl-line", "--curl", "--dir", hub.dir], {
      stderr: "pipe",
    });
    expect([full.exitCode, full.stderr.toString().trim()]).toEqual([74, "flashlex: could not write the download line to stdout (ENOSPC): no token was made"]);
    expect(downloadTokens()).toBe(before + 1);

    expect((await run(["hub", "thing", "revoke", "curl-line", "--dir", hub.dir], { timeoutMs: 30_000 })).code).toBe(0);
    const revoked = await run(["hub", "thing", "dist", "curl-line", "--curl", "--dir", hub.dir], { timeoutMs: 30_000 });
    expect(revoked.code).toBe(65);
    expect(revoked.stderr).toContain(`${made.name} has no distribution to download: it was revoked`);
    expect(downloadTokens()).toBe(before + 1);
  });
});

describe("a zip sent to a pipe whose reader does not read (-o - | sleep, -o FIFO)", () => {
  /**
   * Runs `args` with its zip going into a pipe (a FIFO this test holds the reader of and never
   * reads while it runs) whose buffer is full but for one page: at stdout (`-o -`), or named by
   * -o. Once it has had time to stall there, `signal`; SIGKILL if it has not exited 10 s later.
   * Its exit code, its stderr, and the bytes its reader got.
   */
  async function stalled(name: string, args: string[], via: "stdout" | "fifo", signal: "SIGTERM" | "SIGINT") {
    const { closeSync, constants, openSync, readSync, writeSync } = await import("node:fs");
    const fifo = join(work, `${name}.fifo`);
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const writer = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
    const page = Buffer.alloc(4096, "x");
    let filled = 0;
    for (;;) {
      try {
        filled += writeSync(writer, page);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "EAGAIN") break;
        throw err;
      }
    }
    filled -= readSync(reader, Buffer.alloc(4096)); // one page free: part of the zip goes in, not all (~21 KB)
    const proc = Bun.spawn([binaryPath(), ...args, ...(via === "fifo" ? ["-o", fifo] : ["-o", "-"])], {
      stdin: "ignore",
      stdout: via === "stdout" ? writer : "ignore",
      stderr: "pipe",
    });
    closeSync(writer);
    try {
      await Bun.sleep(2_000); // it makes the thing and reaches the zip in well under that
      expect(proc.exitCode).toBeNull(); // stalled: the pipe is full
      proc.kill(signal);
      const heard = await Promise.race([proc.exited.then(() => true), Bun.sleep(10_000).then(() => false)]);
      if (!heard) proc.kill("SIGKILL");
      const code = await proc.exited;
      const stderr = await new Response(proc.stderr).text();
      const got: Buffer[] = [];
      const buffer = Buffer.alloc(65536);
      for (;;) {
        let n = 0;
        try {
          n = readSync(reader, buffer);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === "EAGAIN") break;
          throw err;
        }
        if (n === 0) break;
        got.push(Buffer.from(buffer.subarray(0, n)));
      }
      return { heard, code, stderr: stderr.trim(), zip: Buffer.concat(got).subarray(filled) };
    } finally {
      closeSync(reader);
      if (proc.exitCode === null) proc.kill("SIGKILL");
    }
  }

  test("SIGTERM / SIGINT are heard (143 / 130 within 10 s; the synchronous write was deaf to them, only SIGKILL ended it), and the line says how much of the zip the reader got (it said nothing was written); a thing being created is not kept", async () => {
    const made = await stalled("create-stdout", ["hub", "thing", "create", "stalled", "--dir", hub.dir], "stdout", "SIGTERM");
    expect({ heard: made.heard, code: made.code }).toEqual({ heard: true, code: 143 });
    expect(made.zip.length).toBeGreaterThan(0);
    expect(made.zip.subarray(0, 2).toString()).toBe("PK");
    expect(made.stderr).toMatch(
      new RegExp(
        `^flashlex: hub thing create stopped by SIGTERM; thing [0-9a-f]{8}-stalled was not kept \\(run the command again\\); the output is incomplete: ${made.zip.length} bytes of the zip were written to stdout$`,
      ),
    );
    expect(Bun.spawnSync([binaryPath(), "hub", "thing", "list", "--dir", hub.dir]).stdout.toString()).not.toContain("-stalled ");

    const thing = await hub.createThing("stalled-dist");
    const fifo = await stalled("dist-fifo", ["hub", "thing", "dist", thing.id, "--dir", hub.dir], "fifo", "SIGINT");
    expect({ heard: fifo.heard, code: fifo.code }).toEqual({ heard: true, code: 130 });
    expect(fifo.zip.length).toBeGreaterThan(0);
    expect(fifo.stderr).toBe(
      `flashlex: hub thing dist stopped by SIGINT; the output is incomplete: ${fifo.zip.length} bytes of the zip were written to ${join(work, "dist-fifo.fifo")}`,
    );
    const piped = await stalled("dist-stdout", ["hub", "thing", "dist", thing.id, "--dir", hub.dir], "stdout", "SIGTERM");
    expect({ heard: piped.heard, code: piped.code }).toEqual({ heard: true, code: 143 });
    expect(piped.stderr).toBe(
      `flashlex: hub thing dist stopped by SIGTERM; the output is incomplete: ${piped.zip.length} bytes of the zip were written to stdout`,
    );

    // hub export waited with signals heard at stdout, but said "nothing was written"; at a FIFO it blocked
    const serving = await hub.serve();
    try {
      for (let n = 0; n < 4; n++) await hub.publish(thing.id, { n, noise: randomBytes(15_000).toString("base64") });
    } finally {
      await serving.stop();
    }
    for (const via of ["stdout", "fifo"] as const) {
      const exported = await stalled(`export-${via}`, ["hub", "export", thing.id, "--dir", hub.dir], via, "SIGTERM");
      expect({ via, heard: exported.heard, code: exported.code }).toEqual({ via, heard: true, code: 143 });
      expect(exported.zip.length).toBeGreaterThan(0);
      const shown = via === "stdout" ? "stdout" : join(work, "export-fifo.fifo");
      expect(exported.stderr).toBe(
        `flashlex: hub export stopped by SIGTERM; the output is incomplete: ${exported.zip.length} bytes of the zip were written to ${shown}`,
      );
    }
  }, 120_000);
});
