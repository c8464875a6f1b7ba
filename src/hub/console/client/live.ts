import { type MessageView, markDelivered, messageItem } from "./dom.ts";
import { addSent } from "./json-editor.ts";

/** The most messages a live list keeps; older ones drop off the end. */
const MAX_ITEMS = 100;

/**
 * Live lists (`[data-live]`, with `data-thing` for one thing): one EventSource on /events,
 * which the browser reconnects by itself. New messages go to the top of the list that wants
 * them (`data-list`: collected, all, sent), deliveries flip pending to delivered (also when
 * the PUBACK beat the send's own answer: remembered until the item appears), and presence
 * events rewrite the connected line.
 */
export function wireLiveLists(root: ParentNode): void {
  const section = root.querySelector<HTMLElement>("[data-live]");
  if (!section) return;
  const thing = section.dataset.thing;
  const source = new EventSource(`/events${thing ? `?thing=${encodeURIComponent(thing)}` : ""}`);
  const deliveredEarly = new Set<string>();
  const lists = () => document.querySelectorAll<HTMLElement>("[data-list]");

  source.addEventListener("message", (event) => {
    const { kind, message } = JSON.parse((event as MessageEvent<string>).data) as { kind: "collected" | "sent"; message: MessageView };
    for (const list of lists()) {
      const wanted = list.dataset.list === "all" || list.dataset.list === kind;
      if (!wanted) continue;
      if (list.dataset.list === "sent") addSent(message);
      else if (!list.querySelector(`li[data-id="${CSS.escape(message.id)}"]`)) list.prepend(messageItem(message, !thing));
      while (list.children.length > MAX_ITEMS) list.lastElementChild?.remove();
      document.querySelector("[data-empty]")?.remove();
      if (deliveredEarly.delete(message.id)) markDelivered(list, message.id);
    }
  });
  source.addEventListener("delivered", (event) => {
    const { id } = JSON.parse((event as MessageEvent<string>).data) as { id: string };
    let found = false;
    for (const list of lists()) found = markDelivered(list, id) || found;
    if (!found) deliveredEarly.add(id);
  });
  source.addEventListener("presence", (event) => {
    const { connected, words } = JSON.parse((event as MessageEvent<string>).data) as { connected: boolean | null; words: string };
    const line = document.querySelector<HTMLElement>("[data-presence]");
    if (!line) return;
    line.textContent = words;
    line.className = `presence ${connected ? "on" : "off"}`;
  });
  // Mark the page so a test (or a curious person) can tell the live view is connected.
  source.addEventListener("open", () => (section.dataset.liveState = "open"));
  source.addEventListener("error", () => (section.dataset.liveState = "reconnecting"));
}
