import type { Server } from "node:http";
import type { ThingConfig } from "../config/load.ts";
import type { Logger } from "../log.ts";
import type { MessageStore } from "../store/message-store.ts";
import { openThingStore } from "./store.ts";
import { closeControlSocket, listenControlSocket } from "./control-socket.ts";
import { deliverHttp, deliverMqtt } from "./egress.ts";
import { ExecRunner } from "./exec-runner.ts";
import { loadIdentity, type ThingIdentity } from "./identity.ts";
import { createIngressHandler } from "./ingress.ts";
import { OutboxDrainer } from "./outbox.ts";
import { ThingSession } from "./session.ts";

export interface AgentOptions {
  config: ThingConfig;
  log: Logger;
  /** serve --exec */
  exec?: string;
}

export interface RunningAgent {
  stop(): Promise<void>;
}

/** Pause between the messages of the guide's `basicPubsub` and `test` threads. */
const THREAD_INTERVAL_MS = 5000;
const UNACKED_WARNING = 10_000;

/**
 * `serve`: the long-running agent. config → session → ingress handler → store → application
 * (messages / --exec / SDK), and the outbox drained through HTTP or the same session.
 */
export async function startAgent(options: AgentOptions): Promise<RunningAgent> {
  const { config, log } = options;
  const identity = loadIdentity(config);
  const store = openThingStore(config, log);
  const app = config.yaml.app;
  const mqttConfig = config.yaml.thing.mqtt;
  const timers: ReturnType<typeof setInterval>[] = [];
  let control: Server | undefined;
  let session: ThingSession | undefined;
  let drainer: OutboxDrainer | undefined;
  let runner: ExecRunner | undefined;

  try {
    const runnerRef = options.exec ? new ExecRunner({ store, command: options.exec, log }) : undefined;
    runner = runnerRef;
    const subscriptions = app.thread === "basicPubsub" ? [requirePubsubTopic(config)] : [mqttConfig.ingress.topic];
    session = new ThingSession({
      config,
      identity,
      log,
      subscriptions,
      onMessage: createIngressHandler({ config, store, log, onStored: () => runnerRef?.wake() }),
    });
    const sessionRef = session;
    drainer = new OutboxDrainer({
      store,
      log,
      ratePerSecond: mqttConfig.drainingFrequency,
      deliverers: {
        http: (entry) => deliverHttp(entry, { config, identity }),
        mqtt: (entry) => deliverMqtt(entry, { config, identity, session: sessionRef }),
      },
    });
    const drainerRef = drainer;
    session.on("connected", () => drainerRef.wake());
    control = await listenControlSocket(config.dataDir, {
      status: () => ({ thingName: identity.thingName, connected: sessionRef.connected, pending: store.countPending(), ...store.countIngress() }),
      drainOutbox: () => drainerRef.wake(),
    });

    log.info("serve.started", {
      thing: identity.thingName,
      broker: `${config.yaml.thing.endpoint}:${mqttConfig.port}`,
      database: config.paths.database,
      driver: store.db.driver,
      callback: app.callback,
      thread: app.thread,
      exec: options.exec ? "yes" : undefined,
    });
    drainer.start();
    runner?.wake();
    timers.push(startExpiry(store, app.db.expireSeconds, log));
    const thread = startThread(config, identity, session, log);
    if (thread) timers.push(thread);
  } catch (err) {
    await session?.stop();
    if (control) await closeControlSocket(control, config.dataDir);
    store.close();
    throw err;
  }

  return {
    async stop() {
      log.info("serve.stopping");
      for (const timer of timers) clearInterval(timer);
      await Promise.all([drainer?.stop(), runner?.stop()]);
      await session?.stop();
      if (control) await closeControlSocket(control, config.dataDir);
      store.close();
      log.info("serve.stopped");
    },
  };
}

function requirePubsubTopic(config: ThingConfig): string {
  const topic = config.yaml.thing.mqtt.pubsub?.topic;
  if (!topic) throw new Error("app.thread basicPubsub needs flashlex.thing.mqtt.pubsub.topic");
  return topic;
}

function startExpiry(store: MessageStore, expireSeconds: number, log: Logger): ReturnType<typeof setInterval> {
  const sweep = () => {
    const removed = store.expire(Date.now(), expireSeconds);
    if (removed.ingress || removed.outbox) log.info("store.expired", { ...removed });
    const { unacked } = store.countIngress();
    if (unacked >= UNACKED_WARNING) log.warn("store.unacked_growing", { unacked, hint: "acknowledge with `flashlex messages ack` or serve --exec" });
  };
  sweep();
  return setInterval(sweep, Math.min(expireSeconds, 60) * 1000);
}

/** The guide's `basicPubsub` and `test` threads: publish a numbered message every 5 s. */
function startThread(config: ThingConfig, identity: ThingIdentity, session: ThingSession, log: Logger): ReturnType<typeof setInterval> | undefined {
  const app = config.yaml.app;
  if (app.thread === "subscribe") return undefined;
  const topic = app.thread === "basicPubsub" ? requirePubsubTopic(config) : "flashlex/test";
  const limit = app.loopCount ?? (app.thread === "test" ? 10 : Infinity);
  let sequence = 0;
  const timer = setInterval(() => {
    if (!session.connected) return;
    if (sequence >= limit) return clearInterval(timer);
    const body =
      app.thread === "test"
        ? { thingId: identity.thingId, thingName: identity.thingName, message: app.message, sequence }
        : { message: app.message, sequence };
    sequence++;
    session.publish(topic, JSON.stringify(body), 1).then(
      () => log.info("thread.published", { topic, sequence: body.sequence }),
      (err: Error) => log.warn("thread.publish_failed", { topic, error: err }),
    );
  }, THREAD_INTERVAL_MS);
  return timer;
}
