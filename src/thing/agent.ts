/**
 * src/thing: the thing agent. `startAgent` is `serve`; the folders hold its parts:
 *
 *   settings.ts, identity.ts   the config (typed, times in ms) and the key files, loaded once
 *   mqtt/                      the MQTT session over mutual TLS, and its reconnect backoff
 *   ingress/                   what happens to a message that arrives; serve --exec
 *   egress/                    collect, the outbox and its delivery (HTTP or MQTT), the hub clock
 *   store/                     the message database
 *   local/                     the application side: the control socket, its client, the serve lock
 *   enrol/                     `flashlex enroll`: a key made here, a certificate from the hub
 *   renewal/                   certificates that renew themselves, and the file swap that survives a power cut
 *   bootstrap/                 the self-test
 *   service/                   the systemd unit and install-service
 *   update/                    signed self-update: check, verify, install, trial and rollback
 *
 * Data flows one way: config → session → ingress handler → store → application.
 */

import { buildTestMessage } from "../protocol/test-message.ts";
import { TEST_TOPIC } from "../protocol/topics.ts";
import { actingAs } from "../shared/act-as-owner.ts";
import { ConfigError, FlashlexError } from "../shared/errors.ts";
import { watchFileEdits, watchFileIdentity } from "../shared/file-watch.ts";
import { classifyForeign } from "../shared/foreign-errors.ts";
import { IdleTrim } from "../shared/idle-trim.ts";
import { Lifecycle } from "../shared/lifecycle.ts";
import { formatListenAddress, type ListenAddress, listenFailure } from "../shared/listen-address.ts";
import { type Logger, tapLogger } from "../shared/log.ts";
import { type MetricsListener, startMetricsListener } from "../shared/metrics-http.ts";
import { shellWord } from "../shared/shell-word.ts";
import { COMMIT, VERSION } from "../shared/version.ts";
import { type DeliveryOutcome, deliverHttp, deliverMqtt } from "./egress/delivery.ts";
import { HubClock } from "./egress/hub-clock.ts";
import { OutboxDrainer } from "./egress/outbox.ts";
import { ThingTokens } from "./egress/tokens.ts";
import { keyFileTooOpen, loadIdentity, rootCaMismatch, type ThingIdentity } from "./identity.ts";
import { ExecRunner } from "./ingress/exec-runner.ts";
import { createIngressHandler } from "./ingress/handler.ts";
import { serveListens } from "./local/client.ts";
import { databaseAccess } from "./local/in-process.ts";
import { acquireServeLock, acquireSessionLock } from "./local/serve-lock.ts";
import { closeControlSocket, listenControlSocket } from "./local/server.ts";
import type { AgentMetrics } from "./metrics/prometheus.ts";
import { ThingSession } from "./mqtt/session.ts";
import { explainTlsSetupError } from "./mqtt/tls-setup.ts";
import { recoverIdentityFiles } from "./renewal/identity-files.ts";
import { CertificateRenewer } from "./renewal/renewer.ts";
import type { ThingConfig } from "./settings.ts";
import type { MessageStore, OutboxEntry, OutboxVia } from "./store/message-store.ts";
import { openThingStore } from "./store/open.ts";
import { unackedWatch } from "./store/unacked-watch.ts";
import { startUpdater, type Updater } from "./update/updater.ts";

export interface AgentOptions {
  config: ThingConfig;
  log: Logger;
  /** serve --exec */
  exec?: string;
  /** serve --exec-timeout, in ms: how long one run of `exec` may take */
  execTimeoutMs: number;
  /** the updater replaced the binary (or rolled it back): serve stops and exits 3 (update/updater.ts) */
  requestRestart?: (reason: string) => void;
  /**
   * Where to answer Prometheus's scrape (docs/metrics.md); absent: no metrics, and prom-client is
   * never loaded. `setting` names where it came from, for the error when it cannot listen.
   */
  metrics?: { at: ListenAddress; setting: string };
}

export interface RunningAgent {
  /** stops every part, the last started first (shared/lifecycle.ts) */
  stop(): Promise<void>;
  /**
   * Settles when serve can no longer keep what it acknowledges: its message database removed or
   * replaced while it runs (shared/file-watch.ts), with the FlashlexError (io, 74) saying so;
   * the caller stops the agent and exits with it. Never settles otherwise.
   */
  failed: Promise<FlashlexError>;
}

