/**
 * Hubs for the fleet bench: a copy of the enrolled hub home on fresh loopback ports, served by
 * the compiled binary with its log in a file (the bench reads the stored-egress lines from it).
 */
import { cpSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseDocument } from "yaml";
import { binaryPath } from "../../test/support/binary.ts";
import { listenOnLoopback } from "../../test/support/hub-fixture.ts";
import { freePort } from "../../test/support/mosquitto.ts";
import { type LoggedProcess, startLogged } from "../lib/procs.ts";

/** A `hub serve` of the bench. */
export interface ServedHub extends LoggedProcess {
  /** its API base, `http://127.0.0.1:PORT/dev/v1` */
  apis: string[];
  /** the embedded broker's port (unused when the hub runs against a cluster) */
  brokerPort: number;
}

/** Reads the ports a hub home's hub.yml names. */
function ports(home: string): { api: number; broker: number } {
  const doc = parseDocument(readFileSync(join(home, "hub.yml"), "utf8"));
  return { api: Number(doc.getIn(["hub", "api", "port"])), broker: Number(doc.getIn(["hub", "broker", "port"])) };
}

/**
 * Copies the hub home `from` to `to` (replacing it) with new free loopback ports for the API and
 * the embedded broker, and metrics off (several hubs on one machine would share the default port).
 */
export async function copyHome(from: string, to: string): Promise<void> {
  rmSync(to, { recursive: true, force: true });
  cpSync(from, to, { recursive: true });
  const [apiPort, brokerPort] = [await freePort(), await freePort()];
  const file = join(to, "hub.yml");
  const doc = parseDocument(readFileSync(file, "utf8"));
  doc.setIn(["hub", "api", "port"], apiPort);
  doc.setIn(["hub", "api", "publicUrl"], `http://127.0.0.1:${apiPort}`);
  doc.setIn(["hub", "broker", "port"], brokerPort);
  doc.setIn(["hub", "metrics", "listen"], false);
  writeFileSync(file, doc.toString());
  listenOnLoopback(to);
}

/** `hub serve --dir home` (extra args after), its log in `logFile`, once it logged hub.started. */
export async function serveHome(home: string, logFile: string, extra: string[] = []): Promise<ServedHub> {
  rmSync(logFile, { force: true }); // an old log's hub.started must not count as this one's
  const hub = startLogged([binaryPath(), "hub", "serve", "--dir", home, ...extra], logFile);
  try {
    await hub.waitFor(/hub\.started/, 60_000);
  } catch (err) {
    await hub.stop();
    throw err;
  }
  const p = ports(home);
  return { ...hub, apis: [`http://127.0.0.1:${p.api}/dev/v1`], brokerPort: p.broker };
}
