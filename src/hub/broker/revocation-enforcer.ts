/**
 * Keeps an external broker's view of revocations in step with the hub database, whatever the
 * broker or the hub did meanwhile:
 *
 * - `enforce(names)`: a revocation this hub just learnt of (its own API, or the poll that sees
 *   `hub thing revoke` run by another process) goes to the broker now.
 * - `reconcile()`: every revoked thing, at the hub's start and after each reconnect to the
 *   broker, so revocations made while the hub was down or cut off take effect then.
 *
 * A failed attempt (broker away, plugin missing) keeps its names and is retried after `retryMs`,
 * doubling up to a minute (a broker without the plugin should not get a command every 5 s
 * forever), until it succeeds or the enforcer stops; attempts never overlap.
 */
import type { Logger } from "../../shared/log.ts";

export interface RevocationEnforcerOptions {
  /** shuts these things out (ExternalBroker.revoke); throws to be retried */
  revoke(thingNames: readonly string[]): Promise<void>;
  /** the names of every revoked thing in the hub database */
  listRevoked(): Promise<string[]>;
  log: Logger;
  /** ms before the first retry of a failed attempt (then doubling, at most 60 s); default 5000 */
  retryMs?: number;
}

export interface RevocationEnforcer {
  /** queues these names and sends them; resolves after the attempt (never throws) */
  enforce(thingNames: readonly string[]): Promise<void>;
  /** queues every revoked thing and sends them; resolves after the attempt (never throws) */
  reconcile(): Promise<void>;
  stop(): void;
}

/** The enforcer above, idle until `enforce` or `reconcile`; `stop` at shutdown drops its retry. Failures are logged, never thrown. */
export function createRevocationEnforcer(opts: RevocationEnforcerOptions): RevocationEnforcer {
  const retryMs = opts.retryMs ?? 5_000;
  const pending = new Set<string>();
  let inFlight: Promise<void> | undefined;
  let again = false;
  let retry: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  let warned = false;
  let failures = 0;
  /** reconcile's own retry when the revoked things could not be listed, and how often it failed in a row */
  let relist: ReturnType<typeof setTimeout> | undefined;
  let listFailures = 0;

  const attempt = async (): Promise<void> => {
    const names = [...pending];
    if (!names.length || stopped) return;
    const started = performance.now();
    try {
      await opts.revoke(names);
      for (const name of names) pending.delete(name);
      warned = false;
      failures = 0;
      opts.log.info("hub.revocation_enforced", { things: names.length, first: names[0], ms: Math.round(performance.now() - started) });
    } catch (err) {
      // Once per outage at WARN: a broker away for an hour must not write a line every 5 s.
      const delay = Math.min(60_000, retryMs * 2 ** failures++);
      (warned ? opts.log.debug : opts.log.warn).call(opts.log, "hub.revocation_enforce_failed", { things: names.length, error: err, retry_ms: delay });
      warned = true;
      if (!stopped && !retry) {
        retry = setTimeout(() => {
          retry = undefined;
          void flush();
        }, delay);
        retry.unref?.();
      }
    }
  };

  const flush = (): Promise<void> => {
    if (inFlight) {
      again = true;
      return inFlight;
    }
    inFlight = (async () => {
      do {
        again = false;
        await attempt();
      } while (again && !stopped);
    })().finally(() => (inFlight = undefined));
    return inFlight;
  };

  return {
    enforce(thingNames) {
      for (const name of thingNames) pending.add(name);
      return flush();
    },
    async reconcile() {
      try {
        for (const name of await opts.listRevoked()) pending.add(name);
        listFailures = 0;
      } catch (err) {
        // The database away (PostgreSQL restarting): the revocations made while the hub was
        // down must still reach the broker, so the list is asked for again, backing off as above
        // (it waited for the next broker reconnect, which may not come for days).
        const delay = Math.min(60_000, retryMs * 2 ** listFailures++);
        opts.log.warn("hub.revocation_reconcile_failed", { error: err, retry_ms: delay });
        if (!stopped) {
          clearTimeout(relist);
          relist = setTimeout(() => void this.reconcile(), delay);
          relist.unref?.();
        }
      }
      return flush();
    },
    stop() {
      stopped = true;
      clearTimeout(retry);
      clearTimeout(relist);
    },
  };
}
