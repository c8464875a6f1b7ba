import { join } from "node:path";
import { createCrl } from "../../crypto/crl.ts";
import { writeFileAtomicallySync } from "../../shared/files.ts";
import { type HubHome, readCa } from "../home/home.ts";
import type { HubStore } from "../store/hub-store.ts";
import { crlValiditySeconds } from "./crl-renewal.ts";

/**
 * Revocation for brokers that check certificates themselves (Mosquitto's `crlfile`). The
 * embedded broker asks the database instead and needs none of this. The CRL lists the
 * certificate serial of every revoked thing; it is written to `<hub home>/crl.pem` and to every
 * file in hub.yml's `broker.crlFiles`, each replaced atomically so a broker never reads half a
 * file. Mosquitto re-reads it on SIGHUP (`systemctl reload mosquitto`; a running hub does so
 * through hub.yml `broker.reloadCommand`). Each is valid for crlValiditySeconds() (crl-renewal.ts),
 * and a running hub re-signs them long before that.
 */
export function hubCrlPath(home: HubHome): string {
  return join(home.paths.dir, "crl.pem");
}

/** Writes every CRL file (see above); returns their paths. Throws on a CA or file error. */
export async function writeRevocationLists(home: HubHome, store: HubStore, now = new Date(), validitySeconds = crlValiditySeconds()): Promise<string[]> {
  const serials = (await store.listThings()).filter((t) => t.revokedAt !== null).map((t) => t.certSerial);
  const pem = await createCrl(readCa(home.paths), serials, { now, days: validitySeconds / 86_400 });
  const targets = [hubCrlPath(home), ...home.settings.broker.crlFiles];
  // 0644: the broker's own user must read it
  for (const file of targets) writeFileAtomicallySync(file, pem, 0o644);
  return targets;
}
