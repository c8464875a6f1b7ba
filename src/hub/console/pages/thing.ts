import type { HourOfMessages } from "../../messages/messages.ts";
import type { DownloadLine } from "../../things/download-tokens.ts";
import type { ThingSummary } from "../../things/things.ts";
import type { ThingUpdateRow } from "../../updates/updates.ts";
import { hourlyChart } from "../chart.ts";
import { type Html, html } from "../html.ts";
import { notice, page } from "../layout.ts";
import { timeHtml } from "../views.ts";
import { thingHeading, thingNav } from "./nav.ts";
import { stateOf } from "./things.ts";

export interface ThingPageData {
  assets: { js: string; css: string };
  csrf: string;
  summary: ThingSummary;
  hours: HourOfMessages[];
  keyType: string;
  /** what the agent last reported of itself and its update (the updates use case); undefined: never */
  agent?: ThingUpdateRow;
  topics: { ingress: string; pubsub: string; egress: string };
  /**
   * the thing's zip, or why it has none (Things.distribution); with the one-time cURL line this
   * session just made, shown on this one view of the page
   */
  distribution: ({ zip: true } | { missing: string }) & { line?: DownloadLine };
  notice?: { text: string; tone?: "ok" | "error" };
}

/** A thing's page: its facts, the hourly chart, "Thing SDK" (zip and cURL), revoke and delete. */
export function thingPage(d: ThingPageData): Html {
  const { thing } = d.summary;
  const state = stateOf(d.summary);
  const connected = d.summary.connected === null ? "unknown (external broker)" : d.summary.connected ? "yes" : "no";
  const dist = d.distribution;
  const line = dist.line
    ? html`<div class="copyable">
    <pre id="curl-line"><code>${dist.line.line}</code></pre>
    <button type="button" data-copy="curl-line">Copy cURL line</button>
  </div>
  <p class="muted">It downloads ${thing.name}.zip once, until ${timeHtml(dist.line.expiresAt)}, and nothing else. It is shown only now: the hub keeps its token's hash alone.</p>`
    : html``;
  const sdk =
    "zip" in dist
      ? html`<p>Download the distribution in the browser and copy it to the thing, or fetch it on the thing with a one-time cURL line (it holds a token for this zip alone, never your access token).</p>
  <p><a class="button" href="/things/${thing.id}/distribution.zip" download>Download ${thing.name}.zip</a></p>
  <form method="post" action="/things/${thing.id}/download-line">
    <input type="hidden" name="csrf" value="${d.csrf}">
    <button type="submit">Make a one-time cURL line</button>
  </form>
  ${line}`
      : html`<p class="muted">No distribution to download: ${dist.missing}.</p>`;
  return page({
    title: thing.name,
    section: "things",
    csrf: d.csrf,
    assets: d.assets,
    body: html`${thingHeading(thing, state)}
${thingNav(thing, "overview")}
${d.notice ? notice(d.notice.text, d.notice.tone) : html``}
<section aria-labelledby="facts-heading" class="card">
  <h2 id="facts-heading">Thing</h2>
  <dl class="facts">
    <dt>Id</dt><dd><code>${thing.id}</code></dd>
    <dt>Name</dt><dd>${thing.name} <span class="muted">(typed: ${thing.shortName})</span></dd>
    <dt>State</dt><dd>${state}</dd>
    <dt>Connected now</dt><dd>${connected}</dd>
    <dt>Created</dt><dd>${timeHtml(thing.createdAt)}</dd>
    <dt>Verified</dt><dd>${timeHtml(thing.verifiedAt, "not yet")}</dd>
    <dt>Last seen</dt><dd>${timeHtml(thing.lastSeenAt)}</dd>
    ${thing.revokedAt !== null ? html`<dt>Revoked</dt><dd>${timeHtml(thing.revokedAt)}</dd>` : html``}
    <dt>Certificate expires</dt><dd>${timeHtml(d.summary.certExpiresAt, "unknown")} <span class="muted">(serial ${thing.certSerial}, ${d.keyType.toUpperCase()})</span></dd>
    <dt>Agent</dt><dd>${agentText(d.agent)}</dd>
    <dt>Ingress topic</dt><dd><code>${d.topics.ingress}</code></dd>
    <dt>Pubsub topic</dt><dd><code>${d.topics.pubsub}</code></dd>
    <dt>Egress topic</dt><dd><code>${d.topics.egress}</code></dd>
    <dt>Messages</dt><dd>${d.summary.messages.egress} from the thing, ${d.summary.messages.ingress} to it</dd>
  </dl>
</section>
<section aria-labelledby="chart-heading" class="card">
  <h2 id="chart-heading">Last 24 hours</h2>
  ${hourlyChart(d.hours)}
</section>
<section aria-labelledby="sdk" class="card">
  <h2 id="sdk" tabindex="-1">Thing SDK</h2>
  ${sdk}
</section>
<section aria-labelledby="danger-heading" class="card danger">
  <h2 id="danger-heading">Revoke or delete</h2>
  ${
    thing.revokedAt === null
      ? html`<form method="post" action="/things/${thing.id}/revoke" data-confirm="Revoke ${thing.name}? It can no longer connect or collect; its distribution is deleted; its messages stay.">
    <input type="hidden" name="csrf" value="${d.csrf}">
    <button type="submit" class="warn">Revoke</button> <span class="help">It can no longer connect or collect; its messages stay.</span>
  </form>`
      : html``
  }
  <form method="post" action="/things/${thing.id}/delete" data-confirm="Delete ${thing.name} and all its messages? This cannot be undone.">
    <input type="hidden" name="csrf" value="${d.csrf}">
    <button type="submit" class="danger">Delete</button> <span class="help">The thing, its messages and its distribution, for good.</span>
  </form>
</section>`,
  });
}

/** "flashlex 1.0.0 (linux-arm64), update to 2.0.0: rolled-back": what the hub knows of the agent. */
function agentText(agent: ThingUpdateRow | undefined): string {
  if (!agent?.version) return "version not reported yet (agents report it when they check for updates)";
  const running = `flashlex ${agent.version}${agent.target ? ` (${agent.target})` : ""}`;
  return agent.to_version && agent.state ? `${running}, update to ${agent.to_version}: ${agent.state}` : running;
}
