/**
 * Self-update in integration tests (docs/updates.md): binaries of this tree built as other
 * versions, signed releases added to a running hub, rollouts, the hub's view of a thing's update,
 * and a thing's `serve` run under test/support/supervisor.ts (what the systemd unit does: the
 * pre-start guard, then restart on a non-zero exit).
 *
 *   const v1 = await buildVersion(join(work, "build", "v1"), "1.0.0");
 *   await addRelease(hub, join(work, "releases"), "2.0.0", v2);
 *   await rollOut(hub, "2.0.0", [thingName]);
 *   await waitForUpdateState(hub, thingName, "2.0.0", "healthy", 60_000, agent.output);
 */
import { Database } from "bun:sqlite";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseDocument } from "yaml";
import { buildTarget, ROOT } from "../../scripts/build.ts";
import { writeSignedManifest } from "../../scripts/sign-release.ts";
import { hostTarget, type Target } from "../../scripts/targets.ts";
import { type Background, start } from "./binary.ts";
import type { HubFixture } from "./hub-fixture.ts";

export const host = hostTarget()!;

/** Builds `entry` (default: the agent, src/main.ts) as `version` for `target` into `outdir` with the release build; returns the binary. */
export async function buildVersion(outdir: string, version: string, opts: { entry?: string; target?: Target } = {}): Promise<string> {
  const built = await buildTarget(opts.target ?? host, {
    outdir,
    entry: opts.entry ?? join(ROOT, "src/main.ts"),
    version,
    commit: "selfupd",
    bytecode: true,
  });
  return built.file;
}

/**
 * Makes the thing at `configPath` an updating thing for a test: it asks for updates every second
 * and a new version has `healthySeconds` (default 20) to come up healthy (defaults: 600 s and
 * 120 s), plus any other `settings` (key path → value); then copies `binary` to `thingBinary`, the
 * device's own copy of its first release. Returns `thingBinary`.
 */
export function prepareUpdatingThing(
  configPath: string,
  binary: string,
  thingBinary: string,
  opts: { healthySeconds?: number; settings?: [string[], unknown][] } = {},
): string {
  const config = parseDocument(readFileSync(configPath, "utf8"));
  config.setIn(["flashlex", "update", "checkSeconds"], 1);
  config.setIn(["flashlex", "update", "healthySeconds"], opts.healthySeconds ?? 20);
  for (const [path, value] of opts.settings ?? []) config.setIn(path, value);
  writeFileSync(configPath, config.toString());
  copyFileSync(binary, thingBinary);
  return thingBinary;
}

/** test/support/crash-at-start.ts: a real Bun executable that aborts before it does anything. */
export const CRASH_AT_START = join(ROOT, "test/support/crash-at-start.ts");

/**
 * A release directory `<releasesDir>/<version>` whose `target` entry (default: this machine's)
 * is `file`, whatever architecture `file` really is, signed with the hub's update key as
 * `bun run release` does, and stored with `hub release add`.
 */
export async function addRelease(hub: HubFixture, releasesDir: string, version: string, file: string, target: Target = host): Promise<void> {
  const dir = await signedRelease(hub, releasesDir, version, file, target.name);
  await hub.flashlex(["hub", "release", "add", dir, "--dir", hub.dir]);
}

/** The release directory `<releasesDir>/<version>` of `file` listed as `target`, signed as `bun run release` does, not added. */
export async function signedRelease(hub: HubFixture, releasesDir: string, version: string, file: string, target: string): Promise<string> {
  const dir = join(releasesDir, version);
  mkdirSync(dir, { recursive: true });
  copyFileSync(file, join(dir, `flashlex-${target}`));
  const signingKeyPem = readFileSync(join(hub.dir, "update-key.pem"), "utf8");
  await writeSignedManifest({ dir, version, commit: "selfupd", signingKeyPem, files: { [target]: `flashlex-${target}` } });
  return dir;
}

/**
 * The release of `file` listed as `target` stored on the hub as a hub without release add's ELF
 * check did (its files in releases/, its row in hub.db): what only a thing's own check now stops.
 */
export async function storeReleaseUnchecked(hub: HubFixture, releasesDir: string, version: string, file: string, target: Target = host): Promise<void> {
  const dir = await signedRelease(hub, releasesDir, version, file, target.name);
  const stored = join(hub.dir, "releases", version);
  mkdirSync(stored, { recursive: true });
  for (const name of [`flashlex-${target.name}`, "manifest.sig", "manifest.json"]) copyFileSync(join(dir, name), join(stored, name));
  const db = new Database(join(hub.dir, "hub.db"));
  try {
    db.run("PRAGMA busy_timeout = 5000");
    db.run("INSERT INTO releases (version, manifest, signature, added_at) VALUES (?, ?, ?, ?)", [
      version,
      readFileSync(join(dir, "manifest.json"), "utf8"),
      readFileSync(join(dir, "manifest.sig"), "utf8").trim(),
      Date.now(),
    ]);
  } finally {
    db.close();
  }
}

