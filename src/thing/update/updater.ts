/**
 * src/thing/update: signed self-update, the thing's half (docs/updates.md). `startUpdater` is
 * one part of serve (agent.ts):
 *
 *   - at start, it writes the pre-start guard (guard.ts) and looks at the markers (marker.ts):
 *     a pending update of the version that is now running is on trial: it must connect and get
 *     its `healthy` report accepted by the hub within `update.healthySeconds`, or the watchdog
 *     puts the previous binary back and asks for a restart; a `rolled-back` note (left by the
 *     guard or the watchdog) is reported by the previous binary that now runs;
 *   - every `update.checkSeconds` (±10%) it asks the hub for an update; an offered release is
 *     verified (Ed25519 signature with the pinned key, the manifest, this build's target),
 *     downloaded beside the binary (size and SHA-256 as it streams, ELF machine), installed
 *     (install.ts) and a restart is asked for: serve exits with 3 and its supervisor
 *     (systemd's Restart=) starts the new binary.
 *
 * Nothing here exits the process: `requestRestart` is serve's (src/cli/thing/serve.ts).
 */
import { realpathSync, rmSync } from "node:fs";
import { decodeUpdatePublicKey, verifyRelease } from "../../crypto/update-signing.ts";
import { formatDuration } from "../../shared/duration.ts";
import { elfMismatch } from "../../shared/elf.ts";
import { describeError, type Logger } from "../../shared/log.ts";
import { pathExists } from "../../shared/path-exists.ts";
import { COMMIT_TIME, TARGET, VERSION } from "../../shared/version.ts";
import { UNAUTHORIZED_FIX } from "../egress/delivery.ts";
import type { HubClock } from "../egress/hub-clock.ts";
import type { ThingIdentity } from "../identity.ts";
import type { ThingConfig } from "../settings.ts";
import { DownloadNotWritable, DownloadRefused, downloadVerified } from "./download.ts";
import { writeGuard } from "./guard.ts";
import { type OfferedUpdate, type ReportState, type UpdateHubApi, updateHubApi } from "./hub-api.ts";
import { downloadPath, installBinary, isInstalledBinary, removeDeadDownloads, restorePrevious } from "./install.ts";
import { clearPending, clearRolledBack, type PendingUpdate, readPending, readRelease, readRolledBack, writeRelease, writeRolledBack } from "./marker.ts";
import { clearTrialSchema, restoreSchemaAfterRollback } from "./trial-schema.ts";

export interface UpdaterOptions {
  config: ThingConfig;
  identity: ThingIdentity;
  log: Logger;
  /** whether the MQTT session is connected now */
  connected(): boolean;
  /**
   * Whether the broker's address answered anything since start (ThingSession.brokerAnswered).
   * While it has not, a trial's time running out says nothing of the version: the trial goes on.
   */
  brokerAnswered?(): boolean;
  /** how long a trial waits for the broker to answer at all, in ms (default TRIAL_WAITS_FOR_HUB_MS; a seam for tests) */
  trialWaitsForHubMs?: number;
  /** how long a rollback's schema restore waits for another process's lock, in ms (default RESTORE_LOCK_WAIT_MS; a seam for tests) */
  restoreLockWaitMs?: number;
  /** serve stops and exits with 3 so that its supervisor starts the binary again */
  requestRestart(reason: string): void;
  /** the outbox now (entries waiting, the oldest one's age in seconds), sent with each poll for the hub's /metrics */
  outbox?: () => { depth: number; oldestAgeSeconds: number };
  /** serve's hub clock: tokens carry the hub's time once the device clock was found wrong */
  clock?: HubClock;
  /** seams for tests; defaults: this build's */
  version?: string;
  target?: string;
  /** when this build's commit was made (ISO 8601); default COMMIT_TIME */
  committedAt?: string;
  executable?: string;
  hub?: UpdateHubApi;
}

export interface Updater {
  stop(): void;
  /**
   * Carries out a rollback this serve decided (the watchdog, a mislabeled release), called once
   * serve's message database is closed: the database is taken back to the schema the previous
   * binary knew (trial-schema.ts), then the previous binary is put back and `rolled-back` written
   * in place of `pending`. Until then `pending` stays, so a serve killed in between (a power cut,
   * systemd's stop timeout) leaves the rollback to the update guard, which restores the schema
   * before the binary too (verify pass 31, F7). Does nothing when no rollback was decided.
   */
  finishRollBack(): void;
}

