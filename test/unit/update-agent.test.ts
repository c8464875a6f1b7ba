/**
 * The thing's update pieces that need no hub: the marker format, the pre-start guard (run with
 * the real /bin/sh, as the unit runs it), the ELF check, the install's file steps, and what the
 * updater decides at start about a pending update that is not the running version (a fake hub).
 */
import { Database } from "bun:sqlite";
import { describe, expect, test } from "bun:test";
import { chmodSync, chownSync, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { generateUpdateKeyPair, loadUpdatePrivateKey, signRelease } from "../../src/crypto/update-signing.ts";
import { manifestBytes } from "../../src/protocol/release-manifest.ts";
import { elfMismatch } from "../../src/shared/elf.ts";
import { FlashlexError } from "../../src/shared/errors.ts";
import { createLogger, silentLogger, tapLogger } from "../../src/shared/log.ts";
import { applyPragmas, migrate } from "../../src/shared/sqlite/migrate.ts";
import { openSqlDatabase } from "../../src/shared/sqlite/open.ts";
import type { ThingIdentity } from "../../src/thing/identity.ts";
import { kindOfLogged } from "../../src/thing/metrics/prometheus.ts";
import type { ThingConfig } from "../../src/thing/settings.ts";
import { THING_MIGRATIONS } from "../../src/thing/store/message-store.ts";
import { DownloadRefused, downloadVerified } from "../../src/thing/update/download.ts";
import { writeGuard } from "../../src/thing/update/guard.ts";
import type { UpdateHubApi } from "../../src/thing/update/hub-api.ts";
import { installBinary, restorePrevious } from "../../src/thing/update/install.ts";
import { formatMarker, markerPaths, parseMarker, readPending, readRelease, readRolledBack } from "../../src/thing/update/marker.ts";
import { readTrialSchema, recordSchemaBeforeTrial, restoreTrialSchema } from "../../src/thing/update/trial-schema.ts";
import { startUpdater } from "../../src/thing/update/updater.ts";
import { scratchDir } from "../support/scratch.ts";

function device() {
  const root = scratchDir("flashlex-update-agent-");
  const data = join(root, "data");
  mkdirSync(data);
  const binary = join(root, "flashlex");
  writeFileSync(binary, "old binary", { mode: 0o755 });
  const download = join(root, ".flashlex.download-1");
  writeFileSync(download, "new binary");
  return { root, data, binary, download };
}

const guard = (data: string) => Bun.spawnSync(["/bin/sh", markerPaths(data).guard], { stderr: "pipe" });

describe("the pending marker", () => {
  test("round-trips and refuses what sh could not read back", () => {
    const update = { version: "2.0.0", from: "1.0.0", binary: "/opt/my thing/flashlex", previous: "/opt/my thing/flashlex.previous" };
    expect(parseMarker(formatMarker(update))).toEqual({ ...update, reason: undefined, sha256: undefined, created: undefined });
    const digest = "ab".repeat(32);
    expect(parseMarker(formatMarker({ ...update, sha256: digest }))?.sha256).toBe(digest);
    expect(parseMarker(formatMarker({ ...update, created: "2026-12-02T00:00:00Z" }))?.created).toBe("2026-12-02T00:00:00Z");
    expect(() => formatMarker({ ...update, binary: "/opt/it's/flashlex" })).toThrow(/quote/);
  });
});

describe("install, then the guard", () => {
  test("install keeps the previous binary, writes the marker, puts the new one in place", () => {
    const d = device();
    writeGuard(d.data);
    const pending = installBinary(d.download, { version: "2.0.0", from: "1.0.0", binary: d.binary }, d.data);
    expect(readFileSync(d.binary, "utf8")).toBe("new binary");
    expect(readFileSync(pending.previous, "utf8")).toBe("old binary");
    expect(statSync(d.binary).mode & 0o777).toBe(0o755);
    expect(readPending(d.data)?.version).toBe("2.0.0");
    expect(existsSync(d.download)).toBe(false);
  });

  test("an install whose last step fails leaves no update pending (the next start reported 'the install was interrupted' in place of the real error)", () => {
    const d = device();
    writeGuard(d.data);
    rmSync(d.download); // the rename of the new binary fails (as EBUSY does on a binary bound onto itself)
    expect(() => installBinary(d.download, { version: "2.0.0", from: "1.0.0", binary: d.binary }, d.data)).toThrow(/ENOENT/);
    expect(readPending(d.data)).toBeUndefined();
    expect(readFileSync(d.binary, "utf8")).toBe("old binary");
    expect(guard(d.data).exitCode).toBe(0);
  });

  test("the guard lets a pending version start twice and puts the previous binary back at the third start", () => {
    const d = device();
    writeGuard(d.data);
    installBinary(d.download, { version: "2.0.0", from: "1.0.0", binary: d.binary }, d.data);
    for (const start of [1, 2]) {
      expect(guard(d.data).exitCode).toBe(0);
      expect(readFileSync(markerPaths(d.data).starts, "utf8").trim()).toBe(String(start));
      expect(readFileSync(d.binary, "utf8")).toBe("new binary");
    }
    const third = guard(d.data);
    expect(third.stderr.toString()).toContain("the previous binary is back");
    expect(readFileSync(d.binary, "utf8")).toBe("old binary");
    expect(readPending(d.data)).toBeUndefined();
    expect(readRolledBack(d.data)).toMatchObject({ version: "2.0.0", from: "1.0.0", reason: "2.0.0 started 2 times without reporting healthy" });
    // and with nothing pending it does nothing
    expect(guard(d.data).exitCode).toBe(0);
    expect(readFileSync(d.binary, "utf8")).toBe("old binary");
  });

  test("at its third start the guard has the binary on trial take the database back to the schema before it (restore-schema), then puts the previous binary back; without a note it runs nothing (new-user pass 25, F1)", () => {
    const d = device();
    const ran = join(d.root, "ran");
    // the binary on trial, as the guard runs it: it records its arguments and that it was still in place
    writeFileSync(d.download, `#!/bin/sh\necho "$@" > '${ran}'\n`, { mode: 0o755 });
    writeGuard(d.data);
    installBinary(d.download, { version: "2.0.0", from: "1.0.0", binary: d.binary }, d.data);
    writeFileSync(markerPaths(d.data).trialSchema, JSON.stringify({ version: 3, database: join(d.data, "subscription.db") }));
    for (const _ of [1, 2]) guard(d.data);
    expect(existsSync(ran)).toBe(false);
    expect(guard(d.data).stderr.toString()).toContain("the previous binary is back");
    expect(readFileSync(ran, "utf8").trim()).toBe(`restore-schema -d ${d.data}`);
    expect(readFileSync(d.binary, "utf8")).toBe("old binary");

    const plain = device();
    const plainRan = join(plain.root, "ran");
    writeFileSync(plain.download, `#!/bin/sh\necho "$@" > '${plainRan}'\n`, { mode: 0o755 });
    writeGuard(plain.data);
    installBinary(plain.download, { version: "2.0.0", from: "1.0.0", binary: plain.binary }, plain.data);
    for (const _ of [1, 2, 3]) guard(plain.data);
    expect(existsSync(plainRan)).toBe(false);
    expect(readFileSync(plain.binary, "utf8")).toBe("old binary");
  });

  test("a restore-schema that finds the database locked (75) is tried once more; locked again, the guard swaps nothing and tries at the next start (verify pass 31, F14)", () => {
    const d = device();
    const tries = join(d.root, "tries");
    // the binary on trial: its restore-schema answers 75 until it has been run `free` times
    const onTrial = (free: number) =>
      `#!/bin/sh
n=$(cat '${tries}' 2>/dev/null || echo 0); n=$((n + 1)); echo $n > '${tries}'
[ $n -ge ${free} ] && exit 0
echo locked >&2; exit 75
`;
    writeFileSync(d.download, onTrial(4), { mode: 0o755 });
    writeGuard(d.data);
    installBinary(d.download, { version: "2.0.0", from: "1.0.0", binary: d.binary }, d.data);
    writeFileSync(markerPaths(d.data).trialSchema, JSON.stringify({ version: 3, database: join(d.data, "subscription.db") }));
    for (const _ of [1, 2]) guard(d.data);
    const third = guard(d.data);
    expect(readFileSync(tries, "utf8").trim()).toBe("2");
    expect(third.stderr.toString()).toContain("the message database stayed locked, so 2.0.0 starts once more");
    expect(readFileSync(d.binary, "utf8")).toContain("exit 75"); // still the binary on trial
    expect(readPending(d.data)?.version).toBe("2.0.0");
    const fourth = guard(d.data); // locked once more, then free: now the swap
    expect(readFileSync(tries, "utf8").trim()).toBe("4");
    expect(fourth.stderr.toString()).toContain("the previous binary is back");
    expect(readFileSync(d.binary, "utf8")).toBe("old binary");
    expect(readPending(d.data)).toBeUndefined();
  });

  test.skipIf(process.getuid?.() !== 0)(
    "run as root for a data directory another user owns, the guard does nothing and says so: that user chose the binary it would run (attack round 28, F3)",
    () => {
      const d = device();
      const ran = join(d.root, "ran");
      writeFileSync(d.download, `#!/bin/sh\necho ran > '${ran}'\n`, { mode: 0o755 });
      writeGuard(d.data);
      installBinary(d.download, { version: "2.0.0", from: "1.0.0", binary: d.binary }, d.data);
      writeFileSync(markerPaths(d.data).trialSchema, JSON.stringify({ version: 3, database: join(d.data, "subscription.db") }));
      writeFileSync(markerPaths(d.data).starts, "2\n");
      chownSync(join(d.data, "update"), 48_001, 48_001);
      const refused = guard(d.data);
      expect(refused.stderr.toString()).toContain("refused to run as root");
      expect(existsSync(ran)).toBe(false);
      expect(readFileSync(d.binary, "utf8")).toContain("echo ran"); // nothing swapped
      chownSync(join(d.data, "update"), 0, 0);
      expect(guard(d.data).stderr.toString()).toContain("the previous binary is back");
      expect(existsSync(ran)).toBe(true);
    },
  );

  test("a restore-schema that fails otherwise (74: a full disk) does not hold the rollback, but the record stays for a restore-schema by hand (verify pass 32, F1: the guard removed it)", () => {
    const d = device();
    writeFileSync(d.download, "#!/bin/sh\necho 'disk full' >&2; exit 74\n", { mode: 0o755 });
    writeGuard(d.data);
    installBinary(d.download, { version: "2.0.0", from: "1.0.0", binary: d.binary }, d.data);
    writeFileSync(markerPaths(d.data).trialSchema, JSON.stringify({ version: 3, database: join(d.data, "subscription.db") }));
    writeFileSync(markerPaths(d.data).starts, "2\n");
    const said = guard(d.data).stderr.toString();
    expect(said).toContain("could not take the database back");
    expect(said).toContain(`run flashlex restore-schema -d ${d.data} with the 2.0.0 binary`);
    expect(readFileSync(d.binary, "utf8")).toBe("old binary");
    expect(existsSync(markerPaths(d.data).trialSchema)).toBe(true);
    expect(readRolledBack(d.data)?.version).toBe("2.0.0");
  });

  test("an update directory others may write in, or another user's, is refused (78): whoever made it could replace the guard the unit runs (verify pass 32, F5)", () => {
    const open = device();
    mkdirSync(join(open.data, "update"));
    chmodSync(join(open.data, "update"), 0o777);
    expect(() => writeGuard(open.data)).toThrow(`${join(open.data, "update")} is writable by others (mode 0777)`);
    if (process.getuid?.() === 0) {
      const theirs = device();
      mkdirSync(join(theirs.data, "update"), { mode: 0o700 });
      chownSync(join(theirs.data, "update"), 48_001, 48_001);
      expect(() => writeGuard(theirs.data)).toThrow(`${join(theirs.data, "update")} is another user's`);
    }
  });

  test("a record naming a hard link in the data directory is refused: it may be another name of a file elsewhere (verify pass 32, F11)", () => {
    const d = device();
    mkdirSync(join(d.data, "update"));
    writeFileSync(join(d.root, "other.db"), "");
    linkSync(join(d.root, "other.db"), join(d.data, "hard.db"));
    writeFileSync(markerPaths(d.data).trialSchema, JSON.stringify({ version: 3, database: join(d.data, "hard.db") }));
    expect(() => readTrialSchema(d.data)).toThrow(`its database is not a file of ${d.data}`);
  });

  test("restorePrevious is the watchdog's rollback", () => {
    const d = device();
    const pending = installBinary(d.download, { version: "2.0.0", from: "1.0.0", binary: d.binary }, d.data);
    expect(restorePrevious(pending)).toBe(true);
    expect(readFileSync(d.binary, "utf8")).toBe("old binary");
    expect(restorePrevious(pending)).toBe(false);
  });
});

describe("at start, a pending update whose version is not the one that runs", () => {
  const sha256 = (text: string) => new Bun.CryptoHasher("sha256").update(text).digest("hex");
  /**
   * serve's updater started by the binary now in place, reporting `version`; what it reported,
   * asked and logged. `poll` answers its checks (nothing offered unless given).
   */
  async function startAs(
    d: ReturnType<typeof device>,
    version: string,
    waitMs = 2300,
    poll: UpdateHubApi["poll"] = async () => undefined,
    trial: {
      connected?: boolean;
      brokerAnswered?: () => boolean;
      healthySeconds?: number;
      trialWaitsForHubMs?: number;
      report?: UpdateHubApi["report"];
      restoreLockWaitMs?: number;
    } = {},
  ) {
    const reports: { state: string; version: string; running: string; detail?: string }[] = [];
    const restarts: string[] = [];
    const lines: string[] = [];
    /** each WARN or ERROR as the agent's metrics count it: event and kind */
    const counted: string[] = [];
    const hub: UpdateHubApi = {
      poll,
      report: trial.report ?? (async (r) => void reports.push(r)),
      binaryUrl: () => "http://127.0.0.1:1/",
      authorization: async () => ({}),
      caPem: "",
    };
    const config = {
      dataDir: d.data,
      yaml: { update: { publicKey: generateUpdateKeyPair().publicKey, checkSeconds: 3600, healthySeconds: trial.healthySeconds ?? 60 } },
    } as unknown as ThingConfig;
    const updater = startUpdater({
      config,
      identity: {} as ThingIdentity,
      log: tapLogger(createLogger({ write: (line) => lines.push(line) }), (level, event, fields) => {
        if (level === "error" || fields.error !== undefined) counted.push(`${event} ${kindOfLogged(fields)}`);
      }),
      connected: () => trial.connected ?? true,
      brokerAnswered: trial.brokerAnswered,
      trialWaitsForHubMs: trial.trialWaitsForHubMs,
      restoreLockWaitMs: trial.restoreLockWaitMs,
      requestRestart: (reason) => restarts.push(reason),
      version,
      target: "linux-x64",
      executable: d.binary,
      hub,
    });
    await Bun.sleep(waitMs); // the first check (2 s after start) sends what is owed
    updater.stop();
    // what serve stops with, before it closes its database: a rollback decided is not carried out yet
    const atStop = { pending: readPending(d.data), binary: readFileSync(d.binary, "utf8") };
    updater.finishRollBack(); // serve's last part, once its database is closed
    return { reports, restarts, lines, atStop, counted };
  }

  test("a check the hub refuses with 401 (a revoked thing, a clock far off) is logged with the 401 fix (verify pass 29, F10)", async () => {
    const refused = async () => {
      throw Object.assign(new Error("the hub answered 401 Unauthorized (the thing token was refused)"), { status: 401 });
    };
    const { lines } = await startAs(device(), "1.0.0", 2300, refused);
    const line = lines.find((l) => l.includes("update.check_failed"));
    expect(line).toContain("the hub answered 401");
    expect(line).toContain("fix=\"A 401 means the hub refused the thing's token");
  }, 10_000);

  test("a failure the agent logs with its error is counted by that error's kind: a hub that cannot be reached is unavailable, not a bug (new-user pass 27, F11: every error logged as text counted as kind=bug)", async () => {
    const d = device();
    installBinary(d.download, { version: "2.0.0", from: "1.0.0", binary: d.binary, sha256: sha256("new binary") }, d.data);
    writeFileSync(d.binary, "old binary"); // an install interrupted: a report is owed at the first check
    const unreachable = async () => {
      throw new FlashlexError("the hub at https://hub.example:8443 did not answer (ECONNREFUSED)", "unavailable");
    };
    const { counted, lines } = await startAs(d, "1.0.0", 2300, undefined, { report: unreachable });
    expect(counted).toContain("update.report_failed unavailable");
    expect(lines.find((l) => l.includes("update.report_failed"))).toContain("did not answer (ECONNREFUSED)");
  }, 10_000);

  test("a version on trial that reports healthy is recorded as the release that runs, with its signing time (the oldest an offer may have from then on)", async () => {
    const d = device();
    installBinary(d.download, { version: "2.0.0", from: "1.0.0", binary: d.binary, sha256: sha256("new binary"), created: "2026-12-02T00:00:00Z" }, d.data);
    const { reports } = await startAs(d, "2.0.0", 300);
    expect(reports).toContainEqual({ state: "healthy", version: "2.0.0", running: "2.0.0" });
    expect(readPending(d.data)).toBeUndefined();
    expect(readRelease(d.data)).toMatchObject({ version: "2.0.0", created: "2026-12-02T00:00:00Z" });
  }, 10_000);

  test("the schema a trial's migration started from is noted once, only while an update is pending, and forgotten when the version reports healthy or the next update is installed (new-user pass 25, F1)", async () => {
    const d = device();
    const database = join(d.data, "subscription.db");
    recordSchemaBeforeTrial(d.data, database, 3); // no update pending: a migration of any day, nothing to undo
    expect(readTrialSchema(d.data)).toBeUndefined();
    installBinary(d.download, { version: "2.0.0", from: "1.0.0", binary: d.binary, sha256: sha256("new binary") }, d.data);
    recordSchemaBeforeTrial(d.data, database, 3);
    recordSchemaBeforeTrial(d.data, database, 4); // a later migration of the same trial: the first one is what a rollback undoes
    expect(readTrialSchema(d.data)).toEqual({ version: 3, database });
    // a record naming a file outside the data directory is no record: the down-migration goes nowhere else
    const kept = readFileSync(markerPaths(d.data).trialSchema, "utf8");
    writeFileSync(join(d.root, "elsewhere.db"), "");
    symlinkSync(join(d.root, "elsewhere.db"), join(d.data, "elsewhere-link.db"));
    for (const [record, said] of [
      [JSON.stringify({ version: 3, database: join(d.root, "elsewhere.db") }), `its database is not a file of ${d.data}`],
      [JSON.stringify({ version: 3, database: "subscription.db" }), `its database is not a file of ${d.data}`],
      [JSON.stringify({ version: "3", database }), "no schema version"],
      ["garbage", "not JSON"],
      // a symlink in the data directory to another database (attack round 28, F2)
      [JSON.stringify({ version: 3, database: join(d.data, "elsewhere-link.db") }), `its database is not a file of ${d.data}`],
    ]) {
      writeFileSync(markerPaths(d.data).trialSchema, record!);
      expect(() => readTrialSchema(d.data)).toThrow(`${markerPaths(d.data).trialSchema}: ${said}`);
    }
    writeFileSync(markerPaths(d.data).trialSchema, kept);
    await startAs(d, "2.0.0", 300);
    expect(readTrialSchema(d.data)).toBeUndefined();
    writeFileSync(d.download, "newer binary");
    installBinary(d.download, { version: "3.0.0", from: "2.0.0", binary: d.binary }, d.data);
    recordSchemaBeforeTrial(d.data, database, 5);
    writeFileSync(d.download, "newest binary");
    installBinary(d.download, { version: "4.0.0", from: "2.0.0", binary: d.binary }, d.data); // 3.0.0's trial never ended
    expect(readTrialSchema(d.data)).toBeUndefined();
  }, 10_000);

  test("a record with no update pending or rolled back is not one a trial left: restore-schema refuses it (78) and leaves the database (attack round 28, F2)", () => {
    const d = device();
    const database = join(d.data, "subscription.db");
    writeFileSync(database, "");
    mkdirSync(join(d.data, "update"));
    writeFileSync(markerPaths(d.data).trialSchema, JSON.stringify({ version: 1, database }));
    expect(() => restoreTrialSchema(d.data)).toThrow(`${markerPaths(d.data).trialSchema}: no update is pending or rolled back`);
    expect(readFileSync(database, "utf8")).toBe("");
  });

  test("a trial the broker never answered (refused, unreachable: the hub down during a rollout) waits for it, one WARN, and only past that rolls back saying so; one the broker answered rolls back at its time (new-user pass 25, F3)", async () => {
    const silent = device();
    installBinary(silent.download, { version: "2.0.0", from: "1.0.0", binary: silent.binary, sha256: sha256("new binary") }, silent.data);
    const answered = device();
    installBinary(answered.download, { version: "2.0.0", from: "1.0.0", binary: answered.binary, sha256: sha256("new binary") }, answered.data);
    const trial = { connected: false, healthySeconds: 0.2, trialWaitsForHubMs: 900 };
    const [waited, refused] = await Promise.all([
      startAs(silent, "2.0.0", 1500, undefined, { ...trial, brokerAnswered: () => false }),
      startAs(answered, "2.0.0", 600, undefined, { ...trial, brokerAnswered: () => true }),
    ]);
    expect(refused.restarts).toEqual(["rolling back from 2.0.0 to 1.0.0"]);
    expect(readRolledBack(answered.data)?.reason).toBe("2.0.0 did not connect and report healthy within 0.2 s");
    expect(refused.lines.filter((l) => l.includes("update.trial_waits_for_hub"))).toEqual([]);
    expect(waited.lines.filter((l) => l.includes("WARN  update.trial_waits_for_hub"))).toHaveLength(1);
    expect(waited.restarts).toEqual(["rolling back from 2.0.0 to 1.0.0"]);
    expect(readRolledBack(silent.data)?.reason).toMatch(
      /^2\.0\.0 did not connect and report healthy within 1s: the broker refused or did not answer every connection \(the hub or the network was down\)$/,
    );
  }, 10_000);

  test("the release's own binary saying another version (mislabeled) is rolled back: the previous binary is put back, and it reports why", async () => {
    const d = device();
    installBinary(d.download, { version: "2.0.0", from: "1.0.0", binary: d.binary, sha256: sha256("new binary") }, d.data);
    // decided as it starts, before any check: serve then stops for the restart
    const { restarts, atStop } = await startAs(d, "9.9.9", 0);
    expect(restarts).toEqual(["rolling back from 2.0.0 to 1.0.0"]);
    // until serve closed its database the rollback is only decided: killed there, the guard finds the update pending (verify pass 31, F7)
    expect(atStop).toEqual({ pending: expect.objectContaining({ version: "2.0.0" }), binary: "new binary" });
    expect(readFileSync(d.binary, "utf8")).toBe("old binary");
    expect(readPending(d.data)).toBeUndefined();
    expect(readRolledBack(d.data)?.reason).toBe("the binary of release 2.0.0 says it is version 9.9.9: the release is mislabeled");
  }, 10_000);

  /** A device on trial of a mislabeled 2.0.0 whose database the trial migrated from schema 3 (the record says so). */
  function migratedOnTrial() {
    const d = device();
    installBinary(d.download, { version: "2.0.0", from: "1.0.0", binary: d.binary, sha256: sha256("new binary") }, d.data);
    const database = join(d.data, "subscription.db");
    const db = openSqlDatabase(database);
    applyPragmas(db);
    migrate(db, THING_MIGRATIONS, database);
    db.close();
    writeFileSync(markerPaths(d.data).trialSchema, JSON.stringify({ version: 3, database }));
    const version = () => {
      const check = new Database(database, { readonly: true });
      try {
        return (check.query("PRAGMA user_version").get() as { user_version: number }).user_version;
      } finally {
        check.close();
      }
    };
    return { d, database, version };
  }

  test("a rollback whose schema restore finds the database held by another process puts nothing back: binary, pending and record stay for the next start (verify pass 32, F1: the previous binary got the newer schema, the record gone)", async () => {
    const { d, database, version } = migratedOnTrial();
    const holder = new Database(database);
    holder.exec("PRAGMA busy_timeout = 0");
    holder.exec("BEGIN IMMEDIATE");
    try {
      const { lines } = await startAs(d, "9.9.9", 0, undefined, { restoreLockWaitMs: 200 });
      expect(lines.find((l) => l.includes("update.schema_restore_failed"))).toContain("the previous binary is not put back yet");
    } finally {
      holder.exec("ROLLBACK");
      holder.close();
    }
    expect(readFileSync(d.binary, "utf8")).toBe("new binary");
    expect(readPending(d.data)?.version).toBe("2.0.0");
    expect(readTrialSchema(d.data)).toMatchObject({ version: 3 });
    expect(version()).toBe(THING_MIGRATIONS.length);
  }, 10_000);

  test("a rollback whose restore fails otherwise puts the previous binary back and keeps the record, for restore-schema by hand; one that took the file back clears it (verify pass 32, F1)", async () => {
    const damaged = migratedOnTrial();
    writeFileSync(damaged.database, "not a database at all, but long enough to be read as one's header.........................");
    await startAs(damaged.d, "9.9.9", 0);
    expect(readFileSync(damaged.d.binary, "utf8")).toBe("old binary");
    expect(readRolledBack(damaged.d.data)?.version).toBe("2.0.0");
    expect(readTrialSchema(damaged.d.data)).toMatchObject({ version: 3 });

    const fine = migratedOnTrial();
    const { lines } = await startAs(fine.d, "9.9.9", 0);
    expect(lines.find((l) => l.includes("update.schema_restored"))).toMatch(/from=5 to=3/);
    expect(fine.version()).toBe(3);
    expect(readFileSync(fine.d.binary, "utf8")).toBe("old binary");
    expect(readTrialSchema(fine.d.data)).toBeUndefined();
  }, 10_000);

  test("the record says restored before the downgrade may commit, so no command of the binary on trial migrates in between; a record that says so is taken back all the same (verify pass 32, F2)", () => {
    const { d, database, version } = migratedOnTrial();
    const holder = new Database(database);
    holder.exec("BEGIN IMMEDIATE");
    try {
      expect(() => restoreTrialSchema(d.data, 100)).toThrow();
    } finally {
      holder.exec("ROLLBACK");
      holder.close();
    }
    // the downgrade did not happen, and yet from its start nothing of the trial migrates
    expect(readTrialSchema(d.data)).toMatchObject({ version: 3, restored: true });
    expect(() => recordSchemaBeforeTrial(d.data, database, 3)).toThrow("the update on trial is being rolled back");
    expect(restoreTrialSchema(d.data)).toEqual({ database, from: THING_MIGRATIONS.length, to: 3 });
    expect(version()).toBe(3);
    // migrated again behind its back (a command that opened the file first): taken back again, not "already there"
    const db = openSqlDatabase(database);
    applyPragmas(db);
    migrate(db, THING_MIGRATIONS, database);
    db.close();
    expect(restoreTrialSchema(d.data)).toEqual({ database, from: THING_MIGRATIONS.length, to: 3 });
    expect(version()).toBe(3);
  });

  test("a rollback with no previous binary leaves the database as it is: the file is not taken back for a binary that stays (verify pass 32, F3)", async () => {
    const { d, version } = migratedOnTrial();
    rmSync(readPending(d.data)!.previous);
    const { lines } = await startAs(d, "9.9.9", 0);
    expect(lines.some((l) => l.includes("update.rollback_impossible"))).toBe(true);
    expect(lines.some((l) => l.includes("update.schema_restore"))).toBe(false);
    expect(version()).toBe(THING_MIGRATIONS.length);
    expect(readPending(d.data)).toBeUndefined();
  }, 10_000);

  test("the old binary (a crash before the rename) reports the install interrupted; another binary put there since is not rolled back", async () => {
    const interrupted = device();
    writeGuard(interrupted.data);
    installBinary(interrupted.download, { version: "2.0.0", from: "1.0.0", binary: interrupted.binary, sha256: sha256("new binary") }, interrupted.data);
    writeFileSync(interrupted.binary, "old binary"); // as if the rename never happened
    const replaced = device();
    installBinary(replaced.download, { version: "2.0.0", from: "1.0.0", binary: replaced.binary, sha256: sha256("new binary") }, replaced.data);
    writeFileSync(replaced.binary, "an operator's own build");
    const [a, b] = await Promise.all([startAs(interrupted, "1.0.0"), startAs(replaced, "3.0.0")]);
    expect(a).toMatchObject({
      restarts: [],
      reports: [{ state: "failed", version: "2.0.0", running: "1.0.0", detail: "the install was interrupted before the new binary was in place" }],
    });
    expect(b).toMatchObject({
      restarts: [],
      reports: [{ state: "failed", version: "2.0.0", running: "3.0.0", detail: "another binary (version 3.0.0) replaced the one installed before it ran" }],
    });
    expect(readFileSync(replaced.binary, "utf8")).toBe("an operator's own build");
    expect([readPending(interrupted.data), readPending(replaced.data)]).toEqual([undefined, undefined]);
  }, 10_000);
});

describe("the ELF check", () => {
  test("the running binary fits this machine; other machines and non-ELF files do not", () => {
    expect(elfMismatch(process.execPath)).toBeUndefined();
    expect(elfMismatch(process.execPath, process.arch === "x64" ? "arm64" : "x64")).toMatch(/^it is built for (aarch64|x86-64), not (x86-64|aarch64)$/);
    const d = device();
    expect(elfMismatch(d.binary)).toBe("it is not an ELF executable");
  });
});

describe("the download beside the binary", () => {
  const BINARY = new Uint8Array(256 * 1024).fill(7);
  /**
   * A hub that offers 2.0.0 (signed for linux-x64) and serves its binary: all at once, or its
   * first 64 KiB and then nothing until the request ends (a slow link).
   */
  function hubOffering(slow: boolean, created = "2026-12-02T00:00:00Z") {
    const keys = generateUpdateKeyPair();
    const manifest = new TextDecoder().decode(
      manifestBytes({
        format: 1,
        product: "flashlex",
        version: "2.0.0",
        commit: "test",
        created,
        targets: { "linux-x64": { file: "flashlex-linux-x64", sha256: new Bun.CryptoHasher("sha256").update(BINARY).digest("hex"), size: BINARY.length } },
      }),
    );
    const signature = signRelease(new TextEncoder().encode(manifest), loadUpdatePrivateKey(keys.privateKeyPem));
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (request) =>
        new Response(
          slow
            ? new ReadableStream({
                start(controller) {
                  controller.enqueue(BINARY.subarray(0, 64 * 1024));
                  request.signal.addEventListener("abort", () => controller.close());
                },
              })
            : BINARY,
        ),
    });
    const reports: { state: string; version: string; running: string; detail?: string }[] = [];
    const hub: UpdateHubApi = {
      poll: async () => ({ version: "2.0.0", manifest, signature }),
      report: async (r) => void reports.push(r),
      binaryUrl: () => `http://127.0.0.1:${server.port}/binary`,
      authorization: async () => ({}),
      caPem: "",
    };
    return { publicKey: keys.publicKey, hub, reports, server };
  }

  function start(d: ReturnType<typeof device>, offering: ReturnType<typeof hubOffering>, restarts: string[] = [], committedAt?: string) {
    const config = {
      dataDir: d.data,
      yaml: { update: { publicKey: offering.publicKey, checkSeconds: 3600, healthySeconds: 60 } },
    } as unknown as ThingConfig;
    return startUpdater({
      config,
      identity: {} as ThingIdentity,
      log: silentLogger,
      connected: () => true,
      requestRestart: (reason) => restarts.push(reason),
      version: "1.0.0",
      target: "linux-x64",
      executable: d.binary,
      hub: offering.hub,
      committedAt,
    });
  }

  const downloadsIn = (dir: string) => readdirSync(dir).filter((name) => name.startsWith(".flashlex.download-"));

  test("a directory the download cannot be written in is reported failed, with the reason (not retried as if the network failed)", async () => {
    const d = device();
    const offering = hubOffering(false);
    try {
      const updater = start(d, offering);
      rmSync(d.root, { recursive: true }); // the binary's directory is gone: the file system refuses the file
      await waitFor(() => offering.reports.some((r) => r.state === "failed"), 6000);
      updater.stop();
      expect(offering.reports.at(-1)).toEqual({
        state: "failed",
        version: "2.0.0",
        running: "1.0.0",
        detail: `cannot write the download in ${d.root}: no such file or directory (ENOENT)`,
      });
    } finally {
      offering.server.stop(true);
    }
  }, 10_000);

  test("a release signed before this build's commit, or before the release it runs, is refused unread (an old signed release offered again was installed: a downgrade); one signed after is downloaded", async () => {
    // the offer is signed at 2026-12-02T00:00:00Z
    const byCommit = device();
    const byRelease = device();
    mkdirSync(join(byRelease.data, "update"));
    writeFileSync(
      markerPaths(byRelease.data).release,
      formatMarker({ version: "1.0.0", from: "0.9.0", binary: byRelease.binary, previous: `${byRelease.binary}.previous`, created: "2026-12-05T00:00:00Z" }),
    );
    const newer = device();
    const offerings = [hubOffering(false), hubOffering(false), hubOffering(false)];
    try {
      const updaters = [
        start(byCommit, offerings[0]!, [], "2026-12-04T10:00:00Z"),
        start(byRelease, offerings[1]!, [], "2026-11-01T00:00:00Z"),
        start(newer, offerings[2]!, [], "2026-12-01T00:00:00Z"),
      ];
      await waitFor(() => offerings[0]!.reports.length > 0 && offerings[1]!.reports.length > 0 && offerings[2]!.reports.length > 1, 8000);
      for (const updater of updaters) updater.stop();
      const refusal = (what: string) => [
        {
          state: "failed",
          version: "2.0.0",
          running: "1.0.0",
          detail: `the release was signed at 2026-12-02T00:00:00Z, before ${what}: an older release offered again, which could bring back what a newer one fixed; to go back to an older build, sign it again under a new version`,
        },
      ];
      expect(offerings[0]!.reports).toEqual(refusal("the build this thing runs (1.0.0) was committed (2026-12-04T10:00:00Z)"));
      expect(offerings[1]!.reports).toEqual(refusal("the release this thing runs (1.0.0) was signed (2026-12-05T00:00:00Z)"));
      expect([readFileSync(byCommit.binary, "utf8"), readFileSync(byRelease.binary, "utf8")]).toEqual(["old binary", "old binary"]);
      // past the signing time: downloaded (and then refused for its bytes, which are no program)
      expect(offerings[2]!.reports.map((r) => r.state)).toStrictEqual(["downloading", "failed"]);
      expect(offerings[2]!.reports[1]!.detail).toStartWith("the binary cannot run here");
    } finally {
      for (const o of offerings) o.server.stop(true);
    }
  }, 15_000);

  test("a release signed more than a day ahead of now is refused unread: taken, it would have been the floor, and every release signed before the year it names refused", async () => {
    const d = device();
    const offering = hubOffering(false, "9999-12-31T23:59:59Z");
    try {
      const updater = start(d, offering);
      await waitFor(() => offering.reports.length > 0, 6000);
      updater.stop();
      expect(offering.reports).toHaveLength(1);
      expect(offering.reports[0]).toMatchObject({ state: "failed", version: "2.0.0" });
      expect(offering.reports[0]!.detail).toMatch(/^the manifest says it was signed at 9999-12-31T23:59:59Z, more than a day after now/);
      expect(readFileSync(d.binary, "utf8")).toBe("old binary");
    } finally {
      offering.server.stop(true);
    }
  }, 10_000);

  test("serve stopping mid-download removes the part downloaded, and reports nothing failed", async () => {
    const d = device();
    rmSync(d.download);
    const offering = hubOffering(true);
    try {
      const updater = start(d, offering);
      await waitFor(() => downloadsIn(d.root).length > 0 && statSync(join(d.root, downloadsIn(d.root)[0]!)).size > 0, 6000);
      updater.stop();
      await waitFor(() => downloadsIn(d.root).length === 0, 3000);
      expect(offering.reports.map((r) => r.state)).toStrictEqual(["downloading"]);
      expect(readFileSync(d.binary, "utf8")).toBe("old binary");
    } finally {
      offering.server.stop(true);
    }
  }, 10_000);

  test("at start, the downloads of processes no longer alive are removed; a live one's is left", () => {
    const d = device();
    rmSync(d.download);
    const dead = join(d.root, ".flashlex.download-4194399"); // above Linux's largest pid: no such process
    const live = join(d.root, `.flashlex.download-${process.pid}`);
    const other = join(d.root, ".other.download-4194399");
    for (const file of [dead, live, other]) writeFileSync(file, "part of a binary");
    const offering = hubOffering(false);
    try {
      start(d, offering).stop();
      expect(downloadsIn(d.root)).toEqual([basename(live)]);
      expect(existsSync(other)).toBe(true);
    } finally {
      offering.server.stop(true);
    }
  });
});

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms`);
    await Bun.sleep(20);
  }
}

describe("the download's answer", () => {
  test("a 410 or 404 for the binary is a refusal with the hub's words (reported failed, not retried at every check); a 503 is tried again", async () => {
    let status = 410;
    const hub = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: () =>
        Response.json(
          { status: "ERROR", code: status, messages: [{ key: "error", value: "release 2.0.0's binary for linux-x64 is no longer on the hub" }] },
          { status },
        ),
    });
    try {
      const d = device();
      const attempt = () =>
        downloadVerified(`http://127.0.0.1:${hub.port}/binary`, join(d.root, `.dl-${status}`), {
          headers: {},
          timeoutMs: 5000,
          size: 10,
          sha256: "0".repeat(64),
        }).catch((err: unknown) => err);
      const gone = await attempt();
      expect(gone).toBeInstanceOf(DownloadRefused);
      expect((gone as Error).message).toBe("the hub answered 410 Gone: release 2.0.0's binary for linux-x64 is no longer on the hub");
      status = 404;
      expect(await attempt()).toBeInstanceOf(DownloadRefused);
      status = 503;
      const busy = await attempt();
      expect(busy).not.toBeInstanceOf(DownloadRefused);
      expect((busy as Error).message).toStartWith("the hub answered 503");
      expect(readdirSync(d.root).filter((f) => f.startsWith(".dl-"))).toEqual([]);
    } finally {
      hub.stop(true);
    }
  });
});
