import { describeCertificate } from "../crypto/certificate-info.ts";
import { maxEnvelopeBytes } from "../protocol/limits.ts";
import { actingAsOwnerNote } from "../shared/act-as-owner.ts";
import { ConfigError, FlashlexError } from "../shared/errors.ts";
import { watchFileEdits, watchFileIdentity } from "../shared/file-watch.ts";
import { classifyForeign } from "../shared/foreign-errors.ts";
import { Lifecycle } from "../shared/lifecycle.ts";
import { formatListenAddress, listenFailure, parseListenAddress } from "../shared/listen-address.ts";
import type { Logger } from "../shared/log.ts";
import { budgetLogger } from "../shared/log-budget.ts";
import { type MetricsListener, startMetricsListener } from "../shared/metrics-http.ts";
import { readRegularFile } from "../shared/regular-file.ts";
import { COMMIT, VERSION } from "../shared/version.ts";
import type { HubBroker, ThingDirectory } from "./broker/broker.ts";
import { startBrokerAuthServer } from "./broker/broker-auth-server.ts";
import { createBrokerReloader } from "./broker/broker-reload.ts";
import { type EmbeddedBroker, startEmbeddedBroker } from "./broker/embedded.ts";
import { createBrokerEvents, createThingDirectory } from "./broker/events.ts";
import { connectExternalBroker, type ExternalBroker } from "./broker/external.ts";
import { rabbitConnectionCloser } from "./broker/rabbitmq-management.ts";
import { createRevocationEnforcer, type RevocationEnforcer } from "./broker/revocation-enforcer.ts";
import { keepBrokerCertificate } from "./home/broker-certificate.ts";
import { type DatabaseOverride, openHubHome, readBrokerSecret, readBrokerTls, readCa, readCaCertificate, readHubClientTls } from "./home/home.ts";
import { checkHubIdentity } from "./home/identity.ts";
import { hubClientId, hubInstance } from "./home/instance.ts";
import type { HubPaths } from "./home/paths.ts";
import { DEFAULT_METRICS_LISTEN, type HubSettings, settingMs } from "./home/settings.ts";
import { type HubServer, refuseSecondHub, startHubServer, startLocalSocket } from "./http/bun-server.ts";
import { createHubApi } from "./http/routes.ts";
import { hubUseCases } from "./hub.ts";
import { Collector } from "./messages/collect.ts";
import { MessageFeed } from "./messages/feed.ts";
import { startFleetFeed } from "./messages/fleet-feed.ts";
import { ingressLedger } from "./messages/ingress-delivery.ts";
import { startMessageRetention } from "./messages/retention.ts";
import type { HubMetrics } from "./metrics/prometheus.ts";
import { type OwnListener, refuseSharedPorts } from "./own-listeners.ts";
import type { HubStore } from "./store/hub-store.ts";
import { openHubStore } from "./store/open-store.ts";
import { adoptLostRenewal, removeDistribution } from "./things/certificates.ts";
import { crlValiditySeconds, renewalIntervalMs, startCrlRenewal } from "./things/crl-renewal.ts";
import { removeOrphanDistributions } from "./things/provision.ts";
import { createCrlWriter, writeRevocationLists } from "./things/revocation.ts";
import { updateKey } from "./updates/update-key.ts";
import type { RolloutSummary, Updates } from "./updates/updates.ts";

/**
 * `hub serve`: one process with the broker, the API and the database. This module starts and
 * stops the pieces; the command decides about signals and exit codes.
 *
 * Durability: the database is SQLite in WAL mode with synchronous=FULL (or PostgreSQL, which commits durably by default), and both egress paths
 * commit before they acknowledge (HTTP 200 after the commit; the MQTT PUBACK after
 * `onThingPublish` resolves), so a kill -9 loses nothing a thing was told was stored. Ingress is
 * committed before the API answers and, with the embedded broker, stays pending in the database
 * until the thing's PUBACK, so a restart resends it rather than losing it (messages/ingress-delivery.ts).
 */
