/**
 * The test message: what a thing publishes to `flashlex/test` (topics.ts), the guide's `test`
 * thread and `flashlex bootstrap` alike:
 *
 *   {"thingId": "<id>", "thingName": "<name>", "message": "<app.message>", "sequence": N, "nonce": "<bootstrap only>"}
 *
 * The hub marks the thing verified when it gets one. A message with a `nonce` (bootstrap) is
 * echoed back to the thing's ingress topic as `{"message": <the test message>}`, which is how
 * bootstrap proves the ingress path; the `test` thread sends none and gets no echo.
 */
import { InputError } from "../shared/errors.ts";
import { isUuid } from "./ids.ts";
import { parseEnvelopeObject } from "./limits.ts";

export interface TestMessage {
  thingId: string;
  thingName: string;
  message: unknown;
  sequence: unknown;
  /** bootstrap's proof of a round trip; absent from the `test` thread */
  nonce?: unknown;
}

/** The JSON text of a test message. */
export function buildTestMessage(message: { thingId: string; thingName: string; message: string; sequence: number; nonce?: string }): string {
  return JSON.stringify(message);
}

/**
 * Reads a test message from an MQTT payload (limits as for a collect envelope). Checks that it
 * names a thing (`thingId` given in lower case); whether it names the publisher is the hub's to
 * decide. Throws InputError.
 */
export function parseTestMessage(payload: Uint8Array, payloadLimitBytes: number): TestMessage {
  const body = parseEnvelopeObject(payload, payloadLimitBytes);
  if (!isUuid(body.thingId) || typeof body.thingName !== "string") {
    throw new InputError("not a test message {thingId, thingName, message, sequence}");
  }
  return { ...(body as unknown as TestMessage), thingId: body.thingId.toLowerCase() };
}

/** The echo of a bootstrap's test message, published to the thing's ingress topic. */
export function testEcho(message: TestMessage): string {
  return JSON.stringify({ message });
}
