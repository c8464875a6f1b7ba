/**
 * The hub's Prometheus registry (prom-client): every metric of docs/metrics.md, in one place.
 * Loaded by `hub serve` only (a dynamic import in service.ts), so other commands never load the
 * library.
 *
 * Two kinds of metric, so that several hubs on one database each say what they did while the
 * fleet is counted once:
 * - this process's own: counters and the latency histogram (what this hub received, sent,
 *   answered, failed), and the things connected to its embedded broker. Prometheus sums them
 *   over the hubs (`sum without (instance)`).
 * - the fleet's, read from the database at scrape time (things by status, pending ingress, the
 *   outboxes things reported): every hub reports the same value; take `max` over the hubs.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { ERROR_KINDS } from "../../shared/errors.ts";
import { toFlashlexError } from "../../shared/foreign-errors.ts";
import type { Exposition } from "../../shared/metrics-http.ts";
import type { MessageFeed } from "../messages/feed.ts";
import type { FleetCounts } from "../store/hub-store.ts";
import type { OutboxSummary, RolloutSummary } from "../updates/updates.ts";
import { cachedRead } from "./cached-read.ts";
import type { HubObserver } from "./observer.ts";

export interface HubMetricsDeps {
  /** the use cases announce each message stored, sent and delivered here */
  feed: MessageFeed;
  /** the fleet-wide counts, read at scrape time */
  fleet: () => Promise<FleetCounts>;
  outboxes: () => Promise<OutboxSummary>;
  /** where the fleet stands on updates (rollout, versions), read at scrape time */
  rollouts: () => Promise<RolloutSummary>;
  /** a version label for `flashlex_hub_info` */
  version: string;
  /** the notAfter (Unix ms) of the hub's own certificates, by name (ca, broker), read at scrape time */
  certificates?: () => Record<string, number>;
  /** told when a fleet read failed or timed out (the scrape still answers, fleet gauges NaN or absent); the hub logs a WARN */
  onFleetReadFailed?: (err: unknown) => void;
  /** how long the fleet reads are reused, ms (FLEET_TTL_MS) */
  fleetTtlMs?: number;
}

/** The fleet gauges are reused for this long (ms): one set of queries per 5 s, however many scrapers. */
export const FLEET_TTL_MS = 5_000;
/** A fleet read that takes longer (ms) fails the gauges of that scrape, not the scrape. */
export const FLEET_DEADLINE_MS = 5_000;

export interface HubMetrics {
  observer: HubObserver;
  /** adds `flashlex_hub_things_connected`, read from `count` at scrape time: only for a broker that can tell (the embedded one) */
  countConnected(count: () => number): void;
  /** the exposition text of every metric, gauges read now */
  render(): Promise<Exposition>;
  /** stops listening to the feed */
  close(): void;
}

