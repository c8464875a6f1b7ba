/**
 * A message as the console shows it: made by views.ts on the hub, sent as JSON by the live feed
 * (events.ts) and put into the page by the browser script (client/dom.ts). A file of its own,
 * importing nothing, so the browser script's typecheck (DOM types, no Node ones) does not reach
 * the hub's modules.
 */
export interface MessageView {
  id: string;
  thingId: string;
  thingName: string;
  type: "egress" | "ingress";
  /** ISO 8601 UTC, seconds */
  datecreated: string;
  /**
   * The document, pretty-printed and cut at PAYLOAD_PREVIEW_CHARS: for egress what the thing
   * collected, for ingress the message the owner sent (without the `{"message": ...}` wrapper).
   * Untrusted text: shown escaped, never as HTML.
   */
  payload: string;
  /**
   * Ingress only: the store's Delivery (hub-store.ts), spelled out here; a value added there
   * stops views.ts's messageView() from compiling until it is added here too.
   */
  delivery: "pending" | "delivered" | "unknown" | null;
  /** ISO 8601 UTC of the thing's PUBACK, when delivered */
  deliveredAt: string | null;
}
