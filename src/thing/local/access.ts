import type { ThingConfig } from "../settings.ts";
import { EXIT_CODE_OF_KIND, ExitCode, FlashlexError, type ErrorKind } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import type { IngressMessage, IngressQuery, MessageStore, OutboxChange, OutboxEntry, OutboxVia } from "../store/message-store.ts";
import { collect, type CollectResult } from "../egress/collect.ts";
import { callServe, fromWire, fromWireOutbox, serveIsRunning, type WireMessage, type WireOutboxEntry } from "./control-socket.ts";
import { deliverHttp, deliverMqtt, type DeliveryOutcome } from "../egress/delivery.ts";
import { HubClock } from "../egress/hub-clock.ts";
import { loadIdentity, type ThingIdentity } from "../identity.ts";
import { createIngressHandler } from "../ingress/handler.ts";
import { ThingSession } from "../mqtt/session.ts";
import { openThingStore, sessionMemory } from "../store/open.ts";
import { explainTlsSetupError } from "../mqtt/tls-setup.ts";

/**
 * What the application side (`messages`, `collect`, FlashlexSDK) does with the thing's data.
 * When `serve` runs, everything goes through its control socket: serve owns the one MQTT
 * session, and on armv7 the WebAssembly SQLite holds the database file exclusively. When it
 * does not run, the command opens the database itself. Both answer the same way.
 */
export interface ThingAccess {
  readonly via: "serve" | "database";
  listMessages(query: IngressQuery): Promise<IngressMessage[]>;
  ackMessages(ids: readonly number[]): Promise<number[]>;
  deleteMessages(ids: readonly number[]): Promise<number[]>;
  collect(body: string, via: OutboxVia): Promise<CollectResult>;
  /** the egress outbox, oldest first; every state unless one is given */
  listOutbox(state?: OutboxState): Promise<OutboxEntry[]>;
  /** rejected (or pending) entries become pending and due now */
  retryOutbox(ids: readonly string[]): Promise<OutboxChange>;
  /** deletes entries in any state */
  dropOutbox(ids: readonly string[]): Promise<OutboxChange>;
  close(): void;
}

export type OutboxState = OutboxEntry["state"];

/**
 * `identity` is loaded only when something needs it (reading messages does not), and always
 * before collect touches the outbox; pass one already loaded to skip reading the files again.
 */
export async function openThingAccess(config: ThingConfig, log: Logger, identity?: ThingIdentity): Promise<ThingAccess> {
  if (await serveIsRunning(config.dataDir)) return serveAccess(config.dataDir);
  return databaseAccess(config, identity ?? (() => loadIdentity(config)), openThingStore(config, log), log);
}

/**
 * The thing's data in this process: used by serve itself (for its socket, with its own
 * deliverers and `onOutboxChanged` waking its drainer) and when serve is not running (a
 * one-shot clock: a skewed clock is found and corrected within the one attempt). `identity`
 * may be a loader: it then runs at the first collect, before the outbox is touched, so a key
 * that does not fit its certificate queues nothing (ConfigError, 78).
 */
export function databaseAccess(
  config: ThingConfig,
  identity: ThingIdentity | (() => ThingIdentity),
  store: MessageStore,
  log: Logger,
  serveHooks?: { deliverers: Record<OutboxVia, (entry: OutboxEntry) => Promise<DeliveryOutcome>>; onOutboxChanged: () => void },
): ThingAccess {
  let loaded = typeof identity === "function" ? undefined : identity;
  const getIdentity = () => (loaded ??= (identity as () => ThingIdentity)());
  const clock = new HubClock(log);
  const deliver = serveHooks?.deliverers ?? {
    http: (entry: OutboxEntry) => deliverHttp(entry, { config, identity: getIdentity(), clock }),
    mqtt: (entry: OutboxEntry) => deliverOverOwnSession(entry, { config, identity: getIdentity(), store, log, clock }),
  };
  return {
    via: "database",
    listMessages: async (query) => store.listIngress(query),
    ackMessages: async (ids) => store.ackIngress(ids, Date.now()),
    deleteMessages: async (ids) => store.deleteIngress(ids),
    collect: async (body, via) => {
      getIdentity();
      return collect({ store, body, via, queueLimit: config.yaml.thing.mqtt.offlinePublishQueueing, deliver: deliver[via] });
    },
    listOutbox: async (state) => store.listOutbox(state),
    retryOutbox: async (ids) => {
      const change = store.retryOutbox(ids, Date.now());
      if (change.changed.length) serveHooks?.onOutboxChanged();
      return change;
    },
    dropOutbox: async (ids) => store.dropOutbox(ids),
    close: () => store.close(),
  };
}

function serveAccess(dataDir: string): ThingAccess {
  const call = async <T>(method: "GET" | "POST", path: string, body?: unknown): Promise<T> => {
    const answer = (await callServe(dataDir, method, path, body)) as { ok: boolean; result: T; error?: string; kind?: ErrorKind; exitCode?: number };
    if (!answer.ok) {
      const kind = answer.kind && answer.kind in EXIT_CODE_OF_KIND ? answer.kind : ((answer.exitCode ?? ExitCode.SOFTWARE) as ExitCode);
      throw new FlashlexError(answer.error ?? "the running serve refused the request", kind);
    }
    return answer.result;
  };
  return {
    via: "serve",
    listMessages: async (query) => (await call<WireMessage[]>("POST", "/v1/messages/list", query)).map(fromWire),
    ackMessages: (ids) => call("POST", "/v1/messages/ack", { ids }),
    deleteMessages: (ids) => call("POST", "/v1/messages/delete", { ids }),
    collect: (body, via) => call("POST", "/v1/collect", { body, via }),
    listOutbox: async (state) => (await call<WireOutboxEntry[]>("POST", "/v1/outbox/list", { state })).map(fromWireOutbox),
    retryOutbox: (ids) => call("POST", "/v1/outbox/retry", { ids }),
    dropOutbox: (ids) => call("POST", "/v1/outbox/drop", { ids }),
    close: () => {},
  };
}

/**
 * `collect --via mqtt` with no serve running: connect as the thing (persistent session, like
 * serve, so nothing of the session is discarded) just long enough to publish. Ingress that
 * arrives meanwhile is stored exactly as serve would store it.
 */
async function deliverOverOwnSession(
  entry: OutboxEntry,
  deps: { config: ThingConfig; identity: ThingIdentity; store: MessageStore; log: Logger; clock: HubClock },
): Promise<DeliveryOutcome> {
  let session: ThingSession;
  try {
    session = new ThingSession({
      config: deps.config,
      identity: deps.identity,
      log: deps.log,
      subscriptions: [],
      reconnect: false,
      ingress: createIngressHandler(deps),
      memory: sessionMemory(deps.store),
    });
  } catch (err) {
    throw explainTlsSetupError(err, deps.config, deps.identity);
  }
  try {
    await session.waitConnected(Math.max(deps.config.yaml.thing.mqtt.connectDisconnectTimeout, 1) * 1000);
    return await deliverMqtt(entry, { ...deps, session });
  } catch (err) {
    return { kind: "retry", error: (err as Error).message };
  } finally {
    await session.stop();
  }
}
