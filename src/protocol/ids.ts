/** Things and messages are named by UUIDs (RFC 9562 text form), in any letter case on the wire. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True when `value` is a UUID in its 36-character text form. */
export function isUuid(value: unknown): value is string {
  return typeof value === "string" && UUID.test(value);
}
