/**
 * The collect envelope: egress over MQTT. A thing publishes, at QoS 1 to `flashlex/collect`
 * (topics.ts),
 *
 *   {"messageId": "<outbox id, a UUID>", "thingId": "<thing id>", "token": "<the thing's JWT>", "payload": <document>}
 *
 * The token is the same one the HTTP collect API takes (DESIGN.md, "Identity and tokens"), so the
 * hub authenticates the message itself, even behind a broker that does not say who published.
 * `messageId` lets the hub store a resent message once (an old client may leave it out).
 */
import { InputError } from "../shared/errors.ts";
import { isUuid } from "./ids.ts";
import { parseEnvelopeObject } from "./limits.ts";

export interface CollectEnvelope {
  /** absent only from old clients: the hub then gives the message a new id */
  messageId?: string;
  thingId: string;
  token: string;
  /** the egress document, any JSON value */
  payload: unknown;
}

/** The envelope's JSON text; `payload` is the document itself, not its text. */
export function buildCollectEnvelope(envelope: CollectEnvelope): string {
  return JSON.stringify({ messageId: envelope.messageId, thingId: envelope.thingId, token: envelope.token, payload: envelope.payload });
}

/**
 * Reads a collect envelope from an MQTT payload, within the limits of a hub whose messages may
 * be `payloadLimitBytes` (limits.ts). Checks the shape only; the token is the hub's to verify.
 * Gives `thingId` and `messageId` in lower case. Throws InputError saying what is wrong (the hub logs it and drops the message).
 */
export function parseCollectEnvelope(payload: Uint8Array, payloadLimitBytes: number): CollectEnvelope {
  const envelope = parseEnvelopeObject(payload, payloadLimitBytes);
  if (!isUuid(envelope.thingId) || typeof envelope.token !== "string" || !("payload" in envelope)) {
    throw new InputError("not a collect envelope {messageId, thingId, token, payload}");
  }
  if (envelope.messageId !== undefined && !isUuid(envelope.messageId)) throw new InputError("messageId is not a UUID");
  // UUIDs compare as text in the database: one case, as the HTTP route stores them, so a resend
  // by the other path is the same message
  return {
    ...(envelope as unknown as CollectEnvelope),
    thingId: envelope.thingId.toLowerCase(),
    messageId: (envelope.messageId as string | undefined)?.toLowerCase(),
  };
}
