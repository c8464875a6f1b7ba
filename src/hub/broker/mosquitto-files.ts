import { chmodSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type HubHome, openHubHome } from "../home/home.ts";
import { addCrlFile } from "../home/settings.ts";
import type { HubStore } from "../store/hub-store.ts";
import { writeRevocationLists } from "../things/revocation.ts";
import { renderMosquittoAcl, renderMosquittoConfig } from "./mosquitto-config.ts";

/**
 * Writes everything an external Mosquitto needs to enforce the hub's rules into `dir`
 * (outside the 0700 hub home, so Mosquitto's user can read it): config, ACL, CA and broker
 * certificates, the broker key and the CRL, which every later `hub thing revoke` rewrites.
 */
export async function writeMosquittoFiles(
  home: HubHome,
  store: HubStore,
  opts: { dir: string; port: number; bindAddress: string; persistenceDir?: string },
): Promise<{ config: string; brokerKey: string; crl: string }> {
  const file = (name: string) => join(opts.dir, name);
  mkdirSync(opts.dir, { recursive: true, mode: 0o755 });
  copyFileSync(home.paths.caCert, file("root-ca-cert.pem"));
  copyFileSync(home.paths.brokerCert, file("broker-cert.pem"));
  // Group-readable, so that after `chown root:mosquitto` the broker can read it after dropping root.
  writeFileSync(file("broker-key.pem"), readFileSync(home.paths.brokerKey), { mode: 0o640 });
  chmodSync(file("broker-key.pem"), 0o640);
  writeFileSync(file("mosquitto.acl"), renderMosquittoAcl(), { mode: 0o644 });
  writeFileSync(
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
    }),
    { mode: 0o644 },
  );
  addCrlFile(home.paths.config, file("crl.pem"));
  // Re-read the home: hub.yml now lists the new CRL file, and this writes it.
  await writeRevocationLists(openHubHome(home.paths.dir), store);
  return { config: file("mosquitto.conf"), brokerKey: file("broker-key.pem"), crl: file("crl.pem") };
}
