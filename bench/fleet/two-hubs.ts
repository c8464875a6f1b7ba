/**
 * Setup (c) of the fleet bench: two `hub serve` processes on one PostgreSQL database and the
 * three-node RabbitMQ cluster, as docs/scaling.md "Several hubs" says and
 * test/integration/several-hubs.test.ts does: a throwaway PostgreSQL (test/support/postgres.ts),
 * one `hub init --db` (home A), the cluster's files written from A, then B a copy of A with its
 * own `hub.instance` and API port; both share `hub.sharedDir`.
 *
 * The fleet's things cannot be the cached SQLite home's (their rows live in hub.db): the same
 * number of things is enrolled through hub A's API with the fleet's one key (about 5 s per
 * 1,000 here), so (c) holds as many things, with certificates of its own CA.
 */
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseDocument } from "yaml";
import { run } from "../../test/support/binary.ts";
import { listenOnLoopback, loopbackHubInit } from "../../test/support/hub-fixture.ts";
import { freePort } from "../../test/support/mosquitto.ts";
import { hasPostgres, startPostgres, type TestPostgres } from "../../test/support/postgres.ts";
import { type RabbitCluster, startRabbitCluster } from "../../test/support/rabbitmq-cluster.ts";
import { type ServedHub, serveHome } from "./hubs.ts";
import { enrolThings, type FleetCache } from "./things.ts";

/** Why (c) cannot run here, or undefined. */
export const postgresMissing = () => (hasPostgres ? undefined : "PostgreSQL 15 is not installed (scripts/install-system-packages.sh)");

export interface TwoHubs {
  hubs: ServedHub[];
  /** the things enrolled into this setup's database, with the fleet's key */
  fleet: FleetCache;
  cluster: RabbitCluster;
  stop(): Promise<void>;
}

function configure(home: string, values: [string[], unknown][]): void {
  const file = join(home, "hub.yml");
  const doc = parseDocument(readFileSync(file, "utf8"));
  for (const [path, value] of values) doc.setIn(["hub", ...path], value);
  writeFileSync(file, doc.toString());
}

/**
 * Starts PostgreSQL, the cluster and two hubs in `work`, and enrols `cached.things.length` things
 * with `cached.key`. On a failed step, stops what it started and throws.
 */
export async function startTwoHubs(cached: FleetCache, work: string, progress: (m: string) => void): Promise<TwoHubs> {
  const started: (() => Promise<unknown>)[] = [];
  const stop = async () => {
    for (const s of started.reverse()) await s().catch(() => {});
  };
  try {
    mkdirSync(work, { recursive: true });
    // A directory of its own directly under /tmp: the server runs as the postgres user, who
    // cannot traverse the bench's 0700 work directory.
    const pgDir = mkdtempSync(join(tmpdir(), "flashlex-fleet-pg-"));
    started.push(async () => rmSync(pgDir, { recursive: true, force: true }));
    const pg: TestPostgres = await startPostgres(pgDir);
    // A bench that exits before stop() (a signal's 15 s grace) still leaves no server: SIGQUIT
    // is PostgreSQL's immediate shutdown (the postmaster ends its children).
    const onExit = () => {
      try {
        process.kill(Number(readFileSync(join(pgDir, "postgres", "data", "postmaster.pid"), "utf8").split("\n")[0]), "SIGQUIT");
      } catch {
        // stopped already
      }
    };
    process.once("exit", onExit);
    started.push(async () => {
      await pg.stop();
      process.removeListener("exit", onExit);
    });
    const [homeA, homeB, shared] = [join(work, "hub-a"), join(work, "hub-b"), join(work, "shared")];
    const [apiA, apiB] = [await freePort(), await freePort()];
    const init = await run([...loopbackHubInit(homeA, apiA, await freePort(), "127.0.0.1"), "--db", pg.url, "--json"], { timeoutMs: 60_000 });
    if (init.code !== 0) throw new Error(`hub init --db exited ${init.code}: ${init.stderr}`);
    const token = JSON.parse(init.stdout).token as string;
    listenOnLoopback(homeA);
    const cluster = await startRabbitCluster(homeA, work);
    started.push(() => cluster.stop());
    mkdirSync(shared);
    configure(homeA, [
      [["instance"], "a"],
      [["sharedDir"], shared],
      [["metrics", "listen"], false],
    ]);
    cpSync(homeA, homeB, { recursive: true });
    configure(homeB, [
      [["instance"], "b"],
      [["api", "port"], apiB],
      [["api", "publicUrl"], `http://127.0.0.1:${apiB}`],
    ]);
    const a = await serveHome(homeA, join(work, "hub-a.log"));
    started.push(() => a.stop());
    const b = await serveHome(homeB, join(work, "hub-b.log"));
    started.push(() => b.stop());
    const t0 = performance.now();
    const things = await enrolThings(a.apis[0]!, token, cached.key, 0, cached.things.length, progress);
    progress(`c: ${things.length} things enrolled into PostgreSQL through hub A in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    return {
      hubs: [a, b],
      fleet: { home: homeA, token, key: cached.key, ca: readFileSync(join(homeA, "ca-cert.pem"), "utf8"), things },
      cluster,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