/** Seconds: API answers are mostly a few ms (SQLite, one machine); archives and slow disks reach seconds. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

/** Builds the registry; `process_*` and `nodejs_*` come from prom-client's default collectors. */
export function createHubMetrics(deps: HubMetricsDeps): HubMetrics {
  const registry = new Registry();
  const registers = [registry];
  collectDefaultMetrics({ register: registry });

  new Gauge({ name: "flashlex_hub_info", help: "Always 1; the version of this hub process", labelNames: ["version"], registers }).set(
    { version: deps.version },
    1,
  );

  const messages = new Counter({
    name: "flashlex_hub_messages_total",
    help: "Messages this hub process handled: egress received from things, ingress accepted from the operator, ingress delivered to things (their PUBACK)",
    labelNames: ["type", "direction", "path"],
    registers,
  });
  // Every combination at 0 from the start, so rate() and alerts see a series before the first message.
  messages.inc({ type: "egress", direction: "in", path: "http" }, 0);
  messages.inc({ type: "egress", direction: "in", path: "mqtt" }, 0);
  messages.inc({ type: "ingress", direction: "in", path: "http" }, 0);
  messages.inc({ type: "ingress", direction: "out", path: "mqtt" }, 0);

  const requests = new Histogram({
    name: "flashlex_hub_http_request_duration_seconds",
    help: "HTTP API and console requests of this hub process, by route pattern, method and status class, until the answer's headers",
    labelNames: ["route", "method", "status"],
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const errors = new Counter({
    name: "flashlex_hub_errors_total",
    help: "Failures with a kind (src/shared/errors.ts) that reached an edge of this hub process, by via: http (an API answer), mqtt (a publish), metrics (a scrape's own reading)",
    labelNames: ["kind", "via"],
    registers,
  });
  for (const kind of ERROR_KINDS) for (const via of ["http", "mqtt", "metrics"]) errors.inc({ kind, via }, 0);
  const expired = new Counter({
    name: "flashlex_hub_messages_expired_total",
    help: "Messages this hub process's retention deleted (hub.yml messages.keepFor), egress and delivered ingress",
    registers,
  });
  const dropped = new Counter({
    name: "flashlex_hub_mqtt_dropped_total",
    help: "MQTT publishes from things this hub process acknowledged without storing, by the log event that says why",
    labelNames: ["event"],
    registers,
  });

  // One database read at a time, reused for a few seconds, feeds the fleet gauges. A read that
  // fails gives that scrape no `flashlex_hub_things` series and NaN for the unlabelled ones
  // (never a stale value), counted in errors_total{via="metrics"} and logged.
  const ttlMs = deps.fleetTtlMs ?? FLEET_TTL_MS;
  const failed = (err: unknown) => {
    errors.inc({ kind: toFlashlexError(err).kind, via: "metrics" });
    deps.onFleetReadFailed?.(err);
  };
  /**
   * `read` reused for ttlMs, and, within one scrape, one attempt that every gauge reading it
   * awaits: a failure is counted once per scrape, and its gauges are NaN or absent (undefined).
   */
  const scraped = <T>(read: () => Promise<T>, what: string) => {
    const shared = cachedRead(read, { ttlMs, deadlineMs: FLEET_DEADLINE_MS, what });
    let attempt: Promise<T | undefined> | undefined;
    return () =>
      (attempt ??= shared()
        .catch((err) => {
          failed(err);
          return undefined;
        })
        .finally(() => queueMicrotask(() => (attempt = undefined))));
  };
  const fleet = scraped(deps.fleet, "the fleet counts");
  const outboxes = scraped(deps.outboxes, "the outbox summary");
  const rollouts = scraped(deps.rollouts, "the rollout summary");
  new Gauge({
    name: "flashlex_hub_things",
    help: "Things known to the hub database, by status (created, verified, revoked); the same on every hub of one database",
    labelNames: ["status"],
    registers,
    async collect() {
      const counts = await fleet();
      this.reset();
      if (!counts) return;
      this.set({ status: "created" }, counts.things - counts.revoked - counts.verified);
      this.set({ status: "verified" }, counts.verified);
      this.set({ status: "revoked" }, counts.revoked);
    },
  });
  new Gauge({
    name: "flashlex_hub_ingress_pending",
    help: "Ingress messages stored and not yet acknowledged by their thing; the same on every hub of one database",
    registers,
    async collect() {
      // NaN, not 0 and not a stale value, when the database did not answer: an unlabelled
      // gauge cannot be left out, and NaN compares false in every alert rule
      this.set((await fleet())?.pendingIngress ?? Number.NaN);
    },
  });

  new Gauge({
    name: "flashlex_hub_thing_certificate_earliest_expiry_timestamp_seconds",
    help: "When the first certificate of a thing that is not revoked ends (Unix seconds); agents renew theirs before: one near is a renewal failing",
    registers,
    async collect() {
      const end = (await fleet())?.earliestCertificateEnd;
      this.set(end == null ? Number.NaN : end / 1000);
    },
  });
  new Gauge({
    name: "flashlex_hub_database_size_bytes",
    help: "The hub database's size (SQLite: its pages, the WAL aside; PostgreSQL: pg_database_size); the same on every hub of one database",
    registers,
    async collect() {
      this.set((await fleet())?.databaseBytes ?? Number.NaN);
    },
  });
  if (deps.certificates) {
    const certificates = deps.certificates;
    new Gauge({
      name: "flashlex_hub_certificate_expiry_timestamp_seconds",
      help: "When the hub's own certificates end (Unix seconds): certificate=ca (every certificate it signs ends with it at the latest), broker (the broker's and HTTPS API's, renewed 90 days before)",
      labelNames: ["certificate"],
      registers,
      collect() {
        this.reset();
        try {
          for (const [name, end] of Object.entries(certificates())) this.set({ certificate: name }, end / 1000);
        } catch (err) {
          failed(err);
        }
      },
    });
  }

  const outboxGauge = (name: string, help: string, pick: (s: OutboxSummary) => number) =>
    new Gauge({
      name,
      help,
      registers,
      async collect() {
        const summary = await outboxes();
        this.set(summary ? pick(summary) : Number.NaN);
      },
    });
  outboxGauge(
    "flashlex_hub_thing_outbox_messages",
    "Egress waiting in the things' outboxes, summed over the things, as each last reported it",
    (s) => s.depthSum,
  );
  outboxGauge("flashlex_hub_thing_outbox_messages_max", "The largest outbox one thing reported, in messages", (s) => s.depthMax);
  outboxGauge(
    "flashlex_hub_thing_outbox_oldest_age_seconds",
    "Age of the oldest entry waiting in any thing's outbox, as last reported and aged on the hub's clock since",
    (s) => s.oldestAgeSeconds,
  );
  outboxGauge("flashlex_hub_thing_outbox_reporting", "Things (not revoked) that reported their outbox at least once", (s) => s.reporting);

  new Gauge({
    name: "flashlex_hub_update_rollout_running",
    help: "1 while a rollout runs (hub update), else 0; the same on every hub of one database",
    registers,
    async collect() {
      const summary = await rollouts();
      this.set(summary ? Number(summary.running) : Number.NaN);
    },
  });
  /** A gauge of counts by one label, from the rollout summary: no series when the read failed. */
  const rolloutCounts = (name: string, help: string, label: string, pick: (summary: RolloutSummary) => Record<string, number>) =>
    new Gauge({
      name,
      help,
      labelNames: [label],
      registers,
      async collect() {
        const summary = await rollouts();
        this.reset();
        for (const [value, n] of Object.entries(summary ? pick(summary) : {})) this.set({ [label]: value }, n);
      },
    });
  rolloutCounts(
    "flashlex_hub_update_things",
    "The latest rollout's things (not revoked) by update state: queued, pending, downloading, installed, healthy, rolled-back, failed, cancelled",
    "state",
    (summary) => summary.states,
  );
  rolloutCounts(
    "flashlex_hub_things_by_version",
    "Things (not revoked) by the FlashLex version they last reported with an update check; unknown: never reported",
    "version",
    (summary) => summary.versions,
  );

  const stopWatching = deps.feed.watch((event) => {
    if (event.type === "collected") messages.inc({ type: "egress", direction: "in", path: event.via ?? "http" });
    else if (event.type === "sent") messages.inc({ type: "ingress", direction: "in", path: "http" });
    else messages.inc({ type: "ingress", direction: "out", path: "mqtt" });
  });

  return {
    observer: {
      request: (s) => requests.observe({ route: s.route, method: s.method, status: `${Math.floor(s.status / 100)}xx` }, s.seconds),
      error: (kind, via) => errors.inc({ kind, via }),
      dropped: (event) => dropped.inc({ event }),
      expired: (count) => expired.inc(count),
    },
    countConnected(count) {
      new Gauge({
        name: "flashlex_hub_things_connected",
        help: "Things connected to this hub process's embedded broker now (absent with an external broker, which does not tell)",
        registers,
        collect() {
          this.set(count());
        },
      });
    },
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
    close: () => stopWatching?.(),
  };
}