/**
 * How long a version on trial waits for a hub that does not answer at all (ms): a hub restarted or
 * upgraded during a rollout, which rolled every good release in flight back. Past it, the trial
 * ends as any other that did not report healthy, saying the broker never answered.
 */
const TRIAL_WAITS_FOR_HUB_MS = 30 * 60_000;

/** The first check after start, in ms: soon, so a restarted thing finds its update at once. */
const FIRST_CHECK_MS = 2000;
/** How often a trial version tries to report healthy, in ms. */
const CONFIRM_EVERY_MS = 1000;

/** Starts the updater; without `update.publicKey` in config.yml, or in a source run, it does nothing (and says so once). */
export function startUpdater(opts: UpdaterOptions): Updater {
  const { config, log } = opts;
  const settings = config.yaml.update;
  const version = opts.version ?? VERSION;
  const target = opts.target ?? TARGET;
  const committedAt = opts.committedAt ?? COMMIT_TIME;
  if (!settings) {
    log.info("update.off", { reason: "config.yml has no flashlex.update.publicKey (a distribution older than self-update)" });
    return { stop() {}, finishRollBack() {} };
  }
  if (!target) {
    log.info("update.off", { reason: "a source run, not a release binary" });
    return { stop() {}, finishRollBack() {} };
  }
  const dataDir = config.dataDir;
  const binary = realpathSync(opts.executable ?? process.execPath);
  const hub = opts.hub ?? updateHubApi(config, opts.identity, undefined, opts.clock);
  const publicKey = decodeUpdatePublicKey(settings.publicKey);
  const timers = new Set<ReturnType<typeof setTimeout>>();
  let stopped = false;
  let busy = false;
  /** ends a download in progress when serve stops: its file goes with it */
  const stopping = new AbortController();
  /** a rollback decided, carried out by finishRollBack once serve closed its database */
  let decided: { update: PendingUpdate; reason: string } | undefined;
  /** reports that must reach the hub (the trial's outcome): sent before each poll until one is accepted */
  const owed: { state: ReportState; version: string; detail?: string; done?: () => void }[] = [];

  const later = (ms: number, fn: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (!stopped) fn();
    }, ms);
    timers.add(timer);
    return timer;
  };

  // A failing read (a locked disk) must not stop the poll: the report is left out, the hub keeps the last one.
  const outboxNow = () => {
    try {
      return opts.outbox?.();
    } catch {
      return undefined;
    }
  };

  writeGuard(dataDir);
  // Downloads of serves that died (SIGKILL, a power cut) mid-way: up to a binary's size each.
  for (const file of removeDeadDownloads(binary)) log.info("update.download_removed", { file, reason: "left by a serve that stopped mid-download" });
  // Read before the pending update is looked at: a rollback decided below is reported by the
  // previous binary once it runs, not by this one.
  const rolledBack = readRolledBack(dataDir);
  const pending = readPending(dataDir);
  let trial: PendingUpdate | undefined;
  if (pending && pending.version === version) {
    trial = pending;
    log.info("update.trial", { version, from: pending.from, healthy_within_s: settings.healthySeconds });
    const trialStarted = Date.now();
    const waitsForHubMs = opts.trialWaitsForHubMs ?? TRIAL_WAITS_FOR_HUB_MS;
    const hubSilent = () => opts.brokerAnswered?.() === false;
    let waitTold = false;
    const watch = (): ReturnType<typeof later> =>
      later(settings.healthySeconds * 1000, () => {
        if (!hubSilent()) return rollBack(`${version} did not connect and report healthy within ${settings.healthySeconds} s`);
        if (Date.now() - trialStarted < waitsForHubMs) {
          if (!waitTold) {
            waitTold = true;
            log.warn("update.trial_waits_for_hub", {
              version,
              note: `the broker has refused or not answered every connection since ${version} started: that says nothing of the version, so the trial goes on until the hub answers (for at most ${formatDuration(waitsForHubMs)}) rather than roll it back`,
            });
          }
          watchdog = watch();
          return;
        }
        rollBack(
          `${version} did not connect and report healthy within ${formatDuration(Date.now() - trialStarted)}: the broker refused or did not answer every connection (the hub or the network was down)`,
        );
      });
    let watchdog = watch();
    const confirm = async () => {
      if (!trial) return;
      if (opts.connected()) {
        try {
          await hub.report({ state: "healthy", version, running: version });
          clearTimeout(watchdog);
          // its signing time is from now on the oldest an offer may have (signedFloor)
          writeRelease(dataDir, trial);
          clearPending(dataDir);
          clearTrialSchema(dataDir);
          log.info("update.healthy", { version, from: trial.from, previous: trial.previous });
          trial = undefined;
          return;
        } catch (err) {
          log.warn("update.report_failed", { state: "healthy", error: err });
        }
      }
      later(CONFIRM_EVERY_MS, () => void confirm());
    };
    void confirm();
  } else if (pending && isInstalledBinary(pending)) {
    // The release's own binary runs but says it is another version (a mislabeled release): it
    // would never be on trial, nothing would roll it back, and the hub would offer it again.
    rollBack(`the binary of release ${pending.version} says it is version ${version}: the release is mislabeled`);
  } else if (pending) {
    // The marker was written but the new binary never took the old one's place (a crash
    // between the two steps of install.ts), or someone put another binary there since.
    clearPending(dataDir);
    clearTrialSchema(dataDir);
    const detail =
      version === pending.from
        ? "the install was interrupted before the new binary was in place"
        : `another binary (version ${version}) replaced the one installed before it ran`;
    owed.push({ state: "failed", version: pending.version, detail });
  }
  if (rolledBack) {
    log.warn("update.rolled_back", { version: rolledBack.version, running: version, reason: rolledBack.reason });
    owed.push({ state: "rolled-back", version: rolledBack.version, detail: rolledBack.reason, done: () => clearRolledBack(dataDir) });
  }

  function rollBack(reason: string): void {
    const current = readPending(dataDir) ?? trial;
    if (!current || decided) return;
    log.error("update.rolling_back", { version: current.version, to: current.from, reason });
    decided = { update: current, reason };
    // the version is no longer on trial: a healthy report now must not keep it
    trial = undefined;
    opts.requestRestart(`rolling back from ${current.version} to ${current.from}`);
  }

  function finishRollBack(): void {
    if (!decided) return;
    const { update, reason } = decided;
    decided = undefined;
    try {
      // no previous binary, no rollback: the file is not taken back for nothing (verify pass 32, F3)
      if (!pathExists(update.previous)) {
        log.error("update.rollback_impossible", { previous: update.previous, reason: "the previous binary is gone" });
        clearPending(dataDir);
        clearTrialSchema(dataDir);
        return;
      }
      // As the guard: a database another process held stays as it is, with the binary on trial
      // and `pending`, for the next start to try again; any other failure puts the previous binary
      // back all the same (it may open the file) and keeps the record for `flashlex restore-schema`
      // (verify pass 32, F1: both went, and the previous binary got the newer schema).
      const restored = restoreSchemaAfterRollback(dataDir, log, opts.restoreLockWaitMs);
      if (restored === "busy") return;
      restorePrevious(update);
      writeRolledBack(dataDir, update, reason);
      if (restored === "done") clearTrialSchema(dataDir);
    } catch (err) {
      log.error("update.rollback_failed", { error: err });
    }
  }

  async function report(state: ReportState, offered: string, detail?: string): Promise<boolean> {
    try {
      await hub.report({ state, version: offered, running: version, detail });
      return true;
    } catch (err) {
      log.warn("update.report_failed", { state, error: err });
      return false;
    }
  }

  async function refuse(offered: string, detail: string): Promise<void> {
    // a release this thing must not install (its signature, digest, target or age): the input's
    // fault, counted so, not as a bug of the agent (new-user pass 27, F11)
    log.error("update.refused", { version: offered, reason: detail, kind: "data" });
    await report("failed", offered, detail);
  }

  async function apply(offer: OfferedUpdate, target: string): Promise<void> {
    const manifestBytes = new TextEncoder().encode(offer.manifest);
    if (!verifyRelease(manifestBytes, offer.signature, publicKey))
      return refuse(offer.version, "the manifest's signature does not verify with the pinned update key");
    let entry: { file: string; sha256: string; size: number } | undefined;
    let created: string | undefined;
    try {
      // Loaded here, not with serve: the manifest's schema brings zod, ~10 ms of every start.
      const { parseManifest, signedTooLate } = await import("../../protocol/release-manifest.ts");
      const manifest = parseManifest(manifestBytes);
      if (manifest.version !== offer.version) return refuse(offer.version, `the signed manifest is for ${manifest.version}, not ${offer.version}`);
      // by the hub's time once an answer showed the device clock wrong (a Pi has no clock of its own)
      const future = signedTooLate(manifest, opts.clock?.nowMs() ?? Date.now());
      if (future) return refuse(offer.version, future);
      const floor = signedFloor();
      if (floor && !(Date.parse(manifest.created) >= Date.parse(floor.at))) {
        return refuse(
          offer.version,
          `the release was signed at ${manifest.created}, before ${floor.what} (${floor.at}): an older release offered again, which could bring back what a newer one fixed; to go back to an older build, sign it again under a new version`,
        );
      }
      created = manifest.created;
      entry = manifest.targets[target];
    } catch (err) {
      return refuse(offer.version, (err as Error).message);
    }
    if (!entry) return refuse(offer.version, `the release has no binary for ${target}`);
    log.info("update.downloading", { version: offer.version, target, bytes: entry.size });
    await report("downloading", offer.version);
    const file = downloadPath(binary);
    rmSync(file, { force: true });
    try {
      await downloadVerified(hub.binaryUrl(offer.version, target), file, {
        headers: await hub.authorization(),
        extraCaPem: hub.caPem,
        timeoutMs: Math.max(120_000, entry.size / 50), // 50 kB/s at the least
        size: entry.size,
        sha256: entry.sha256,
        signal: stopping.signal,
      });
    } catch (err) {
      // serve is stopping: the download is dropped (its file removed), the next start asks again
      if (stopped) return;
      if (err instanceof DownloadRefused || err instanceof DownloadNotWritable) return refuse(offer.version, err.message);
      log.warn("update.download_failed", { version: offer.version, error: err, note: "tried again at the next check" });
      return;
    }
    const mismatch = elfMismatch(file);
    if (mismatch) {
      rmSync(file, { force: true });
      return refuse(offer.version, `the binary cannot run here: ${mismatch}`);
    }
    try {
      installBinary(file, { version: offer.version, from: version, binary, sha256: entry.sha256, created }, dataDir);
    } catch (err) {
      rmSync(file, { force: true });
      return refuse(offer.version, `cannot replace ${binary}: ${describeError(err)}`);
    }
    log.info("update.installed", { version: offer.version, from: version, binary });
    await report("installed", offer.version);
    opts.requestRestart(`updated from ${version} to ${offer.version}`);
  }

  /**
   * The oldest signing time an offered release may have: that of the release this binary came
   * in (recorded when it reported healthy), else this build's commit time. A signature does not
   * age, so without it anyone between the thing and the hub (the API is plain HTTP by default),
   * or a hub that was broken into, could offer any older signed release and have it installed.
   */
  function signedFloor(): { at: string; what: string } | undefined {
    const release = readRelease(dataDir);
    const floors = [
      ...(release?.version === version && release.created ? [{ at: release.created, what: `the release this thing runs (${version}) was signed` }] : []),
      ...(committedAt ? [{ at: committedAt, what: `the build this thing runs (${version}) was committed` }] : []),
    ];
    return floors.sort((a, b) => Date.parse(b.at) - Date.parse(a.at))[0];
  }

  async function check(): Promise<void> {
    if (busy || stopped) return;
    busy = true;
    try {
      for (const item of [...owed]) {
        if (await report(item.state, item.version, item.detail)) {
          owed.splice(owed.indexOf(item), 1);
          item.done?.();
        }
      }
      // A version on trial installs nothing: first it must prove itself (or be rolled back).
      if (trial || !target) return;
      const offer = await hub.poll({ version, target, outbox: outboxNow() });
      if (offer && offer.version !== version) await apply(offer, target);
    } catch (err) {
      log.warn("update.check_failed", {
        error: err,
        note: `tried again in ${settings!.checkSeconds} s`,
        fix: (err as { status?: unknown }).status === 401 ? UNAUTHORIZED_FIX : undefined,
      });
    } finally {
      busy = false;
    }
  }

  const schedule = (ms: number) =>
    later(ms, () => {
      void check().finally(() => schedule(settings.checkSeconds * 1000 * (0.9 + Math.random() * 0.2)));
    });
  schedule(FIRST_CHECK_MS);

  return {
    stop() {
      stopped = true;
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      stopping.abort(new Error("serve is stopping"));
    },
    finishRollBack,
  };
}