export interface ServeHubOptions {
  dir: string;
  /** "embedded" (default) or an external broker URL, mqtts://HOST:PORT */
  broker?: string;
  /** `--db`: the database for this run over hub.yml's (store/database-url.ts) */
  database?: DatabaseOverride;
  log: Logger;
  /** overrides of hub.yml's listen ports (tests pass 0 for a free port) */
  apiPort?: number;
  brokerPort?: number;
  /** how often revocations made by other processes (`hub thing revoke`) are enforced; default 3 s */
  revocationPollMs?: number;
  /** ms between retries of revocations an external broker did not take; default 5 s */
  revocationRetryMs?: number;
  /**
   * A stop asked while the hub starts (`hub serve`'s signal): the wait for an external broker
   * (up to 30 s) ends, the parts started are stopped, and serveHub rejects with the signal's reason.
   */
  signal?: AbortSignal;
}

export interface HubHandle {
  apiUrl: string;
  brokerUrl: string;
  broker: HubBroker;
  /** stops the API, then the broker, then closes the database; safe to call twice */
  close(): Promise<void>;
  /**
   * Settles when the hub can no longer keep what it acknowledges (its home or hub.db removed
   * while it runs: shared/file-watch.ts), with the FlashlexError (io, 74) saying so; the caller
   * closes the hub and exits with it. Never settles otherwise.
   */
  failed: Promise<FlashlexError>;
}

type RabbitSettings = NonNullable<HubSettings["broker"]["rabbitmq"]>;

/** The RabbitMQ cluster to use: hub.yml's, unless `--broker` names another (or `embedded`). */
/**
 * The broker `hub serve` uses: `--broker` (embedded, rabbitmq, or an mqtts:// URL), else the one
 * hub.yml names (`broker.rabbitmq`, written by `hub rabbitmq-config`; `broker.external`, by `hub
 * mosquitto-config`), else the embedded one. Throws ConfigError for `--broker rabbitmq` when
 * hub.yml names no cluster.
 */
export function brokerChoice(
  flag: string | undefined,
  broker: Pick<HubSettings["broker"], "rabbitmq" | "external">,
  configFile: string,
): { kind: "embedded" } | { kind: "rabbitmq"; rabbit: RabbitSettings } | { kind: "external"; url: string } {
  if (flag === "embedded") return { kind: "embedded" };
  if (flag === "rabbitmq") {
    if (!broker.rabbitmq) throw new ConfigError(`--broker rabbitmq: ${configFile} has no hub.broker.rabbitmq (run flashlex hub rabbitmq-config)`);
    return { kind: "rabbitmq", rabbit: broker.rabbitmq };
  }
  if (flag) return { kind: "external", url: flag };
  if (broker.rabbitmq) return { kind: "rabbitmq", rabbit: broker.rabbitmq };
  if (broker.external) return { kind: "external", url: broker.external };
  return { kind: "embedded" };
}

/** Starts the listener the cluster's auth backend asks (broker-auth-server.ts). */
async function startRabbitAuth(rabbit: RabbitSettings, paths: HubPaths, directory: ThingDirectory, log: Logger) {
  const listen = rabbit.authListen;
  try {
    return startBrokerAuthServer({
      ...listen,
      ctx: { secret: readBrokerSecret(paths), isActiveThing: async (name) => (await directory.lookup(name)) !== undefined },
      log,
    });
  } catch (err) {
    throw cannotListen(err, "the broker auth listener", listen, "hub.broker.rabbitmq.authListen", paths.config);
  }
}

/**
 * Starts the parts in order and resolves once all run. When one fails, those started are stopped
 * and it rejects: try-later (75) when a hub serve already runs on this home, ConfigError (78) for
 * an address it cannot listen on, else what opening the home, the database or the broker threw.
 */
/**
 * The hub's events that say it refused what a thing or a client sent: each is written at most 20
 * times in 10 s, and then how many more there were (shared/log-budget.ts). Unbounded, anyone
 * who can reach the hub decided how fast its log grows.
 */
const OUTSIDE_REFUSALS: ReadonlySet<string> = new Set([
  "mqtt.tls.refused",
  "broker.auth.denied",
  "mqtt.connect.refused",
  "mqtt.subscribe.refused",
  "mqtt.publish.refused",
  "hub.collect_refused",
  "hub.collect_rejected",
  "hub.collect_dropped",
  "hub.test_dropped",
  "hub.publish_dropped",
  "hub.thing_refused",
  "hub.update_refused",
  "hub.enrol_refused",
  "hub.download_refused",
  "hub.operator_refused",
  "hub.other_env_refused",
  "hub.console_signin_refused",
  "hub.console_csrf_refused",
  "hub.console_cross_site_refused",
]);

