/**
 * The setups `bun run bench:fleet` compares, each one entry of SETUPS: how many hubs, which
 * database, which broker. Every setup serves copies of the same enrolled hub home (things.ts), so
 * the things and their certificates are the same everywhere.
 *
 *   (a) embedded   one hub, SQLite, its embedded broker (the default)
 *   (b) rabbitmq   one hub, SQLite, the three-node RabbitMQ cluster on loopback
 *
 * Issue 16's third setup is meant to be one more entry, once its parts exist:
 *
 *   { id: "postgres-cluster", label: "two hubs on PostgreSQL + the cluster", hubs: 2, database: "postgres", broker: "rabbitmq" }
 *
 * `startSetup` refuses, naming what is missing, a combination the hub cannot run yet (PostgreSQL,
 * several hubs on one broker), so such an entry reports SKIPPED rather than wrong figures.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { copyHome, type ServedHub, serveHome } from "./hubs.ts";
import { rabbitMissing, startRabbitCluster } from "./rabbitmq.ts";
import type { FleetCache } from "./things.ts";

export interface Setup {
  /** `--setups` takes these */
  id: string;
  label: string;
  hubs: number;
  database: "sqlite" | "postgres";
  broker: "embedded" | "rabbitmq";
}

export const SETUPS: Setup[] = [
  { id: "embedded", label: "(a) one hub, SQLite, embedded broker", hubs: 1, database: "sqlite", broker: "embedded" },
  { id: "rabbitmq", label: "(b) one hub, SQLite, 3-node RabbitMQ cluster", hubs: 1, database: "sqlite", broker: "rabbitmq" },
];

/** A setup up and running: where things and the bench reach it, and how to stop it. */
export interface RunningSetup {
  /** one API base per hub; the bench spreads its calls over them */
  apis: string[];
  token: string;
  /** where things connect (MQTT over TLS); a cluster's nodes in order */
  servers: { host: string; port: number }[];
  hubs: ServedHub[];
  /** broker processes apart from the hubs (the cluster's nodes), alive now */
  brokerPids(): number[];
  /** hard-kills broker node i (the resilience run); absent when the setup has no node to lose */
  killNode?(i: number): Promise<void>;
  /** stops every process the setup started; never throws */
  stop(): Promise<void>;
}

/** Why `setup` cannot run on this machine or with this hub, or undefined. */
export function setupMissing(setup: Setup): string | undefined {
  if (setup.database !== "sqlite") return `the hub has no ${setup.database} driver yet`;
  if (setup.hubs > 1) return "several hubs on one broker are not supported yet (one MQTT client id per hub)";
  if (setup.broker === "rabbitmq") return rabbitMissing();
  return undefined;
}

/** Starts `setup` in `work` from the enrolled home of `fleet`; stops what it started when a step fails. */
export async function startSetup(setup: Setup, fleet: FleetCache, work: string): Promise<RunningSetup> {
  const missing = setupMissing(setup);
  if (missing) throw new Error(missing);
  mkdirSync(work, { recursive: true });
  const home = join(work, "hub");
  await copyHome(fleet.home, home);
  const cluster = setup.broker === "rabbitmq" ? await startRabbitCluster(home, work) : undefined;
  let hub: ServedHub;
  try {
    hub = await serveHome(home, join(work, "hub.log"));
  } catch (err) {
    await cluster?.stop();
    throw err;
  }
  return {
    apis: hub.apis,
    token: fleet.token,
    servers: cluster ? cluster.servers : [{ host: "127.0.0.1", port: hub.brokerPort }],
    hubs: [hub],
    brokerPids: () => cluster?.pids() ?? [],
    killNode: cluster ? (i) => cluster.kill(i) : undefined,
    async stop() {
      await hub.stop().catch(() => {});
      await cluster?.stop().catch(() => {});
    },
  };
}
