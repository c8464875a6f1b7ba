/** Things and messages are named by UUIDs (RFC 9562 text form), in any letter case on the wire. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True when `value` is a UUID in its 36-character text form. */
export function isUuid(value: unknown): value is string {
  return typeof value === "string" && UUID.test(value);
}

/**
 * The name an owner gives a thing (the hub adds its owner prefix, `<8 hex>-`): 1 to 40 letters,
 * digits, '-' or '_', not starting with '-', which every command line would read as a flag
 * (`hub thing delete -sh` is `-s -h`: the help, and nothing deleted).
 */
export const TYPED_THING_NAME = /^[A-Za-z0-9_][A-Za-z0-9_-]{0,39}$/;

/** TYPED_THING_NAME in words, for the messages that refuse a name. */
export const TYPED_THING_NAME_RULE = "1 to 40 letters, digits, '-' or '_', not starting with '-'";
