/**
 * What an egress document is: one JSON document within the protocol's limits, checked before
 * anything is queued. Apart from collect.ts so that a `collect` handed to the running serve
 * checks its document without loading the delivery (jose, node:crypto).
 */
import {
  DEFAULT_PAYLOAD_LIMIT_BYTES,
  EGRESS_TEXT_LIMIT_BYTES,
  JsonDocumentError,
  MAX_JSON_DEPTH,
  parseJsonDocument,
  stringifyJsonValue,
} from "../../protocol/limits.ts";
import { InputError } from "../../shared/errors.ts";

/**
 * Checks that `text` is one JSON document within the protocol's limits (at most
 * EGRESS_TEXT_LIMIT_BYTES as written, DEFAULT_PAYLOAD_LIMIT_BYTES of UTF-8 once compact, which is
 * what is sent; MAX_JSON_DEPTH levels of nesting) and returns it compacted. Throws InputError
 * (exit 65) naming `source` and the problem; nothing is queued by then.
 */
export function parseEgressDocument(text: string, source: string): string {
  let compact: string;
  try {
    compact = JSON.stringify(parseJsonDocument(text, { maxBytes: EGRESS_TEXT_LIMIT_BYTES, maxDepth: MAX_JSON_DEPTH, source }));
  } catch (err) {
    if (err instanceof JsonDocumentError) throw new InputError(`${err.message}; nothing was queued`);
    throw err;
  }
  const bytes = Buffer.byteLength(compact);
  if (bytes > DEFAULT_PAYLOAD_LIMIT_BYTES) {
    throw new InputError(`${source}: ${bytes} bytes as compact JSON, over the ${DEFAULT_PAYLOAD_LIMIT_BYTES}-byte limit; nothing was queued`);
  }
  return compact;
}

/**
 * An application's value (the SDK's `collectMessage`) as an egress document: made into JSON
 * text without recursion limits of its own (`stringifyJsonValue`: too deep, a BigInt, NaN, a
 * cycle, no value), then checked as `parseEgressDocument` checks a text. Returns the compact
 * text; throws InputError (exit 65) naming `source` and the problem; nothing is queued by then.
 */
export function egressDocumentOf(value: unknown, source: string): string {
  let text: string;
  try {
    text = stringifyJsonValue(value, { maxDepth: MAX_JSON_DEPTH, source });
  } catch (err) {
    if (err instanceof JsonDocumentError) throw new InputError(`${err.message}; nothing was queued`);
    throw err;
  }
  return parseEgressDocument(text, source);
}
