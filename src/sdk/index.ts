/**
 * FlashlexSDK: what a Bun or Node application on the thing uses, the TypeScript counterpart
 * of the Python SDK's class. It reads the same config and the same message database as
 * `flashlex serve`, so an application can run beside the service:
 *
 *   const sdk = FlashlexSDK.open({ config: "/home/pi/thing/config.yml" });
 *   const result = await sdk.collectMessage({ foo: "bar" });   // egress
 *   for (const m of sdk.getMessages()) { handle(m); sdk.ackMessages([m.id]); }  // ingress
 *   sdk.close();
 */
import { loadThingConfig, type ConfigLocation, type ThingConfig } from "../config/load.ts";
import { silentLogger, type Logger } from "../log.ts";
import { openThingStore } from "../thing/store.ts";
import { type MessageStore, type IngressMessage, type IngressQuery, type OutboxVia } from "../store/message-store.ts";
import { collect, parseEgressDocument, type CollectResult } from "../thing/collect.ts";
import { loadIdentity, type ThingIdentity } from "../thing/identity.ts";

export type { CollectResult, IngressMessage, IngressQuery, ConfigLocation };

export class FlashlexSDK {
  private constructor(
    readonly config: ThingConfig,
    private readonly identity: ThingIdentity,
    private readonly store: MessageStore,
    private readonly log: Logger,
  ) {}

  /** Opens the thing's config (-c/-k/-d as on the command line) and its message database. */
  static open(location: ConfigLocation, options: { log?: Logger } = {}): FlashlexSDK {
    const config = loadThingConfig(location);
    const identity = loadIdentity(config);
    return new FlashlexSDK(config, identity, openThingStore(config, options.log ?? silentLogger), options.log ?? silentLogger);
  }

  /**
   * Egress, like `flashlex collect`: queues the document durably, then tries to deliver it.
   * `outcome` is `sent` (with the API's `status` and `body`), `rejected`, or `queued` (the
   * API was unreachable; `flashlex serve` delivers it later). Throws InputError for a value
   * that is not JSON-serialisable or is over the size limit.
   */
  async collectMessage(document: unknown, options: { via?: OutboxVia } = {}): Promise<CollectResult> {
    const text = JSON.stringify(document);
    const body = parseEgressDocument(text ?? "", "collectMessage");
    return collect({ config: this.config, identity: this.identity, store: this.store, log: this.log, body, via: options.via ?? "http" });
  }

  /** Ingress messages, unacknowledged ones by default, oldest first. */
  getMessages(query: IngressQuery = {}): IngressMessage[] {
    return this.store.listIngress(query);
  }

  /** Marks messages as handled; returns the ids that existed. */
  ackMessages(ids: readonly number[]): number[] {
    return this.store.ackIngress(ids, Date.now());
  }

  deleteMessages(ids: readonly number[]): number[] {
    return this.store.deleteIngress(ids);
  }

  close(): void {
    this.store.close();
  }
}