/** Pause between the messages of the guide's `basicPubsub` and `test` threads. */
const THREAD_INTERVAL_MS = 5000;

/** What to do after config.yml was edited under a running serve, which read it once at its start. */
const RESTART_FOR_CONFIG = "restart serve for the change to count (sudo systemctl restart flashlex, where it runs as the service)";

/**
 * `serve`: starts the agent's parts in order (the single-serve lock, the database, the MQTT
 * session, outbox delivery and --exec, the control socket, the timers) and returns once all
 * run. Stopping reverses the order: stop taking work, finish work in flight, disconnect, close.
 * Throws, with what started stopped again, when a part cannot start: 75 (another serve), 78
 * (config, identity), 74 (database).
 */
export async function startAgent(options: AgentOptions): Promise<RunningAgent> {
  const { config } = options;
  // Metrics first, so that every part's failures reach them through the log (tapLogger); what
  // they read (the database, the session) is bound once it exists.
  const refs: { store?: MessageStore; session?: ThingSession } = {};
  const metrics = options.metrics ? await loadAgentMetrics(refs) : undefined;
  const log = metrics ? tapLogger(options.log, metrics.tap) : options.log;
  const app = config.yaml.app;
  const mqttConfig = config.yaml.thing.mqtt;
  const parts = new Lifecycle((part, err) => log.error("serve.stop_failed", { part, error: err }));
  // not Promise.withResolvers: the armv7 build runs on Node 20, which has none
  let failWith: (err: FlashlexError) => void = () => {};
  const failed = new Promise<FlashlexError>((resolve) => (failWith = resolve));
  try {
    // Before anything connects or opens: a second session with our client id would take over the
    // first, and the lock is the kernel's, so two serves started at the same instant cannot both pass.
    const lock = await acquireServeLock(config.dataDir);
    await parts.start({ name: "serve lock", stop: () => lock.release() });
    // A serve whose lock this one cannot see (a flashlex from before the lock was a file, during an
    // upgrade) still listens on the directory's control socket, answering or not (stopped, busy);
    // taking over would remove its socket.
    if (await serveListens(config.dataDir)) {
      throw new FlashlexError(`${config.dataDir}: another flashlex serve is running for this data directory (it listens on its control socket)`, "try-later");
    }
    // The thing's one MQTT session, whatever the data directory: a serve or a collect --via mqtt
    // given another -d took it over and acknowledged messages on their way here. Taken before the
    // key files are touched: a serve refused here changes none of them (its recovery deleted a
    // running serve's staged renewal).
    const sessionBusy = (lockFile: string) =>
      new FlashlexError(
        `${config.yaml.thing.name}: another flashlex process on this machine is connected as this thing (a serve with another data directory, or a collect --via mqtt; it holds ${lockFile}): one MQTT session per thing`,
        "try-later",
      );
    const sessionLock = await acquireSessionLock(config.paths.privateKey, sessionBusy);
    await parts.start({ name: "session lock", stop: () => sessionLock.release() });
    // Stopped after the database is closed: a rollback this serve decided (its updater's) takes
    // the database back to the schema the previous binary knew, then puts that binary back.
    let updater: Updater | undefined;
    await parts.start({ name: "rollback", stop: () => updater?.finishRollBack() });
    // A renewal cut short by a crash or a power cut is finished or undone first (renewal/).
    recoverIdentityFiles(config.paths, log);
    // Identity problems are configuration errors (78), found before anything connects.
    const identity = loadIdentity(config);
    warnIfKeyTooOpen(config, log);
    const mismatch = rootCaMismatch(identity, config);
    if (mismatch) log.warn("identity.root_ca_not_issuer", { note: mismatch });
    let damageTold = false;
    const store = openThingStore(config, log, (err) => {
      // every statement after the first that meets the damage says it again: one line
      if (damageTold) return;
      damageTold = true;
      log.error("serve.database_damaged", {
        file: config.paths.database,
        error: err,
        note: "serve stops rather than acknowledge messages into it; its next start reads every page first",
      });
      failWith(err);
    });
    await parts.start({ name: "message database", stop: () => store.close() });
    store.markServed(Date.now());
    refs.store = store;
    // The data directory removed, or the database restored over, while serve runs: SQLite would
    // go on committing into a file with no name, and the broker be told each message is stored.
    const stopWatch = watchFileIdentity([config.paths.database], (file) => {
      const err = new FlashlexError(`${file} was removed or replaced while serve ran; it stops rather than acknowledge messages it cannot keep`, "io");
      log.error("serve.database_gone", { error: err });
      failWith(err);
    });
    await parts.start({ name: "database watch", stop: stopWatch });
    // serve reads config.yml once: an edit (the fix a hub's WARN asked for) counts only after a
    // restart, which is said when it happens and on every collect through serve left queued meanwhile.
    let configEdited = false;
    const stopConfigWatch = watchFileEdits(config.file, (differs) => {
      configEdited = differs;
      if (differs) log.warn("serve.config_changed", { config: config.file, fix: RESTART_FOR_CONFIG });
      else log.info("serve.config_as_read", { config: config.file, note: "config.yml is again as serve read it at its start" });
    });
    await parts.start({ name: "config watch", stop: stopConfigWatch });
    // Before anything is received, acknowledged or run: a port in use is a configuration error
    // (78), and a serve that stops for it must not have done a handler's work first.
    const scrapes = metrics && options.metrics ? await listenForScrapes(metrics, options.metrics) : undefined;
    if (scrapes) await parts.start({ name: "metrics", stop: () => scrapes.close() });

    const runner = options.exec ? new ExecRunner({ store, command: options.exec, log, timeoutMs: options.execTimeoutMs }) : undefined;
    const trim = new IdleTrim({ release: () => store.releaseMemory() });
    await parts.start({
      name: "memory trim",
      start: () => trim.start(),
      stop: () => trim.stop(),
    });
    const session = newSession(config, identity, store, log, () => {
      metrics?.ingressStored();
      runner?.wake();
      trim.worked();
    });
    refs.session = session;
    if (metrics) session.on("connected", () => metrics.connected());
    await parts.start({ name: "MQTT session", stop: () => session.stop() });

    // One clock for serve's lifetime: the offset measured on one answer signs the next tokens.
    const clock = new HubClock(log);
    // ... and one token, reused while young (egress/tokens.ts), for both ways out.
    const tokens = new ThingTokens(clock);
    const deliverers = {
      http: (entry: OutboxEntry, signal?: AbortSignal) => deliverHttp(entry, { config, identity, clock, tokens }, signal),
      mqtt: (entry: OutboxEntry, signal?: AbortSignal) => deliverMqtt(entry, { config, identity, session, clock, tokens }, signal),
    };
    const drainer = new OutboxDrainer({ store, thingId: identity.thingId, log, ratePerSecond: mqttConfig.drainingFrequency, deliverers });
    // A (re)connected session: MQTT egress waiting for its retry time goes now, not ~30 s later,
    // and the HTTP backlog tries one row (the network, and most often the hub, are back too).
    session.on("connected", () => {
      drainer.receiverBack("mqtt");
      drainer.probe("http");
    });
    await parts.start({
      name: "outbox and exec",
      start: () => {
        drainer.start();
        runner?.wake();
      },
      stop: async () => void (await Promise.all([drainer.stop(), runner?.stop()])),
    });

    const renewer = new CertificateRenewer({ config, identity, session, log, reload: () => loadIdentity(config), clock });
    await parts.start({ name: "certificate renewal", start: () => renewer.start(), stop: () => renewer.stop() });

    // A collect through serve that reaches a receiver the drainer rests tells it the receiver is back.
    const noted = (via: OutboxVia, outcome: DeliveryOutcome) => {
      if (outcome.kind === "sent") drainer.delivered(via);
      return outcome;
    };
    const collectDeliverers = {
      http: async (entry: OutboxEntry, signal?: AbortSignal) => noted("http", await deliverers.http(entry, signal)),
      mqtt: async (entry: OutboxEntry, signal?: AbortSignal) => noted("mqtt", await deliverers.mqtt(entry, signal)),
    };
    const access = databaseAccess(config, identity, store, log, {
      deliverers: collectDeliverers,
      onOutboxChanged: () => drainer.wake(),
      // one left queued while config.yml holds an edit serve has not read says so
      queuedNote: () => (configEdited ? `${config.file} was changed after serve read it: ${RESTART_FOR_CONFIG}` : undefined),
    });
    // Every command and SDK call through serve asks this first (is serve there?): nothing that
    // scans the ingress table, which took 26 ms of serve's thread at 1M messages.
    const status = () => ({ thingName: identity.thingName, connected: session.connected, pending: store.countPending() });
    const control = await listenControlSocket(config.dataDir, access, status, log);
    await parts.start({ name: "control socket", stop: () => closeControlSocket(control, config.dataDir) });

    const timers = [startExpiry(store, app.db.expireSeconds, log), startThread(config, identity, session, tokens, log)];
    await parts.start({
      name: "timers",
      stop: () => {
        for (const timer of timers) clearInterval(timer);
      },
    });

    // Last: a version on trial reports healthy only once everything above runs (its self-test).
    updater = startUpdater({
      config,
      identity,
      log,
      connected: () => session.connected,
      brokerAnswered: () => session.brokerAnswered,
      outbox: () => outboxReport(store),
      clock,
      requestRestart: options.requestRestart ?? ((reason) => log.warn("update.restart_unhandled", { reason })),
    });
    await parts.start({ name: "updates", stop: () => updater.stop() });

    // The start's own garbage (the config and its schema, the certificates, the migrations) goes
    // once serve is quiet, as a burst's does: idle serve 65.7 -> 63.3 MiB (own memory 15.7 -> 13.3),
    // medians of 6 alternated starts against Mosquitto, 5 s after subscribing.
    trim.worked();
    log.info("serve.started", {
      version: `${VERSION} (${COMMIT})`,
      thing: identity.thingName,
      runsAs: actingAs(), // started by root on a user's folder
      config: config.file,
      configFrom: config.origin,
      broker: `${config.yaml.thing.endpoint}:${mqttConfig.port}`,
      database: config.paths.database,
      driver: store.db.driver,
      callback: app.callback,
      thread: app.thread,
      exec: options.exec ? "yes" : undefined,
      metrics: scrapes?.url,
    });
  } catch (err) {
    await parts.stop();
    throw err;
  }

  return {
    async stop() {
      log.info("serve.stopping");
      await parts.stop();
      log.info("serve.stopped");
    },
    failed,
  };
}