export async function serveHub(opts: ServeHubOptions): Promise<HubHandle> {
  const log = budgetLogger(opts.log, { events: OUTSIDE_REFUSALS });
  const home = openHubHome(opts.dir, log, opts.database);
  const { paths, settings } = home;
  // Before any port is taken: a second hub on this home is "try later" (75), not a busy port.
  await refuseSecondHub(paths.socket);
  const parts = new Lifecycle((part, err) => log.error("hub.close_failed", { part, error: err }));
  try {
    const store: HubStore = await openHubStore(home.database, { log });
    await parts.start({ name: "hub database", stop: () => store.close() });
    await checkHubIdentity(home, store);
    // A lost or swapped update key refuses every create and enrolment (78): said now, not at the next one.
    await updateKey(home, store).catch((err) =>
      log.error("hub.update_key_unusable", { error: err, note: "creating and enrolling things is refused until it is fixed" }),
    );
    // The home removed or moved, or hub.db replaced, while the hub runs (shared/file-watch.ts).
    const failed = Promise.withResolvers<FlashlexError>();
    // The directory, not hub.yml: hub.yml is rewritten in place of itself (hub mosquitto-config,
    // an editor's save), which is a new file of the same name and no reason to stop.
    const watched = [paths.dir, ...(home.database.kind === "sqlite" ? [home.database.file] : [])];
    const stopWatch = watchFileIdentity(watched, (file) => {
      const what = file === paths.dir ? `the hub home ${file} was removed or moved` : `${file} was removed or replaced`;
      const err = new FlashlexError(`${what} while the hub ran; it stops rather than acknowledge messages it cannot keep`, "io");
      log.error("hub.home_gone", { error: err.message });
      failed.resolve(err);
    });
    await parts.start({ name: "home watch", stop: stopWatch });
    // hub.yml was read once, as the hub started (openHubHome): an edit (a new broker.host, hub
    // mosquitto-config's broker) counts only after a restart, which is said when it happens.
    const stopConfigWatch = watchFileEdits(paths.config, (differs) => {
      if (differs) log.warn("hub.config_changed", { config: paths.config, fix: "restart hub serve for the change to count" });
      else log.info("hub.config_as_read", { config: paths.config, note: "hub.yml is again as hub serve read it at its start" });
    });
    await parts.start({ name: "config watch", stop: stopConfigWatch });

    // One feed for everything that stores or delivers a message in this process (the console listens).
    const feed = new MessageFeed();
    // A token or a connection with a renewed key makes the hub forget the previous key: its
    // certificate is superseded, and the CRL must say so at once (things/revocation.ts).
    let superseded: (reason: string) => void = () => {};
    const collector = new Collector({ store, log, feed, onSuperseded: () => superseded("superseded") });
    // The events need the broker (for the bootstrap echo) and the broker needs the events.
    let brokerRef: HubBroker | undefined;
    const publish = async (topic: string, payload: string) => {
      if (!brokerRef) throw new Error("the broker is not running yet");
      await brokerRef.publish(topic, payload);
    };
    // Each port of the hub's own, before any is taken: two on one port is hub.yml's doing (78),
    // not "stop what listens there" (own-listeners.ts).
    const choice = brokerChoice(opts.broker, settings.broker, paths.config);
    refuseSharedPorts(ownListeners(settings, choice, opts), paths.config);
    // Metrics (docs/metrics.md): prom-client is loaded here only, and only when they are on.
    let updatesRef: Updates | undefined;
    const metrics = settings.metrics.listen === false ? undefined : await loadHubMetrics(feed, store, () => updatesRef, paths, log);
    if (metrics) await parts.start({ name: "metrics", stop: () => metrics.close() });
    // Listening before the broker and the API: a hub.metrics.listen in use (78) stops the start
    // before any thing has connected.
    const metricsUrl = metrics ? await listenForScrapes(metrics, settings.metrics.listen || undefined, paths.config, log) : undefined;
    if (metricsUrl) await parts.start({ name: "metrics listener", stop: () => metricsUrl.close() });
    const observer = metrics?.observer;
    const events = createBrokerEvents({ store, collector, log, payloadLimitBytes: settings.api.payloadLimitBytes, publish, observer });
    const directory = createThingDirectory(
      (name) => store.getThingByName(name),
      (thingId) =>
        void store
          .forgetPreviousKey(thingId, Date.now())
          .then((forgot) => forgot && superseded("superseded"))
          .catch((err) => log.warn("hub.forget_previous_key_failed", { thing_id: thingId, error: err })),
      async (thingName, certPem) => {
        const thing = await store.getThingByName(thingName);
        if (!thing) return false;
        const refused = await adoptLostRenewal(home, store, thing, certPem, Date.now());
        if (refused) {
          log.info("thing.certificate_not_adopted", { thing: thingName, reason: refused });
          return false;
        }
        log.warn("thing.lost_renewal_adopted", {
          thing: thingName,
          serial: describeCertificate(certPem).serialNumber,
          note: "the thing connected with a certificate this hub issued after the one its database held (a database put back from an older backup); it is the thing's certificate now",
        });
        // its zip, put back with the backup, holds the key the renewal replaced (new-user pass 27, F5)
        const zipLeft = removeDistribution(home, thing.id);
        if (zipLeft)
          log.error("hub.distribution_not_removed", { thing: thingName, error: zipLeft, fix: "remove it by hand: it holds the key the thing replaced" });
        superseded("superseded");
        return true;
      },
    );
    // The CA's key too, checked now (78): a hub started without a usable one looked healthy, and
    // every create, enrolment, renewal and CRL then failed (the first renewals 60 days later).
    const caPem = readCa(paths).certPem;

    // A broker certificate that lapsed would shut every thing out (home/broker-certificate.ts).
    // Renewed now, the broker and the API below read the new one; renewed later, the embedded
    // broker swaps it in, and what serves a copy of its own is named.
    let started: { broker?: EmbeddedBroker; api: boolean } | undefined;
    const brokerCertificateRenewed = (certPem: string) => {
      started?.broker?.useCertificate(certPem);
      if (choice.kind !== "embedded") {
        log.warn("hub.broker_certificate_copy_stale", {
          note: "the external broker serves its own copy of the certificate",
          fix: `run \`flashlex hub ${choice.kind === "rabbitmq" ? "rabbitmq" : "mosquitto"}-config\` again (it rewrites its copy), then reload or restart the broker`,
        });
      }
      if (started?.api && settings.api.tls) {
        log.warn("hub.api_certificate_stale", { note: "the HTTPS API serves the certificate it started with", fix: "restart hub serve" });
      }
    };
    // What this process serves TLS with is checked before the renewal reads it: an empty or
    // damaged file stops the start (78) instead of a hub whose every handshake fails.
    if (choice.kind === "embedded" || settings.api.tls) readBrokerTls(paths);
    await parts.start({ name: "broker certificate renewal", stop: await keepBrokerCertificate(home, log, brokerCertificateRenewed) });

    const brokerListen = { host: settings.broker.listenHost, port: opts.brokerPort ?? settings.broker.listenPort ?? settings.broker.port };
    const embedded: EmbeddedBroker | undefined =
      choice.kind === "embedded"
        ? await startEmbeddedBroker({
            ...brokerListen,
            caPem,
            ...readBrokerTls(paths),
            directory,
            events,
            log,
            maxPayloadBytes: maxEnvelopeBytes(settings.api.payloadLimitBytes),
            ingress: ingressLedger(store, feed),
          }).catch((err) => {
            // the key the port came from: listenPort when set, else port (which things are told too)
            const portKey = settings.broker.listenPort === undefined ? "hub.broker.port" : "hub.broker.listenPort";
            throw cannotListen(err, "the broker", brokerListen, `hub.broker.listenHost and ${portKey}`, paths.config);
          })
        : undefined;
    // External broker: revocations go to it through the dynamic security plugin (Mosquitto) or
    // the management API (RabbitMQ), and again after every reconnect (revocation-enforcer.ts);
    // the enforcer needs the broker, the broker calls it.
    let enforcer: RevocationEnforcer | undefined;
    const rabbit = choice.kind === "rabbitmq" ? choice.rabbit : undefined;
    if (rabbit) {
      // Before connecting: the nodes ask this listener whether the hub itself may log in.
      const auth = await startRabbitAuth(rabbit, paths, directory, log);
      await parts.start({ name: "broker auth listener", stop: () => auth.stop() });
    }
    // a cluster's nodes in turn (the first, then fail-over), or the one external broker
    const brokerUrls = rabbit?.urls ?? (choice.kind === "external" ? [choice.url] : undefined);
    const instance = brokerUrls ? hubInstance(paths, settings) : undefined;
    if (instance) log.info("hub.instance", { instance: instance.name, from: instance.from, client_id: hubClientId(instance.name) });
    const external: ExternalBroker | undefined = !(brokerUrls && instance)
      ? undefined
      : await connectExternalBroker({
          url: brokerUrls[0]!,
          failoverUrls: brokerUrls.slice(1),
          revoke: rabbit ? rabbitConnectionCloser({ urls: rabbit.management, caPem, secret: readBrokerSecret(paths) }) : undefined,
          caPem,
          ...readHubClientTls(paths),
          clientId: hubClientId(instance.name),
          events,
          directory,
          log,
          onConnected: () => void enforcer?.reconcile(),
          signal: opts.signal,
        });
    const broker: HubBroker = embedded ?? external!;
    brokerRef = broker;
    const connectedCount = broker.connectedCount?.bind(broker);
    if (metrics && connectedCount) metrics.countConnected(() => connectedCount() ?? 0);
    await parts.start({ name: "broker", stop: () => broker.close() });
    const reloader = createBrokerReloader(settings.broker.reloadCommand, log);
    const validity = crlValiditySeconds();
    const crlWriter = createCrlWriter(() => writeRevocationLists(home, store, new Date(), validity));
    superseded = (reason) =>
      void crlWriter
        .write()
        .then(() => (external ? reloader.request(reason) : undefined))
        .catch((err) => log.error("hub.crl_write_failed", { reason, error: err, note: "written again at the next change or renewal" }));
    if (external) {
      const revokeOn = external;
      enforcer = createRevocationEnforcer({
        revoke: (names) => revokeOn.revoke(names),
        listRevoked: async () => (await store.revokedThings()).map((t) => t.name),
        log,
        retryMs: opts.revocationRetryMs,
      });
      const started = enforcer;
      await parts.start({ name: "revocation enforcer", stop: () => started.stop() });
      // Revocations made while the hub was down: every revoked thing, before the hub reports started.
      await enforcer.reconcile();
      if (!settings.broker.reloadCommand && !rabbit) {
        log.warn("hub.broker_reload_unset", {
          note: "hub.broker.reloadCommand is not set: Mosquitto applies a new or renewed CRL only when it is reloaded (SIGHUP)",
        });
      }
    }

    const kick = (name: string) => {
      if (embedded?.disconnect(name)) log.info("hub.thing_disconnected", { thing: name, reason: "revoked or deleted" });
      if (external) {
        // Shut out now through dynsec; the CRL the revoke just wrote is for new handshakes once
        // the broker re-reads it. A deleted thing goes through here too: shutting it out is right.
        void enforcer?.enforce([name]);
        void reloader.request("revocation");
      }
    };
    // On a served database the console's live view shows what every hub stored (fleet-feed.ts).
    let live: MessageFeed | undefined;
    if (store.driver === "postgres") {
      const fleetFeed = new MessageFeed();
      const stopFleetFeed = startFleetFeed({ store, local: feed, live: fleetFeed, log });
      await parts.start({ name: "fleet live feed", stop: stopFleetFeed });
      live = fleetFeed;
    }
    const useCases = hubUseCases({ home, store, log, broker, collector, feed, live, disconnect: kick });
    updatesRef = useCases.updates;
    const api = createHubApi({ ...useCases, log, observer });
    const local = await startLocalSocket(api, paths.socket, log);
    await parts.start({ name: "local socket", stop: () => local.stop() });
    const apiListen = { host: settings.api.host, port: opts.apiPort ?? settings.api.port };
    const tls = settings.api.tls ? readBrokerTls(paths) : undefined;
    let server: HubServer;
    try {
      server = startHubServer(api, { ...apiListen, tls, log });
    } catch (err) {
      throw cannotListen(err, "the API", apiListen, "hub.api.host and hub.api.port", paths.config);
    }
    await parts.start({ name: "HTTP API", stop: () => stopGracefully(server) });
    started = { broker: embedded, api: true };
    // Stopped before the server: a browser's open live view would otherwise hold its graceful stop.
    await parts.start({ name: "console live views", stop: () => api.close() });

    // `hub thing revoke` runs in another process and only writes the database (and the CRLs); the
    // embedded broker refuses revoked things at their next connect or publish, and this poll
    // disconnects the ones that sit idle on an open connection; an external broker learns of
    // them only through this poll (kick -> dynsec).
    {
      let since = Date.now();
      // Certificates another hub (or a `hub thing delete` elsewhere) made superseded: this hub's CRL files too.
      let lastSuperseded = await store.lastSupersededAt();
      const timer = setInterval(() => {
        const from = since;
        since = Date.now();
        store
          .revokedSince(from - 1000)
          .then((names) => names.forEach(kick))
          // a thing revoked or deleted mid-rollout will not poll again: its batch moves on (a
          // failure here must not hold up the certificates below)
          .then(() => useCases.updates.advanceRunning().catch((err) => log.warn("hub.rollout_advance_failed", { error: err })))
          .then(() => store.lastSupersededAt())
          .then(async (at) => {
            if (at <= lastSuperseded) return;
            lastSuperseded = at;
            superseded("superseded elsewhere");
            // A `hub thing delete` elsewhere supersedes the thing's certificates: a device still
            // connected under them goes now, before a thing made again under its name gets its messages.
            for (const name of (await embedded?.disconnectStale()) ?? []) log.info("hub.thing_disconnected", { thing: name, reason: "revoked or deleted" });
          })
          .catch((err) => log.warn("hub.revocation_poll_failed", { error: err }));
      }, opts.revocationPollMs ?? 3000);
      timer.unref?.();
      await parts.start({ name: "revocation poll", stop: () => clearInterval(timer) });
    }

    // The CRLs never lapse while the hub runs (crl-renewal.ts has the schedule).
    const stopRenewal = await startCrlRenewal({
      renew: () => crlWriter.write(),
      afterRenewal: external ? () => reloader.request("crl renewal") : undefined,
      intervalMs: renewalIntervalMs(validity),
      log,
    });
    await parts.start({ name: "CRL renewal", stop: stopRenewal });

    // hub.yml's messages.keepFor: older messages go, so that hub.db does not grow for ever.
    const keepFor = settings.messages?.keepFor;
    if (keepFor) await parts.start({ name: "message retention", stop: startMessageRetention({ store, keepForMs: settingMs(keepFor), log, observer }) });

    // A zip no thing has, or a revoked thing's, holds a key nothing hands out: removed, but never at the cost of the start.
    try {
      const { removed, left, unchecked } = await removeOrphanDistributions(home, store, Date.now());
      const why = {
        "killed create":
          "the zip, or the temporary file it was being written to, of a create killed before its row was written (its mark was left in creating/)",
        revoked: "a revoked thing's zip, left by a revoke or delete that could not remove it",
      };
      for (const { id, kind } of removed) log.warn("hub.orphan_distribution_removed", { id, note: why[kind] });
      for (const { id, kind, reason } of left)
        log.warn("hub.orphan_distribution_left", { id, note: why[kind], error: reason, fix: "remove it by hand: it holds a private key" });
      for (const { dir, reason } of unchecked) log.warn("hub.orphan_distributions_unchecked", { dir, error: reason, note: "could not be looked through" });
    } catch (err) {
      log.warn("hub.orphan_distributions_unchecked", { error: err, note: "the database could not be asked which zips are things'" });
    }
    const { things } = await store.fleetCounts();
    log.info("hub.started", {
      version: `${VERSION} (${COMMIT})`,
      api: server.url,
      metrics: metricsUrl?.url,
      public_api: settings.api.publicUrl,
      broker: broker.url,
      env: settings.env,
      things,
      database: home.database.display,
      messages_kept_for: keepFor ?? "ever",
    });
    let closing: Promise<void> | undefined;
    return {
      apiUrl: server.url,
      brokerUrl: broker.url,
      broker,
      failed: failed.promise,
      close() {
        closing ??= parts.stop().then(() => log.info("hub.stopped"));
        return closing;
      },
    };
  } catch (err) {
    await parts.stop();
    throw err;
  }
}

