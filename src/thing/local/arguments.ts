/**
 * The arguments of every ThingAccess call, checked in one place for every way in: the commands
 * and the SDK (openThingAccess wraps both the serve and the database access) and serve's control
 * socket (its routes call the same wrapper, for clients such as flashlex.py). So a call means
 * the same whether serve runs or not, and a wrong argument is a UsageError (exit 64) naming it,
 * before anything is queued or read; never a SQLite CHECK error (70), never a silent "all" or
 * "none" for a value that means neither.
 */
import { isUuid } from "../../protocol/ids.ts";
import { UsageError } from "../../shared/errors.ts";
import { quoteLogText } from "../../shared/log.ts";
import type { IngressQuery, OutboxPage, OutboxState, OutboxVia, ThingAccess } from "./access.ts";

export const INGRESS_STATES: readonly NonNullable<IngressQuery["state"]>[] = ["unacked", "acked", "all"];
export const OUTBOX_STATES: readonly OutboxState[] = ["pending", "sent", "rejected"];
export const VIAS: readonly OutboxVia[] = ["http", "mqtt"];
const QUERY_FIELDS = ["afterId", "state", "topic", "since", "limit"] as const;

/** A value as a short phrase for an error message: never the whole of a large or odd value. */
function shown(value: unknown): string {
  if (typeof value === "string") return quoteLogText(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") return `${String(value)}${typeof value === "bigint" ? "n" : ""}`;
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" ? "an object" : typeof value;
}

/** The same value, or undefined for an absent one (JSON clients send null for "not given"). */
function given<T>(value: T | null | undefined): T | undefined {
  return value === null ? undefined : value;
}

function oneOf<T extends string>(value: unknown, allowed: readonly T[], what: string): T {
  if (typeof value !== "string" || !allowed.includes(value as T)) {
    const choices = `${allowed.slice(0, -1).join(", ")} or ${allowed.at(-1)}`;
    throw new UsageError(`${what} must be ${choices}, not ${shown(value)}`);
  }
  return value as T;
}

function wholeNumber(value: unknown, what: string, min: number): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    // a number past 2^53 - 1 is already rounded: the range names what went wrong
    throw new UsageError(`${what} must be a whole number from ${min} to ${Number.MAX_SAFE_INTEGER}, not ${shown(value)}`);
  }
  return value;
}

/** Throws UsageError naming `what` and the first field of `object` that is not one of `names`. */
export function refuseUnknownFields(object: object, names: readonly string[], what: string): void {
  const unknown = Object.keys(object).find((key) => !names.includes(key));
  if (unknown !== undefined) throw new UsageError(`${what} has no field ${shown(unknown)} (it takes ${names.join(", ")})`);
}

/** `via`: http or mqtt; absent means http. Throws UsageError otherwise. */
export function checkVia(via: unknown): OutboxVia {
  return given(via) === undefined ? "http" : oneOf(via, VIAS, "via");
}

/** An outbox state, or undefined for every state. Throws UsageError for anything else. */
export function checkOutboxState(state: unknown): OutboxState | undefined {
  return given(state) === undefined ? undefined : oneOf(state, OUTBOX_STATES, "the outbox state");
}

/**
 * A query for ingress messages: an object (or nothing) with only these fields, each absent or
 * null, or: `afterId` a whole number >= 0, `state` unacked|acked|all, `topic` a string, `since`
 * Unix ms (a finite number), `limit` a whole number >= 1. Returns it without the absent fields;
 * throws UsageError naming the first wrong field.
 */
export function checkIngressQuery(query: unknown): IngressQuery {
  if (given(query) === undefined) return {};
  if (typeof query !== "object" || Array.isArray(query)) throw new UsageError(`the message query must be an object, not ${shown(query)}`);
  const fields = query as Record<string, unknown>;
  refuseUnknownFields(fields, QUERY_FIELDS, "the message query");
  const checked: IngressQuery = {};
  const { afterId, state, topic, since, limit } = fields;
  if (given(afterId) !== undefined) checked.afterId = wholeNumber(afterId, "afterId", 0);
  if (given(state) !== undefined) checked.state = oneOf(state, INGRESS_STATES, "state");
  if (given(topic) !== undefined) {
    if (typeof topic !== "string") throw new UsageError(`topic must be a string, not ${shown(topic)}`);
    checked.topic = topic;
  }
  if (given(since) !== undefined) {
    if (typeof since !== "number" || !Number.isFinite(since)) throw new UsageError(`since must be a time in Unix milliseconds, not ${shown(since)}`);
    checked.since = since;
  }
  if (given(limit) !== undefined) checked.limit = wholeNumber(limit, "limit", 1);
  return checked;
}

