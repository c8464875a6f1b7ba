import { randomUUID } from "node:crypto";
import type { ThingConfig } from "../config/load.ts";
import { ExitCode, FlashlexError, InputError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { MessageStore, OutboxEntry, OutboxVia } from "../store/message-store.ts";
import { callServe } from "./control-socket.ts";
import { deliverHttp, deliverMqtt, MAX_EGRESS_BYTES, type DeliveryOutcome } from "./egress.ts";
import type { ThingIdentity } from "./identity.ts";
import { createIngressHandler } from "./ingress.ts";
import { recordOutcome } from "./outbox.ts";
import { ThingSession } from "./session.ts";

export interface CollectResult {
  messageId: string;
  /** `queued`: not delivered yet; it waits in the outbox and `serve` delivers it */
  outcome: "sent" | "rejected" | "queued";
  status?: number;
  body?: string;
  error?: string;
}

/** While `collect` tries its own message, `serve` leaves the row alone for this long. */
const LEASE_MS = 60_000;

/** Checks that `text` is one JSON document within the size limit; returns it compacted. */
export function parseEgressDocument(text: string, source: string): string {
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_EGRESS_BYTES) throw new InputError(`${source}: ${bytes} bytes is over the ${MAX_EGRESS_BYTES}-byte limit; nothing was queued`);
  if (!text.trim()) throw new InputError(`${source}: empty input, expected one JSON document; nothing was queued`);
  try {
    return JSON.stringify(JSON.parse(text));
  } catch (err) {
    throw new InputError(`${source}: not JSON (${(err as Error).message}); nothing was queued`);
  }
}

/**
 * Egress: the message is committed to the outbox first, then delivered once now. Whatever
 * happens to that attempt, the message is either delivered, refused by the API for good, or
 * still queued for `serve`: never lost.
 */
export async function collect(deps: {
  config: ThingConfig;
  identity: ThingIdentity;
  store: MessageStore;
  log: Logger;
  body: string;
  via: OutboxVia;
}): Promise<CollectResult> {
  const { config, store, via } = deps;
  const limit = config.yaml.thing.mqtt.offlinePublishQueueing;
  if (limit >= 0 && store.countPending() >= Math.max(limit, 1)) {
    throw new FlashlexError(`the outbox holds ${store.countPending()} undelivered messages (offlinePublishQueueing: ${limit}); nothing was queued`, ExitCode.TEMPFAIL);
  }
  const messageId = randomUUID();
  const now = Date.now();
  const serveRunning = via === "mqtt" && (await callServe(config.dataDir, "GET", "/v1/status").then(() => true, () => false));
  store.enqueue({ messageId, body: deps.body, via, now, notBefore: serveRunning ? now : now + LEASE_MS });
  deps.log.debug("egress.queued", { messageId, via });

  if (serveRunning) return handOverToServe(deps, messageId);
  const entry = store.getOutbox(messageId)!;
  const outcome = via === "http" ? await deliverHttp(entry, deps) : await deliverOverOwnSession(entry, deps);
  recordOutcome(store, entry, outcome, Date.now());
  return toResult(messageId, outcome);
}

function toResult(messageId: string, outcome: DeliveryOutcome): CollectResult {
  if (outcome.kind === "sent") return { messageId, outcome: "sent", status: outcome.status, body: outcome.body };
  if (outcome.kind === "rejected") return { messageId, outcome: "rejected", status: outcome.status, body: outcome.body, error: outcome.error };
  return { messageId, outcome: "queued", status: outcome.status, error: outcome.error };
}

/** `serve` owns the MQTT session: ask it to drain now and watch the row until it is tried. */
async function handOverToServe(deps: { config: ThingConfig; store: MessageStore }, messageId: string): Promise<CollectResult> {
  await callServe(deps.config.dataDir, "POST", "/v1/outbox/drain").catch(() => undefined);
  const deadline = Date.now() + Math.max(deps.config.yaml.thing.mqtt.mqttOperationTimeout, 1) * 1000 + 2000;
  let entry: OutboxEntry | undefined;
  while (Date.now() < deadline) {
    entry = deps.store.getOutbox(messageId);
    if (entry && entry.attempts > 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  if (entry?.state === "sent") return { messageId, outcome: "sent" };
  return { messageId, outcome: "queued", error: entry?.last_error ?? "the running serve has not delivered it yet" };
}

/**
 * No `serve` is running: connect as the thing (persistent session, like serve, so that
 * nothing of the session is discarded) just long enough to publish. Ingress that arrives
 * meanwhile is stored exactly as serve would store it.
 */
async function deliverOverOwnSession(
  entry: OutboxEntry,
  deps: { config: ThingConfig; identity: ThingIdentity; store: MessageStore; log: Logger },
): Promise<DeliveryOutcome> {
  const session = new ThingSession({
    config: deps.config,
    identity: deps.identity,
    log: deps.log,
    subscriptions: [],
    reconnect: false,
    onMessage: createIngressHandler(deps),
  });
  try {
    await session.waitConnected(Math.max(deps.config.yaml.thing.mqtt.connectDisconnectTimeout, 1) * 1000);
    return await deliverMqtt(entry, { ...deps, session });
  } catch (err) {
    return { kind: "retry", error: (err as Error).message };
  } finally {
    await session.stop();
  }
}