/** The hub's registry (prometheus.ts, imported here so that only `hub serve` with metrics on loads prom-client). */
async function loadHubMetrics(feed: MessageFeed, store: HubStore, updates: () => Updates | undefined, paths: HubPaths, log: Logger): Promise<HubMetrics> {
  const { createHubMetrics } = await import("./metrics/prometheus.ts");
  const noReports = { reporting: 0, depthSum: 0, depthMax: 0, oldestAgeSeconds: 0 };
  const noRollouts = { running: false, states: {} as RolloutSummary["states"], versions: {} };
  return createHubMetrics({
    feed,
    fleet: () => store.fleetCounts(),
    outboxes: async () => (await updates()?.outboxSummary()) ?? noReports,
    rollouts: async () => (await updates()?.rolloutSummary()) ?? noRollouts,
    version: VERSION,
    certificates: () => ({
      ca: describeCertificate(readCaCertificate(paths)).notAfter.getTime(),
      broker: describeCertificate(readRegularFile(paths.brokerCert, "broker certificate").toString("utf8")).notAfter.getTime(),
    }),
    onFleetReadFailed: (err) => log.warn("hub.metrics_fleet_unavailable", { error: err }),
  });
}

/**
 * The scrape listener at `hub.metrics.listen`. A listen that fails where the owner set the
 * address is a ConfigError (78) naming the setting, as for the API; at the default address it is
 * one WARN and the hub runs without it: metrics must never keep a hub from starting (a second
 * hub on the machine, tests side by side), and the line says how to move it.
 */
