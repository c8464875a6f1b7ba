import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { FlashlexError } from "../../shared/errors.ts";
import { writeFileAtomicallySync } from "../../shared/files.ts";
import { formatListenAddress } from "../../shared/listen-address.ts";
import { pathExists } from "../../shared/path-exists.ts";
import { type HubHome, openHubHome, readBrokerTls, readCaCertificate } from "../home/home.ts";
import { HUB_CLIENT_NAME } from "../home/paths.ts";
import { addCrlFile, setBrokerSettings } from "../home/settings.ts";
import type { HubStore } from "../store/hub-store.ts";
import { CrlFilesNotWritten, writeRevocationLists } from "../things/revocation.ts";
import { renderDynsecState } from "./dynsec.ts";
import { renderMosquittoAcl, renderMosquittoConfig } from "./mosquitto-config.ts";

/** An operator chowns these files to Mosquitto's user (`chown root:mosquitto broker-key.pem`); a run again keeps that. */
const KEEP_OWNER = { keepOwner: true };

/**
 * Writes everything an external Mosquitto needs to enforce the hub's rules into `dir`
 * (outside the 0700 hub home, so Mosquitto's user can read it): config, ACL, CA and broker
 * certificates, the broker key and the CRL, which every later `hub thing revoke` rewrites.
 *
 * With `dynsecPlugin` (the plugin's .so path) the config loads the dynamic security plugin and
 * `dynsec/dynamic-security.json` gets its initial state: the hub as admin, every thing revoked so
 * far already shut out (dynsec.ts). An existing state file is left alone: Mosquitto owns it once
 * it runs (it rewrites it on every change), and the hub re-applies every revocation when it
 * connects anyway. hub.yml's `broker.external` is set to where it listens, so `hub serve` uses
 * it (`broker.rabbitmq` is removed). `persistenceDir` is made when missing (Mosquitto would start without it and
 * fail at its first save). Returns the paths an operator must act on (`persistenceDir` and
 * `dynsecDir`: chown to Mosquitto's user).
 */
export async function writeMosquittoFiles(
  home: HubHome,
  store: HubStore,
  opts: { dir: string; port: number; bindAddress: string; persistenceDir?: string; dynsecPlugin?: string },
): Promise<{ config: string; brokerKey: string; crl: string; external: string; persistenceDir?: string; dynsecDir?: string; dynsecStateKept?: boolean }> {
  const file = (name: string) => join(opts.dir, name);
  mkdirSync(opts.dir, { recursive: true, mode: 0o755 });
  // Mosquitto does not make it: without it, it starts and loses its sessions at the first save.
  if (opts.persistenceDir) mkdirSync(opts.persistenceDir, { recursive: true, mode: 0o755 });
  writeFileAtomicallySync(file("root-ca-cert.pem"), readCaCertificate(home.paths), 0o644, KEEP_OWNER);
  // checked as hub serve checks them: an empty key would make a broker that refuses every handshake
  const broker = readBrokerTls(home.paths);
  writeFileAtomicallySync(file("broker-cert.pem"), broker.certPem, 0o644, KEEP_OWNER);
  // Group-readable, so that after `chown root:mosquitto` the broker can read it after dropping root.
  writeFileAtomicallySync(file("broker-key.pem"), broker.keyPem, 0o640, KEEP_OWNER);
  writeFileAtomicallySync(file("mosquitto.acl"), renderMosquittoAcl(), 0o644, KEEP_OWNER);
  let dynsec: { plugin: string; stateFile: string } | undefined;
  let dynsecStateKept: boolean | undefined;
  if (opts.dynsecPlugin) {
    const dynsecDir = file("dynsec");
    dynsec = { plugin: opts.dynsecPlugin, stateFile: join(dynsecDir, "dynamic-security.json") };
    // Mosquitto writes `<state>.new` and renames it: the directory, not just the file, must be its.
    mkdirSync(dynsecDir, { recursive: true, mode: 0o755 });
    dynsecStateKept = pathExists(dynsec.stateFile);
    if (!dynsecStateKept) {
      const revoked = (await store.revokedThings()).map((t) => t.name);
      writeFileAtomicallySync(dynsec.stateFile, renderDynsecState(HUB_CLIENT_NAME, revoked), 0o644);
    }
  }
  writeFileAtomicallySync(
    file("mosquitto.conf"),
    renderMosquittoConfig({
      port: opts.port,
      bindAddress: opts.bindAddress,
      caFile: file("root-ca-cert.pem"),
      certFile: file("broker-cert.pem"),
      keyFile: file("broker-key.pem"),
      aclFile: file("mosquitto.acl"),
      crlFile: file("crl.pem"),
      persistenceDir: opts.persistenceDir,
      dynsec,
    }),
    0o644,
    KEEP_OWNER,
  );
  // `hub serve` logs in where this Mosquitto listens (opts.port), by the name its certificate has
  const external = `mqtts://${formatListenAddress({ host: home.settings.broker.host, port: opts.port })}`;
  setBrokerSettings(home.paths.config, { external });
  addCrlFile(home.paths.config, file("crl.pem"));
  // Re-read the home: hub.yml now lists the new CRL file, and this writes it.
  await writtenAnyway(opts.dir, () => writeRevocationLists(openHubHome(home.paths.dir), store));
  return {
    config: file("mosquitto.conf"),
    brokerKey: file("broker-key.pem"),
    crl: file("crl.pem"),
    external,
    persistenceDir: opts.persistenceDir,
    dynsecDir: dynsec ? file("dynsec") : undefined,
    dynsecStateKept,
  };
}

/**
 * Runs `writeCrls` for a broker's files just written in `dir`: when another CRL file hub.yml lists
 * could not be written (a directory removed since), the error says that these files, their CRL
 * included, are complete.
 */
export async function writtenAnyway(dir: string, writeCrls: () => Promise<unknown>): Promise<void> {
  try {
    await writeCrls();
  } catch (err) {
    if (!(err instanceof CrlFilesNotWritten) || err.failed.some((f) => f.file.startsWith(join(dir, "/")))) throw err;
    throw new FlashlexError(`wrote ${dir} completely, but ${err.message}`, err.kind, { cause: err });
  }
}