/**
 * A page of the outbox (OutboxPage): absent, or `after` an object of `createdAt` (Unix ms, a
 * whole number) and `messageId` (a string), and `limit` a whole number >= 1. Throws UsageError
 * naming the first wrong field.
 */
export function checkOutboxPage(page: unknown): OutboxPage | undefined {
  if (given(page) === undefined) return undefined;
  if (typeof page !== "object" || Array.isArray(page)) throw new UsageError(`the outbox page must be an object, not ${shown(page)}`);
  refuseUnknownFields(page as object, ["after", "limit"], "the outbox page");
  const { after, limit } = page as Record<string, unknown>;
  const checked: OutboxPage = {};
  if (given(after) !== undefined) {
    const { createdAt, messageId } = (typeof after === "object" && !Array.isArray(after) ? after : {}) as Record<string, unknown>;
    if (typeof messageId !== "string") throw new UsageError(`after must be {createdAt, messageId}, not ${shown(after)}`);
    refuseUnknownFields(after as object, ["createdAt", "messageId"], "after");
    checked.after = { createdAt: wholeNumber(createdAt, "after.createdAt", 0), messageId };
  }
  if (given(limit) !== undefined) checked.limit = wholeNumber(limit, "limit", 1);
  return checked;
}

/** Message ids (ingress): an array of whole numbers >= 1, each kept once. Throws UsageError otherwise. */
export function checkMessageIds(ids: unknown): number[] {
  if (!Array.isArray(ids)) throw new UsageError(`the message ids must be an array of numbers, not ${shown(ids)}`);
  return [...new Set(ids.map((id) => wholeNumber(id, "a message id", 1)))];
}

/** Outbox message ids: an array of non-blank strings, each kept once. Throws UsageError otherwise. */
export function checkOutboxIds(ids: unknown): string[] {
  if (!Array.isArray(ids)) throw new UsageError(`the outbox message ids must be an array of strings, not ${shown(ids)}`);
  const checked = ids.map((id) => {
    if (typeof id !== "string" || !id.trim()) throw new UsageError(`not an outbox message id: ${shown(id)}`);
    // the outbox keeps UUIDs in lower case; one typed or pasted in upper case is the same id
    return isUuid(id) ? id.toLowerCase() : id;
  });
  // each once: dropping X twice is dropping X, not "no message X" the second time
  return [...new Set(checked)];
}

/** A time for `resendOutbox`: whole Unix ms, 0 or later. Throws UsageError otherwise. */
export function checkSentSince(sentSince: unknown): number {
  return wholeNumber(sentSince, "the resend's sentSince (Unix ms)", 0);
}

/**
 * `access` with every call's arguments checked first (the functions above): a wrong one rejects
 * with UsageError and `access` is not called.
 */
export function withCheckedArguments(access: ThingAccess): ThingAccess {
  return {
    via: access.via,
    served: access.served,
    listMessages: async (query) => access.listMessages(checkIngressQuery(query)),
    ackMessages: async (ids) => access.ackMessages(checkMessageIds(ids)),
    deleteMessages: async (ids) => access.deleteMessages(checkMessageIds(ids)),
    collect: async (body, via) => {
      if (typeof body !== "string") throw new UsageError(`the document must be JSON text, not ${shown(body)}`);
      return access.collect(body, checkVia(via));
    },
    listOutbox: async (state, page) => access.listOutbox(checkOutboxState(state), checkOutboxPage(page)),
    retryOutbox: async (ids) => access.retryOutbox(checkOutboxIds(ids)),
    resendOutbox: async (sentSince) => access.resendOutbox(checkSentSince(sentSince)),
    dropOutbox: async (ids) => access.dropOutbox(checkOutboxIds(ids)),
    close: () => access.close(),
  };
}
