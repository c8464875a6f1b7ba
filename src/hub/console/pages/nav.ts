import type { ThingRecord } from "../../store/hub-store.ts";
import { type Html, html } from "../html.ts";

export type ThingTab = "overview" | "send" | "messages";

/** The thing navbar of the guide's console: its page (with "Thing SDK"), Send Message, Messages. */
export function thingNav(thing: ThingRecord, current: ThingTab): Html {
  const tab = (id: ThingTab, href: string, label: string) =>
    html`<li><a href="${href}"${id === current ? html` aria-current="page"` : html``}>${label}</a></li>`;
  return html`<nav class="tabs" aria-label="Thing">
  <ul>
    ${tab("overview", `/things/${thing.id}`, "Overview")}
    <li><a href="/things/${thing.id}#sdk">Thing SDK</a></li>
    ${tab("send", `/things/${thing.id}/send`, "Send Message")}
    ${tab("messages", `/things/${thing.id}/messages`, "Messages")}
  </ul>
</nav>`;
}

/** The thing's name as a page heading, with its state. */
export function thingHeading(thing: ThingRecord, state: string): Html {
  return html`<h1>${thing.name} <span class="badge ${state}">${state}</span></h1>`;
}
