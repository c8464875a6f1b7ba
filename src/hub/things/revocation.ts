import { join } from "node:path";
import { type CrlEntry, createCrl } from "../../crypto/crl.ts";
import { FlashlexError } from "../../shared/errors.ts";
import { writeFileAtomicallySync } from "../../shared/files.ts";
import { classifyForeign } from "../../shared/foreign-errors.ts";
import { type HubHome, readCa } from "../home/home.ts";
import type { HubStore } from "../store/hub-store.ts";
import { crlValiditySeconds, MAX_RENEWAL_INTERVAL_MS } from "./crl-renewal.ts";

/**
 * Revocation for brokers that check certificates themselves (Mosquitto's `crlfile`, RabbitMQ's
 * Erlang ssl `crl_check` reading a hashed directory). The embedded broker asks the database
 * instead and needs none of this. The CRL lists:
 *
 * - every revoked thing's certificate (and the previous one a pending renewal kept);
 * - every certificate a renewal superseded (RFC 5280 §5.3.1 reason `superseded`), from the moment
 *   the hub stopped accepting it (it forgot the previous key: the thing used its new one), until
 *   a day after the certificate's own notAfter. RFC 5280 §3.3 lets an entry leave once it has
 *   appeared on one regularly scheduled CRL issued after the certificate expired; a running hub
 *   re-signs at least daily, so a day after expiry it has. This keeps the CRL bounded: about one
 *   entry per thing renewed within the last lifetime (90 days by default).
 *
 * It is written to `<hub home>/crl.pem` and to every file in hub.yml's `broker.crlFiles`, each
 * replaced atomically so a broker never reads half a file. Mosquitto re-reads it on SIGHUP
 * (`systemctl reload mosquitto`; a running hub does so through hub.yml `broker.reloadCommand`);
 * RabbitMQ reads it at every handshake. Each is valid for crlValiditySeconds() (crl-renewal.ts),
 * and a running hub re-signs them long before that.
 */
export function hubCrlPath(home: HubHome): string {
  return join(home.paths.dir, "crl.pem");
}

/** How long after its notAfter a superseded certificate stays on the CRL, in ms (see above). */
export const SUPERSEDED_KEPT_AFTER_EXPIRY_MS = MAX_RENEWAL_INTERVAL_MS;

/** What the CRL lists at `now` (Unix ms); forgets superseded certificates that no longer need listing. */
export async function crlEntries(store: HubStore, now: number): Promise<CrlEntry[]> {
  const horizon = now - SUPERSEDED_KEPT_AFTER_EXPIRY_MS;
  await store.pruneSupersededCertificates(horizon);
  const entries: CrlEntry[] = [];
  for (const t of await store.revokedThings()) {
    const revokedAt = new Date(t.revokedAt!);
    entries.push({ serial: t.certSerial, revokedAt });
    if (t.previousCertSerial) entries.push({ serial: t.previousCertSerial, revokedAt });
  }
  for (const c of await store.supersededCertificates(horizon)) entries.push({ serial: c.serial, revokedAt: new Date(c.supersededAt), reason: "superseded" });
  return entries;
}

/**
 * Some CRL files could not be written (kind io, 74); every other one was. Its message names each
 * file, why, and that hub.yml lists it, in one line.
 */
export class CrlFilesNotWritten extends FlashlexError {
  constructor(
    readonly failed: { file: string; reason: string }[],
    readonly written: string[],
  ) {
    const each = failed.map((f) => `${f.file} (${f.reason})`).join(", ");
    super(
      `the CRL could not be written to ${each}, listed in hub.yml broker.crlFiles: a broker reading ${failed.length === 1 ? "it" : "them"} ` +
        "does not learn of new revocations, and refuses every client once the old CRL expires; fix the path or remove it from hub.yml",
      "io",
    );
    this.name = "CrlFilesNotWritten";
  }
}

/**
 * Writes every CRL file (see above), each one whatever happened to the others, keeping the owner
 * an operator gave it (`chown root:mosquitto`); returns their paths. Throws CrlFilesNotWritten
 * when some could not be written, after writing all the others; what signing throws (a CA or
 * database error) before writing any.
 */
export async function writeRevocationLists(home: HubHome, store: HubStore, now = new Date(), validitySeconds = crlValiditySeconds()): Promise<string[]> {
  const entries = await crlEntries(store, now.getTime());
  const pem = await createCrl(readCa(home.paths), entries, { now, days: validitySeconds / 86_400 });
  const targets = [hubCrlPath(home), ...home.settings.broker.crlFiles];
  const failed: { file: string; reason: string }[] = [];
  for (const file of targets) {
    try {
      // 0644: the broker's own user must read it
      writeFileAtomicallySync(file, pem, 0o644, { keepOwner: true });
    } catch (err) {
      // the hub's own crl.pem is in its home: a failure there is the home's, and says so as it is
      if (file === hubCrlPath(home)) throw err;
      failed.push({ file, reason: classifyForeign(err)?.reason ?? String((err as Error)?.message ?? err) });
    }
  }
  if (failed.length)
    throw new CrlFilesNotWritten(
      failed,
      targets.filter((t) => !failed.some((f) => f.file === t)),
    );
  return targets;
}

/**
 * One process's CRL writes, one at a time: a write asked for while one runs is done once more
 * after it (it may have read the database before the change it is asked for), so the files never
 * go back to an older state within this process.
 */
export function createCrlWriter(write: () => Promise<string[]>): { write(): Promise<string[]> } {
  let running: Promise<string[]> | undefined;
  let queued: Promise<string[]> | undefined;
  const start = (): Promise<string[]> => {
    running = write().finally(() => (running = undefined));
    return running;
  };
  return {
    write() {
      if (!running) return start();
      queued ??= running
        .catch(() => [])
        .then(() => {
          queued = undefined;
          return start();
        });
      return queued;
    },
  };
}
