/**
 * `hub backup` with the compiled binary: taken while `hub serve` stores a stream of collects, the
 * copy holds every message acknowledged before it began, passes SQLite's integrity check, keeps
 * the CA key's bytes and mode, and holds none of the live hub's side files; put back in place of
 * the home it is a hub that starts, knows the thing and takes its collects. A target that exists
 * (a directory, a file, a dangling link), lies inside the home or has no parent is a usage error
 * (64) that writes nothing; one in a directory every user may write in is 77. `hub restore` puts
 * it back, refused while the hub serves the home (75) or for a backup that is not whole (64, 74).
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { signThingToken } from "../../src/crypto/jwt.ts";
import { run, start } from "../support/binary.ts";
import { type HubFixture, type HubThing, makeHubFixture } from "../support/hub-fixture.ts";

const work = mkdtempSync(join(tmpdir(), "flashlex-hub-backup-"));
let fixture: HubFixture;
let thing: HubThing;

beforeAll(async () => {
  fixture = await makeHubFixture(work);
  thing = await fixture.createThing("kept");
}, 60_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** POSTs one collect as the thing; the message id when the hub answered 200. */
async function collect(token: string, n: number): Promise<string> {
  const id = crypto.randomUUID();
  const response = await fetch(`http://127.0.0.1:${fixture.apiPort}/dev/v1/things/${thing.id}/collect`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", "X-Flashlex-Message-Id": id },
    body: JSON.stringify({ n }),
  });
  expect(response.status).toBe(200);
  return id;
}

