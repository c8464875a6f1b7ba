import type { ThingRecord } from "../../store/hub-store.ts";
import { type Html, html } from "../html.ts";
import { notice, page } from "../layout.ts";
import { type MessageView, messageItem } from "../views.ts";
import { thingHeading, thingNav } from "./nav.ts";

export interface SendPageData {
  assets: { js: string; css: string };
  csrf: string;
  thing: ThingRecord;
  state: string;
  connected: boolean | null;
  /** the latest ingress messages, newest first */
  recent: MessageView[];
  /** what the form held when it was refused */
  draft?: string;
  notice?: { text: string; tone?: "ok" | "error" };
}

/** The words for whether the thing is connected; the script updates them live (presence events). */
export function presenceWords(connected: boolean | null): string {
  if (connected === null) return "The hub cannot tell whether the thing is connected (external broker).";
  return connected ? "The thing is connected now: it gets the message at once." : "The thing is not connected: the message waits for it.";
}

/** Send Message: a JSON editor checked before sending, the thing's presence, the latest sent with their delivery. */
export function sendPage(d: SendPageData): Html {
  const { thing } = d;
  const revoked = thing.revokedAt !== null;
  return page({
    title: `Send Message · ${thing.name}`,
    section: "things",
    csrf: d.csrf,
    assets: d.assets,
    body: html`${thingHeading(thing, d.state)}
${thingNav(thing, "send")}
${d.notice ? notice(d.notice.text, d.notice.tone) : html``}
<section aria-labelledby="send-heading" class="card" data-live data-thing="${thing.id}">
  <h2 id="send-heading">Send Message</h2>
  <p class="presence ${d.connected ? "on" : "off"}" data-presence role="status">${presenceWords(d.connected)}</p>
  ${
    revoked
      ? html`<p class="muted">The thing is revoked: nothing can be sent to it.</p>`
      : html`<form method="post" action="/things/${thing.id}/send" class="stack" data-send novalidate>
    <input type="hidden" name="csrf" value="${d.csrf}">
    <label for="message">Message (a JSON document; it reaches <code>ingress/${thing.name}</code> as <code>{"message": …}</code>)</label>
    <textarea id="message" name="message" rows="8" spellcheck="false" required aria-describedby="message-status">${d.draft ?? '{\n  "text": "hello, thing"\n}'}</textarea>
    <p id="message-status" class="help" data-json-status aria-live="polite"></p>
    <button type="submit">Send Message</button>
  </form>`
  }
</section>
<section aria-labelledby="sent-heading">
  <h2 id="sent-heading">Sent to ${thing.name}</h2>
  <p class="help">Pending until the thing's agent has stored it (its MQTT PUBACK), then delivered; the application reads it from there. This list updates by itself.</p>
  <ol class="messages" data-list="sent" aria-live="polite">
${d.recent.map((m) => messageItem(m))}
  </ol>
  ${d.recent.length ? html`` : html`<p class="muted" data-empty>Nothing sent yet.</p>`}
</section>`,
  });
}
