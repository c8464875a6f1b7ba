import { ingressMessageId, ingressWirePayload } from "../../protocol/ingress.ts";
import { ingressTopic } from "../../protocol/topics.ts";
import { GroupCommit } from "../../shared/group-commit.ts";
import type { Logger } from "../../shared/log.ts";
import type { HubStore } from "../store/hub-store.ts";
import type { MessageFeed } from "./feed.ts";

/** An ingress message the thing has not acknowledged, as it is handed to the broker. */
export interface PendingIngress {
  flmessagespk: string;
  /** the stored text, `{"message": ...}`; published with the id added */
  payload: string;
}

export interface IngressLedger {
  /** the thing's ingress messages not yet acknowledged, oldest first */
  pending(thingName: string): Promise<PendingIngress[]>;
  /** the thing's PUBACK for this message arrived (`thingName`'s, at `at` Unix ms) */
  delivered(flmessagespk: string, at: number, thingName: string): Promise<void>;
}

/**
 * The hub database as a ledger: by thing name, as the broker knows things. The PUBACKs that
 * arrive together are recorded in one transaction (group commit): one fsync for a fan-out's
 * worth of acknowledgements, not one each. A message marked delivered now (not one delivered
 * before) is told to `feed`.
 */
export function ingressLedger(store: HubStore, feed?: MessageFeed): IngressLedger {
  const deliveries = new GroupCommit({ commit: (items: { flmessagespk: string; at: number }[]) => store.markDelivered(items) });
  return {
    async pending(thingName) {
      const thing = await store.getThingByName(thingName);
      return thing ? await store.pendingIngress(thing.id) : [];
    },
    async delivered(flmessagespk, at, thingName) {
      if (await deliveries.submit({ flmessagespk, at })) feed?.publish({ type: "delivered", thingName, flmessagespk, at });
    },
  };
}

export interface IngressDeliveryOptions {
  ledger: IngressLedger;
  /** hands one message to the broker (QoS 1); resolves once the broker queued it */
  publish(topic: string, payload: string): Promise<void>;
  log: Logger;
  now?: () => number;
}

/** The longest a connection that never became ready holds its thing's hand-overs. */
const GATE_TIMEOUT_MS = 30_000;

/**
 * Ingress that outlives the embedded broker. aedes keeps its sessions in memory, so the QoS 1
 * messages it queues for an offline thing vanish when the hub restarts. The hub database is the
 * record instead: an ingress message stays `pending` there until the thing's PUBACK for it
 * arrives, and this class decides when to hand pending messages to aedes.
 *
 * The rule, per thing, within one hub process:
 * - Once the thing's persistent session (clean: false) has a QoS 1 subscription to its ingress
 *   topic, aedes queues whatever is published there and delivers it across reconnects. So the
 *   first such subscription replays every pending message from the database, oldest first, and
 *   from then on each new message is handed over once. Nothing handed over in this process is
 *   handed over again: that would duplicate what aedes already holds.
 * - Before that subscription (the hub just started, or the thing never connected since), aedes
 *   has no session to queue into: a message is still published (a connected clean-session
 *   subscriber sees it live) but stays pending until the replay.
 * - A clean-session connect under the thing's name makes aedes drop the session and its queue
 *   (lib/handlers/connect.js `emptyQueueFilter`), so the next subscription replays again.
 * - A clean session (the old Python distribution's MQTT client) holds nothing between
 *   connections: each time it subscribes to its ingress topic at QoS 1, every pending message
 *   not in flight on that connection is published to it. Its PUBACKs mark messages delivered
 *   like a persistent session's: aedes keeps no packet for a clean session (its `ack` event
 *   carries none), so the hub notes, in order, what aedes forwarded to that connection at QoS 1,
 *   and takes each PUBACK for the oldest one (MQTT 3.1.1 §4.6: PUBACKs come in the order of the
 *   PUBLISHes). So a thing that moves from the old client to the agent gets exactly what the
 *   old client never acknowledged: nothing is lost, nothing replayed.
 * - While aedes resends a resumed session's queue (between its `client` and `clientReady`
 *   events), nothing new is handed over for that thing: a live delivery would overtake the
 *   queue and reach the thing out of order.
 *
 * Guarantee: a message is marked delivered only after the thing's PUBACK, which the agent sends
 * after its own commit; a kill -9 between that PUBACK and our write to the database leaves it
 * pending, and it is sent again after the restart. Every message carries its id (flmessagespk,
 * src/protocol/ingress.ts), by which the agent stores it once: delivery is exactly once.
 */