describe("hub backup", () => {
  test("taken while the hub stores collects: every message acknowledged before it is in the copy, which is whole and restores to a working hub", async () => {
    const hub = await fixture.serve();
    const token = await signThingToken({ thingId: thing.id, privateKey: thing.privateKey });
    const acknowledged: string[] = [];
    let sending = true;
    const stream = (async () => {
      for (let n = 0; sending && n < 5_000; n++) acknowledged.push(await collect(token, n));
    })();
    try {
      while (acknowledged.length < 50) await Bun.sleep(10);
      const before = acknowledged.length;
      const target = join(work, "backup-1");
      const result = await run(["hub", "backup", "--dir", fixture.dir, target], { timeoutMs: 60_000 });
      const after = acknowledged.length;
      sending = false;
      await stream;
      expect(result.stderr).toBe("");
      expect(result.code).toBe(0);
      expect(result.stdout).toContain(`to ${target}: hub.db (schema `);
      expect(result.stdout).toContain("integrity ok");

      const db = new Database(join(target, "hub.db"), { readonly: true });
      try {
        expect(db.query("PRAGMA integrity_check").get()).toEqual({ integrity_check: "ok" });
        const stored = new Set((db.query("SELECT flmessagespk AS id FROM messages WHERE messagetype = 'egress'").all() as { id: string }[]).map((r) => r.id));
        for (const id of acknowledged.slice(0, before)) expect(stored.has(id)).toBe(true);
        expect(stored.size).toBeLessThanOrEqual(after);
        // nothing but whole rows of the stream: each one the hub acknowledged
        for (const id of stored) expect(acknowledged.includes(id)).toBe(true);
        expect((db.query("SELECT id FROM things").all() as { id: string }[]).map((r) => r.id)).toEqual([thing.id]);
      } finally {
        db.close();
      }
      const names = readdirSync(target);
      for (const live of ["hub.db-wal", "hub.db-shm", "hub.sock", "creating"]) expect(names).not.toContain(live);
      expect(readFileSync(join(target, "ca-key.pem"))).toEqual(readFileSync(join(fixture.dir, "ca-key.pem")));
      expect(statSync(join(target, "ca-key.pem")).mode & 0o777).toBe(0o600);
      expect(statSync(join(target, "hub.db")).mode & 0o777).toBe(0o600);
      expect(statSync(target).mode & 0o777).toBe(0o700);
      expect(readdirSync(join(target, "dists"))).toEqual([`${thing.id}.zip`]);
      // hub restore while the hub serves the home: 75, the home untouched
      const refused = await run(["hub", "restore", "--dir", fixture.dir, target], { timeoutMs: 60_000 });
      expect(refused.code, refused.stderr).toBe(75);
      expect(refused.stderr).toContain("stop it, then restore");
      expect(existsSync(join(fixture.dir, "hub.sock"))).toBe(true);
    } finally {
      sending = false;
      await stream.catch(() => {});
      await hub.stop();
    }

    // hub restore: the home it replaces kept aside, the backup's time and the resend line said; the hub starts, knows the thing and takes its collects
    const later = await run(["hub", "thing", "create", "made-later", "--dir", fixture.dir, "-o", "/dev/null"], { timeoutMs: 60_000 });
    expect(later.code, later.stderr).toBe(0);
    const restore = await run(["hub", "restore", "--dir", fixture.dir, join(work, "backup-1"), "--json"], { timeoutMs: 60_000 });
    expect(restore.code, restore.stderr).toBe(0);
    const said = JSON.parse(restore.stdout);
    expect(said.takenAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(said.database.things).toBe(1);
    expect(readdirSync(said.aside)).toContain("hub.db");
    expect(readdirSync(fixture.dir)).not.toContain("backup.json");
    expect(statSync(join(fixture.dir, "hub.db")).mode & 0o777).toBe(0o600);
    expect(statSync(fixture.dir).mode & 0o777).toBe(0o700);
    const restored = await fixture.serve();
    try {
      expect((await fixture.things()).map((t) => t.id)).toEqual([thing.id]);
      await collect(await signThingToken({ thingId: thing.id, privateKey: thing.privateKey }), -1);
    } finally {
      await restored.stop();
    }
  }, 120_000);

  test("hub restore of what is not a whole backup (a live copy with its -wal, no hub.db, a damaged hub.db, a file, the home itself) or into a missing parent: 64 or 74, one line, the home untouched", async () => {
    const home = join(work, "restore-home");
    const init = await run(
      ["hub", "init", "--dir", home, "--name", "127.0.0.1", "--api-url", "http://127.0.0.1:9", "--broker-host", "127.0.0.1", "--broker-port", "10"],
      {
        timeoutMs: 60_000,
      },
    );
    expect(init.code, init.stderr).toBe(0);
    const before = readFileSync(join(home, "hub.db"));
    const backup = join(work, "restore-backup");
    expect((await run(["hub", "backup", "--dir", home, backup], { timeoutMs: 60_000 })).code).toBe(0);
    const noDb = join(work, "restore-no-db");
    mkdirSync(noDb);
    writeFileSync(join(noDb, "hub.yml"), "hub: {}\n");
    const damaged = join(work, "restore-damaged");
    Bun.spawnSync(["cp", "-a", backup, damaged]);
    const db = readFileSync(join(damaged, "hub.db"));
    db.fill(0x41, 4096, Math.min(db.length, 3 * 4096)); // pages of the schema and the tables overwritten
    writeFileSync(join(damaged, "hub.db"), db);
    // a copy of a live hub's home (cp -a while it ran): its -wal holds what hub.db does not (new-user pass 30, F1)
    const liveCopy = join(work, "restore-live-copy");
    Bun.spawnSync(["cp", "-a", backup, liveCopy]);
    writeFileSync(join(liveCopy, "hub.db-wal"), "");
    const cases: [string, number, RegExp][] = [
      [liveCopy, 64, /holds hub\.db-wal: a copy of a running or killed hub's home, not a backup/],
      [noDb, 64, /holds no hub\.db: not a backup of a hub home/],
      [join(noDb, "hub.yml"), 64, /is not a directory: give the directory `flashlex hub backup` made/],
      [home, 64, /lie one inside the other/],
      [damaged, 74, /damaged|integrity check|not a database/],
    ];
    for (const [from, code, said] of cases) {
      const result = await run(["hub", "restore", "--dir", home, from], { timeoutMs: 60_000 });
      expect(result.code, `${from}: ${result.stderr}`).toBe(code);
      expect(result.stderr.trim().split("\n")).toHaveLength(1);
      expect(result.stderr).toMatch(said);
      expect(readFileSync(join(home, "hub.db"))).toEqual(before);
      expect(readdirSync(work).filter((name) => name.startsWith("restore-home.") || name.startsWith(".restore-home."))).toEqual([]);
    }
    // a home whose parent is not there (F8: an ENOENT on a temporary file, 74)
    const nowhere = await run(["hub", "restore", "--dir", join(work, "no-such-parent", "home"), backup], { timeoutMs: 60_000 });
    expect(nowhere.code, nowhere.stderr).toBe(64);
    expect(nowhere.stderr).toContain("no-such-parent is not a directory: the restored home");
  }, 120_000);

  test("writers' work in progress (a temporary file, a release being added), a zip of a thing the database does not hold, a FIFO and a link loop are left out, the last two named; a release is copied", async () => {
    const dists = join(fixture.dir, "dists");
    const temporary = join(dists, ".x.99999-0a1b2c3d.tmp");
    const stray = join(dists, "11111111-2222-4333-8444-555555555555.zip");
    writeFileSync(temporary, "half");
    writeFileSync(stray, "a key nobody knows");
    const fifo = join(fixture.dir, "a-fifo");
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    // a release, one being added (a dot name), and a link back to the home (a loop, followed once)
    mkdirSync(join(fixture.dir, "releases", "1.2.3"), { recursive: true });
    writeFileSync(join(fixture.dir, "releases", "1.2.3", "flashlex-linux-x64"), "a binary");
    mkdirSync(join(fixture.dir, "releases", ".1.2.4.staging-4194399-Ab12Cd"));
    const loop = join(fixture.dir, "releases", "1.2.3", "back-home");
    symlinkSync(fixture.dir, loop);
    try {
      const target = join(work, "backup-2");
      const result = await run(["hub", "backup", "--dir", fixture.dir, target]);
      expect(result.code).toBe(0);
      expect(result.stdout).toContain(`note: left out: ${fifo} (neither a file nor a directory), ${loop} (a link to a directory copied already)`);
      expect(existsSync(join(target, "releases", "1.2.3", "flashlex-linux-x64"))).toBe(true);
      expect(readdirSync(join(target, "releases"))).toEqual(["1.2.3"]);
      expect(readdirSync(join(target, "dists"))).toEqual([`${thing.id}.zip`]);
      expect(existsSync(join(target, "a-fifo"))).toBe(false);
    } finally {
      rmSync(temporary, { force: true });
      rmSync(stray, { force: true });
      rmSync(fifo, { force: true });
      rmSync(join(fixture.dir, "releases"), { recursive: true, force: true });
    }
  }, 60_000);

  test("SIGINT while it copies: exit 130, one line, no backup directory and no temporary one left", async () => {
    const many = join(fixture.dir, "releases", "9.9.9");
    mkdirSync(many, { recursive: true });
    for (let i = 0; i < 5_000; i++) writeFileSync(join(many, `part-${i}`), String(i));
    try {
      const target = join(work, "backup-3");
      const backup = start(["hub", "backup", "--dir", fixture.dir, target]);
      // the temporary directory is there once the database is copied: the files are next
      const deadline = Date.now() + 20_000;
      while (!readdirSync(work).some((name) => name.startsWith(".backup-3.")) && Date.now() < deadline) await Bun.sleep(2);
      backup.proc.kill("SIGINT");
      await backup.proc.exited; // stop() would send its SIGTERM at once, which may be heard first
      expect(await backup.stop()).toBe(130);
      expect(backup.output().trim()).toBe("flashlex: hub backup stopped by SIGINT; the backup directory was not made");
      expect(readdirSync(work).filter((name) => name.includes("backup-3"))).toEqual([]);
    } finally {
      rmSync(join(fixture.dir, "releases"), { recursive: true, force: true });
    }
  }, 60_000);

  test("SIGTERM while the database is held by another process (sqlite3, exclusive locking): 143 while it is still held, not once the 30 s wait is over; the lock let go within the wait, the backup is made (attack round 29, F6)", async () => {
    const holdLock = (seconds: number) => {
      const sqlite3 = Bun.spawn(["sqlite3", join(fixture.dir, "hub.db")], { stdin: "pipe", stdout: "ignore", stderr: "pipe" });
      sqlite3.stdin.write("PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE; UPDATE things SET name = name WHERE 0;\n");
      sqlite3.stdin.flush();
      let open = true;
      const commit = () => {
        if (open) sqlite3.stdin.write("COMMIT;\n"), sqlite3.stdin.end();
        open = false;
      };
      const release = setTimeout(commit, seconds * 1000);
      const letGo = async () => {
        clearTimeout(release);
        commit();
        expect(await sqlite3.exited).toBe(0);
      };
      return { letGo, stillHeld: () => open };
    };
    const target = join(work, "backup-locked");
    let lock = holdLock(20);
    try {
      await Bun.sleep(300); // sqlite3 has its lock
      const backup = start(["hub", "backup", "--dir", fixture.dir, target]);
      await Bun.sleep(1_000);
      backup.proc.kill("SIGTERM");
      await backup.proc.exited;
      // heard while it waited, not once the lock was let go
      expect(lock.stillHeld()).toBe(true);
      expect(await backup.stop()).toBe(143);
      expect(backup.output().trim()).toBe("flashlex: hub backup stopped by SIGTERM; the backup directory was not made");
      expect(readdirSync(work).filter((name) => name.includes("backup-locked"))).toEqual([]);
    } finally {
      await lock.letGo();
    }
    lock = holdLock(2);
    try {
      const result = await run(["hub", "backup", "--dir", fixture.dir, target]);
      expect(result.code, result.stderr).toBe(0);
      expect(existsSync(join(target, "hub.db"))).toBe(true);
    } finally {
      await lock.letGo();
    }
  }, 60_000);

  test("a target that exists, lies inside the home, or has no parent directory: 64, one line naming it, nothing written", async () => {
    const existing = join(work, "taken-dir");
    mkdirSync(existing);
    const file = join(work, "taken-file");
    writeFileSync(file, "mine");
    const dangling = join(work, "taken-link");
    symlinkSync(join(work, "nowhere"), dangling);
    const cases: [string, string][] = [
      [existing, `${existing} exists`],
      [file, `${file} exists`],
      [dangling, `${dangling} exists`],
      [join(fixture.dir, "inside"), `is inside ${fixture.dir}`],
      [join(work, "missing", "backup"), `${join(work, "missing")} does not exist`],
      [join(file, "backup"), `${file} is not a directory`],
    ];
    for (const [target, says] of cases) {
      const before = readdirSync(work).sort();
      const result = await run(["hub", "backup", "--dir", fixture.dir, target]);
      expect(result.code).toBe(64);
      expect(result.stderr.trim().split("\n")).toHaveLength(1);
      expect(result.stderr).toContain(says);
      expect(readdirSync(work).sort()).toEqual(before);
      expect(readdirSync(existing)).toEqual([]);
      expect(readFileSync(file, "utf8")).toBe("mine");
    }
    expect(existsSync(join(fixture.dir, "inside"))).toBe(false);

    // a directory every user may write in (no sticky bit): another user could swap the backup (attack 29, F1)
    const open = join(work, "open-to-all");
    mkdirSync(open);
    chmodSync(open, 0o777);
    const refused = await run(["hub", "backup", "--dir", fixture.dir, join(open, "b")]);
    expect(refused.code).toBe(77);
    expect(refused.stderr).toBe(
      `flashlex: ${open} may be written by every user (mode 0777): another user could replace the backup as it is made; back up into a directory only you may write in\n`,
    );
    expect(readdirSync(open)).toEqual([]);
  }, 60_000);

  test("hub.sharedDir: the shared dists/ and releases/ are copied once, not the home's empty dists/ (new-user 28, attack 29, verify 33: every backup failed, EEXIST); a killed backup's temporary directory is removed by the next", async () => {
    const sharedHome = await makeHubFixture(mkdtempSync(join(work, "shared-")));
    const shared = join(dirname(sharedHome.dir), "shared-files");
    mkdirSync(shared);
    sharedHome.configure([[["sharedDir"], shared]]);
    const made = await sharedHome.createThing("on-shared");
    expect(existsSync(join(shared, "dists", `${made.id}.zip`))).toBe(true);
    expect(readdirSync(join(sharedHome.dir, "dists"))).toEqual([]);
    const backups = mkdtempSync(join(work, "backups-"));
    const killed = join(backups, ".monday.backup.4194399-0a1b2c3d.tmp"); // above Linux's largest pid: no such process
    mkdirSync(killed);
    writeFileSync(join(killed, "ca-key.pem"), "a copy of the CA key");
    const result = await run(["hub", "backup", "--dir", sharedHome.dir, join(backups, "tuesday")]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`note: dists/ and releases/ came from hub.sharedDir (${shared}): put them back there when you restore`);
    expect(readdirSync(join(backups, "tuesday", "dists"))).toEqual([`${made.id}.zip`]);
    expect(readdirSync(backups)).toEqual(["tuesday"]);
  }, 90_000);
});
