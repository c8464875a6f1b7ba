/**
 * Message ids (src/protocol/ids.ts newMessageId): UUIDv7, so that the indexes keyed on them
 * (the hub's messages, the thing's outbox and ingress_seen) grow at their right edge.
 */
import { expect, test } from "bun:test";
import { isUuid, newMessageId } from "../../src/protocol/ids.ts";

/** RFC 9562 §5.7: version 7, variant 10. */
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test("a new message id is a lower-case UUIDv7 whose first 48 bits are the time in ms", () => {
  const before = Date.now();
  const id = newMessageId();
  const after = Date.now();
  expect(id).toMatch(UUID_V7);
  expect(isUuid(id)).toBe(true);
  const ms = Number.parseInt(id.replaceAll("-", "").slice(0, 12), 16);
  expect(ms).toBeGreaterThanOrEqual(before);
  expect(ms).toBeLessThanOrEqual(after + 1); // the counter may carry into the next ms
});

test("ids made one after another sort in the order they were made, and never repeat", () => {
  const ids = Array.from({ length: 20_000 }, () => newMessageId());
  for (let i = 1; i < ids.length; i++) expect(ids[i]! > ids[i - 1]!).toBe(true);
  expect(new Set(ids).size).toBe(ids.length);
});

test("a reader takes any UUID version: older agents and hubs sent version 4", () => {
  expect(isUuid(crypto.randomUUID())).toBe(true);
  expect(isUuid("0F8FAD5B-D9CB-469F-A165-70867728950E")).toBe(true);
});
