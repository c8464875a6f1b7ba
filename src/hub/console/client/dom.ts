/**
 * Browser helpers. Everything a thing or a payload supplies goes into the page with
 * `textContent`, never `innerHTML`: a payload holding `<script>` stays text.
 */
import type { MessageView } from "../message-view.ts";

export type { MessageView };

/** The CSRF token the page carries (layout.ts), sent back with every change. */
export function csrfToken(): string {
  return document.querySelector<HTMLMetaElement>('meta[name="csrf-token"]')?.content ?? "";
}

/** An element with a class and text. */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, className?: string, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The words views.ts DELIVERY_WORDS gives each state. */
export const DELIVERY_WORDS: Record<string, string> = { pending: "pending", delivered: "delivered", unknown: "sent (delivery not tracked)" };

/** The list item views.ts `messageItem` renders on the hub, built as DOM nodes. */
export function messageItem(view: MessageView, showThing: boolean): HTMLLIElement {
  const item = el("li", `message ${view.type}`);
  item.dataset.id = view.id;
  const meta = el("p", "meta");
  const time = el("time", undefined, view.datecreated.replace("T", " ").replace("Z", " UTC"));
  time.dateTime = view.datecreated;
  meta.append(time, " · ", el("span", "type", view.type === "egress" ? "from the thing" : "to the thing"));
  if (showThing) {
    const link = el("a", undefined, view.thingName);
    link.href = `/things/${encodeURIComponent(view.thingId)}`;
    meta.append(" · ", link);
  }
  if (view.delivery) {
    const state = el("span", `delivery ${view.delivery}`, DELIVERY_WORDS[view.delivery] ?? view.delivery);
    state.dataset.delivery = "";
    meta.append(" · ", state);
  }
  meta.append(" · ", el("code", "id", view.id));
  item.append(meta, el("pre", "payload", view.payload));
  return item;
}

/** Marks the message `id` in `list` delivered (a state only ever moves forward). */
export function markDelivered(list: Element, id: string): boolean {
  const state = list.querySelector<HTMLElement>(`li[data-id="${CSS.escape(id)}"] [data-delivery]`);
  if (!state) return false;
  state.className = "delivery delivered";
  state.textContent = DELIVERY_WORDS.delivered!;
  return true;
}
