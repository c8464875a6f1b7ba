import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { bundleForNode } from "../../scripts/bundle-node.ts";
import { createLogger } from "../../src/shared/log.ts";
import { openBunSqlite } from "../../src/shared/sqlite/bun-sqlite.ts";
import type { OpenSqlDatabase } from "../../src/shared/sqlite/driver.ts";
import { DatabaseLockedError, lockDirOf, ownerFileOf, ownerOf, readOwner } from "../../src/shared/sqlite/wasm-lock.ts";
import { openWasmSqlite } from "../../src/shared/sqlite/wasm-sqlite.ts";
import { type ContractResult, runCase, storeContract } from "../support/store-contract.ts";

/**
 * One contract (test/support/store-contract.ts), three runs: bun:sqlite and the wasm driver in
 * this Bun process, and the wasm driver bundled as the armv7 build bundles it and run by Node 20.
 * Every run must pass every case and observe exactly what the others observed.
 */
const drivers: Record<string, OpenSqlDatabase> = { "bun:sqlite": openBunSqlite, "node-sqlite3-wasm in Bun": openWasmSqlite };
const seen = new Map<string, Map<string, string | undefined>>();

function record(run: string, result: ContractResult): void {
  if (!seen.has(run)) seen.set(run, new Map());
  seen.get(run)!.set(result.name, result.seen);
  if (!result.ok) throw new Error(`${run}: ${result.error}`);
}

for (const [run, open] of Object.entries(drivers)) {
  describe(`store contract: ${run}`, () => {
    for (const c of storeContract) test(c.name, () => record(run, runCase(open, c)));
  });
}

