/**
 * Row 7, does `hub thing create` block the hub's event loop? A probe sends GET
 * /dev/v1/things/{id} to `hub serve` (the compiled binary) one request after another and times
 * each answer; the longest answer in a window is the longest stall the hub's event loop had
 * while it. Unit: milliseconds (lower is better).
 *
 * - FlashLex: the window in which K things are created through the API (POST /things, RSA,
 *   the default key; one after another, from the same bench process, K = 10, 4 with --quick).
 * - peer: the same probe for as long, with no creation (the hub's own floor).
 *
 * Ratio = longest probe answer while creating / without; the p99 is shown too. Issue 13's
 * target is "never blocks the event loop"; the table reads it as at most 2× the floor.
 */
import { makeHubFixture } from "../../test/support/hub-fixture.ts";
import { apiBase, operatorHeaders, serveHub } from "../lib/hub.ts";
import { type BenchContext, measured, type Row, type RowResult } from "../lib/row.ts";
import { interleave, median, percentile } from "../lib/stats.ts";

interface Window {
  maxMs: number;
  p99Ms: number;
  probes: number;
  ms: number;
}

export const thingCreate: Row = {
  id: "thing-create",
  number: 7,
  async run(ctx: BenchContext): Promise<RowResult[]> {
    const hub = await makeHubFixture(ctx.work);
    const probed = await hub.createThing("probed");
    const serving = await serveHub(hub, ctx.work, "hub-thing-create");
    const api = apiBase(hub);
    const headers = operatorHeaders(hub);
    const k = ctx.quick ? 4 : 10;
    let made = 0;
    /** probes until `work` settles (or for `ms`); returns the probe answers' times */
    const probe = async (work: Promise<unknown> | number): Promise<Window> => {
      const times: number[] = [];
      let finished = false;
      const t0 = performance.now();
      const until = typeof work === "number" ? Bun.sleep(work) : work;
      void until.finally(() => (finished = true));
      while (!finished) {
        const s = performance.now();
        const answer = await fetch(`${api}/things/${probed.id}`, { headers });
        if (answer.status !== 200) throw new Error(`GET /things/{id} answered ${answer.status}`);
        await answer.arrayBuffer();
        times.push(performance.now() - s);
      }
      await until;
      return { maxMs: Math.max(...times), p99Ms: percentile(times, 99), probes: times.length, ms: performance.now() - t0 };
    };
    const create = async () => {
      for (let i = 0; i < k; i++) {
        const answer = await fetch(`${api}/things`, { method: "POST", headers, body: JSON.stringify({ name: `created${made++}` }) });
        if (answer.status !== 201) throw new Error(`POST /things answered ${answer.status}: ${await answer.text()}`);
        await answer.arrayBuffer();
      }
    };
    try {
      await probe(500); // warm-up
      const p99 = { ours: [] as number[], peer: [] as number[] };
      let lastCreateMs = 2_000;
      let probes = 0;
      const samples = await interleave(
        ctx.runs,
        async () => {
          const w = await probe(create());
          lastCreateMs = w.ms;
          p99.ours.push(w.p99Ms);
          probes += w.probes;
          return w.maxMs;
        },
        async () => {
          const w = await probe(lastCreateMs);
          p99.peer.push(w.p99Ms);
          return w.maxMs;
        },
        (i, a, b) => ctx.progress(`thing-create ${i + 1}/${ctx.runs}: longest probe ${a.toFixed(1)} ms while creating ${k} things, ${b.toFixed(1)} ms without`),
      );
      return [
        measured(
          {
            id: "thing-create-stall",
            row: 7,
            measure: `\`hub thing create\`: longest event-loop stall (probe GET) while ${k} things are created`,
            unit: "ms",
            better: "lower",
            peerName: "the same probe, no creation",
            target: { op: "<=", value: 2 },
            oursExtra: `p99 ${median(p99.ours).toFixed(1)} ms`,
            peerExtra: `p99 ${median(p99.peer).toFixed(1)} ms`,
            notes: [
              `${Math.round(probes / ctx.runs)} probes per creating window; RSA keys (the default); the target reads "never blocks" as at most 2× the floor`,
            ],
          },
          samples,
        ),
      ];
    } finally {
      await serving.stop();
    }
  },
};