async function listenForScrapes(metrics: HubMetrics, setting: string | undefined, configFile: string, log: Logger): Promise<MetricsListener | undefined> {
  const at = parseListenAddress(setting ?? DEFAULT_METRICS_LISTEN)!;
  try {
    return await startMetricsListener(
      at,
      () => metrics.render(),
      (err) => log.error("hub.metrics_failed", { error: err }),
    );
  } catch (err) {
    const refusal = cannotListen(err, "the metrics", at, "hub.metrics.listen", configFile);
    if (setting !== undefined || refusal === err) throw refusal;
    log.warn("hub.metrics_unavailable", {
      listen: DEFAULT_METRICS_LISTEN,
      reason: classifyForeign(err)?.reason ?? String((err as { code?: unknown })?.code),
      fix: "set hub.metrics.listen to another HOST:PORT (or false) in hub.yml",
    });
    return undefined;
  }
}

/** Lets requests in flight finish for up to 2 s, then closes what is left. */
async function stopGracefully(server: HubServer): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const graceful = server.stop(false);
  const timeout = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), 2000)));
  const outcome = await Promise.race([graceful.then(() => "done" as const), timeout]);
  clearTimeout(timer);
  if (outcome === "timeout") await server.stop(true);
}

/**
 * The listeners `hub serve` opens itself, with the settings that place each: the API, the
 * embedded broker, the cluster's auth listener, and the metrics when hub.yml sets their address
 * (at the default one, a busy port is only a warning: listenForScrapes).
 */
