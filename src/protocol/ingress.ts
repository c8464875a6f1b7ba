/**
 * The ingress message as the hub sends it to a thing (on `ingress/<thing name>`, QoS 1):
 *
 *   {"message": <what the owner sent>, "flmessagespk": "<the hub's message id, a UUID>"}
 *
 * `message` is the guide's wrapper (`{"message":{"message":"this is a test message YO!"}}`);
 * `flmessagespk` is the id the hub stored the message under (the guide's name for a message's
 * key). The id is what makes delivery exactly-once on the thing whatever the broker does: a
 * broker may deliver a QoS 1 message again for many reasons (a lost PUBACK, a resumed session,
 * aedes resending without the DUP flag, the hub replaying what it never saw acknowledged), and
 * the agent stores each id once. Apps written for the old wrapper keep working: they read
 * `message` and never saw the extra key.
 */

import { isUuid } from "./ids.ts";

/** The key of the hub's message id in an ingress payload. */
export const INGRESS_ID_KEY = "flmessagespk";
const QUOTED_KEY = `"${INGRESS_ID_KEY}"`;

/**
 * The payload the hub publishes for a stored ingress message.
 * @param storedPayload the stored JSON text, `{"message": ...}`
 * @param messageId the hub's id for it (flmessagespk)
 * @throws SyntaxError when `storedPayload` is not JSON (the hub stored it, so a bug)
 */
export function ingressWirePayload(storedPayload: string, messageId: string): string {
  const document = JSON.parse(storedPayload) as Record<string, unknown>;
  return JSON.stringify({ ...document, [INGRESS_ID_KEY]: messageId });
}

/**
 * The hub's message id in an ingress payload, or undefined when the payload does not carry one
 * (a message published by something else than a FlashLex hub, or not JSON). Cheap for payloads
 * that are not the hub's: only a JSON object that mentions the key is parsed.
 */
export function ingressMessageId(payload: Uint8Array | string): string | undefined {
  let text: string;
  if (typeof payload === "string") {
    if (!payload.includes(QUOTED_KEY)) return undefined;
    text = payload;
  } else {
    // looked for in the bytes before decoding: decoding every payload took a fifth of serve's
    // time on a stream of 4 KiB messages that were not the hub's
    const bytes = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
    if (!bytes.includes(QUOTED_KEY)) return undefined;
    text = bytes.toString("utf8");
  }
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (document === null || typeof document !== "object" || Array.isArray(document)) return undefined;
  const id = (document as Record<string, unknown>)[INGRESS_ID_KEY];
  return isUuid(id) ? id.toLowerCase() : undefined;
}
