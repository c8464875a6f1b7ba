/**
 * Where a hub home is and what is in it: paths only, no reading, so a command can name the home
 * before it loads anything (home.ts opens it).
 */
import { homedir } from "node:os";
import { join, resolve } from "node:path";

/**
 * The hub's home directory (mode 0700). Everything the hub knows lives here, so backing up the
 * hub is copying this directory, hub.db as a snapshot (`hub backup`, backup.ts).
 *
 *   hub.yml                      settings (settings.ts); `hub init` writes it all (init.ts)
 *   hub.db                       things, messages, token hashes (SQLite, WAL)
 *   ca-cert.pem / ca-key.pem     the certificate authority; the key (0600) never leaves the hub
 *   broker-cert.pem / -key.pem   the broker's TLS server certificate (also the API's, with tls)
 *   hub-client-cert.pem / -key   the hub's own client certificate (CN flashlex-hub), used to
 *                                log in to an external broker
 *   broker-secret                shared with a RabbitMQ cluster (0600): the path of the hub's
 *                                auth listener and the management password (broker-auth.ts)
 *   dists/<thing id>.zip         each thing's distribution (0600): it holds the thing's private
 *                                key, kept so the distribution can be downloaded again
 *   releases/<version>/          releases for things to update to (updates/releases.ts)
 *   creating/<thing id>          this home's creates in flight: an empty file from before a
 *                                create's zip is written until its row is committed, so that
 *                                `hub serve` knows a zip left by a killed create as its own
 *                                (things/provision.ts removeOrphanDistributions)
 *   instance                     written by earlier hubs only: their random instance name, still read (instance.ts)
 *
 * `dists/` and `releases/` are under `shared` (hub.yml `hub.sharedDir`, default the home): several
 * hubs of one fleet point it at one shared directory (docs/scaling.md, "Several hubs").
 */
export interface HubPaths {
  dir: string;
  config: string;
  database: string;
  caCert: string;
  caKey: string;
  brokerCert: string;
  brokerKey: string;
  clientCert: string;
  clientKey: string;
  /** where dists/ and releases/ are: hub.yml's `hub.sharedDir`, else the home */
  shared: string;
  dists: string;
  /** this home's creates in flight, one empty file per thing id (never shared: another hub's are its own) */
  creating: string;
  /** the running `hub serve`'s owner-only socket, through which local commands reach it */
  socket: string;
  /** the secret shared with a RabbitMQ cluster (0600; `hub rabbitmq-config` makes it) */
  brokerSecret: string;
}

/** The paths of the home `dir`; `sharedDir` (relative to the home) moves dists/ and releases/. */
export function hubPaths(dir: string, sharedDir?: string): HubPaths {
  const d = resolve(dir);
  const shared = sharedDir ? resolve(d, sharedDir) : d;
  return {
    dir: d,
    config: join(d, "hub.yml"),
    database: join(d, "hub.db"),
    caCert: join(d, "ca-cert.pem"),
    caKey: join(d, "ca-key.pem"),
    brokerCert: join(d, "broker-cert.pem"),
    brokerKey: join(d, "broker-key.pem"),
    clientCert: join(d, "hub-client-cert.pem"),
    clientKey: join(d, "hub-client-key.pem"),
    shared,
    dists: join(shared, "dists"),
    creating: join(d, "creating"),
    socket: join(d, "hub.sock"),
    brokerSecret: join(d, "broker-secret"),
  };
}

/** `--dir`, else `$FLASHLEX_HUB_DIR`, else `~/.flashlex-hub`. */
export function defaultHubDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.FLASHLEX_HUB_DIR || join(homedir(), ".flashlex-hub");
}

/** `<shared>/dists/<thing id>.zip`: where the hub keeps a thing's distribution (it holds the thing's private key). */
export function distributionPath(paths: HubPaths, thingId: string): string {
  return join(paths.dists, `${thingId}.zip`);
}

/**
 * The CN of the hub's own client certificate (hub-client-cert.pem), with which it logs in to an
 * external broker. No thing can be called this: thing names start with 8 hex digits and a dash.
 */
export const HUB_CLIENT_NAME = "flashlex-hub";