/** The agent's registry (metrics/prometheus.ts): imported here, so prom-client loads only with metrics on. */
async function loadAgentMetrics(refs: { store?: MessageStore; session?: ThingSession }): Promise<AgentMetrics> {
  const { createAgentMetrics } = await import("./metrics/prometheus.ts");
  return createAgentMetrics({
    outbox: () => refs.store?.outboxStats() ?? { pending: 0, rejected: 0, oldestCreatedAt: null },
    ingress: () => refs.store?.countIngress() ?? { total: 0, unacked: 0 },
    connected: () => refs.session?.connected ?? false,
    version: VERSION,
  });
}

/** Listens for scrapes; a listen that fails is a ConfigError (78) naming the flag or key that asked for it. */
async function listenForScrapes(metrics: AgentMetrics, where: { at: ListenAddress; setting: string }): Promise<MetricsListener> {
  try {
    return await startMetricsListener(where.at, () => metrics.render());
  } catch (err) {
    const reason = listenFailure(err, where.at) ?? classifyForeign(err)?.reason ?? String((err as { code?: unknown })?.code ?? err);
    throw new ConfigError(`${where.setting}: the metrics cannot listen on ${formatListenAddress(where.at)}: ${reason}`, { cause: err });
  }
}

/** The outbox as the updater reports it to the hub with each poll (the hub's /metrics): entries waiting, oldest age in seconds. */
function outboxReport(store: MessageStore): { depth: number; oldestAgeSeconds: number } {
  const o = store.outboxStats();
  return { depth: o.pending + o.rejected, oldestAgeSeconds: o.oldestCreatedAt === null ? 0 : Math.max(0, (Date.now() - o.oldestCreatedAt) / 1000) };
}