describe("store contract: node-sqlite3-wasm bundled, under node", () => {
  const nodeRun = "node-sqlite3-wasm in a Node bundle";
  let output: { driver: string; runtime: string; bun: boolean; results: ContractResult[] };
  let dir: string;

  beforeAll(async () => {
    // the bundle runs from a directory with no node_modules and no .wasm file next to it
    dir = mkdtempSync(join(tmpdir(), "flashlex-node-contract-"));
    const { outFile } = await bundleForNode(join(dir, "contract.cjs"), { entry: resolve(import.meta.dir, "../support/store-contract-node.ts") });
    const proc = Bun.spawnSync(["node", outFile], { cwd: dir, stderr: "pipe" });
    if (proc.exitCode !== 0) throw new Error(`node exited ${proc.exitCode}: ${proc.stderr.toString()}`);
    output = JSON.parse(proc.stdout.toString());
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("runs on Node 20 with the wasm driver, not Bun", () => {
    expect(output.runtime).toStartWith("node v20.");
    expect(output.bun).toBe(false);
    expect(output.driver).toBe("node-sqlite3-wasm");
    expect(output.results.map((r) => r.name)).toStrictEqual(storeContract.map((c) => c.name));
  });
  for (const c of storeContract) test(c.name, () => record(nodeRun, output.results.find((r) => r.name === c.name)!));
});

describe("store contract: every driver observes the same", () => {
  for (const c of storeContract) {
    test(c.name, () => {
      const observations = [...seen].map(([run, cases]) => [run, cases.get(c.name)] as const);
      expect(observations.length).toBe(3);
      for (const [run, observation] of observations) expect({ run, observation }).toEqual({ run, observation: expect.any(String) });
      for (const [run, observation] of observations.slice(1)) {
        expect({ run, observation }).toEqual({ run, observation: observations[0]![1] });
      }
    });
  }
});

describe("wasm driver: the <db>.lock directory", () => {
  let dir: string;
  let file: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "flashlex-lock-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  let n = 0;
  const fresh = () => {
    file = join(dir, `db${++n}.db`);
    openWasmSqlite(file).close();
    return file;
  };
  const leaveLock = (owner: object | null) => {
    mkdirSync(lockDirOf(file));
    if (owner) writeFileSync(ownerFileOf(file), JSON.stringify(owner));
  };
  const deadPid = () => Bun.spawnSync(["true"]).pid;
  const sleeper = () => Bun.spawn(["sleep", "30"]);

  test("is held while open, with an owner record naming this process, and removed on close", () => {
    fresh();
    const db = openWasmSqlite(file);
    expect(existsSync(lockDirOf(file))).toBe(true);
    expect(readOwner(file)).toEqual(ownerOf(process.pid));
    expect(readOwner(file)!.start).toMatch(/^\d+$/);
    expect(() => openWasmSqlite(file)).toThrow(/opened twice/);
    db.close();
    expect(existsSync(lockDirOf(file))).toBe(false);
    expect(existsSync(ownerFileOf(file))).toBe(false);
  });

  test("left by a dead process is removed at open, with a warning", () => {
    fresh();
    leaveLock({ ...ownerOf(process.pid), pid: deadPid() });
    const lines: string[] = [];
    const db = openWasmSqlite(file, { log: createLogger({ write: (l) => lines.push(l), level: "debug" }) });
    expect(db.get("SELECT 1 AS one")).toEqual({ one: 1 });
    expect(readOwner(file)!.pid).toBe(process.pid);
    db.close();
    expect(lines.join("\n")).toContain("store.stale_lock_removed");
  });

  test("from before a reboot, or from a reused pid, is stale even though the pid is alive", () => {
    const child = sleeper();
    try {
      for (const owner of [
        { ...ownerOf(child.pid), boot: "00000000-0000-0000-0000-000000000000" },
        { ...ownerOf(child.pid), start: "1" },
      ]) {
        fresh();
        leaveLock(owner);
        openWasmSqlite(file).close();
        expect(existsSync(lockDirOf(file))).toBe(false);
      }
    } finally {
      child.kill();
    }
  });

  test("held by a live process is refused with a clear error and left alone", () => {
    const child = sleeper();
    try {
      const owner = ownerOf(child.pid);
      // qemu-user tells an emulated process its own start time a tick off what others read
      for (const recorded of [owner, { ...owner, start: String(Number(owner.start) + 1) }]) {
        fresh();
        leaveLock(recorded);
        let err: unknown;
        try {
          openWasmSqlite(file, { holderWaitMs: 0 });
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(DatabaseLockedError);
        expect((err as DatabaseLockedError).message).toBe(
          `${file} is in use by process ${child.pid} (this build opens it one process at a time); try again when it is done, or stop it if it is a serve`,
        );
        expect((err as DatabaseLockedError).kind).toBe("try-later"); // exit 75
        expect(existsSync(lockDirOf(file))).toBe(true);
        expect(readOwner(file)).toEqual(recorded);
      }
    } finally {
      child.kill();
    }
  });

  test("without an owner record, while a process has the database open: refused (exit 74), telling what to remove", async () => {
    fresh();
    leaveLock(null);
    const holder = Bun.spawn(["sleep", "30"], { stdin: Bun.file(file) }); // the file open as its fd 0
    try {
      expect(() => openWasmSqlite(file)).toThrow(
        `${file} is locked (${lockDirOf(file)} exists) by an unknown process; if no flashlex process is using it, remove that directory`,
      );
      expect(existsSync(lockDirOf(file))).toBe(true);
    } finally {
      holder.kill();
      await holder.exited;
    }
  });

  test("without an owner record, and no process has the database open (its holder was killed between taking the lock and recording itself): removed at open, with a warning", () => {
    fresh();
    leaveLock(null);
    const lines: string[] = [];
    const db = openWasmSqlite(file, { log: createLogger({ write: (l) => lines.push(l), level: "debug" }) });
    expect(db.get("SELECT 1 AS one")).toEqual({ one: 1 });
    db.close();
    expect(existsSync(lockDirOf(file))).toBe(false);
    expect(lines.join("\n")).toContain("store.stale_lock_removed");
  });

  test("a holder that is done within the wait: the next opener waits for it instead of refusing (two commands at once on armv7)", async () => {
    fresh();
    // the holder is sh's child, not this process's: killed, it is reaped at once (this process
    // cannot reap while its open waits, synchronously, as busy_timeout does)
    const hold = `"${process.execPath}" "${resolve(import.meta.dir, "../support/hold-wasm-db.ts")}" "${file}"`;
    const sh = Bun.spawn(["sh", "-c", `${hold} & h=$!; sleep 1; kill -9 $h; wait $h; exit 0`], { stdout: "pipe", stderr: "inherit" });
    const reader = sh.stdout.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe("ready\n");
    const db = openWasmSqlite(file, { holderWaitMs: 5000 });
    try {
      expect(db.all("SELECT name FROM sqlite_schema")).toEqual([{ name: "held" }]);
    } finally {
      db.close();
      await sh.exited;
    }
  });

  test("a real holder: refused while it runs, taken over after it is SIGKILLed", async () => {
    fresh();
    const holder = Bun.spawn(["bun", resolve(import.meta.dir, "../support/hold-wasm-db.ts"), file], { stdout: "pipe", stderr: "inherit" });
    try {
      const reader = holder.stdout.getReader();
      const { value } = await reader.read();
      expect(new TextDecoder().decode(value)).toBe("ready\n");
      const waited = performance.now();
      expect(() => openWasmSqlite(file, { holderWaitMs: 300 })).toThrow(`is in use by process ${holder.pid}`);
      expect(performance.now() - waited).toBeGreaterThanOrEqual(250); // it waited for the holder first
    } finally {
      holder.kill("SIGKILL");
      await holder.exited;
    }
    expect(existsSync(lockDirOf(file))).toBe(true); // SIGKILL left it behind
    const db = openWasmSqlite(file);
    expect(db.all("SELECT name FROM sqlite_schema")).toEqual([{ name: "held" }]);
    db.close();
    expect(existsSync(lockDirOf(file))).toBe(false);
  });
});

describe("the two drivers never share a file", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "flashlex-mixed-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** a child process holding `file` open with `driver` until killed */
  async function holder(driver: "wasm" | "native", file: string) {
    const proc = Bun.spawn(["bun", resolve(import.meta.dir, `../support/hold-${driver}-db.ts`), file], { stdout: "pipe", stderr: "inherit" });
    const { value } = await proc.stdout.getReader().read();
    expect(new TextDecoder().decode(value)).toBe("ready\n");
    return proc;
  }
  const refusal = (open: () => unknown) => {
    try {
      open();
    } catch (err) {
      return err as DatabaseLockedError;
    }
    throw new Error("the open was not refused");
  };

  test("bun:sqlite refuses (75) a file a live process holds through the wasm driver, and opens it once that process is gone", async () => {
    const file = join(dir, "wasm-held.db");
    const proc = await holder("wasm", file);
    try {
      const err = refusal(() => openBunSqlite(file));
      expect(err).toBeInstanceOf(DatabaseLockedError);
      expect(err.kind).toBe("try-later"); // exit 75
      expect(err.message).toBe(
        `${file} is in use by process ${proc.pid} through the WebAssembly SQLite (an app using flashlex-sdk under Node, or flashlex on armv7), which cannot share it; try again when it has closed the file`,
      );
    } finally {
      proc.kill("SIGKILL");
      await proc.exited;
    }
    // the dead holder's lock is left to the next wasm opener to break; bun:sqlite just opens
    const native = openBunSqlite(file);
    native.run("INSERT INTO held VALUES (?)", ["after"]);
    native.close();
    expect(existsSync(lockDirOf(file))).toBe(true);
    const wasm = openWasmSqlite(file);
    expect(wasm.all("SELECT v FROM held")).toEqual([{ v: "after" }]);
    wasm.close();
  });

  test("the wasm driver refuses (75) a file that a native SQLite has open, in another process or this one", async () => {
    const file = join(dir, "native-held.db");
    const proc = await holder("native", file);
    try {
      const err = refusal(() => openWasmSqlite(file));
      expect(err).toBeInstanceOf(DatabaseLockedError);
      expect(err.kind).toBe("try-later"); // exit 75
      expect(err.message).toBe(
        `${file} is open in process ${proc.pid} with a native SQLite (flashlex serve, flashlex messages, or another program), which the WebAssembly SQLite cannot share; try again when it has closed the file`,
      );
      expect(existsSync(lockDirOf(file))).toBe(false);
    } finally {
      proc.kill("SIGKILL");
      await proc.exited;
    }
    const own = openBunSqlite(file);
    own.get("SELECT count(*) FROM held"); // a native connection takes its locks at its first read
    expect(refusal(() => openWasmSqlite(file)).message).toStartWith(`${file} is open in this process with a native SQLite`);
    own.close();
    // closed everywhere: the wasm driver opens it, and what the native holder committed is there
    const wasm = openWasmSqlite(file);
    expect(wasm.all("SELECT v FROM held")).toEqual([{ v: "native" }]);
    wasm.close();
  });
});
