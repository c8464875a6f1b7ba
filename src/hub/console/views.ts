/**
 * What the console shows of a message and a time, shared by the pages (HTML, escaped by html.ts)
 * and the live feed (JSON the browser puts into the page as text), so a message looks the same
 * whether it was there when the page loaded or arrived while it was open.
 */
import { ENVELOPE_DEPTH, jsonNestingDepth, MAX_JSON_DEPTH } from "../../protocol/limits.ts";
import type { Delivery, MessageRecord } from "../store/hub-store.ts";
import { type Html, html } from "./html.ts";
import type { MessageView } from "./message-view.ts";

export type { MessageView };

/** The most characters of a payload a page shows; the archive has the rest. */
export const PAYLOAD_PREVIEW_CHARS = 4000;

/** A stored payload (JSON text) as the console shows it (MessageView.payload). */
export function payloadPreview(stored: string, type: "egress" | "ingress"): string {
  let text = stored;
  // Pretty-printing costs the square of the depth: a payload deeper than the protocol allows
  // (stored before the limit) is shown as stored.
  if (jsonNestingDepth(stored, MAX_JSON_DEPTH + ENVELOPE_DEPTH) <= MAX_JSON_DEPTH + ENVELOPE_DEPTH) {
    try {
      const parsed = JSON.parse(stored) as unknown;
      const shown =
        type === "ingress" && parsed !== null && typeof parsed === "object" && "message" in parsed ? (parsed as { message: unknown }).message : parsed;
      text = JSON.stringify(shown, null, 2) ?? String(shown);
    } catch {
      // not JSON (a damaged row): shown as stored
    }
  }
  if (text.length <= PAYLOAD_PREVIEW_CHARS) return text;
  return `${text.slice(0, PAYLOAD_PREVIEW_CHARS)}\n… ${text.length - PAYLOAD_PREVIEW_CHARS} more characters (download the archive for all of it)`;
}

/**
 * A stored message as the pages and the live feed show it: its payload previewed, its delivery
 * state (ingress only, `unknown` when not tracked) and `deliveredAt` as ISO 8601 UTC.
 */
export function messageView(m: MessageRecord, thingName: string): MessageView {
  return {
    id: m.flmessagespk,
    thingId: m.thingId,
    thingName,
    type: m.messagetype,
    datecreated: m.datecreated,
    payload: payloadPreview(m.payload, m.messagetype),
    delivery: m.messagetype === "ingress" ? (m.delivery ?? "unknown") : null,
    deliveredAt: m.deliveredAt == null ? null : isoUtc(m.deliveredAt),
  };
}

/** Unix ms as ISO 8601 UTC without milliseconds (`2024-03-01T12:30:00Z`). */
export function isoUtc(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** A time for people: `2024-03-01 12:30 UTC` in a <time> element; `fallback` when there is none. */
export function timeHtml(ms: number | null, fallback = "never"): Html {
  if (ms === null) return html`<span class="muted">${fallback}</span>`;
  const iso = isoUtc(ms);
  return html`<time datetime="${iso}">${iso.slice(0, 16).replace("T", " ")} UTC</time>`;
}

/** The words for a delivery state. */
export const DELIVERY_WORDS: Record<Delivery, string> = {
  pending: "pending",
  delivered: "delivered",
  unknown: "sent (delivery not tracked)",
};

/**
 * One message as a list item. The browser script builds the same structure for live messages
 * (client/dom.ts): `data-id` finds it again when its delivery changes, and when the live view
 * merges the page fetched again after its stream was cut (client/live.ts).
 */
export function messageItem(view: MessageView, opts: { showThing?: boolean } = {}): Html {
  const delivery = view.delivery ? html` · <span class="delivery ${view.delivery}" data-delivery>${DELIVERY_WORDS[view.delivery]}</span>` : html``;
  return html`<li class="message ${view.type}" data-id="${view.id}">
  <p class="meta"><time datetime="${view.datecreated}">${view.datecreated.replace("T", " ").replace("Z", " UTC")}</time> · <span class="type">${view.type === "egress" ? "from the thing" : "to the thing"}</span>${
    opts.showThing ? html` · <a href="/things/${view.thingId}">${view.thingName}</a>` : html``
  }${delivery} · <code class="id">${view.id}</code></p>
  <pre class="payload">${view.payload}</pre>
</li>`;
}
