/**
 * FlashlexSDK: what a Bun or Node application on the thing uses, the TypeScript counterpart
 * of the Python SDK's class. It reads the same config as `flashlex serve` and reaches the same
 * data: through the running serve when there is one, else the database file directly.
 *
 *   const sdk = await FlashlexSDK.open({ config: "/home/pi/thing/config.yml" });
 *   const result = await sdk.collectMessage({ foo: "bar" });                   // egress
 *   for (const m of await sdk.getMessages()) { handle(m); await sdk.ackMessages([m.id]); }
 *   sdk.close();
 */

import { type Logger, silentLogger } from "../shared/log.ts";
import { type CollectResult, parseEgressDocument } from "../thing/egress/collect.ts";
import type { IngressMessage, IngressQuery, OutboxChange, OutboxEntry, OutboxState, OutboxVia, ThingAccess } from "../thing/local/access.ts";
import { openThingAccess } from "../thing/local/open.ts";
import { type ConfigLocation, loadThingConfig, type ThingConfig } from "../thing/settings.ts";

export type { CollectResult, ConfigLocation, IngressMessage, IngressQuery, OutboxChange, OutboxEntry, OutboxState };

export class FlashlexSDK {
  private constructor(
    readonly config: ThingConfig,
    private readonly access: ThingAccess,
  ) {}

  /** Opens the thing's config (-c/-k/-d as on the command line). */
  static async open(location: ConfigLocation, options: { log?: Logger } = {}): Promise<FlashlexSDK> {
    const config = loadThingConfig(location);
    return new FlashlexSDK(config, await openThingAccess(config, options.log ?? silentLogger));
  }

  /**
   * Egress, like `flashlex collect`: queues the document durably, then tries to deliver it.
   * `outcome` is `sent` (with the API's `status` and `body`), `rejected`, or `queued` (the
   * API was unreachable; `flashlex serve` delivers it later). Rejects with InputError for a
   * value that is not JSON-serialisable or is over the size limit, and with a FlashlexError of
   * exit code 75 when it was not delivered and may not wait (`offlinePublishQueueing` 0, or N
   * already waiting): then nothing was queued.
   */
  async collectMessage(document: unknown, options: { via?: OutboxVia } = {}): Promise<CollectResult> {
    const body = parseEgressDocument(JSON.stringify(document) ?? "", "collectMessage");
    return this.access.collect(body, options.via ?? "http");
  }

  /** Ingress messages, unacknowledged ones by default, oldest first. */
  getMessages(query: IngressQuery = {}): Promise<IngressMessage[]> {
    return this.access.listMessages(query);
  }

  /** Marks messages as handled; resolves to the ids that existed. */
  ackMessages(ids: readonly number[]): Promise<number[]> {
    return this.access.ackMessages(ids);
  }

  deleteMessages(ids: readonly number[]): Promise<number[]> {
    return this.access.deleteMessages(ids);
  }

  /** The egress outbox, like `flashlex outbox list` (states: src/thing/egress/outbox.ts). */
  listOutbox(state?: OutboxState): Promise<OutboxEntry[]> {
    return this.access.listOutbox(state);
  }

  /** Like `flashlex outbox retry`: rejected (or pending) messages become pending, due now. */
  retryOutbox(messageIds: readonly string[]): Promise<OutboxChange> {
    return this.access.retryOutbox(messageIds);
  }

  /** Like `flashlex outbox drop`: deletes messages from the outbox, whatever their state. */
  dropOutbox(messageIds: readonly string[]): Promise<OutboxChange> {
    return this.access.dropOutbox(messageIds);
  }

  close(): void {
    this.access.close();
  }
}
