/**
 * The CRL's lifetime and its renewal by a running hub (RFC 5280 §5.1.2.4-5: thisUpdate and
 * nextUpdate; a relying party treats a CRL past nextUpdate as unusable, and OpenSSL, hence
 * Mosquitto, then refuses *every* client certificate).
 *
 * Schedule: each CRL is valid for `crlValiditySeconds()` (365 days). `hub serve` re-signs every CRL
 * file at start and then every third of that validity, capped at one day: while the hub runs no
 * CRL on disk is ever more than a day old, and none is ever within 364 days of lapsing. After each
 * renewal the hub runs hub.yml `broker.reloadCommand`, because Mosquitto 2.0.11 keeps the CRL it
 * loaded at start or on its last SIGHUP (broker-reload.ts): without a reload command, Mosquitto's
 * copy lapses a year after its last (re)load, and the hub warns at start.
 *
 * Why a year and not ten: a CRL is also the hub's statement of who is revoked as of thisUpdate;
 * a year bounds how long a copy restored from an old backup can pass for current, while leaving a
 * hub that is stopped for months, or a Mosquitto without a reload command, far from a lock-out.
 *
 * Tests shorten it with FLASHLEX_CRL_VALIDITY_SECONDS (not for production: a hub stopped longer
 * than that locks every thing out of a Mosquitto that restarts).
 */
import { ConfigError } from "../../shared/errors.ts";
import { type Logger, quoteLogText } from "../../shared/log.ts";

export const DEFAULT_CRL_VALIDITY_SECONDS = 365 * 86_400;
/**
 * A hundred years: a nextUpdate past 9999 has no X.509 encoding (RFC 5280 §4.1.2.5 GeneralizedTime
 * is four digits of year), and 300000000000 s made a CRL whose nextUpdate OpenSSL reads as "Bad
 * time value".
 */
const MAX_CRL_VALIDITY_SECONDS = 100 * 365 * 86_400;
/** The most a running hub waits between renewals, in ms. */
export const MAX_RENEWAL_INTERVAL_MS = 86_400_000;

/**
 * Validity of every CRL the hub signs, in seconds: FLASHLEX_CRL_VALIDITY_SECONDS in `env` (a whole
 * number, at least 3 and at most a hundred years), or a year when it is unset or empty. Throws ConfigError (78) naming the
 * variable and its value for anything else: main.ts checks it before any command runs, so a
 * typo stops the command at its start, as a typo in hub.yml does, rather than being read as a
 * year without a word (the test that set it then waited on a renewal that never came).
 */
export function crlValiditySeconds(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.FLASHLEX_CRL_VALIDITY_SECONDS;
  if (raw === undefined || raw === "") return DEFAULT_CRL_VALIDITY_SECONDS;
  if (/^\d{1,15}$/.test(raw) && Number(raw) >= 3 && Number(raw) <= MAX_CRL_VALIDITY_SECONDS) return Number(raw);
  throw new ConfigError(
    `$FLASHLEX_CRL_VALIDITY_SECONDS is ${quoteLogText(raw)}; it takes a whole number of seconds, at least 3 and at most ${MAX_CRL_VALIDITY_SECONDS} (unset: ${DEFAULT_CRL_VALIDITY_SECONDS}, a year)`,
  );
}

/** ms between renewals for a validity in seconds: a third of it, at most a day. */
export function renewalIntervalMs(validitySeconds: number): number {
  return Math.min(MAX_RENEWAL_INTERVAL_MS, Math.floor((validitySeconds * 1000) / 3));
}

export interface CrlRenewalOptions {
  /** re-signs and writes every CRL file (revocation.ts writeRevocationLists); may throw */
  renew(): Promise<string[]>;
  /** after a successful renewal: tell the broker (broker-reload.ts) */
  afterRenewal?(): Promise<void>;
  intervalMs: number;
  log: Logger;
}

/**
 * Renews now, then every `intervalMs`; a failed renewal is logged at ERROR and tried again after
 * a tenth of the interval (the next regular one may be too late). Returns a stop function.
 */
export async function startCrlRenewal(opts: CrlRenewalOptions): Promise<() => void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  const schedule = (ms: number) => {
    if (stopped) return;
    timer = setTimeout(() => void renewOnce(), ms);
    timer.unref?.();
  };
  const renewOnce = async () => {
    try {
      const files = await opts.renew();
      opts.log.debug("hub.crl_renewed", { files: files.length, next_in_ms: opts.intervalMs });
      await opts.afterRenewal?.();
      schedule(opts.intervalMs);
    } catch (err) {
      opts.log.error("hub.crl_renewal_failed", { error: err, retry_ms: Math.ceil(opts.intervalMs / 10) });
      schedule(Math.ceil(opts.intervalMs / 10));
    }
  };
  await renewOnce();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
