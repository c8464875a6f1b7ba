/**
 * Row 3, hub collect throughput: requests per second (higher is better) and their p99 latency
 * (ms) that `hub serve` (the compiled binary) answers on POST /dev/v1/things/{id}/collect with
 * 32 keep-alive connections, each request a thing JWT to verify and a new message to store (a
 * distinct X-Flashlex-Message-Id per request), next to the peer: a bare `Bun.serve` handler
 * (bench/peers/bare-server.ts, run by the same Bun) that reads the same requests' bodies and
 * answers 200. Load: Debian's `wrk` (2 threads, 32 connections, --latency), one run of N
 * seconds per side, sides alternating; ratio = hub / bare handler, pair by pair.
 *
 * The token is signed once beforehand (the hub verifies it on every request); the hub's log
 * (a line per request) goes to a file. A run that got any non-2xx answer or socket error fails.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeHubFixture } from "../../test/support/hub-fixture.ts";
import { freePort } from "../../test/support/mosquitto.ts";
import { collectUrl, serveHub, tokenFor } from "../lib/hub.ts";
import { startLogged } from "../lib/procs.ts";
import { type BenchContext, measured, type Row, type RowResult, skipped } from "../lib/row.ts";
import { interleave, median } from "../lib/stats.ts";

const CONNECTIONS = 32;
const BODY = JSON.stringify({ temperature: 21.5, humidity: 40, device: "pi-42" });

/** wrk's script: the collect request, with a message id of its own for every request of every run. */
function wrkScript(token: string): string {
  return `
wrk.method = "POST"
wrk.body = '${BODY}'
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
local run = 0
local counter = 0
function init(args)
  run = tonumber(args[1])
end
function request()
  counter = counter + 1
  local id = string.format("%08x-%04x-4000-8000-%012x", run, tid, counter)
  return wrk.format(nil, nil, {
    ["Host"] = wrk.headers["Host"],
    ["Authorization"] = "Bearer ${token}",
    ["Content-Type"] = "application/json",
    ["X-Flashlex-Message-Id"] = id,
  }, nil)
end
`;
}

interface WrkResult {
  rps: number;
  p99Ms: number;
}

const toMs = (value: string, unit: string) => Number(value) * (unit === "us" ? 0.001 : unit === "s" ? 1000 : unit === "m" ? 60_000 : 1);

async function runWrk(url: string, script: string, seconds: number, runId: number): Promise<WrkResult> {
  const argv = ["wrk", "-t", "2", "-c", String(CONNECTIONS), "-d", `${seconds}s`, "--latency", "-s", script, url, "--", String(runId)];
  const proc = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`wrk exited ${code}: ${err}${out}`);
  const rps = Number(out.match(/Requests\/sec:\s+([\d.]+)/)?.[1]);
  const p99 = out.match(/^\s+99%\s+([\d.]+)(us|ms|s|m)\b/m);
  if (!Number.isFinite(rps) || !p99) throw new Error(`cannot read wrk's output:\n${out}`);
  const bad = out.match(/Non-2xx or 3xx responses: (\d+)/)?.[1];
  const socket = out.match(/Socket errors: (.*)/)?.[1];
  if (bad || socket) throw new Error(`wrk against ${url}: ${bad ? `${bad} non-2xx answers` : ""} ${socket ? `socket errors ${socket}` : ""}\n${out}`);
  return { rps, p99Ms: toMs(p99[1]!, p99[2]!) };
}

export const hubCollect: Row = {
  id: "hub-collect",
  number: 3,
  async run(ctx: BenchContext): Promise<RowResult[]> {
    const base = {
      id: "hub-collect-rps",
      row: 3,
      measure: `hub collect, JWT verify + store, ${CONNECTIONS} connections`,
      unit: "req/s",
      better: "higher" as const,
      peerName: "bare Bun.serve handler",
      target: { op: ">=" as const, value: 0.3 },
    };
    const p99Base = {
      id: "hub-collect-p99",
      row: 3,
      measure: `hub collect p99 latency, ${CONNECTIONS} connections`,
      unit: "ms",
      better: "lower" as const,
      peerName: "bare Bun.serve handler",
      target: { op: "<=" as const, value: 5, on: "ours" as const },
    };
    if (!Bun.which("wrk")) {
      const why = "wrk is not installed (apt-get install -y wrk; scripts/install-system-packages.sh installs it)";
      return [skipped(base, why), skipped(p99Base, why)];
    }
    const seconds = ctx.quick ? 2 : 4;
    const hub = await makeHubFixture(ctx.work);
    const thing = await hub.createThing("bench-load");
    const serving = await serveHub(hub, ctx.work, "hub-collect-load");
    const barePort = await freePort();
    const bare = startLogged([process.execPath, join(import.meta.dir, "../peers/bare-server.ts"), String(barePort)], join(ctx.work, "bare-server.log"));
    try {
      await bare.waitFor(/listening/, 10_000);
      const script = join(ctx.work, "collect.lua");
      writeFileSync(script, wrkScript(await tokenFor(thing)));
      const hubUrl = collectUrl(hub, thing);
      const bareUrl = `http://127.0.0.1:${barePort}/dev/v1/things/${thing.id}/collect`;
      let runId = Math.floor(Math.random() * 2 ** 30);
      const p99: { ours: number[]; peer: number[]; ratios: number[] } = { ours: [], peer: [], ratios: [] };
      const samples = await interleave(
        ctx.runs,
        async () => {
          const r = await runWrk(hubUrl, script, seconds, runId++);
          p99.ours.push(r.p99Ms);
          return r.rps;
        },
        async () => {
          const r = await runWrk(bareUrl, script, seconds, runId++);
          p99.peer.push(r.p99Ms);
          return r.rps;
        },
        (i, a, b) =>
          ctx.progress(
            `hub-collect ${i + 1}/${ctx.runs}: hub ${a.toFixed(0)} req/s (p99 ${p99.ours.at(-1)} ms), bare ${b.toFixed(0)} req/s (p99 ${p99.peer.at(-1)} ms)`,
          ),
      );
      p99.ratios = p99.ours.map((v, i) => v / p99.peer[i]!);
      const notes = [`wrk -t 2 -c ${CONNECTIONS} -d ${seconds}s per side and pair; the hub's log to a file`];
      return [
        measured({ ...base, oursExtra: `p99 ${median(p99.ours).toFixed(1)} ms`, peerExtra: `p99 ${median(p99.peer).toFixed(1)} ms`, notes }, samples),
        measured(p99Base, p99),
      ];
    } finally {
      await Promise.all([serving.stop(), bare.stop()]);
    }
  },
};
