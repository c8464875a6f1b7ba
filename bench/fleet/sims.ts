/**
 * The simulator's processes (bench/peers/fleet-sim.ts) seen from the bench: start them on slices
 * of the fleet, send each a command, wait for its answers, collect their reports. Every process
 * started here is killed by `stop()` and, failing that, when the bench exits.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { FleetThing } from "./things.ts";

export interface SimEvent {
  ev: string;
  [key: string]: unknown;
}

/** What one simulator process saw (its report). */
export interface SimReport {
  /** [bench id, epoch ms] per arrival; a repeat is another entry */
  ingress: [string, number][];
  /** [message id, thing index, sent ms, acknowledged ms | null, round] */
  egress: [string, number, number, number | null, number][];
  connected: number;
  reconnects: number;
}

export interface Sim {
  proc: ReturnType<typeof Bun.spawn>;
  send(command: Record<string, unknown>): void;
  /** the next event named `ev` after now (or already queued), within `timeoutMs` */
  next(ev: string, timeoutMs: number): Promise<SimEvent>;
}

const running = new Set<ReturnType<typeof Bun.spawn>>();
process.once("exit", () => {
  for (const proc of running) if (proc.exitCode === null) proc.kill("SIGKILL");
});

function startSim(configFile: string, logFile: string): Sim {
  const proc = Bun.spawn([process.execPath, join(import.meta.dir, "../peers/fleet-sim.ts"), configFile], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: Bun.file(logFile),
  });
  running.add(proc);
  void proc.exited.then(() => running.delete(proc));
  const queue: SimEvent[] = [];
  void (async () => {
    let rest = "";
    for await (const chunk of proc.stdout as ReadableStream<Uint8Array>) {
      const parts = (rest + new TextDecoder().decode(chunk)).split("\n");
      rest = parts.pop()!;
      for (const line of parts) if (line.trim()) queue.push(JSON.parse(line) as SimEvent);
    }
  })();
  return {
    proc,
    send(command) {
      const stdin = proc.stdin as import("bun").FileSink;
      stdin.write(`${JSON.stringify(command)}\n`);
      stdin.flush();
    },
    async next(ev, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const i = queue.findIndex((e) => e.ev === ev);
        if (i >= 0) return queue.splice(i, 1)[0]!;
        if (proc.exitCode !== null) throw new Error(`a simulator process exited ${proc.exitCode} (its log: ${logFile})`);
        if (Date.now() > deadline) throw new Error(`no '${ev}' from a simulator process within ${timeoutMs / 1000} s (its log: ${logFile})`);
        await Bun.sleep(5);
      }
    },
  };
}

export interface SimGroup {
  sims: Sim[];
  /** sends `command` to every process and gathers each one's `ev` answer */
  ask(command: Record<string, unknown>, ev: string, timeoutMs?: number): Promise<SimEvent[]>;
  /** every process's report, joined */
  report(): Promise<SimReport>;
  stop(): Promise<void>;
}

export interface SimSlice {
  things: FleetThing[];
  /** index of the slice's first thing in the fleet */
  offset: number;
}

/**
 * Starts one simulator process per slice (files in `work`), connecting to `servers`. Resolves
 * once every process is started (not connected: wait for their `ready`).
 */
export function startSims(
  slices: SimSlice[],
  common: { ca: string; key: string; servers: { host: string; port: number }[]; parallel?: number; connectTimeoutMs?: number },
  work: string,
): SimGroup {
  mkdirSync(work, { recursive: true });
  const sims = slices.map((slice, k) => {
    const file = join(work, `sim-${slice.offset}.json`);
    writeFileSync(
      file,
      JSON.stringify({
        ...common,
        parallel: common.parallel ?? 64,
        connectTimeoutMs: common.connectTimeoutMs ?? 60_000,
        things: slice.things,
        offset: slice.offset,
      }),
    );
    return startSim(file, join(work, `sim-${k}-${slice.offset}.log`));
  });
  return {
    sims,
    async ask(command, ev, timeoutMs = 30_000) {
      for (const sim of sims) sim.send(command);
      return await Promise.all(sims.map((sim) => sim.next(ev, timeoutMs)));
    },
    async report() {
      const files = sims.map((_, k) => join(work, `report-${k}.json`));
      for (const [k, sim] of sims.entries()) sim.send({ cmd: "report", file: files[k] });
      await Promise.all(sims.map((sim) => sim.next("report", 60_000)));
      const joined: SimReport = { ingress: [], egress: [], connected: 0, reconnects: 0 };
      for (const file of files) {
        const r = JSON.parse(readFileSync(file, "utf8")) as SimReport;
        for (const x of r.ingress) joined.ingress.push(x);
        for (const x of r.egress) joined.egress.push(x);
        joined.connected += r.connected;
        joined.reconnects += r.reconnects;
      }
      return joined;
    },
    async stop() {
      for (const sim of sims) if (sim.proc.exitCode === null) sim.proc.kill("SIGTERM");
      await Promise.all(
        sims.map(async (sim) => {
          const exited = await Promise.race([sim.proc.exited.then(() => true), Bun.sleep(10_000).then(() => false)]);
          if (!exited) sim.proc.kill("SIGKILL");
        }),
      );
    },
  };
}

/** `things` cut into `count` slices of about equal size. */
export function slicesOf(things: FleetThing[], count: number): SimSlice[] {
  const size = Math.ceil(things.length / count);
  const slices: SimSlice[] = [];
  for (let offset = 0; offset < things.length; offset += size) slices.push({ things: things.slice(offset, offset + size), offset });
  return slices;
}
