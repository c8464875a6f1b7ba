/**
 * Reconnect pacing with the meaning the guide's `autoReconnectBackoffTime` had in the AWS IoT
 * SDK: the quiet time starts at `base`, doubles after each failed attempt up to `max`, and
 * resets once a connection has stayed up for `stable` seconds. We add full jitter (a random
 * delay between base and the current ceiling) so a fleet that lost its broker at once does
 * not come back at once.
 *
 * Two patterns get a longer wait than that, because retrying sooner cannot help:
 * - the broker refused what the session asked for (a subscription): the next wait is the
 *   ceiling, `max`;
 * - the broker closed one connection after another before they were stable, with no error on
 *   our side and no failed connect between them (a broker restarting refuses connects while it
 *   is down): the signature of another device (or a copied distribution) connected with the same
 *   client id, which MQTT 3.1.1 §3.1.4 has the broker resolve by closing the older connection.
 *   After `TAKEOVER_DROPS` such drops in a row the wait is at least `TAKEOVER_FLOOR_SECONDS`,
 *   doubling up to `TAKEOVER_CEILING_SECONDS`, so two devices do not kick each other off for ever
 *   at full speed and one of them can stay connected.
 */
export interface BackoffSettings {
  baseSeconds: number;
  maxSeconds: number;
  stableSeconds: number;
}

/** Why a connection ended, as far as the session can tell. */
export type DropCause = "broker" | "error" | "self";

export const TAKEOVER_DROPS = 3;
export const TAKEOVER_FLOOR_SECONDS = 15;
export const TAKEOVER_CEILING_SECONDS = 300;

/**
 * One session's pacing (above): `nextDelayMs` before each attempt, `connected` and `disconnected`
 * with the time (ms) as they happen. Settings are in seconds, waits in milliseconds.
 */
export class Backoff {
  private attempt = 0;
  private connectedAt: number | undefined;
  private quickBrokerDrops = 0;
  private penalised = false;

  constructor(
    private readonly settings: BackoffSettings,
    private readonly random: () => number = Math.random,
  ) {}

  /** True while connections keep being closed by the broker right after they were made. */
  get takeoverSuspected(): boolean {
    return this.quickBrokerDrops >= TAKEOVER_DROPS;
  }

  /** The next wait, in milliseconds. */
  nextDelayMs(): number {
    const base = Math.max(this.settings.baseSeconds, 0.05) * 1000;
    const max = Math.max(this.settings.maxSeconds * 1000, base);
    let ceiling = Math.min(max, base * 2 ** Math.min(this.attempt, 30));
    let floor = base;
    if (this.penalised) floor = ceiling = max;
    if (this.takeoverSuspected) {
      const extra = Math.min(this.quickBrokerDrops - TAKEOVER_DROPS, 10);
      floor = Math.max(floor, Math.min(TAKEOVER_FLOOR_SECONDS * 2 ** extra, TAKEOVER_CEILING_SECONDS) * 1000);
      ceiling = Math.max(ceiling, Math.min(floor * 2, TAKEOVER_CEILING_SECONDS * 1000));
    }
    this.attempt++;
    this.penalised = false;
    return Math.round(floor + this.random() * (ceiling - floor));
  }

  connected(now: number): void {
    this.connectedAt = now;
  }

  /** The broker refused what was asked (e.g. a subscription): the next wait is the longest. */
  penalise(): void {
    this.penalised = true;
  }

  /**
   * Called when the connection drops: a connection that was stable starts over from `base`; one
   * the broker closed before it was stable counts towards a suspected takeover.
   */
  disconnected(now: number, cause: DropCause = "error"): void {
    const upFor = this.connectedAt === undefined ? undefined : now - this.connectedAt;
    const stable = upFor !== undefined && upFor >= this.settings.stableSeconds * 1000;
    if (stable) {
      this.attempt = 0;
      this.quickBrokerDrops = 0;
    } else if (upFor !== undefined && cause === "broker") {
      this.quickBrokerDrops++;
    } else if (upFor !== undefined || cause === "error") {
      // A connect that failed (refused, timed out) between two short connections is a broker
      // restarting, not another device taking the session over: that broker accepts both.
      this.quickBrokerDrops = 0;
    }
    this.connectedAt = undefined;
  }
}
