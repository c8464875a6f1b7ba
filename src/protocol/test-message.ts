/**
 * The test message: what a thing publishes to `flashlex/test` (topics.ts), the guide's `test`
 * thread and `flashlex bootstrap` alike:
 *
 *   {"thingId": "<id>", "thingName": "<name>", "message": "<app.message>", "sequence": N, "nonce": "<bootstrap only>", "token": "<the thing's JWT>"}
 *
 * The hub marks the thing verified when it gets one. A message with a `nonce` (bootstrap) is
 * echoed back to the thing's ingress topic as `{"message": {thingId, thingName, sequence,
 * nonce}}`, which is how bootstrap proves the ingress path; the `test` thread sends none and gets
 * no echo. `token` is the thing's JWT, as a collect envelope carries it (RFC 7519; DESIGN.md,
 * "Identity and tokens"): behind an external broker the hub cannot see who published, and a
 * thingId and name prove nothing (they are no secret). Without it there, one thing marked
 * another verified and had its own text echoed into the other's ingress as the owner's message.
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
  /** the thing's JWT: what the hub believes `thingId` on when the broker cannot tell it who published */
  token?: unknown;
}

/** The JSON text of a test message. */
export function buildTestMessage(message: { thingId: string; thingName: string; message: string; sequence: number; nonce?: string; token: string }): string {
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

/**
 * The echo of a bootstrap's test message, published to the thing's ingress topic: what names the
 * round trip, never the token (a bearer credential) nor the text the thing sent; a sequence that
 * is not an integer is left out.
 */
export function testEcho(message: TestMessage): string {
  const { thingId, thingName, sequence, nonce } = message;
  return JSON.stringify({ message: { thingId, thingName, sequence: Number.isSafeInteger(sequence) ? sequence : undefined, nonce } });
}

/**
 * Whether `message` asks for an echo: its nonce is a UUID, as bootstrap makes it. Nothing else
 * is echoed: the nonce goes into the thing's ingress, and any other text there (a captured token
 * is valid for minutes) would be a message the owner never sent.
 */
export function wantsEcho(message: TestMessage): message is TestMessage & { nonce: string } {
  return typeof message.nonce === "string" && isUuid(message.nonce);
}
