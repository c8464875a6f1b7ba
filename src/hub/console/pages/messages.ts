import type { ThingRecord } from "../../store/hub-store.ts";
import { type Html, html } from "../html.ts";
import { notice, page } from "../layout.ts";
import { type MessageView, messageItem } from "../views.ts";
import { thingHeading, thingNav } from "./nav.ts";

export interface MessagesPageData {
  assets: { js: string; css: string };
  csrf: string;
  /** one thing's messages (both ways, with the archive form), or every thing's collected ones */
  thing?: { record: ThingRecord; state: string };
  /** newest first */
  recent: MessageView[];
  /** the archive form's defaults, `YYYY-MM-DDTHH:MM` in UTC */
  range: { from: string; to: string };
  /** hub.yml `messages.keepFor` (`365d`), or undefined when every message is kept */
  keptFor?: string;
  notice?: { text: string; tone?: "ok" | "error" };
}

/**
 * Messages: the latest collected, live; for one thing also the guide's form that downloads a
 * time range as a zip, one `<flmessagespk>.json` per message.
 */
export function messagesPage(d: MessagesPageData): Html {
  const thing = d.thing?.record;
  const heading = thing ? html`${thingHeading(thing, d.thing!.state)}${thingNav(thing, "messages")}` : html`<h1>Messages</h1>`;
  const archive = thing
    ? html`<section aria-labelledby="archive-heading" class="card">
  <h2 id="archive-heading">Download messages</h2>
  <form method="get" action="/things/${thing.id}/archive" class="inline">
    <label for="from">From (UTC)</label>
    <input id="from" name="from" type="datetime-local" value="${d.range.from}" required>
    <label for="to">To (UTC)</label>
    <input id="to" name="to" type="datetime-local" value="${d.range.to}" required>
    <label for="type">Which</label>
    <select id="type" name="type"><option value="egress">collected (from the thing)</option><option value="ingress">sent (to the thing)</option><option value="">both</option></select>
    <button type="submit">Download zip</button>
  </form>
  <p class="help">A zip with one <code>&lt;flmessagespk&gt;.json</code> per message, as the guide's export; both ends included.
  ${d.keptFor ? html`The hub keeps messages for ${d.keptFor} (<code>messages.keepFor</code> in hub.yml); older ones are deleted.` : html`The hub keeps every message (no <code>messages.keepFor</code> in hub.yml).`}</p>
</section>`
    : html`<p class="help">Pick a thing on the <a href="/things">Things</a> page to send it a message or download its messages as a zip.</p>`;
  return page({
    title: thing ? `Messages · ${thing.name}` : "Messages",
    section: thing ? "things" : "messages",
    csrf: d.csrf,
    assets: d.assets,
    body: html`${heading}
${d.notice ? notice(d.notice.text, d.notice.tone) : html``}
${archive}
<section aria-labelledby="latest-heading" data-live${thing ? html` data-thing="${thing.id}"` : html``}>
  <h2 id="latest-heading">${thing ? "Latest messages" : "Latest collected messages"}</h2>
  <p class="help">New messages appear at the top as they arrive.</p>
  <ol class="messages" data-list="${thing ? "all" : "collected"}" aria-live="polite">
${d.recent.map((m) => messageItem(m, { showThing: !thing }))}
  </ol>
  ${d.recent.length ? html`` : html`<p class="muted" data-empty>No messages yet.</p>`}
</section>`,
  });
}
