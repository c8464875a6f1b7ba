import { v7 as uuidV7 } from "uuid";

/** Things and messages are named by UUIDs (RFC 9562 text form), in any letter case on the wire. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True when `value` is a UUID in its 36-character text form. */
export function isUuid(value: unknown): value is string {
  return typeof value === "string" && UUID.test(value);
}

/**
 * A new message id (flmessagespk, the collect API's X-Flashlex-Message-Id): a UUIDv7 (RFC 9562
 * §5.7), lower case. Its first 48 bits are the time in ms and ids made by one process increase,
 * so each lands at the right edge of the indexes keyed on it (the hub's messages, the thing's
 * outbox and ingress_seen) instead of on a random page: fewer pages written per commit
 * (bench/message-ids.ts: a fan-out's commit on a table of 1M messages took about half the time;
 * docs/benchmarks.md). A reader takes any UUID version (isUuid): older agents and hubs sent
 * version 4. The time in the id is no secret: messages carry their time anyway.
 */
export function newMessageId(): string {
  return uuidV7();
}

/**
 * The name an owner gives a thing (the hub adds its owner prefix, `<8 hex>-`): 1 to 40 letters,
 * digits, '-' or '_', not starting with '-', which every command line would read as a flag
 * (`hub thing delete -sh` is `-s -h`: the help, and nothing deleted).
 */
export const TYPED_THING_NAME = /^[A-Za-z0-9_][A-Za-z0-9_-]{0,39}$/;

/** TYPED_THING_NAME in words, for the messages that refuse a name. */
export const TYPED_THING_NAME_RULE = "1 to 40 letters, digits, '-' or '_', not starting with '-'";
