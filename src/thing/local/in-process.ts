/**
 * The thing's data in this process: the message database, and delivery of what `collect` queues.
 */
import { FlashlexError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { collect } from "../egress/collect.ts";
import { type DeliveryOutcome, deliverHttp, deliverMqtt } from "../egress/delivery.ts";
import { HubClock } from "../egress/hub-clock.ts";
import { TokenFile } from "../egress/token-file.ts";
import { ThingTokens } from "../egress/tokens.ts";
import type { ThingIdentity } from "../identity.ts";
import type { ThingSession } from "../mqtt/session.ts";
import type { ThingConfig } from "../settings.ts";
import type { MessageStore, OutboxEntry, OutboxVia } from "../store/message-store.ts";
import type { ThingAccess } from "./access.ts";

/**
 * The thing's data in this process: used by serve itself (for its socket, with its own
 * deliverers and `onOutboxChanged` waking its drainer) and when serve is not running (a
 * one-shot clock: a skewed clock is found and corrected within the one attempt; the egress token
 * kept in the data directory, token-file.ts). `identity` may be a loader: it then runs at the
 * first collect, before the outbox is touched, so a key that does not fit its certificate queues
 * nothing (ConfigError, 78), unless a kept token stands for that check (HTTP only: MQTT needs the
 * keys for TLS).
 */
export function databaseAccess(
  config: ThingConfig,
  identity: ThingIdentity | (() => Promise<ThingIdentity>),
  store: MessageStore,
  log: Logger,
  serveHooks?: {
    deliverers: Record<OutboxVia, (entry: OutboxEntry, signal?: AbortSignal) => Promise<DeliveryOutcome>>;
    onOutboxChanged: () => void;
    /** what a collect left queued adds to its error (not to the row's): serve's config edited since it read it */
    queuedNote?: () => string | undefined;
  },
): ThingAccess {
  let loading = typeof identity === "function" ? undefined : Promise.resolve(identity);
  // a failed load is tried again at the next call (an SDK app's owner may fix the files meanwhile)
  const getIdentity = () =>
    (loading ??= (identity as () => Promise<ThingIdentity>)().catch((err) => {
      loading = undefined;
      throw err;
    }));
  const clock = new HubClock(log);
  const tokens = new ThingTokens(clock, serveHooks ? undefined : new TokenFile(config));
  const deliver = serveHooks?.deliverers ?? {
    http: (entry: OutboxEntry, signal?: AbortSignal) => deliverHttp(entry, { config, identity: getIdentity, clock, tokens }, signal),
    mqtt: async (entry: OutboxEntry, signal?: AbortSignal) =>
      deliverOverOwnSession(entry, { config, identity: await getIdentity(), store, log, clock }, signal),
  };
  return {
    via: "database",
    served: store.wasServed(),
    listMessages: async (query) => store.listIngress(query),
    ackMessages: async (ids) => store.ackIngress(ids, Date.now()),
    deleteMessages: async (ids) => store.deleteIngress(ids),
    collect: async (body, via) => {
      if (!serveHooks && (via === "mqtt" || !tokens.hasKept())) await getIdentity();
      const result = await collect({
        store,
        body,
        via,
        thingId: config.yaml.thing.id,
        queueLimit: config.yaml.thing.mqtt.offlinePublishQueueing,
        deliver: deliver[via],
        // A command's own store, untouched by an HTTP attempt (ingress during an MQTT one is stored):
        // on armv7 a serve started during the attempt may then open the database.
        releaseFileDuringAttempt: !serveHooks && via === "http",
      });
      const note = result.outcome === "queued" ? serveHooks?.queuedNote?.() : undefined;
      return note ? { ...result, error: `${result.error}; ${note}` } : result;
    },
    listOutbox: async (state, page) => store.listOutbox(state, page),
    retryOutbox: async (ids) => {
      const change = store.retryOutbox(ids, Date.now(), config.yaml.thing.id);
      if (change.changed.length) serveHooks?.onOutboxChanged();
      return change;
    },
    resendOutbox: async (sentSince) => {
      const change = store.resendOutbox(sentSince, Date.now(), config.yaml.thing.id);
      if (change.changed.length) serveHooks?.onOutboxChanged();
      return change;
    },
    dropOutbox: async (ids) => store.dropOutbox(ids),
    close: () => store.close(),
  };
}

/**
 * `collect --via mqtt` with no serve running: connect as the thing (persistent session, like
 * serve, so nothing of the session is discarded) just long enough to publish. Ingress that
 * arrives meanwhile is stored exactly as serve would store it.
 *
 * The session is the thing's one client id: two at once take it from each other (the broker
 * drops the older connection), so it is held under serve's lock. Concurrent one-shot collects
 * take turns; when the lock stays taken (a serve started meanwhile, which drains the outbox) the
 * message stays queued.
 */
async function deliverOverOwnSession(
  entry: OutboxEntry,
  deps: { config: ThingConfig; identity: ThingIdentity; store: MessageStore; log: Logger; clock: HubClock },
  signal?: AbortSignal,
): Promise<DeliveryOutcome> {
  // MQTT is loaded only here: `collect` over HTTP, the default, starts without it.
  const [{ ThingSession }, { createIngressHandler }, { explainTlsSetupError }, { acquireServeLock, acquireSessionLock }] = await Promise.all([
    import("../mqtt/session.ts"),
    import("../ingress/handler.ts"),
    import("../mqtt/tls-setup.ts"),
    import("./serve-lock.ts"),
  ]);
  const thing = deps.config.yaml.thing;
  const busy = () => new FlashlexError(`${thing.name}: another flashlex process is connected as this thing`, "try-later");
  // the data directory's lock, then the thing's session, whatever directory its holder uses
  const lock = await takeTurn(async () => {
    const directory = await acquireServeLock(deps.config.dataDir);
    try {
      const taken = await acquireSessionLock(deps.config.paths.privateKey, busy);
      return { release: async () => (await taken.release(), await directory.release()) };
    } catch (err) {
      await directory.release();
      throw err;
    }
  }, deps.config.timeouts.connectMs);
  if (!lock) {
    return {
      kind: "retry",
      error: `another flashlex process held the thing's MQTT session for ${deps.config.timeouts.connectMs / 1000} s (a serve, with this data directory or another, or another collect --via mqtt)`,
    };
  }
  try {
    return await publishOverOwnSession();
  } finally {
    await lock.release();
  }

  async function publishOverOwnSession(): Promise<DeliveryOutcome> {
    let session: ThingSession;
    try {
      session = new ThingSession({
        config: deps.config,
        identity: deps.identity,
        log: deps.log,
        subscriptions: [],
        reconnect: false,
        ingress: createIngressHandler(deps),
      });
    } catch (err) {
      throw explainTlsSetupError(err, deps.config, deps.identity);
    }
    // Its own session does not reconnect: once the connection ends, a PUBACK cannot come (MQTT.js
    // would keep the message for a reconnect), so the wait ends with it, not at the attempt's end.
    const ended = new AbortController();
    session.once("fatal", (err: Error) => ended.abort(new Error(`the connection closed: ${err.message}`)));
    try {
      await session.waitConnected(deps.config.timeouts.connectMs);
      return await deliverMqtt(entry, { ...deps, session }, signal ? AbortSignal.any([signal, ended.signal]) : ended.signal);
    } catch (err) {
      return { kind: "retry", error: (err as Error).message };
    } finally {
      await session.stop();
    }
  }
}

/** `take` until it does not throw try-later, every 50-100 ms, for up to `waitMs`; undefined when the time ran out. */
async function takeTurn<T>(take: () => Promise<T>, waitMs: number): Promise<T | undefined> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      return await take();
    } catch (err) {
      if (!(err instanceof FlashlexError) || err.kind !== "try-later") throw err;
      if (Date.now() >= deadline) return undefined;
      await new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 50));
    }
  }
}