/** The thing's MQTT session: the ingress topic (or the pubsub topic of the `basicPubsub` thread), stored as `app.callback` says. */
function newSession(config: ThingConfig, identity: ThingIdentity, store: MessageStore, log: Logger, onStored: () => void): ThingSession {
  const subscriptions = config.yaml.app.thread === "basicPubsub" ? [requirePubsubTopic(config)] : [config.yaml.thing.mqtt.ingress.topic];
  try {
    return new ThingSession({
      config,
      identity,
      log,
      subscriptions,
      ingress: createIngressHandler({ config, store, log, onStored }),
    });
  } catch (err) {
    throw explainTlsSetupError(err, config, identity);
  }
}

/** bootstrap fails on a key others may read; serve runs (it would work) but says so once, with the fix. */
function warnIfKeyTooOpen(config: ThingConfig, log: Logger): void {
  const path = config.paths.privateKey;
  const mode = keyFileTooOpen(path);
  if (mode) log.warn("identity.key_file_open", { file: path, mode, note: "other users can read the thing's private key", fix: `chmod 600 ${shellWord(path)}` });
}

function requirePubsubTopic(config: ThingConfig): string {
  const topic = config.yaml.thing.mqtt.pubsub?.topic;
  if (!topic) throw new ConfigError(`${config.file}: flashlex.thing.mqtt.pubsub.topic: missing (flashlex.app.thread basicPubsub needs it)`);
  return topic;
}

