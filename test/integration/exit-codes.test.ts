/**
 * Faults a device really meets, through the compiled binary, each answered with its documented
 * exit code and one line on stderr naming the file or flag — never 70 ("a bug"):
 *
 *   damaged database   ten kinds of damaged or foreign message database (74 or 78; one opens)
 *   read-only          the data directory on a file system remounted read-only (74)
 *   disk full          a tmpfs filled to the last byte: collect refuses (74) and queues nothing;
 *                      a message delivered while the disk fills is still reported sent (0) and
 *                      resent later only with the same message id; the hub answers 503
 *   bad values         numeric flags (64), invalid UTF-8 on stdin and in --file (65)
 *   TLS material       serve with a key that is not the certificate's, or a garbage certificate (78)
 *
 * The tmpfs tests need root (mount); without it they are skipped, loudly, with the reason.
 */

import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { binaryPath, type RunResult, run, start } from "../support/binary.ts";
import { DAMAGE_KINDS, GOOD_ROW_COUNT } from "../support/damaged-databases.ts";
import { listenOnLoopback, loopbackHubInit } from "../support/hub-fixture.ts";
import { freePort } from "../support/mosquitto.ts";
import { type Receiver, startReceiver } from "../support/receiver.ts";
import { tally } from "../support/tally.ts";
import { makeMessageDatabase, makeThingFixture, type ThingFixture } from "../support/thing-fixture.ts";
import { mountTmpfs, type Tmpfs, tmpfsUnavailable } from "../support/tmpfs.ts";

let thing: ThingFixture;
let receiver: Receiver;
const mounts: Tmpfs[] = [];
const noTmpfs = tmpfsUnavailable();
if (noTmpfs) console.warn(`SKIPPING the read-only and disk-full tests: ${noTmpfs}`);

/** The flags of `thing` with another data directory. */
const withData = (dataDir: string) => ["-c", thing.configPath, "-k", thing.keysDir, "-d", dataDir];

/** stderr is exactly one line, `flashlex: ...` (plus, for collect, its own one-line notes). */
function expectOneLine(result: RunResult, pattern: RegExp): void {
  const lines = result.stderr.trimEnd().split("\n");
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  expect(result.stderr).not.toMatch(/^\s+at /m);
}

beforeAll(async () => {
  binaryPath();
  thing = await makeThingFixture({ brokerPort: 1, apiUrl: "http://127.0.0.1:1" });
  receiver = await startReceiver({ thingId: thing.thingId, publicKeyPem: thing.pki.thing.publicKeyPem });
  thing.editConfig((doc) => (doc.flashlex.app.api.endpoint = receiver.url));
});

afterAll(async () => {
  await receiver?.stop();
  for (const m of mounts) m.unmount();
  if (thing) rmSync(thing.dir, { recursive: true, force: true });
});

describe("a damaged or foreign message database", () => {
  DAMAGE_KINDS.forEach((kind, i) => {
    test(`${kind.name}: messages list exits ${kind.exitCode}, the file untouched`, async () => {
      const dataDir = join(thing.dir, `damaged-${i}`);
      mkdirSync(dataDir);
      const file = join(dataDir, "subscription.db");
      kind.make(file);
      const before = readFileSync(file);
      const filesBefore = readdirSync(dataDir).sort();
      const result = await run(["messages", "list", "--all", ...withData(dataDir)]);
      tally("badInputs");
      expect(result.code).toBe(kind.exitCode);
      expect(readFileSync(file).equals(before)).toBe(true);
      if (kind.exitCode === 0) {
        expect(result.stdout.trim().split("\n")).toHaveLength(GOOD_ROW_COUNT);
        return;
      }
      expectOneLine(result, new RegExp(`^flashlex: ${file}: .*${kind.says.source}`));
      expect(readdirSync(dataDir).sort()).toEqual(filesBefore);
    });
  });

  test("a damaged page serve's start does not read: serve stops (74) at the first statement that does, and its next start refuses until every page reads well (attack round 12, F2: it acknowledged messages into the file)", async () => {
    const dataDir = join(thing.dir, "damaged-while-serving");
    mkdirSync(dataDir);
    const file = join(dataDir, "subscription.db");
    DAMAGE_KINDS.find((k) => k.name === "a damaged page in the middle")!.make(file);
    const serve = start(["serve", ...withData(dataDir)]);
    await serve.waitFor(/serve\.started/);
    const list = await run(["messages", "list", "--all", ...withData(dataDir)]);
    expect(list.code).toBe(74);
    expect(await serve.proc.exited).toBe(74);
    await serve.stop();
    expect(serve.output()).toMatch(new RegExp(`ERROR serve\\.database_damaged file=${file}`));
    expect(existsSync(join(dataDir, "database-damaged"))).toBe(true);

    const again = await run(["serve", ...withData(dataDir)], { timeoutMs: 15_000 });
    expect(again.code).toBe(74);
    expect(again.stderr).toContain(`flashlex: ${file}: the database file is damaged (`);
    expect(again.stderr).toContain("found by PRAGMA quick_check after serve stopped for it); move it aside");
    expect(again.stderr).not.toContain("serve.database_damaged"); // one line: what this start found
    // bootstrap says what to do with a damaged file, not 'make the directory writable' (attack round 13, F3)
    const checked = await run(["bootstrap", ...withData(dataDir)], { timeoutMs: 60_000 });
    expect(checked.stdout).toMatch(/\[FAIL\] data directory writable and the database opens: .*damaged[^\n]*\n\s+fix: Stop serve, move \S+ aside/);
    expect(checked.stdout).toContain(`\`sqlite3 ${file} .recover\``); // the file named, both times
    tally("badInputs", 3);

    // moved aside, as the message says: serve starts on a new file and the mark goes
    renameSync(file, `${file}.damaged-copy`);
    const fresh = start(["serve", ...withData(dataDir)]);
    await fresh.waitFor(/serve\.started/);
    expect(fresh.output()).toMatch(/WARN +serve\.database_checked/);
    expect(existsSync(join(dataDir, "database-damaged"))).toBe(false);
    expect(await fresh.stop()).toBe(0);
  });

  test("serve's damage mark as a directory is 78 naming it, and a write probe bootstrap left is a thing's file, swept by the next bootstrap (attack round 13, F4 and F8: 70 'please report it', and messages list 64)", async () => {
    const dataDir = join(thing.dir, "odd-marks");
    mkdirSync(dataDir);
    writeFileSync(join(dataDir, "serve.lock"), "");
    const probe = join(dataDir, ".bootstrap-probe.4000000-0a1b2c3d.tmp"); // a bootstrap killed mid-probe (no such pid)
    writeFileSync(probe, "probe");
    const listed = await run(["messages", "list", ...withData(dataDir)]);
    expect(listed.code).toBe(0);
    await run(["bootstrap", ...withData(dataDir)], { timeoutMs: 60_000 });
    expect(existsSync(probe)).toBe(false);
    mkdirSync(join(dataDir, "database-damaged"));
    for (const args of [["serve"], ["messages", "list"]]) {
      const result = await run([...args, ...withData(dataDir)], { timeoutMs: 15_000 });
      tally("badInputs");
      expect(result.code).toBe(78);
      expect(result.stderr).toContain(`flashlex: ${join(dataDir, "database-damaged")}: a directory where serve keeps its damage mark`);
    }
  });

  test("serve and collect refuse a foreign database the same way, and send nothing", async () => {
    const dataDir = join(thing.dir, "foreign-serve");
    mkdirSync(dataDir);
    const file = join(dataDir, "subscription.db");
    DAMAGE_KINDS.find((k) => k.exitCode === 78)!.make(file);
    const before = readFileSync(file);
    const received = receiver.received.length;
    const serve = await run(["serve", ...withData(dataDir)], { timeoutMs: 15_000 });
    const collect = await run(["collect", ...withData(dataDir)], { input: '{"t":1}' });
    tally("badInputs", 2);
    for (const result of [serve, collect]) {
      expect(result.code).toBe(78);
      expect(result.stderr).toContain(`flashlex: ${file}: not a FlashLex database`);
    }
    expect(readFileSync(file).equals(before)).toBe(true);
    expect(receiver.received.length).toBe(received);
  });
});

