import { el, type MessageView, markDelivered, messageItem } from "./dom.ts";
import { addSent } from "./json-editor.ts";

/** The most messages a live list keeps; older ones drop off the end. */
const MAX_ITEMS = 100;

/** The most deliveries remembered for items not shown yet (a PUBACK that beat the send's answer, or a catch-up); the oldest go first. */
const MAX_EARLY = 100;

/**
 * How long before a refused live view is opened again (ms): an answer that is no event stream
 * (503 when too many views are open, whose Retry-After says 30 s) closes an EventSource for
 * good, where a cut connection is retried by itself. One that cannot come back (the sign-in
 * ended, the thing was deleted) is not opened again: the page says so (`endedBecause`).
 */
const REOPEN_MS = 30_000;

/**
 * Live lists (`[data-live]`, with `data-thing` for one thing): one EventSource on /events,
 * which the browser reconnects by itself. New messages go to the top of the list that wants
 * them (`data-list`: collected, all, sent), deliveries flip pending to delivered (also when
 * the PUBACK beat the send's own answer: remembered until the item appears), and presence
 * events rewrite the connected line. After the stream was cut (a hub restart, a network
 * change, a stream the hub ended for a reader that fell behind), nothing that happened
 * meanwhile is sent again: the lists catch up from the page fetched again (`catchUp`).
 */
export function wireLiveLists(root: ParentNode): void {
  const section = root.querySelector<HTMLElement>("[data-live]");
  if (!section) return;
  const thing = section.dataset.thing;
  const url = `/events${thing ? `?thing=${encodeURIComponent(thing)}` : ""}`;
  const deliveredEarly = new Set<string>();
  const lists = () => document.querySelectorAll<HTMLElement>("[data-list]");
  // messages only a list of egress shows (`collected`) are never delivered: nothing to remember for it
  const showsIngress = [...lists()].some((list) => list.dataset.list !== "collected");
  let cut = false;
  /** the ids that came on the stream since a catch-up began: newer than the page it fetches */
  let arrivedDuringCatchUp: Set<string> | undefined;

  const open = () => {
    const source = new EventSource(url);
    source.addEventListener("message", (event) => {
      const { kind, message } = JSON.parse((event as MessageEvent<string>).data) as { kind: "collected" | "sent"; message: MessageView };
      arrivedDuringCatchUp?.add(message.id);
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
      if (found || !showsIngress) return;
      deliveredEarly.add(id);
      if (deliveredEarly.size > MAX_EARLY) deliveredEarly.delete(deliveredEarly.values().next().value!);
    });
    source.addEventListener("presence", (event) => {
      const { connected, words } = JSON.parse((event as MessageEvent<string>).data) as { connected: boolean | null; words: string };
      const line = document.querySelector<HTMLElement>("[data-presence]");
      if (!line) return;
      line.textContent = words;
      line.className = `presence ${connected ? "on" : "off"}`;
    });
    // `data-live-state` tells a test (or a curious person) where the live view stands.
    source.addEventListener("open", () => {
      section.dataset.liveState = "open";
      if (!cut) return;
      cut = false;
      section.dataset.caughtUp = "no";
      const arrived = new Set<string>();
      arrivedDuringCatchUp = arrived;
      void catchUp(lists(), arrived, deliveredEarly).finally(() => {
        if (arrivedDuringCatchUp === arrived) arrivedDuringCatchUp = undefined;
        section.dataset.caughtUp = "yes";
      });
    });
    source.addEventListener("error", () => {
      cut = true;
      section.dataset.liveState = "reconnecting";
      if (source.readyState !== EventSource.CLOSED) return;
      void endedBecause(thing !== undefined).then((reason) => {
        if (reason === undefined) {
          setTimeout(open, REOPEN_MS);
          return;
        }
        section.dataset.liveState = "ended";
        const notice = el("p", "notice error", `Live updates stopped: ${reason}. Reload the page.`);
        notice.setAttribute("role", "status");
        section.prepend(notice);
      });
    });
  };
  open();
}

/**
 * Why a refused live view cannot come back, asked of the page itself: its sign-in ended (the
 * page sends to the sign-in page) or its thing was deleted (404); undefined when it may (too many
 * views were open, or the hub could not be asked: try again later).
 */
async function endedBecause(forThing: boolean): Promise<string | undefined> {
  try {
    const response = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (response.redirected && new URL(response.url).pathname === "/signin") return "the sign-in ended";
    if (response.status === 404) return forThing ? "this thing no longer exists" : "this page no longer exists";
  } catch {
    // the hub out of reach: the next try says more
  }
  return undefined;
}

/**
 * Fetches this page again and merges its lists into `lists` (mergeList): what was stored while
 * the stream was cut. `arrived`: the ids the stream brought meanwhile; `deliveredEarly`: the
 * deliveries it brought for items not shown yet, applied (and forgotten) once they are. The
 * fetched page is the hub's own rendering, parsed inert (DOMParser runs no script and loads
 * nothing), as a reload would show it. A fetch that fails, or lands elsewhere (the sign-in
 * page), changes nothing; the next reconnection tries again.
 */
async function catchUp(lists: Iterable<HTMLElement>, arrived: ReadonlySet<string>, deliveredEarly: Set<string>): Promise<void> {
  let page: Document;
  try {
    const response = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (!response.ok || !response.headers.get("content-type")?.startsWith("text/html")) return;
    page = new DOMParser().parseFromString(await response.text(), "text/html");
  } catch {
    return;
  }
  for (const list of lists) {
    const fresh = page.querySelector(`[data-list="${CSS.escape(list.dataset.list ?? "")}"]`);
    if (!fresh) continue;
    mergeList(list, fresh, arrived);
    for (const id of [...deliveredEarly]) if (markDelivered(list, id)) deliveredEarly.delete(id);
  }
}

/**
 * Puts into `list` every message of `list` and of `fresh` (the same list as the hub renders it
 * now), each once by its id, in the hub's order (insertion, whatever the clocks said): first
 * what came on the stream after the fetch began (`arrived`) and the page lacks, then the page's,
 * then what only this page still had (older than the page's oldest, or gone), at most MAX_ITEMS.
 * Those older ones stay only when the page reaches back to what was shown before the cut (a
 * message of both): more stored meanwhile than the page holds would leave a gap between the
 * page and them that nothing showed, so the list is then the page, as a reload shows it.
 * A message delivered in either stays delivered (a state only moves forward).
 */
function mergeList(list: HTMLElement, fresh: Element, arrived: ReadonlySet<string>): void {
  const page = [...fresh.querySelectorAll<HTMLElement>(":scope > li[data-id]")].map((item) => document.importNode(item, true));
  const onPage = new Set(page.map((item) => item.dataset.id!));
  const newer: HTMLElement[] = [];
  const older: HTMLElement[] = [];
  const delivered: string[] = [];
  let reachesBack = false;
  for (const item of list.querySelectorAll<HTMLElement>(":scope > li[data-id]")) {
    const id = item.dataset.id!;
    if (item.querySelector(".delivery.delivered")) delivered.push(id);
    if (onPage.has(id)) reachesBack ||= !arrived.has(id);
    else (arrived.has(id) ? newer : older).push(item);
  }
  const merged = [...newer, ...page, ...(reachesBack ? older : [])].slice(0, MAX_ITEMS);
  list.replaceChildren(...merged);
  for (const id of delivered) markDelivered(list, id);
  if (merged.length) document.querySelector("[data-empty]")?.remove();
}