function startExpiry(store: MessageStore, expireSeconds: number, log: Logger): ReturnType<typeof setInterval> {
  let rejectedShown = 0;
  const backlog = unackedWatch(store);
  const sweep = () => {
    // A sweep that fails (a locked or full disk) is logged and tried at the next tick; it must
    // not take serve down with it.
    try {
      const removed = store.expire(Date.now(), expireSeconds);
      if (removed.ingress || removed.outbox) log.info("store.expired", { ...removed });
      const unacked = backlog(Date.now());
      if (unacked !== undefined) {
        log.warn("store.unacked_growing", { unacked, hint: "acknowledge with `flashlex messages ack` or serve --exec; said again hourly while it lasts" });
      }
      const rejected = store.countRejected();
      if (rejected > rejectedShown) {
        log.warn("outbox.rejected_waiting", { rejected, hint: "see flashlex outbox list --state rejected; then outbox retry ID or outbox drop ID" });
      }
      rejectedShown = rejected;
    } catch (err) {
      log.error("store.sweep_failed", { error: (err as Error)?.message ?? String(err), note: "tried again at the next sweep" });
    }
  };
  sweep();
  // every minute, or every expireSeconds if shorter; 0 or below (nothing expires) every minute,
  // for the ids and the warnings
  return setInterval(sweep, (expireSeconds > 0 ? Math.min(expireSeconds, 60) : 60) * 1000);
}

/** The guide's `basicPubsub` and `test` threads: publish a numbered message every 5 s. */
function startThread(
  config: ThingConfig,
  identity: ThingIdentity,
  session: ThingSession,
  tokens: ThingTokens,
  log: Logger,
): ReturnType<typeof setInterval> | undefined {
  const app = config.yaml.app;
  if (app.thread === "subscribe") return undefined;
  const topic = app.thread === "basicPubsub" ? requirePubsubTopic(config) : TEST_TOPIC;
  const limit = app.loopCount ?? (app.thread === "test" ? 10 : Infinity);
  let sequence = 0;
  const timer = setInterval(() => {
    if (!session.connected) return;
    if (sequence >= limit) return clearInterval(timer);
    const sent = sequence++;
    // a test message carries the thing's token: behind an external broker it is what names the thing to the hub
    const body =
      app.thread === "test"
        ? tokens
            .current(identity)
            .then(({ token }) => buildTestMessage({ thingId: identity.thingId, thingName: identity.thingName, message: app.message, sequence: sent, token }))
        : Promise.resolve(JSON.stringify({ message: app.message, sequence: sent }));
    body
      .then((text) => session.publish(topic, text, 1))
      .then(
        () => log.info("thread.published", { topic, sequence: sent }),
        (err: Error) => log.warn("thread.publish_failed", { topic, error: err }),
      );
  }, THREAD_INTERVAL_MS);
  return timer;
}
