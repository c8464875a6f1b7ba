/**
 * Reconnect pacing with the meaning the guide's `autoReconnectBackoffTime` had in the AWS IoT
 * SDK: the quiet time starts at `base`, doubles after each failed attempt up to `max`, and
 * resets once a connection has stayed up for `stable` seconds. We add full jitter (a random
 * delay between base and the current ceiling) so a fleet that lost its broker at once does
 * not come back at once.
 */
export interface BackoffSettings {
  baseSeconds: number;
  maxSeconds: number;
  stableSeconds: number;
}

export class Backoff {
  private attempt = 0;
  private connectedAt: number | undefined;

  constructor(
    private readonly settings: BackoffSettings,
    private readonly random: () => number = Math.random,
  ) {}

  /** The next wait, in milliseconds. */
  nextDelayMs(): number {
    const base = Math.max(this.settings.baseSeconds, 0.05) * 1000;
    const max = Math.max(this.settings.maxSeconds * 1000, base);
    const ceiling = Math.min(max, base * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.round(base + this.random() * (ceiling - base));
  }

  connected(now: number): void {
    this.connectedAt = now;
  }

  /** Called when the connection drops: a connection that was stable starts over from `base`. */
  disconnected(now: number): void {
    if (this.connectedAt !== undefined && now - this.connectedAt >= this.settings.stableSeconds * 1000) this.attempt = 0;
    this.connectedAt = undefined;
  }
}