function ownListeners(settings: HubSettings, choice: ReturnType<typeof brokerChoice>, opts: ServeHubOptions): OwnListener[] {
  const metrics = settings.metrics.listen ? parseListenAddress(settings.metrics.listen) : undefined;
  const brokerPortKey = settings.broker.listenPort === undefined ? "hub.broker.port" : "hub.broker.listenPort";
  return [
    { what: "the API", host: settings.api.host, port: opts.apiPort ?? settings.api.port, settings: "hub.api.host and hub.api.port" },
    ...(choice.kind === "embedded"
      ? [
          {
            what: "the broker",
            host: settings.broker.listenHost,
            port: opts.brokerPort ?? settings.broker.listenPort ?? settings.broker.port,
            settings: `hub.broker.listenHost and ${brokerPortKey}`,
          },
        ]
      : []),
    ...(choice.kind === "rabbitmq" ? [{ what: "the broker auth listener", ...choice.rabbit.authListen, settings: "hub.broker.rabbitmq.authListen" }] : []),
    ...(metrics ? [{ what: "the metrics", ...metrics, settings: "hub.metrics.listen" }] : []),
  ];
}

/**
 * A listen that failed (shared/listen-address.ts `listenFailure`: a port in use, an address not
 * of this machine, a name that does not resolve) as the one line an operator can act on: what
 * could not listen, where, why, and the hub.yml settings that say so (ConfigError, 78). Any
 * other failure passes through unchanged.
 */
function cannotListen(err: unknown, what: string, at: { host: string; port: number }, settings: string, configFile: string): unknown {
  const reason = listenFailure(err, at);
  if (reason === undefined) return err;
  // root started it, but it runs as the home's owner now: "needs root" alone would read as nonsense
  const note =
    (err as { code?: unknown })?.code === "EACCES"
      ? actingAsOwnerNote("that user may not listen on a port below 1024: choose one above 1023 in hub.yml, or give the service CAP_NET_BIND_SERVICE")
      : undefined;
  return new ConfigError(`${what} cannot listen on ${formatListenAddress(at)} (${settings} in ${configFile}): ${reason}${note ? ` ${note}` : ""}`, {
    cause: err,
  });
}
