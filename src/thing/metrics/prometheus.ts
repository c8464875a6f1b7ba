/**
 * The agent's Prometheus registry (prom-client), for `serve --metrics` (docs/metrics.md). Loaded
 * only when metrics are on (a dynamic import in agent.ts); pure JavaScript, so the armv7 Node
 * build bundles it like the rest.
 *
 * What it reads at scrape time (the outbox, the ingress table) comes from the message database
 * in one query each; what it counts (messages stored, reconnects, errors) it is told by serve.
 * The last error is its kind (src/shared/errors.ts), the log event that reported it and the
 * time: never its message, which may name a file or carry a server's words.
 */
import { Counter, collectDefaultMetrics, Gauge, Registry } from "prom-client";
import { ERROR_KINDS, type ErrorKind, isErrorKind } from "../../shared/errors.ts";
import { toFlashlexError } from "../../shared/foreign-errors.ts";
import type { Fields } from "../../shared/log.ts";
import type { Exposition } from "../../shared/metrics-http.ts";

export interface AgentMetricsDeps {
  /** the outbox now (message-store.ts outboxStats): Unix ms on this device's clock */
  outbox: () => { pending: number; rejected: number; oldestCreatedAt: number | null };
  /** the ingress table now: all stored, and those the application has not acknowledged */
  ingress: () => { total: number; unacked: number };
  /** whether the MQTT session is connected now */
  connected: () => boolean;
  version: string;
  /** Unix ms */
  now?: () => number;
}

export interface AgentMetrics {
  /** an ingress message was committed to the database (once per message, repeats excluded) */
  ingressStored(): void;
  /** the MQTT session connected (the first time, or again) */
  connected(): void;
  /** give to shared/log.ts tapLogger: every error, and every warning that carries an error, is counted by kind */
  tap(level: "warn" | "error", event: string, fields: Fields): void;
  render(): Promise<Exposition>;
}

/** The kind of a logged failure: the error's own, a `kind` field, or `bug` when nothing says. */
export function kindOfLogged(fields: Fields): ErrorKind {
  if (isErrorKind(fields.kind)) return fields.kind;
  if (fields.error !== undefined && typeof fields.error === "object") return toFlashlexError(fields.error).kind;
  return "bug";
}

/**
 * A registry of its own (the process metrics and `flashlex_agent_*`): the gauges read `deps` at
 * each scrape (one outbox query per scrape, ages in seconds), the counters count what serve tells.
 */
export function createAgentMetrics(deps: AgentMetricsDeps): AgentMetrics {
  const now = deps.now ?? Date.now;
  const registry = new Registry();
  const registers = [registry];
  collectDefaultMetrics({ register: registry });

  new Gauge({ name: "flashlex_agent_info", help: "Always 1; the version of this agent", labelNames: ["version"], registers }).set({ version: deps.version }, 1);

  // One database read per scrape for the outbox gauges.
  let outboxRead: ReturnType<AgentMetricsDeps["outbox"]> | undefined;
  const outbox = () => (outboxRead ??= (queueMicrotask(() => (outboxRead = undefined)), deps.outbox()));
  new Gauge({
    name: "flashlex_agent_outbox_messages",
    help: "Egress in the outbox not yet delivered: pending (being tried) or rejected (the hub refused it; kept until retried or dropped)",
    labelNames: ["state"],
    registers,
    collect() {
      const o = outbox();
      this.set({ state: "pending" }, o.pending);
      this.set({ state: "rejected" }, o.rejected);
    },
  });
  new Gauge({
    name: "flashlex_agent_outbox_oldest_age_seconds",
    help: "Age of the oldest outbox entry not yet delivered, in seconds (0 when none waits)",
    registers,
    collect() {
      const oldest = outbox().oldestCreatedAt;
      this.set(oldest === null ? 0 : Math.max(0, (now() - oldest) / 1000));
    },
  });
  new Gauge({
    name: "flashlex_agent_ingress_messages",
    help: "Ingress messages in the database, by state: unacked (the application has not acknowledged them) or acked (kept until they expire)",
    labelNames: ["state"],
    registers,
    collect() {
      const i = deps.ingress();
      this.set({ state: "unacked" }, i.unacked);
      this.set({ state: "acked" }, i.total - i.unacked);
    },
  });
  const stored = new Counter({ name: "flashlex_agent_ingress_stored_total", help: "Ingress messages this serve stored (each once)", registers });
  const reconnects = new Counter({
    name: "flashlex_agent_mqtt_reconnects_total",
    help: "Times this serve's MQTT session connected again after its first connection",
    registers,
  });
  new Gauge({
    name: "flashlex_agent_mqtt_connected",
    help: "1 while the MQTT session is connected, else 0",
    registers,
    collect() {
      this.set(deps.connected() ? 1 : 0);
    },
  });
  const errors = new Counter({
    name: "flashlex_agent_errors_total",
    help: "Failures this serve logged (every ERROR line, and WARN lines that carry an error), by kind",
    labelNames: ["kind"],
    registers,
  });
  for (const kind of ERROR_KINDS) errors.inc({ kind }, 0);
  const lastError = new Gauge({
    name: "flashlex_agent_last_error_timestamp_seconds",
    help: "When the last failure was logged (Unix seconds), labelled with its kind and log event; absent until one is",
    labelNames: ["kind", "event"],
    registers,
  });

  let connections = 0;
  return {
    ingressStored: () => stored.inc(),
    connected: () => {
      if (connections++ > 0) reconnects.inc();
    },
    tap(level, event, fields) {
      if (level === "warn" && fields.error === undefined) return;
      const kind = kindOfLogged(fields);
      errors.inc({ kind });
      // One series: the last failure only, so the label values never pile up.
      lastError.reset();
      lastError.set({ kind, event }, now() / 1000);
    },
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
