import type { ThingOverview, ThingSummary } from "../../things/things.ts";
import { type Html, html } from "../html.ts";
import { notice, page } from "../layout.ts";
import { timeHtml } from "../views.ts";

export interface ThingsPageData {
  assets: { js: string; css: string };
  csrf: string;
  overview: ThingOverview;
  /** the name filter as typed */
  filter: string;
  notice?: { text: string; tone?: "ok" | "error" };
}

/** What a thing's state reads as in the list: connected now beats created / verified. */
export function stateOf(summary: Pick<ThingSummary, "status" | "connected">): string {
  if (summary.status === "revoked") return "revoked";
  return summary.connected ? "connected" : summary.status;
}

const count = (n: number) => n.toLocaleString("en-US");

function row(s: ThingSummary): Html {
  const state = stateOf(s);
  return html`<tr>
  <td data-label="Name"><a href="/things/${s.thing.id}">${s.thing.name}</a></td>
  <td data-label="State"><span class="badge ${state}">${state}</span></td>
  <td data-label="Last seen">${timeHtml(s.thing.lastSeenAt)}</td>
  <td data-label="Messages" class="num">${count(s.messages.egress)} from · ${count(s.messages.ingress)} to</td>
  <td data-label="Certificate expires">${timeHtml(s.certExpiresAt, "unknown")}</td>
</tr>`;
}

/** The Things page: filter, list (one page), pager, and "Create Thing". */
export function thingsPage(d: ThingsPageData): Html {
  const { total, offset, limit, items } = d.overview;
  const pageNo = Math.floor(offset / limit) + 1;
  const pages = Math.max(1, Math.ceil(total / limit));
  const link = (n: number) => `/things?${new URLSearchParams({ ...(d.filter ? { q: d.filter } : {}), page: String(n) })}`;
  const pager =
    pages > 1
      ? html`<nav class="pager" aria-label="Pages">
  ${pageNo > 1 ? html`<a href="${link(pageNo - 1)}" rel="prev">Previous</a>` : html`<span class="muted">Previous</span>`}
  <span>Page ${pageNo} of ${pages}</span>
  ${pageNo < pages ? html`<a href="${link(pageNo + 1)}" rel="next">Next</a>` : html`<span class="muted">Next</span>`}
</nav>`
      : html``;
  const shown = items.length ? html`${count(offset + 1)}–${count(offset + items.length)} of ${count(total)}` : html`none of ${count(total)}`;
  return page({
    title: "Things",
    section: "things",
    csrf: d.csrf,
    assets: d.assets,
    body: html`<h1>Things</h1>
${d.notice ? notice(d.notice.text, d.notice.tone) : html``}
<section aria-labelledby="create-heading" class="card">
  <h2 id="create-heading">Create Thing</h2>
  <form method="post" action="/things" class="inline">
    <input type="hidden" name="csrf" value="${d.csrf}">
    <label for="new-name">Name</label>
    <input id="new-name" name="name" required maxlength="40" pattern="[A-Za-z0-9_\\-]{1,40}" aria-describedby="new-name-help" autocomplete="off">
    <label for="new-key">Key</label>
    <select id="new-key" name="keyType"><option value="rsa">RSA 2048</option><option value="ec">EC P-256</option></select>
    <button type="submit">Create Thing</button>
    <p id="new-name-help" class="help">1 to 40 letters, digits, - or _. The hub adds its owner prefix.</p>
  </form>
</section>
<section aria-labelledby="list-heading">
  <h2 id="list-heading">Your things <span class="muted">(${shown})</span></h2>
  <form method="get" action="/things" class="inline" role="search">
    <label for="filter">Filter by name</label>
    <input id="filter" name="q" type="search" value="${d.filter}" maxlength="200" autocomplete="off">
    <button type="submit">Filter</button>
    ${d.filter ? html`<a href="/things">Clear</a>` : html``}
  </form>
  ${
    items.length
      ? html`<div class="table-wrap"><table class="things">
    <thead><tr><th scope="col">Name</th><th scope="col">State</th><th scope="col">Last seen</th><th scope="col">Messages</th><th scope="col">Certificate expires</th></tr></thead>
    <tbody>
${items.map(row)}
    </tbody>
  </table></div>`
      : total > 0
        ? html`<p class="muted">Page ${pageNo} is past the last page (${pages}): <a href="${link(1)}">back to the first</a>.</p>`
        : html`<p class="muted">${d.filter ? "No thing's name contains that." : "No things yet: create one above."}</p>`
  }
  ${pager}
</section>`,
  });
}
