/**
 * The thing page's small chart: messages per hour over the last day, from the thing (egress)
 * and to it (ingress), as an SVG drawn on the hub (no chart library, no script; colours come
 * from the stylesheet through classes, which the CSP allows where a style attribute is not).
 * Each hour has a <title> (a tooltip, read by screen readers) and the figure's caption says
 * the totals, so the chart is not the only way to the numbers.
 */
import type { HourOfMessages } from "../messages/messages.ts";
import { type Html, html } from "./html.ts";

const WIDTH = 480;
const HEIGHT = 140;
const LEFT = 34;
const RIGHT = 6;
const TOP = 10;
const BOTTOM = 24;

const hourLabel = (hour: number) => `${new Date(hour * 1000).toISOString().slice(11, 13)}:00`;

/** The chart for `hours` (oldest first), in a <figure> whose caption has the totals. */
export function hourlyChart(hours: HourOfMessages[], id = "hourly"): Html {
  const max = Math.max(1, ...hours.map((h) => Math.max(h.egress, h.ingress)));
  const plotW = WIDTH - LEFT - RIGHT;
  const plotH = HEIGHT - TOP - BOTTOM;
  const slot = plotW / Math.max(1, hours.length);
  const barW = Math.max(1, slot / 2 - 1);
  const y = (n: number) => TOP + plotH - (n / max) * plotH;
  const bar = (x: number, n: number, kind: "egress" | "ingress") =>
    n === 0
      ? html``
      : html`<rect class="bar ${kind}" x="${x.toFixed(1)}" y="${y(n).toFixed(1)}" width="${barW.toFixed(1)}" height="${(TOP + plotH - y(n)).toFixed(1)}"></rect>`;
  const groups = hours.map((h, i) => {
    const x = LEFT + i * slot;
    return html`<g><title>${hourLabel(h.hour)} UTC: ${h.egress} from the thing, ${h.ingress} to the thing</title><rect class="hit" x="${x.toFixed(1)}" y="${TOP}" width="${slot.toFixed(1)}" height="${plotH}"></rect>${bar(x + 0.5, h.egress, "egress")}${bar(x + 0.5 + barW + 1, h.ingress, "ingress")}</g>`;
  });
  const ticks = hours.flatMap((h, i) =>
    i % 6 === 0 || i === hours.length - 1
      ? [
          html`<text class="tick" x="${(LEFT + i * slot + slot / 2).toFixed(1)}" y="${HEIGHT - 8}" text-anchor="middle">${i === hours.length - 1 ? "now" : hourLabel(h.hour)}</text>`,
        ]
      : [],
  );
  const totalOut = hours.reduce((n, h) => n + h.egress, 0);
  const totalIn = hours.reduce((n, h) => n + h.ingress, 0);
  const busiest = hours.reduce<HourOfMessages | undefined>((best, h) => (h.egress + h.ingress > (best ? best.egress + best.ingress : 0) ? h : best), undefined);
  return html`<figure class="chart">
  <svg viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-labelledby="${id}-caption" focusable="false">
    <line class="axis" x1="${LEFT}" y1="${TOP + plotH}" x2="${WIDTH - RIGHT}" y2="${TOP + plotH}"></line>
    <text class="tick" x="${LEFT - 4}" y="${TOP + 4}" text-anchor="end">${max}</text>
    <text class="tick" x="${LEFT - 4}" y="${TOP + plotH}" text-anchor="end">0</text>
    ${groups}
    ${ticks}
  </svg>
  <figcaption id="${id}-caption">
    Messages per hour, last ${hours.length} hours (UTC):
    <span class="swatch egress"></span> ${totalOut} from the thing,
    <span class="swatch ingress"></span> ${totalIn} to the thing${busiest ? html`; busiest hour ${hourLabel(busiest.hour)} UTC (${busiest.egress + busiest.ingress})` : html``}.
  </figcaption>
</figure>`;
}
