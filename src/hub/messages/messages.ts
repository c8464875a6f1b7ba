/**
 * src/hub/messages: the message use cases, called by the HTTP API, the CLI and the broker.
 *
 *   messages.ts          Messages: send ingress to one thing or many (stored as pending,
 *                        undone if the broker refuses), list, delete, archive
 *   collect.ts           egress, over HTTP or MQTT: authenticate the thing's token, store once
 *   ingress-delivery.ts  pending ingress until the thing's PUBACK, across hub restarts
 *   archive.ts           the export zip (archive-zip.ts writes it)
 *   feed.ts              the live feed of collected, sent and delivered messages (the console)
 */
import { newMessageId } from "../../protocol/ids.ts";
import { JsonDocumentError, MAX_JSON_DEPTH, parseJsonDocument, WRITTEN_TEXT_FACTOR } from "../../protocol/limits.ts";
import { ConflictError, FlashlexError } from "../../shared/errors.ts";
import { GroupCommit } from "../../shared/group-commit.ts";
import type { Logger } from "../../shared/log.ts";
import { isoSeconds } from "../../shared/time.ts";
import type { HubHome } from "../home/home.ts";
import type { HubStore, MessageInsert, MessageQuery, MessageRecord, MessageType, ThingRecord, ThingTarget } from "../store/hub-store.ts";
import { type Archive, archivePageRows, openArchive } from "./archive.ts";
import type { MessageFeed } from "./feed.ts";
import { type MessagePages, openMessagePages } from "./pages.ts";

export type { MessageQuery, MessageType };

/**
 * An ingress message as the hub stores and sends it: the guide's wrapper, `{"message": <document>}`,
 * at most `limitBytes` (hub.yml `api.payloadLimitBytes`) in UTF-8. Throws JsonDocumentError
 * `too_large` (exit 65, HTTP 413) naming `source` when the wrapped message is larger.
 */
export function ingressBody(message: unknown, limitBytes: number, source = "the message"): string {
  const body = JSON.stringify({ message });
  const bytes = Buffer.byteLength(body);
  if (bytes > limitBytes) throw new JsonDocumentError("too_large", `${source}: ${bytes} bytes as {"message": ...}, over the hub's ${limitBytes}-byte limit`);
  return body;
}

/**
 * Parses a document an operator sends (`hub send`): one JSON document of at most
 * publishTextLimit bytes as written, nested within the protocol's limits (src/protocol/limits.ts),
 * whose message, compact and wrapped, fits the hub's limit. Returns it. Throws InputError naming
 * `source` (a file, "stdin").
 */
export function parseIngressDocument(text: string, limitBytes: number, source: string): unknown {
  const message = parseJsonDocument(text, { maxBytes: publishTextLimit(limitBytes), maxDepth: MAX_JSON_DEPTH, source });
  ingressBody(message, limitBytes, source);
  return message;
}

/** What sending needs of the running hub's broker (src/hub/broker/broker.ts HubBroker has it). */
export interface IngressBroker {
  /** true: the broker sees the thing's PUBACK, so ingress waits as `pending` until then */
  readonly tracksDelivery: boolean;
  /** publishes a stored ingress message to the thing (`thingId`: which one, src/hub/broker/broker.ts); resolves once the broker accepted it */
  sendIngress(thingName: string, message: { flmessagespk: string; payload: string; thingId?: string }): Promise<void>;
  /** whether the thing is connected now; undefined when the broker cannot tell */
  isConnected(thingName: string): boolean | undefined;
}

export interface MessagesDeps {
  home: HubHome;
  store: HubStore;
  log: Logger;
  /** the running hub's broker; absent: `send` answers unavailable */
  broker?: IngressBroker;
  /** Unix ms */
  now?: () => number;
  /** hears of each message sent (the console's live view) */
  feed?: MessageFeed;
}

/** One hour of a thing's traffic: `hour` is its start in Unix seconds. */
export interface HourOfMessages {
  hour: number;
  /** messages the thing sent (collected) */
  egress: number;
  /** messages sent to the thing */
  ingress: number;
}

/** An ingress message the broker took: its id, and whether the thing is connected now (null: the broker cannot tell). */
export interface SentIngress {
  flmessagespk: string;
  online: boolean | null;
}

/** An ingress message the broker did not take (and that is no longer stored): what it threw. */
export interface RefusedIngress {
  refused: unknown;
}

/** An ingress copy not stored nor sent: its thing was deleted after it was looked up. */
export interface DeletedThingIngress {
  thingDeleted: true;
}

/** What `send` throws when the thing is deleted while its message is stored: nothing was stored or sent. */
export const THING_DELETED = "the thing was deleted meanwhile; nothing was stored or sent";

/**
 * The most bytes of a document to publish that are read (a file, stdin, one thing's body):
 * WRITTEN_TEXT_FACTOR times the payload limit; the limit itself is held to the message, compact
 * and wrapped as {"message": ...} (ingressBody).
 */
