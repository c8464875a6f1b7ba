/**
 * Row 2, `flashlex collect` wall time: one JSON document posted to a real hub on loopback, the
 * whole process from exec to exit (start, config, keys, token signing, the POST, the outbox),
 * next to the peer `curl` posting the same body to the same route with a token signed
 * beforehand (`curl -sS -f -o /dev/null`, exec to exit). Unit: milliseconds (lower is better);
 * ratio = collect / curl.
 *
 * Two FlashLex figures, each paired with curl: collect delivering by itself (serve stopped, after
 * it ran once, as on a device: collect reads the config serve left read in data/, and the keys,
 * signs, records the message in the outbox and posts it), and collect
 * handing the document to the thing's running `serve` over its socket (the thing's usual state
 * under systemd; serve signs, records and posts).
 *
 * The hub is `flashlex hub init` + `hub thing create` + `hub serve`, all by the compiled binary,
 * its API on http://127.0.0.1 (hub init's loopback setup; the thing's config points there).
 * Every request is a new message: collect makes a new id, curl sends none and the hub makes one.
 */
import { join } from "node:path";
import { binaryPath } from "../../test/support/binary.ts";
import { makeHubFixture } from "../../test/support/hub-fixture.ts";
import { collectUrl, serveHub, tokenFor } from "../lib/hub.ts";
import { startLogged, timeProcess } from "../lib/procs.ts";
import { type BenchContext, measured, type Row, type RowResult, skipped } from "../lib/row.ts";
import { interleave } from "../lib/stats.ts";

const BODY = JSON.stringify({ temperature: 21.5, humidity: 40, device: "pi-42" });

export const collect: Row = {
  id: "collect",
  number: 2,
  async run(ctx: BenchContext): Promise<RowResult[]> {
    const base = {
      id: "collect-wall",
      row: 2,
      measure: "`flashlex collect` wall time, one message",
      unit: "ms",
      better: "lower" as const,
      peerName: "curl, token made beforehand",
      target: { op: "<=" as const, value: 2 },
    };
    if (!Bun.which("curl")) return [skipped(base, "curl is not installed (apt-get install -y curl)")];
    const hub = await makeHubFixture(ctx.work);
    const thing = await hub.createThing("bench-collect");
    const serving = await serveHub(hub, ctx.work, "hub-collect-wall");
    try {
      const token = await tokenFor(thing);
      const curl = ["curl", "-sS", "-f", "-o", "/dev/null", "-X", "POST", "-H", `Authorization: Bearer ${token}`, "-H", "Content-Type: application/json"];
      const ours = () => timeProcess([binaryPath(), "collect", ...thing.flags], { stdin: BODY });
      const peer = () => timeProcess([...curl, "--data-binary", BODY, collectUrl(hub, thing)]);
      // A thing whose serve has run (then stopped): it left the config it read in the data
      // directory (data/config.parsed.json), which a collect on its own reads instead of the YAML.
      const once = startLogged([binaryPath(), "serve", ...thing.flags], join(ctx.work, "serve-once.log"));
      await once.waitFor(/serve\.started/, 30_000);
      await once.stop();
      await ours(); // warm-up: the first run creates the outbox database, and the page cache gets the binary
      await peer();
      const runs = ctx.quick ? ctx.runs : Math.max(ctx.runs, 11);
      const alone = await interleave(runs, ours, peer, (i, a, b) =>
        ctx.progress(`collect ${i + 1}/${runs}: collect ${a.toFixed(0)} ms, curl ${b.toFixed(0)} ms`),
      );
      const serve = startLogged([binaryPath(), "serve", ...thing.flags], join(ctx.work, "serve-collect.log"));
      try {
        await serve.waitFor(/mqtt\.subscribed/, 30_000);
        await ours(); // warm-up: serve's first delivery
        const viaServe = await interleave(runs, ours, peer, (i, a, b) =>
          ctx.progress(`collect through serve ${i + 1}/${runs}: collect ${a.toFixed(0)} ms, curl ${b.toFixed(0)} ms`),
        );
        return [
          measured({ ...base, measure: "`flashlex collect` wall time, one message, serve stopped" }, alone),
          measured({ ...base, id: "collect-wall-serve", measure: "`flashlex collect` wall time, one message, through the running serve" }, viaServe),
        ];
      } finally {
        await serve.stop();
      }
    } finally {
      await serving.stop();
    }
  },
};