export class IngressDelivery {
  /** things whose persistent session in aedes is subscribed to their ingress at QoS 1 */
  private readonly subscribed = new Set<string>();
  /** things whose pending messages must be replayed before anything else is handed over */
  private readonly replayDue = new Set<string>();
  /** per thing, the ids aedes holds in its persistent session's queue in this process */
  private readonly handed = new Map<string, Set<string>>();
  /** per thing with a clean session connected: what aedes forwarded to it at QoS 1, oldest first (undefined: not a hub message) */
  private readonly cleanInFlight = new Map<string, (string | undefined)[]>();
  /** per thing whose session aedes is resuming: released once its queue was resent */
  private readonly gates = new Map<string, { closed: Promise<void>; open: () => void }>();
  /** per thing, the hand-over task running now (past its gate) */
  private readonly active = new Map<string, Promise<void>>();
  /** per thing, the tail of its hand-over chain: one thing's messages go to aedes in order */
  private readonly chains = new Map<string, Promise<void>>();
  private readonly now: () => number;

  constructor(private readonly opts: IngressDeliveryOptions) {
    this.now = opts.now ?? Date.now;
  }

  /**
   * A new message, already stored as pending. Rejects if the broker did not take it. While the
   * thing's session is being resumed it resolves at once: the message waits its turn in the
   * database, and if handing it over fails then, it is replayed at the next subscription.
   */
  send(thingName: string, message: PendingIngress): Promise<void> {
    const task = this.serially(thingName, async () => {
      if (!this.subscribed.has(thingName)) return this.publish(thingName, message);
      // The replay reads the database, where this message already is: it goes out in its turn.
      await this.replayIfDue(thingName);
      await this.handOver(thingName, message);
    });
    if (!this.gates.has(thingName)) return task;
    task.catch((err) => {
      this.replayDue.add(thingName);
      this.opts.log.warn("hub.ingress_handover_failed", { thing: thingName, message: message.flmessagespk, error: err });
    });
    return Promise.resolve();
  }

  /**
   * A connection of the thing is starting, before aedes restores its session: hand-overs stop,
   * and this resolves once the one in progress has finished, so that nothing reaches the new
   * connection ahead of the queue aedes resends. `sessionReady` lets them go on; a connection
   * that never gets that far opens the gate after `GATE_TIMEOUT_MS` at the latest.
   */
  async sessionConnecting(thingName: string): Promise<void> {
    if (!this.gates.has(thingName)) {
      let open!: () => void;
      const closed = new Promise<void>((resolve) => (open = resolve));
      const timer = setTimeout(() => this.sessionReady(thingName), GATE_TIMEOUT_MS);
      timer.unref?.();
      this.gates.set(thingName, { closed, open: () => (clearTimeout(timer), open()) });
    }
    await this.active.get(thingName)?.catch(() => {});
  }

  /** aedes resent the session's queue (or the connection ended): hand-overs go on. */
  sessionReady(thingName: string): void {
    this.gates.get(thingName)?.open();
    this.gates.delete(thingName);
  }

  /** The thing subscribed to its ingress topic at QoS 1 or 2, with a persistent or a clean session. */
  sessionSubscribed(thingName: string, clean = false): void {
    if (clean) {
      this.serially(thingName, () => this.replayToClean(thingName)).catch(() => {});
      return;
    }
    if (this.subscribed.has(thingName)) return; // aedes already holds the session and its queue
    this.subscribed.add(thingName);
    this.replayDue.add(thingName);
    this.serially(thingName, () => this.replayIfDue(thingName)).catch(() => {});
  }

  /** The session unsubscribed: new messages are no longer queued, what aedes holds still goes out. */
  sessionUnsubscribed(thingName: string): void {
    this.subscribed.delete(thingName);
    this.replayDue.delete(thingName);
  }

  /** A clean-session connect: aedes dropped the session and everything queued in it. */
  sessionDiscarded(thingName: string): void {
    this.sessionUnsubscribed(thingName);
    this.handed.delete(thingName);
    this.cleanInFlight.set(thingName, []);
  }