export function publishTextLimit(payloadLimitBytes: number): number {
  return WRITTEN_TEXT_FACTOR * payloadLimitBytes;
}

/** The most things one fan-out (`sendToMany`, POST /publish) sends to. */
export const MAX_FAN_OUT_THINGS = 10_000;

/** What a fan-out's body may hold per thing id besides its message: the UUID, quotes, comma, a line break and an indent. */
export const FAN_OUT_BYTES_PER_THING = 64;

/** The largest body of a fan-out (POST /publish), in bytes: a publish's text limit plus FAN_OUT_BYTES_PER_THING for each thing it may name. */
export function fanOutBodyLimit(payloadLimitBytes: number): number {
  return publishTextLimit(payloadLimitBytes) + MAX_FAN_OUT_THINGS * FAN_OUT_BYTES_PER_THING;
}

/** The most bytes (UTF-8) one fan-out stores: its copies of the message, in one transaction. */
export const MAX_FAN_OUT_BYTES = 64 * 1024 * 1024;

/** The most messages `latest` gives at once. */
export const MAX_LATEST_MESSAGES = 500;

/**
 * The message use cases over one hub store, made once per process (hubUseCases): ingress sent
 * through it at about the same time, a fan-out's copies too, is stored in one commit.
 */
export class Messages {
  private readonly now: () => number;
  /** ingress sent at about the same time (a fan-out to many things) is stored in one commit */
  private readonly inserts: GroupCommit<MessageRecord, MessageInsert>;

  constructor(private readonly deps: MessagesDeps) {
    this.now = deps.now ?? Date.now;
    this.inserts = new GroupCommit({
      commit: (messages: MessageRecord[]) => deps.store.insertMessages(messages.map((message) => ({ message }))),
      bytesOf: (message) => Buffer.byteLength(message.payload),
    });
  }

  /**
   * Sends `message` to the thing's ingress topic as `{"message": ...}`. It is stored first, so an
   * ingress the broker took is always on record, as `pending` until the thing's PUBACK when the
   * broker tracks delivery (the embedded one; ingress-delivery.ts), and removed again if the
   * broker refuses it. Returns its id and whether the thing is connected now (null: the broker
   * cannot tell). Throws ConflictError (a revoked thing), JsonDocumentError `too_large` or an
   * `unavailable` FlashlexError (no broker, or the broker refused it). A thing deleted meanwhile
   * (between its look-up and the commit) is a ConflictError too (THING_DELETED): the message is
   * not stored, so a delete always takes every message of its thing along.
   */
  async send(thing: ThingTarget, message: unknown): Promise<SentIngress> {
    const [record] = this.records([thing], message);
    const stored = await this.inserts.submit(record!);
    if (!stored.message) throw new ConflictError(THING_DELETED);
    const sent = await this.handOver(thing, record!, true);
    if ("refused" in sent) throw new FlashlexError("the broker did not accept the message", "unavailable", { cause: sent.refused, clientSafe: true });
    return sent;
  }

  /**
   * Sends one `message` to each of `things` (a fan-out; distinct things): every copy is stored in
   * one transaction, then each is handed to the broker, as `send` does for one. All or nothing
   * before the broker: a revoked thing (ConflictError naming it), a message or its copies together
   * too large (JsonDocumentError `too_large`, counted in UTF-8 bytes)
   * or no broker (`unavailable`) stores nothing. A copy the broker refuses is removed again and
   * answered as `refused`; the others stand. A thing deleted after it was looked up gets no copy
   * (`thingDeleted`). Gives one answer per thing, in order.
   */
  async sendToMany(things: readonly ThingTarget[], message: unknown): Promise<(SentIngress | RefusedIngress | DeletedThingIngress)[]> {
    const records = this.records(things, message);
    const size = Buffer.byteLength(records[0]?.payload ?? "");
    const bytes = records.length * size;
    if (bytes > MAX_FAN_OUT_BYTES) {
      throw new JsonDocumentError(
        "too_large",
        `${records.length} copies of a ${size}-byte message are ${bytes} bytes, over the ${MAX_FAN_OUT_BYTES}-byte limit of one fan-out; send it in parts`,
      );
    }
    const stored = await this.deps.store.insertMessages(records.map((record) => ({ message: record })));
    const sent = await Promise.all(
      records.map(
        (record, i): Promise<SentIngress | RefusedIngress | DeletedThingIngress> =>
          stored[i]!.message ? this.handOver(things[i]!, record, false) : Promise.resolve({ thingDeleted: true }),
      ),
    );
    // One line for the fan-out, not one per thing: the delivery of each copy is logged as its
    // PUBACK arrives (hub.ingress_delivered), and the answer lists every copy's id.
    this.deps.log.info("hub.fan_out", {
      things: things.length,
      online: sent.filter((s) => "online" in s && s.online).length,
      refused: sent.filter((s) => "refused" in s).length || undefined,
      deleted: sent.filter((s) => "thingDeleted" in s).length || undefined,
    });
    return sent;
  }

