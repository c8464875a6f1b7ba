/**
 * Row 6, start time: `flashlex --version` (the compiled binary) from exec to exit, in
 * milliseconds (lower is better), next to the peer: a compiled hello-world
 * (bench/peers/hello.ts, compiled exactly as flashlex, bytecode included). Both timed the same
 * way (Bun.spawn to exit, output discarded), alternating, after a warm-up; 21 pairs (5 with
 * --quick). Ratio = flashlex / hello-world.
 */
import { binaryPath } from "../../test/support/binary.ts";
import { compiledFloor } from "../lib/floors.ts";
import { timeProcess } from "../lib/procs.ts";
import { type BenchContext, measured, type Row, type RowResult } from "../lib/row.ts";
import { interleave } from "../lib/stats.ts";

export const startTime: Row = {
  id: "start",
  number: 6,
  async run(ctx: BenchContext): Promise<RowResult[]> {
    const hello = await compiledFloor(ctx, "hello");
    const ours = () => timeProcess([binaryPath(), "--version"]);
    const peer = () => timeProcess([hello]);
    await ours(); // warm-up: the page cache
    await peer();
    const runs = ctx.quick ? Math.max(ctx.runs, 5) : 21;
    const samples = await interleave(runs, ours, peer);
    ctx.progress(`start: ${runs} pairs`);
    return [
      measured(
        {
          id: "start-version",
          row: 6,
          measure: "`flashlex --version` start",
          unit: "ms",
          better: "lower",
          peerName: "compiled hello-world",
          target: { op: "<=", value: 3 },
        },
        samples,
      ),
    ];
  },
};