describe.skipIf(Boolean(noTmpfs))("hub init into an empty directory it cannot replace", () => {
  test("a mount point (a bind mount too) and an administrator's pre-made directory in a parent only root writes in get the home built inside them; where this user may write neither in nor beside, or in another user's directory, 77 naming --dir before anything is made (were 75 EBUSY and 77 naming the staging directory, after the CA was made)", async () => {
    const homeFiles = [
      "broker-cert.pem",
      "broker-key.pem",
      "ca-cert.pem",
      "ca-key.pem",
      "dists",
      "hub-client-cert.pem",
      "hub-client-key.pem",
      "hub.db",
      "hub.yml",
      "update-key.pem",
      "update-key.pub",
    ];
    const served = async (dir: string) => {
      const list = await run(["hub", "thing", "list", "--dir", dir, "--json"]);
      return { code: list.code, stdout: list.stdout.trim() };
    };
    const fs = mountTmpfs(1024);
    mounts.push(fs);
    const mounted = await run(["hub", "init", "--dir", fs.dir, "--json"]);
    expect({ code: mounted.code, stderr: mounted.stderr }).toEqual({ code: 0, stderr: "" });
    expect(readdirSync(fs.dir).sort()).toEqual(homeFiles);
    expect(await served(fs.dir)).toEqual({ code: 0, stdout: "[]" });

    // a bind mount within one file system keeps its device
    const bindRoot = mkdtempSync(join(tmpdir(), "flashlex-init-bind-"));
    const [source, point] = [join(bindRoot, "source"), join(bindRoot, "point")];
    mkdirSync(source);
    mkdirSync(point);
    expect(Bun.spawnSync(["mount", "--bind", source, point]).exitCode).toBe(0);
    try {
      const bound = await run(["hub", "init", "--dir", point, "--json"]);
      expect({ code: bound.code, stderr: bound.stderr }).toEqual({ code: 0, stderr: "" });
      expect(readdirSync(point).sort()).toEqual(homeFiles);
    } finally {
      Bun.spawnSync(["umount", point]);
      rmSync(bindRoot, { recursive: true, force: true });
    }

    const root = mkdtempSync(join(tmpdir(), "flashlex-init-parent-"));
    const asNobody = (args: string[], env: Record<string, string> = {}) => {
      const result = Bun.spawnSync(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", binaryPath(), ...args], {
        stdout: "pipe",
        stderr: "pipe",
        timeout: 60_000,
        env: { ...process.env, ...env },
      });
      return { code: result.exitCode, stderr: result.stderr.toString() };
    };
    try {
      chmodSync(root, 0o755);
      // docs/hub.md's systemd recipe: an empty /var/lib/flashlex-hub given to the hub's user, in a directory only root writes in
      const home = join(root, "flashlex-hub");
      mkdirSync(home);
      chownSync(home, 65534, 65534);
      // and what an init killed while building inside it left (its process gone): swept, it holds a CA key
      mkdirSync(join(home, ".init-2147483646"));
      chownSync(join(home, ".init-2147483646"), 65534, 65534);
      writeFileSync(join(home, ".init-2147483646", "ca-key.pem"), "left by a killed init");
      chownSync(join(home, ".init-2147483646", "ca-key.pem"), 65534, 65534);
      expect(asNobody(["hub", "init", "--dir", home, "--json"])).toEqual({ code: 0, stderr: "" });
      expect(readdirSync(home).sort()).toEqual(homeFiles);
      expect(asNobody(["hub", "thing", "list", "--dir", home, "--json"])).toEqual({ code: 0, stderr: "" });
      // a new one there, or root's empty one: nowhere this user may write
      for (const [dir, says] of <[string, string][]>[
        [join(root, "new"), `${join(root, "new")}: hub init makes the home in ${root}, which this user may not write in; choose another --dir`],
        [join(root, "roots"), `${join(root, "roots")}: this user may not write in it, nor beside it in ${root}; choose another --dir`],
      ]) {
        if (dir.endsWith("roots")) mkdirSync(dir);
        tally("badInputs");
        expect(asNobody(["hub", "init", "--dir", dir])).toEqual({ code: 77, stderr: `flashlex: ${says}\n` });
      }
      // a home whose parent is missing and may not be made: named, with what to do (it was a bare
      // EACCES naming the directory above); without --dir, the default is named as the default
      const deep = join(root, "missing", "hub");
      tally("badInputs", 2);
      expect(asNobody(["hub", "init", "--dir", deep])).toEqual({
        code: 77,
        stderr: `flashlex: ${deep}: hub init makes the home in ${join(root, "missing")}, which does not exist, and this user may not make it (it may not write in ${root}); choose another --dir\n`,
      });
      expect(asNobody(["hub", "init"], { HOME: join(root, "missing"), FLASHLEX_HUB_DIR: "" })).toEqual({
        code: 77,
        stderr: `flashlex: ${join(root, "missing", ".flashlex-hub")} (the default hub home, ~/.flashlex-hub, as no --dir was given): hub init makes the home in ${join(root, "missing")}, which does not exist, and this user may not make it (it may not write in ${root}); choose another --dir\n`,
      });
      // another user's empty directory in a sticky one (/tmp), writable by this user: rename(2) may not
      // replace it (EPERM, after the home was built), and a home there could not be made 0700
      const shared = join(root, "sticky", "shared");
      mkdirSync(shared, { recursive: true });
      chmodSync(join(root, "sticky"), 0o1777);
      chmodSync(shared, 0o777);
      tally("badInputs");
      expect(asNobody(["hub", "init", "--dir", shared])).toEqual({
        code: 77,
        stderr: `flashlex: ${shared}: another user's directory, which hub init can neither replace nor keep its home in (it could not make it 0700); give --dir a new directory inside it, such as ${join(shared, "hub")}\n`,
      });
      expect(readdirSync(shared)).toEqual([]);
      expect(asNobody(["hub", "init", "--dir", join(shared, "hub"), "--json"])).toEqual({ code: 0, stderr: "" });
      expect(readdirSync(root).sort()).toEqual(["flashlex-hub", "roots", "sticky"]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe.skipIf(Boolean(noTmpfs))("a read-only data directory", () => {
  test("messages list, collect and serve exit 74 with one line naming the file; nothing is sent", async () => {
    const fs = mountTmpfs(2048);
    mounts.push(fs);
    const dataDir = join(fs.dir, "data");
    makeMessageDatabase(dataDir); // as serve makes it
    fs.remountReadOnly();
    const received = receiver.received.length;
    const list = await run(["messages", "list", ...withData(dataDir)]);
    const collect = await run(["collect", ...withData(dataDir)], { input: '{"t":1}' });
    const serve = await run(["serve", ...withData(dataDir)], { timeoutMs: 15_000 });
    tally("faults", 3);
    for (const result of [list, collect, serve]) {
      expect(result.code).toBe(74);
      expectOneLine(result, new RegExp(`^flashlex: ${dataDir}/\\S+: .*read-only`));
    }
    expect(receiver.received.length).toBe(received);
  });

  test("full and read-only (a full SD card the kernel remounted read-only): a write says read-only, not full, which freeing space would not mend (attack round 27, F6)", async () => {
    const fs = mountTmpfs(2048);
    mounts.push(fs);
    const dataDir = join(fs.dir, "data");
    makeMessageDatabase(dataDir);
    fs.fill();
    fs.remountReadOnly();
    const ack = await run(["messages", "ack", "1", ...withData(dataDir)]);
    tally("faults");
    expect(ack.code).toBe(74);
    expectOneLine(ack, new RegExp(`^flashlex: ${dataDir}\\S*: cannot write: \\S+ is on a read-only file system`));
  });
});

describe.skipIf(Boolean(noTmpfs))("a full disk", () => {
  let fs: Tmpfs;
  let dataDir: string;
  const outbox = () => {
    const db = new Database(join(dataDir, "subscription.db"), { readonly: true });
    try {
      return db.query("SELECT message_id, state FROM outbox ORDER BY created_at").all() as { message_id: string; state: string }[];
    } finally {
      db.close();
    }
  };

  beforeAll(async () => {
    fs = mountTmpfs(1024);
    mounts.push(fs);
    dataDir = join(fs.dir, "data");
    const first = await run(["collect", ...withData(dataDir)], { input: '{"n":0}' });
    expect(first.code).toBe(0);
  });

  test("collect refuses with 74 naming the database, queues nothing and sends nothing", async () => {
    const received = receiver.received.length;
    const rows = outbox().length;
    fs.fill();
    try {
      const result = await run(["collect", ...withData(dataDir)], { input: '{"n":1}' });
      tally("faults");
      expect(result.code).toBe(74);
      expectOneLine(result, new RegExp(`^flashlex: ${dataDir}/subscription\\.db: .*full`));
    } finally {
      fs.free();
    }
    expect(receiver.received.length).toBe(received);
    expect(outbox().length).toBe(rows);
  });

  test("bootstrap's data directory check fails on a full disk while serve holds the database (attack round 12, F4: access(W_OK) passed, and the only FAIL blamed MQTT)", async () => {
    const serve = start(["serve", ...withData(dataDir)]);
    try {
      await serve.waitFor(/serve\.started/);
      fs.fill();
      const result = await run(["bootstrap", ...withData(dataDir)], { timeoutMs: 60_000 });
      tally("faults");
      expect(result.stdout).toMatch(new RegExp(`\\[FAIL\\] data directory writable and the database opens: ${dataDir}: .*(ENOSPC|full)`));
      expect(readdirSync(dataDir).filter((name) => name.includes("bootstrap-probe"))).toEqual([]);
    } finally {
      fs.free();
      await serve.stop();
    }
  });

  test("a message the API took while the disk filled is reported sent (exit 0), and resent only with the same message id", async () => {
    receiver.beforeAnswer = () => void fs.fill();
    let result: RunResult;
    try {
      result = await run(["collect", ...withData(dataDir), "--json"], { input: '{"n":2}' });
    } finally {
      receiver.beforeAnswer = undefined;
      fs.free();
    }
    tally("faults");
    expect(result.code).toBe(0);
    const answer = JSON.parse(result.stdout);
    expect(answer.outcome).toBe("sent");
    expect(answer.recordError).toMatch(/full/);
    expect(result.stderr).toContain(`was delivered, but the outbox could not record it`);
    const id = answer.messageId as string;
    expect(receiver.received.filter((r) => r.messageId === id)).toHaveLength(1);
    // the row is still pending under collect's 60 s lease; let the lease pass, then serve drains it
    expect(outbox().find((r) => r.message_id === id)?.state).toBe("pending");
    const db = new Database(join(dataDir, "subscription.db"));
    db.run("UPDATE outbox SET next_attempt_at = 0 WHERE message_id = ?", [id]);
    db.close();
    const serve = start(["serve", ...withData(dataDir)]);
    try {
      await serve.waitFor(/egress\.sent/, 15_000);
    } finally {
      expect(await serve.stop()).toBe(0);
    }
    const copies = receiver.received.filter((r) => r.messageId === id);
    expect(copies).toHaveLength(2);
    expect(copies.map((c) => c.body)).toStrictEqual([{ n: 2 }, { n: 2 }]);
    expect(outbox().find((r) => r.message_id === id)?.state).toBe("sent");
    // every other message the receiver got was sent once
    const ids = receiver.received.map((r) => r.messageId).filter((m) => m !== id);
    expect(new Set(ids).size).toBe(ids.length);
    tally("duplicates", 0);
  });

  test("a refusal the outbox could not record while the disk filled is not called 'kept as rejected': the row is pending and serve records the refusal", async () => {
    receiver.answerStatus = 422;
    receiver.beforeAnswer = () => void fs.fill();
    let result: RunResult;
    try {
      result = await run(["collect", ...withData(dataDir)], { input: '{"n":3}' });
    } finally {
      receiver.answerStatus = undefined;
      receiver.beforeAnswer = undefined;
      fs.free();
    }
    tally("faults");
    expect(result.code).toBe(65);
    expect(result.stderr).toContain("was rejected, but the outbox could not record it");
    expect(result.stderr).toContain("serve records it as rejected when it sends it again");
    expect(result.stderr).not.toContain("it is kept as rejected");
    expect(outbox().filter((r) => r.state === "pending")).toHaveLength(1);
    // out of the way of the tests after this one
    const db = new Database(join(dataDir, "subscription.db"));
    db.run("DELETE FROM outbox WHERE state = 'pending'");
    db.close();
  });

  test("the hub on a full disk answers 503 with Retry-After in its envelope, not 500, and works again once there is space", async () => {
    const hubFs = mountTmpfs(4096);
    mounts.push(hubFs);
    const hubDir = join(hubFs.dir, "hub");
    const [apiPort, brokerPort] = [await freePort(), await freePort()];
    const init = await run([...loopbackHubInit(hubDir, apiPort, brokerPort), "--json"]);
    expect(init.code).toBe(0);
    const { token } = JSON.parse(init.stdout);
    listenOnLoopback(hubDir);
    const hub = start(["hub", "serve", "--dir", hubDir]);
    try {
      await hub.waitFor(/hub\.started/);
      const create = (name: string) =>
        fetch(`http://127.0.0.1:${apiPort}/dev/v1/things`, {
          method: "POST",
          headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
          body: JSON.stringify({ name }),
          signal: AbortSignal.timeout(15_000),
        });
      expect((await create("sendto")).status).toBe(201);
      hubFs.fill();
      let full: Response;
      let send: Awaited<ReturnType<typeof run>>;
      try {
        full = await create("onfull");
        // the operator's own command names the disk and says nothing went (new-user pass 25, F10)
        send = await run(["hub", "send", "sendto", "--dir", hubDir], { input: '{"in":"full"}' });
      } finally {
        hubFs.free();
      }
      expect(send.code).toBe(69);
      expect(send.stderr).toMatch(/the hub refused the message \(nothing was stored or sent\): \S+hub\.db: .*full/);
      tally("faults");
      expect(full.status).toBe(503);
      expect(full.headers.get("retry-after")).toBe("30");
      const body = await full.json();
      expect(body).toMatchObject({ status: "ERROR", code: 503, messages: [{ key: "error", value: "the hub's storage is full; try again later" }] });
      expect(hub.output()).not.toContain('hub.api_failed" level=error');
      const again = await create("afterfull");
      expect(again.status).toBe(201);
      const list = await fetch(`http://127.0.0.1:${apiPort}/dev/v1/things`, { headers: { Authorization: `Bearer ${token}` } });
      expect(((await list.json()) as any).result.map((t: { name: string }) => t.name.replace(/^[0-9a-f]{8}-/, ""))).toStrictEqual(["sendto", "afterfull"]);
    } finally {
      expect(await hub.stop()).toBe(0);
    }
  }, 60_000);
});

describe("bad values on the command line and on stdin", () => {
  test("a directory as stdin (`< dir`) is 64 naming stdin (the line was 'is a directory (EISDIR)', 74); a device or a file as the hub home is 78 'not a directory' (/dev/zero was called a home others may write in, 77)", async () => {
    const piped = Bun.spawnSync(["sh", "-c", `exec "$0" "$@" < ${thing.dir}`, binaryPath(), "collect", ...thing.flags], { stderr: "pipe" });
    tally("badInputs");
    expect({ code: piped.exitCode, stderr: piped.stderr.toString() }).toEqual({
      code: 64,
      stderr: "flashlex: stdin: a directory, not a file (what the shell's < names)\n",
    });
    const file = join(thing.dir, "not-a-home");
    writeFileSync(file, "");
    // another user's file, given to root: the same refusal, not "may not enter" it with a chmod (new-user pass 20, F1)
    // (in a directory anyone may enter: the test's own is root's 0700)
    const open = mkdtempSync(join(tmpdir(), "flashlex-open-"));
    chmodSync(open, 0o755);
    const othersFile = join(open, "nobodys-file");
    writeFileSync(othersFile, "");
    if (process.getuid?.() === 0) chownSync(othersFile, 65534, 65534);
    for (const dir of ["/dev/zero", file, othersFile]) {
      const init = await run(["hub", "init", "--dir", dir]);
      const list = await run(["hub", "thing", "list", "--dir", dir]);
      tally("badInputs", 2);
      expect({ dir, init: init.code, list: list.code }).toEqual({ dir, init: 78, list: 78 });
      expectOneLine(init, new RegExp(`^flashlex: ${dir}: not a directory; refusing to replace it`));
      expectOneLine(list, new RegExp(`^flashlex: ${dir}: a file, not a hub home`));
    }
    rmSync(open, { recursive: true, force: true });
  });

  test("hub init --dir: a symbolic link to an empty directory makes the home there; a link to nothing, or a file on the way, is 78 naming --dir and the part at fault (were 74: a staging path's ENOTDIR, a raw EEXIST)", async () => {
    const base = mkdtempSync(join(thing.dir, "init-paths-"));
    mkdirSync(join(base, "empty"));
    symlinkSync(join(base, "empty"), join(base, "link"));
    const linked = await run(["hub", "init", "--dir", join(base, "link"), "--json"]);
    expect({ code: linked.code, stderr: linked.stderr }).toEqual({ code: 0, stderr: "" });
    expect(JSON.parse(linked.stdout).dir).toBe(join(base, "link"));
    expect(existsSync(join(base, "empty", "hub.yml"))).toBe(true);
    const list = await run(["hub", "thing", "list", "--dir", join(base, "link"), "--json"]);
    expect({ code: list.code, stdout: list.stdout.trim() }).toEqual({ code: 0, stdout: "[]" });

    symlinkSync(join(base, "nowhere"), join(base, "dangling"));
    writeFileSync(join(base, "afile"), "");
    const cases: [string, string][] = [
      [
        join(base, "dangling"),
        `${join(base, "dangling")}: a symbolic link to ${join(base, "nowhere")}, which does not exist; make that directory first, or choose another --dir`,
      ],
      [join(base, "afile", "sub"), `${join(base, "afile", "sub")}: ${join(base, "afile")} is a file, not a directory; choose another --dir`],
      [
        join(base, "afile", "sub", "deeper"),
        `${join(base, "afile", "sub", "deeper")}: ${join(base, "afile")} is a file, not a directory; choose another --dir`,
      ],
      [
        join(base, "dangling", "sub"),
        `${join(base, "dangling", "sub")}: ${join(base, "dangling")} is a symbolic link to ${join(base, "nowhere")}, which does not exist; choose another --dir`,
      ],
      // a name no file system takes: its parents were made, then left (attack 26)
      [
        join(base, "parent", "A".repeat(300)),
        `${join(base, "parent", "A".repeat(300))}: the name AAAAAAAAAAAAAAAA... is 300 bytes, over the 241 it may have here (the temporary name made beside it is longer); choose another --dir`,
      ],
      [
        join(base, "parent", "C".repeat(250)),
        `${join(base, "parent", "C".repeat(250))}: the name CCCCCCCCCCCCCCCC... is 250 bytes, over the 241 it may have here (the temporary name made beside it is longer); choose another --dir`,
      ],
    ];
    for (const [dir, says] of cases) {
      const init = await run(["hub", "init", "--dir", dir]);
      tally("badInputs");
      expect({ dir, code: init.code, stderr: init.stderr, stdout: init.stdout }).toEqual({ dir, code: 78, stderr: `flashlex: ${says}\n`, stdout: "" });
    }
    // nothing made beside them, no staging directory left
    expect(readdirSync(base).sort()).toEqual(["afile", "dangling", "empty", "link"]);
  });

  test("--limit: text, negative (as --limit=-5, --limit -1 and --limit -1h), zero, fraction, huge, hex and empty are 64 naming the flag (--since -1h too); a count works", async () => {
    const values = ["abc", "-5", "0", "1.5", "99999999999999999999", "1e3", "0x10", " 7", ""];
    for (const value of values) {
      const result = await run(["messages", "list", ...thing.flags, `--limit=${value}`]);
      tally("badInputs");
      expect({ value, code: result.code }).toEqual({ value, code: 64 });
      expectOneLine(result, /^flashlex: .*--limit/);
    }
    // written apart, a negative value used to read as an unknown flag "-1", and "-1h" as -1 -h:
    // the help, exit 0
    for (const value of ["-1", "-0.5", "-1h"]) {
      const result = await run(["messages", "list", ...thing.flags, "--limit", value]);
      tally("badInputs");
      expect({ value, code: result.code }).toEqual({ value, code: 64 });
      expectOneLine(result, new RegExp(`^flashlex: --limit must be a whole number .*not "${value}"`));
    }
    const since = await run(["messages", "list", ...thing.flags, "--since", "-1h"]);
    expect(since.code).toBe(64);
    expectOneLine(since, /^flashlex: --since must be .*not "-1h"$/);
    mkdirSync(thing.dataDir, { recursive: true }); // as serve makes it
    expect((await run(["messages", "list", ...thing.flags, "--limit", "3"])).code).toBe(0);
  });

  test("messages and outbox never make a database: none there, an empty file or a SQLite file with no tables in a directory with other files, or a link to nothing, is 64 naming it; in a thing's data directory not made yet they answer as for an empty one; nothing is written (`-d /tmp` made /tmp/subscription.db and answered 'no messages'; through a link, its target)", async () => {
    const base = mkdtempSync(join(tmpdir(), "flashlex-nodb-"));
    const empty = join(base, "elsewhere");
    mkdirSync(empty);
    writeFileSync(join(empty, "notes.txt"), "not a thing's\n");
    const linked = join(base, "linked");
    mkdirSync(linked);
    const target = join(base, "nowhere.db");
    symlinkSync(target, join(linked, "subscription.db"));
    const zeroBytes = join(base, "zero");
    mkdirSync(zeroBytes);
    writeFileSync(join(zeroBytes, "subscription.db"), "");
    writeFileSync(join(zeroBytes, "notes.txt"), "not a thing's\n");
    // a SQLite file with no tables (`sqlite3 x.db 'pragma journal_mode=wal'`): messages wrote the schema into it
    const noTables = join(base, "no-tables");
    mkdirSync(noTables);
    const tableless = (dir: string) => {
      const db = new Database(join(dir, "subscription.db"), { create: true });
      db.run("PRAGMA journal_mode=WAL");
      db.close();
      return readFileSync(join(dir, "subscription.db"));
    };
    const noTablesBytes = tableless(noTables);
    writeFileSync(join(noTables, "notes.txt"), "not a thing's\n");
    const commands = [
      ["messages", "list"],
      ["messages", "ack", "1"],
      ["messages", "delete", "1"],
      ["outbox", "list"],
      ["outbox", "retry", "x"],
      ["outbox", "drop", "x"],
    ];
    for (const [dir, why] of [
      [empty, `no message database here, and ${empty} holds other files: not a thing's data directory`],
      [linked, `a symbolic link to ${target}, which does not exist`],
      [zeroBytes, `an empty file, not a message database, and ${zeroBytes} holds other files: not a thing's data directory`],
      [noTables, `a SQLite database with no tables, not a message database, and ${noTables} holds other files: not a thing's data directory`],
    ] as const) {
      for (const command of commands) {
        const result = await run([...command, ...withData(dir)]);
        tally("badInputs");
        expect({ command, dir, code: result.code }).toEqual({ command, dir, code: 64 });
        expectOneLine(result, new RegExp(`^flashlex: ${join(dir, "subscription.db")}: ${why}; serve makes it when it first runs`));
      }
    }
    expect(readdirSync(empty)).toEqual(["notes.txt"]);
    expect(existsSync(target)).toBe(false);
    expect(readdirSync(zeroBytes).sort()).toEqual(["notes.txt", "subscription.db"]);
    expect(readFileSync(join(zeroBytes, "subscription.db")).length).toBe(0);
    expect(readdirSync(noTables).sort()).toEqual(["notes.txt", "subscription.db"]);
    expect(readFileSync(join(noTables, "subscription.db")).equals(noTablesBytes)).toBe(true);
    // a thing's data directory whose database is not made yet (serve starting beside the command)
    const fresh = join(base, "fresh");
    mkdirSync(fresh);
    writeFileSync(join(fresh, "serve.lock"), "");
    const listed = await run(["messages", "list", ...withData(fresh)]);
    expect({ code: listed.code, stdout: listed.stdout, stderr: listed.stderr }).toEqual({ code: 0, stdout: "", stderr: "" });
    expect((await run(["messages", "ack", "1", ...withData(fresh)])).code).toBe(65);
    expect((await run(["outbox", "drop", "x", ...withData(fresh)])).code).toBe(65);
    expect(readdirSync(fresh)).toEqual(["serve.lock"]);
    // the same with a database SQLite made and serve has not filled yet: answered empty, left as it is
    const freshBytes = tableless(fresh);
    const listedNoTables = await run(["messages", "list", ...withData(fresh)]);
    expect({ code: listedNoTables.code, stdout: listedNoTables.stdout, stderr: listedNoTables.stderr }).toEqual({ code: 0, stdout: "", stderr: "" });
    expect((await run(["outbox", "list", ...withData(fresh)])).code).toBe(0);
    expect(readdirSync(fresh).sort()).toEqual(["serve.lock", "subscription.db"]);
    expect(readFileSync(join(fresh, "subscription.db")).equals(freshBytes)).toBe(true);
    // only the old Python SDK's store (subscription.json): opening takes it in, as serve would
    const old = join(base, "old-sdk");
    mkdirSync(old);
    const entry = {
      pk: "aaaaaaaaaaaa",
      timestamp: 1569851375.25,
      datetime: "2019-09-30 13:49:35",
      message: { topic: "pubsub/x", payload: { n: 1 }, pos: 1, retain: 0, mid: 1 },
    };
    writeFileSync(join(old, "subscription.json"), JSON.stringify({ aaaaaaaaaaaa: entry }));
    const imported = await run(["messages", "list", "--json", ...withData(old)]);
    expect(imported.code).toBe(0);
    expect(JSON.parse(imported.stdout).topic).toBe("pubsub/x");
    rmSync(base, { recursive: true, force: true });
  });

  test("a database that is a link to nothing in a directory that is not there is 78 naming both, for every command (serve and collect said 74 SQLITE_CANTOPEN, a restart loop under systemd; messages said serve would make it)", async () => {
    const base = mkdtempSync(join(tmpdir(), "flashlex-dbnowhere-"));
    const dataDir = join(base, "data");
    mkdirSync(dataDir);
    const target = join(base, "no-such-dir", "x.db");
    symlinkSync(target, join(dataDir, "subscription.db"));
    for (const command of [["messages", "list"], ["outbox", "list"], ["collect"], ["serve"]]) {
      const result = await run([...command, ...withData(dataDir)], { input: "{}", timeoutMs: 15_000 });
      tally("faults");
      expect({ command, code: result.code }).toEqual({ command, code: 78 });
      expectOneLine(
        result,
        new RegExp(`^flashlex: ${join(dataDir, "subscription.db")}: a symbolic link to ${target}, whose directory ${join(base, "no-such-dir")} does not exist`),
      );
    }
    expect(existsSync(join(base, "no-such-dir"))).toBe(false);
    rmSync(base, { recursive: true, force: true });
  });

  test("a config.yml that is a link to nothing is 78 naming it, not 'no config.yml here' (64)", async () => {
    const folder = mkdtempSync(join(tmpdir(), "flashlex-cfgnowhere-"));
    symlinkSync(join(folder, "gone.yml"), join(folder, "config.yml"));
    const result = Bun.spawnSync([binaryPath(), "messages", "list"], { cwd: folder, stdout: "pipe", stderr: "pipe", stdin: "ignore" });
    tally("badInputs");
    expect(result.exitCode).toBe(78);
    expect(result.stderr.toString()).toStartWith(
      `flashlex: ${join(folder, "config.yml")}: a symbolic link to ${join(folder, "gone.yml")}, which does not exist`,
    );
    rmSync(folder, { recursive: true, force: true });
  });

  test("the default data/ beside the config that is a file or a link to nothing is 78 naming it, for every thing command (74 'EEXIST' for serve and collect; messages answered 'no messages')", async () => {
    const aside = `${thing.dataDir}.aside`;
    const hadData = existsSync(thing.dataDir);
    if (hadData) renameSync(thing.dataDir, aside);
    const nowhere = join(dirname(thing.dataDir), "nowhere");
    try {
      for (const make of ["file", "dangling link"] as const) {
        if (make === "file") writeFileSync(thing.dataDir, "not a directory\n");
        else symlinkSync(nowhere, thing.dataDir);
        const why = make === "file" ? "not a directory" : `a symbolic link to ${nowhere}, which does not exist`;
        for (const command of [["messages", "list"], ["outbox", "list"], ["messages", "ack", "1"], ["collect"], ["collect", "--via", "mqtt"], ["serve"]]) {
          const result = await run([...command, "-c", thing.configPath, "-k", thing.keysDir], { input: "{}", timeoutMs: 15_000 });
          tally("badInputs");
          expect({ make, command, code: result.code }).toEqual({ make, command, code: 78 });
          expectOneLine(result, new RegExp(`^flashlex: ${thing.dataDir}: ${why}, where the thing's data directory belongs; move it aside, or pass -d$`));
        }
        expect(existsSync(nowhere)).toBe(false);
        rmSync(thing.dataDir);
      }
    } finally {
      rmSync(thing.dataDir, { force: true });
      if (hadData) renameSync(aside, thing.dataDir);
    }
  });

  test("a flag only `list` takes, given to ack, delete, retry or drop, is 64 naming it, and nothing changes (`messages delete 12 --acked` deleted 12, unacknowledged)", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "flashlex-listflags-"));
    const db = new Database(makeMessageDatabase(dataDir));
    const id = Number(
      (db.query("INSERT INTO ingress_messages (topic, payload, qos, received_at) VALUES ('t', '{}', 1, 1) RETURNING id").get() as { id: number }).id,
    );
    db.close();
    const cases = [
      ["messages", "delete", "--acked"],
      ["messages", "delete", "--all"],
      ["messages", "ack", "--topic=nope"],
      ["messages", "ack", "--limit=0"],
      ["messages", "delete", "--since=2020-01-01"],
      ["messages", "ack", "--follow"],
      ["messages", "delete", "--json"],
      ["outbox", "drop", "--state=sent"],
      ["outbox", "retry", "--json"],
    ];
    for (const [command, action, flag] of cases) {
      const result = await run([command!, action!, String(id), flag!, ...withData(dataDir)]);
      tally("badInputs");
      expect({ command, action, flag, code: result.code }).toEqual({ command, action, flag, code: 64 });
      const name = flag!.replace(/=.*/, "");
      expectOneLine(result, new RegExp(`^flashlex: ${name} is an option of \`${command} list\`; \`${command} ${action}\` takes message ids only$`));
    }
    const left = new Database(join(dataDir, "subscription.db"), { readonly: true });
    expect(left.query("SELECT id, acked_at FROM ingress_messages").all()).toEqual([{ id, acked_at: null }]);
    left.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test("stdout on a full disk is 74 saying the output is lost, for every command that prints (they exited 0 with nothing written)", async () => {
    const base = mkdtempSync(join(tmpdir(), "flashlex-stdout-"));
    const dataDir = join(base, "data");
    const db = new Database(makeMessageDatabase(dataDir));
    db.query("INSERT INTO ingress_messages (topic, payload, qos, received_at) VALUES ('t', '{}', 1, 1)").run();
    db.query(
      "INSERT INTO outbox (message_id, body, via, created_at, next_attempt_at) VALUES ('a0000000-0000-4000-8000-000000000001', '{}', 'http', 1, 1)",
    ).run();
    db.close();
    const hubDir = join(base, "hub");
    expect((await run(loopbackHubInit(hubDir, await freePort(), await freePort()))).code).toBe(0);
    const toFull = (args: string[]) => Bun.spawnSync([binaryPath(), ...args], { stdout: Bun.file("/dev/full"), stderr: "pipe", stdin: "ignore" });
    for (const args of [
      ["--version"],
      ["--help"],
      ["hub", "--help"],
      ["messages", "--help"],
      ["hub", "thing", "--help"],
      ["messages", "list", ...withData(dataDir)],
      ["outbox", "list", ...withData(dataDir)],
      ["hub", "thing", "list", "--dir", hubDir],
    ]) {
      const result = toFull(args);
      tally("faults");
      expect({ args, code: result.exitCode }).toEqual({ args, code: 74 });
      expect(result.stderr.toString()).toBe("flashlex: could not write to stdout (ENOSPC): the output is lost; what the command did is done\n");
    }
    rmSync(base, { recursive: true, force: true });
  });

  test("a FIFO or a directory where the database or a side file belongs, or a link as a side file, is 78 naming it, before SQLite opens anything, with or without a database (it was 74 'the disk failed', and a new -wal was left)", async () => {
    const base = mkdtempSync(join(tmpdir(), "flashlex-oddfile-"));
    const elsewhere = join(base, "elsewhere");
    writeFileSync(elsewhere, "");
    for (const [name, make, withDatabase] of [
      ["subscription.db", "fifo", false],
      ["subscription.db", "dir", false],
      ["subscription.db-shm", "fifo", true],
      ["subscription.db-wal", "dir", true],
      // no database yet: a command that would answer "nothing yet" refused it only once there was one
      ["subscription.db-wal", "fifo", false],
      ["subscription.db-shm", "dir", false],
      // SQLite opens side files with O_NOFOLLOW: it failed with SQLITE_CANTOPEN naming the database
      ["subscription.db-wal", "dangling link", true],
      ["subscription.db-wal", "link", true],
      ["subscription.db-journal", "link", false],
    ] as const) {
      const dataDir = join(base, `${name}-${make}-${withDatabase}`);
      if (withDatabase) makeMessageDatabase(dataDir);
      else mkdirSync(dataDir);
      const odd = join(dataDir, name);
      if (make === "fifo") execFileSync("mkfifo", [odd]);
      else if (make === "dir") mkdirSync(odd);
      else symlinkSync(make === "link" ? elsewhere : join(base, "nowhere"), odd);
      const before = readdirSync(dataDir).sort();
      const why = make.endsWith("link")
        ? `a symbolic link \\(to ${make === "link" ? elsewhere : join(base, "nowhere")}\\), where the message database's side file belongs; SQLite does not follow a link for a side file: move it aside$`
        : `not a regular file \\(${make === "fifo" ? "a FIFO" : "a directory"}\\), where the message database belongs; move it aside`;
      for (const command of [["messages", "list"], ["outbox", "list"], ["collect"], ["serve"]]) {
        const result = await run([...command, ...withData(dataDir)], { input: "{}", timeoutMs: 15_000 });
        tally("faults");
        expect({ name, make, withDatabase, command, code: result.code }).toEqual({ name, make, withDatabase, command, code: 78 });
        expectOneLine(result, new RegExp(`^flashlex: ${odd}: ${why}`));
      }
      expect(
        readdirSync(dataDir)
          .filter((n) => n !== "serve.lock" && n !== "config.parsed.json")
          .sort(),
      ).toEqual(before.filter((n) => n !== "serve.lock" && n !== "config.parsed.json"));
    }
    rmSync(base, { recursive: true, force: true });
  });

  test("-c ending in /, /. or /.. is 64 naming -c, for every thing command (path.resolve dropped the slash: `-c config.yml/` read config.yml)", async () => {
    mkdirSync(thing.dataDir, { recursive: true }); // as serve makes it: only -c is wrong
    for (const suffix of ["/", "/.", "/.."]) {
      for (const command of [["messages", "list"], ["outbox", "list"], ["collect"], ["serve"]]) {
        const given = `${thing.configPath}${suffix}`;
        const result = await run([...command, "-c", given, "-k", thing.keysDir, "-d", thing.dataDir], { input: "{}" });
        tally("badInputs");
        expect({ command, suffix, code: result.code }).toEqual({ command, suffix, code: 64 });
        expectOneLine(
          result,
          new RegExp(`^flashlex: -c ${given.replace(/[.]/g, "\\.")}: a path ending in /, /\\. or /\\.\\. names a directory; name the configuration file$`),
        );
      }
    }
  });

  test("a flag given an empty value (an unset variable in a script) is 64 naming it, not the default: `hub init --dir ''` makes no ~/.flashlex-hub", async () => {
    const home = mkdtempSync(join(thing.dir, "home-"));
    for (const args of [
      ["hub", "init", "--dir", ""],
      ["hub", "thing", "create", "x", "--dir", ""],
      ["messages", "list", ...thing.flags, "--since", ""],
      ["collect", ...thing.flags, "--file", ""],
      ["serve", ...thing.flags, "--exec", ""],
    ]) {
      const result = await run(args, { env: { HOME: home, FLASHLEX_HUB_DIR: "" }, input: "{}" });
      tally("badInputs");
      const flag = args[args.length - 2]!;
      expect({ args, code: result.code }).toEqual({ args, code: 64 });
      expectOneLine(result, new RegExp(`^flashlex: ${flag} needs a value; it was given empty$`));
    }
    expect(readdirSync(home)).toEqual([]);
  });

  test("a dash word with an h after a value flag (`--name -sh`) is 64 saying how to give it, not the help with 0", async () => {
    // after a value flag, that flag joined to it; elsewhere the letters apart, or a value joined to its flag
    // (it suggested --name=-hv for collect, which has no --name: attack round 24, F5)
    for (const [args, meant] of [
      [
        ["enroll", "--hub", "http://127.0.0.1:1/dev/v1", "--token", "t", "--ca-fingerprint", "AA", "--name", "-sh"],
        "to give it as the value of --name, write --name=-sh",
      ],
      [
        ["hub", "thing", "delete", "-sh", "--dir", thing.dir],
        "give the flags apart (-s -h), or join a value that starts with a dash to its flag with =, as in --flag=-sh",
      ],
      // a short flag that takes a value is joined as mri reads it; a switch (--json) or a flag the
      // command does not have takes none (verify pass 26, F3: both were offered --json=-sh)
      [["messages", "list", "-c", "-sh"], "to give it as the value of -c, write -c=-sh"],
      [["collect", "--json", "-sh"], "give the flags apart (-s -h), or join a value that starts with a dash to its flag with =, as in --flag=-sh"],
      [["collect", "--nosuch", "-sh"], "give the flags apart (-s -h), or join a value that starts with a dash to its flag with =, as in --flag=-sh"],
    ] as const) {
      const result = await run([...args]);
      tally("badInputs");
      expect({ args, code: result.code }).toEqual({ args, code: 64 });
      expect(result.stderr).toBe(`flashlex: "-sh" reads as one-letter flags, -h among them; ${meant}\n`);
    }
    // a value joined to a flag that takes none: named, where "no" was called one argument too many
    for (const value of ["no", "0"]) {
      const result = await run(["messages", "list", ...thing.flags, `--json=${value}`]);
      tally("badInputs");
      expect([result.code, result.stderr]).toEqual([
        64,
        `flashlex: --json takes no value (it was given "${value}"): give --json alone to turn it on, or leave it out\n`,
      ]);
    }
    // =true is mri's own: taken as --json
    const json = await run(["messages", "list", ...thing.flags, "--json=true"]);
    expect(json.stderr).not.toContain("takes no value");
    expect(json.stderr).not.toContain("one too many");
    // after --, a word is a word
    expect((await run(["hub", "thing", "delete", "--dir", thing.dir, "--", "-sh"])).code).not.toBe(64);
  });

  test("an unknown flag is 64 and named as it was typed, not camelCased (cac's own name for it)", async () => {
    const result = await run(["messages", "list", ...thing.flags, "--payload-limit", "5"]);
    tally("badInputs");
    expect(result.code).toBe(64);
    expectOneLine(result, /^flashlex: Unknown option `--payload-limit`; see flashlex messages --help$/);
  });

  test("an unknown flag is named before a missing argument: the flag is what the user must change", async () => {
    for (const [args, said] of [
      [["hub", "thing", "create", "-x"], "Unknown option `-x`; see flashlex hub thing create --help"],
      [["messages", "--payload-limit", "5", ...thing.flags], "Unknown option `--payload-limit`; see flashlex messages --help"],
    ] as const) {
      const result = await run([...args]);
      tally("badInputs");
      expect(result.code).toBe(64);
      expectOneLine(result, new RegExp(`^flashlex: ${said}$`));
    }
  });

  test("an unknown flag near one the command has, or the other side's directory flag, is 64 with what was likely meant", async () => {
    for (const [args, said] of [
      [["hub", "init", "--dir", join(thing.dir, "never-made"), "--brokr-host", "x"], "Unknown option `--brokr-host`; did you mean --broker-host?"],
      [["hub", "thing", "list", "-d", thing.dir], "Unknown option `-d`; the hub's home is --dir"],
      [["bootstrap", "--dir", thing.dir], "Unknown option `--dir`; the thing's data directory is -d (its config -c, its keys -k)"],
      // enroll's folder is --dir too, but it is no hub's home
      [["enroll", "-d", join(thing.dir, "never-made")], "Unknown option `-d`; did you mean --dir?"],
    ] as const) {
      const result = await run([...args]);
      tally("badInputs");
      expect(result.code).toBe(64);
      expectOneLine(result, new RegExp(`^flashlex: ${said.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`));
    }
  });

  test("hub port flags: text, zero, too large and fractions are 64 naming the flag", async () => {
    for (const value of ["abc", "0", "65536", "80.5", "-1", "1e3"]) {
      const result = await run(["hub", "init", "--dir", join(thing.dir, `hub-${value}`), `--broker-port=${value}`]);
      tally("badInputs");
      expect({ value, code: result.code }).toEqual({ value, code: 64 });
      expectOneLine(result, /--broker-port/);
    }
  });

  test("every hub command's bad flag value is 64 naming the flag, before any lookup (the trial's --expires 31d was 65)", async () => {
    const home = join(thing.dir, "hub-flags");
    const init = await run(["hub", "init", "--dir", home, "--json"]);
    expect(init.code).toBe(0);
    const ownerPrefix = (JSON.parse(init.stdout).ownerId as string).slice(0, 8);
    const cases: [string[], RegExp][] = [
      [["hub", "enroll-token", "create", "--expires", "31d"], /--expires/],
      [["hub", "enroll-token", "create", "--expires", "0s"], /--expires/],
      [["hub", "enroll-token", "create", "--expires", "soon"], /--expires/],
      [["hub", "enroll-token", "create", "--max-uses", "0"], /--max-uses/],
      [["hub", "enroll-token", "create", "--name-prefix", "bad prefix"], /--name-prefix/],
      // the owner prefix: no typed name has it (the hub adds it); was 65
      [["hub", "enroll-token", "create", "--name-prefix", `${ownerPrefix}-sensor`], /--name-prefix "\w+-sensor" starts with the owner prefix/],
      [["hub", "export", "nosuch", "--since", "garbage"], /--since/],
      [["hub", "export", "nosuch", "--since", "2026-12-01", "--until", "2026-11-01"], /--since 2026-12-01 is after --until 2026-11-01/],
      [["hub", "export", "nosuch", "--type", "sideways"], /--type/],
      // the hub's own files: `-o hub.db` replaced the database with a zip (exit 0)
      [["hub", "export", "nosuch", "-o", join(home, "hub.db")], /-o "[^"]+hub\.db": \S+ is inside the hub home/],
      [["hub", "thing", "create", "x", "-o", join(home, "ca-key.pem")], /is inside the hub home/],
      [["hub", "update", "--to", "9.9.9", "--all", "--batch", "0"], /--batch/],
      [["hub", "update", "--to", "9.9.9", "--all", "--batch", "200%"], /--batch/],
      [["hub", "update", "--to", "9.9.9", "--all", "--max-failures", "x"], /--max-failures/],
      [["hub", "mosquitto-config", "--out", join(thing.dir, "mq"), "--bind", "not an address"], /--bind/],
      [["hub", "mosquitto-config", "--out", join(thing.dir, "mq"), "--port", "0"], /--port/],
      [
        ["hub", "mosquitto-config", "--out", join(thing.dir, "mq"), "--persistence", "/tmp/x\nallow_anonymous true"],
        /--persistence must be a path on one line/,
      ],
      [["hub", "mosquitto-config", "--out", join(thing.dir, "config.yml")], /--out \S+config\.yml: not a directory/],
      // inside the 0700 hub home: the broker's user could not read it, and the printed chown would hand it the home's key
      [["hub", "mosquitto-config", "--out", home], /--out \S+ is inside the hub home/],
      [["hub", "mosquitto-config", "--out", join(home, "mq")], /--out \S+ is inside the hub home/],
      [
        ["hub", "mosquitto-config", "--out", join(thing.dir, "mq"), "--persistence", join(thing.dir, "config.yml")],
        /--persistence \S+config\.yml: not a directory/,
      ],
      [["hub", "mosquitto-config", "--out", join(thing.dir, "mq"), "--dynsec-plugin", "/x.so\nlistener 1883"], /--dynsec-plugin must be a path on one line/],
      // through a file: the part at fault named, before --out is made (an empty --out was left, 74)
      [
        ["hub", "mosquitto-config", "--out", join(thing.dir, "mq-under"), "--persistence", join(thing.dir, "config.yml", "p")],
        /--persistence \S+p: \S+config\.yml is a file, not a directory/,
      ],
      [["hub", "rabbitmq-config", "--out", join(thing.dir, "config.yml", "rabbit")], /--out \S+rabbit: \S+config\.yml is a file, not a directory/],
      // were 78 naming no flag, with half the files written
      [["hub", "rabbitmq-config", "--out", join(thing.dir, "rabbit with space")], /--out "[^"]+": RabbitMQ's env file is read by a shell/],
      [["hub", "rabbitmq-config", "--out", join(thing.dir, "rabbit"), "--host", "a b"], /--host must be a host name or an IP address/],
      [
        ["hub", "rabbitmq-config", "--out", join(thing.dir, "rabbit"), "--mqtt-port", "65535"],
        /--mqtt-port 65535 with 3 nodes on one host gives node 3 port 65537/,
      ],
      [
        ["hub", "rabbitmq-config", "--out", join(thing.dir, "rabbit"), "--host", "h1,h2,h3", "--auth-listen", "0.0.0.0:8091"],
        /--auth-listen 0\.0\.0\.0 is every interface/,
      ],
      [["hub", "rabbitmq-config", "--out", join(home, "rabbit")], /--out \S+ is inside the hub home/],
      // a name no file system takes: refused before its parents are made (they were left behind, attack 26)
      [
        ["hub", "rabbitmq-config", "--out", join(thing.dir, "rabbit-long", "A".repeat(300))],
        /--out \S+: the name AAAAAAAAAAAAAAAA\.\.\. is 300 bytes, over the 255/,
      ],
      [
        ["hub", "mosquitto-config", "--out", join(thing.dir, "mq-long", "A".repeat(300))],
        /--out \S+: the name AAAAAAAAAAAAAAAA\.\.\. is 300 bytes, over the 255/,
      ],
      [["hub", "backup", join(thing.dir, "A".repeat(300))], /: the name AAAAAAAAAAAAAAAA\.\.\. is 300 bytes, over the 226 it may have here/],
      // short enough for a name, too long with the temporary name made beside it (verify pass 33, F7)
      [
        ["hub", "backup", join(thing.dir, "B".repeat(240))],
        /: the name BBBBBBBBBBBBBBBB\.\.\. is 240 bytes, over the 226 it may have here \(the temporary name made beside it is longer\)/,
      ],
      [["hub", "rabbitmq-config", "--out", join(thing.dir, "rabbit"), "--dist-port", "18000"], /--dist-port must be above 20000/],
      [["hub", "thing", "create", "x", "--key-type", "dsa"], /--key-type/],
      [["hub", "serve", "--broker", "ftp://x"], /--broker/],
      [["hub", "serve", "--broker", "mqtts://localhost:0"], /--broker .*port must be 1-65535/],
    ];
    for (const [args, pattern] of cases) {
      const result = await run([...args, "--dir", home]);
      tally("badInputs");
      expect({ args, code: result.code }).toEqual({ args, code: 64 });
      expectOneLine(result, pattern);
    }
    // nothing was made by any of them
    const tokens = await run(["hub", "enroll-token", "list", "--dir", home, "--json"]);
    expect(JSON.parse(tokens.stdout)).toEqual([]);
    for (const out of ["mq", "mq-under", "rabbit", "rabbit with space", "rabbit-long", "mq-long"]) expect(existsSync(join(thing.dir, out))).toBe(false);
    expect(existsSync(join(home, "mq"))).toBe(false);
  }, 60_000);

  test("invalid UTF-8 on collect's stdin or in --file is 65 naming the source and offset; nothing is sent or queued", async () => {
    const received = receiver.received.length;
    const bad = Buffer.concat([Buffer.from('{"text":"caf'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]);
    const file = join(thing.dir, "latin1.json");
    writeFileSync(file, bad);
    const viaStdin = await run(["collect", ...thing.flags], { input: bad });
    const viaFile = await run(["collect", ...thing.flags, "--file", file]);
    const overlong = await run(["collect", ...thing.flags], { input: Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc0, 0xaf, 0x22, 0x7d]) });
    tally("badInputs", 3);
    expect(viaStdin.code).toBe(65);
    expectOneLine(viaStdin, /^flashlex: stdin: not valid UTF-8 \(first bad byte at offset 12\)/);
    expect(viaFile.code).toBe(65);
    expectOneLine(viaFile, new RegExp(`^flashlex: ${file}: not valid UTF-8 \\(first bad byte at offset 12\\)`));
    expect(overlong.code).toBe(65);
    expect(receiver.received.length).toBe(received);
    // valid UTF-8, including a real U+FFFD, still goes through
    const ok = await run(["collect", ...thing.flags], { input: '{"text":"café \uFFFD"}' });
    expect(ok.code).toBe(0);
    expect(receiver.received.at(-1)!.body).toEqual({ text: "café \uFFFD" });
  });
});

describe("TLS material that cannot work", () => {
  test("serve with a private key that is not the certificate's, or a garbage certificate, exits 78 naming the file, without OpenSSL's text", async () => {
    const keys = join(thing.dir, "bad-keys");
    mkdirSync(keys);
    for (const name of readdirSync(thing.keysDir)) writeFileSync(join(keys, name), readFileSync(join(thing.keysDir, name)), { mode: 0o600 });
    const other = await thing.pki.issueThing("ecd13b11-other");
    const keyFile = join(keys, `${thing.thingName}-keypair-private.pem`);
    const certFile = join(keys, `${thing.thingName}-certificate.pem`);
    writeFileSync(keyFile, other.privateKeyPem, { mode: 0o600 });
    const flags = ["-c", thing.configPath, "-k", keys, "-d", join(thing.dir, "bad-keys-data")];
    const mismatch = await run(["serve", ...flags], { timeoutMs: 15_000 });
    writeFileSync(keyFile, thing.pki.thing.privateKeyPem, { mode: 0o600 });
    writeFileSync(certFile, "-----BEGIN CERTIFICATE-----\nMIIBAAAAAAAAAAAAAAAAAAAAAAAA\n-----END CERTIFICATE-----\n");
    const garbage = await run(["serve", ...flags], { timeoutMs: 15_000 });
    tally("badInputs", 2);
    for (const result of [mismatch, garbage]) {
      expect(result.code).toBe(78);
      expect(result.stderr).not.toMatch(/error:[0-9a-f]{8}:|OPENSSL_internal/);
      expect(result.stderr).not.toMatch(/^\s+at /m);
    }
    expect(mismatch.stderr).toMatch(new RegExp(`${keys}/\\S+(private|certificate)`));
    expect(garbage.stderr).toContain(certFile);
  });

  test("a FIFO, /dev/zero or a link to the key in place of a staged renewal key: serve drops it as torn and starts with its pair (it exited 78, hung on the FIFO, or renamed the link over its key)", async () => {
    for (const [kind, make] of [
      ["fifo", (file: string) => expect(Bun.spawnSync(["mkfifo", file]).exitCode).toBe(0)],
      ["zero", (file: string) => symlinkSync("/dev/zero", file)],
      ["link", (file: string) => symlinkSync(file.slice(0, -".next".length), file)],
    ] as const) {
      const keys = join(thing.dir, `${kind}-staged-keys`);
      mkdirSync(keys);
      for (const name of readdirSync(thing.keysDir)) writeFileSync(join(keys, name), readFileSync(join(thing.keysDir, name)), { mode: 0o600 });
      const staged = join(keys, `${thing.thingName}-keypair-private.pem.next`);
      make(staged);
      const serve = start(["serve", "-c", thing.configPath, "-k", keys, "-d", join(thing.dir, `${kind}-staged-data`)]);
      tally("badInputs");
      try {
        await serve.waitFor(/renewal\.recovered .*dropped what no renewal writes/, 15_000);
        await serve.waitFor(/serve\.started/, 15_000);
        expect(existsSync(staged), kind).toBe(false);
        expect(lstatSync(staged.slice(0, -".next".length)).isFile(), kind).toBe(true);
      } finally {
        expect(await serve.stop(), kind).toBe(0);
      }
    }
  });

  test("a FIFO or /dev/zero in place of the private key: serve and collect exit 78 at once naming it (serve hung in open(2) deaf to SIGTERM; /dev/zero filled memory)", async () => {
    for (const [kind, make] of [
      ["fifo", (file: string) => expect(Bun.spawnSync(["mkfifo", file]).exitCode).toBe(0)],
      ["zero", (file: string) => symlinkSync("/dev/zero", file)],
    ] as const) {
      const keys = join(thing.dir, `${kind}-keys`);
      mkdirSync(keys);
      for (const name of readdirSync(thing.keysDir)) writeFileSync(join(keys, name), readFileSync(join(thing.keysDir, name)), { mode: 0o600 });
      const keyFile = join(keys, `${thing.thingName}-keypair-private.pem`);
      rmSync(keyFile);
      make(keyFile);
      const flags = ["-c", thing.configPath, "-k", keys, "-d", join(thing.dir, `${kind}-keys-data`)];
      for (const command of [["serve"], ["collect", "--file", thing.configPath]]) {
        const result = await run([...command, ...flags], { timeoutMs: 15_000 });
        tally("badInputs");
        expect({ kind, command: command[0], code: result.code }).toEqual({ kind, command: command[0], code: 78 });
        expect(result.stderr).toContain(`${keyFile}: the `);
        expect(result.stderr).toContain("is not a regular file");
      }
    }
  });
});