/** `hub update --to VERSION --things a,b`. */
export async function rollOut(hub: HubFixture, version: string, things: string[]): Promise<void> {
  await hub.flashlex(["hub", "update", "--dir", hub.dir, "--to", version, "--things", things.join(",")]);
}

/** A thing's row of `GET /updates`: the state of its update to `toVersion`, and the version and target it last said it runs. */
export interface UpdateState {
  name: string;
  state: string | null;
  version: string | null;
  target: string | null;
  detail: string | null;
  toVersion: string | null;
}

/** `GET /updates`: the latest rollout and each thing's update state. */
export async function updates(hub: HubFixture): Promise<{ rollout: { state: string; stopReason: string | null } | null; things: UpdateState[] }> {
  const answer = await fetch(`http://127.0.0.1:${hub.apiPort}/dev/v1/updates`, {
    headers: { Authorization: `Bearer ${hub.token}` },
    signal: AbortSignal.timeout(15_000),
  });
  return ((await answer.json()) as { result: { rollout: { state: string; stopReason: string | null } | null; things: UpdateState[] } }).result;
}

/** Waits until the hub shows `state` for the thing's update to `version`; throws with the last row and the end of `log()`. */
export async function waitForUpdateState(
  hub: HubFixture,
  thingName: string,
  version: string,
  state: string,
  timeoutMs: number,
  log: () => string,
): Promise<UpdateState> {
  const deadline = Date.now() + timeoutMs;
  let last: UpdateState | undefined;
  while (Date.now() < deadline) {
    last = (await updates(hub)).things.find((t) => t.name === thingName);
    if (last?.toVersion === version && last.state === state) return last;
    await Bun.sleep(250);
  }
  throw new Error(`${thingName} did not reach ${state} for ${version}: ${JSON.stringify(last)}\n${log().slice(-4000)}`);
}

/** What `<binary> --version` prints; `prefix` runs it under an emulator (runnerFor's prefix). */
export function versionOf(binary: string, prefix: string[] = []): string {
  return Bun.spawnSync([...prefix, binary, "--version"], { stdout: "pipe", timeout: 60_000 }).stdout.toString();
}

/** The SHA-256 of a file, hex. */
export const sha256Of = (file: string) => new Bun.CryptoHasher("sha256").update(readFileSync(file)).digest("hex");

/**
 * `<binary> serve <serveArgs>` under test/support/supervisor.ts, which runs `<dataDir>/update/guard.sh`
 * before every start and restarts serve after an exit other than 0, 64, 77, 78 (as the unit's
 * `ExecStartPre=` and `Restart=` do). `binary` must be a copy the thing may replace. Waits for `serve.started`.
 */
export async function superviseServe(binary: string, dataDir: string, serveArgs: string[], env?: Record<string, string>): Promise<Background> {
  const guard = join(dataDir, "update", "guard.sh");
  const agent = start([], { command: [process.execPath, join(ROOT, "test/support/supervisor.ts"), guard, "--", binary, "serve", ...serveArgs], env });
  await agent.waitFor(/serve\.started/, 30_000);
  return agent;
}

/**
 * A unit rendered by `install-service --print` run by test/support/supervisor.ts as systemd
 * would (its ExecStartPre=, ExecStart= as its User=, its restart lines), with `prefix` (an
 * emulator: runnerFor's prefix) before ExecStart= at every start. Waits `startMs` for `serve.started`.
 * It runs in the unit file's directory: when the core limit allows (`ulimit -c unlimited`), a
 * guest that aborts under qemu-user leaves two cores in the working directory, qemu's
 * `qemu_<name>_<time>_<pid>.core` and the kernel's `core` of qemu itself (6 GB apparent each).
 */
export async function superviseUnit(unitFile: string, prefix: string[] = [], startMs = 30_000): Promise<Background> {
  const separator = prefix.length ? ["--", ...prefix] : [];
  const supervisor = [process.execPath, join(ROOT, "test/support/supervisor.ts"), "--unit", unitFile, ...separator];
  const agent = start([], { command: supervisor, cwd: dirname(unitFile) });
  await agent.waitFor(/serve\.started/, startMs);
  return agent;
}
