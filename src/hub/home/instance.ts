/**
 * The hub process's instance name, which makes its MQTT client id `flashlex-hub-<instance>`:
 * several hubs on one broker cluster each need their own session (one client id is one session;
 * a second connection under it closes the first, and the two knock each other off for ever).
 *
 * Where it comes from, first match:
 *   1. hub.yml `hub.instance` (the override; docs/scaling.md "Several hubs");
 *   2. the home's `instance` file, where earlier hubs kept the name they made at random: kept so
 *      an upgraded hub resumes its own persistent session (and what the broker queued for it);
 *   3. derived: a hash of the machine's host name and the home's real path. Nothing is written,
 *      so a copied home (another directory, or another machine) gets a name of its own, and a
 *      restarted hub in the same place gets the same name back.
 *
 * A copy of a home that has an `instance` file (2) still shares the name: delete the file in the
 * copy, or set `hub.instance`. The external broker client names such a clash when it sees it
 * (broker/external.ts, `mqtt.client_id_clash`).
 */
import { createHash } from "node:crypto";
import { readFileSync, realpathSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { ConfigError } from "../../shared/errors.ts";
import { pathExists } from "../../shared/path-exists.ts";
import { HUB_CLIENT_NAME, type HubPaths } from "./paths.ts";
import { HUB_INSTANCE, type HubSettings } from "./settings.ts";

/** The file older hubs wrote their random instance name to; still read (see above). */
export function instanceFile(paths: Pick<HubPaths, "dir">): string {
  return join(paths.dir, "instance");
}

/** This hub's instance name and where it came from (for the start log). */
export interface HubInstance {
  name: string;
  /** `hub.yml` (hub.instance), `file` (the home's legacy `instance` file) or `derived` (host + real path) */
  from: "hub.yml" | "file" | "derived";
}

/**
 * The instance name derived from `host` and the home directory's real path (symlinks resolved,
 * so two paths to one home give one name): 10 hex digits of SHA-256 over both. Pure but for
 * realpath; throws the fs error when the directory does not exist.
 */
export function derivedInstance(dir: string, host: string = hostname()): string {
  return createHash("sha256")
    .update(`${host}\0${realpathSync(dir)}`)
    .digest("hex")
    .slice(0, 10);
}

/**
 * This hub's instance name: `settings.instance`, else the legacy `instance` file's, else derived
 * from the host name and the home's real path (nothing written). Throws ConfigError (78) when the
 * file holds no valid name.
 */
export function hubInstance(paths: Pick<HubPaths, "dir">, settings: Pick<HubSettings, "instance">, host?: string): HubInstance {
  if (settings.instance) return { name: settings.instance, from: "hub.yml" };
  const file = instanceFile(paths);
  if (!pathExists(file)) return { name: derivedInstance(paths.dir, host), from: "derived" };
  const name = readFileSync(file, "utf8").trim();
  if (!HUB_INSTANCE.test(name))
    throw new ConfigError(`${file}: not a hub instance name (1 to 32 lower-case letters, digits and dashes); delete it or set hub.instance`);
  return { name, from: "file" };
}

/** The MQTT client id of the hub instance `instance` on an external broker. */
export function hubClientId(instance: string): string {
  return `${HUB_CLIENT_NAME}-${instance}`;
}

/** True when `clientId` is a hub's: `flashlex-hub` (hubs before instances) or `flashlex-hub-<instance>`. */
export function isHubClientId(clientId: string): boolean {
  if (clientId === HUB_CLIENT_NAME) return true;
  return clientId.startsWith(`${HUB_CLIENT_NAME}-`) && HUB_INSTANCE.test(clientId.slice(HUB_CLIENT_NAME.length + 1));
}
