import type { Logger } from "../log.ts";
import { ingressTopic } from "./broker.ts";
import type { HubStore } from "./hub-store.ts";

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
 *
 * Guarantee: at least once, for a thing with a persistent session. A message is marked delivered
 * only after the thing's PUBACK, which the agent sends after its own commit; a kill -9 between
 * that PUBACK and our write to the database leaves it pending, and it is sent again (a
 * duplicate) after the restart. Clean sessions are not tracked: aedes cannot tell which message
 * their PUBACK acknowledges (its `ack` event carries no packet for them).
 */
export interface PendingIngress {
  flmessagespk: string;
  /** the published text, `{"message": ...}` */
  payload: string;
}

export interface IngressLedger {
  /** the thing's ingress messages not yet acknowledged, oldest first */
  pending(thingName: string): Promise<PendingIngress[]>;
  /** the thing's PUBACK for this message arrived */
  delivered(flmessagespk: string, at: number): Promise<void>;
}

/** The hub database as a ledger: by thing name, as the broker knows things. */
export function ingressLedger(store: HubStore): IngressLedger {
  return {
    async pending(thingName) {
      const thing = await store.getThingByName(thingName);
      return thing ? await store.pendingIngress(thing.id) : [];
    },
    async delivered(flmessagespk, at) {
      await store.markDelivered(flmessagespk, at);
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

export class IngressDelivery {
  /** things whose persistent session in aedes is subscribed to their ingress at QoS 1 */
  private readonly subscribed = new Set<string>();
  /** things whose pending messages must be replayed before anything else is handed over */
  private readonly replayDue = new Set<string>();
  /** per thing, what aedes holds for it in this process, in hand-over order, by message id */
  private readonly handed = new Map<string, Map<string, string>>();
  /** per thing, the tail of its hand-over chain: one thing's messages go to aedes in order */
  private readonly chains = new Map<string, Promise<void>>();
  private readonly now: () => number;

  constructor(private readonly opts: IngressDeliveryOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** A new message, already stored as pending. Rejects if the broker did not take it. */
  send(thingName: string, message: PendingIngress): Promise<void> {
    return this.serially(thingName, async () => {
      if (!this.subscribed.has(thingName)) return this.opts.publish(ingressTopic(thingName), message.payload);
      // The replay reads the database, where this message already is: it goes out in its turn.
      await this.replayIfDue(thingName);
      await this.handOver(thingName, message);
    });
  }

  /** The thing's persistent session subscribed to its ingress topic at QoS 1 or 2. */
  sessionSubscribed(thingName: string): void {
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
  }

  /**
   * The thing acknowledged a message with this payload. aedes' `ack` event gives back the
   * queued packet (topic, payload, its own counters) but not our id, so the message is found by
   * payload: the oldest handed-over one with these bytes. Two pending messages with the same
   * payload are interchangeable to the thing, so taking the oldest is right either way.
   */
  acknowledged(thingName: string, payload: string): void {
    const handed = this.handed.get(thingName);
    if (!handed) return;
    for (const [id, text] of handed) {
      if (text !== payload) continue;
      handed.delete(id);
      this.opts.ledger.delivered(id, this.now()).then(
        () => this.opts.log.info("hub.ingress_delivered", { thing: thingName, message: id }),
        // It stays pending and is sent again after the next hub start: a duplicate, not a loss.
        (err) => this.opts.log.warn("hub.ingress_mark_failed", { thing: thingName, message: id, error: err }),
      );
      return;
    }
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

  private async handOver(thingName: string, message: PendingIngress): Promise<void> {
    let handed = this.handed.get(thingName);
    if (!handed) this.handed.set(thingName, (handed = new Map()));
    if (handed.has(message.flmessagespk)) return;
    // Recorded before publishing: the PUBACK may come back before the publish callback does.
    handed.set(message.flmessagespk, message.payload);
    try {
      await this.opts.publish(ingressTopic(thingName), message.payload);
    } catch (err) {
      handed.delete(message.flmessagespk);
      throw err;
    }
  }

  private serially(thingName: string, task: () => Promise<void>): Promise<void> {
    const run = (this.chains.get(thingName) ?? Promise.resolve()).then(task);
    const tail = run.catch(() => {});
    this.chains.set(thingName, tail);
    void tail.then(() => {
      if (this.chains.get(thingName) === tail) this.chains.delete(thingName);
    });
    return run;
  }
}