  /** The ingress records for `message` to each of `things`; throws before anything is stored (see send). */
  private records(things: readonly ThingTarget[], message: unknown): MessageRecord[] {
    const text = ingressBody(message, this.deps.home.settings.api.payloadLimitBytes);
    const revoked = things.find((thing) => thing.revokedAt !== null);
    if (revoked) throw new ConflictError(things.length === 1 ? "the thing is revoked" : `thing ${revoked.name} is revoked`);
    if (!this.deps.broker) throw new FlashlexError("no broker is running", "unavailable", { clientSafe: true });
    const at = this.now();
    const delivery = this.deps.broker.tracksDelivery ? "pending" : "unknown";
    return things.map((thing) => ({
      flmessagespk: newMessageId(),
      thingId: thing.id,
      messagetype: "ingress",
      payload: text,
      fltimestamp: Math.floor(at / 1000),
      datecreated: isoSeconds(at),
      delivery,
    }));
  }

  /** Publishes a stored ingress record to its thing (`logIt`: a hub.publish line); one the broker refuses is deleted again. */
  private async handOver(thing: ThingTarget, record: MessageRecord, logIt: boolean): Promise<SentIngress | RefusedIngress> {
    const { store, broker, log } = this.deps;
    const { flmessagespk } = record;
    try {
      await broker!.sendIngress(thing.name, { flmessagespk, payload: record.payload, thingId: thing.id });
    } catch (err) {
      await store.deleteMessage(flmessagespk);
      log.error("hub.publish_failed", { thing: thing.name, error: err });
      return { refused: err };
    }
    const online = broker!.isConnected(thing.name) ?? null;
    if (logIt) log.info("hub.publish", { thing: thing.name, message: flmessagespk, online });
    this.deps.feed?.publish({ type: "sent", thingId: thing.id, thingName: thing.name, message: record });
    return { flmessagespk, online };
  }

  /**
   * The thing's messages in a time range and of a type, oldest first, counted, then read a page
   * at a time (pages.ts): an answer of any size holds one page in memory (pages of about
   * ARCHIVE_PAGE_BYTES at the payload limit).
   */
  pages(thing: ThingRecord, query: MessageQuery): Promise<MessagePages> {
    return openMessagePages(this.deps.store, thing.id, query, archivePageRows(this.deps.home.settings.api.payloadLimitBytes));
  }

  /**
   * The newest messages, last stored first: of `thing` (all things when absent), of `messagetype`
   * (both when absent), at most `limit` (clamped to 1..MAX_LATEST_MESSAGES).
   */
  latest(query: { thing?: ThingRecord; messagetype?: MessageType; limit?: number } = {}): Promise<MessageRecord[]> {
    const limit = Math.min(MAX_LATEST_MESSAGES, Math.max(1, Math.floor(query.limit ?? 50)));
    return this.deps.store.latestMessages({ thingId: query.thing?.id, messagetype: query.messagetype, limit });
  }

  /**
   * The thing's messages per hour and type over the last `hours` hours (1..168, default 24),
   * oldest hour first, the current (unfinished) hour last; hours without messages are zeros.
   */
  async hourly(thing: ThingRecord, hours = 24): Promise<HourOfMessages[]> {
    const span = Math.min(168, Math.max(1, Math.floor(hours)));
    const currentHour = Math.floor(this.now() / 3_600_000) * 3600;
    const first = currentHour - (span - 1) * 3600;
    const buckets = Array.from({ length: span }, (_, i) => ({ hour: first + i * 3600, egress: 0, ingress: 0 }));
    for (const row of await this.deps.store.hourlyMessageCounts(thing.id, first)) {
      const bucket = buckets[(row.hour - first) / 3600];
      // A message stamped in the future (a row written under a clock that ran ahead) is left out.
      if (bucket) bucket[row.messagetype] += row.count;
    }
    return buckets;
  }

  /** Deletes the thing's messages in a range; returns how many. */
  async delete(thing: ThingRecord, query: MessageQuery): Promise<number> {
    const deleted = await this.deps.store.deleteMessages(thing.id, query);
    this.deps.log.info("hub.messages_deleted", { thing: thing.name, count: deleted });
    return deleted;
  }

  /** The thing's messages in a range as the old cloud's export zip (archive.ts), dated `at`. */
  archive(thing: ThingRecord, query: MessageQuery, at: Date = new Date(this.now())): Promise<Archive> {
    const { home, store } = this.deps;
    return openArchive(store, { thingId: thing.id, ownerId: home.settings.ownerId, query, at, payloadLimitBytes: home.settings.api.payloadLimitBytes });
  }
}