  /** The thing's connection closed: a clean session's unacknowledged messages stay pending. */
  connectionClosed(thingName: string): void {
    this.cleanInFlight.delete(thingName);
    this.sessionReady(thingName);
  }

  /** aedes forwards a QoS 1 packet to the thing's clean session (any topic, to keep PUBACKs in step). */
  forwardedToClean(thingName: string, topic: string, payload: Buffer | string): void {
    const inFlight = this.cleanInFlight.get(thingName);
    if (!inFlight) return;
    inFlight.push(topic === ingressTopic(thingName) ? ingressMessageId(payload) : undefined);
  }

  /** The thing's clean session sent a PUBACK: it acknowledges the oldest packet forwarded to it. */
  cleanAcknowledged(thingName: string): void {
    const id = this.cleanInFlight.get(thingName)?.shift();
    if (id) this.markDelivered(thingName, id);
  }

  /** The thing's persistent session acknowledged this packet (aedes' copy of it, without our properties). */
  acknowledged(thingName: string, payload: Buffer | string): void {
    const id = ingressMessageId(payload);
    if (!id) return; // e.g. the bootstrap echo: not a stored message
    this.handed.get(thingName)?.delete(id);
    this.markDelivered(thingName, id);
  }

  private markDelivered(thingName: string, id: string): void {
    this.opts.ledger.delivered(id, this.now(), thingName).then(
      () => this.opts.log.info("hub.ingress_delivered", { thing: thingName, message: id }),
      // It stays pending and is sent again after the next hub start; the thing stores it once.
      (err) => this.opts.log.warn("hub.ingress_mark_failed", { thing: thingName, message: id, error: err }),
    );
  }

  private async replayIfDue(thingName: string): Promise<void> {
    if (!this.replayDue.delete(thingName)) return;
    let count = 0;
    try {
      for (const message of await this.opts.ledger.pending(thingName)) {
        if (this.handed.get(thingName)?.has(message.flmessagespk)) continue;
        await this.handOver(thingName, message);
        count++;
      }
    } catch (err) {
      // Try again with the next message for this thing (or the next subscription).
      this.replayDue.add(thingName);
      this.opts.log.warn("hub.ingress_replay_failed", { thing: thingName, error: err });
      return;
    }
    if (count) this.opts.log.info("hub.ingress_replayed", { thing: thingName, count });
  }

  private async replayToClean(thingName: string): Promise<void> {
    const inFlight = new Set(this.cleanInFlight.get(thingName) ?? []);
    let count = 0;
    try {
      for (const message of await this.opts.ledger.pending(thingName)) {
        if (inFlight.has(message.flmessagespk)) continue;
        await this.publish(thingName, message);
        count++;
      }
    } catch (err) {
      this.opts.log.warn("hub.ingress_replay_failed", { thing: thingName, session: "clean", error: err });
      return;
    }
    if (count) this.opts.log.info("hub.ingress_replayed", { thing: thingName, count, session: "clean" });
  }

  private async handOver(thingName: string, message: PendingIngress): Promise<void> {
    let handed = this.handed.get(thingName);
    if (!handed) {
      handed = new Set();
      this.handed.set(thingName, handed);
    }
    if (handed.has(message.flmessagespk)) return;
    // Recorded before publishing: the PUBACK may come back before the publish callback does.
    handed.add(message.flmessagespk);
    try {
      await this.publish(thingName, message);
    } catch (err) {
      handed.delete(message.flmessagespk);
      throw err;
    }
  }

  private publish(thingName: string, message: PendingIngress): Promise<void> {
    return this.opts.publish(ingressTopic(thingName), ingressWirePayload(message.payload, message.flmessagespk));
  }

  /** Runs `task` after the thing's earlier tasks, and after its session finished resuming. */
  private serially(thingName: string, task: () => Promise<void>): Promise<void> {
    const gated = async () => {
      for (let gate = this.gates.get(thingName); gate; gate = this.gates.get(thingName)) await gate.closed;
      const running = task();
      this.active.set(thingName, running);
      try {
        await running;
      } finally {
        if (this.active.get(thingName) === running) this.active.delete(thingName);
      }
    };
    const run = (this.chains.get(thingName) ?? Promise.resolve()).then(gated);
    const tail = run.catch(() => {});
    this.chains.set(thingName, tail);
    void tail.then(() => {
      if (this.chains.get(thingName) === tail) this.chains.delete(thingName);
    });
    return run;
  }
}
