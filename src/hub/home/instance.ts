/**
 * The hub process's instance name, which makes its MQTT client id `flashlex-hub-<instance>`:
 * several hubs on one broker cluster each need their own session (one client id is one session;
 * a second connection under it closes the first). hub.yml's `hub.instance` when set; otherwise a
 * name made once at random and kept in the home's `instance` file, so a restarted hub resumes its
 * own persistent session (and the messages the broker queued for it meanwhile).
 *
 * A home copied to make a second hub copies that file too: set `hub.instance` in each copy's
 * hub.yml (docs/scaling.md, "Several hubs").
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../../shared/errors.ts";
import { createFile } from "../../shared/files.ts";
import { HUB_CLIENT_NAME, type HubPaths } from "./paths.ts";
import { HUB_INSTANCE, type HubSettings } from "./settings.ts";

/** The file that keeps a made instance name. */
export function instanceFile(paths: Pick<HubPaths, "dir">): string {
  return join(paths.dir, "instance");
}

/**
 * This hub's instance name: `settings.instance`, else the `instance` file's, else a new one
 * (8 hex digits) written there (0644). Throws ConfigError (78) when the file holds no valid name.
 */
export function hubInstance(paths: Pick<HubPaths, "dir">, settings: Pick<HubSettings, "instance">): string {
  if (settings.instance) return settings.instance;
  const file = instanceFile(paths);
  if (!existsSync(file)) {
    try {
      createFile(file, `${randomBytes(4).toString("hex")}\n`, 0o644);
    } catch (err) {
      // Two commands making it at once: the other one's name stands.
      if ((err as { code?: unknown }).code !== "EEXIST") throw err;
    }
  }
  const name = readFileSync(file, "utf8").trim();
  if (!HUB_INSTANCE.test(name))
    throw new ConfigError(`${file}: not a hub instance name (1 to 32 lower-case letters, digits and dashes); delete it or set hub.instance`);
  return name;
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
